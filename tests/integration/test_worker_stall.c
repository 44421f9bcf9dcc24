/*
 * test_inode_stall with three stalled memfds: more than core has worker
 * threads (2). Every worker hangs in a punch that waits for a peer's inode
 * lock, so every other session's RAM allocations (and frees, and closes of
 * descriptors) wait behind them for as long as the peer likes; the healthy
 * component stops advancing. Expected to fail until core bounds worker jobs a
 * peer can stall (README, "Not yet": a deadline for worker jobs a peer
 * stalls); not in the meson list until then.
 */
#define STALLS 3
#include "test_inode_stall.c"
