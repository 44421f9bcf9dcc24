/*
 * The yardsticks for reflected faults: what a user would write by hand
 * instead of using faultline.
 *
 * The pipeline (fire and forget). A client registers an anonymous region
 * with its own userfaultfd and hands the uffd (SCM_RIGHTS) to a handler
 * process, which plays core's part, and to a manager process. The handler
 * blocks in read(2) on the uffd (no poll, no read until EAGAIN: a blocking
 * read returns every message already queued), puts each fault into a ring in
 * memory it shares with the manager and writes the manager's eventfd. The
 * manager wakes on the eventfd, takes the faults from the ring and resolves
 * each with one UFFDIO_COPY into the client's uffd, which also wakes the
 * client. Nothing goes back to the handler and nobody waits for a reply: per
 * fault three wake-ups (handler, manager, client), against faultline's
 * signal, fault() from shared memory and attach.
 *
 * The floor: the raw cross-process uffd round trip. The handler process
 * resolves each fault itself with UFFDIO_COPY; there is no manager. Two
 * wake-ups per fault (handler, client).
 *
 * With several clients per handler, the handler has a thread per client
 * uffd (each blocking in read), and the ring takes several producers.
 *
 * Neither has any of faultline's guarantees (no isolation between clients,
 * a handler that blocks on a client's uffd, no sharing: the page is copied),
 * which is exactly why they are the yardstick for what they cost.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BACKING_PAGES 256
#define MAX_PAIRS     8
#define RING          256 /* a power of two, more than the clients of a pair */

/* A bounded multi-producer, single-consumer ring (Vyukov's): slot i is
 * free for position p when seq == p, and holds it when seq == p + 1. */
struct ring {
    _Atomic uint64_t tail; /* producers: the handler's threads */
    uint64_t head;         /* the consumer: the manager */
    struct {
        _Atomic uint64_t seq;
        uint32_t client;
        uint64_t addr;
    } slot[RING];
};

struct pl {
    struct pl_params p;
    int csock[MAX_PAIRS][2]; /* client -> handler: its uffd and region base */
    int msock[MAX_PAIRS][2]; /* client -> manager: the same */
    int efd[MAX_PAIRS];      /* handler -> manager: "a fault is in the ring" */
    int backing;             /* memfd the pages are copied from */
    struct ring ring[MAX_PAIRS];
    struct fault_times *times;
    struct chan ready, go, done, exit;
};

struct hello {
    uint64_t base;
    uint32_t client;
};

int uffd_open(void)
{
    int fd = fl_uffd_new(0, NULL, NULL);
    if (fd < 0) return -1;
    struct uffdio_api api = {.api = UFFD_API};
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct fault_times *times_alloc(size_t n)
{
    return shm_alloc(n * sizeof(struct fault_times));
}

void times_free(struct fault_times **t, size_t n)
{
    shm_free(*t, n * sizeof(**t));
    *t = NULL;
}

uint64_t times_last(const struct fault_times *t, size_t n)
{
    uint64_t last = 0;
    for (size_t i = 0; i < n; i++)
        if (t[i].end > last) last = t[i].end;
    return last;
}

uint64_t touch_units(volatile char *p, struct fault_times *t, size_t units, size_t unit,
                     bool stream)
{
    uint64_t sum = 0;
    for (size_t u = 0; u < units; u++) {
        t[u].t0 = now_ns();
        if (stream) {
            const volatile uint64_t *w = (const volatile uint64_t *)(p + u * unit);
            for (size_t k = 0; k < unit / 8; k++) sum += w[k];
        } else {
            p[u * unit] = 1;
        }
        t[u].end = now_ns();
    }
    return sum;
}

static int send_fd(int sock, const void *buf, size_t len, int fd)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &mh, 0) == (ssize_t)len ? 0 : -1;
}

static int recv_fd(int sock, void *buf, size_t len)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t n;
    while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    if (n != (ssize_t)len) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

static void ring_init(struct ring *r)
{
    atomic_init(&r->tail, 0);
    r->head = 0;
    for (uint64_t i = 0; i < RING; i++) atomic_init(&r->slot[i].seq, i);
}

static void ring_push(struct ring *r, uint32_t client, uint64_t addr)
{
    uint64_t pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
    for (;;) {
        uint64_t seq = atomic_load_explicit(&r->slot[pos % RING].seq, memory_order_acquire);
        if (seq == pos) {
            if (atomic_compare_exchange_weak_explicit(&r->tail, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if ((int64_t)(seq - pos) < 0) {
            /* Full: cannot happen with fewer clients than slots (each has at
             * most one fault outstanding); wait for the manager if it does. */
            sched_yield();
            pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
        } else {
            pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
        }
    }
    r->slot[pos % RING].client = client;
    r->slot[pos % RING].addr = addr;
    atomic_store_explicit(&r->slot[pos % RING].seq, pos + 1, memory_order_release);
}

/* The next fault, or false when none is published yet (a producer that
 * took a slot and has not filled it writes the eventfd after it does). */
static bool ring_pop(struct ring *r, uint32_t *client, uint64_t *addr)
{
    uint64_t pos = r->head;
    uint64_t seq = atomic_load_explicit(&r->slot[pos % RING].seq, memory_order_acquire);
    if (seq != pos + 1) return false;
    *client = r->slot[pos % RING].client;
    *addr = r->slot[pos % RING].addr;
    atomic_store_explicit(&r->slot[pos % RING].seq, pos + RING, memory_order_release);
    r->head = pos + 1;
    return true;
}

/* UFFDIO_COPY of one backing page to addr, which wakes the faulter. A page
 * that is there already (a duplicate fault: EEXIST) woke nobody: wake. */
static void copy_page(int uffd, uint64_t addr, const char *src)
{
    struct uffdio_copy cp = {.dst = addr, .src = (uintptr_t)src, .len = PAGE};
    while (ioctl(uffd, UFFDIO_COPY, &cp) < 0) {
        if (errno == EAGAIN) { /* partial progress: the rest again */
            cp.copy = 0;
            continue;
        }
        if (errno == EEXIST) {
            struct uffdio_range r = {.start = addr, .len = PAGE};
            ioctl(uffd, UFFDIO_WAKE, &r);
            return;
        }
        die("UFFDIO_COPY");
    }
}

static int client(void *arg)
{
    worker_name("pl-client");
    struct pl *pl = arg;
    int idx = worker_index, pair = idx % pl->p.nmgr;
    int uffd = uffd_open();
    if (uffd < 0) die("userfaultfd");
    size_t len = pl->p.pages * PAGE;
    volatile char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    struct uffdio_register reg = {.range = {.start = (uintptr_t)p, .len = len},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) die("UFFDIO_REGISTER");
    struct hello h = {.base = (uintptr_t)p, .client = (uint32_t)idx};
    if (send_fd(pl->csock[pair][0], &h, sizeof(h), uffd) < 0) die("send uffd");
    if (!pl->p.floor && send_fd(pl->msock[pair][0], &h, sizeof(h), uffd) < 0) die("send uffd");
    close(uffd);
    chan_post(&pl->ready, 1);
    if (chan_wait(&pl->go, 1, -1) < 0) return 1;
    touch_units(p, pl->times + (size_t)idx * pl->p.pages, pl->p.pages, PAGE, false);
    return worker_hold(&pl->done, &pl->exit);
}

struct reader {
    struct pl *pl;
    int pair, uffd;
    struct hello hello;
    const char *src; /* floor: the backing pages */
};

static void record(struct pl *pl, const struct hello *h, uint64_t addr, uint64_t t1, uint64_t t2,
                   uint64_t t3, uint32_t flags)
{
    uint64_t page = (addr - h->base) / PAGE;
    if (h->client >= (uint32_t)pl->p.nclients || page >= pl->p.pages) return;
    struct fault_times *t = &pl->times[(size_t)h->client * pl->p.pages + page];
    t->t1 = t1;
    t->t2 = t2;
    t->t3 = t3;
    t->flags = flags;
}

/* One client's uffd: a blocking read, then (pipeline) into the ring and one
 * eventfd write, or (floor) UFFDIO_COPY. */
static void *reader(void *arg)
{
    struct reader *rd = arg;
    struct pl *pl = rd->pl;
    uint64_t next = 0;
    for (;;) {
        struct uffd_msg m[16];
        ssize_t k = read(rd->uffd, m, sizeof(m));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) die("uffd read");
        uint64_t t1 = now_ns(), cnt = 0;
        for (ssize_t j = 0; j < k / (ssize_t)sizeof(m[0]); j++) {
            if (m[j].event != UFFD_EVENT_PAGEFAULT) continue;
            uint64_t a = m[j].arg.pagefault.address & ~(uint64_t)(PAGE - 1);
            if (pl->p.floor) {
                copy_page(rd->uffd, a, rd->src + (next++ % BACKING_PAGES) * PAGE);
                uint64_t t3 = now_ns();
                record(pl, &rd->hello, a, t1, t1, t3, cnt++ ? FT_BATCHED : 0);
                t1 = t3;
            } else {
                ring_push(&pl->ring[rd->pair], rd->hello.client, a);
                cnt++;
            }
        }
        if (!pl->p.floor && cnt && write(pl->efd[rd->pair], &cnt, sizeof(cnt)) != sizeof(cnt))
            die("eventfd write");
    }
    return NULL;
}

static _Noreturn int handler(void *arg)
{
    struct pl *pl = arg;
    worker_name(pl->p.floor ? "pl-floor" : "pl-handler");
    int pair = worker_index;
    int n = 0;
    for (int c = pair; c < pl->p.nclients; c += pl->p.nmgr) n++;
    struct reader *rd = calloc((size_t)n, sizeof(*rd));
    if (!rd) die("calloc");
    const char *src = NULL;
    if (pl->p.floor) {
        src =
            mmap(NULL, BACKING_PAGES * PAGE, PROT_READ, MAP_SHARED | MAP_POPULATE, pl->backing, 0);
        if (src == MAP_FAILED) die("mmap backing");
    }
    for (int i = 0; i < n; i++) {
        rd[i] = (struct reader){.pl = pl, .pair = pair, .src = src};
        rd[i].uffd = recv_fd(pl->csock[pair][1], &rd[i].hello, sizeof(rd[i].hello));
        if (rd[i].uffd < 0) die("receive uffd");
    }
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 64 << 10);
    for (int i = 1; i < n; i++) {
        pthread_t th;
        int e = pthread_create(&th, &at, reader, &rd[i]);
        if (e) {
            errno = e;
            die("pthread_create");
        }
    }
    chan_post(&pl->ready, 1);
    reader(&rd[0]);
    _exit(1);
}

static _Noreturn int manager(void *arg)
{
    worker_name("pl-manager");
    struct pl *pl = arg;
    int pair = worker_index;
    int n = 0;
    for (int c = pair; c < pl->p.nclients; c += pl->p.nmgr) n++;
    struct hello *hello = calloc((size_t)pl->p.nclients, sizeof(*hello));
    int *uffd = calloc((size_t)pl->p.nclients, sizeof(int));
    if (!hello || !uffd) die("calloc");
    for (int i = 0; i < n; i++) {
        struct hello h;
        int fd = recv_fd(pl->msock[pair][1], &h, sizeof(h));
        if (fd < 0 || h.client >= (uint32_t)pl->p.nclients) die("receive uffd");
        hello[h.client] = h;
        uffd[h.client] = fd;
    }
    const char *src =
        mmap(NULL, BACKING_PAGES * PAGE, PROT_READ, MAP_SHARED | MAP_POPULATE, pl->backing, 0);
    if (src == MAP_FAILED) die("mmap backing");
    struct ring *ring = &pl->ring[pair];
    uint64_t next = 0;
    chan_post(&pl->ready, 1);
    for (;;) {
        uint64_t v;
        ssize_t k = read(pl->efd[pair], &v, sizeof(v));
        if (k < 0 && errno == EINTR) continue;
        if (k != sizeof(v)) die("eventfd read");
        uint64_t t1 = now_ns();
        uint32_t c, flags = 0;
        uint64_t a;
        /* One wake may stand for several faults; those after the first had
         * no wake of their own (FT_BATCHED). */
        for (; ring_pop(ring, &c, &a); flags = FT_BATCHED) {
            uint64_t t2 = now_ns();
            copy_page(uffd[c], a, src + (next++ % BACKING_PAGES) * PAGE);
            uint64_t t3 = now_ns();
            record(pl, &hello[c], a, t1, t2, t3, flags);
            t1 = t3;
        }
    }
}

int pipeline_run(const struct pl_params *p, struct run_result *res)
{
    memset(res, 0, sizeof(*res));
    int nclients = p->nclients, nmgr = p->nmgr;
    if (nmgr > MAX_PAIRS || nmgr < 1 || (nclients + nmgr - 1) / nmgr >= RING) return -1;
    struct pl *pl = shm_alloc(sizeof(*pl));
    pl->p = *p;
    res->n = (size_t)nclients * p->pages;
    pl->times = res->times = times_alloc(res->n);
    CHANS_OPEN(&pl->ready, &pl->go, &pl->done, &pl->exit);
    pl->backing = memfd_create("flbench-backing", MFD_CLOEXEC);
    if (pl->backing < 0 || ftruncate(pl->backing, BACKING_PAGES * PAGE) < 0 ||
        fallocate(pl->backing, 0, 0, BACKING_PAGES * PAGE) < 0)
        die("backing memfd");
    for (int m = 0; m < nmgr; m++) {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pl->csock[m]) < 0 ||
            socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pl->msock[m]) < 0)
            die("socketpair");
        pl->efd[m] = eventfd(0, EFD_CLOEXEC);
        if (pl->efd[m] < 0) die("eventfd");
        ring_init(&pl->ring[m]);
    }
    /* hp[2m]: handler of pair m, hp[2m+1]: its manager (none for the floor) */
    pid_t *hp = calloc((size_t)nmgr * 2, sizeof(pid_t));
    pid_t *cp = calloc((size_t)nclients, sizeof(pid_t));
    if (!hp || !cp) die("calloc");
    for (int m = 0; m < nmgr; m++) {
        hp[2 * m] = spawn_nth(handler, pl, m);
        if (!p->floor) hp[2 * m + 1] = spawn_nth(manager, pl, m);
    }
    for (int c = 0; c < nclients; c++) cp[c] = spawn_nth(client, pl, c);
    struct proc_count *h = calloc((size_t)nmgr, sizeof(*h)),
                      *mg = calloc((size_t)nmgr, sizeof(*mg)),
                      *cl = calloc((size_t)nclients, sizeof(*cl));
    if (!h || !mg || !cl) die("calloc");
    int rc = 0;
    if (chan_wait(&pl->ready, nclients + (p->floor ? 1 : 2) * nmgr, 30000) < 0) {
        fprintf(stderr, "faultline-bench: pipeline workers did not start\n");
        rc = -1;
        goto out;
    }
    for (int m = 0; m < nmgr; m++) {
        count_start(&h[m], hp[2 * m], p->count_syscalls);
        if (!p->floor) count_start(&mg[m], hp[2 * m + 1], p->count_syscalls);
    }
    for (int c = 0; c < nclients; c++) count_start(&cl[c], cp[c], p->count_syscalls);
    res->start = now_ns();
    chan_post(&pl->go, nclients);
    if (chan_wait(&pl->done, nclients, 600000) < 0) {
        fprintf(stderr, "faultline-bench: pipeline clients did not finish\n");
        rc = -1;
        goto out;
    }
    for (int c = 0; c < nclients; c++) count_add(&res->client, &cl[c]);
    for (int m = 0; m < nmgr; m++) {
        count_add(&res->core, &h[m]);
        if (!p->floor) count_add(&res->manager, &mg[m]);
    }
    chan_post(&pl->exit, nclients);
    for (int c = 0; c < nclients; c++) {
        if (reap(cp[c]) != 0) rc = -1;
        cp[c] = 0;
    }
    res->finish = times_last(res->times, res->n);
out:
    for (int m = 0; m < nmgr; m++) {
        count_stop(&h[m]);
        count_stop(&mg[m]);
    }
    for (int c = 0; c < nclients; c++) count_stop(&cl[c]);
    for (int c = 0; c < nclients; c++) kill_worker(cp[c]);
    for (int m = 0; m < 2 * nmgr; m++) kill_worker(hp[m]);
    for (int m = 0; m < nmgr; m++) {
        close(pl->csock[m][0]);
        close(pl->csock[m][1]);
        close(pl->msock[m][0]);
        close(pl->msock[m][1]);
        close(pl->efd[m]);
    }
    close(pl->backing);
    CHANS_CLOSE(&pl->ready, &pl->go, &pl->done, &pl->exit);
    free(h);
    free(mg);
    free(cl);
    free(hp);
    free(cp);
    shm_free(pl, sizeof(*pl));
    return rc;
}

void run_free(struct run_result *res)
{
    times_free(&res->times, res->n);
}
