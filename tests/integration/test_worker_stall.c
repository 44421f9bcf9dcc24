/*
 * test_inode_stall with three stalled memfds: more than core's two standing
 * worker threads. Every worker hangs in a punch that waits for a peer's inode
 * lock; core's worker supervisor starts more threads (worker.c), so every
 * other session's RAM allocations, frees and closes of descriptors go on and
 * the healthy component keeps advancing.
 */
#define STALLS 3
#include "test_inode_stall.c"
