/*
 * The fault-path workloads: touch, reflect, stream, scale. (map, revoke and
 * isolation are in workloads2.c.) Each measures faultline and its baseline in
 * the same run and reports both.
 */
#include "reflect.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- helpers over fault timestamps ---- */

void lat_stats(const struct fault_times *t, size_t nclients, size_t units, size_t warm,
               struct stats *st)
{
    size_t n = 0;
    double *us = malloc(nclients * units * sizeof(*us) + 1);
    if (!us) die("malloc");
    for (size_t c = 0; c < nclients; c++)
        for (size_t u = warm; u < units; u++) {
            const struct fault_times *f = &t[c * units + u];
            if (f->end >= f->t0 && f->t0) us[n++] = (double)(f->end - f->t0) / 1e3;
        }
    stats_of(us, n, st);
    free(us);
}

void push(double **a, size_t *n, double v)
{
    /* Grow at powers of two. */
    if ((*n & (*n - 1)) == 0) {
        double *b = realloc(*a, (*n ? *n * 2 : 64) * sizeof(double));
        if (!b) die("realloc");
        *a = b;
    }
    (*a)[(*n)++] = v;
}

void acc_times(struct acc *a, const struct fault_times *t, size_t nclients, size_t units,
               size_t warm)
{
    for (size_t c = 0; c < nclients; c++)
        for (size_t u = warm; u < units; u++) {
            const struct fault_times *f = &t[c * units + u];
            if (!f->t0 || f->end < f->t0) continue;
            push(&a->lat, &a->n, (double)(f->end - f->t0) / 1e3);
            if (!f->t1) continue;
            a->timed++;
            bool batched = f->flags & FT_BATCHED;
            a->batched += batched;
            a->early += f->end < f->t3;
            /* Differences of unsigned timestamps, signed: a clock is only
             * monotonic per CPU within its error, and a hop that still comes
             * out negative is counted, not averaged in. */
            int64_t wake = (int64_t)(f->t1 - f->t0), fault = (int64_t)(f->t2 - f->t1),
                    resume = (int64_t)(f->end - f->t2);
            if ((!batched && wake < 0) || fault < 0 || resume < 0) {
                a->disordered++;
                continue;
            }
            if (!batched) push(&a->hop[HOP_WAKE], &a->nh[HOP_WAKE], (double)wake / 1e3);
            push(&a->hop[HOP_FAULT], &a->nh[HOP_FAULT], (double)fault / 1e3);
            push(&a->hop[HOP_RESUME], &a->nh[HOP_RESUME], (double)resume / 1e3);
            push(&a->hop[HOP_REPLY], &a->nh[HOP_REPLY], (double)(int64_t)(f->t3 - f->t2) / 1e3);
            push(&a->hop[HOP_REFLECT], &a->nh[HOP_REFLECT], (double)(int64_t)(f->t3 - f->t0) / 1e3);
        }
}

double acc_hop(struct acc *a, int h)
{
    struct stats st;
    stats_of(a->hop[h], a->nh[h], &st);
    return a->nh[h] ? st.p50 : NAN;
}

void acc_free(struct acc *a)
{
    free(a->lat);
    for (int h = 0; h < NHOPS; h++) free(a->hop[h]);
    memset(a, 0, sizeof(*a));
}

void acc_run(struct acc *a, const struct run_result *r, size_t units, size_t warm)
{
    acc_times(a, r->times, 1, units, warm);
    a->busy_s += (double)(r->finish - r->times[warm].t0) / 1e9;
}

/* ---- touch: first touch of pages whose backing is attached ---- */

struct touch_shm {
    size_t pages;
    uint64_t lat[]; /* ns per page */
};

static void touch_pages(struct touch_shm *sh, volatile char *p)
{
    for (size_t i = 0; i < sh->pages; i++) {
        uint64_t t0 = now_ns();
        p[i * PAGE] = 1;
        sh->lat[i] = now_ns() - t0;
    }
}

static int touch_kernel(void *arg)
{
    worker_name("touch-kernel");
    struct touch_shm *sh = arg;
    size_t size = sh->pages * PAGE;
    int fd = memfd_create("flbench-touch", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0 || fallocate(fd, 0, 0, (off_t)size) < 0)
        die("memfd");
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap");
    touch_pages(sh, p);
    return 0;
}

static int touch_faultline(void *arg)
{
    worker_name("touch-fl");
    struct touch_shm *sh = arg;
    size_t size = sh->pages * PAGE;
    struct fl_env *env = env_open(size + (4ul << 20));
    fl_cap ram, rms, rm, mds;
    FL_CHECK(fl_ram_alloc(env, size, &ram));
    FL_CHECK(fl_rm_session_open(env, &rms));
    FL_CHECK(fl_rm_create(env, rms, size, &rm));
    struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
    FL_CHECK(fl_region_map_attach(env, rm, ram, &a, NULL));
    FL_CHECK(fl_region_map_dataspace(env, rm, &mds));
    int err;
    char *p = fl_attach(env, mds, &err);
    if (!p) die_fl("fl_attach", err);
    touch_pages(sh, p);
    fl_env_close(env);
    return 0;
}

int wl_touch(void)
{
    size_t pages = opts.quick ? 8192 : 65536, rounds = 4, per = pages / rounds;
    size_t sz = sizeof(struct touch_shm) + per * sizeof(uint64_t);
    struct touch_shm *sh = shm_alloc(sz);
    sh->pages = per;
    struct acc side[2] = {{0}}; /* 0: faultline, 1: kernel */
    int rc = 0;
    for (size_t r = 0; r < rounds && rc == 0; r++)
        for (int k = 1; k >= 0 && rc == 0; k--) {
            if (reap(spawn(k ? touch_kernel : touch_faultline, sh)) != 0) {
                rc = -1;
                break;
            }
            for (size_t i = 0; i < per; i++) {
                push(&side[k].lat, &side[k].n, (double)sh->lat[i] / 1e3);
                side[k].busy_s += (double)sh->lat[i] / 1e9;
            }
        }
    if (rc == 0) {
        struct stats fl, kn;
        stats_of(side[0].lat, side[0].n, &fl);
        stats_of(side[1].lat, side[1].n, &kn);
        char cas[64];
        snprintf(cas, sizeof(cas), "%zu pages, write", pages);
        report("touch", cas, &fl, (double)fl.n / side[0].busy_s, &kn, (double)kn.n / side[1].busy_s,
               "pages/s");
        report_note("touch", "baseline: kernel minor fault on a fallocated, shared memfd page; "
                             "4 alternating rounds each");
    }
    acc_free(&side[0]);
    acc_free(&side[1]);
    shm_free(sh, sz);
    return rc;
}

/* ---- reflect: one fault reflected to a manager that attaches 4 KiB ---- */

/* The sides of reflect, in the order their rounds alternate. */
enum { R_PIPE, R_FL, R_FLOOR, NSIDES };
static const char *const side_name[NSIDES] = {"pipeline", "faultline", "floor"};

/* One side's run of units faults (counting: system calls too). */
static int reflect_side(int side, size_t units, bool counting, struct run_result *res)
{
    if (side == R_FL) {
        struct flr_params p = flr_one(units, PAGE);
        p.count_syscalls = counting;
        return flr_run(&p, res);
    }
    struct pl_params p = {.nclients = 1,
                          .nmgr = 1,
                          .pages = units,
                          .floor = side == R_FLOOR,
                          .count_syscalls = counting};
    return pipeline_run(&p, res);
}

int wl_reflect(void)
{
    size_t n = opts.quick ? 1000 : 10000, warm = 100, rounds = opts.quick ? 2 : 4;
    size_t per = n / rounds, units = per + warm;
    size_t count_units = opts.quick ? 300 : 1000; /* the counting round's faults */
    struct acc acc[NSIDES] = {{0}};
    /* Per side, per process (core or handler, manager, client): what the
     * timed rounds used, and what the counting round used. */
    struct counts used[NSIDES][3] = {{{0}}}, counted[NSIDES][3] = {{{0}}};
    double loop_us = 0, loop_cs = 0;
    int rc = 0;
    for (size_t r = 0; r <= rounds && rc == 0; r++) {
        bool counting = r == rounds; /* the last round counts system calls, untimed */
        for (int s = 0; s < NSIDES; s++) {
            struct run_result res;
            if (reflect_side(s, counting ? count_units : units, counting, &res) < 0) {
                rc = -1;
                break;
            }
            struct counts c[3] = {res.core, res.manager, res.client};
            if (counting) {
                for (int k = 0; k < 3; k++) counted[s][k] = c[k];
            } else {
                acc_run(&acc[s], &res, units, warm);
                for (int k = 0; k < 3; k++) counts_add(&used[s][k], &c[k]);
                loop_us += res.core_loop_us; /* the pipeline's: 0 */
                loop_cs += res.core_loop_ctxsw;
            }
            run_free(&res);
        }
    }
    if (rc == 0) {
        struct stats st[NSIDES];
        for (int s = 0; s < NSIDES; s++) stats_of(acc[s].lat, acc[s].n, &st[s]);
        double thr[NSIDES];
        for (int s = 0; s < NSIDES; s++) thr[s] = (double)acc[s].n / acc[s].busy_s;
        char cas[64];
        snprintf(cas, sizeof(cas), "%zu faults, 1 client", acc[R_FL].n);
        report_named("reflect", cas, &st[R_FL], thr[R_FL], "pipeline", &st[R_PIPE], thr[R_PIPE],
                     "faults/s");
        snprintf(cas, sizeof(cas), "%zu faults, against the floor", acc[R_FL].n);
        report_named("reflect", cas, &st[R_FL], thr[R_FL], "floor", &st[R_FLOOR], thr[R_FLOOR],
                     "faults/s");
        report_ratio("reflect", "pipeline / floor, p50", st[R_PIPE].p50 / st[R_FLOOR].p50);
        report_ratio("reflect", "pipeline / floor, p99", st[R_PIPE].p99 / st[R_FLOOR].p99);
        report_note("reflect",
                    "pipeline: handler process blocks in read(uffd), ring in shared memory + "
                    "eventfd to a manager process, which resolves with UFFDIO_COPY into the "
                    "client's uffd and waits for nothing; floor: the handler process resolves "
                    "with UFFDIO_COPY itself, no manager");
        /* The client's critical path hop by hop (medians: they need not
         * add up to the latency's median), then what is off that path. */
        static const struct hop_row hop_rows[] = {
            {R_FL, HOP_WAKE, "faultline hop: touch -> manager woken (uffd, core, eventfd)"},
            {R_FL, HOP_FAULT, "faultline hop: fault() (shared memory)"},
            {R_FL, HOP_RESUME, "faultline hop: attach sent -> client resumed (core, agent)"},
            {R_FL, HOP_REPLY, "faultline: attach RPC, sent -> returned (off the client's path)"},
            {R_PIPE, HOP_WAKE, "pipeline hop: touch -> manager woken (handler, eventfd)"},
            {R_PIPE, HOP_FAULT, "pipeline hop: fault taken from the ring"},
            {R_PIPE, HOP_RESUME, "pipeline hop: UFFDIO_COPY entered -> client resumed"},
            {R_PIPE, HOP_REPLY, "pipeline: UFFDIO_COPY, entered -> returned"},
            {R_FLOOR, HOP_WAKE, "floor hop: touch -> handler woken"},
            {R_FLOOR, HOP_RESUME, "floor hop: UFFDIO_COPY entered -> client resumed"}};
        struct acc *fa = &acc[R_FL], *pa = &acc[R_PIPE], *oa = &acc[R_FLOOR];
        for (size_t i = 0; i < sizeof(hop_rows) / sizeof(hop_rows[0]); i++) {
            if (hop_rows[i].side != R_FL && hop_rows[i - 1].side == R_FL)
                report_extra("reflect", "faultline: client resumed before attach returned",
                             fa->timed ? 100.0 * (double)fa->early / (double)fa->timed : NAN,
                             "% of faults");
            report_extra("reflect", hop_rows[i].key,
                         acc_hop(&acc[hop_rows[i].side], hop_rows[i].hop), "us (p50)");
        }
        char hops[240];
        snprintf(hops, sizeof(hops),
                 "hops: faultline %zu of %zu faults picked up in an earlier fault's wake (no "
                 "wake hop), %zu out of order; pipeline %zu of %zu, %zu; floor %zu of %zu, %zu",
                 fa->batched, fa->timed, fa->disordered, pa->batched, pa->timed, pa->disordered,
                 oa->batched, oa->timed, oa->disordered);
        report_note("reflect", hops);
        /* CPU and switches: the timed rounds, every fault (the warm-up ones
         * too); system calls: the counting round. */
        static const char *const proc[NSIDES][3] = {
            {"handler", "manager", "client"},
            {"core (all threads)", "manager+agent", "client+agent"},
            {"handler", "", "client"}};
        double faults = (double)(rounds * units);
        char key[128];
        for (int s = 0; s < NSIDES; s++)
            for (int k = 0; k < 3; k++) {
                if (!*proc[s][k]) continue;
                snprintf(key, sizeof(key), "%s: %s CPU per fault", side_name[s], proc[s][k]);
                report_extra("reflect", key, used[s][k].cpu_us / faults, "us");
            }
        report_extra("reflect", "faultline: core loop thread CPU per fault", loop_us / faults,
                     "us");
        for (int s = 0; s < NSIDES; s++) {
            snprintf(key, sizeof(key), "%s: context switches per fault, ", side_name[s]);
            report_counts("reflect", key, proc[s], used[s], CF_CTXSW, faults, "", true);
        }
        report_extra("reflect", "faultline: context switches per fault, core loop thread",
                     loop_cs / faults, "");
        for (int s = 0; s < NSIDES; s++) {
            double all = 0;
            for (int k = 0; k < 3; k++) {
                if (!*proc[s][k]) continue;
                snprintf(key, sizeof(key), "%s: system calls per fault, %s", side_name[s],
                         proc[s][k]);
                report_extra("reflect", key, counted[s][k].syscalls / (double)count_units, "");
                snprintf(key, sizeof(key), "%s: EAGAIN returns per fault, %s", side_name[s],
                         proc[s][k]);
                report_extra("reflect", key, counted[s][k].eagain / (double)count_units, "");
                all += counted[s][k].syscalls;
            }
            snprintf(key, sizeof(key), "%s: system calls per fault, all processes", side_name[s]);
            report_extra("reflect", key, all / (double)count_units, "");
        }
        char note[320];
        snprintf(note, sizeof(note),
                 "%zu alternating rounds each (pipeline, faultline, floor), first %zu faults of a "
                 "round not counted; system calls: one more round of %zu faults per side, "
                 "untimed, counted by %s",
                 rounds, warm, count_units, sys_count_method());
        report_note("reflect", note);
    }
    for (int s = 0; s < NSIDES; s++) acc_free(&acc[s]);
    return rc;
}

/* ---- stream: 1 GiB read sequentially, 2 MiB attached per fault ---- */

#define STREAM_CHUNK (2ul << 20)

struct stream_shm {
    size_t size;
    uint64_t sink;
    uint64_t start, finish;
    double cpu_us;  /* the reader's CPU time over the read */
    uint64_t lat[]; /* ns per chunk */
};

static int stream_kernel(void *arg)
{
    worker_name("stream-kernel");
    struct stream_shm *sh = arg;
    int fd = memfd_create("flbench-stream", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)sh->size) < 0 || fallocate(fd, 0, 0, (off_t)sh->size) < 0)
        die("memfd");
    const char *p = mmap(NULL, sh->size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap");
    uint64_t sum = 0;
    double cpu0 = pid_cpu_us(getpid());
    sh->start = now_ns();
    for (size_t c = 0; c < sh->size / STREAM_CHUNK; c++) {
        uint64_t t0 = now_ns();
        const volatile uint64_t *w = (const volatile uint64_t *)(p + c * STREAM_CHUNK);
        for (size_t k = 0; k < STREAM_CHUNK / 8; k++) sum += w[k];
        sh->lat[c] = now_ns() - t0;
    }
    sh->finish = now_ns();
    sh->cpu_us = pid_cpu_us(getpid()) - cpu0;
    sh->sink = sum;
    return 0;
}

int wl_stream(void)
{
    size_t size = opts.quick ? 64ul << 20 : 1ul << 30, rounds = 2;
    size_t per = size / rounds, chunks = per / STREAM_CHUNK;
    size_t sz = sizeof(struct stream_shm) + chunks * sizeof(uint64_t);
    struct stream_shm *sh = shm_alloc(sz);
    sh->size = per;
    struct acc fa = {0}, ka = {0};
    double reflect_us = 0, core_us = 0, fl_cpu = 0, k_cpu = 0;
    int rc = 0;
    for (size_t r = 0; r < rounds && rc == 0; r++) {
        struct run_result fr;
        struct flr_params p = flr_one(chunks, STREAM_CHUNK);
        p.stream = true;
        if (reap(spawn(stream_kernel, sh)) != 0 || flr_run(&p, &fr) != 0) {
            rc = -1;
            break;
        }
        for (size_t c = 0; c < chunks; c++) push(&ka.lat, &ka.n, (double)sh->lat[c] / 1e3);
        ka.busy_s += (double)(sh->finish - sh->start) / 1e9;
        k_cpu += sh->cpu_us;
        fl_cpu += fr.client.cpu_us;
        acc_run(&fa, &fr, chunks, 0);
        core_us += fr.core.cpu_us;
        run_free(&fr);
    }
    if (rc == 0) {
        struct stats fl, k;
        stats_of(ka.lat, ka.n, &k);
        stats_of(fa.lat, fa.n, &fl);
        double mib = (double)size / (1 << 20);
        char cas[64];
        snprintf(cas, sizeof(cas), "%zu MiB, per 2 MiB chunk", size >> 20);
        report("stream", cas, &fl, mib / fa.busy_s, &k, mib / ka.busy_s, "MiB/s");
        reflect_us = acc_hop(&fa, HOP_REFLECT);
        report_extra("stream", "faultline: median reflection (touch -> attach returned)",
                     reflect_us, "us");
        /* Wall-clock throughput favours whoever sleeps more when the machine
         * is busy (the scheduler's wake-up credit); CPU time does not. */
        char val[64];
        snprintf(val, sizeof(val), "ms (baseline: %.1f ms)", k_cpu / 1e3 / mib * 100);
        report_extra("stream", "reader CPU time per 100 MiB, faultline (agent included)",
                     fl_cpu / 1e3 / mib * 100, val);
        report_extra("stream", "faultline: core CPU per chunk", core_us / (double)(rounds * chunks),
                     "us");
        report_note("stream", "baseline: mmap of a fallocated memfd read sequentially; 2 "
                              "alternating rounds of half the size each");
    }
    acc_free(&fa);
    acc_free(&ka);
    shm_free(sh, sz);
    return rc;
}

/* ---- scale: clients x managers, aggregate reflected faults/s ---- */

int wl_scale(void)
{
    static const int clients[] = {1, 4, 16, 64}, managers[] = {1, 4};
    size_t pages = opts.quick ? 20 : 1000;
    for (size_t mi = 0; mi < 2; mi++)
        for (size_t ci = 0; ci < 4; ci++) {
            int c = clients[ci], m = managers[mi];
            if (c < m) continue; /* a manager without a client measures nothing */
            struct flr_params p = {
                .nclients = c, .nmgr = m, .units = pages, .unit = PAGE, .chunk = PAGE};
            struct run_result fr, pr;
            struct pl_params pp = {.nclients = c, .nmgr = m, .pages = pages};
            if (flr_run(&p, &fr) < 0) return -1;
            if (pipeline_run(&pp, &pr) < 0) {
                run_free(&fr);
                return -1;
            }
            double faults = (double)c * (double)pages;
            struct stats fl, base;
            lat_stats(fr.times, (size_t)c, pages, 0, &fl);
            lat_stats(pr.times, (size_t)c, pages, 0, &base);
            char cas[64];
            snprintf(cas, sizeof(cas), "%2d clients, %d manager%s", c, m, m > 1 ? "s" : "");
            report("scale", cas, &fl, faults / ((double)(fr.finish - fr.start) / 1e9), &base,
                   faults / ((double)(pr.finish - pr.start) / 1e9), "faults/s");
            char key[160];
            snprintf(key, sizeof(key), "%s: core CPU per fault (all threads)", cas);
            char hval[64];
            snprintf(hval, sizeof(hval), "us (pipeline handlers: %.1f us)",
                     pr.core.cpu_us / faults);
            report_extra("scale", key, fr.core.cpu_us / faults, hval);
            snprintf(key, sizeof(key), "%s: core loop thread CPU per fault", cas);
            report_extra("scale", key, fr.core_loop_us / faults, "us");
            snprintf(key, sizeof(key), "%s: CPU per fault, all processes", cas);
            char val[64];
            snprintf(val, sizeof(val), "us (baseline: %.1f us)",
                     (pr.core.cpu_us + pr.manager.cpu_us + pr.client.cpu_us) / faults);
            report_extra("scale", key,
                         (fr.core.cpu_us + fr.manager.cpu_us + fr.client.cpu_us) / faults, val);
            run_free(&fr);
            run_free(&pr);
        }
    report_note("scale", "baseline: the fire-and-forget pipeline (as in reflect), one handler and "
                         "one manager process per manager; a handler thread per client uffd");
    return 0;
}
