/* libfaultline internals. */
#ifndef FL_LIB_INTERNAL_H
#define FL_LIB_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <faultline/faultline.h>

#include "../common/protocol.h"

struct fl__pending {
    uint64_t id;
    bool done;
    struct fl_msg_reply reply;
    struct fl__pending *next;
};

struct fl__memfd {
    uint64_t id;
    int fd;
    bool sealed; /* F_SEAL_WRITE (a ROM module): mapped privately, never writable */
};

/* A run of pages mapped from one memfd at contiguous offsets with the same
 * rights: the kernel keeps it as one VMA, however many mappings made it. */
struct fl__window {
    uintptr_t va;
    size_t len;
    uint64_t seq; /* of its newest mapping */
    uint64_t memfd_id;
    uint64_t offset;
    uint32_t rights; /* FL_MAP_WRITE | FL_MAP_EXEC */
};

struct fl__sig {
    fl_cap cap;
    int efd;
};

/* Threads that can wait on an EXEC fault at once; more take the program's
 * own SIGSEGV action. */
#define FL_SEGV_SLOTS 64

struct fl_env {
    int sock;
    int uffd;
    void *window;
    size_t window_size;
    fl_cap address_space;
    uint64_t session_id;

    pthread_mutex_t lock; /* everything below */
    pthread_cond_t cond;
    uint64_t next_id;
    struct fl__pending *pending;
    bool established; /* HELLO answered */
    bool dead;        /* the socket is closed */
    bool closing;     /* fl_env_close is under way */
    int refused;      /* core's reason for refusing the connection, or 0 */

    struct fl__memfd *memfds; /* what core sent, by id (the agent's table) */
    size_t nmemfds, memfds_cap;
    struct fl__sig *sigs;
    size_t nsigs, sigs_cap;

    /* The agent's mapping cache (mapping_cache.c); only the agent uses it. */
    struct fl__window *windows;
    size_t nwindows, windows_cap, vma_budget;
    uint64_t window_seq;

    pthread_t agent;
    bool agent_running;

    /* fault() from memory core shares (region_map.c): the page, mapped by the
     * agent, and which slot shows which map (under lock). */
    const struct fl_fault_slot *_Atomic fault_page;
    struct fl__slot {
        fl_cap rm;
        unsigned slot;
    } slots[64];
    size_t nslots;

    /* The synchronous mode (sync_common.c, lrm.c, sync_manager.c): NULL
     * until first used; created under lock. */
    struct fl__sync *_Atomic sync;

    /* Threads waiting in the SIGSEGV handler for core's word (segv.c). */
    struct fl__segv_slot {
        _Atomic uint32_t tid; /* 0: free */
        _Atomic uint32_t resumed;
        _Atomic uintptr_t addr;
    } segv[FL_SEGV_SLOTS];
};

/* One RPC: send req (with fd if >= 0), wait for the reply. Returns the reply's
 * status (0 or -FL_E_*), or -FL_E_SESSION_CLOSED. */
int fl__rpc(struct fl_env *env, void *req, size_t len, int fd, struct fl_msg_reply *reply);
void fl__hdr(void *msg, unsigned type);
/* fl__rpc without a descriptor, asked again while core answers BUSY (a wait
 * on an agent's descriptor credit: src/core/sync_channel.c), for up to
 * FL__BUSY_MS. */
#define FL__BUSY_MS 10000
int fl__rpc_patient(struct fl_env *env, void *req, size_t len, struct fl_msg_reply *reply);
/* An RPC whose answer is the reply's val[0] (a capability, mostly): *val
 * gets it when the status is 0. */
int fl__rpc_val(struct fl_env *env, void *req, size_t len, uint64_t *val);
/* An RPC whose only argument is a capability. */
int fl__cap_req(struct fl_env *env, unsigned type, fl_cap cap, struct fl_msg_reply *rep);
/* Move quota from this PD session to the session `to` names: PD_UPGRADE (a
 * PD session it created) or RM_SESSION_UPGRADE (an RM session it opened). */
int fl__upgrade(struct fl_env *env, unsigned type, fl_cap to, size_t ram_quota, size_t cap_quota);

/* Grow *arr (*cap elements of size bytes) to hold n + 1: to `first`
 * elements the first time, then by doubling. false: out of memory, *arr
 * and *cap unchanged. */
bool fl__grow(void **arr, size_t *cap, size_t n, size_t size, size_t first);

/* The agent: executes core's instructions (agent.c). */
void *fl__agent_main(void *arg);
void fl__agent_atfork_init(void);

/* EXEC faults (segv.c): install the handler once; let the threads waiting on
 * a fault in [va, va+len) retry (len 0: all of them, the session ended). */
void fl__segv_install(void);
void fl__segv_resume(struct fl_env *env, uintptr_t va, size_t len);
/* The live env whose window holds addr, or NULL (async-signal-safe). */
struct fl_env *fl__env_for_addr(uintptr_t addr);

/* The synchronous mode (doc/async-vs-sync.md): the agent hands it what core
 * sent (the instruction's result); fl_env_close ends it; the attach path
 * hands it a range core said is served synchronously; the detach path and
 * core's revocations take ranges back to the shared uffd first. */
struct fl_msg_agent_sync_fd;
int fl__sync_deliver(struct fl_env *env, const struct fl_msg_agent_sync_fd *m, int fd);
void fl__sync_env_close(struct fl_env *env);
int fl__lrm_attached(struct fl_env *env, fl_cap ds, uintptr_t start, size_t len, size_t map_off,
                     bool writeable);
/* Ranges overlapping [va, va+len) (len 0: the one holding va) go back. */
void fl__lrm_release(struct fl_env *env, uintptr_t va, size_t len);
/* The agent's lock against fork around mappings (agent.c). */
void fl__map_lock(void);
void fl__map_unlock(void);

/* The mapping cache: keep the component within its VMA budget (windows, as
 * the kernel merges them; fl_env_open reads it from $FAULTLINE_VMA_BUDGET). */
#define FL_VMA_BUDGET_DEFAULT 16384
void fl__cache_init(struct fl_env *env, size_t budget);
void fl__cache_fini(struct fl_env *env);
/* [va, va+len) now maps memfd_id from offset with rights (FL_MAP_*). */
void fl__cache_mapped(struct fl_env *env, uintptr_t va, size_t len, uint64_t memfd_id,
                      uint64_t offset, uint32_t rights);
/* A revocation: [va, va+len) is no longer mapped (windows that overlap it
 * keep the rest). */
void fl__cache_forget(struct fl_env *env, uintptr_t va, size_t len);
/* Bytes from va to the end of the window that holds it (0: none). */
size_t fl__cache_extent(struct fl_env *env, uintptr_t va);
/* Drop all but the `keep` most recent windows back to placeholders. */
void fl__cache_evict(struct fl_env *env, size_t keep);

#endif
