/*
 * faultline: the synchronous "local region mapper" mode -- opt-in per managed
 * dataspace, never the default, and here to compare with the asynchronous
 * protocol that is (doc/async-vs-sync.md).
 *
 * A manager offers a region map it created for synchronous paging with a
 * resolve callback: a fault comes in, a map item goes out (a slice of one of
 * the manager's RAM dataspaces and the rights). A client that attaches the
 * map's dataspace into its own address space gets, through core, a direct
 * channel to the manager; faults in that range then go to the client's own
 * local region mapper thread (started by libfaultline, the client's code is
 * unchanged), which asks the manager over the channel, checks the map item
 * (core vouches once per memfd that the manager was issued it, and for which
 * rights), maps it and wakes the faulting thread. Core is not on that path.
 *
 * What a client gets from a bad manager: a manager that does not answer
 * within $FAULTLINE_SYNC_TIMEOUT_MS (default 2000), that closes the channel
 * (crashes), that declines, or whose map item is refused (a memfd it was not
 * issued, rights beyond its token, a slice out of range) makes the client's
 * local region mapper write one line on stderr and raise SIGBUS in the
 * faulting thread. A late answer is discarded with a line. Core's loop sees
 * none of it.
 *
 * Limits (doc/async-vs-sync.md): only a managed dataspace attached directly
 * into a component's own address space is served synchronously (nested, it
 * is served as usual through core); a write to a slice mapped read-only is a
 * SIGSEGV (no WRITE-fault reflection as in the asynchronous mode); the slices
 * the local region mapper maps are not counted in the agent's VMA budget.
 *
 * The local region mapper is one thread per process, but it does not wait
 * for a manager: it sends the fault and goes on serving every other channel
 * (other managers' faults and revocations) until the answer comes or the
 * fault's timeout runs out. It watches every channel core allows a client
 * (256).
 */
#ifndef FAULTLINE_SYNC_H
#define FAULTLINE_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include <faultline/env.h>
#include <faultline/region_map.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A manager object is not shared between threads: one thread at a time
 * calls fl_sync_serve, fl_sync_revoke and fl_sync_close on it (the rest of
 * the API stays thread-safe). Different manager objects of one env may be
 * used from different threads at once. */
struct fl_sync_manager;

/* A fault as the manager sees it: which client (its session id), where in
 * the region map, and the access. */
struct fl_sync_fault {
    uint64_t client;
    uintptr_t addr;
    enum fl_fault_type type;
};

/* A map item: [addr, addr + size) of the region map (page-aligned, holding
 * the fault) shows [ds_offset, ds_offset + size) of the manager's RAM
 * dataspace ds, writeable or not. The client maps what lies within its
 * attachment. */
struct fl_sync_item {
    fl_cap ds;
    size_t ds_offset;
    uintptr_t addr;
    size_t size;
    bool writeable;
};

/* Fill *item for *fault and return 0, or return a negative FL_E_* to decline
 * (the faulting thread gets SIGBUS). Called from fl_sync_serve. */
typedef int (*fl_sync_resolve_fn)(void *arg, const struct fl_sync_fault *fault,
                                  struct fl_sync_item *item);

/*
 * Serve region map rm (a managed map this env created) synchronously from
 * now on. Errors: -FL_E_INVALID_CAP, -FL_E_DENIED (not this env's map),
 * -FL_E_OUT_OF_CAPS (64 offers per session).
 */
int fl_sync_offer(struct fl_env *env, fl_cap rm, fl_sync_resolve_fn resolve, void *arg,
                  struct fl_sync_manager **mgr);

/*
 * Wait up to timeout_ms (< 0: no limit) for work and do it: take new
 * clients, answer their faults. Returns the number of faults answered (0:
 * the time ran out, or only a new client came), or -FL_E_SESSION_CLOSED.
 * Waits on this manager object alone: a new client's channel wakes the
 * object of its offer and no other, so several offers can be served from a
 * thread each, or from one thread with fl_sync_fd.
 */
int fl_sync_serve(struct fl_sync_manager *mgr, int timeout_ms);

/*
 * A descriptor (an epoll set of the manager object's own) that is readable
 * when fl_sync_serve(mgr, 0) has work: a new client's channel for this
 * offer, a fault or an acknowledgement on a channel. For the caller's own
 * poll, epoll or io_uring loop -- one thread can serve every offer of a
 * manager: wait until one of their descriptors is readable, then call
 * fl_sync_serve(mgr, 0) on that one. Not to be read or closed; valid until
 * fl_sync_close. -FL_E_INVALID_ARG for NULL.
 */
int fl_sync_fd(const struct fl_sync_manager *mgr);

/*
 * Revoke [addr, addr + size) of the region map in every client: each one's
 * local region mapper drops its mappings there and acknowledges. Faults
 * that come meanwhile are served. Returns 0 once all acknowledged, or
 * -FL_E_TIMEOUT if one did not within timeout_ms: it is named on stderr and
 * cut off (its channel closed). What such a client keeps mapped only
 * freeing the RAM dataspace takes away (core punches its memfd).
 */
int fl_sync_revoke(struct fl_sync_manager *mgr, uintptr_t addr, size_t size, int timeout_ms);

/* How many clients have a channel to this manager. */
unsigned fl_sync_clients(const struct fl_sync_manager *mgr);

/* Close every channel and free mgr (the offer lasts until the map dies). */
void fl_sync_close(struct fl_sync_manager *mgr);

#ifdef __cplusplus
}
#endif
#endif
