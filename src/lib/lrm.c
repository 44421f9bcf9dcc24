/*
 * The local region mapper: the client's side of the synchronous mode
 * (doc/async-vs-sync.md). A range core says is served synchronously (a
 * managed dataspace attached into the own address space whose map a manager
 * offered) is taken off the shared uffd that core reads and registered with
 * a second uffd that only this thread reads: a range can be registered with
 * one uffd at a time, so core no longer sees its faults. This thread asks the
 * manager over the direct channel core made, checks the map item it gets
 * back, maps the slice and wakes the faulting thread. A bad manager costs the
 * faulting thread a SIGBUS and a line on stderr, never core anything.
 *
 * Checking a map item without core on the path: the memfd comes with a token
 * core issued to the manager for that dataspace; the first time a channel
 * names a token, this thread asks core (SYNC_VERIFY) whether the manager at
 * the other end was issued it, for which inode and which rights, and
 * compares the inode with the descriptor it got. Afterwards the token names
 * the memfd on that channel.
 *
 * The thread never waits for one manager: a fault goes out as a request and
 * the thread returns to its poll of the uffd and of every channel (as many as
 * core gives a client, 256), so other managers' revocations and faults are
 * served while one manager is slow; the request is completed when its answer
 * comes, or fails when its own timeout runs out.
 */
#include "sync_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE            4096u
#define TIMEOUT_DEFAULT 2000

struct lrm_memfd {
    uint8_t token[FL_TOKEN_BYTES];
    int fd;
    uint64_t size, ino, dev;
    bool writeable;
};

struct lrm_channel {
    uint64_t id, manager, pid;
    int sock;
    bool dead;
    uint64_t seq;
    struct lrm_memfd *memfds;
    size_t nmemfds, memfds_cap;
};

struct lrm_range {
    uintptr_t va;
    size_t len;
    uintptr_t map_off; /* where va lies in the manager's region map */
    bool writeable;
    struct lrm_channel *ch;
    /* Pages where a memfd window lies (a slice this thread mapped), one bit
     * each; NULL until the first: what a revocation registers MINOR. */
    uint64_t *windows;
};

/* A fault sent to its manager, waiting for the ITEM of seq. */
struct lrm_req {
    struct lrm_channel *ch;
    uint64_t seq;
    uint32_t tid;
    uintptr_t addr;
    enum fl_fault_type type;
    struct lrm_range r;
    long deadline;
};

struct fl__lrm {
    struct fl_env *env;
    pthread_mutex_t lock; /* channels and ranges */
    int uffd, wake;
    _Atomic bool stop;
    pthread_t thread;
    struct lrm_channel **chs;
    size_t nchs, chs_cap;
    struct lrm_range *ranges;
    size_t nranges, ranges_cap;
    /* The thread's own: requests in flight and its poll set. */
    struct lrm_req *reqs;
    size_t nreqs, reqs_cap;
    struct pollfd *pfd;
    struct lrm_channel **which;
    size_t npfd_cap, nwhich_cap;
    int timeout_ms;
    uint32_t sigbus_tid;
    uintptr_t sigbus_page;
};

static int lrm_uffd(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev >= 0) {
            fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
            close(dev);
        }
    }
    if (fd < 0) fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0) return -1;
    struct uffdio_api api = {.api = UFFD_API,
                             .features = UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_MINOR_SHMEM};
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void wake_range(struct fl__lrm *l, uintptr_t va, size_t len)
{
    struct uffdio_range r = {.start = va, .len = len};
    ioctl(l->uffd, UFFDIO_WAKE, &r);
}

/* Mark [va, va+len) of r (page-aligned, within r) as a memfd window or not. */
static void set_windows(struct lrm_range *r, uintptr_t va, size_t len, bool on)
{
    if (!r->windows) return;
    for (size_t p = (va - r->va) / PAGE, e = (va + len - r->va) / PAGE; p < e; p++) {
        if (on)
            r->windows[p / 64] |= 1ull << (p % 64);
        else
            r->windows[p / 64] &= ~(1ull << (p % 64));
    }
}

static bool is_window(const struct lrm_range *r, size_t p)
{
    return r->windows && (r->windows[p / 64] >> (p % 64) & 1);
}

/* The faulting thread gets SIGBUS, as --unresolvable=sigbus does it. */
static void fail(struct fl__lrm *l, uint32_t tid, uintptr_t addr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct fl__lrm *l, uint32_t tid, uintptr_t addr, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    fprintf(stderr,
            "faultline: local region mapper: %s; raising SIGBUS in thread %u (fault at %#lx)\n",
            why, tid, (unsigned long)addr);
    syscall(SYS_tgkill, getpid(), (pid_t)tid, SIGBUS);
    /* A thread faulting in a syscall retries (see the agent's SIGBUS): the
     * second time the page fails for the kernel too. */
    uintptr_t page = addr & ~(uintptr_t)(PAGE - 1);
    if (tid == l->sigbus_tid && page == l->sigbus_page) {
        fl__map_lock();
        pthread_mutex_lock(&l->lock);
        mmap((void *)page, PAGE, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (size_t i = 0; i < l->nranges; i++)
            if (page - l->ranges[i].va < l->ranges[i].len)
                set_windows(&l->ranges[i], page, PAGE, false); /* anonymous now */
        pthread_mutex_unlock(&l->lock);
        fl__map_unlock();
        wake_range(l, page, PAGE);
    }
    l->sigbus_tid = tid;
    l->sigbus_page = page;
}

/* Its faults in flight fail (SIGBUS) and so will the next ones. */
static void channel_dead(struct fl__lrm *l, struct lrm_channel *ch, const char *why)
{
    if (ch->dead) return;
    fprintf(stderr,
            "faultline: local region mapper: sync channel %llu to the manager (session %llu, pid "
            "%llu): %s; faults in its ranges raise SIGBUS\n",
            (unsigned long long)ch->id, (unsigned long long)ch->manager,
            (unsigned long long)ch->pid, why);
    ch->dead = true;
    for (size_t i = 0; i < l->nreqs;) {
        if (l->reqs[i].ch != ch) {
            i++;
            continue;
        }
        struct lrm_req q = l->reqs[i];
        l->reqs[i] = l->reqs[--l->nreqs];
        fail(l, q.tid, q.addr, "its manager (session %llu) is gone",
             (unsigned long long)ch->manager);
    }
}

/* Memfd windows in [va, va+len) of r report every access again (MINOR; the
 * anonymous rest is registered MISSING already), then lose their pages. The
 * windows are the ones this thread mapped (r->windows), so no look at
 * /proc/self/maps. Called with the map lock and l->lock held. */
static int unmap_items(struct fl__lrm *l, struct lrm_range *r, uintptr_t va, size_t len)
{
    int res = 0;
    size_t first = (va - r->va) / PAGE, end = (va + len - r->va) / PAGE;
    for (size_t p = first; p < end;) {
        if (!is_window(r, p)) {
            p++;
            continue;
        }
        size_t q = p;
        while (q < end && is_window(r, q)) q++;
        struct uffdio_register reg = {.range = {.start = r->va + p * PAGE, .len = (q - p) * PAGE},
                                      .mode = UFFDIO_REGISTER_MODE_MISSING |
                                              UFFDIO_REGISTER_MODE_MINOR};
        if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0 && res == 0) res = -errno;
        p = q;
    }
    if (madvise((void *)va, len, MADV_DONTNEED) < 0 && res == 0) res = -errno;
    return res;
}

/* The manager's REVOKE: drop what its ranges show of [addr, addr+size)
 * (whole pages: a page partly revoked is dropped, and faults again). */
static void lrm_revoke(struct fl__lrm *l, struct lrm_channel *ch, const struct fl_sync_msg *m)
{
    fl__map_lock();
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->nranges; i++) {
        struct lrm_range *r = &l->ranges[i];
        if (r->ch != ch) continue;
        uint64_t lo = m->addr > r->map_off ? m->addr : r->map_off;
        uint64_t end = m->addr + m->size < m->addr ? UINT64_MAX : m->addr + m->size;
        uint64_t hi = end < r->map_off + r->len ? end : r->map_off + r->len;
        if (lo >= hi) continue;
        uintptr_t a = (r->va + (lo - r->map_off)) & ~(uintptr_t)(PAGE - 1);
        uintptr_t b = (r->va + (hi - r->map_off) + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
        if (b > r->va + r->len) b = r->va + r->len;
        unmap_items(l, r, a, b - a);
    }
    pthread_mutex_unlock(&l->lock);
    fl__map_unlock();
    struct fl_sync_msg a = {.magic = FL_SYNC_MAGIC, .type = FL_SYNC_MSG_REVOKED, .seq = m->seq};
    if (fl__sync_send(ch->sock, &a, -1) < 0) channel_dead(l, ch, "cannot acknowledge a revocation");
}

static struct lrm_memfd *memfd_of(struct lrm_channel *ch, const uint8_t token[FL_TOKEN_BYTES])
{
    for (size_t i = 0; i < ch->nmemfds; i++)
        if (!memcmp(ch->memfds[i].token, token, FL_TOKEN_BYTES)) return &ch->memfds[i];
    return NULL;
}

/* The item's memfd, checked with core the first time its token comes;
 * NULL with *why set if it is refused. Takes fd. */
static struct lrm_memfd *item_memfd(struct fl__lrm *l, struct lrm_channel *ch,
                                    const struct fl_sync_msg *m, int fd, const char **why)
{
    struct lrm_memfd *lm = memfd_of(ch, m->token);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) < 0) {
        close(fd);
        *why = "the descriptor cannot be examined";
        return NULL;
    }
    if (lm) {
        if (fd >= 0) {
            bool same = (uint64_t)st.st_ino == lm->ino && (uint64_t)st.st_dev == lm->dev;
            close(fd);
            if (!same) {
                *why = "a different memfd under a token already checked";
                return NULL;
            }
        }
        return lm;
    }
    if (fd < 0) {
        *why = "a token that never came with its memfd";
        return NULL;
    }
    struct fl_req_sync_verify q;
    fl__hdr(&q, FL_REQ_SYNC_VERIFY);
    q.channel = ch->id;
    memcpy(q.token, m->token, FL_TOKEN_BYTES);
    struct fl_msg_reply rep;
    int r = fl__rpc(l->env, &q, sizeof(q), -1, &rep);
    if (r < 0) {
        close(fd);
        *why = r == -FL_E_DENIED ? "a slice of a dataspace core never issued to this manager"
                                 : "core could not vouch for the slice's dataspace";
        return NULL;
    }
    if ((uint64_t)st.st_ino != rep.val[2] || (uint64_t)st.st_dev != rep.val[3]) {
        close(fd);
        *why = "a memfd that is not the dataspace its token names";
        return NULL;
    }
    if (!fl__grow((void **)&ch->memfds, &ch->memfds_cap, ch->nmemfds, sizeof(*ch->memfds), 8)) {
        close(fd);
        *why = "out of memory";
        return NULL;
    }
    lm = &ch->memfds[ch->nmemfds++];
    memcpy(lm->token, m->token, FL_TOKEN_BYTES);
    lm->fd = fd;
    lm->size = rep.val[0];
    lm->writeable = rep.val[1] & FL_SYNC_TOKEN_WRITEABLE;
    lm->ino = rep.val[2];
    lm->dev = rep.val[3];
    return lm;
}

/* Check the map item for the fault at addr (in range r) and map it. */
static void map_item(struct fl__lrm *l, struct lrm_channel *ch, struct lrm_range r,
                     const struct fl_sync_msg *m, int fd, enum fl_fault_type type, uint32_t tid,
                     uintptr_t addr)
{
    const char *why = NULL;
    uint64_t fa = addr - r.va + r.map_off;
    bool iw = m->flags & FL_SYNC_MSG_WRITE;
    if ((m->addr | m->size | m->ds_offset) & (PAGE - 1) || !m->size || fa < m->addr ||
        fa - m->addr >= m->size)
        why = "the slice is not page-aligned or does not hold the fault";
    struct lrm_memfd *lm = NULL;
    if (!why) {
        lm = item_memfd(l, ch, m, fd, &why);
        fd = -1;
    }
    if (!why && (m->ds_offset > lm->size || m->size > lm->size - m->ds_offset))
        why = "the slice lies beyond its dataspace";
    if (!why && iw && !lm->writeable) why = "writeable, a right core did not issue the manager";
    if (!why && type == FL_FAULT_WRITE && !iw) why = "a read-only slice for a write fault";
    if (fd >= 0) close(fd);
    if (why) {
        fail(l, tid, addr, "map item from the manager (session %llu, pid %llu) refused: %s",
             (unsigned long long)ch->manager, (unsigned long long)ch->pid, why);
        return;
    }
    uint64_t lo = m->addr > r.map_off ? m->addr : r.map_off;
    uint64_t hi = m->addr + m->size < r.map_off + r.len ? m->addr + m->size : r.map_off + r.len;
    uintptr_t va = r.va + (lo - r.map_off);
    off_t off = (off_t)(m->ds_offset + (lo - m->addr));
    int prot = PROT_READ | (iw && r.writeable ? PROT_WRITE : 0);
    fl__map_lock();
    pthread_mutex_lock(&l->lock);
    struct lrm_range *live = NULL;
    for (size_t i = 0; i < l->nranges && !live; i++)
        if (l->ranges[i].va == r.va && l->ranges[i].ch == ch) live = &l->ranges[i];
    int err = 0;
    if (live && !live->windows &&
        !(live->windows = calloc((live->len / PAGE + 63) / 64, sizeof(uint64_t))))
        err = ENOMEM;
    if (live && !err) {
        void *p = mmap((void *)va, hi - lo, prot, MAP_SHARED | MAP_FIXED, lm->fd, off);
        if (p == MAP_FAILED) {
            err = errno;
        } else {
            madvise(p, hi - lo, MADV_DONTFORK); /* MAP_FIXED drops it */
            set_windows(live, va, hi - lo, true);
        }
    }
    pthread_mutex_unlock(&l->lock);
    fl__map_unlock();
    if (err) {
        fail(l, tid, addr, "cannot map the slice: %s", strerror(err));
        return;
    }
    wake_range(l, va, hi - lo);
}

/* A late answer is not mapped (its thread got SIGBUS), but the memfd it
 * brings is kept: the manager names it by token from now on. */
static void late(struct fl__lrm *l, struct lrm_channel *ch, const struct fl_sync_msg *a, int fd)
{
    const char *why = NULL;
    if (fd >= 0 && a->type == FL_SYNC_MSG_ITEM && (a->flags & FL_SYNC_MSG_FD))
        item_memfd(l, ch, a, fd, &why); /* takes fd */
    else if (fd >= 0)
        close(fd);
}

/* A fault: send it to the range's manager and go on; complete() or
 * expire() ends it. */
static void fault(struct fl__lrm *l, const struct uffd_msg *msg)
{
    uintptr_t addr = msg->arg.pagefault.address;
    uint32_t tid = msg->arg.pagefault.feat.ptid;
    struct lrm_range r = {0};
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->nranges; i++)
        if (addr - l->ranges[i].va < l->ranges[i].len) r = l->ranges[i];
    pthread_mutex_unlock(&l->lock);
    r.windows = NULL; /* the live range's, not the copy's to use */
    if (!r.ch) {      /* given back meanwhile: retry where core serves it */
        wake_range(l, addr & ~(uintptr_t)(PAGE - 1), PAGE);
        return;
    }
    struct lrm_channel *ch = r.ch;
    if (ch->dead) {
        fail(l, tid, addr, "its manager (session %llu) is gone", (unsigned long long)ch->manager);
        return;
    }
    if (!fl__grow((void **)&l->reqs, &l->reqs_cap, l->nreqs, sizeof(*l->reqs), 8)) {
        fail(l, tid, addr, "out of memory for the request to its manager");
        return;
    }
    enum fl_fault_type type =
        msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE ? FL_FAULT_WRITE : FL_FAULT_READ;
    struct fl_sync_msg q = {.magic = FL_SYNC_MAGIC,
                            .type = FL_SYNC_MSG_FAULT,
                            .seq = ++ch->seq,
                            .addr = addr - r.va + r.map_off,
                            .fault = type};
    if (fl__sync_send(ch->sock, &q, -1) < 0) {
        channel_dead(l, ch, "cannot send to the manager");
        fail(l, tid, addr, "its manager (session %llu) is gone", (unsigned long long)ch->manager);
        return;
    }
    l->reqs[l->nreqs++] = (struct lrm_req){.ch = ch,
                                           .seq = q.seq,
                                           .tid = tid,
                                           .addr = addr,
                                           .type = type,
                                           .r = r,
                                           .deadline = fl__sync_now_ms() + l->timeout_ms};
}

/* The ITEM a for request i. Takes fd. */
static void complete(struct fl__lrm *l, size_t i, const struct fl_sync_msg *a, int fd)
{
    struct lrm_req q = l->reqs[i];
    l->reqs[i] = l->reqs[--l->nreqs];
    if (a->status < 0) {
        if (fd >= 0) close(fd);
        fail(l, q.tid, q.addr, "the manager (session %llu) declined the fault: %s",
             (unsigned long long)q.ch->manager, fl_error_name(a->status));
        return;
    }
    map_item(l, q.ch, q.r, a, fd, q.type, q.tid, q.addr);
}

/* Requests whose time ran out fail; returns the poll timeout until the next
 * deadline (-1: none). */
static int expire(struct fl__lrm *l)
{
    long now = fl__sync_now_ms(), next = -1;
    for (size_t i = 0; i < l->nreqs;) {
        struct lrm_req *q = &l->reqs[i];
        if (q->deadline > now) {
            if (next < 0 || q->deadline - now < next) next = q->deadline - now;
            i++;
            continue;
        }
        struct lrm_req x = *q;
        l->reqs[i] = l->reqs[--l->nreqs];
        bool still = false;
        pthread_mutex_lock(&l->lock);
        for (size_t k = 0; k < l->nranges && !still; k++)
            still = l->ranges[k].va == x.r.va && l->ranges[k].ch == x.ch;
        pthread_mutex_unlock(&l->lock);
        if (!still) continue; /* given back meanwhile: its thread was woken to fault to core */
        fail(l, x.tid, x.addr,
             "the manager (session %llu, pid %llu) did not answer within %d ms "
             "($FAULTLINE_SYNC_TIMEOUT_MS)",
             (unsigned long long)x.ch->manager, (unsigned long long)x.ch->pid, l->timeout_ms);
    }
    return (int)next;
}

/* What the manager sent: the answer to a request in flight, a revocation, a
 * late answer, or its end. At most a few messages at a time, so that one
 * busy channel does not keep the others waiting. */
static void channel_ready(struct fl__lrm *l, struct lrm_channel *ch)
{
    for (int k = 0; k < 16 && !ch->dead; k++) {
        struct fl_sync_msg a;
        int fd = -1;
        int n = fl__sync_recv(ch->sock, &a, &fd, 0);
        if (n == -ETIMEDOUT) return;
        if (n <= 0) {
            channel_dead(l, ch,
                         n == 0 ? "the manager closed it (crashed?)" : "a malformed message");
            return;
        }
        if (a.type == FL_SYNC_MSG_REVOKE) {
            if (fd >= 0) close(fd);
            lrm_revoke(l, ch, &a);
            continue;
        }
        size_t i = 0;
        if (a.type == FL_SYNC_MSG_ITEM)
            while (i < l->nreqs && (l->reqs[i].ch != ch || l->reqs[i].seq != a.seq)) i++;
        if (a.type == FL_SYNC_MSG_ITEM && i < l->nreqs) {
            complete(l, i, &a, fd);
            continue;
        }
        late(l, ch, &a, fd);
        fprintf(stderr,
                "faultline: local region mapper: a late or unexpected answer (type %u, request "
                "%llu) from the manager (session %llu); discarded\n",
                a.type, (unsigned long long)a.seq, (unsigned long long)ch->manager);
    }
}

static bool reserve(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 8;
    while (c < need) c *= 2;
    void *p = realloc(*arr, c * size);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

/* The poll set: the wake, the uffd, every live channel (at most core's 256
 * per client session, but not bounded here). False if out of memory. */
static bool poll_set(struct fl__lrm *l, unsigned *n)
{
    pthread_mutex_lock(&l->lock);
    bool ok = reserve((void **)&l->pfd, &l->npfd_cap, 2 + l->nchs, sizeof(*l->pfd)) &&
              reserve((void **)&l->which, &l->nwhich_cap, 2 + l->nchs, sizeof(*l->which));
    *n = 2;
    l->pfd[0] = (struct pollfd){.fd = l->wake, .events = POLLIN};
    l->pfd[1] = (struct pollfd){.fd = l->uffd, .events = POLLIN};
    for (size_t i = 0; ok && i < l->nchs; i++)
        if (!l->chs[i]->dead) {
            l->which[*n] = l->chs[i];
            l->pfd[(*n)++] = (struct pollfd){.fd = l->chs[i]->sock, .events = POLLIN};
        }
    pthread_mutex_unlock(&l->lock);
    return ok;
}

static void *lrm_main(void *arg)
{
    struct fl__lrm *l = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    while (!atomic_load(&l->stop)) {
        unsigned n;
        int timeout = expire(l);
        if (!poll_set(l, &n)) { /* out of memory: try again shortly */
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (poll(l->pfd, n, timeout) < 0) continue;
        if (l->pfd[0].revents) {
            uint64_t v;
            if (read(l->wake, &v, sizeof(v)) < 0) { /* nothing to do */
            }
        }
        /* The channels first: answers complete requests before new ones go out. */
        for (unsigned i = 2; i < n; i++)
            if (l->pfd[i].revents && !l->which[i]->dead) channel_ready(l, l->which[i]);
        if (l->pfd[1].revents & POLLIN) {
            struct uffd_msg msg;
            while (read(l->uffd, &msg, sizeof(msg)) == sizeof(msg))
                if (msg.event == UFFD_EVENT_PAGEFAULT) fault(l, &msg);
        }
    }
    return NULL;
}

static struct fl__lrm *lrm_get(struct fl_env *env)
{
    struct fl__sync *s = fl__sync_get(env);
    if (!s) return NULL;
    pthread_mutex_lock(&s->lock);
    struct fl__lrm *l = s->lrm;
    if (!l && (l = calloc(1, sizeof(*l)))) {
        l->env = env;
        pthread_mutex_init(&l->lock, NULL);
        l->uffd = lrm_uffd();
        l->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        const char *t = getenv("FAULTLINE_SYNC_TIMEOUT_MS");
        char *end = NULL;
        long ms = t ? strtol(t, &end, 10) : 0;
        l->timeout_ms = t && end && !*end && ms > 0 && ms <= 3600000 ? (int)ms : TIMEOUT_DEFAULT;
        if (t && l->timeout_ms != ms)
            fprintf(stderr,
                    "faultline: $FAULTLINE_SYNC_TIMEOUT_MS: '%s' is not a number of "
                    "milliseconds (1 to 3600000); using %d\n",
                    t, TIMEOUT_DEFAULT);
        if (l->uffd < 0 || l->wake < 0 || pthread_create(&l->thread, NULL, lrm_main, l) != 0) {
            if (l->uffd >= 0) close(l->uffd);
            if (l->wake >= 0) close(l->wake);
            pthread_mutex_destroy(&l->lock);
            free(l);
            l = NULL;
        } else {
            s->lrm = l;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return l;
}

static struct fl__lrm *lrm_peek(struct fl_env *env)
{
    struct fl__sync *s = atomic_load(&env->sync);
    if (!s) return NULL;
    pthread_mutex_lock(&s->lock);
    struct fl__lrm *l = s->lrm;
    pthread_mutex_unlock(&s->lock);
    return l;
}

static void kick(struct fl__lrm *l)
{
    uint64_t one = 1;
    if (write(l->wake, &one, sizeof(one)) < 0) { /* the counter is full: it wakes anyway */
    }
}

int fl__lrm_attached(struct fl_env *env, fl_cap ds, uintptr_t start, size_t len, size_t map_off,
                     bool writeable)
{
    struct fl__lrm *l = lrm_get(env);
    if (!l) return -FL_E_NOT_SUPPORTED;
    struct fl_msg_reply rep;
    struct fl_req_cap q;
    fl__hdr(&q, FL_REQ_SYNC_CONNECT);
    q.cap = ds;
    int r = fl__rpc_patient(env, &q, sizeof(q), &rep);
    if (r < 0) return r;
    struct lrm_channel *ch = NULL;
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->nchs && !ch; i++)
        if (l->chs[i]->id == rep.val[0]) ch = l->chs[i];
    pthread_mutex_unlock(&l->lock);
    if (!ch) {
        struct fl__sync_fd e;
        int fd = fl__sync_take(env, FL_SYNC_FD_CHANNEL, rep.val[0], 0, &e);
        if (fd < 0) return -FL_E_PROTOCOL; /* core said so before its reply */
        ch = calloc(1, sizeof(*ch));
        pthread_mutex_lock(&l->lock);
        if (!ch || !fl__grow((void **)&l->chs, &l->chs_cap, l->nchs, sizeof(*l->chs), 8)) {
            pthread_mutex_unlock(&l->lock);
            free(ch);
            close(fd);
            return -FL_E_OUT_OF_RAM;
        }
        *ch = (struct lrm_channel){
            .id = rep.val[0], .manager = rep.val[1], .pid = rep.val[2], .sock = fd};
        l->chs[l->nchs++] = ch;
        pthread_mutex_unlock(&l->lock);
    }
    /* Off the shared uffd, onto the local region mapper's: never an
     * unregistered accessible page (a touch would read silent zeros), so
     * PROT_NONE until registered -- as the mapping cache does it. */
    fl__map_lock();
    pthread_mutex_lock(&l->lock);
    r = fl__grow((void **)&l->ranges, &l->ranges_cap, l->nranges, sizeof(*l->ranges), 8)
            ? 0
            : -FL_E_OUT_OF_RAM;
    if (r == 0 &&
        mmap((void *)start, len, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0) == MAP_FAILED)
        r = -FL_E_SYSTEM;
    if (r == 0) {
        madvise((void *)start, len, MADV_DONTFORK);
        struct uffdio_register reg = {.range = {.start = start, .len = len},
                                      .mode = UFFDIO_REGISTER_MODE_MISSING};
        if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0 ||
            mprotect((void *)start, len, PROT_READ | PROT_WRITE) < 0)
            r = -FL_E_SYSTEM;
        else
            l->ranges[l->nranges++] = (struct lrm_range){start, len, map_off, writeable, ch, NULL};
    }
    pthread_mutex_unlock(&l->lock);
    fl__map_unlock();
    if (r < 0) {
        /* Back to the shared uffd, so that detach finds the window as core left it. */
        fl__map_lock();
        mmap((void *)start, len, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0);
        madvise((void *)start, len, MADV_DONTFORK);
        struct uffdio_register reg = {.range = {.start = start, .len = len},
                                      .mode = UFFDIO_REGISTER_MODE_MISSING};
        ioctl(env->uffd, UFFDIO_REGISTER, &reg);
        mprotect((void *)start, len, PROT_READ | PROT_WRITE);
        fl__map_unlock();
    }
    kick(l);
    return r;
}

/* The range goes back to the shared uffd (core serves it again). Called
 * with the map lock and l->lock held. */
static void give_back(struct fl__lrm *l, const struct lrm_range *r)
{
    mmap((void *)r->va, r->len, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
         -1, 0);
    madvise((void *)r->va, r->len, MADV_DONTFORK);
    struct uffdio_register reg = {.range = {.start = r->va, .len = r->len},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    ioctl(l->env->uffd, UFFDIO_REGISTER, &reg);
    mprotect((void *)r->va, r->len, PROT_READ | PROT_WRITE);
    wake_range(l, r->va, r->len); /* a thread waiting here retries, faulting to core */
}

void fl__lrm_release(struct fl_env *env, uintptr_t va, size_t len)
{
    struct fl__lrm *l = lrm_peek(env);
    if (!l) return;
    fl__map_lock();
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->nranges;) {
        struct lrm_range *r = &l->ranges[i];
        bool hit = len ? r->va < va + len && va < r->va + r->len : va - r->va < r->len;
        if (!hit) {
            i++;
            continue;
        }
        give_back(l, r);
        free(r->windows);
        l->ranges[i] = l->ranges[--l->nranges];
    }
    pthread_mutex_unlock(&l->lock);
    fl__map_unlock();
}

int fl__lrm_stop(struct fl_env *env)
{
    struct fl__sync *s = atomic_load(&env->sync);
    if (!s) return 0;
    pthread_mutex_lock(&s->lock);
    struct fl__lrm *l = s->lrm;
    s->lrm = NULL;
    pthread_mutex_unlock(&s->lock);
    if (!l) return 0;
    atomic_store(&l->stop, true);
    kick(l);
    pthread_join(l->thread, NULL);
    fl__lrm_free(l);
    return 0;
}

void fl__lrm_free(struct fl__lrm *l)
{
    for (size_t i = 0; i < l->nchs; i++) {
        struct lrm_channel *ch = l->chs[i];
        for (size_t j = 0; j < ch->nmemfds; j++) close(ch->memfds[j].fd);
        free(ch->memfds);
        close(ch->sock);
        free(ch);
    }
    free(l->chs);
    for (size_t i = 0; i < l->nranges; i++) free(l->ranges[i].windows);
    free(l->ranges);
    free(l->reqs);
    free(l->pfd);
    free(l->which);
    close(l->uffd);
    close(l->wake);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
