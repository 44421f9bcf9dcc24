/*
 * The workloads of issue 6: touch, reflect, stream, scale. (map, revoke and
 * isolation are in workloads2.c.) Each measures faultline and its baseline in
 * the same run and reports both.
 */
#include "reflect.h"

#include <errno.h>
#include <fcntl.h>
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

enum hop { HOP_WOKEN, HOP_ASKED, HOP_RESOLVED, HOP_RESUMED };

/* The median of one hop, in us; a hop can be negative (the client may resume
 * before the manager's reply arrives). */
static double hop_median(const struct fault_times *t, size_t n, size_t units, size_t warm,
                         enum hop h)
{
    double *us = malloc(n * sizeof(*us) + 1);
    if (!us) die("malloc");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct fault_times *f = &t[i];
        if (i % units < warm || !f->t1 || !f->t0 || !f->end) continue;
        int64_t d = h == HOP_WOKEN      ? (int64_t)(f->t1 - f->t0)
                    : h == HOP_ASKED    ? (int64_t)(f->t2 - f->t1)
                    : h == HOP_RESOLVED ? (int64_t)(f->t3 - f->t2)
                                        : (int64_t)(f->end - f->t3);
        us[k++] = (double)d / 1e3;
    }
    struct stats st;
    stats_of(us, k, &st);
    free(us);
    return st.p50;
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
    fl_cap ram, rm, mds;
    FL_CHECK(fl_ram_alloc(env, size, &ram));
    FL_CHECK(fl_rm_create(env, size, &rm));
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

static int run_touch(int (*fn)(void *), struct touch_shm *sh, struct stats *st, double *thr)
{
    if (reap(spawn(fn, sh)) != 0) return -1;
    uint64_t sum = 0;
    for (size_t i = 0; i < sh->pages; i++) sum += sh->lat[i];
    stats_ns(sh->lat, sh->pages, st);
    *thr = (double)sh->pages / ((double)sum / 1e9);
    return 0;
}

int wl_touch(void)
{
    size_t pages = opts.quick ? 8192 : 65536;
    size_t sz = sizeof(struct touch_shm) + pages * sizeof(uint64_t);
    struct touch_shm *sh = shm_alloc(sz);
    sh->pages = pages;
    struct stats fl, k;
    double fl_thr, k_thr;
    int rc = -1;
    if (run_touch(touch_kernel, sh, &k, &k_thr) == 0 &&
        run_touch(touch_faultline, sh, &fl, &fl_thr) == 0) {
        char cas[64];
        snprintf(cas, sizeof(cas), "%zu pages, write", pages);
        report("touch", cas, &fl, fl_thr, &k, k_thr, "pages/s");
        report_note("touch", "baseline: kernel minor fault on a fallocated, shared memfd page");
        rc = 0;
    }
    shm_free(sh, sz);
    return rc;
}

/* ---- reflect: one fault reflected to a manager that attaches 4 KiB ---- */

int wl_reflect(void)
{
    size_t n = opts.quick ? 1000 : 10000, warm = 100;
    struct pipe_result pr;
    struct flr_result fr;
    if (pipeline_run(1, n + warm, 1, &pr) < 0) return -1;
    struct flr_params p = {
        .nclients = 1, .nmgr = 1, .units = n + warm, .unit = PAGE, .chunk = PAGE};
    if (flr_run(&p, &fr) < 0) {
        pipeline_free(&pr);
        return -1;
    }
    struct stats fl, base;
    lat_stats(fr.times, 1, n + warm, warm, &fl);
    lat_stats(pr.times, 1, n + warm, warm, &base);
    double fl_thr = (double)n / ((double)(fr.finish - fr.times[warm].t0) / 1e9);
    double base_thr = (double)n / ((double)(pr.finish - pr.times[warm].t0) / 1e9);
    char cas[64];
    snprintf(cas, sizeof(cas), "%zu faults, 1 client", n);
    report("reflect", cas, &fl, fl_thr, &base, base_thr, "faults/s");
    static const char *fl_hops[] = {
        "faultline hop: touch -> manager woken (uffd, core, eventfd)",
        "faultline hop: fault() RPC",
        "faultline hop: attach RPC (core maps, agent instructed)",
        "faultline hop: attach returned -> client resumed",
    };
    static const char *pl_hops[] = {
        "baseline hop: touch -> manager woken (handler, eventfd)",
        NULL,
        "baseline hop: round trip incl. UFFDIO_COPY",
        "baseline hop: reply received -> client resumed",
    };
    for (int h = HOP_WOKEN; h <= HOP_RESUMED; h++) {
        report_extra("reflect", fl_hops[h], hop_median(fr.times, fr.n, n + warm, warm, h),
                     "us (p50)");
        if (pl_hops[h])
            report_extra("reflect", pl_hops[h], hop_median(pr.times, pr.n, n + warm, warm, h),
                         "us (p50)");
    }
    double faults = (double)(n + warm);
    report_extra("reflect", "faultline: core CPU per fault (all threads)", fr.core_cpu_us / faults,
                 "us");
    report_extra("reflect", "faultline: core loop thread CPU per fault", fr.core_loop_us / faults,
                 "us");
    report_extra("reflect", "faultline: manager CPU per fault (incl. its agent)",
                 fr.manager_cpu_us / faults, "us");
    report_extra("reflect", "baseline: handler CPU per fault", pr.handler_cpu_us / faults, "us");
    report_extra("reflect", "baseline: manager CPU per fault", pr.manager_cpu_us / faults, "us");
    report_extra("reflect", "faultline: context switches per fault, core loop",
                 fr.core_ctxsw / faults, "");
    report_extra("reflect", "faultline: context switches per fault, manager (2 threads)",
                 fr.manager_ctxsw / faults, "");
    report_extra("reflect", "faultline: context switches per fault, client (2 threads)",
                 fr.client_ctxsw / faults, "");
    report_extra("reflect", "baseline: context switches per fault, handler",
                 pr.handler_ctxsw / faults, "");
    report_extra("reflect", "baseline: context switches per fault, manager",
                 pr.manager_ctxsw / faults, "");
    report_extra("reflect", "baseline: context switches per fault, client",
                 pr.client_ctxsw / faults, "");
    flr_free(&fr);
    pipeline_free(&pr);
    return 0;
}

/* ---- stream: 1 GiB read sequentially, 2 MiB attached per fault ---- */

#define STREAM_CHUNK (2ul << 20)

struct stream_shm {
    size_t size;
    uint64_t sink;
    uint64_t start, finish;
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
    sh->start = now_ns();
    for (size_t c = 0; c < sh->size / STREAM_CHUNK; c++) {
        uint64_t t0 = now_ns();
        const volatile uint64_t *w = (const volatile uint64_t *)(p + c * STREAM_CHUNK);
        for (size_t k = 0; k < STREAM_CHUNK / 8; k++) sum += w[k];
        sh->lat[c] = now_ns() - t0;
    }
    sh->finish = now_ns();
    sh->sink = sum;
    return 0;
}

int wl_stream(void)
{
    size_t size = opts.quick ? 128ul << 20 : 1ul << 30, chunks = size / STREAM_CHUNK;
    size_t sz = sizeof(struct stream_shm) + chunks * sizeof(uint64_t);
    struct stream_shm *sh = shm_alloc(sz);
    sh->size = size;
    int rc = -1;
    struct flr_result fr;
    struct flr_params p = {.nclients = 1,
                           .nmgr = 1,
                           .units = chunks,
                           .unit = STREAM_CHUNK,
                           .chunk = STREAM_CHUNK,
                           .stream = true};
    if (reap(spawn(stream_kernel, sh)) == 0 && flr_run(&p, &fr) == 0) {
        struct stats fl, k;
        stats_ns(sh->lat, chunks, &k);
        lat_stats(fr.times, 1, chunks, 0, &fl);
        double mib = (double)size / (1 << 20);
        double k_thr = mib / ((double)(sh->finish - sh->start) / 1e9);
        double fl_thr = mib / ((double)(fr.finish - fr.times[0].t0) / 1e9);
        char cas[64];
        snprintf(cas, sizeof(cas), "%zu MiB, per 2 MiB chunk", size >> 20);
        report("stream", cas, &fl, fl_thr, &k, k_thr, "MiB/s");
        report_extra("stream", "faultline: median reflection (touch -> attach returned)",
                     hop_median(fr.times, fr.n, chunks, 0, HOP_WOKEN) +
                         hop_median(fr.times, fr.n, chunks, 0, HOP_ASKED) +
                         hop_median(fr.times, fr.n, chunks, 0, HOP_RESOLVED),
                     "us");
        report_extra("stream", "faultline: core CPU per chunk", fr.core_cpu_us / (double)chunks,
                     "us");
        report_note("stream", "baseline: mmap of a fallocated memfd read sequentially");
        flr_free(&fr);
        rc = 0;
    }
    shm_free(sh, sz);
    return rc;
}

/* ---- scale: clients x managers, aggregate reflected faults/s ---- */

int wl_scale(void)
{
    static const int clients[] = {1, 4, 16, 64}, managers[] = {1, 4};
    size_t pages = opts.quick ? 50 : 1000;
    for (size_t mi = 0; mi < 2; mi++)
        for (size_t ci = 0; ci < 4; ci++) {
            int c = clients[ci], m = managers[mi];
            if (c < m) continue; /* a manager without a client measures nothing */
            struct flr_params p = {
                .nclients = c, .nmgr = m, .units = pages, .unit = PAGE, .chunk = PAGE};
            struct flr_result fr;
            struct pipe_result pr;
            if (flr_run(&p, &fr) < 0) return -1;
            if (pipeline_run(c, pages, m, &pr) < 0) {
                flr_free(&fr);
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
            report_extra("scale", key, fr.core_cpu_us / faults, "us");
            snprintf(key, sizeof(key), "%s: core loop thread CPU per fault", cas);
            report_extra("scale", key, fr.core_loop_us / faults, "us");
            flr_free(&fr);
            pipeline_free(&pr);
        }
    report_note("scale", "baseline: the hand-written pipeline, one handler+manager per manager");
    return 0;
}
