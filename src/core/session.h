/* faultline-core: sessions (Genode's PD sessions): connections, sending, closing (session.c). */
#ifndef FL_CORE_SESSION_H
#define FL_CORE_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include "loop.h"
#include "../common/list.h"
#include "../common/log.h"
#include "../common/protocol.h"

struct fl_watch;
struct fl_region_map;
struct fl_faulter;
struct fl_fault_slot;
struct core_agent;
struct core_revoke_waits;
struct core_uffd_reader;
struct fl_cap_entry;

struct fl_out_msg {
    struct fl_list link;
    size_t len;
    int fd; /* descriptor to pass, owned by the queue entry, or -1 */
    uint8_t buf[FL_MSG_MAX];
};

/* Each group of fields is written by the file that names it, and only there;
 * the others read at most id, label, pid, closing, hello_done, the window
 * and address_space. */
struct fl_session {
    /* session.c: the connection, its peer and its end */
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
    bool torn_down;       /* everything released; freed by core_session_reap */
    struct fl_list out;   /* fl_out_msg queued while the socket is full */
    size_t out_count;
    uint64_t log_since_ms; /* its log lines in the current second */
    unsigned log_lines, log_suppressed;

    /* session.c (HELLO) and pd.c (PD_CREATE): its window, uffd and address
     * space (region_map.c clears address_space when that map dies) */
    uint64_t window_base, window_size;
    int uffd;
    struct fl_watch *uffd_watch;
    struct core_uffd_reader *uffd_reader; /* uffd.c's, as uffd and uffd_watch after HELLO */
    struct fl_region_map *address_space;

    /* quota.c */
    uint64_t ram_quota, ram_used;
    uint64_t cap_quota, cap_used;

    /* capability.c: its capability table */
    struct fl_cap_entry *caps;
    size_t ncaps;
    uint32_t cap_free; /* head of the free slots (index + 1; 0: table full) */

    /* object.c: what this session created */
    struct fl_list objects;

    /* opaque: agent.c's and revoke.c's */
    struct core_agent *agent;               /* what core knows of its agent */
    struct core_revoke_waits *revoke_waits; /* its revocations on their way */

    /* fault.c: its threads queued on maps, by thread id */
    struct fl_faulter **faulter_buckets;
    unsigned faulter_nbuckets, nfaulters;
    uint8_t tid_check;   /* 0 not yet known, 1 ids checkable, 2 not */
    unsigned unroutable; /* faults core could not route since unroutable_since_ms */
    uint64_t unroutable_since_ms;

    /* fault_page.c: shared read-only with it */
    struct fl_fault_slot *fault_page;
    unsigned next_slot;

    /* pd.c: a session a parent created and funds (Genode's PD session) */
    uint64_t parent_id;                  /* 0 for a top-level session */
    uint64_t funded_ram, funded_caps;    /* charged to the parent while this lives */
    uint8_t claim_token[FL_TOKEN_BYTES]; /* until a connection claims it */
    bool unclaimed;                      /* no connection yet: sock is -1 */

    struct fl_list link; /* session.c: in fl_core.sessions */
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
bool core_session_log_ok(struct fl_session *s);
#define core_session_log(s, level, ...)                                                            \
    do {                                                                                           \
        if (core_session_log_ok(s)) fl_log(level, __VA_ARGS__);                                    \
    } while (0)

/* A new session, in fl_core.sessions: no connection yet, these quotas. */
struct fl_session *core_session_new(uint64_t ram_quota, uint64_t cap_quota);
void core_session_accept(void);
void core_session_close(struct fl_session *s, const char *why);
/* Closes connections that have not completed HELLO within FL_HELLO_TIMEOUT_MS
 * (each holds three of core's descriptors); returns the ms until the next
 * is due, or -1. */
#define FL_HELLO_TIMEOUT_MS 5000
int core_session_check_handshakes(void);
struct fl_session *core_session_by_id(uint64_t id);
/* Send a message (MSG_DONTWAIT) when the loop's round ends (one sendmmsg a
 * peer), or at once if it carries a descriptor (fd >= 0, dup'ed if it must
 * wait); queued while the peer does not read. On failure the session is
 * being closed and -1 is returned. */
int core_session_send(struct fl_session *s, const void *msg, size_t len, int fd);
/* Send what the round has batched: before the loop sleeps, and in reap. */
void core_session_flush(void);
void core_session_reply(struct fl_session *s, uint64_t req_id, int status, const uint64_t *vals,
                        unsigned nvals);
void core_session_close_all(void);
/* Free the sessions closed since the last call. */
void core_session_reap(void);
/* A session its parent created takes over fresh's connection (PD_CLAIM);
 * fresh goes away. 0, or -1 when s could not be watched (then closed). */
int core_session_take_connection(struct fl_session *s, struct fl_session *fresh);
/* Create the watch of a connected session's socket. */
int core_session_watch(struct fl_session *s);

#endif
