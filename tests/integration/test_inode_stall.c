/*
 * A peer that write(2)s into a memfd from its own unserved window while core
 * frees that memfd. The write holds the memfd's inode lock while it waits in
 * the uffd for a page nobody will ever provide (an unattached address of the
 * peer's own address space: no fault handler, the thread stays halted), so
 * core's punch of the freed memfd waits for that lock for as long as the peer
 * likes. Core makes that call on a worker thread, never on its loop:
 *  - the free is answered (revocation done; the punch is not waited for);
 *  - core's loop and every other session carry on: a healthy component in
 *    another process keeps completing rounds of alloc/attach/touch/detach/free
 *    (which need the worker too) while STALLS such punches hang;
 *  - once the peer is killed, its write gives up, the punch completes and
 *    core's descriptors return to their baseline.
 * STALLS is 1 here. test_worker_stall builds this file with STALLS 3, more
 * stalled memfds than core has standing worker threads (2): core must start
 * more (worker.c) for the healthy component's allocations to go on.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef STALLS
#define STALLS 1
#endif

/* ---- the peer that stalls core's punches ---- */

struct stall {
    int memfd;
    const char *from; /* unattached, unserved memory of its own window */
};

static void *staller(void *arg)
{
    struct stall *st = arg;
    ssize_t n = pwrite(st->memfd, st->from, 4096, 0); /* waits in the uffd, inode locked */
    (void)n;
    return NULL;
}

static int peer_main(struct t_child *c)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan when the test fails */
    struct fl_env *env = t_env();
    fl_cap ds[STALLS];
    for (int i = 0; i < STALLS; i++) {
        unsigned char *p = t_ram(env, 4096, &ds[i]); /* the agent gets the memfd */
        p[0] = 1;
    }
    int fds[STALLS];
    T_ASSERT(t_proc_fds_with(0, "memfd:faultline-ds", fds, STALLS) >= STALLS);
    /* The top of the window: nothing is attached there, and its address space
     * has no fault handler. */
    const char *top = (const char *)fl_env_window_base(env) + fl_env_window_size(env);
    struct stall st[STALLS];
    pthread_t t[STALLS];
    for (int i = 0; i < STALLS; i++) {
        st[i] = (struct stall){fds[i], top - (size_t)(i + 1) * 4096};
        T_EQ(pthread_create(&t[i], NULL, staller, &st[i]), 0);
    }
    char line[32];
    t_child_command(c, line, sizeof(line)); /* the writes are stuck */
    for (int i = 0; i < STALLS; i++) T_ERR(fl_ram_free(env, ds[i]), 0);
    t_child_say(c, "freed");
    for (;;) pause();
}

/* A failing test must not wait for core, whose stalled worker threads (and so
 * core itself, even on SIGKILL) wait for the peer: end the peer first (atexit
 * handlers run in reverse order, this one before the harness's). */
static pid_t peer;
static void kill_peer(void)
{
    if (peer > 0) kill(peer, SIGKILL);
}

static void frees_answered_while_punches_wait(void)
{
    struct t_core *core = t_core_start(NULL);
    t_baseline_begin(core, T_HEALTHY_ALLOCATES);

    struct t_child pc;
    t_child_spawn(&pc, "the stalling peer", peer_main);
    peer = pc.pid;
    atexit(kill_peer);
    /* Core saw each write's fault and left it halted (at least once each: a
     * thread woken for another reason faults, and is logged, again). */
    T_WAIT_UNTIL(t_core_log_count(core, "no fault handler") >= STALLS);
    t_child_send(&pc, "free");
    t_child_expect(&pc, "freed");
    t_healthy_advances("frees whose punches wait for the peer's inode locks");
    t_healthy_advances("(still) frees whose punches wait for the peer's inode locks");

    /* The peer goes: its writes give up, the punches complete. */
    kill(peer, SIGKILL);
    t_wait(peer);
    peer = 0;
    t_healthy_advances("the stalling peer's end");
    t_baseline_end(core);
}

T_CASES(frees_answered_while_punches_wait)
