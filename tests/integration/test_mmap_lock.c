/*
 * A client that holds its own mmap lock. One of its threads loops populating
 * a 64 MiB anonymous mapping, mprotect()ing all of it back and forth and
 * munmap()ing it: the mmap lock is taken for writing, for long stretches,
 * all the time. Core never takes that lock on its loop (its only uffd call is
 * UFFDIO_WAKE, reads are RWF_NOWAIT, the final close of the uffd runs on a
 * worker), so:
 *  - core serves it: its other thread touches 64 pages of a managed dataspace,
 *    each fault is reflected to the manager, mapped by the client's agent
 *    (which waits for the lock) and resumed; the manager's detach, which
 *    waits for the agent's revocation, returns;
 *  - it closes its session while the hog runs: core tears the session down
 *    (the final uffd close waits for the lock on a worker), and core's
 *    descriptors return to their baseline;
 *  - core closes the session of a second such client (it sends garbage on its
 *    session socket while its hog runs): that client is told (exit 70), core
 *    releases its uffd;
 *  - a healthy component in another process keeps completing rounds of
 *    alloc/attach/touch/detach/free throughout (asserted after each step),
 *    and the hog demonstrably ran meanwhile.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGES 64
#define HOG   (64ul << 20)

/* ---- the client that hogs its mmap lock ---- */

struct shared {
    atomic_ulong hog_rounds;
    atomic_int touched, hog_stop;
};
static struct shared *sh;
static struct t_pipe to_locker, from_locker;

static void *hog(void *arg)
{
    (void)arg;
    while (!atomic_load(&sh->hog_stop)) {
        char *p = mmap(NULL, HOG, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED) abort();
        for (int i = 0; i < 4; i++)
            if (mprotect(p, HOG, i & 1 ? PROT_READ | PROT_WRITE : PROT_READ) < 0) abort();
        munmap(p, HOG);
        atomic_fetch_add(&sh->hog_rounds, 1);
    }
    return NULL;
}

static int locker_main(void *arg)
{
    const char *token = arg;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan when the test fails */
    struct fl_env *env = t_env();
    volatile unsigned char *view = t_import_attach(env, token);
    pthread_t t;
    T_EQ(pthread_create(&t, NULL, hog, NULL), 0);
    while (atomic_load(&sh->hog_rounds) < 2) {
    }
    for (int i = 0; i < PAGES; i++) {
        T_EQ(view[(size_t)i * 4096 + 9], (unsigned char)(i + 1));
        atomic_fetch_add(&sh->touched, 1);
    }
    char line[16];
    T_EQ(t_pipe_recv(&to_locker, line, sizeof(line)), 0);
    fl_env_close(env); /* while the hog holds the lock */
    t_pipe_send(&from_locker, "closed");
    T_EQ(t_pipe_recv(&to_locker, line, sizeof(line)), 0);
    atomic_store(&sh->hog_stop, 1);
    pthread_join(t, NULL);
    return 0;
}

/* How many userfaultfds core holds (one per session with a uffd). */
static int core_uffds(struct t_core *c)
{
    int n = t_proc_fds_with(c->pid, "anon_inode:[userfaultfd]", NULL, 0);
    T_ASSERT(n >= 0);
    return n;
}

/* A second locker: its hog runs, then it breaks the protocol, and core
 * closes its session (the library then ends the process with 70). */
static int breaker_main(void *arg)
{
    (void)arg;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct fl_env *env = t_env();
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4096, &ds), 0);
    T_ASSERT(fl_attach(env, ds, NULL));
    pthread_t t;
    T_EQ(pthread_create(&t, NULL, hog, NULL), 0);
    unsigned long r0 = atomic_load(&sh->hog_rounds);
    while (atomic_load(&sh->hog_rounds) < r0 + 2) {
    }
    int socks[16], n = t_proc_fds_with(0, "socket:", socks, 16);
    T_ASSERT(n >= 1 && n <= 16);
    int sock = socks[n - 1]; /* the session's, opened last */
    char garbage[40];
    memset(garbage, 0xa5, sizeof(garbage));
    T_EQ(send(sock, garbage, sizeof(garbage), MSG_NOSIGNAL), sizeof(garbage));
    for (;;) pause(); /* the library ends it */
}

static unsigned long hog_rounds(void)
{
    return atomic_load(&sh->hog_rounds);
}

/* The locker's hog rounds when it started touching pages. */
static unsigned long hog_before;

static int untouched(void)
{
    if (!hog_before) hog_before = hog_rounds();
    return atomic_load(&sh->touched) < PAGES;
}

static struct t_core *start(void)
{
    sh = t_shared(sizeof(*sh));
    struct t_core *core = t_core_start(NULL);
    t_baseline_begin(core, T_HEALTHY_ALLOCATES);
    return core;
}

static void locker_served_and_closes(void)
{
    struct t_core *core = start();
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, PAGES * 4096, T_MM_HANDLER);
    fl_cap backing;
    unsigned char *b = t_ram_pages(mgr, PAGES, 1, &backing);
    t_pipe_open(&to_locker);
    t_pipe_open(&from_locker);
    int uffds_before = core_uffds(core);
    T_EQ(uffds_before, 2); /* the healthy component's and the manager's */
    pid_t locker = t_spawn(locker_main, (void *)t_mm_export(&mm));

    /* Serve its faults one page at a time, as they come. */
    int served = t_mm_serve_while(&mm, backing, untouched, "the locker to touch every page");
    T_EQ(served, PAGES);
    t_healthy_advances("serving the locker's faults");
    /* Revocations it must carry out while the hog holds the lock. */
    for (int i = 0; i < PAGES; i += 2)
        T_ERR(fl_region_map_detach(mgr, mm.rm, (uintptr_t)i * 4096), 0);
    t_healthy_advances("detaches waiting for the locker's agent");
    T_WAIT_UNTIL(hog_rounds() > hog_before); /* it was at it all along */

    /* It closes its session while the hog runs. */
    unsigned long hog_at_close = hog_rounds();
    t_pipe_send(&to_locker, "close");
    char line[16];
    T_EQ(t_pipe_recv(&from_locker, line, sizeof(line)), 0);
    t_healthy_advances("the locker's session closing");
    T_WAIT_FOR(core_uffds(core) == uffds_before,
               "core releasing the locker's session (its uffd's final close)");
    t_healthy_advances("the locker's session gone");
    T_WAIT_UNTIL(hog_rounds() > hog_at_close); /* it was at it all along */
    t_pipe_send(&to_locker, "stop");
    T_EQ(t_wait(locker), 0);

    T_ERR(fl_detach(mgr, b), 0);
    T_ERR(fl_rm_destroy(mgr, mm.rms, mm.rm), 0);
    T_ERR(fl_ram_free(mgr, backing), 0);
    fl_env_close(mgr);
    t_baseline_end(core);
}

/* Core closes the session of one that hogs its lock. */
static void lock_hog_closed(void)
{
    struct t_core *core = start();
    int uffds_before = core_uffds(core);
    pid_t breaker = t_spawn(breaker_main, NULL);
    T_EQ(t_wait(breaker), 70);
    T_WAIT_UNTIL(t_core_log_names(core, breaker, ""));
    t_healthy_advances("core closing a lock hog's session");
    T_WAIT_FOR(core_uffds(core) == uffds_before, "core releasing the breaker's session");
    t_baseline_end(core);
}

T_CASES(locker_served_and_closes, lock_hog_closed)
