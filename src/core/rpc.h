/* faultline-core: the request table and its handlers (rpc.c; each handler in its concept's file).
 */
#ifndef FL_CORE_RPC_H
#define FL_CORE_RPC_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "../common/protocol.h"

struct fl_session;

/* A handler's status: 0 or -errno (core replies with it, as -FL_E_*, and v), or this: no
 * reply now (it replied itself, replies later, or the message is not
 * answered). fd: the descriptor that came along; a handler that keeps it sets
 * *fd = -1, otherwise it is closed after the handler. */
#define CORE_RPC_DEFERRED 1
typedef int (*core_rpc_fn)(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
void core_rpc_dispatch(struct fl_session *s, const void *msg, int fd);
/* -errno (core's errors) as the -FL_E_* a reply carries; 0 and values as they are. */
int core_rpc_status(int err);
/* HELLO (session.c): fd, the uffd, is taken or closed. */
void core_session_hello(struct fl_session *s, const struct fl_req_hello *m, int fd);
/* A descriptor a peer hands core must be of the kind the protocol expects. */
bool core_fd_is_anon(int fd, const char *what);
int core_ram_rpc_alloc(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_ram_rpc_free(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_ds_rpc_size(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_rpc_attach(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_rpc_detach(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_session_rpc_open(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_session_rpc_close(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_session_rpc_upgrade(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_rpc_create(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_rpc_destroy(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_rpc_dataspace(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_rpc_fault_handler(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_rpc_fault(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_signal_rpc_alloc(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_signal_rpc_free(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_signal_rpc_submit(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_cap_rpc_export(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_cap_rpc_import(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_cap_rpc_release(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_pd_rpc_create(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_pd_rpc_upgrade(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_pd_rpc_session_info(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_agent_rpc_ack(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_fault_rpc_exec(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);

#endif
