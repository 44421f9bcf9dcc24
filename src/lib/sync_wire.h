/*
 * The synchronous mode inside libfaultline: the wire of a direct channel
 * between a client's local region mapper (lrm.c) and a manager
 * (sync_manager.c), and the env's inbox of descriptors core sends for it
 * (sync_common.c). Core never reads this wire.
 *
 * A channel is a SOCK_SEQPACKET socketpair core made; every datagram is one
 * struct fl_sync_msg. The client sends FAULT (seq, addr in the map, type) and
 * waits for the ITEM of the same seq; the manager attaches the memfd the
 * first time it names a token on that channel (FL_SYNC_MSG_FD). The manager
 * sends REVOKE (seq, addr, size); the client answers REVOKED (seq).
 */
#ifndef FL_LIB_SYNC_WIRE_H
#define FL_LIB_SYNC_WIRE_H

#include "internal.h"

#include <faultline/sync.h>

#define FL_SYNC_MAGIC 0x464c5359u /* "FLSY" */
enum {
    FL_SYNC_MSG_FAULT = 1,
    FL_SYNC_MSG_ITEM = 2,
    FL_SYNC_MSG_REVOKE = 3,
    FL_SYNC_MSG_REVOKED = 4
};
#define FL_SYNC_MSG_WRITE 0x1u /* ITEM: writeable */
#define FL_SYNC_MSG_FD    0x2u /* ITEM: the memfd is attached */

struct fl_sync_msg {
    uint32_t magic;
    uint16_t type;
    uint16_t flags;
    uint64_t seq;
    uint64_t addr;      /* FAULT: the faulting address in the map; ITEM, REVOKE: start */
    uint64_t size;      /* ITEM, REVOKE */
    uint64_t ds_offset; /* ITEM: into the memfd */
    int32_t status;     /* ITEM: 0 or a negative FL_E_* */
    uint32_t fault;     /* FAULT: enum fl_fault_type */
    uint8_t token[FL_TOKEN_BYTES];
};

/* The env's synchronous-mode state (created on first use). */
struct fl__sync_fd {
    uint32_t kind;
    uint64_t handle, offer, peer_session, peer_pid;
    int fd;
};
/* A manager object's wake: the eventfd written when a new client's channel
 * for its offer arrives, so that a delivery wakes the manager it is for and
 * no other (sync_manager.c). */
struct fl__sync_waker {
    uint64_t offer;
    int fd;
};
struct fl__lrm;
struct fl__sync {
    pthread_mutex_t lock;
    struct fl__sync_fd *inbox;
    size_t ninbox, inbox_cap;
    int efd; /* counts deliveries no manager object waits for */
    struct fl__sync_waker *wakers;
    size_t nwakers, wakers_cap;
    struct fl__lrm *lrm;
};
struct fl__sync *fl__sync_get(struct fl_env *env);
/* Write fd when a new client's channel for offer arrives (0, or -FL_E_OUT_OF_RAM);
 * and no longer. */
int fl__sync_watch(struct fl_env *env, uint64_t offer, int fd);
void fl__sync_unwatch(struct fl_env *env, int fd);
/* Take the descriptor of kind and handle (handle 0: any; offer 0: any) core
 * sent; -1 if none. *out gets the entry. */
int fl__sync_take(struct fl_env *env, uint32_t kind, uint64_t handle, uint64_t offer,
                  struct fl__sync_fd *out);
/* Send and receive one channel message (with at most one descriptor). */
/* CLOCK_MONOTONIC in milliseconds. */
long fl__sync_now_ms(void);
int fl__sync_send(int sock, const struct fl_sync_msg *m, int fd);
/* 1 with *m (and *fd, or -1), 0 at EOF, -errno; timeout_ms < 0: wait. */
int fl__sync_recv(int sock, struct fl_sync_msg *m, int *fd, int timeout_ms);
/* The client's side (lrm.c). */
int fl__lrm_stop(struct fl_env *env);
void fl__lrm_free(struct fl__lrm *l);

#endif
