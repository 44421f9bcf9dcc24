/* faultline-core internals: the objects core owns and the functions between its files. */
#ifndef FL_CORE_H
#define FL_CORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <faultline/error.h>
#include <faultline/region_map.h>

#include "../common/list.h"
#include "../common/log.h"
#include "../common/placement.h"
#include "../common/probe.h"
#include "../common/protocol.h"

/* ---- event loop (loop.c, loop_epoll.c, loop_uring.c) ---- */

#define FL_EV_IN  0x1u
#define FL_EV_OUT 0x4u
#define FL_EV_ERR 0x8u
#define FL_EV_HUP 0x10u

typedef void (*fl_watch_cb)(void *arg, uint32_t events);
struct fl_watch;

enum fl_backend { FL_BACKEND_AUTO, FL_BACKEND_IO_URING, FL_BACKEND_EPOLL };

int fl_loop_init(enum fl_backend want);
/* Watch fd for readiness; the callback runs on the loop thread. */
struct fl_watch *fl_loop_watch(int fd, uint32_t events, fl_watch_cb cb, void *arg);
int fl_loop_modify(struct fl_watch *w, uint32_t events);
/* Stop watching; the loop frees w once no event for it can arrive. */
void fl_loop_unwatch(struct fl_watch *w);
/* Wait for events (timeout_ms < 0: forever) and run their callbacks. */
int fl_loop_run_once(int timeout_ms);
void fl_loop_fini(void);

struct fl_loop_backend {
    const char *name;
    int (*init)(void);
    int (*add)(struct fl_watch *w);
    int (*modify)(struct fl_watch *w);
    void (*remove)(struct fl_watch *w);
    int (*wait)(int timeout_ms);
    void (*fini)(void);
};

struct fl_watch {
    int fd;
    uint32_t events;
    fl_watch_cb cb;
    void *arg;
    bool dead;      /* unwatched; freed when the backend says no event can follow */
    unsigned polls; /* io_uring: polls outstanding (modify is remove + add) */
    struct fl_list link;
};

extern const struct fl_loop_backend fl_backend_epoll;
extern const struct fl_loop_backend fl_backend_uring;
/* Backends call this for each event; it skips watches already unwatched. */
void fl_loop_dispatch(struct fl_watch *w, uint32_t events);
void fl_loop_release(struct fl_watch *w);

/* ---- objects ---- */

enum fl_obj_kind { FL_OBJ_DATASPACE = 1, FL_OBJ_REGION_MAP = 2, FL_OBJ_SIGNAL = 3 };

struct fl_session;

struct fl_object {
    enum fl_obj_kind kind;
    unsigned refs;             /* capabilities, regions and jobs that point here */
    bool dead;                 /* freed/destroyed: every capability to it is invalid */
    unsigned tokens;           /* export tokens outstanding for it */
    struct fl_session *owner;  /* the session that created it; NULL once it is dead */
    struct fl_list owner_link; /* in owner->objects */
};

struct fl_region_map;

/* A fault on a dataspace that is moving to a fresh memfd (--strict). */
struct fl_deferred_fault {
    uint64_t session_id, va;
    uint32_t tid;
    uint8_t type; /* enum fl_fault_type */
    bool segv;
};

struct fl_dataspace {
    struct fl_object obj;
    uint64_t size;
    int memfd;         /* RAM: the one memfd; -1 for a managed dataspace */
    uint64_t memfd_id; /* names the memfd on the wire */
    bool ready;        /* RAM: the worker finished allocating */
    bool moving;       /* --strict: being copied to a fresh memfd; nothing maps it */
    struct fl_deferred_fault *deferred; /* faults that wait for the move */
    size_t ndeferred, deferred_cap;
    struct fl_region_map *rm; /* managed: the region map it shows */
    struct fl_list regions;   /* fl_region.ds_link: everywhere it is attached */
};

struct fl_region {
    struct fl_region_map *rm; /* the map it lies in */
    uint64_t start, size;     /* in rm's coordinates */
    uint64_t offset;          /* into the dataspace */
    struct fl_dataspace *ds;  /* NULL once the dataspace died: the region is reserved */
    bool write, exec;
    struct fl_list ds_link;
};

struct fl_region_map {
    struct fl_object obj;
    struct fl_placement placement;
    struct fl_session *address_space_of; /* set for a component's own address space */
    struct fl_dataspace *ds;             /* managed: its dataspace */
    fl_wire_cap ds_cap;                  /* ds in its creator's table (see RM_DATASPACE) */
    struct fl_signal *fault_handler;
    unsigned slot; /* in the fault page of session slot_session, or 0 */
    uint64_t slot_session;
    struct fl_list faulters; /* fl_faulter.link, FIFO */
};

struct fl_signal {
    struct fl_object obj;
    int efd; /* the receiver's eventfd (shared with it) */
};

/* ---- sessions (session.c) ---- */

struct fl_out_msg {
    struct fl_list link;
    size_t len;
    int fd; /* descriptor to pass, owned by the queue entry, or -1 */
    uint8_t buf[FL_MSG_MAX];
};

struct fl_cap_entry {
    struct fl_object *obj; /* NULL: free slot */
    uint32_t gen;
    uint32_t next_free; /* free: the next free slot's index + 1 (0: none) */
    uint32_t holds;     /* times handed out; CAP_RELEASE gives one back */
    bool charged;       /* costs its session one capability of quota (not the creator's own) */
};

struct fl_session {
    uint64_t id;
    int sock;
    struct fl_watch *watch;
    pid_t pid;
    uid_t uid;
    int pidfd;
    char label[48]; /* "pid 1234 (comm)" for logs */
    bool hello_done;
    uint64_t accepted_ms; /* when its connection was accepted (0: no connection yet) */
    bool closing;         /* no longer served; torn down at the end of the loop round */
    bool torn_down;       /* everything released; freed by fl_session_reap */

    uint64_t window_base, window_size;
    int uffd;
    struct fl_watch *uffd_watch;
    struct fl_region_map *address_space;

    uint64_t ram_quota, ram_used;
    uint64_t cap_quota, cap_used;

    struct fl_cap_entry *caps;
    size_t ncaps;
    uint32_t cap_free; /* head of the free slots (index + 1; 0: table full) */

    struct fl_list objects; /* what this session created */
    struct fl_list out;     /* fl_out_msg queued while the socket is full */
    size_t out_count;
    unsigned fds_in_flight;
    struct core_agent *agent;               /* agent.c's: what core knows of its agent */
    struct core_revoke_waits *revoke_waits; /* revoke.c's: its revocations on their way */

    struct fl_faulter **faulter_buckets; /* fault.c: its threads queued on maps, by id */
    unsigned faulter_nbuckets, nfaulters;
    uint8_t tid_check;   /* fault.c: 0 not yet known, 1 ids checkable, 2 not */
    unsigned unroutable; /* faults core could not route since unroutable_since_ms */
    uint64_t unroutable_since_ms;
    uint64_t log_since_ms; /* session.c: its lines in the current second */
    unsigned log_lines, log_suppressed;

    struct fl_fault_slot *fault_page; /* shared read-only with it (fault_page.c) */
    unsigned next_slot;

    /* A session a parent created and funds (Genode's PD session): */
    uint64_t parent_id;                  /* 0 for a top-level session */
    uint64_t funded_ram, funded_caps;    /* charged to the parent while this lives */
    uint8_t claim_token[FL_TOKEN_BYTES]; /* until a connection claims it */
    bool unclaimed;                      /* no connection yet: sock is -1 */
    struct fl_list link;
};

struct fl_core_config {
    const char *socket_path;
    enum fl_backend backend;
    uint64_t ram_budget;         /* core-wide, bytes */
    uint64_t ram_quota;          /* per top-level session */
    uint64_t cap_quota;          /* per top-level session */
    unsigned max_out_queue;      /* queued messages before a session is ended */
    unsigned revoke_deadline_ms; /* an agent that does not revoke by then is terminated */
    bool unresolvable_sigbus;    /* a fault that can never be resolved: SIGBUS, not halt */
    bool strict;                 /* detach moves RAM that lives on to a fresh memfd */
};

struct fl_core {
    struct fl_core_config cfg;
    int listen_fd;
    struct fl_list sessions;
    uint64_t next_session_id;
    uint64_t next_memfd_id;
    uint64_t ram_used;
    long fd_budget; /* descriptors core may spend on objects and sessions */
    long fd_used;
    bool stopping;
};

extern struct fl_core fl_core;

/* A log line a peer can cause again and again: the first FL_LOG_BURST a
 * second per session, then one line counting those suppressed. */
#define FL_LOG_BURST 10
bool fl_session_log_ok(struct fl_session *s);
#define fl_session_log(s, level, ...)                                                              \
    do {                                                                                           \
        if (fl_session_log_ok(s)) fl_log(level, __VA_ARGS__);                                      \
    } while (0)

/* A new session, in fl_core.sessions: no connection yet, these quotas. */
struct fl_session *fl_session_new(uint64_t ram_quota, uint64_t cap_quota);
void fl_session_accept(void);
void fl_session_close(struct fl_session *s, const char *why);
/* Closes connections that have not completed HELLO within FL_HELLO_TIMEOUT_MS
 * (each holds three of core's descriptors); returns the ms until the next
 * is due, or -1. */
#define FL_HELLO_TIMEOUT_MS 5000
int fl_session_check_handshakes(void);
struct fl_session *fl_session_by_id(uint64_t id);
/* Queue or send a message (MSG_DONTWAIT); fd is dup'ed if >= 0. On failure
 * the session is being closed and -1 is returned. */
int fl_session_send(struct fl_session *s, const void *msg, size_t len, int fd);
void fl_session_reply(struct fl_session *s, uint64_t req_id, int status, const uint64_t *vals,
                      unsigned nvals);
void fl_session_close_all(void);
/* Free the sessions closed since the last call. */
void fl_session_reap(void);
/* PD sessions (pd.c). */
void core_pd_create(struct fl_session *parent, const struct fl_req_pd_create *m);
void core_pd_claim(struct fl_session *fresh, const struct fl_req_pd_claim *m);
int core_pd_upgrade(struct fl_session *s, const struct fl_req_pd_upgrade *m, uint64_t v[4]);
void fl_pd_session_gone(struct fl_session *s);
/* Create the watch of a connected session's socket. */
int fl_session_watch(struct fl_session *s);
/* Peers of other uids (peer.c): --allow-uid, --allow-group (a number or a
 * name; 0, or -1 after saying why on stderr); whether a peer is core's uid,
 * root or allowed (by uid, gid or a supplementary group); the allow-list as
 * log lines name it; and the socket's ACLs for it (after bind; 0 or -1). */
struct ucred;
int fl_peer_allow_uid(const char *arg);
int fl_peer_allow_group(const char *arg);
bool fl_peer_allowed(int fd, const struct ucred *cred);
const char *fl_peer_allow_list(void);
int fl_peer_open_socket(const char *path);

/* ---- requests (rpc.c): one handler per type, in its concept's file ---- */
/* A handler's status: 0 or -FL_E_* (core replies with it and v), or this: no
 * reply now (it replied itself, replies later, or the message is not
 * answered). fd: the descriptor that came along; a handler that keeps it sets
 * *fd = -1, otherwise it is closed after the handler. */
#define CORE_RPC_DEFERRED 1
typedef int (*core_rpc_fn)(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
void core_rpc_dispatch(struct fl_session *s, const void *msg, int fd);
/* HELLO (session.c): fd, the uffd, is taken or closed. */
void fl_session_hello(struct fl_session *s, const struct fl_req_hello *m, int fd);
/* A descriptor a peer hands core must be of the kind the protocol expects. */
bool fl_fd_is_anon(int fd, const char *what);
int core_ram_rpc_alloc(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_ram_rpc_free(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_ds_rpc_size(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_rpc_attach(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_rm_rpc_detach(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
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

/* ---- capabilities (capability.c) ---- */
#define FL_CAP_TABLE_MAX (1u << 24) /* slots of one session's table */
/* A slot for the object's creator: its charge covers the slot. */
int fl_cap_insert(struct fl_session *s, struct fl_object *obj, fl_wire_cap *cap);
/* Any other slot (an import, a further dataspace() of a map): one capability
 * of s's quota until the slot is released. */
int fl_cap_insert_charged(struct fl_session *s, struct fl_object *obj, fl_wire_cap *cap);
/* cap names obj in s's table: hand it out once more (false: it does not). */
bool fl_cap_hold_again(struct fl_session *s, fl_wire_cap cap, const struct fl_object *obj);
/* Give back one hold of cap (CAP_RELEASE); the slot goes with the last. */
int fl_cap_put(struct fl_session *s, fl_wire_cap cap);
struct fl_object *fl_cap_lookup(struct fl_session *s, fl_wire_cap cap, enum fl_obj_kind kind);
/* The slot goes, however often it was handed out (its object died). */
int fl_cap_drop(struct fl_session *s, fl_wire_cap cap);
void fl_cap_drop_all(struct fl_session *s);
int core_cap_export(struct fl_session *s, fl_wire_cap cap, uint8_t token[FL_TOKEN_BYTES]);
int core_cap_import(struct fl_session *s, const uint8_t token[FL_TOKEN_BYTES], fl_wire_cap *cap,
                    enum fl_obj_kind *kind);
void fl_tokens_forget_object(struct fl_object *obj);
void fl_object_ref(struct fl_object *obj);
void fl_object_unref(struct fl_object *obj);
/* Destroy an object: mark it dead, release what it holds, drop owner's ref. */
void fl_object_destroy(struct fl_object *obj);

/* ---- quotas ---- */
int fl_quota_charge(struct fl_session *s, uint64_t ram, uint64_t caps, long fds);
void fl_quota_release(struct fl_session *s, uint64_t ram, uint64_t caps, long fds);

/* ---- RAM dataspaces (ram.c) ---- */
void core_ram_alloc(struct fl_session *s, uint64_t req_id, uint64_t size);
int core_ram_free(struct fl_session *s, struct fl_dataspace *ds);
void fl_dataspace_destroy(struct fl_dataspace *ds);
/* --strict: ds (RAM) was revoked everywhere; copy it to a fresh memfd, punch
 * the old one, map it again wherever it is attached, then reply to req_id. */
void fl_dataspace_move(struct fl_dataspace *ds, uint64_t session_id, uint64_t req_id);

/* ---- region maps (region_map.c) ---- */
struct fl_region_map *fl_region_map_create(struct fl_session *owner, uint64_t base, uint64_t size,
                                           bool managed);
int core_rm_attach(struct fl_region_map *rm, struct fl_dataspace *ds,
                   const struct fl_req_rm_attach *req, uint64_t *start, uint64_t *size);
int core_rm_detach(struct fl_region_map *rm, uint64_t at);
void fl_region_map_destroy(struct fl_region_map *rm);
/* Install a map's fault handler (NULL: none); the map holds a reference. */
void fl_region_map_set_fault_handler(struct fl_region_map *rm, struct fl_signal *sig);
/* The dataspace died: its regions become reserved. */
void fl_region_reserve(struct fl_region *r);

/* ---- the mapping database (mapping.c) ---- */
/* A new request (or worker completion) may map EAGER_WINDOWS windows eagerly. */
void fl_mapping_eager_budget(void);
/* Make the region's memory visible wherever the map is visible. */
void fl_mapping_map_region(struct fl_region *r);
/* Remove every mapping of [start, start+size) of rm wherever it is visible. */
void fl_mapping_revoke(struct fl_region_map *rm, uint64_t start, uint64_t size);
uint64_t fl_now_ms(void); /* CLOCK_MONOTONIC (loop.c) */

/* ---- agents (agent.c): every instruction to a component's agent ---- */
/* Resumes one session's agent may leave unacknowledged (32 bytes each). */
#define FL_WAKES_MAX 8192u
struct core_agent;
struct core_agent *core_agent_new(void);
void core_agent_free(struct core_agent *a);
void core_agent_session_gone(struct fl_session *s);
/* Map a window; returns the instruction's sequence number, or 0 (not sent:
 * closing, moving, or the descriptor credit is spent). */
uint64_t core_agent_map(struct fl_session *s, uint64_t va, uint64_t len, struct fl_dataspace *ds,
                        uint64_t off, bool write, bool exec);
/* Revoke a range; returns the instruction's sequence number, or 0. */
uint64_t core_agent_revoke(struct fl_session *s, uint64_t va, uint64_t len);
/* --unresolvable=sigbus: the agent raises SIGBUS in a halted thread. */
void core_agent_sigbus(struct fl_session *s, uint32_t tid, uint64_t va);
/* The session's fault page (a read-only memfd); 0 or -1. */
int core_agent_send_fault_page(struct fl_session *s, int memfd);
/* Every agent that holds ds's memfd drops it. */
void core_agent_forget_memfd(struct fl_dataspace *ds);
/* Let the threads of s waiting on a fault in [va, va+len) -- in the uffd or in
 * libfaultline's SIGSEGV handler -- retry, once s's agent carried out the
 * instructions sent before; it prefaults page populate first (0: none). Core
 * itself makes no uffd call on a client: the agent wakes. */
void core_agent_resume(struct fl_session *s, uint64_t va, uint64_t len, uint64_t populate);
/* A fault on a page whose resume is on its way: remembered (true), and the
 * page woken again once the agent acknowledged that resume. */
bool core_agent_resume_pending(struct fl_session *s, uint64_t va);
/* A fault whose mapping needs a descriptor while the session's credit is
 * spent: the page is woken again after the agent's next acknowledgement
 * (true), or it is not a matter of credit (false). */
bool core_agent_wait_credit(struct fl_session *s, uint64_t va);
/* Close s if its agent acknowledged none of a full credit for the deadline;
 * returns when that is due (UINT64_MAX: not pending; now: closed). */
uint64_t core_agent_check_credit(struct fl_session *s, uint64_t now);

/* ---- revocation barriers (revoke.c) ---- */
/* Revocations sent between begin and end hold back the reply to req_id of s
 * until every agent concerned acknowledged. end returns whether the reply was
 * deferred (it is then sent with status 0 by the last acknowledgement). With
 * s NULL there is no reply, only the punches of freed memfds wait. */
void core_revoke_begin(struct fl_session *s, uint64_t req_id);
bool core_revoke_end(void);
/* The open barrier waits for s's agent to acknowledge instruction seq (0: none). */
void core_revoke_wait(struct fl_session *s, uint64_t seq);
/* --strict: the open barrier's reply also waits for ds to move. */
void core_revoke_move(struct fl_dataspace *ds);
struct fl_job;
/* Hold a freed memfd's punch until the open barrier's revocations are
 * acknowledged (a client reading it meanwhile must not see zeros); false if
 * no barrier is open (a session's end: punch at once). */
bool core_revoke_punch(struct fl_job *job);
/* s's agent acknowledged everything up to seq. */
void core_revoke_acked(struct fl_session *s, uint64_t seq);
/* s is closing: release what waits for its agent. */
void core_revoke_session_gone(struct fl_session *s);
/* Terminate components whose agents missed the revocation deadline (and end
 * sessions whose agents hold a full credit for as long); returns the
 * milliseconds until the next deadline, or -1 if none is pending. */
int core_revoke_check_deadlines(void);

/* ---- faults (fault.c) ---- */
/* Threads of one session queued on faults at once (each costs core about 80
 * bytes); beyond it the session is closed. Honest components have fewer
 * threads than this waiting. */
#define FL_FAULTERS_MAX 4096u
/* Faults core cannot route (no handler, too deep, outside the window) one
 * session may cause in a second before it is closed. */
#define FL_UNROUTABLE_MAX 1000u
void fl_fault_uffd_ready(void *arg, uint32_t events);
/* Reads up to rounds batches of its uffd's messages (until EAGAIN at most). */
void fl_fault_read_uffd(struct fl_session *s, size_t rounds);
/* An instruction fetch from a non-executable page, reported by the thread. */
void fl_fault_exec(struct fl_session *s, const struct fl_msg_exec_fault *m);
/* A fault remembered while its resume was on its way: handle it now. */
void fl_fault_session_gone(struct fl_session *s);
void fl_fault_wake_region(struct fl_region_map *rm, uint64_t start, uint64_t size);
void fl_fault_map_dying(struct fl_region_map *rm);
int fl_fault_state(struct fl_region_map *rm, struct fl_fault *f);
/* faultline-ctl (ctl.c): one line of a dump; the faults queued on rm. */
struct fl_ctl_out;
void fl_ctl_line(struct fl_ctl_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fl_fault_ctl_dump(struct fl_ctl_out *o, struct fl_region_map *rm, struct fl_session *owner,
                       uint64_t now);
void core_ctl_dump(struct fl_session *s, const struct fl_req_ctl_dump *m);
/* The fault page (fault_page.c): the slot s reads rm's fault state from (0:
 * none, fault() stays an RPC); release it; write rm's head there again. */
unsigned fl_fault_page_assign(struct fl_session *s, struct fl_region_map *rm);
void fl_fault_page_release(struct fl_region_map *rm);
void fl_fault_page_publish(struct fl_region_map *rm);
void fl_fault_page_session_gone(struct fl_session *s);
/* ds finished moving (or died): handle the faults that waited for it again. */
void fl_fault_retry_deferred(struct fl_dataspace *ds);

/* ---- signals (signal.c) ---- */
void core_signal_submit(struct fl_signal *sig);
void fl_signal_destroy(struct fl_signal *sig);
int fl_signal_watchdog_start(void);

/* ---- worker (worker.c): memfd work a peer could stall, off the loop ---- */
struct fl_job;
typedef void (*fl_job_fn)(struct fl_job *job);
struct fl_job {
    fl_job_fn run;  /* on a worker thread */
    fl_job_fn done; /* on the loop thread */
    int result;
    int fd;
    uint64_t size, pos;
    uint64_t session_id, req_id;
    void *obj;
    struct fl_list link;
};
int fl_worker_start(void);
void fl_worker_submit(struct fl_job *job);
void fl_worker_stop(void);
/* Close a descriptor a peer sent (or shares) off the loop. */
void fl_worker_close(int fd);

/* ---- kernel features (check.c) ---- */
int fl_check_kernel(bool verbose);

#endif
