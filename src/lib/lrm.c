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
        mmap((void *)page, PAGE, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        fl__map_unlock();
        wake_range(l, page, PAGE);
    }
    l->sigbus_tid = tid;
    l->sigbus_page = page;
}

static void channel_dead(struct lrm_channel *ch, const char *why)
{
    if (ch->dead) return;
    fprintf(stderr,
            "faultline: local region mapper: sync channel %llu to the manager (session %llu, pid "
            "%llu): %s; faults in its ranges raise SIGBUS\n",
            (unsigned long long)ch->id, (unsigned long long)ch->manager,
            (unsigned long long)ch->pid, why);
    ch->dead = true;
}

/* Memfd windows in [va, va+len) report every access again (MINOR; the
 * anonymous rest is registered MISSING already), then lose their pages. */
static int unmap_items(struct fl__lrm *l, uintptr_t va, size_t len)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) return -errno;
    char line[512];
    int r = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi, inode;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &inode) != 3) continue;
        if (hi <= va || lo >= va + len || !inode) continue;
        uintptr_t a = lo > va ? lo : va, b = hi < va + len ? hi : va + len;
        struct uffdio_register reg = {.range = {.start = a, .len = b - a},
                                      .mode = UFFDIO_REGISTER_MODE_MISSING |
                                              UFFDIO_REGISTER_MODE_MINOR};
        if (ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0 && r == 0) r = -errno;
    }
    fclose(f);
    if (madvise((void *)va, len, MADV_DONTNEED) < 0 && r == 0) r = -errno;
    return r;
}

/* The manager's REVOKE: drop what its ranges show of [addr, addr+size). */
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
        unmap_items(l, r->va + (lo - r->map_off), hi - lo);
    }
    pthread_mutex_unlock(&l->lock);
    fl__map_unlock();
    struct fl_sync_msg a = {.magic = FL_SYNC_MAGIC, .type = FL_SYNC_MSG_REVOKED, .seq = m->seq};
    if (fl__sync_send(ch->sock, &a, -1) < 0) channel_dead(ch, "cannot acknowledge a revocation");
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
    bool still = false;
    for (size_t i = 0; i < l->nranges && !still; i++)
        still = l->ranges[i].va == r.va && l->ranges[i].ch == ch;
    int err = 0;
    if (still) {
        void *p = mmap((void *)va, hi - lo, prot, MAP_SHARED | MAP_FIXED, lm->fd, off);
        if (p == MAP_FAILED)
            err = errno;
        else
            madvise(p, hi - lo, MADV_DONTFORK); /* MAP_FIXED drops it */
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

static void fault(struct fl__lrm *l, const struct uffd_msg *msg)
{
    uintptr_t addr = msg->arg.pagefault.address;
    uint32_t tid = msg->arg.pagefault.feat.ptid;
    struct lrm_range r = {0};
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->nranges; i++)
        if (addr - l->ranges[i].va < l->ranges[i].len) r = l->ranges[i];
    pthread_mutex_unlock(&l->lock);
    if (!r.ch) { /* given back meanwhile: retry where core serves it */
        wake_range(l, addr & ~(uintptr_t)(PAGE - 1), PAGE);
        return;
    }
    struct lrm_channel *ch = r.ch;
    if (ch->dead) {
        fail(l, tid, addr, "its manager (session %llu) is gone", (unsigned long long)ch->manager);
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
        channel_dead(ch, "cannot send to the manager");
        fail(l, tid, addr, "its manager (session %llu) is gone", (unsigned long long)ch->manager);
        return;
    }
    long deadline = fl__sync_now_ms() + l->timeout_ms;
    for (;;) {
        long left = deadline - fl__sync_now_ms();
        struct fl_sync_msg a;
        int fd = -1;
        int n = left > 0 ? fl__sync_recv(ch->sock, &a, &fd, (int)left) : -ETIMEDOUT;
        if (n == -ETIMEDOUT) {
            fail(l, tid, addr,
                 "the manager (session %llu, pid %llu) did not answer within %d ms "
                 "($FAULTLINE_SYNC_TIMEOUT_MS)",
                 (unsigned long long)ch->manager, (unsigned long long)ch->pid, l->timeout_ms);
            return;
        }
        if (n <= 0) {
            channel_dead(ch, n == 0 ? "the manager closed it (crashed?)" : "a malformed message");
            fail(l, tid, addr, "its manager (session %llu) is gone",
                 (unsigned long long)ch->manager);
            return;
        }
        if (a.type == FL_SYNC_MSG_REVOKE) {
            if (fd >= 0) close(fd);
            lrm_revoke(l, ch, &a);
            continue;
        }
        if (a.type != FL_SYNC_MSG_ITEM || a.seq != q.seq) {
            late(l, ch, &a, fd);
            fprintf(stderr,
                    "faultline: local region mapper: a late or unexpected answer (type %u, "
                    "request %llu) from the manager (session %llu); discarded\n",
                    a.type, (unsigned long long)a.seq, (unsigned long long)ch->manager);
            continue;
        }
        if (a.status < 0) {
            if (fd >= 0) close(fd);
            fail(l, tid, addr, "the manager (session %llu) declined the fault: %s",
                 (unsigned long long)ch->manager, fl_error_name(a.status));
            return;
        }
        map_item(l, ch, r, &a, fd, type, tid, addr);
        return;
    }
}

/* A message the manager sent while no fault waited: a revocation, a late
 * answer, or its end. */
static void channel_ready(struct fl__lrm *l, struct lrm_channel *ch)
{
    struct fl_sync_msg a;
    int fd = -1;
    int n = fl__sync_recv(ch->sock, &a, &fd, 0);
    if (n == -ETIMEDOUT) return;
    if (n <= 0) {
        channel_dead(ch, n == 0 ? "the manager closed it" : "a malformed message");
        return;
    }
    if (a.type == FL_SYNC_MSG_REVOKE) {
        if (fd >= 0) close(fd);
        lrm_revoke(l, ch, &a);
    } else {
        late(l, ch, &a, fd);
        fprintf(stderr,
                "faultline: local region mapper: a late or unexpected answer (type %u, request "
                "%llu) from the manager (session %llu); discarded\n",
                a.type, (unsigned long long)a.seq, (unsigned long long)ch->manager);
    }
}

static void *lrm_main(void *arg)
{
    struct fl__lrm *l = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    while (!atomic_load(&l->stop)) {
        struct pollfd p[2 + 64];
        struct lrm_channel *which[64];
        unsigned n = 2;
        p[0] = (struct pollfd){.fd = l->wake, .events = POLLIN};
        p[1] = (struct pollfd){.fd = l->uffd, .events = POLLIN};
        pthread_mutex_lock(&l->lock);
        for (size_t i = 0; i < l->nchs && n < 2 + 64; i++)
            if (!l->chs[i]->dead) {
                which[n - 2] = l->chs[i];
                p[n++] = (struct pollfd){.fd = l->chs[i]->sock, .events = POLLIN};
            }
        pthread_mutex_unlock(&l->lock);
        if (poll(p, n, -1) < 0) continue;
        if (p[0].revents) {
            uint64_t v;
            if (read(l->wake, &v, sizeof(v)) < 0) { /* nothing to do */
            }
        }
        if (p[1].revents & POLLIN) {
            struct uffd_msg msg;
            while (read(l->uffd, &msg, sizeof(msg)) == sizeof(msg))
                if (msg.event == UFFD_EVENT_PAGEFAULT) fault(l, &msg);
        }
        for (unsigned i = 2; i < n; i++)
            if (p[i].revents && !which[i - 2]->dead) channel_ready(l, which[i - 2]);
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
    int r = fl__cap_req(env, FL_REQ_SYNC_CONNECT, ds, &rep);
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
            l->ranges[l->nranges++] = (struct lrm_range){start, len, map_off, writeable, ch};
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
    free(l->ranges);
    close(l->uffd);
    close(l->wake);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
