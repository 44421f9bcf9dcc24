/*
 * libFuzzer harness: a whole core in this process, driven through its
 * internal API (core.h), fed a byte stream as datagrams on up to two client
 * connections (format: fuzz_input.h). Core runs as in main.c but with the
 * epoll backend, a private socket, small quotas, and without its signalfd or
 * deadline checks: a missed revocation deadline would SIGKILL the harness,
 * which is its own peer.
 *
 * Every iteration ends with both connections closed and core back at its
 * baseline: no session, no descriptor more than at the start, no RAM or
 * descriptor charge. A breach
 * aborts with the numbers (a leak that never settles shows as a timeout).
 * The same file builds without libFuzzer for replay.c.
 */
#include "core.h"
#include "fuzz_input.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

/* Core's state is defined in main.c, which the harness replaces. */
struct fl_core fl_core;
void core_signal_watchdog_stop(void);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SENT_RING 64

struct sent {
    uint64_t id;
    uint16_t type;
    bool answered;
};

struct conn {
    int fd;        /* the client end, -1 while not connected */
    int core_sock; /* core's end: finds the session serving it, -1 once it is gone */
    fl_wire_cap caps[FZ_LEARNED];
    unsigned ncaps;
    uint64_t addrs[FZ_LEARNED];
    unsigned naddrs;
    uint64_t last_seq; /* of the last agent instruction received */
    bool stalled;      /* its last record said FZ_NO_DRAIN: core's messages stay unread */
    int uffd;          /* a copy of the uffd its window is registered with, or -1 */
    struct sent sent[SENT_RING];
    unsigned nsent;
};

static struct conn conns[2];
static uint8_t *windows[2]; /* each connection's window, FZ_WINDOW_PAGES */
#define WINDOW_LEN (FZ_WINDOW_PAGES * FL_PAGE_SIZE)

/* Threads touching a window (FZ_TOUCH); they post touch_efd when through. */
struct toucher {
    pthread_t thread;
    volatile uint8_t *p;
    bool write;
};
#define MAX_TOUCHERS 16
static struct toucher touchers[MAX_TOUCHERS];
static int ntouchers, touch_efd = -1;
static uint8_t last_token[FL_TOKEN_BYTES];
static char dir[64], sock_path[108];
static int baseline_fds;
static bool initialised;

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) abort();
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void list_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[300], link[256];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        link[n < 0 ? 0 : n] = 0;
        fprintf(stderr, "  fd %s -> %s\n", e->d_name, link);
    }
    closedir(d);
}

static void core_fini(void)
{
    for (int i = 0; i < 2; i++)
        if (conns[i].fd >= 0) close(conns[i].fd);
    core_session_close_all();
    core_session_reap();
    core_worker_stop();
    core_signal_watchdog_stop();
    close(fl_core.listen_fd);
    core_loop_fini();
    unlink(sock_path);
    rmdir(dir);
}

static void core_init(void)
{
    initialised = true;
    fl_log_prefix = "faultline-core (fuzz)";
    /* Silent: a rejected message is the normal case here. */
    const char *lv = getenv("FL_FUZZ_LOG");
    fl_log_level = lv ? atoi(lv) : -1;
    signal(SIGPIPE, SIG_IGN);
    fl_core.cfg = (struct fl_core_config){
        .backend = FL_BACKEND_EPOLL,
        /* Small enough that quota and budget limits are reachable, and that
         * every alloc and punch is a single worker slice. */
        .ram_budget = 4ull << 20,
        .ram_quota = 1ull << 20,
        .cap_quota = 64,
        .max_out_queue = 16,
        .revoke_deadline_ms = 2000,
    };
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    fl_core.fd_budget = (long)rl.rlim_cur - 64;
    fl_list_init(&fl_core.sessions);
    snprintf(dir, sizeof(dir), "/tmp/fl-fuzz-XXXXXX");
    if (!mkdtemp(dir)) abort();
    snprintf(sock_path, sizeof(sock_path), "%s/core.sock", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    fl_core.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fl_core.listen_fd < 0 || bind(fl_core.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fl_core.listen_fd, 16) < 0 || core_loop_init(FL_BACKEND_EPOLL) < 0 ||
        core_worker_start() < 0 || core_signal_watchdog_start() < 0) {
        fprintf(stderr, "fuzz_session: cannot start core: %s\n", strerror(errno));
        abort();
    }
    for (int i = 0; i < 2; i++) {
        conns[i].fd = conns[i].core_sock = conns[i].uffd = -1;
        windows[i] =
            mmap(NULL, WINDOW_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (windows[i] == MAP_FAILED) abort();
    }
    touch_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (touch_efd < 0) abort();
    atexit(core_fini);
}

static struct fl_session *conn_session(struct conn *c)
{
    if (c->core_sock < 0) return NULL;
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
        if (s->sock == c->core_sock && !s->closing) return s;
    }
    /* Forget the number at once: core closes it and may reuse it. */
    c->core_sock = -1;
    return NULL;
}

static void conn_open(struct conn *c)
{
    if (c->uffd >= 0) close(c->uffd);
    memset(c, 0, sizeof(*c));
    c->core_sock = c->uffd = -1;
    c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno, n = 0;
        struct fl_list *pos;
        for (pos = fl_core.sessions.next; pos != &fl_core.sessions; pos = pos->next) n++;
        fprintf(
            stderr, "fuzz_session: %s to core failed: %s (%d sessions, %ld of %ld descriptors)\n",
            c->fd < 0 ? "socket" : "connect", strerror(e), n, fl_core.fd_used, fl_core.fd_budget);
        abort();
    }
    uint64_t before = fl_core.next_session_id;
    core_session_accept();
    if (fl_core.next_session_id != before) {
        struct fl_session *s =
            fl_list_entry(fl_core.sessions.prev, struct fl_session, link); /* the newest */
        c->core_sock = s->sock;
    }
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static int make_uffd(uint64_t features)
{
    int fd = -1;
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        close(dev);
    }
    if (fd < 0) fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0) return -1;
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    ioctl(fd, UFFDIO_API, &api); /* a failure leaves a uffd without API: wrong kind, fine */
    return fd;
}

/* The first uffd of a connection gets its window registered (MISSING), so
 * that FZ_TOUCH makes real faults; the harness keeps a copy to poll. */
static int window_uffd(struct conn *c)
{
    int fd = make_uffd(UFFD_FEATURE_THREAD_ID);
    if (fd < 0 || c->uffd >= 0) return fd;
    struct uffdio_register reg = {
        .range = {.start = (uintptr_t)windows[c - conns], .len = WINDOW_LEN},
        .mode = UFFDIO_REGISTER_MODE_MISSING};
    /* EBUSY while the uffd of a previous session of this slot lives on. */
    if (ioctl(fd, UFFDIO_REGISTER, &reg) == 0) c->uffd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return fd;
}

static void *touch_run(void *arg)
{
    struct toucher *t = arg;
    if (t->write)
        *t->p = 1;
    else
        (void)*t->p;
    uint64_t one = 1;
    ssize_t n = write(touch_efd, &one, sizeof(one));
    (void)n;
    return NULL;
}

/* Wait until the thread's fault is queued on the uffd for core to read (or
 * the thread got through: the page was there). */
static void touch(struct conn *c, uint8_t arg)
{
    /* FL_FUZZ_NO_TOUCH: under valgrind, which serialises threads, a thread
     * halted in a page fault would stop them all. */
    static int off = -1;
    if (off < 0) off = getenv("FL_FUZZ_NO_TOUCH") != NULL;
    if (off || c->uffd < 0 || ntouchers == MAX_TOUCHERS) return;
    struct toucher *t = &touchers[ntouchers];
    t->p = windows[c - conns] + (arg & (FZ_WINDOW_PAGES - 1)) * FL_PAGE_SIZE;
    t->write = arg & 8;
    if (pthread_create(&t->thread, NULL, touch_run, t)) return;
    ntouchers++;
    struct pollfd pf[2] = {{.fd = c->uffd, .events = POLLIN}, {.fd = touch_efd, .events = POLLIN}};
    poll(pf, 2, -1);
    uint64_t n;
    ssize_t r = read(touch_efd, &n, sizeof(n));
    (void)r;
}

static int make_fd(struct conn *c, enum fz_fd kind)
{
    int p[2];
    switch (kind) {
    case FZ_FD_NONE: return -1;
    case FZ_FD_EVENTFD: return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    case FZ_FD_PIPE:
        if (pipe2(p, O_CLOEXEC) < 0) return -1;
        close(p[1]);
        return p[0];
    case FZ_FD_FILE: return open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    case FZ_FD_MEMFD: return memfd_create("fuzz", MFD_CLOEXEC);
    case FZ_FD_UFFD: return window_uffd(c);
    case FZ_FD_SOCKET:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0) return -1;
        close(p[1]);
        return p[0];
    case FZ_FD_UFFD_EVENTS: return make_uffd(UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE);
    }
    return -1;
}

/* Up to two descriptors; fl_wire_send carries only one. */
static bool send_datagram(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } c;
    memset(&c, 0, sizeof(c));
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        mh.msg_control = c.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
    }
    /* A full socket or a session core already closed: the datagram is lost,
     * as it would be for a real peer. */
    return sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0;
}

static void learn_cap(struct conn *c, uint64_t cap)
{
    if (c->ncaps < FZ_LEARNED) c->caps[c->ncaps++] = cap;
}

static void learn_reply(struct conn *c, const struct fl_msg_reply *r)
{
    struct sent *q = NULL;
    for (unsigned i = c->nsent; i-- > 0 && i + SENT_RING >= c->nsent;)
        if (c->sent[i % SENT_RING].id == r->hdr.id && !c->sent[i % SENT_RING].answered) {
            q = &c->sent[i % SENT_RING];
            break;
        }
    if (!q) return;
    q->answered = true;
    if (r->status != 0) return;
    static const uint8_t zero[FL_TOKEN_BYTES];
    if (memcmp(r->token, zero, sizeof(zero))) memcpy(last_token, r->token, sizeof(last_token));
    if (q->type < FL_MSG_TYPE_MAX && fl_msg_table[q->type].reply_cap)
        learn_cap(c, r->val[fl_msg_table[q->type].reply_cap - 1]);
    switch (q->type) {
    case FL_REQ_RM_ATTACH:
        if (c->naddrs < FZ_LEARNED) c->addrs[c->naddrs++] = r->val[0];
        break;
    case FL_REQ_PD_CLAIM: c->ncaps = c->naddrs = 0; break; /* a different session now */
    default: break;
    }
}

/* Read everything core sent to this connection, as a component's agent would
 * (without executing it); descriptors are closed. */
static void drain(struct conn *c)
{
    if (c->fd < 0) return;
    for (;;) {
        _Alignas(8) uint8_t buf[FL_MSG_MAX + 8];
        int fds[FL_WIRE_MAX_FDS], nfds, trunc;
        ssize_t n = fl_wire_recv(c->fd, buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT, &trunc);
        for (int i = 0; i < nfds; i++) close(fds[i]);
        if (n <= 0) return;
        const char *why;
        if (fl_msg_check(buf, (size_t)n, &why) < 0) {
            fprintf(stderr, "fuzz_session: core sent a malformed message: %s\n", why);
            abort();
        }
        const struct fl_msg_hdr *h = (const void *)buf;
        switch (h->type) {
        case FL_MSG_REPLY: learn_reply(c, (const void *)buf); break;
        case FL_MSG_AGENT_MAP:
        case FL_MSG_AGENT_REVOKE:
        case FL_MSG_AGENT_FORGET:
        case FL_MSG_AGENT_SIGBUS:
        case FL_MSG_AGENT_ACK_NOW: c->last_seq = h->id; break;
        default: break;
        }
    }
}

/* Run the loop until it has nothing to do, reaping as main() does. */
static void pump(void)
{
    for (int i = 0; i < 16; i++) {
        core_session_reap();
        if (core_loop_run_once(0) <= 0) break;
    }
    core_session_reap();
}

static bool answered(struct conn *c, uint64_t id)
{
    for (unsigned i = c->nsent; i-- > 0 && i + SENT_RING >= c->nsent;)
        if (c->sent[i % SENT_RING].id == id) return c->sent[i % SENT_RING].answered;
    return true;
}

static void subst_cap(struct conn *c, uint64_t *cap)
{
    if (*cap >= 1 && *cap <= c->ncaps) *cap = c->caps[*cap - 1];
}

static void substitute(struct conn *c, uint8_t *m, unsigned type)
{
    /* Capability arguments, wherever the protocol's table says they are. */
    const struct fl_msg_info *mi = type < FL_MSG_TYPE_MAX ? &fl_msg_table[type] : NULL;
    for (unsigned i = 0; mi && i < mi->ncaps; i++) {
        uint64_t cap;
        memcpy(&cap, m + mi->cap_off[i], sizeof(cap));
        subst_cap(c, &cap);
        memcpy(m + mi->cap_off[i], &cap, sizeof(cap));
    }
    switch (type) {
    case FL_REQ_HELLO: {
        struct fl_req_hello *h = (void *)m;
        if (h->window_base == 0) {
            h->window_base = (uintptr_t)windows[c - conns];
            h->window_size = WINDOW_LEN;
        }
        break;
    }
    case FL_REQ_PD_CREATE: { /* for a child on the other connection */
        struct fl_req_pd_create *p = (void *)m;
        if (p->window_base == 0) {
            p->window_base = (uintptr_t)windows[c == conns ? 1 : 0];
            p->window_size = WINDOW_LEN;
        }
        break;
    }
    case FL_REQ_RM_DETACH: {
        struct fl_req_rm_detach *d = (void *)m;
        if (d->at >= 1 && d->at <= c->naddrs) d->at = c->addrs[d->at - 1];
        break;
    }
    case FL_MSG_EXEC_FAULT: {
        struct fl_msg_exec_fault *e = (void *)m;
        if (e->addr < FZ_WINDOW_PAGES)
            e->addr = (uintptr_t)windows[c - conns] + e->addr * FL_PAGE_SIZE;
        if (e->tid == 0) e->tid = (uint32_t)gettid(); /* a thread of the sender */
        break;
    }
    case FL_REQ_CAP_IMPORT:
    case FL_REQ_PD_CLAIM: {
        static const uint8_t zero[FL_TOKEN_BYTES];
        uint8_t *token = m + sizeof(struct fl_msg_hdr); /* both carry only the token */
        if (!memcmp(token, zero, sizeof(zero))) memcpy(token, last_token, sizeof(last_token));
        break;
    }
    case FL_MSG_AGENT_ACK: {
        struct fl_msg_hdr *h = (void *)m;
        if (h->id == 0) h->id = c->last_seq;
        break;
    }
    default: break;
    }
}

/* Back to the baseline: no session, every descriptor closed (the worker
 * closes some asynchronously), nothing charged. */
static void settle(void)
{
    for (int i = 0; i < 2; i++) {
        conn_close(&conns[i]);
        if (conns[i].uffd >= 0) close(conns[i].uffd);
        conns[i].uffd = -1;
    }
    pump();
    core_session_close_all();
    for (unsigned round = 0;; round++) {
        pump();
        if (fl_list_empty(&fl_core.sessions) && fl_core.fd_used == 0 && count_fds() == baseline_fds)
            break;
        if (round == 1000) {
            fprintf(stderr,
                    "fuzz_session: still not at the baseline (sessions %s, fd_used %ld, "
                    "descriptors %d, baseline %d): a leak?\n",
                    fl_list_empty(&fl_core.sessions) ? "none" : "left", fl_core.fd_used,
                    count_fds(), baseline_fds);
            list_fds();
        }
        if (round == 30000) { /* 30 s or more: a leak, not slowness */
            fprintf(stderr, "fuzz_session: never back at the baseline\n");
            abort();
        }
        core_loop_run_once(1); /* the worker's completions wake it */
    }
    /* Every uffd is closed: the kernel let the touching threads through. */
    for (int i = 0; i < ntouchers; i++) pthread_join(touchers[i].thread, NULL);
    ntouchers = 0;
    uint64_t n;
    ssize_t r = read(touch_efd, &n, sizeof(n));
    (void)r;
    if (fl_core.ram_used != 0) {
        fprintf(stderr, "fuzz_session: core's RAM charge is %llu with no session left\n",
                (unsigned long long)fl_core.ram_used);
        /* An open bug (tests/fuzz/open/) would stop every run at once: with
         * this set, carry on from a clean charge to look for others. */
        if (!getenv("FL_FUZZ_TOLERATE_RAM_CHARGE")) abort();
        fl_core.ram_used = 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!initialised) core_init();
    /* Taken anew each time: between inputs the fuzzing runtime may open
     * descriptors of its own (the symbolizer's pipes). */
    baseline_fds = count_fds();
    memset(last_token, 0, sizeof(last_token));
    /* Missing again, so that touches fault as in the first iteration. */
    for (int i = 0; i < 2; i++) madvise(windows[i], WINDOW_LEN, MADV_DONTNEED);
    size_t pos = 0;
    while (pos < size) {
        uint8_t ctl = data[pos++];
        struct conn *c = &conns[ctl & FZ_CONN1 ? 1 : 0];
        if (c->fd < 0) conn_open(c);
        _Alignas(8) uint8_t msg[256];
        memset(msg, 0, sizeof(msg));
        size_t len;
        if (ctl & FZ_RAW) {
            len = pos < size ? data[pos++] : 0;
            size_t n = size - pos < len ? size - pos : len;
            memcpy(msg, data + pos, n);
            pos += n;
        } else {
            unsigned type = pos < size ? data[pos++] : 0;
            if (type == FZ_TOUCH) {
                touch(c, pos < size ? data[pos++] : 0);
                pump();
                for (int i = 0; i < 2; i++)
                    if (!conns[i].stalled) drain(&conns[i]);
                continue;
            }
            len = fl_msg_size(type);
            if (!len) len = sizeof(struct fl_msg_hdr);
            size_t n = size - pos < len ? size - pos : len;
            memcpy(msg, data + pos, n);
            pos += n;
            struct fl_msg_hdr *h = (void *)msg;
            h->magic = FL_PROTO_MAGIC;
            h->type = (uint16_t)type;
            h->reserved = 0;
            substitute(c, msg, type);
        }
        int fds[2], nfds = 0;
        int fd = make_fd(c, ctl & FZ_FD_MASK);
        if (fd >= 0) fds[nfds++] = fd;
        if (ctl & FZ_EXTRA_FD) {
            fd = make_fd(c, FZ_FD_EVENTFD);
            if (fd >= 0) fds[nfds++] = fd;
        }
        struct fl_msg_hdr h = {0};
        if (len >= sizeof(h)) memcpy(&h, msg, sizeof(h));
        c->sent[c->nsent++ % SENT_RING] = (struct sent){h.id, h.type, false};
        bool sent = send_datagram(c->fd, msg, len, fds, nfds);
        for (int i = 0; i < nfds; i++) close(fds[i]);
        c->stalled = ctl & FZ_NO_DRAIN;
        pump();
        /* Both: a parent's attach sends map instructions to its child. */
        for (int i = 0; i < 2; i++)
            if (!conns[i].stalled) drain(&conns[i]);
        /* RAM_ALLOC is answered by the worker: wait for it, so that what the
         * next record finds does not depend on thread timing. */
        if (sent && h.type == FL_REQ_RAM_ALLOC && !c->stalled)
            for (int i = 0; i < 1000 && !answered(c, h.id) && conn_session(c); i++) {
                core_loop_run_once(10); /* bounded: only ever a matter of determinism */
                core_session_reap();
                drain(c);
            }
        if (ctl & FZ_CLOSE) conn_close(c);
        for (int i = 0; i < 2; i++) conn_session(&conns[i]);
    }
    settle();
    return 0;
}
