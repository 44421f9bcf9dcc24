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

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef STALLS
#define STALLS 1
#endif

/* ---- the peer that stalls core's punches ---- */

static struct t_pipe to_peer, from_peer;

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

/* Descriptors of this process that are memfds of core's dataspaces. */
static int find_memfds(int *fds, int max)
{
    DIR *d = opendir("/proc/self/fd");
    T_ASSERT(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        char path[300], link[128];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t l = readlink(path, link, sizeof(link) - 1);
        if (l <= 0) continue;
        link[l] = 0;
        if (strstr(link, "memfd:faultline-ds")) fds[n++] = atoi(e->d_name);
    }
    closedir(d);
    return n;
}

static int peer_main(void *arg)
{
    (void)arg;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan when the test fails */
    struct fl_env *env = t_env();
    fl_cap ds[STALLS];
    for (int i = 0; i < STALLS; i++) {
        T_ERR(fl_ram_alloc(env, 4096, &ds[i]), 0);
        unsigned char *p = fl_attach(env, ds[i], NULL); /* the agent gets the memfd */
        T_ASSERT(p);
        p[0] = 1;
    }
    int fds[STALLS];
    T_EQ(find_memfds(fds, STALLS), STALLS);
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
    T_EQ(t_pipe_recv(&to_peer, line, sizeof(line)), 0); /* the writes are stuck */
    for (int i = 0; i < STALLS; i++) T_ERR(fl_ram_free(env, ds[i]), 0);
    t_pipe_send(&from_peer, "freed");
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

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct t_core *core = t_core_start(NULL);
    int fd_base = t_core_fd_count(core);
    t_healthy_start(T_HEALTHY_ALLOCATES);
    t_healthy_advances("the healthy component's first rounds");

    t_pipe_open(&to_peer);
    t_pipe_open(&from_peer);
    peer = t_spawn(peer_main, NULL);
    atexit(kill_peer);
    /* Core saw each write's fault and left it halted (at least once each: a
     * thread woken for another reason faults, and is logged, again). */
    T_WAIT_UNTIL(t_core_log_count(core, "no fault handler") >= STALLS);
    t_pipe_send(&to_peer, "free");
    char line[32];
    T_EQ(t_pipe_recv(&from_peer, line, sizeof(line)), 0);
    t_healthy_advances("frees whose punches wait for the peer's inode locks");
    t_healthy_advances("(still) frees whose punches wait for the peer's inode locks");

    /* The peer goes: its writes give up, the punches complete. */
    kill(peer, SIGKILL);
    t_wait(peer);
    peer = 0;
    t_healthy_advances("the stalling peer's end");
    t_healthy_stop();
    T_WAIT_FOR(t_core_fd_count(core) == fd_base, "core's descriptors back at their baseline");
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
