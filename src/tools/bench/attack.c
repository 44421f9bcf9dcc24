/*
 * Attacks on core's bookkeeping: forge (forged faulters queued on a managed
 * map, then cheap duplicates that make core walk that queue, beside a healthy
 * peer) and capscale (the per-call cost of fl_rm_create and
 * fl_region_map_dataspace as one session's capability table grows).
 *
 * The attackers talk the wire protocol themselves (a library session cannot
 * forge EXEC_FAULT messages). Core may close an attacker's session at any
 * point (it is meant to, for a forged thread id): that is counted, never an
 * error of the bench.
 */
#include "bench.h"

#include "../../common/protocol.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void report_load(const char *workload)
{
    report_extra(workload, "load average (1 min) at start", load1_now(), "");
}

/* ---- a raw protocol peer ---- */

#define RAW_WINDOW_BASE 0x100000000000ull
#define RAW_WINDOW_SIZE (1ull << 30)

struct raw {
    int fd;
    uint64_t id;
    bool closed; /* core closed the session (or it never opened) */
    uint64_t session_id;
    fl_wire_cap as; /* its address space */
};

typedef void (*raw_line_fn)(const char *text, void *arg);

/* Send one message (fd attached if >= 0). 0, or -FL_E_SESSION_CLOSED. */
static int raw_send(struct raw *r, void *msg, unsigned type, int fd)
{
    if (r->closed) return -FL_E_SESSION_CLOSED;
    struct fl_msg_hdr *h = msg;
    h->magic = FL_PROTO_MAGIC;
    h->type = (uint16_t)type;
    h->reserved = 0;
    if (type == FL_MSG_EXEC_FAULT)
        h->id = 0;
    else if (type != FL_MSG_AGENT_ACK)
        h->id = ++r->id;
    if (fl_wire_send(r->fd, msg, fl_msg_size(type), fd, 0) == 0) return 0;
    r->closed = true; /* EPIPE, ECONNRESET: core hung up */
    return -FL_E_SESSION_CLOSED;
}

/* One message from core into buf (FL_MSG_MAX bytes; descriptors closed).
 * Returns its type, 0 when the session is closed, -1 on timeout. */
static int raw_recv(struct raw *r, void *buf, int timeout_ms)
{
    if (r->closed) return 0;
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    for (;;) {
        int k = poll(&p, 1, timeout_ms);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) return -1;
        if (k < 0) {
            r->closed = true;
            return 0;
        }
        break;
    }
    union {
        char b[CMSG_SPACE(sizeof(int) * FL_WIRE_MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = buf, .iov_len = FL_MSG_MAX};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)};
    ssize_t n;
    while ((n = recvmsg(r->fd, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    if (n > 0)
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < nfd; i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                    close(fd);
                }
            }
    if (n < (ssize_t)sizeof(struct fl_msg_hdr)) {
        r->closed = true;
        return 0;
    }
    int type = ((struct fl_msg_hdr *)buf)->type;
    return type > 0 ? type : -1;
}

/* What is not a reply: agent instructions are acknowledged (nothing is
 * mapped here), lines of a dump go to line(). */
static void raw_async(struct raw *r, const void *buf, raw_line_fn line, void *arg)
{
    const struct fl_msg_hdr *h = buf;
    switch (h->type) {
    case FL_MSG_AGENT_MAP:
    case FL_MSG_AGENT_REVOKE:
    case FL_MSG_AGENT_FORGET:
    case FL_MSG_AGENT_SIGBUS:
    case FL_MSG_AGENT_RESUME:
    case FL_MSG_AGENT_FAULT_PAGE: {
        struct fl_msg_agent_ack a = {.hdr.id = h->id};
        raw_send(r, &a, FL_MSG_AGENT_ACK, -1);
        break;
    }
    case FL_MSG_CTL_LINE:
        if (line) {
            const struct fl_msg_ctl_line *l = buf;
            char text[sizeof(l->text) + 1];
            memcpy(text, l->text, sizeof(l->text));
            text[sizeof(l->text)] = 0;
            line(text, arg);
        }
        break;
    default: break;
    }
}

/* A request and its reply. Returns the reply's status, -FL_E_SESSION_CLOSED,
 * or -FL_E_SYSTEM when no reply came within timeout_ms. */
static int raw_call(struct raw *r, void *msg, unsigned type, int fd, struct fl_msg_reply *rep,
                    int timeout_ms, raw_line_fn line, void *arg)
{
    if (raw_send(r, msg, type, fd) < 0) return -FL_E_SESSION_CLOSED;
    uint64_t id = ((struct fl_msg_hdr *)msg)->id;
    uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        _Alignas(8) uint8_t buf[FL_MSG_MAX];
        uint64_t t = now_ns();
        if (t >= end) return -FL_E_SYSTEM;
        int k = raw_recv(r, buf, (int)((end - t) / 1000000 + 1));
        if (k == 0) return -FL_E_SESSION_CLOSED;
        if (k < 0) continue;
        if (k == FL_MSG_REPLY && ((struct fl_msg_hdr *)buf)->id == id) {
            memcpy(rep, buf, sizeof(*rep));
            return rep->status;
        }
        raw_async(r, buf, line, arg);
    }
}

static int raw_open(struct raw *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->closed = true;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *path = getenv("FAULTLINE_SOCKET");
    if (!path || strlen(path) >= sizeof(sa.sun_path)) return -FL_E_NO_CORE;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    r->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (r->fd < 0) return -FL_E_SYSTEM;
    if (connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) return -FL_E_NO_CORE;
    r->closed = false;
    struct fl_req_hello h = {.version = FL_PROTO_VERSION,
                             .window_base = RAW_WINDOW_BASE,
                             .window_size = RAW_WINDOW_SIZE};
    struct fl_msg_reply rep;
    int e = raw_call(r, &h, FL_REQ_HELLO, -1, &rep, 30000, NULL, NULL);
    if (e < 0) return e;
    r->session_id = rep.val[0];
    r->as = rep.val[1];
    return 0;
}

/* Import a dataspace by its token and attach it into the own address space;
 * *va: where. */
static int raw_import_attach(struct raw *r, const uint8_t token[FL_TOKEN_BYTES], uint64_t *va)
{
    struct fl_msg_reply rep;
    struct fl_req_cap_import imp = {0};
    memcpy(imp.token, token, FL_TOKEN_BYTES);
    int e = raw_call(r, &imp, FL_REQ_CAP_IMPORT, -1, &rep, 30000, NULL, NULL);
    if (e < 0) return e;
    struct fl_req_rm_attach at = {.rm = r->as, .ds = rep.val[0], .flags = FL_ATTACH_WRITEABLE};
    e = raw_call(r, &at, FL_REQ_RM_ATTACH, -1, &rep, 30000, NULL, NULL);
    if (e < 0) return e;
    *va = rep.val[0];
    return 0;
}

/* A round trip: every message sent before it has been processed. */
static int raw_sync(struct raw *r, int timeout_ms)
{
    struct fl_req_session_info q = {0};
    struct fl_msg_reply rep;
    return raw_call(r, &q, FL_REQ_SESSION_INFO, -1, &rep, timeout_ms, NULL, NULL);
}

/* ---- forge: forged faulters, then duplicates, beside a healthy peer ---- */

#define FORGE_ATTACKERS 48
#define FORGE_FAULTERS  120000
#define FORGE_MAP_PAGES 256
#define FORGE_TID_BASE  0x10000000u /* beyond any pid_max: no such thread */
#define FORGE_PERIOD_NS 2000000ull  /* the healthy peer's round trips */
#define FORGE_BATCH     1000        /* forged messages between two round trips */

enum { PH_IDLE, PH_ATTACK, PH_PAUSE, PH_STOP };

struct forge_shm {
    long nforge;
    struct chan ready, h_go, h_done;
    /* the map's owner and the forger (one worker, two sessions) */
    uint8_t tok[FORGE_ATTACKERS + 1][FL_TOKEN_BYTES];
    int ntok;      /* tokens the owner made */
    int owner_err; /* 0, or the FL_E_* its set-up stopped at */
    int forger_err;
    bool owner_closed, forger_closed;
    long forged_sent, forged_confirmed; /* confirmed: a round trip after them came back */
    long forged_queued;                 /* faulters core's dump shows, -1: unknown */
    uint64_t forge_ns;
    /* attackers */
    _Atomic int phase, gen;
    _Atomic int closed[FORGE_ATTACKERS];  /* by core */
    _Atomic int failed[FORGE_ATTACKERS];  /* set-up refused (e.g. the map is gone) */
    _Atomic int drained[FORGE_ATTACKERS]; /* gen of the pause whose backlog is processed */
    _Atomic uint64_t sent[FORGE_ATTACKERS];
    /* the healthy peer */
    int h_kind; /* 0: alone, 1: under attack */
    uint64_t h_dur_ns;
    size_t cap, n[2], nlate[2];
    uint64_t *late; /* ns its timer woke it late (CPU contention); [kind * cap + i] */
    uint64_t lat[]; /* ns; [kind * cap + i] */
};

struct dump_count {
    long faults, dropped;
};

static void count_line(const char *text, void *arg)
{
    struct dump_count *c = arg;
    unsigned long n;
    if (!strncmp(text, "fault ", 6))
        c->faults++;
    else if (sscanf(text, "... %lu more lines left out", &n) == 1)
        c->dropped = (long)n;
}

static void forger_idle(struct forge_shm *sh, struct raw *own, struct raw *fg)
{
    /* Keep reading both sessions until the bench is done. */
    while (atomic_load(&sh->phase) != PH_STOP) {
        struct pollfd p[2] = {{.fd = own->closed ? -1 : own->fd, .events = POLLIN},
                              {.fd = fg->closed ? -1 : fg->fd, .events = POLLIN}};
        if (poll(p, 2, 100) <= 0) continue;
        struct raw *r[2] = {own, fg};
        for (int i = 0; i < 2; i++) {
            if (!p[i].revents) continue;
            _Alignas(8) uint8_t buf[FL_MSG_MAX];
            if (raw_recv(r[i], buf, 0) > 0) raw_async(r[i], buf, NULL, NULL);
        }
    }
}

static int forge_forger(void *arg)
{
    worker_name("forge-forger");
    struct forge_shm *sh = arg;
    struct raw own, fg;
    struct fl_msg_reply rep;
    memset(&fg, 0, sizeof(fg));
    fg.fd = -1;
    fg.closed = true;
    sh->forged_queued = -1;

    /* The owner: the map, its fault handler (never served), its dataspace
     * and a token for the forger and each attacker. */
    int e = raw_open(&own);
    fl_wire_cap sigh = 0, rms = 0, rm = 0, mds = 0;
    if (e == 0) {
        int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0) die("eventfd");
        struct fl_req_sig_alloc q = {0};
        e = raw_call(&own, &q, FL_REQ_SIG_ALLOC, efd, &rep, 30000, NULL, NULL);
        sigh = rep.val[0];
        /* Core holds its own copy; ours is never read. */
    }
    if (e == 0) {
        struct fl_req_rm_session_open q = {.ram_quota = 64 << 10, .cap_quota = 2};
        e = raw_call(&own, &q, FL_REQ_RM_SESSION_OPEN, -1, &rep, 30000, NULL, NULL);
        rms = rep.val[0];
    }
    if (e == 0) { /* the open's two capabilities pay for the session itself */
        struct fl_req_rm_session_upgrade q = {.rms = rms, .cap_quota = 1};
        e = raw_call(&own, &q, FL_REQ_RM_SESSION_UPGRADE, -1, &rep, 30000, NULL, NULL);
    }
    if (e == 0) {
        struct fl_req_rm_create q = {.rms = rms, .size = FORGE_MAP_PAGES * PAGE};
        e = raw_call(&own, &q, FL_REQ_RM_CREATE, -1, &rep, 30000, NULL, NULL);
        rm = rep.val[0];
    }
    if (e == 0) {
        struct fl_req_rm_fault_handler q = {.rm = rm, .sigh = sigh};
        e = raw_call(&own, &q, FL_REQ_RM_FAULT_HANDLER, -1, &rep, 30000, NULL, NULL);
    }
    if (e == 0) {
        struct fl_req_cap q = {.cap = rm};
        e = raw_call(&own, &q, FL_REQ_RM_DATASPACE, -1, &rep, 30000, NULL, NULL);
        mds = rep.val[0];
    }
    for (int k = 0; e == 0 && k <= FORGE_ATTACKERS; k++) {
        struct fl_req_cap q = {.cap = mds};
        e = raw_call(&own, &q, FL_REQ_CAP_EXPORT, -1, &rep, 30000, NULL, NULL);
        if (e == 0) memcpy(sh->tok[sh->ntok++], rep.token, FL_TOKEN_BYTES);
    }
    sh->owner_err = e;
    sh->owner_closed = own.closed;

    /* The forger: the map's dataspace in its own address space, then one
     * fault message per made-up thread. */
    uint64_t va = 0;
    if (e == 0) e = raw_open(&fg);
    if (e == 0) e = raw_import_attach(&fg, sh->tok[0], &va);
    uint64_t t0 = now_ns();
    for (long k = 0; e == 0 && k < sh->nforge; k++) {
        struct fl_msg_exec_fault m = {.tid = FORGE_TID_BASE + (uint32_t)k,
                                      .addr = va + (uint64_t)(k % FORGE_MAP_PAGES) * PAGE};
        e = raw_send(&fg, &m, FL_MSG_EXEC_FAULT, -1);
        if (e < 0) break;
        sh->forged_sent = k + 1;
        if ((k + 1) % FORGE_BATCH == 0 || k + 1 == sh->nforge) {
            e = raw_sync(&fg, 600000);
            if (e == 0) sh->forged_confirmed = k + 1;
        }
    }
    sh->forge_ns = now_ns() - t0;
    sh->forger_err = e;
    sh->forger_closed = fg.closed;

    /* How many faulters wait on the map now, from core's own dump. */
    if (!own.closed) {
        struct fl_req_ctl_dump q = {.what = FL_CTL_FAULTS};
        struct dump_count c = {0, 0};
        if (raw_call(&own, &q, FL_REQ_CTL_DUMP, -1, &rep, 120000, count_line, &c) == 0)
            /* The dropped lines include core's summary line. */
            sh->forged_queued = c.faults + (c.dropped > 0 ? c.dropped - 1 : 0);
    }
    sh->owner_closed = own.closed;
    chan_post(&sh->ready, 1);
    forger_idle(sh, &own, &fg);
    return 0;
}

static int forge_attacker(void *arg)
{
    worker_name("forge-attacker");
    struct forge_shm *sh = arg;
    int i = worker_index;
    struct raw r;
    uint64_t va = 0;
    int e = raw_open(&r);
    if (e == 0 && i + 1 >= sh->ntok) e = -FL_E_TOKEN;
    if (e == 0) e = raw_import_attach(&r, sh->tok[i + 1], &va);
    bool ok = e == 0;
    if (!ok) atomic_store(r.closed ? &sh->closed[i] : &sh->failed[i], 1);
    chan_post(&sh->ready, 1);

    /* One identical fault message, as fast as core takes it: the own thread
     * (a real one: it passes a check of the thread id). */
    struct fl_msg_exec_fault m = {.tid = (uint32_t)syscall(SYS_gettid), .addr = va};
    for (;;) {
        int ph = atomic_load(&sh->phase);
        if (ph == PH_STOP) break;
        bool live = ok && !r.closed;
        if (ph == PH_ATTACK && live) {
            if (raw_send(&r, &m, FL_MSG_EXEC_FAULT, -1) < 0)
                atomic_store(&sh->closed[i], 1);
            else
                atomic_fetch_add_explicit(&sh->sent[i], 1, memory_order_relaxed);
            continue;
        }
        if (ph == PH_PAUSE) {
            int g = atomic_load(&sh->gen);
            if (atomic_load(&sh->drained[i]) != g) {
                /* Its backlog is processed when this comes back. */
                if (live && raw_sync(&r, 300000) == -FL_E_SESSION_CLOSED)
                    atomic_store(&sh->closed[i], 1);
                atomic_store(&sh->drained[i], g);
            }
        }
        if (!live) {
            /* Nothing to send: drop whatever core says, notice a hang-up. */
            if (ok && !r.closed) {
                _Alignas(8) uint8_t buf[FL_MSG_MAX];
                if (raw_recv(&r, buf, 0) > 0) raw_async(&r, buf, NULL, NULL);
            }
        }
        sleep_us(10000);
    }
    return 0;
}

static int forge_healthy(void *arg)
{
    worker_name("forge-healthy");
    struct forge_shm *sh = arg;
    struct fl_env *env = env_open(0);
    struct fl_session_info info;
    FL_CHECK(fl_env_session_info(env, &info));
    chan_post(&sh->ready, 1);
    while (chan_wait(&sh->h_go, 1, -1) == 0) {
        int kind = sh->h_kind;
        uint64_t start = now_ns(), end = start + sh->h_dur_ns, next = start;
        while (now_ns() < end) {
            next += FORGE_PERIOD_NS;
            uint64_t t = now_ns();
            if (next > t) {
                struct timespec ts = {(time_t)(next / 1000000000ull), (long)(next % 1000000000ull)};
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
                }
                uint64_t w = now_ns();
                if (sh->nlate[kind] < sh->cap)
                    sh->late[(size_t)kind * sh->cap + sh->nlate[kind]++] = w - next;
            } else {
                next = t; /* late (a slow round trip): no burst to catch up */
            }
            t = now_ns();
            FL_CHECK(fl_env_session_info(env, &info));
            uint64_t d = now_ns() - t;
            if (sh->n[kind] < sh->cap) sh->lat[(size_t)kind * sh->cap + sh->n[kind]++] = d;
        }
        chan_post(&sh->h_done, 1);
    }
    return 0;
}

/* One phase of the healthy peer's round trips; *core_pct: core's CPU. */
static int forge_phase(struct forge_shm *sh, int kind, uint64_t dur_ns, double *core_pct,
                       const pid_t *att, double *att_pct)
{
    sh->h_kind = kind;
    sh->h_dur_ns = dur_ns;
    double a0 = 0;
    for (int i = 0; att && i < FORGE_ATTACKERS; i++) a0 += pid_cpu_us(att[i]);
    double c0 = core_cpu_us();
    uint64_t t0 = now_ns();
    chan_post(&sh->h_go, 1);
    if (chan_wait(&sh->h_done, 1, (int)(dur_ns / 1000000) + 120000) < 0) {
        fprintf(stderr, "faultline-bench: forge: the healthy peer did not finish its phase\n");
        return -1;
    }
    double us = (double)(now_ns() - t0) / 1e3;
    *core_pct += (core_cpu_us() - c0) / us * 100.0;
    double a1 = 0;
    for (int i = 0; att && i < FORGE_ATTACKERS; i++) a1 += pid_cpu_us(att[i]);
    *att_pct += (a1 - a0) / us * 100.0;
    return 0;
}

static int count_flags(_Atomic int *a)
{
    int n = 0;
    for (int i = 0; i < FORGE_ATTACKERS; i++) n += atomic_load(&a[i]) != 0;
    return n;
}

/* Stop the attack and wait until core has processed what the attackers
 * queued: the next "alone" phase must not pay for it. */
static void forge_pause(struct forge_shm *sh, double *drain_s)
{
    int g = atomic_fetch_add(&sh->gen, 1) + 1;
    uint64_t t0 = now_ns(), end = t0 + (opts.quick ? 60000000000ull : 120000000000ull);
    atomic_store(&sh->phase, PH_PAUSE);
    for (;;) {
        int waiting = 0;
        for (int i = 0; i < FORGE_ATTACKERS; i++)
            if (atomic_load(&sh->drained[i]) != g && !atomic_load(&sh->closed[i]) &&
                !atomic_load(&sh->failed[i]))
                waiting++;
        if (!waiting) break;
        if (now_ns() > end) {
            char note[128];
            snprintf(note, sizeof(note), "%d attackers' backlogs not processed %d s after a pause",
                     waiting, opts.quick ? 60 : 120);
            report_note("forge", note);
            break;
        }
        sleep_us(5000);
    }
    double s = (double)(now_ns() - t0) / 1e9;
    if (s > *drain_s) *drain_s = s;
}

static double max_of(const double *us, size_t n)
{
    return n ? us[n - 1] : NAN; /* sorted by stats_of */
}

int wl_forge(void)
{
    report_load("forge");
    int rounds = 2;
    uint64_t side_ns = opts.quick ? 2000000000ull : 10000000000ull;
    uint64_t phase_ns = side_ns / (uint64_t)rounds;
    size_t cap = (size_t)(side_ns / FORGE_PERIOD_NS) + 1000;
    size_t sz = sizeof(struct forge_shm) + 4 * cap * sizeof(uint64_t);
    struct forge_shm *sh = shm_alloc(sz);
    sh->cap = cap;
    sh->late = sh->lat + 2 * cap;
    sh->nforge = FORGE_FAULTERS;
    atomic_store(&sh->phase, PH_IDLE);
    CHANS_OPEN(&sh->ready, &sh->h_go, &sh->h_done);
    pid_t healthy = 0, forger = 0, att[FORGE_ATTACKERS] = {0};
    int rc = -1;
    double pct_alone = 0, pct_attack = 0, drain_s = 0, att_alone = 0, att_attack = 0;
    uint64_t sent = 0;

    healthy = spawn(forge_healthy, sh);
    if (chan_wait(&sh->ready, 1, 30000) < 0) goto out;
    /* Alone first, before any attacker exists. */
    if (forge_phase(sh, 0, phase_ns, &pct_alone, NULL, &att_alone) < 0) goto out;

    forger = spawn(forge_forger, sh);
    if (chan_wait(&sh->ready, 1, opts.quick ? 200000 : 600000) < 0) goto out;
    for (int i = 0; i < FORGE_ATTACKERS; i++) att[i] = spawn_nth(forge_attacker, sh, i);
    if (chan_wait(&sh->ready, FORGE_ATTACKERS, 120000) < 0) goto out;

    for (int r = 0; r < rounds; r++) {
        if (r > 0 && forge_phase(sh, 0, phase_ns, &pct_alone, att, &att_alone) < 0) goto out;
        uint64_t s0 = 0, s1 = 0;
        for (int i = 0; i < FORGE_ATTACKERS; i++) s0 += atomic_load(&sh->sent[i]);
        atomic_store(&sh->phase, PH_ATTACK);
        sleep_us(100000); /* every attacker is sending */
        int e = forge_phase(sh, 1, phase_ns, &pct_attack, att, &att_attack);
        for (int i = 0; i < FORGE_ATTACKERS; i++) s1 += atomic_load(&sh->sent[i]);
        sent += s1 - s0;
        forge_pause(sh, &drain_s);
        if (e < 0) goto out;
    }
    atomic_store(&sh->phase, PH_STOP);

    double *us[2];
    struct stats st[2];
    double thr[2], worst[2];
    for (int k = 0; k < 2; k++) {
        us[k] = malloc((sh->n[k] + 1) * sizeof(double));
        if (!us[k]) die("malloc");
        for (size_t i = 0; i < sh->n[k]; i++) us[k][i] = (double)sh->lat[(size_t)k * cap + i] / 1e3;
        stats_of(us[k], sh->n[k], &st[k]);
        worst[k] = max_of(us[k], sh->n[k]);
        thr[k] = (double)sh->n[k] / ((double)side_ns / 1e9);
        free(us[k]);
    }
    char cas[96];
    snprintf(cas, sizeof(cas), "healthy RPC, %d attackers", FORGE_ATTACKERS);
    report("forge", cas, &st[1], thr[1], &st[0], thr[0], "RPCs/s");
    report_note("forge", "faultline = under attack, baseline = alone (same core, alternating "
                         "phases, alone first); the RPC is fl_env_session_info, one per 2 ms");
    report_extra("forge", "healthy RPC worst, alone", worst[0] / 1e3, "ms");
    report_extra("forge", "healthy RPC worst, under attack", worst[1] / 1e3, "ms");
    report_extra("forge", "healthy RPC worst, ratio attack / alone", worst[1] / worst[0], "");
    report_extra("forge", "healthy RPC p99 ratio attack / alone", st[1].p99 / st[0].p99, "");
    bool met = worst[1] <= 20000.0 && st[1].p99 <= 2.0 * st[0].p99;
    report_extra("forge", "target met (worst <= 20 ms, p99 <= 2x alone)", met ? 1 : 0, "");
    report_note("forge", met ? "target (worst <= 20 ms, p99 <= 2x alone): met"
                             : "target (worst <= 20 ms, p99 <= 2x alone): NOT met");
    report_extra("forge", "forged fault messages sent (made-up thread ids)",
                 (double)sh->forged_sent, "");
    report_extra("forge", "forged fault messages confirmed processed (a later RPC returned)",
                 (double)sh->forged_confirmed, "");
    report_extra("forge", "faulters queued on the map after forging (core's dump; -1: unknown)",
                 (double)sh->forged_queued, "");
    report_extra("forge", "forger session closed by core", sh->forger_closed ? 1 : 0, "");
    report_extra("forge", "forging took", (double)sh->forge_ns / 1e9, "s");
    report_extra("forge", "attacker sessions closed by core", count_flags(sh->closed), "");
    report_extra("forge", "attacker sessions whose set-up core refused", count_flags(sh->failed),
                 "");
    report_extra("forge", "duplicate fault messages sent while attacking",
                 (double)sent / ((double)side_ns / 1e9), "per s");
    report_extra("forge", "core CPU, alone", pct_alone / rounds, "% of one CPU");
    report_extra("forge", "core CPU, under attack", pct_attack / rounds, "% of one CPU");
    report_extra("forge", "attackers' CPU, under attack (all 48)", att_attack / rounds,
                 "% of one CPU");
    for (int k = 0; k < 2; k++) {
        struct stats ls;
        stats_ns(sh->late + (size_t)k * cap, sh->nlate[k], &ls);
        report_extra("forge",
                     k ? "healthy peer's timer wake-up lateness p99, under attack"
                       : "healthy peer's timer wake-up lateness p99, alone",
                     ls.p99 / 1e3, "ms (CPU contention)");
    }
    report_extra("forge", "longest wait for core to process a pause's backlog", drain_s, "s");
    if (sh->owner_err) {
        char note[128];
        snprintf(note, sizeof(note), "the map's owner session stopped at %s%s",
                 fl_error_name(sh->owner_err), sh->owner_closed ? " (closed by core)" : "");
        report_note("forge", note);
    }
    if (sh->forger_err && !sh->forger_closed) {
        char note[128];
        snprintf(note, sizeof(note), "the forger stopped at %s", fl_error_name(sh->forger_err));
        report_note("forge", note);
    }
    report_note("forge", "one owner session holds the map; the forger session imports its "
                         "dataspace, so that closing the forger leaves the map to the attackers, "
                         "who each repeat one fault message of their own (real) thread");
    rc = 0;
out:
    atomic_store(&sh->phase, PH_STOP);
    for (int i = 0; i < FORGE_ATTACKERS; i++) kill_worker(att[i]);
    kill_worker(forger);
    kill_worker(healthy);
    CHANS_CLOSE(&sh->ready, &sh->h_go, &sh->h_done);
    shm_free(sh, sz);
    return rc;
}

/* ---- capscale: one session, many maps and their dataspaces ---- */

#define CAP_EDGE 1000 /* the first and the last calls compared */

struct cap_shm {
    size_t n, made; /* made: maps created with their dataspace capability */
    int err;
    bool err_in_ds;
    struct chan ready, go, done;
    uint64_t total_ns, close_ns;
    struct fl_session_info before, after;
    uint64_t lat[]; /* ns: fl_rm_create [0, n), fl_region_map_dataspace [n, 2n) */
};

static int capscale_worker(void *arg)
{
    worker_name("capscale");
    struct cap_shm *sh = arg;
    struct fl_env *env = env_open(0);
    fl_cap rms;
    FL_CHECK(fl_rm_session_open(env, &rms));
    FL_CHECK(fl_env_session_info(env, &sh->before));
    chan_post(&sh->ready, 1);
    if (chan_wait(&sh->go, 1, -1) < 0) return 0;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < sh->n; i++) {
        fl_cap rm, ds;
        uint64_t t = now_ns();
        int e = fl_rm_create(env, rms, PAGE, &rm);
        uint64_t t1 = now_ns();
        if (e < 0) {
            sh->err = e;
            break;
        }
        e = fl_region_map_dataspace(env, rm, &ds);
        uint64_t t2 = now_ns();
        if (e < 0) {
            sh->err = e;
            sh->err_in_ds = true;
            break;
        }
        sh->lat[i] = t1 - t;
        sh->lat[sh->n + i] = t2 - t1;
        sh->made = i + 1;
    }
    sh->total_ns = now_ns() - t0;
    FL_CHECK(fl_env_session_info(env, &sh->after));
    chan_post(&sh->done, 1);
    if (chan_wait(&sh->go, 1, -1) < 0) return 0;
    t0 = now_ns();
    fl_env_close(env);
    sh->close_ns = now_ns() - t0;
    chan_post(&sh->done, 1);
    return 0;
}

static void edge_stats(const uint64_t *ns, size_t from, struct stats *st, double *thr)
{
    uint64_t sum = 0;
    for (size_t i = from; i < from + CAP_EDGE; i++) sum += ns[i];
    stats_ns(ns + from, CAP_EDGE, st);
    *thr = sum ? (double)CAP_EDGE / ((double)sum / 1e9) : NAN;
}

int wl_capscale(void)
{
    report_load("capscale");
    size_t n = opts.quick ? 10000 : 100000;
    size_t sz = sizeof(struct cap_shm) + 2 * n * sizeof(uint64_t);
    struct cap_shm *sh = shm_alloc(sz);
    sh->n = n;
    CHANS_OPEN(&sh->ready, &sh->go, &sh->done);
    int rc = -1;
    pid_t w = spawn(capscale_worker, sh);
    if (chan_wait(&sh->ready, 1, 30000) < 0) goto out;
    long rss0 = core_status_kb("VmRSS");
    chan_post(&sh->go, 1);
    if (chan_wait(&sh->done, 1, opts.quick ? 150000 : 500000) < 0) goto out;
    long rss1 = core_status_kb("VmRSS");

    size_t done = sh->made;
    if (done >= 2 * CAP_EDGE) {
        static const char *name[] = {"rm_create", "rm dataspace"};
        for (int k = 0; k < 2; k++) {
            struct stats first, last;
            double tf, tl;
            const uint64_t *lat = sh->lat + (size_t)k * n;
            edge_stats(lat, 0, &first, &tf);
            edge_stats(lat, done - CAP_EDGE, &last, &tl);
            char cas[96];
            snprintf(cas, sizeof(cas), "%s, last %d/%zu", name[k], CAP_EDGE, done);
            report("capscale", cas, &last, tl, &first, tf, "calls/s");
        }
        report_note("capscale", "faultline = the last 1000 calls, baseline = the first 1000 "
                                "(target: p50 ratio <= 1.2)");
    }
    report_extra("capscale", "maps created (each with its dataspace capability)", (double)done, "");
    report_extra("capscale", "total time, both calls", (double)sh->total_ns / 1e9, "s");
    report_extra("capscale", "session cap_used before", (double)sh->before.cap_used, "");
    report_extra("capscale", "session cap_used after", (double)sh->after.cap_used, "");
    report_extra("capscale", "session cap_used per map",
                 done ? (double)(sh->after.cap_used - sh->before.cap_used) / (double)done : NAN,
                 "");
    report_extra("capscale", "session ram_used per map",
                 done ? (double)(sh->after.ram_used - sh->before.ram_used) / (double)done : NAN,
                 "bytes");
    report_extra("capscale", "core VmRSS growth", (double)(rss1 - rss0) / 1024.0, "MiB");
    report_extra("capscale", "core VmRSS growth per map",
                 done ? (double)(rss1 - rss0) * 1024.0 / (double)done : NAN, "bytes");
    if (sh->err) {
        char note[160];
        snprintf(note, sizeof(note), "stopped after %zu maps: %s failed with %s", done,
                 sh->err_in_ds ? "fl_region_map_dataspace" : "fl_rm_create",
                 fl_error_name(sh->err));
        report_note("capscale", note);
    }
    chan_post(&sh->go, 1);
    if (chan_wait(&sh->done, 1, 60000) == 0)
        report_extra("capscale", "closing the session (fl_env_close)", (double)sh->close_ns / 1e6,
                     "ms");
    else
        report_note("capscale", "closing the session took longer than 60 s");
    rc = done == n ? 0 : -1;
out:
    kill_worker(w);
    CHANS_CLOSE(&sh->ready, &sh->go, &sh->done);
    shm_free(sh, sz);
    return rc;
}
