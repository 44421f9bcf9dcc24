/*
 * The agent: the emulated MMU thread of a component. It is the only reader of
 * the session socket: it hands replies to the threads waiting for them and
 * carries out core's instructions in the order core sent them. It talks to
 * core only and never touches managed memory.
 */
#include "internal.h"
#include "../common/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Serialises the agent's mmaps against fork: a child must never see a window
 * mapped with MAP_FIXED before MADV_DONTFORK was re-applied. */
static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Every live env, for the fork child handler. */
static pthread_mutex_t envs_lock = PTHREAD_MUTEX_INITIALIZER;

static void prepare(void)
{
    pthread_mutex_lock(&fork_lock);
}

static void parent(void)
{
    pthread_mutex_unlock(&fork_lock);
}

static void child(void)
{
    pthread_mutex_unlock(&fork_lock);
    /* The child inherits no session: the window is MADV_DONTFORK, and the
     * descriptors of memfds, signals, the socket and the uffd are closed here.
     * (A raw clone() without fork handlers is a documented gap.) */
    extern void fl__env_child_cleanup(void);
    fl__env_child_cleanup();
}

static void atfork_setup(void)
{
    pthread_atfork(prepare, parent, child);
}

void fl__map_lock(void)
{
    pthread_mutex_lock(&fork_lock);
}

void fl__map_unlock(void)
{
    pthread_mutex_unlock(&fork_lock);
}

void fl__agent_atfork_init(void)
{
    pthread_once(&atfork_once, atfork_setup);
}

static struct fl_env *live_envs[64];

void fl__env_register(struct fl_env *env, bool add)
{
    pthread_mutex_lock(&envs_lock);
    for (int i = 0; i < 64; i++) {
        if (add && !live_envs[i]) {
            live_envs[i] = env;
            break;
        }
        if (!add && live_envs[i] == env) {
            live_envs[i] = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&envs_lock);
}

struct fl_env *fl__env_for_addr(uintptr_t addr)
{
    for (int i = 0; i < 64; i++) {
        struct fl_env *env = live_envs[i];
        if (env && addr - (uintptr_t)env->window < env->window_size) return env;
    }
    return NULL;
}

void fl__env_child_cleanup(void)
{
    /* Only this thread exists in the child: no locking needed (nor safe). */
    for (int i = 0; i < 64; i++) {
        struct fl_env *env = live_envs[i];
        if (!env) continue;
        for (size_t j = 0; j < env->nmemfds; j++) close(env->memfds[j].fd);
        for (size_t j = 0; j < env->nsigs; j++) close(env->sigs[j].efd);
        env->nsigs = 0;
        close(env->sock);
        close(env->uffd);
        env->nmemfds = 0;
        env->sock = env->uffd = -1;
        env->dead = true;
        live_envs[i] = NULL;
    }
}

static int memfd_find(struct fl_env *env, uint64_t id, bool *sealed)
{
    for (size_t i = 0; i < env->nmemfds; i++)
        if (env->memfds[i].id == id) {
            *sealed = env->memfds[i].sealed;
            return env->memfds[i].fd;
        }
    return -1;
}

/*
 * A read-only window is a read-write mapping under uffd write-protection, so
 * that a write -- by the program or by the kernel in a read(2) -- waits in
 * the uffd and reaches core as a WRITE fault. With PROT_READ alone the
 * program would get SIGSEGV and the kernel EFAULT (a received datagram lost).
 * It must never be writable, not even for an instant: it is mapped PROT_READ
 * and opened up only once every page is write-protected.
 */
static int write_protect(struct fl_env *env, uintptr_t va, size_t len, int prot)
{
    struct uffdio_register reg = {.range = {.start = va, .len = len},
                                  .mode = UFFDIO_REGISTER_MODE_WP};
    if (ioctl(env->uffd, UFFDIO_REGISTER, &reg) < 0) return -errno;
    struct uffdio_writeprotect wp = {.range = {.start = va, .len = len},
                                     .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    if (ioctl(env->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) return -errno;
    return mprotect((void *)va, len, prot | PROT_WRITE) < 0 ? -errno : 0;
}

static int do_map(struct fl_env *env, const struct fl_msg_agent_map *m, int fd)
{
    uintptr_t base = (uintptr_t)env->window;
    if (m->va < base || m->len == 0 || m->va - base > env->window_size ||
        m->len > env->window_size - (m->va - base))
        return -EINVAL;
    bool sealed = false;
    if (m->flags & FL_MAP_FD_ATTACHED) {
        if (fd < 0) return -EBADF;
        int seals = fcntl(fd, F_GET_SEALS);
        sealed = seals >= 0 && (seals & F_SEAL_WRITE);
        pthread_mutex_lock(&env->lock);
        if (!fl__grow((void **)&env->memfds, &env->memfds_cap, env->nmemfds, sizeof(*env->memfds),
                      16)) {
            pthread_mutex_unlock(&env->lock);
            close(fd);
            return -ENOMEM;
        }
        env->memfds[env->nmemfds++] = (struct fl__memfd){m->memfd_id, fd, sealed};
        pthread_mutex_unlock(&env->lock);
    } else {
        fd = memfd_find(env, m->memfd_id, &sealed);
        if (fd < 0) return -EBADF;
    }
    bool write = m->flags & FL_MAP_WRITE;
    int exec = m->flags & FL_MAP_EXEC ? PROT_EXEC : 0;
    /* A sealed memfd (a ROM module) cannot be mapped shared and writable, so
     * its read-only window -- made writable under write-protection below --
     * is a private mapping: every write waits in the uffd, and none could
     * reach the module even if one got through. */
    int share = sealed ? MAP_PRIVATE : MAP_SHARED;
    if (sealed && write) return -EPERM; /* core never asks that */
    pthread_mutex_lock(&fork_lock);
    void *p = mmap((void *)m->va, m->len, PROT_READ | exec | (write ? PROT_WRITE : 0),
                   share | MAP_FIXED, fd, (off_t)m->offset);
    if (p == MAP_FAILED && errno == ENOMEM) {
        /* Out of VMAs after all (other mappings of the program count too). */
        fl__cache_evict(env, env->nwindows / 2);
        p = mmap((void *)m->va, m->len, PROT_READ | exec | (write ? PROT_WRITE : 0),
                 share | MAP_FIXED, fd, (off_t)m->offset);
    }
    int r = p == MAP_FAILED ? -errno : 0;
    /* MAP_FIXED drops MADV_DONTFORK: a forked child would read the dataspace. */
    if (r == 0) madvise(p, m->len, MADV_DONTFORK);
    if (r == 0 && !write) r = write_protect(env, m->va, m->len, PROT_READ | exec);
    pthread_mutex_unlock(&fork_lock);
    if (r == 0)
        fl__cache_mapped(env, m->va, m->len, m->memfd_id, m->offset,
                         m->flags & (FL_MAP_WRITE | FL_MAP_EXEC));
    FL_PROBE4(agent_map, m->va, m->len, m->flags, r);
    return r;
}

/*
 * MINOR mode exists for shmem only: a range that also spans never-mapped
 * (anonymous, already MISSING-registered) parts of the window is refused as a
 * whole. Then register it VMA by VMA, as /proc/self/maps lists them: memfd
 * windows MISSING|MINOR, anonymous ones MISSING.
 */
static int register_by_vma(struct fl_env *env, uintptr_t va, size_t len)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) return -errno;
    char line[512];
    int r = 0;
    while (r == 0 && fgets(line, sizeof(line), f)) {
        unsigned long lo, hi, inode;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &inode) != 3) continue;
        if (hi <= va || lo >= va + len) continue;
        uintptr_t a = lo > va ? lo : va, b = hi < va + len ? hi : va + len;
        struct uffdio_register reg = {.range = {.start = a, .len = b - a},
                                      .mode = UFFDIO_REGISTER_MODE_MISSING |
                                              (inode ? UFFDIO_REGISTER_MODE_MINOR : 0)};
        if (ioctl(env->uffd, UFFDIO_REGISTER, &reg) < 0) r = -errno;
    }
    fclose(f);
    return r;
}

static int do_revoke(struct fl_env *env, const struct fl_msg_agent_revoke *m)
{
    uintptr_t base = (uintptr_t)env->window;
    if (m->va < base || m->len == 0 || m->va - base > env->window_size ||
        m->len > env->window_size - (m->va - base))
        return -EINVAL;
    /* Keep the VMA (a syscall touching it must fault, not get EFAULT): have the
     * uffd report every access, then drop the pages. */
    struct uffdio_register reg = {.range = {.start = m->va, .len = m->len},
                                  .mode =
                                      UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR};
    int r = 0;
    fl__cache_forget(env, m->va, m->len);
    if (ioctl(env->uffd, UFFDIO_REGISTER, &reg) < 0)
        r = errno == EINVAL ? register_by_vma(env, m->va, m->len) : -errno;
    if (madvise((void *)m->va, m->len, MADV_DONTNEED) < 0 && r == 0) r = -errno;
    FL_PROBE3(agent_revoke, m->va, m->len, r);
    return r;
}

/* How far past a resumed fault the agent fills the page tables of the
 * window, once the thread runs again. */
#define FAULT_AHEAD (2u << 20)

/* Core's word that a fault in [va, va+len) is resolved by the mapping before
 * it: prefault the faulting page, so the thread's retry does not fault once
 * more, then let every thread waiting there retry. Then fill the page tables
 * of the rest of that window (up to FAULT_AHEAD), as the thread will likely
 * go on there: one MADV_POPULATE_READ costs far less than the page faults it
 * saves (in a guest with shadow page tables, each is an exit), and racing
 * with the thread is harmless, both map the same pages. */
static void do_resume(struct fl_env *env, const struct fl_msg_agent_resume *m)
{
    uintptr_t base = (uintptr_t)env->window;
    if (m->va < base || m->len == 0 || m->va - base > env->window_size ||
        m->len > env->window_size - (m->va - base))
        return;
    /* Only pages of a window this agent mapped and has not revoked: a
     * registered hole would make the agent itself wait in the uffd. */
    uintptr_t page = m->populate & ~(uintptr_t)4095;
    size_t ahead = page && page - m->va < m->len ? fl__cache_extent(env, page) : 0;
    if (ahead) madvise((void *)page, 4096, MADV_POPULATE_READ);
    struct uffdio_range r = {.start = m->va, .len = m->len};
    ioctl(env->uffd, UFFDIO_WAKE, &r);
    fl__segv_resume(env, m->va, m->len);
    FL_PROBE3(agent_resume, m->va, m->len, page);
    if (ahead > FAULT_AHEAD) ahead = FAULT_AHEAD;
    if (ahead > 4096) madvise((void *)(page + 4096), ahead - 4096, MADV_POPULATE_READ);
}

static void do_forget(struct fl_env *env, uint64_t id)
{
    pthread_mutex_lock(&env->lock);
    for (size_t i = 0; i < env->nmemfds; i++) {
        if (env->memfds[i].id != id) continue;
        close(env->memfds[i].fd);
        env->memfds[i] = env->memfds[--env->nmemfds];
        break;
    }
    pthread_mutex_unlock(&env->lock);
}

/* What the agent thread carries between messages. Acknowledgements are
 * cumulative (protocol.h): those of MAPs and RESUMEs that succeeded collapse
 * into the newest and wait, so a resolved fault does not wake core once more;
 * the rest go at once, after the batch one receive returned, in one
 * sendmmsg. */
struct agent {
    bool reset_seen;
    bool now; /* something in this batch must be acknowledged at once */
    uint32_t sigbus_tid;
    uintptr_t sigbus_page;
    unsigned nacks;
    unsigned owed; /* instructions the acknowledgements would cover, since the last sent */
    struct fl_msg_agent_ack acks[FL_WIRE_BATCH];
};

static void flush_acks(struct fl_env *env, struct agent *ag)
{
    struct fl_wire_tx tx[FL_WIRE_BATCH];
    for (unsigned i = 0; i < ag->nacks; i++)
        tx[i] = (struct fl_wire_tx){&ag->acks[i], sizeof(ag->acks[i])};
    for (unsigned done = 0; done < ag->nacks;) {
        int n = fl_wire_send_many(env->sock, tx + done, ag->nacks - done, 0);
        if (n <= 0) break; /* the connection is gone: the receive says so */
        done += (unsigned)n;
    }
    ag->nacks = 0;
    ag->owed = 0;
}

static void ack(struct fl_env *env, struct agent *ag, uint64_t seq, int result, bool now)
{
    struct fl_msg_agent_ack *last = ag->nacks ? &ag->acks[ag->nacks - 1] : NULL;
    ag->owed++;
    if (result == 0 && last && last->result == 0) {
        last->hdr.id = seq; /* covers the one before */
    } else {
        if (ag->nacks == FL_WIRE_BATCH) flush_acks(env, ag);
        struct fl_msg_agent_ack *a = &ag->acks[ag->nacks++];
        fl__hdr(a, FL_MSG_AGENT_ACK);
        a->hdr.id = seq;
        a->result = result;
    }
    if (result < 0 || now || ag->owed >= FL_ACK_LAZY_MAX) ag->now = true;
}

/* One message from core (m->len < 0: the receive failed). Returns false
 * when the connection is over. */
static bool agent_message(struct fl_env *env, struct agent *ag, struct fl_wire_rx *m)
{
    const uint8_t *buf = m->buf;
    ssize_t n = m->len;
    int fd = m->nfds ? m->fds[0] : -1, truncated = m->truncated;
    for (int j = 1; j < m->nfds; j++) close(m->fds[j]);
    const char *why = NULL;
    if (n <= 0 || truncated || fl_msg_check(buf, (size_t)n, &why) < 0) {
        if (fd >= 0) close(fd);
        pthread_mutex_lock(&env->lock);
        bool expected = env->closing || !env->established;
        env->dead = true;
        pthread_cond_broadcast(&env->cond);
        pthread_mutex_unlock(&env->lock);
        fl__segv_resume(env, 0, 0);
        if (!expected) {
            /* Pending faults would never be served: terminate rather than
             * let any thread read memory core no longer vouches for. */
            const struct fl_msg_hdr *bad = (const void *)buf;
            fprintf(stderr,
                    "faultline: lost the connection to faultline-core (%s; message type %u, "
                    "%zd bytes); core died or closed this session; terminating\n",
                    n < 0    ? strerror((int)-n)
                    : n == 0 ? "closed"
                    : why    ? why
                             : "truncated",
                    n >= (ssize_t)sizeof(*bad) ? bad->type : 0u, n);
            _exit(70);
        }
        return false;
    }
    const struct fl_msg_hdr *h = (const void *)buf;
    switch (h->type) {
    case FL_MSG_REPLY: {
        pthread_mutex_lock(&env->lock);
        if (h->id == 0) env->refused = ((const struct fl_msg_reply *)(const void *)buf)->status;
        for (struct fl__pending *p = env->pending; p; p = p->next)
            if (p->id == h->id) {
                memcpy(&p->reply, buf, sizeof(p->reply));
                p->done = true;
            }
        pthread_cond_broadcast(&env->cond);
        pthread_mutex_unlock(&env->lock);
        if (fd >= 0) close(fd);
        break;
    }
    case FL_MSG_AGENT_MAP: /* one that carries a descriptor counts against core's credit */
        ack(env, ag, h->id, do_map(env, (const void *)buf, fd), fd >= 0);
        break;
    case FL_MSG_AGENT_RESUME:
        if (fd >= 0) close(fd);
        do_resume(env, (const void *)buf);
        ack(env, ag, h->id, 0, false);
        break;
    case FL_MSG_AGENT_REVOKE:
        if (fd >= 0) close(fd);
        /* A range the local region mapper serves goes back to the shared uffd first. */
        fl__lrm_release(env, ((const struct fl_msg_agent_revoke *)(const void *)buf)->va,
                        ((const struct fl_msg_agent_revoke *)(const void *)buf)->len);
        ack(env, ag, h->id, do_revoke(env, (const void *)buf), true);
        break;
    case FL_MSG_AGENT_SIGBUS: {
        if (fd >= 0) close(fd);
        const struct fl_msg_agent_sigbus *m = (const void *)buf;
        fprintf(stderr,
                "faultline: the fault of thread %u at %#llx can never be resolved; raising "
                "SIGBUS (faultline-core --unresolvable=sigbus)\n",
                m->tid, (unsigned long long)m->addr);
        syscall(SYS_tgkill, getpid(), (pid_t)m->tid, SIGBUS);
        /* A thread faulting inside a syscall waits killably, and SIGBUS (a
         * core-dump signal) does not count as fatal there: the kernel
         * retries and the fault comes back. Then make the page fail for
         * the kernel too: the syscall returns EFAULT and the pending
         * SIGBUS is delivered on the way out. */
        uintptr_t page = m->addr & ~(uintptr_t)4095;
        if (m->tid == ag->sigbus_tid && page == ag->sigbus_page)
            mmap((void *)page, 4096, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ag->sigbus_tid = m->tid;
        ag->sigbus_page = page;
        break;
    }
    case FL_MSG_AGENT_FAULT_PAGE: {
        int r = -EBADF;
        void *p = MAP_FAILED;
        if (fd >= 0 && !atomic_load(&env->fault_page)) {
            p = mmap(NULL, FL_FAULT_PAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
            r = p == MAP_FAILED ? -errno : 0;
        }
        if (p != MAP_FAILED) {
            madvise(p, FL_FAULT_PAGE_SIZE, MADV_DONTFORK);
            atomic_store(&env->fault_page, p);
        }
        if (fd >= 0) close(fd);
        ack(env, ag, h->id, r, true);
        break;
    }
    case FL_MSG_AGENT_SYNC_FD: /* the synchronous mode (sync_common.c) */
        ack(env, ag, h->id, fl__sync_deliver(env, (const void *)buf, fd), true);
        break;
    case FL_MSG_AGENT_ACK_NOW:
        if (fd >= 0) close(fd);
        ack(env, ag, h->id, 0, true);
        break;
    case FL_MSG_AGENT_FORGET:
        if (fd >= 0) close(fd);
        do_forget(env, ((const struct fl_msg_agent_forget *)(const void *)buf)->memfd_id);
        break;
    default:
        if (fd >= 0) close(fd);
        break;
    }
    return true;
}

void *fl__agent_main(void *arg)
{
    struct fl_env *env = arg;
    struct agent ag = {0};
    fl__env_register(env, true);
    for (bool live = true; live;) {
        /* Waits for the first message, then takes what else is queued. */
        struct fl_wire_rx rx[FL_WIRE_BATCH];
        int got = fl_wire_recv_many(env->sock, rx, FL_WIRE_BATCH, MSG_WAITFORONE);
        if (got == -EINTR) continue;
        /* A reset is reported before data still queued (core's refusal): read on once. */
        if (got == -ECONNRESET && !ag.reset_seen) {
            ag.reset_seen = true;
            continue;
        }
        if (got < 0) { /* told like a message: the connection is over */
            rx[0].len = got;
            rx[0].nfds = rx[0].truncated = 0;
            got = 1;
        }
        for (int i = 0; i < got && live; i++) live = agent_message(env, &ag, &rx[i]);
        for (int i = got; i-- > 0 && !live;) /* what came after the end */
            for (int j = 0; j < rx[i].nfds; j++) close(rx[i].fds[j]);
        if (ag.now) flush_acks(env, &ag);
        ag.now = false;
    }
    fl__env_register(env, false);
    return NULL;
}
