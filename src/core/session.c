/*
 * Sessions: one per connection (Genode's PD session). Accepting, reading and
 * checking messages, RPC dispatch, and sending without ever blocking.
 */
#include "../common/log.h"
#include "../common/probe.h"
#include "agent.h"
#include "fault.h"
#include "loop.h"
#include "mapping.h"
#include "object.h"
#include "pd.h"
#include "peer.h"
#include "region_map.h"
#include "revoke.h"
#include "rpc.h"
#include "session.h"
#include "sync_channel.h"
#include "uffd.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void session_event(void *arg, uint32_t events);

struct fl_session *core_session_by_id(uint64_t id)
{
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
        if (s->id == id && !s->closing) return s;
    }
    return NULL;
}

static void read_comm(pid_t pid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    buf[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0) n = 0;
    buf[n] = 0;
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
}

/* Tell a peer refused at connect why, in a reply with id 0, before closing. */
static void refuse(int fd, int status)
{
    struct fl_msg_reply r;
    fl_msg_init(&r, FL_MSG_REPLY, 0);
    r.status = core_rpc_status(status);
    ssize_t n = send(fd, &r, sizeof(r), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n;
    close(fd);
}

struct fl_session *core_session_new(uint64_t ram_quota, uint64_t cap_quota)
{
    struct fl_session *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->agent = core_agent_new();
    if (!s->agent) {
        free(s);
        return NULL;
    }
    s->id = ++fl_core.next_session_id;
    s->sock = s->uffd = s->pidfd = -1;
    s->ram_quota = ram_quota;
    s->cap_quota = cap_quota;
    fl_list_init(&s->objects);
    fl_list_init(&s->out);
    fl_list_add_tail(&fl_core.sessions, &s->link);
    return s;
}

void core_session_accept(void)
{
    for (int i = 0; i < 16; i++) {
        int fd = accept4(fl_core.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                fl_warn("refusing connection: out of descriptors (%s)", strerror(errno));
            return;
        }
        struct ucred cred;
        socklen_t cl = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
            close(fd);
            continue;
        }
        if (!core_peer_allowed(fd, &cred)) {
            fl_warn("refusing connection from pid %d: uid %u (gid %u) is neither core's uid %u, "
                    "root, nor on the allow-list (%s)",
                    (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid, (unsigned)geteuid(),
                    core_peer_allow_list());
            refuse(fd, -EACCES);
            continue;
        }
        /* A session costs its socket, its uffd and its pidfd. */
        if (core_quota_charge(NULL, 0, 0, 3) < 0) {
            fl_warn("refusing connection from pid %d: core's descriptor budget (%ld) is spent",
                    (int)cred.pid, fl_core.fd_budget);
            refuse(fd, -EBUSY);
            continue;
        }
        struct fl_session *s = core_session_new(fl_core.cfg.ram_quota, fl_core.cfg.cap_quota);
        if (!s) {
            core_quota_release(NULL, 0, 0, 3);
            close(fd);
            continue;
        }
        s->accepted_ms = core_now_ms();
        s->sock = fd;
        s->pid = cred.pid;
        s->uid = cred.uid;
        s->pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
        char comm[20];
        read_comm(cred.pid, comm, sizeof(comm));
        snprintf(s->label, sizeof(s->label), "pid %d (%s)", (int)cred.pid, comm);
        if (core_session_watch(s) < 0) {
            core_session_close(s, "cannot watch its socket");
            continue;
        }
        fl_debug("session %llu: connected, %s", (unsigned long long)s->id, s->label);
    }
}

int core_session_take_connection(struct fl_session *s, struct fl_session *fresh)
{
    /* The fresh session, which owns nothing yet, goes away without touching
     * the descriptors; core_session_reap returns its descriptor charge (s's
     * were reserved when its parent created it). */
    core_loop_unwatch(fresh->watch);
    fresh->watch = NULL;
    s->sock = fresh->sock;
    s->pidfd = fresh->pidfd;
    s->pid = fresh->pid;
    s->uid = fresh->uid;
    s->accepted_ms = fresh->accepted_ms; /* the HELLO is still due */
    char label[sizeof(s->label)];
    snprintf(label, sizeof(label), "%.20s, %.20s", fresh->label, s->label);
    memcpy(s->label, label, sizeof(label));
    fresh->sock = fresh->pidfd = -1;
    fresh->closing = true;
    if (core_session_watch(s) < 0) {
        core_session_close(s, "cannot watch its socket");
        return -1;
    }
    return 0;
}

int core_session_watch(struct fl_session *s)
{
    s->watch = core_loop_watch(s->sock, FL_EV_IN, session_event, s);
    return s->watch ? 0 : -1;
}

static void out_free(struct fl_out_msg *m)
{
    if (m->fd >= 0) close(m->fd);
    free(m);
}

static void log_suppressed(struct fl_session *s, uint64_t now)
{
    if (s->log_suppressed)
        fl_warn("session %llu (%s): %u more lines about it suppressed in %llu ms",
                (unsigned long long)s->id, s->label, s->log_suppressed,
                (unsigned long long)(now - s->log_since_ms));
    s->log_suppressed = 0;
}

bool core_session_log_ok(struct fl_session *s)
{
    uint64_t now = core_now_ms();
    if (now - s->log_since_ms >= 1000) {
        log_suppressed(s, now);
        s->log_since_ms = now;
        s->log_lines = 0;
    }
    if (s->log_lines < FL_LOG_BURST) {
        s->log_lines++;
        return true;
    }
    s->log_suppressed++;
    return false;
}

void core_session_close(struct fl_session *s, const char *why)
{
    /* Only marked here: the caller may be deep inside a walk over regions,
     * maps or sessions that the teardown would change under it. The session
     * stops being served now and is torn down at the end of the loop round
     * (core_session_reap), where no such walk is under way. */
    if (s->closing) return;
    s->closing = true;
    log_suppressed(s, core_now_ms());
    if (why) fl_info("session %llu (%s) closed: %s", (unsigned long long)s->id, s->label, why);
    core_loop_unwatch(s->watch);
    s->watch = NULL;
    core_uffd_stop(s);
}

static void teardown(struct fl_session *s)
{
    s->torn_down = true;
    core_fault_session_gone(s);
    core_agent_session_gone(s);
    core_revoke_session_gone(s);
    core_sync_session_gone(s);
    core_fault_page_session_gone(s);
    /* Release everything the session created, then every capability it held.
     * One at a time from the head: a destruction may take others with it.
     * Before the PD's own end: a child's objects were never charged to core's
     * budget (its parent's funding was), and that is known by its parent_id. */
    /* Its RAM may be mapped by clients: punched only once their agents
     * revoked it (or missed the deadline), as for a free, or they would read
     * zeros meanwhile. The barrier has no reply to hold back. */
    core_revoke_begin(NULL, 0);
    while (!fl_list_empty(&s->objects))
        core_object_destroy(fl_list_entry(s->objects.next, struct fl_object, owner_link));
    core_cap_drop_all(s);
    core_revoke_end();
    core_pd_session_gone(s);
    while (!fl_list_empty(&s->out)) {
        struct fl_list *pos = s->out.next;
        fl_list_del(pos);
        out_free(fl_list_entry(pos, struct fl_out_msg, link));
    }
    /* The final close of a uffd takes the client's mmap lock: off the loop. */
    core_uffd_release(s);
    if (s->sock >= 0) close(s->sock);
    if (s->pidfd >= 0) close(s->pidfd);
    s->sock = s->pidfd = -1;
    core_quota_release(NULL, 0, 0, 3);
}

void core_session_reap(void)
{
    core_session_flush(); /* the round's last words, also to peers now closing */
    /* A teardown can close further sessions (a send to them fails): repeat
     * until none is left, then free them all. */
    for (bool again = true; again;) {
        again = false;
        struct fl_list *pos, *tmp;
        fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
        {
            struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
            if (s->closing && !s->torn_down) {
                teardown(s);
                again = true;
            }
        }
    }
    core_session_flush(); /* what the teardowns sent; none to a session freed here */
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
        if (!s->torn_down) continue;
        fl_list_del(pos);
        core_agent_free(s->agent);
        free(s->caps);
        free(s);
    }
}

void core_session_close_all(void)
{
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        core_session_close(fl_list_entry(pos, struct fl_session, link), NULL);
    }
}

static int send_now(struct fl_session *s, const void *msg, size_t len, int fd)
{
    return fl_wire_send(s->sock, msg, len, fd, MSG_DONTWAIT);
}

static void flush_out(struct fl_session *s)
{
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &s->out)
    {
        struct fl_out_msg *m = fl_list_entry(pos, struct fl_out_msg, link);
        int r = send_now(s, m->buf, m->len, m->fd);
        if (r == -EAGAIN) return;
        if (r < 0) {
            core_session_close(s, "sending to it failed");
            return;
        }
        fl_list_del(pos);
        s->out_count--;
        out_free(m);
    }
    core_loop_modify(s->watch, FL_EV_IN);
}

/* Put a message behind the ones queued for a peer that does not read. */
static int queue_out(struct fl_session *s, const void *msg, size_t len, int fd)
{
    if (s->out_count >= fl_core.cfg.max_out_queue) {
        core_session_close(s, "it stopped reading: its outgoing queue is full");
        return -1;
    }
    struct fl_out_msg *m = malloc(sizeof(*m));
    if (!m || len > sizeof(m->buf)) {
        free(m);
        core_session_close(s, "out of memory queueing a message");
        return -1;
    }
    memcpy(m->buf, msg, len);
    m->len = len;
    m->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    fl_list_add_tail(&s->out, &m->link);
    s->out_count++;
    core_loop_modify(s->watch, FL_EV_IN | FL_EV_OUT);
    return 0;
}

static void send_failed(struct fl_session *s, int r)
{
    core_session_close(s,
                       r == -EPIPE || r == -ECONNRESET ? "peer went away" : "sending to it failed");
}

/*
 * What a round of the loop sends goes out when the round ends, each peer's
 * messages in one sendmmsg: an attach's mapping and resume reach the agent
 * in one call, and it reads them in one wake-up. Core-wide and bounded (a
 * full batch goes out at once), so nothing here is a session's to pay for.
 */
static struct {
    struct fl_session *s;
    size_t len;
    _Alignas(8) uint8_t buf[FL_MSG_MAX];
} batch[64];
static unsigned nbatch;

void core_session_flush(void)
{
    struct fl_wire_tx tx[FL_WIRE_BATCH];
    for (unsigned i = 0; i < nbatch; i++) {
        struct fl_session *s = batch[i].s;
        if (!s) continue;
        /* This session's messages, in order, FL_WIRE_BATCH at a time. */
        for (unsigned j = i; j < nbatch;) {
            unsigned n = 0, from[FL_WIRE_BATCH];
            for (; j < nbatch && n < FL_WIRE_BATCH; j++)
                if (batch[j].s == s) {
                    from[n] = j;
                    tx[n++] = (struct fl_wire_tx){batch[j].buf, batch[j].len};
                    batch[j].s = NULL;
                }
            if (n == 0 || s->torn_down) continue; /* its socket is gone */
            int r = s->out_count ? 0 : fl_wire_send_many(s->sock, tx, n, MSG_DONTWAIT);
            if (r == -EAGAIN) r = 0;
            if (r < 0) {
                if (!s->closing) send_failed(s, r);
                continue;
            }
            /* The peer's buffer is full: the rest waits for it to read. */
            for (unsigned k = (unsigned)r; k < n && !s->closing; k++)
                queue_out(s, batch[from[k]].buf, batch[from[k]].len, -1);
        }
    }
    nbatch = 0;
}

int core_session_send(struct fl_session *s, const void *msg, size_t len, int fd)
{
    if (s->closing) return -1;
    if (s->out_count) return queue_out(s, msg, len, fd);
    if (fd < 0 && len <= sizeof(batch[0].buf)) {
        if (nbatch == sizeof(batch) / sizeof(batch[0])) core_session_flush();
        if (s->out_count) return queue_out(s, msg, len, fd);
        batch[nbatch].s = s;
        batch[nbatch].len = len;
        memcpy(batch[nbatch].buf, msg, len);
        nbatch++;
        return 0;
    }
    /* A descriptor goes now, after what this round sent before it. */
    core_session_flush();
    if (s->closing) return -1;
    if (s->out_count) return queue_out(s, msg, len, fd);
    int r = send_now(s, msg, len, fd);
    if (r == 0) return 0;
    if (r != -EAGAIN) {
        send_failed(s, r);
        return -1;
    }
    return queue_out(s, msg, len, fd);
}

void core_session_reply(struct fl_session *s, uint64_t req_id, int status, const uint64_t *vals,
                        unsigned nvals)
{
    struct fl_msg_reply r;
    FL_PROBE3(rpc_end, s->id, req_id, status);
    fl_msg_init(&r, FL_MSG_REPLY, req_id);
    r.status = core_rpc_status(status);
    for (unsigned i = 0; i < nvals && i < 4; i++) r.val[i] = vals[i];
    core_session_send(s, &r, sizeof(r), -1);
}

/* A descriptor a peer hands us must be of the kind the protocol expects. */
bool core_fd_is_anon(int fd, const char *what)
{
    char path[64], link[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    if (n < 0) return 0;
    link[n] = 0;
    char want[48];
    snprintf(want, sizeof(want), "anon_inode:[%s]", what);
    return strcmp(link, want) == 0;
}

/* A uffd with event features would make core's table grow with every fork of
 * the client (EVENT_FORK) or block the agent's mmaps (UNMAP/REMAP/REMOVE). */
static int uffd_features_ok(int fd)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) return 0;
    ssize_t n = read(f, buf, sizeof(buf) - 1);
    close(f);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *api = strstr(buf, "API:");
    if (!api) return 0;
    unsigned long long apiv, features;
    if (sscanf(api, "API:\t%llx:%llx", &apiv, &features) != 2) return 0;
    const unsigned long long events =
        0x2 /*FORK*/ | 0x4 /*REMAP*/ | 0x8 /*REMOVE*/ | 0x40 /*UNMAP*/;
    return (features & events) == 0;
}

void core_session_hello(struct fl_session *s, const struct fl_req_hello *m, int fd)
{
    uint64_t vals[3] = {0, 0, FL_PROTO_VERSION};
    if (m->version != FL_PROTO_VERSION) {
        fl_warn("session %llu (%s): protocol version %u, core speaks %u: refused",
                (unsigned long long)s->id, s->label, m->version, FL_PROTO_VERSION);
        core_session_reply(s, m->hdr.id, -EPROTONOSUPPORT, vals, 3);
        if (fd >= 0) core_worker_close(fd);
        core_session_close(s, NULL);
        return;
    }
    const char *bad = NULL;
    if (!m->window_size || (m->window_size | m->window_base) & (FL_PAGE_SIZE - 1) ||
        m->window_base + m->window_size < m->window_base)
        bad = "window not page-aligned, empty, or wrapping";
    else if (!!(m->flags & FL_HELLO_UFFD) != (fd >= 0))
        bad = "uffd flag and descriptor disagree";
    else if (fd >= 0 && !core_fd_is_anon(fd, "userfaultfd"))
        bad = "the descriptor sent as uffd is not a userfaultfd";
    else if (fd >= 0 && !uffd_features_ok(fd))
        bad = "its userfaultfd has event features enabled (FORK/REMAP/REMOVE/UNMAP)";
    if (bad) {
        if (fd >= 0) core_worker_close(fd);
        core_session_reply(s, m->hdr.id, -EPROTO, vals, 3);
        core_session_close(s, bad);
        return;
    }
    if (s->address_space &&
        (m->window_base != s->window_base || m->window_size != s->window_size)) {
        if (fd >= 0) core_worker_close(fd);
        core_session_reply(s, m->hdr.id, -EPROTO, vals, 3);
        core_session_close(s, "its window is not the one its parent created the session with");
        return;
    }
    s->window_base = m->window_base;
    s->window_size = m->window_size;
    /* A session its parent created has its address space already. */
    if (!s->address_space)
        s->address_space = core_region_map_create(s, m->window_base, m->window_size, false);
    fl_wire_cap as = 0;
    if (!s->address_space || core_cap_insert(s, &s->address_space->obj, &as) < 0) {
        if (fd >= 0) core_worker_close(fd);
        core_session_close(s, "out of memory creating its address space");
        return;
    }
    s->address_space->address_space_of = s;
    if (fd >= 0 && core_uffd_start(s, fd) < 0) {
        core_session_close(s, "cannot read its userfaultfd");
        return;
    }
    s->hello_done = true;
    vals[0] = s->id;
    vals[1] = as;
    fl_info("session %llu: %s, window [%#llx, %#llx)%s", (unsigned long long)s->id, s->label,
            (unsigned long long)m->window_base,
            (unsigned long long)(m->window_base + m->window_size),
            fd < 0 ? ", no userfaultfd (faults are not caught)"
                   : (m->flags & FL_HELLO_USER_MODE_UFFD ? ", user-mode-only userfaultfd" : ""));
    core_session_reply(s, m->hdr.id, 0, vals, 3);
    /* What the parent attached before the child came: map it now. */
    const struct fl_placement *p = &s->address_space->placement;
    for (const struct fl_span *sp = fl_placement_first(p); sp; sp = fl_placement_next(p, sp))
        core_mapping_map_region(sp->owner);
}

/* One datagram from the peer: checked, then dispatched. */
static void session_message(struct fl_session *s, struct fl_wire_rx *m)
{
    if (m->len == 0) {
        core_session_close(s, "peer closed the connection");
        return;
    }
    const char *why = NULL;
    int bad = fl_msg_check(m->buf, (size_t)m->len, &why);
    if (!bad && m->truncated) bad = 1, why = "message or its descriptors truncated";
    if (!bad && (unsigned)m->nfds > fl_msg_max_fds(((struct fl_msg_hdr *)m->buf)->type))
        bad = 1, why = "descriptors attached to a message that carries none";
    if (bad) {
        for (int j = 0; j < m->nfds; j++) core_worker_close(m->fds[j]);
        char reason[128];
        snprintf(reason, sizeof(reason), "protocol violation: %s", why);
        core_session_close(s, reason);
        return;
    }
    core_rpc_dispatch(s, m->buf, m->nfds ? m->fds[0] : -1);
}

static void session_read(struct fl_session *s)
{
    /* Bounded per wake-up, so one chatty peer cannot starve the others; the
     * rest is still there when the loop polls the socket again. Read in
     * batches: a batch that comes back short emptied the socket, so no call
     * is spent to learn that it is empty. */
    struct fl_wire_rx rx[FL_WIRE_BATCH];
    for (int round = 0; round < 2 && !s->closing; round++) {
        int got = fl_wire_recv_many(s->sock, rx, FL_WIRE_BATCH, MSG_DONTWAIT);
        if (got == -EAGAIN || got == -EINTR) return;
        if (got < 0) {
            core_session_close(s, "reading its socket failed");
            return;
        }
        for (int i = 0; i < got; i++) {
            if (s->closing) {
                for (int j = 0; j < rx[i].nfds; j++) core_worker_close(rx[i].fds[j]);
                continue;
            }
            session_message(s, &rx[i]);
        }
        if (got < FL_WIRE_BATCH) return;
    }
}

static void session_event(void *arg, uint32_t events)
{
    struct fl_session *s = arg;
    if (events & FL_EV_OUT) flush_out(s);
    if (!s->closing && (events & (FL_EV_IN | FL_EV_HUP | FL_EV_ERR))) session_read(s);
}

int core_session_check_handshakes(void)
{
    uint64_t now = core_now_ms(), next = UINT64_MAX;
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
        if (s->closing || s->hello_done || !s->accepted_ms) continue;
        uint64_t due = s->accepted_ms + FL_HELLO_TIMEOUT_MS;
        if (due <= now) {
            fl_warn("session %llu (%s): no HELLO within %d ms of connecting",
                    (unsigned long long)s->id, s->label, FL_HELLO_TIMEOUT_MS);
            core_session_close(s, "no HELLO in time");
            next = now; /* its teardown is due: do not sleep before it */
        } else if (due < next) {
            next = due;
        }
    }
    return next == UINT64_MAX ? -1 : (int)(next - now);
}
