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

#include <dirent.h>
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
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)c->pid);
    DIR *d = opendir(dir);
    T_ASSERT(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[400], link[64];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        ssize_t l = readlink(path, link, sizeof(link) - 1);
        if (l <= 0) continue;
        link[l] = 0;
        n += strcmp(link, "anon_inode:[userfaultfd]") == 0;
    }
    closedir(d);
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
    DIR *d = opendir("/proc/self/fd");
    T_ASSERT(d);
    int sock = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[400], link[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t l = readlink(path, link, sizeof(link) - 1);
        if (l <= 0) continue;
        link[l] = 0;
        if (!strncmp(link, "socket:", 7)) sock = atoi(e->d_name);
    }
    closedir(d);
    T_ASSERT(sock >= 0);
    char garbage[40];
    memset(garbage, 0xa5, sizeof(garbage));
    T_EQ(send(sock, garbage, sizeof(garbage), MSG_NOSIGNAL), sizeof(garbage));
    for (;;) pause(); /* the library ends it */
}

static unsigned long hog_rounds(void)
{
    return atomic_load(&sh->hog_rounds);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    T_ASSERT(sh != MAP_FAILED);
    struct t_core *core = t_core_start(NULL);
    int fd_base = t_core_fd_count(core);
    t_healthy_start(T_HEALTHY_ALLOCATES);
    t_healthy_advances("the healthy component's first rounds");

    struct fl_env *mgr = t_env();
    fl_cap rm, mds, sigh, backing;
    T_ERR(fl_rm_create(mgr, PAGES * 4096, &rm), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0);
    T_ERR(fl_ram_alloc(mgr, PAGES * 4096, &backing), 0);
    unsigned char *b = fl_attach(mgr, backing, NULL);
    T_ASSERT(b);
    for (int i = 0; i < PAGES; i++) memset(b + i * 4096, i + 1, 4096);
    static char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    t_pipe_open(&to_locker);
    t_pipe_open(&from_locker);
    int uffds_before = core_uffds(core);
    T_EQ(uffds_before, 2); /* the healthy component's and the manager's */
    pid_t locker = t_spawn(locker_main, token);

    /* Serve its faults one page at a time, as they come. */
    unsigned long hog_before = 0;
    int served = 0;
    long end = t_now_ms() + T_WAIT_MS;
    while (atomic_load(&sh->touched) < PAGES) {
        if (t_now_ms() > end) {
            fprintf(stderr, "the locker touched %d of %d pages (%d faults served)\n",
                    atomic_load(&sh->touched), PAGES, served);
            return T_FAIL;
        }
        if (!hog_before) hog_before = hog_rounds();
        fl_signal_wait(mgr, sigh, 10);
        struct fl_fault f;
        for (;;) {
            T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
            if (f.type == FL_FAULT_NONE) break;
            uintptr_t page = f.addr & ~(uintptr_t)4095;
            struct fl_attr a = {
                .size = 4096, .offset = page, .use_at = true, .at = page, .writeable = true};
            T_ERR(fl_region_map_attach(mgr, rm, backing, &a, NULL), 0);
            served++;
        }
    }
    T_EQ(served, PAGES);
    t_healthy_advances("serving the locker's faults");
    /* Revocations it must carry out while the hog holds the lock. */
    for (int i = 0; i < PAGES; i += 2) T_ERR(fl_region_map_detach(mgr, rm, (uintptr_t)i * 4096), 0);
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

    /* Core closes the session of one that hogs its lock. */
    atomic_store(&sh->hog_stop, 0);
    pid_t breaker = t_spawn(breaker_main, NULL);
    T_EQ(t_wait(breaker), 70);
    char want[64];
    snprintf(want, sizeof(want), "(pid %d (", (int)breaker);
    T_WAIT_UNTIL(t_core_log_contains(core, want));
    t_healthy_advances("core closing a lock hog's session");
    T_WAIT_FOR(core_uffds(core) == uffds_before, "core releasing the breaker's session");

    T_ERR(fl_detach(mgr, b), 0);
    T_ERR(fl_rm_destroy(mgr, rm), 0);
    T_ERR(fl_ram_free(mgr, backing), 0);
    fl_env_close(mgr);
    t_healthy_stop();
    T_WAIT_FOR(t_core_fd_count(core) == fd_base, "core's descriptors back at their baseline");
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
