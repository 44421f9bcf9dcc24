/*
 * EXEC faults. userfaultfd cannot see instruction fetches, so a
 * non-executable window is mapped without PROT_EXEC and a fetch from it
 * raises SIGSEGV. This handler reports {addr, EXEC} to core on the session
 * socket -- from the faulting thread itself, like a pager IPC -- and waits in
 * a slot of its own until core's word (FL_MSG_AGENT_RESUME, which core sends
 * after the mapping that resolves the fault, so the agent has carried that
 * out) or the end of the session; then it returns and the fetch is retried.
 * Like a thread halted in the uffd, it waits for as long as its fault is
 * unresolved: nothing else wakes it.
 *
 * Async-signal-safe: no locks shared with the RPC path, no malloc, only
 * send(2), futex(2) and sigaction(2). Every other SIGSEGV goes to the
 * handler the program had installed before (or the default action).
 *
 * A thread that blocks SIGSEGV cannot be helped: Linux forces the default
 * action for a synchronous SIGSEGV that is blocked (the process dies).
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static struct sigaction chained;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void chain(int sig, siginfo_t *si, void *uc)
{
    if (chained.sa_flags & SA_SIGINFO) {
        chained.sa_sigaction(sig, si, uc);
    } else if (chained.sa_handler == SIG_DFL || chained.sa_handler == SIG_IGN) {
        /* Returning re-executes the access, which now takes the default
         * action (a synchronous SIGSEGV cannot be ignored). */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigaction(sig, &dfl, NULL);
    } else {
        chained.sa_handler(sig);
    }
}

/* Whether the access was an instruction fetch. On x86-64 the page-fault
 * error code says so (bit 4). Elsewhere it is inferred: every window is
 * readable and writable (read-only ones through uffd write-protection), so
 * an access violation there is a fetch -- except during the agent's brief
 * PROT_NONE steps, which x86-64 tells apart. */
static bool instruction_fetch(void *uc)
{
#if defined(__x86_64__)
    return ((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] & 0x10;
#else
    (void)uc;
    return true;
#endif
}

/* This thread's waiting slot (claimed by tid); NULL if all are taken. */
static struct fl__segv_slot *claim(struct fl_env *env, uint32_t tid)
{
    for (int i = 0; i < FL_SEGV_SLOTS; i++) {
        uint32_t free_tid = 0;
        if (atomic_compare_exchange_strong(&env->segv[i].tid, &free_tid, tid)) return &env->segv[i];
    }
    return NULL;
}

static void handler(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    uintptr_t addr = (uintptr_t)si->si_addr;
    struct fl_env *env = si->si_code == SEGV_ACCERR ? fl__env_for_addr(addr) : NULL;
    uint32_t tid = (uint32_t)syscall(SYS_gettid);
    struct fl__segv_slot *slot = NULL;
    struct fl_msg_exec_fault m;
    if (!env) {
        chain(sig, si, uc);
    } else if (!instruction_fetch(uc)) {
        /* A placeholder or read-only window the agent is setting up, PROT_NONE
         * or PROT_READ for an instant: retry once it is done. */
        sched_yield();
    } else if (env->dead || !(slot = claim(env, tid))) {
        chain(sig, si, uc);
    } else {
        atomic_store(&slot->addr, addr);
        atomic_store(&slot->resumed, 0);
        fl_msg_init(&m, FL_MSG_EXEC_FAULT, 0);
        m.tid = tid;
        m.addr = addr;
        if (send(env->sock, &m, sizeof(m), MSG_NOSIGNAL) == sizeof(m))
            while (!atomic_load(&slot->resumed) && !env->dead)
                syscall(SYS_futex, &slot->resumed, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        bool dead = env->dead;
        atomic_store(&slot->tid, 0);
        if (dead) chain(sig, si, uc);
    }
    errno = saved;
}

static void install(void)
{
    struct sigaction sa = {.sa_sigaction = handler,
                           .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &chained);
}

void fl__segv_install(void)
{
    pthread_once(&once, install);
}

void fl__segv_resume(struct fl_env *env, uintptr_t va, size_t len)
{
    for (int i = 0; i < FL_SEGV_SLOTS; i++) {
        struct fl__segv_slot *slot = &env->segv[i];
        if (!atomic_load(&slot->tid) || (len && atomic_load(&slot->addr) - va >= len)) continue;
        atomic_store(&slot->resumed, 1);
        syscall(SYS_futex, &slot->resumed, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    }
}
