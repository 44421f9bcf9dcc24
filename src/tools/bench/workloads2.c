/*
 * The workloads that measure core's bookkeeping and its fairness:
 * map (region map operations at 1k and 100k attachments), revoke (detach of a
 * region mapped in many clients) and isolation (a healthy manager beside a
 * stopped one and a flood of RPCs).
 */
#include "reflect.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- map: attach/detach/lookup with 1k and 100k attachments ---- */

enum map_op { OP_ATTACH_AT, OP_ATTACH_ANY, OP_DETACH, OP_LOOKUP, OP_NULL, NOPS };
static const char *const op_name[NOPS] = {"attach at an address", "attach best fit", "detach",
                                          "lookup (detach of a hole)", "null RPC (session info)"};

#define MAP_DS    4
#define MAP_DS_SZ (1ul << 20)

struct map_shm {
    size_t small, big, reps;
    struct chan filled, measured;
    double fill_us_per_attach[2];
    uint64_t lat[]; /* [phase][op][rep], ns; sized at run time */
};

static uint64_t *map_lat(struct map_shm *sh, int phase, int op)
{
    return sh->lat + ((size_t)phase * NOPS + (size_t)op) * sh->reps;
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64: the same sequence every run, so runs compare. */
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int map_worker(void *arg)
{
    worker_name("map-worker");
    struct map_shm *sh = arg;
    size_t slots = sh->big + 16;
    struct fl_env *env = env_open(0);
    fl_cap ds[MAP_DS], rms, rm;
    for (int i = 0; i < MAP_DS; i++) FL_CHECK(fl_ram_alloc(env, MAP_DS_SZ, &ds[i]));
    /* Attachments on even pages; odd pages stay free for the measured ones. */
    FL_CHECK(fl_rm_session_open(env, &rms));
    FL_CHECK(fl_rm_create(env, rms, 2 * slots * PAGE, &rm));
    uint32_t *perm = malloc(sh->big * sizeof(*perm));
    if (!perm) die("malloc");
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sh->big; i++) perm[i] = (uint32_t)i;
    for (size_t i = sh->big - 1; i > 0; i--) {
        size_t j = rng_next(&seed) % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    size_t have = 0;
    for (int phase = 0; phase < 2; phase++) {
        size_t want = phase ? sh->big : sh->small;
        size_t from = have;
        uint64_t t0 = now_ns();
        for (; have < want; have++) {
            struct fl_attr a = {.size = PAGE,
                                .offset = (have % (MAP_DS_SZ / PAGE)) * PAGE,
                                .use_at = true,
                                .at = 2 * (uint64_t)perm[have] * PAGE,
                                .writeable = true};
            FL_CHECK(fl_region_map_attach(env, rm, ds[have % MAP_DS], &a, NULL));
        }
        sh->fill_us_per_attach[phase] = (double)(now_ns() - t0) / 1e3 / (double)(want - from);
        chan_post(&sh->filled, 1);
        if (chan_wait(&sh->measured, 1, -1) < 0) return 1;
        for (size_t r = 0; r < sh->reps; r++) {
            uint64_t hole = (2 * (rng_next(&seed) % sh->big) + 1) * PAGE;
            struct fl_attr a = {.size = PAGE,
                                .offset = (r % (MAP_DS_SZ / PAGE)) * PAGE,
                                .use_at = true,
                                .at = hole,
                                .writeable = true};
            struct fl_range range;
            uint64_t t = now_ns();
            FL_CHECK(fl_region_map_attach(env, rm, ds[r % MAP_DS], &a, NULL));
            uint64_t t1 = now_ns();
            FL_CHECK(fl_region_map_detach(env, rm, hole));
            uint64_t t2 = now_ns();
            FL_CHECK(fl_region_map_detach(env, rm, hole)); /* nothing there now */
            uint64_t t3 = now_ns();
            a.use_at = false;
            a.at = 0;
            FL_CHECK(fl_region_map_attach(env, rm, ds[r % MAP_DS], &a, &range));
            uint64_t t4 = now_ns();
            FL_CHECK(fl_region_map_detach(env, rm, range.start));
            struct fl_session_info info;
            uint64_t t5 = now_ns();
            FL_CHECK(fl_env_session_info(env, &info));
            uint64_t t6 = now_ns();
            map_lat(sh, phase, OP_ATTACH_AT)[r] = t1 - t;
            map_lat(sh, phase, OP_DETACH)[r] = t2 - t1;
            map_lat(sh, phase, OP_LOOKUP)[r] = t3 - t2;
            map_lat(sh, phase, OP_ATTACH_ANY)[r] = t4 - t3;
            map_lat(sh, phase, OP_NULL)[r] = t6 - t5;
        }
    }
    free(perm);
    return worker_hold(&sh->filled, &sh->measured);
}

int wl_map(void)
{
    size_t reps = opts.quick ? 300 : 2000;
    size_t sz = sizeof(struct map_shm) + 2 * NOPS * reps * sizeof(uint64_t);
    struct map_shm *sh = shm_alloc(sz);
    sh->small = 1000;
    sh->big = opts.quick ? 20000 : 100000; /* --quick: a fifth of the fill time */
    sh->reps = reps;
    CHANS_OPEN(&sh->filled, &sh->measured);
    long rss[2] = {0};
    int rc = -1;
    long base_rss = core_status_kb("RssAnon");
    pid_t w = spawn(map_worker, sh);
    for (int phase = 0; phase < 2; phase++) {
        if (chan_wait(&sh->filled, 1, 600000) < 0) goto out;
        rss[phase] = core_status_kb("RssAnon");
        chan_post(&sh->measured, 1);
    }
    if (chan_wait(&sh->filled, 1, 600000) < 0) goto out;
    chan_post(&sh->measured, 1);
    if (reap(w) != 0) goto out;
    w = 0;
    for (int op = 0; op < NOPS; op++) {
        struct stats big, small;
        stats_ns(map_lat(sh, 1, op), reps, &big);
        stats_ns(map_lat(sh, 0, op), reps, &small);
        char cas[64];
        snprintf(cas, sizeof(cas), "%s", op_name[op]);
        report("map", cas, &big, 1e6 / big.mean, &small, 1e6 / small.mean, "ops/s");
    }
    char note[128];
    snprintf(note, sizeof(note),
             "faultline = %zu attachments in the map, baseline = %zu (same run)", sh->big,
             sh->small);
    report_note("map", note);
    for (int op = 0; op < OP_NULL; op++) {
        struct stats big, small, nb, ns;
        stats_ns(map_lat(sh, 1, op), reps, &big);
        stats_ns(map_lat(sh, 0, op), reps, &small);
        stats_ns(map_lat(sh, 1, OP_NULL), reps, &nb);
        stats_ns(map_lat(sh, 0, OP_NULL), reps, &ns);
        char key[160];
        snprintf(key, sizeof(key), "%s beyond a null RPC, at %zu", op_name[op], sh->big);
        char val[64];
        snprintf(val, sizeof(val), "us (p50; at %zu: %.1f us)", sh->small, small.p50 - ns.p50);
        report_extra("map", key, big.p50 - nb.p50, val);
    }
    report_extra("map", "fill: attach at an address, 0 -> 1k", sh->fill_us_per_attach[0],
                 "us per attach");
    report_extra("map", "fill: attach at an address, 1k -> big", sh->fill_us_per_attach[1],
                 "us per attach");
    report_extra("map", "core RssAnon before any attachment", (double)base_rss, "kB");
    report_extra("map", "core memory per attachment (RssAnon, 1k -> big)",
                 (double)(rss[1] - rss[0]) * 1024.0 / (double)(sh->big - sh->small), "bytes");
    rc = 0;
out:
    if (rc) fprintf(stderr, "faultline-bench: map worker failed\n");
    kill_worker(w);
    CHANS_CLOSE(&sh->filled, &sh->measured);
    shm_free(sh, sz);
    return rc;
}

/* ---- revoke: detach of a region mapped in 1, 10, 100 clients ---- */

#define REVOKE_SZ (64ul << 10)
#define MAX_REV   100

struct rev_shm {
    int nclients;
    size_t reps;
    char tok[MAX_REV][FL_TOKEN_LEN + 1];
    int memfd; /* baseline */
    struct chan mready, ready, go, done, exit;
    uint64_t lat[]; /* ns per rep */
};

static long settle_us(int n)
{
    /* Long enough for n agents to have mapped the region before the detach,
     * so the detach is measured alone. */
    return 1000 + 100L * n;
}

static int rev_manager(void *arg)
{
    worker_name("rev-manager");
    struct rev_shm *sh = arg;
    struct fl_env *env = env_open(0);
    fl_cap ram, rms, rm, mds;
    FL_CHECK(fl_ram_alloc(env, REVOKE_SZ, &ram));
    FL_CHECK(fl_rm_session_open(env, &rms));
    FL_CHECK(fl_rm_create(env, rms, REVOKE_SZ, &rm));
    FL_CHECK(fl_region_map_dataspace(env, rm, &mds));
    for (int c = 0; c < sh->nclients; c++) FL_CHECK(fl_cap_export(env, mds, sh->tok[c]));
    chan_post(&sh->mready, 1);
    if (chan_wait(&sh->go, 1, -1) < 0) return 1;
    for (size_t r = 0; r < sh->reps; r++) {
        struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
        FL_CHECK(fl_region_map_attach(env, rm, ram, &a, NULL));
        sleep_us(settle_us(sh->nclients));
        uint64_t t = now_ns();
        FL_CHECK(fl_region_map_detach(env, rm, 0));
        sh->lat[r] = now_ns() - t;
    }
    return worker_hold(&sh->done, &sh->exit);
}

static int rev_client(void *arg)
{
    worker_name("rev-client");
    struct rev_shm *sh = arg;
    struct fl_env *env = env_open(4ul << 20);
    fl_cap mds;
    FL_CHECK(fl_cap_import(env, sh->tok[worker_index], &mds));
    int err;
    if (!fl_attach(env, mds, &err)) die_fl("fl_attach", err);
    return worker_hold(&sh->ready, &sh->exit);
}

static int rev_holder(void *arg)
{
    worker_name("rev-holder");
    struct rev_shm *sh = arg;
    void *p = mmap(NULL, REVOKE_SZ, PROT_READ | PROT_WRITE, MAP_SHARED, sh->memfd, 0);
    if (p == MAP_FAILED) die("mmap");
    return worker_hold(&sh->ready, &sh->exit);
}

static int revoke_one(int n, struct stats *fl, struct stats *base)
{
    size_t reps = opts.quick ? 10 : 200;
    size_t sz = sizeof(struct rev_shm) + reps * sizeof(uint64_t);
    struct rev_shm *sh = shm_alloc(sz);
    sh->nclients = n;
    sh->reps = reps;
    CHANS_OPEN(&sh->mready, &sh->ready, &sh->go, &sh->done, &sh->exit);
    pid_t *pids = calloc((size_t)n + 1, sizeof(pid_t));
    if (!pids) die("calloc");
    int rc = -1;

    /* faultline: the manager's detach returns once every agent revoked. */
    pids[n] = spawn(rev_manager, sh);
    if (chan_wait(&sh->mready, 1, 30000) < 0) goto out;
    for (int c = 0; c < n; c++) {
        pids[c] = spawn_nth(rev_client, sh, c);
    }
    if (chan_wait(&sh->ready, n, 60000) < 0) goto out;
    chan_post(&sh->go, 1);
    if (chan_wait(&sh->done, 1, 600000) < 0) goto out;
    stats_ns(sh->lat, reps, fl);
    chan_post(&sh->exit, n + 1);
    for (int c = 0; c <= n; c++) {
        reap(pids[c]);
        pids[c] = 0;
    }

    /* baseline: the kernel's own revocation, a punch of the shared memfd
     * range that n processes have mapped. */
    sh->memfd = memfd_create("flbench-revoke", MFD_CLOEXEC);
    if (sh->memfd < 0 || ftruncate(sh->memfd, REVOKE_SZ) < 0) die("memfd");
    for (int c = 0; c < n; c++) pids[c] = spawn(rev_holder, sh);
    if (chan_wait(&sh->ready, n, 60000) < 0) goto out;
    for (size_t r = 0; r < reps; r++) {
        if (fallocate(sh->memfd, 0, 0, REVOKE_SZ) < 0) die("fallocate");
        sleep_us(settle_us(n));
        uint64_t t = now_ns();
        if (fallocate(sh->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, REVOKE_SZ) < 0)
            die("punch");
        sh->lat[r] = now_ns() - t;
    }
    stats_ns(sh->lat, reps, base);
    chan_post(&sh->exit, n);
    for (int c = 0; c < n; c++) {
        reap(pids[c]);
        pids[c] = 0;
    }
    rc = 0;
out:
    for (int c = 0; c <= n; c++) kill_worker(pids[c]);
    if (sh->memfd > 0) close(sh->memfd);
    CHANS_CLOSE(&sh->mready, &sh->ready, &sh->go, &sh->done, &sh->exit);
    free(pids);
    shm_free(sh, sz);
    return rc;
}

int wl_revoke(void)
{
    static const int counts[] = {1, 10, 100};
    for (size_t i = 0; i < 3; i++) {
        struct stats fl, base;
        if (revoke_one(counts[i], &fl, &base) < 0) return -1;
        char cas[64];
        snprintf(cas, sizeof(cas), "64 KiB mapped in %d client%s", counts[i],
                 counts[i] > 1 ? "s" : "");
        report("revoke", cas, &fl, 1e6 / fl.mean, &base, 1e6 / base.mean, "detaches/s");
    }
    report_note("revoke", "baseline: fallocate(PUNCH_HOLE) of a memfd range mapped (untouched) in "
                          "as many processes; faultline's mappings are untouched too");
    return 0;
}

/* ---- isolation: a healthy manager beside a stopped one and an RPC flood ---- */

#define FLOOD_RATE    2000 /* RPCs per second */
#define THREADS_PER_B 100

struct iso_shm {
    int pending, nb;
    char tok[64][FL_TOKEN_LEN + 1];
    struct chan ready, exit;
    volatile int stop;
    size_t flood_cap, flood_n;
    uint64_t flood_start, flood_end;
    uint64_t flood[]; /* ns per RPC */
};

static int b_manager(void *arg)
{
    worker_name("iso-stopped-mgr");
    struct iso_shm *sh = arg;
    struct fl_env *env = env_open(0);
    fl_cap rms, rm, sigh, mds;
    FL_CHECK(fl_rm_session_open(env, &rms));
    FL_CHECK(fl_rm_create(env, rms, (size_t)sh->pending * PAGE, &rm));
    FL_CHECK(fl_signal_context_create(env, &sigh));
    FL_CHECK(fl_region_map_fault_handler(env, rm, sigh));
    FL_CHECK(fl_region_map_dataspace(env, rm, &mds));
    for (int c = 0; c < sh->nb; c++) FL_CHECK(fl_cap_export(env, mds, sh->tok[c]));
    chan_post(&sh->ready, 1);
    /* It never serves: the bench stops it. */
    chan_wait(&sh->exit, 1, -1);
    return 0;
}

static void *b_toucher(void *arg)
{
    *(volatile char *)arg = 1; /* waits in the kernel for a manager that never comes */
    return NULL;
}

static int b_client(void *arg)
{
    worker_name("iso-stuck-client");
    struct iso_shm *sh = arg;
    int idx = worker_index;
    struct fl_env *env = env_open(0);
    fl_cap mds;
    FL_CHECK(fl_cap_import(env, sh->tok[idx], &mds));
    int err;
    char *p = fl_attach(env, mds, &err);
    if (!p) die_fl("fl_attach", err);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 128 << 10);
    for (int t = 0; t < THREADS_PER_B; t++) {
        pthread_t th;
        int e = pthread_create(&th, &at, b_toucher, p + ((size_t)idx * THREADS_PER_B + t) * PAGE);
        if (e) {
            errno = e;
            die("pthread_create");
        }
    }
    chan_post(&sh->ready, 1);
    chan_wait(&sh->exit, 1, -1);
    _exit(0); /* its threads never return */
}

static int flooder(void *arg)
{
    worker_name("iso-flooder");
    struct iso_shm *sh = arg;
    struct fl_env *env = env_open(0);
    struct fl_session_info info;
    chan_post(&sh->ready, 1);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    sh->flood_start = now_ns();
    size_t n = 0;
    while (!sh->stop) {
        next.tv_nsec += 1000000000L / FLOOD_RATE;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
        }
        uint64_t t = now_ns();
        FL_CHECK(fl_env_session_info(env, &info));
        if (n < sh->flood_cap) sh->flood[n] = now_ns() - t;
        n++;
    }
    sh->flood_end = now_ns();
    sh->flood_n = n < sh->flood_cap ? n : sh->flood_cap;
    fl_env_close(env);
    return 0;
}

/* Threads of pid waiting in handle_userfault, from /proc. */
static int uffd_waiters(pid_t pid)
{
    char path[320], buf[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/wchan", (int)pid, e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t k = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (k > 0) {
            buf[k] = 0;
            n += strstr(buf, "userfault") != NULL;
        }
    }
    closedir(d);
    return n;
}

static int run_flood(struct iso_shm *sh, pid_t *pid)
{
    sh->stop = 0;
    sh->flood_n = 0;
    *pid = spawn(flooder, sh);
    return chan_wait(&sh->ready, 1, 30000);
}

static int stop_flood(struct iso_shm *sh, pid_t pid, struct stats *st, double *rate)
{
    sh->stop = 1;
    if (reap(pid) != 0) return -1;
    stats_ns(sh->flood, sh->flood_n, st);
    *rate = (double)sh->flood_n / ((double)(sh->flood_end - sh->flood_start) / 1e9);
    return 0;
}

int wl_isolation(void)
{
    size_t n = opts.quick ? 300 : 3000, warm = 50;
    int pending = opts.quick ? 200 : 1000;
    size_t cap = (size_t)FLOOD_RATE * 120;
    size_t sz = sizeof(struct iso_shm) + cap * sizeof(uint64_t);
    struct iso_shm *sh = shm_alloc(sz);
    sh->flood_cap = cap;
    sh->pending = pending;
    sh->nb = (pending + THREADS_PER_B - 1) / THREADS_PER_B;
    CHANS_OPEN(&sh->ready, &sh->exit);
    pid_t bm = 0, fp = 0, *bc = calloc((size_t)sh->nb, sizeof(pid_t));
    if (!bc) die("calloc");
    int rc = -1;
    /* Alone before and after the loaded phase, half the faults each: a change
     * in the machine's own load hits both sides alike. */
    struct flr_params half = flr_one(n / 2 + warm, PAGE);
    struct flr_params full = half;
    full.units = n + warm;
    struct run_result r;
    struct acc alone = {0}, loaded = {0}, stuck = {0};
    struct stats a, l, fa, fl;
    double rate_alone, rate_loaded;

    if (flr_run(&half, &r) < 0) goto out;
    acc_run(&alone, &r, half.units, warm);
    run_free(&r);
    if (run_flood(sh, &fp) < 0) goto out;
    sleep_us(opts.quick ? 300000 : 1000000);
    if (stop_flood(sh, fp, &fa, &rate_alone) < 0) goto out;
    fp = 0;

    /* The stopped manager B with its faults pending. */
    bm = spawn(b_manager, sh);
    if (chan_wait(&sh->ready, 1, 30000) < 0) goto out;
    kill(bm, SIGSTOP);
    for (int c = 0; c < sh->nb; c++) bc[c] = spawn_nth(b_client, sh, c);
    if (chan_wait(&sh->ready, sh->nb, 60000) < 0) goto out;
    int waiting = 0;
    for (uint64_t end = now_ns() + 20000000000ull; now_ns() < end;) {
        waiting = 0;
        for (int c = 0; c < sh->nb; c++) waiting += uffd_waiters(bc[c]);
        if (waiting >= pending) break;
        sleep_us(10000);
    }
    /* Core has read them once it signalled B; give its loop a moment. */
    sleep_us(100000);

    /* B stopped with its faults pending, no flood yet: what a stuck manager
     * alone costs the healthy one. */
    if (flr_run(&half, &r) < 0) goto out;
    acc_run(&stuck, &r, half.units, warm);
    run_free(&r);

    /* The flood, then the healthy manager again. */
    if (run_flood(sh, &fp) < 0) goto out;
    double cpu0 = core_cpu_us();
    uint64_t t0 = now_ns();
    if (flr_run(&full, &r) < 0) goto out;
    double core_util = (core_cpu_us() - cpu0) / ((double)(now_ns() - t0) / 1e3) * 100.0;
    acc_run(&loaded, &r, full.units, warm);
    run_free(&r);
    if (stop_flood(sh, fp, &fl, &rate_loaded) < 0) goto out;
    fp = 0;

    /* B and its clients go; alone again. */
    for (int c = 0; c < sh->nb; c++) {
        kill_worker(bc[c]);
        bc[c] = 0;
    }
    kill_worker(bm);
    bm = 0;
    sleep_us(200000);
    if (flr_run(&half, &r) < 0) goto out;
    acc_run(&alone, &r, half.units, warm);
    run_free(&r);

    stats_of(alone.lat, alone.n, &a);
    stats_of(loaded.lat, loaded.n, &l);
    char cas[64];
    snprintf(cas, sizeof(cas), "healthy manager, %zu faults", loaded.n);
    report("isolation", cas, &l, (double)loaded.n / loaded.busy_s, &a,
           (double)alone.n / alone.busy_s, "faults/s");
    struct stats sk;
    stats_of(stuck.lat, stuck.n, &sk);
    snprintf(cas, sizeof(cas), "only the stopped manager, %zu", stuck.n);
    report("isolation", cas, &sk, (double)stuck.n / stuck.busy_s, &a,
           (double)alone.n / alone.busy_s, "faults/s");
    report("isolation", "flood RPC round trip", &fl, rate_loaded, &fa, rate_alone, "RPCs/s");
    report_note("isolation", "faultline = under load (manager stopped with faults pending, RPC "
                             "flood), baseline = alone, before and after (same run)");
    report_extra("isolation", "faults pending on the stopped manager (threads in uffd wait)",
                 waiting, "");
    report_extra("isolation", "core CPU while loaded", core_util, "% of one CPU");
    report_extra("isolation", "core queueing delay (flood RPC p50 loaded - alone)", fl.p50 - fa.p50,
                 "us");
    report_extra("isolation", "core queueing delay (flood RPC p99 loaded - alone)", fl.p99 - fa.p99,
                 "us");
    rc = 0;
out:
    acc_free(&alone);
    acc_free(&loaded);
    acc_free(&stuck);
    chan_post(&sh->exit, 1 + sh->nb);
    if (fp) {
        sh->stop = 1;
        kill_worker(fp);
    }
    for (int c = 0; c < sh->nb; c++) kill_worker(bc[c]);
    kill_worker(bm);
    CHANS_CLOSE(&sh->ready, &sh->exit);
    free(bc);
    shm_free(sh, sz);
    return rc;
}
