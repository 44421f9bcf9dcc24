/*
 * Resource exhaustion by sessions that play by the rules, each against a
 * healthy component in another process whose progress must keep advancing:
 *  (a) quota: one session allocates 256 KiB dataspaces until its RAM quota
 *      (--ram-quota 64M) ends (OUT_OF_RAM, exactly at the quota), another
 *      creates signal contexts until its capability quota (--cap-quota 1024)
 *      ends (OUT_OF_CAPS); nothing else is charged; both get it back when
 *      they free, and the healthy component's own quota is untouched;
 *  (b) a signal flood: four processes submit 10,000 signals each, as fast as
 *      core answers, to one receiver that picks up while they do; every
 *      submit is answered, and the receiver's counts add up to exactly
 *      40,000 (coalesced, none lost, none invented);
 *  (c) an attach/detach storm: four threads of a manager attach and detach
 *      slices of a managed region map 800 times each while two clients
 *      have its dataspace attached (every detach waits for both clients'
 *      agents to revoke); afterwards the map is whole again and both clients
 *      read every page right. Core's descriptors end at their baseline.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define M (1024ull * 1024)

/* ---- (a) quotas ---- */

static struct t_core *start(void)
{
    struct t_core *core = t_core_start("--ram-quota", "64M", "--cap-quota", "1024", NULL);
    t_baseline_begin(core, T_HEALTHY_ALLOCATES);
    return core;
}

static void quotas(void)
{
    struct t_core *core = start();
    struct fl_env *ram = t_env(), *caps = t_env();
    static fl_cap ds[512], sig[1100];
    int n = 0, r;
    while (n < 512 && (r = fl_ram_alloc(ram, 256 * 1024, &ds[n])) == 0) n++;
    T_ERR(r, -FL_E_OUT_OF_RAM);
    T_EQ(n, 64 * M / (256 * 1024));
    struct fl_session_info info;
    T_ERR(fl_env_session_info(ram, &info), 0);
    T_EQ(info.ram_used, 64 * M);
    T_EQ(info.ram_quota, 64 * M);
    t_healthy_advances("a session out of RAM quota");

    int k = 0;
    while (k < 1100 && (r = fl_signal_context_create(caps, &sig[k])) == 0) k++;
    T_ERR(r, -FL_E_OUT_OF_CAPS);
    T_EQ(k, 1024);
    T_ERR(fl_env_session_info(caps, &info), 0);
    T_EQ(info.cap_used, 1024);
    T_EQ(info.ram_used, 0);
    fl_cap more;
    T_ERR(fl_ram_alloc(caps, 4096, &more), -FL_E_OUT_OF_CAPS);
    T_ERR(fl_ram_alloc(ram, 4096, &more), -FL_E_OUT_OF_RAM);
    t_healthy_advances("a session out of capability quota");

    /* Freeing gives it back. */
    T_ERR(fl_ram_free(ram, ds[0]), 0);
    T_ERR(fl_ram_alloc(ram, 256 * 1024, &ds[0]), 0);
    T_ERR(fl_signal_context_destroy(caps, sig[0]), 0);
    T_ERR(fl_signal_context_create(caps, &sig[0]), 0);
    for (int i = 0; i < n; i++) T_ERR(fl_ram_free(ram, ds[i]), 0);
    for (int i = 0; i < k; i++) T_ERR(fl_signal_context_destroy(caps, sig[i]), 0);
    T_ERR(fl_env_session_info(ram, &info), 0);
    T_EQ(info.ram_used, 0);
    T_ERR(fl_env_session_info(caps, &info), 0);
    T_EQ(info.cap_used, 0);
    fl_env_close(ram);
    fl_env_close(caps);
    t_healthy_advances("the quotas returned");
    t_baseline_end(core);
}

/* ---- (b) a signal flood ---- */

#define SUBMITTERS 4
#define SUBMITS    10000

struct flood {
    atomic_int done, attached;
};
static struct flood *fd_sh;

static int submitter(void *arg)
{
    const char *token = arg;
    struct fl_env *env = t_env();
    fl_cap sigh;
    T_ERR(fl_cap_import(env, token, &sigh), 0);
    for (int i = 0; i < SUBMITS; i++) T_ERR(fl_signal_submit(env, sigh), 0);
    atomic_fetch_add(&fd_sh->done, 1);
    fl_env_close(env);
    return 0;
}

static void signal_flood(void)
{
    struct t_core *core = start();
    fd_sh = t_shared(sizeof(*fd_sh));
    struct fl_env *rx = t_env();
    fl_cap sigh;
    T_ERR(fl_signal_context_create(rx, &sigh), 0);
    static char tokens[SUBMITTERS][FL_TOKEN_LEN + 1];
    pid_t pid[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        T_ERR(fl_cap_export(rx, sigh, tokens[i]), 0);
        pid[i] = t_spawn(submitter, tokens[i]);
    }
    long total = 0, wakeups = 0;
    unsigned long base = t_healthy_rounds();
    while (atomic_load(&fd_sh->done) < SUBMITTERS || total < (long)SUBMITTERS * SUBMITS) {
        long n = fl_signal_wait(rx, sigh, 1000);
        T_ASSERT(n >= 0);
        total += n;
        wakeups += n > 0;
        T_ASSERT(total <= (long)SUBMITTERS * SUBMITS);
        if (atomic_load(&fd_sh->done) == SUBMITTERS && n == 0) break;
    }
    for (int i = 0; i < SUBMITTERS; i++) T_EQ(t_wait(pid[i]), 0);
    total += fl_signal_wait(rx, sigh, 0);
    T_EQ(total, (long)SUBMITTERS * SUBMITS);
    fprintf(stderr,
            "signal flood: %ld submits picked up in %ld wake-ups; healthy rounds meanwhile: %lu\n",
            total, wakeups, t_healthy_rounds() - base);
    t_healthy_advances("a signal flood");
    fl_env_close(rx);
    t_baseline_end(core);
}

/* ---- (c) an attach/detach storm ---- */

#define PAGES   64
#define THREADS 4
#define ROUNDS  800

static struct fl_env *mgr;
static fl_cap storm_rm, backing;
static struct t_pipe go;

static void *stormer(void *arg)
{
    long t = (long)arg;
    for (int i = 0; i < ROUNDS; i++) {
        uintptr_t page = (uintptr_t)(t * (PAGES / THREADS) + i % (PAGES / THREADS));
        struct fl_attr a = {.size = 4096,
                            .offset = page * 4096,
                            .use_at = true,
                            .at = page * 4096,
                            .writeable = true};
        T_ERR(fl_region_map_attach(mgr, storm_rm, backing, &a, NULL), 0);
        T_ERR(fl_region_map_detach(mgr, storm_rm, page * 4096), 0);
    }
    return NULL;
}

static int viewer(void *arg)
{
    struct fl_env *env = t_env();
    volatile unsigned char *v = t_import_attach(env, arg);
    atomic_fetch_add(&fd_sh->attached, 1);
    char line[16];
    T_EQ(t_pipe_recv(&go, line, sizeof(line)), 0); /* the storm is over, the map whole */
    for (int i = 0; i < PAGES; i++) T_EQ(v[i * 4096 + 11], (unsigned char)(0x40 + i));
    fl_env_close(env);
    return 0;
}

static void attach_detach_storm(void)
{
    struct t_core *core = start();
    fd_sh = t_shared(sizeof(*fd_sh));
    mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, PAGES * 4096, 0);
    storm_rm = mm.rm;
    unsigned char *b = t_ram_pages(mgr, PAGES, 0x40, &backing);
    T_ERR(fl_detach(mgr, b), 0);
    t_pipe_open(&go);
    pid_t v[2];
    for (int i = 0; i < 2; i++) v[i] = t_spawn(viewer, (void *)t_mm_export(&mm));
    /* Both attached before the storm: wait until each session imported. */
    T_WAIT_UNTIL(atomic_load(&fd_sh->attached) == 2);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) T_EQ(pthread_create(&t[i], NULL, stormer, (void *)i), 0);
    for (int k = 0; k < 5; k++) t_healthy_advances("an attach/detach storm");
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    t_mm_attach(&mm, backing, 0, 0, 0);
    t_pipe_send(&go, "go");
    t_pipe_send(&go, "go");
    for (int i = 0; i < 2; i++) T_EQ(t_wait(v[i]), 0);
    T_ERR(fl_rm_destroy(mgr, mm.rms, storm_rm), 0);
    T_ERR(fl_ram_free(mgr, backing), 0);
    fl_env_close(mgr);
    t_healthy_advances("the storm's end");
    t_baseline_end(core);
}

T_CASES(quotas, signal_flood, attach_detach_storm)
