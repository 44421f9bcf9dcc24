/*
 * protocol: one manager's paging logic -- resolve(), a
 * fault in, a map item out (the 4 KiB slice of its backing RAM dataspace at
 * the faulting offset, writeable) -- served both ways in one run, the sides
 * alternating:
 *
 *   async  faultline's protocol: core reflects the fault as a signal, the
 *          manager asks core for the fault state (fault()), calls resolve()
 *          and attaches the item into its region map; core maps it and
 *          resumes the client (Genode's way: core never waits);
 *   sync   the "local region mapper" (fl_sync_offer, include/faultline/
 *          sync.h): the client's library thread sends the fault over a
 *          direct channel, fl_sync_serve calls the same resolve(), the
 *          client's thread checks and maps the item; core is not on the path.
 *
 * Printed as report_named rows: the "faultline" row is the asynchronous
 * protocol (faultline's default), the "sync" row the local region mapper,
 * the ratio async / sync. The figures (doc/async-vs-sync.md):
 *
 *   (a) fault latency p50/p99 with 1 client and the hops of each path;
 *   (b) throughput with 1, 4, 16, 64 clients of one manager;
 *   (c) CPU and context switches per fault in core, manager and client
 *       (and system calls, in a counting round of their own: counts.c);
 *   (d) a manager stopped (SIGSTOP) while a client's thread faults on it:
 *       the same client's other thread faulting in memory another manager
 *       serves, and another client/manager pair -- do they progress, at
 *       what latency;
 *   (e) revoking a 64 KiB range mapped (touched) in 1, 10, 100 clients:
 *       async a detach in the manager's map (core revokes in every client),
 *       sync fl_sync_revoke (every client's region mapper drops it);
 *   (f) many managed dataspaces of 4 KiB each: set-up time, core's and the
 *       manager's memory per dataspace (VmRSS growth), fault latency -- 64
 *       both ways (the synchronous mode's bound: 64 offers per manager
 *       session), then 1,000 and 10,000 asynchronously (100,000 with
 *       --large: about a minute more), the synchronous offers tried at 1,000.
 *
 * $FAULTLINE_BENCH_PROTOCOL names the parts to run (default "abdef").
 */
#include "reflect.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WL "protocol"

enum { PM_ASYNC, PM_SYNC, NPM };
static const char *const pm_name[NPM] = {"async", "sync"};

/* ---- the manager's logic, the same both ways ---- */

struct logic {
    fl_cap backing;
    size_t size;               /* of the map (and of the backing) */
    struct fault_times *times; /* NULL: not timed */
    size_t per, units, nclients;
    uint64_t turned;  /* async: when the manager turned to the fault */
    uint32_t flags;   /* async: FT_BATCHED for a fault without a wake of its own */
    size_t ds_offset; /* (f): the backing slice of this map */
};

static int resolve(void *arg, const struct fl_sync_fault *f, struct fl_sync_item *item)
{
    struct logic *lg = arg;
    uint64_t t2 = now_ns();
    uintptr_t page = f->addr & ~(uintptr_t)(PAGE - 1);
    if (page >= lg->size) return -FL_E_INVALID_ARG;
    *item = (struct fl_sync_item){.ds = lg->backing,
                                  .ds_offset = lg->ds_offset + page,
                                  .addr = page,
                                  .size = PAGE,
                                  .writeable = true};
    if (lg->times) {
        size_t c = page / lg->per, u = (page % lg->per) / PAGE;
        if (c < lg->nclients && u < lg->units) {
            struct fault_times *t = &lg->times[c * lg->units + u];
            if (!t->t2) {
                t->t1 = lg->turned ? lg->turned : t2; /* sync: no wake of its own to time */
                t->t2 = t2;
                t->flags = lg->flags;
            }
        }
    }
    return 0;
}

/* A manager in its process: one region map served one of the two ways. */
struct pm {
    int mode;
    struct fl_env *env;
    fl_cap rm, sigh, mds;
    struct fl_sync_manager *sync;
    struct logic lg;
};

static void pm_open(struct pm *m, int mode, size_t size)
{
    memset(m, 0, sizeof(*m));
    m->mode = mode;
    m->env = env_open(0);
    fl_cap rms;
    m->lg.size = size;
    FL_CHECK(fl_ram_alloc(m->env, size, &m->lg.backing));
    FL_CHECK(fl_rm_session_open(m->env, &rms));
    FL_CHECK(fl_rm_create(m->env, rms, size, &m->rm));
    FL_CHECK(fl_region_map_dataspace(m->env, m->rm, &m->mds));
    if (mode == PM_SYNC) {
        FL_CHECK(fl_sync_offer(m->env, m->rm, resolve, &m->lg, &m->sync));
    } else {
        FL_CHECK(fl_signal_context_create(m->env, &m->sigh));
        FL_CHECK(fl_region_map_fault_handler(m->env, m->rm, m->sigh));
    }
}

/* Async: every fault of the map (one signal may stand for several). */
static void serve_faults(struct fl_env *env, fl_cap rm, struct logic *lg)
{
    for (uint32_t flags = 0;; flags = FT_BATCHED) {
        struct fl_fault f;
        FL_CHECK(fl_region_map_fault(env, rm, &f));
        if (f.type == FL_FAULT_NONE) return;
        lg->flags = flags;
        struct fl_sync_fault sf = {.addr = f.addr, .type = f.type};
        struct fl_sync_item it = {0};
        int r = resolve(lg, &sf, &it);
        if (r < 0) die_fl("resolve", r);
        struct fl_attr a = {.size = it.size,
                            .offset = it.ds_offset,
                            .use_at = true,
                            .at = it.addr,
                            .writeable = it.writeable};
        FL_CHECK(fl_region_map_attach(env, rm, it.ds, &a, NULL));
        lg->turned = now_ns();
    }
}

/* Serve for up to timeout_ms. */
static void pm_serve(struct pm *m, int timeout_ms)
{
    if (m->mode == PM_SYNC) {
        int r = fl_sync_serve(m->sync, timeout_ms);
        if (r < 0) die_fl("fl_sync_serve", r);
        return;
    }
    long n = fl_signal_wait(m->env, m->sigh, timeout_ms);
    if (n < 0) die_fl("fl_signal_wait", (int)n);
    if (n == 0) return;
    m->lg.turned = now_ns();
    serve_faults(m->env, m->rm, &m->lg);
}

static void pm_close(struct pm *m)
{
    fl_sync_close(m->sync);
    fl_env_close(m->env);
}

static double pid_rss_kb(pid_t pid)
{
    long kb = fl_proc_status_kb(pid, "VmRSS");
    return kb < 0 ? NAN : (double)kb;
}

/* ---- (a)-(c): clients of one manager, each touching its own slice ---- */

#define PR_MAX_CLIENTS 64

struct pr_shm {
    int mode, nclients;
    size_t pages; /* per client */
    char tok[PR_MAX_CLIENTS][FL_TOKEN_LEN + 1];
    volatile int stop;
    struct fault_times *times;
    struct chan mready, ready, go, done, exit;
};

static int pr_manager(void *arg)
{
    struct pr_shm *sh = arg;
    worker_name(sh->mode == PM_SYNC ? "pr-mgr-sync" : "pr-mgr-async");
    size_t per = sh->pages * PAGE;
    struct pm m;
    pm_open(&m, sh->mode, per * (size_t)sh->nclients);
    m.lg.times = sh->times;
    m.lg.per = per;
    m.lg.units = sh->pages;
    m.lg.nclients = (size_t)sh->nclients;
    for (int c = 0; c < sh->nclients; c++) FL_CHECK(fl_cap_export(m.env, m.mds, sh->tok[c]));
    chan_post(&sh->mready, 1);
    while (!sh->stop) pm_serve(&m, 20);
    pm_close(&m);
    return 0;
}

static int pr_client(void *arg)
{
    struct pr_shm *sh = arg;
    worker_name(sh->mode == PM_SYNC ? "pr-client-sync" : "pr-client-async");
    int c = worker_index;
    size_t per = sh->pages * PAGE;
    struct fl_env *env = env_open(per + (4ul << 20));
    fl_cap mds;
    FL_CHECK(fl_cap_import(env, sh->tok[c], &mds));
    struct fl_attr a = {.size = per, .offset = (size_t)c * per, .writeable = true};
    struct fl_range range;
    FL_CHECK(fl_region_map_attach(env, fl_env_address_space(env), mds, &a, &range));
    volatile char *p = (volatile char *)range.start;
    chan_post(&sh->ready, 1);
    if (chan_wait(&sh->go, 1, -1) < 0) return 1;
    touch_units(p, sh->times + (size_t)c * sh->pages, sh->pages, PAGE, false);
    return worker_hold(&sh->done, &sh->exit);
}

static int pr_run(int mode, int nclients, size_t pages, bool count_syscalls, struct run_result *res)
{
    memset(res, 0, sizeof(*res));
    if (nclients > PR_MAX_CLIENTS) return -1;
    struct pr_shm *sh = shm_alloc(sizeof(*sh));
    sh->mode = mode;
    sh->nclients = nclients;
    sh->pages = pages;
    res->n = (size_t)nclients * pages;
    sh->times = res->times = times_alloc(res->n);
    CHANS_OPEN(&sh->mready, &sh->ready, &sh->go, &sh->done, &sh->exit);
    pid_t mp = 0, cp[PR_MAX_CLIENTS] = {0};
    int rc = -1;
    struct proc_count cc = {0}, mc = {0}, clc[PR_MAX_CLIENTS];
    memset(clc, 0, sizeof(clc));
    mp = spawn(pr_manager, sh);
    if (chan_wait(&sh->mready, 1, 60000) < 0) {
        fprintf(stderr, "faultline-bench: protocol: the %s manager did not start\n", pm_name[mode]);
        goto out;
    }
    for (int c = 0; c < nclients; c++) cp[c] = spawn_nth(pr_client, sh, c);
    if (chan_wait(&sh->ready, nclients, 60000) < 0) {
        fprintf(stderr, "faultline-bench: protocol: %s clients did not start\n", pm_name[mode]);
        goto out;
    }
    count_start(&cc, core.pid, count_syscalls);
    count_start(&mc, mp, count_syscalls);
    for (int c = 0; c < nclients; c++) count_start(&clc[c], cp[c], count_syscalls);
    res->start = now_ns();
    chan_post(&sh->go, nclients);
    if (chan_wait(&sh->done, nclients, 600000) < 0) {
        fprintf(stderr, "faultline-bench: protocol: %s clients did not finish\n", pm_name[mode]);
        goto out;
    }
    count_add(&res->core, &cc);
    count_add(&res->manager, &mc);
    for (int c = 0; c < nclients; c++) count_add(&res->client, &clc[c]);
    res->finish = times_last(res->times, res->n);
    rc = 0;
    chan_post(&sh->exit, nclients);
    for (int c = 0; c < nclients; c++) {
        if (reap(cp[c]) != 0) rc = -1;
        cp[c] = 0;
    }
    sh->stop = 1; /* after the clients: a sync client would see its manager go */
    if (reap(mp) != 0) rc = -1;
    mp = 0;
out:
    count_stop(&cc);
    count_stop(&mc);
    for (int c = 0; c < nclients; c++) count_stop(&clc[c]);
    for (int c = 0; c < nclients; c++) kill_worker(cp[c]);
    kill_worker(mp);
    CHANS_CLOSE(&sh->mready, &sh->ready, &sh->go, &sh->done, &sh->exit);
    shm_free(sh, sizeof(*sh));
    if (rc < 0) times_free(&res->times, res->n);
    return rc;
}

/* The hops, in us: touch -> manager woken (async: the signal; faults with a
 * wake of their own), woken -> resolve called (async: fault()), touch ->
 * resolve called (both: when the manager knows the fault), resolve called ->
 * client resumed (async: attach, core, agent; sync: the item's way back, its
 * check, mmap and wake by the client's region mapper). */
enum { PH_WAKE, PH_FAULT, PH_KNOWN, PH_RESUME, NPH };
struct side {
    double *lat, *hop[NPH];
    size_t n, nh[NPH], batched, disordered;
    double busy_s;
    struct counts used[3]; /* core, manager, client: the timed rounds */
    struct counts counted[3];
    size_t faults, counted_faults;
};

static void side_times(struct side *s, const struct fault_times *t, size_t n, size_t warm,
                       size_t units)
{
    for (size_t i = 0; i < n; i++) {
        if (i % units < warm) continue;
        const struct fault_times *f = &t[i];
        if (!f->t0 || f->end < f->t0) continue;
        push(&s->lat, &s->n, (double)(f->end - f->t0) / 1e3);
        if (!f->t2) continue;
        int64_t known = (int64_t)(f->t2 - f->t0), resume = (int64_t)(f->end - f->t2),
                wake = (int64_t)(f->t1 - f->t0), fault = (int64_t)(f->t2 - f->t1);
        bool batched = f->flags & FT_BATCHED;
        s->batched += batched;
        if (known < 0 || resume < 0 || fault < 0 || (!batched && wake < 0)) {
            s->disordered++;
            continue;
        }
        if (!batched) {
            push(&s->hop[PH_WAKE], &s->nh[PH_WAKE], (double)wake / 1e3);
            push(&s->hop[PH_KNOWN], &s->nh[PH_KNOWN], (double)known / 1e3);
        }
        push(&s->hop[PH_FAULT], &s->nh[PH_FAULT], (double)fault / 1e3);
        push(&s->hop[PH_RESUME], &s->nh[PH_RESUME], (double)resume / 1e3);
    }
}

static double side_hop(const struct side *s, int h)
{
    struct stats st;
    double *copy = malloc((s->nh[h] + 1) * sizeof(double));
    if (!copy) die("malloc");
    memcpy(copy, s->hop[h], s->nh[h] * sizeof(double));
    stats_of(copy, s->nh[h], &st);
    free(copy);
    return s->nh[h] ? st.p50 : NAN;
}

static void side_free(struct side *s)
{
    free(s->lat);
    for (int h = 0; h < NPH; h++) free(s->hop[h]);
    memset(s, 0, sizeof(*s));
}

static const char *const proc_name[3] = {"core", "manager", "client"};

/* (a) and (c): one client, rounds of both sides in turn. */
static int latency_part(void)
{
    size_t n = opts.quick ? 400 : 8000, warm = 20, rounds = opts.quick ? 2 : 8;
    size_t units = n / rounds + warm, count_units = opts.quick ? 200 : 1000;
    struct side sd[NPM] = {{0}};
    int rc = 0;
    for (size_t r = 0; r <= rounds && rc == 0; r++) {
        bool counting = r == rounds; /* untimed: system calls */
        for (int k = 0; k < NPM && rc == 0; k++) {
            int mode = r % 2 ? NPM - 1 - k : k; /* who goes first alternates too */
            struct side *s = &sd[mode];
            struct run_result res;
            if (pr_run(mode, 1, counting ? count_units : units, counting, &res) < 0) {
                rc = -1;
                break;
            }
            struct counts c[3] = {res.core, res.manager, res.client};
            if (counting) {
                for (int p = 0; p < 3; p++) s->counted[p] = c[p];
                s->counted_faults = count_units;
            } else {
                side_times(s, res.times, res.n, warm, units);
                s->busy_s += (double)(res.finish - res.times[warm].t0) / 1e9;
                for (int p = 0; p < 3; p++) counts_add(&s->used[p], &c[p]);
                s->faults += units;
            }
            run_free(&res);
        }
    }
    if (rc == 0) {
        struct stats st[NPM];
        double thr[NPM];
        for (int k = 0; k < NPM; k++) {
            stats_of(sd[k].lat, sd[k].n, &st[k]);
            thr[k] = (double)sd[k].n / sd[k].busy_s;
        }
        char cas[64], key[160];
        snprintf(cas, sizeof(cas), "(a) %zu faults, 1 client", sd[PM_ASYNC].n);
        report_named(WL, cas, &st[PM_ASYNC], thr[PM_ASYNC], "sync", &st[PM_SYNC], thr[PM_SYNC],
                     "faults/s");
        const struct side *a = &sd[PM_ASYNC], *s = &sd[PM_SYNC];
        static const struct hop_row hop_rows[] = {
            {PM_ASYNC, PH_WAKE, "(a) async hop: touch -> manager woken (uffd, core, signal)"},
            {PM_ASYNC, PH_FAULT, "(a) async hop: woken -> fault known (fault() RPC to core)"},
            {PM_ASYNC, PH_RESUME, "(a) async hop: attach sent -> client resumed (core, agent)"},
            {PM_SYNC, PH_KNOWN, "(a) sync hop: touch -> manager's resolve (LRM thread, channel)"},
            {PM_SYNC, PH_RESUME,
             "(a) sync hop: item sent -> client resumed (LRM check, mmap, wake)"},
            {PM_ASYNC, PH_KNOWN, "(a) async: touch -> manager knows the fault (wake + fault())"}};
        for (size_t i = 0; i < sizeof(hop_rows) / sizeof(hop_rows[0]); i++)
            report_extra(WL, hop_rows[i].key, side_hop(&sd[hop_rows[i].side], hop_rows[i].hop),
                         "us (p50)");
        char note[400];
        snprintf(note, sizeof(note),
                 "(a) hops: async %zu faults picked up in an earlier fault's wake, %zu out of "
                 "order; sync %zu out of order",
                 a->batched, a->disordered, s->disordered);
        report_note(WL, note);
        /* CPU and switches: the timed rounds; system calls: the counting one. */
        static const struct {
            const char *what, *unit;
            enum count_field f;
        } per_proc[] = {{"CPU", "us", CF_CPU},
                        {"context switches", "", CF_CTXSW},
                        {"system calls", "", CF_SYSCALLS}};
        for (int k = 0; k < NPM; k++)
            for (size_t i = 0; i < sizeof(per_proc) / sizeof(per_proc[0]); i++) {
                bool sys = per_proc[i].f == CF_SYSCALLS;
                snprintf(key, sizeof(key), "(c) %s: %s per fault, ", pm_name[k], per_proc[i].what);
                report_counts(WL, key, proc_name, sys ? sd[k].counted : sd[k].used, per_proc[i].f,
                              (double)(sys ? sd[k].counted_faults : sd[k].faults), per_proc[i].unit,
                              true);
            }
        report_ratio(
            WL, "(c) async / sync: context switches per fault, all processes",
            (a->used[0].ctxsw + a->used[1].ctxsw + a->used[2].ctxsw) / (double)a->faults /
                ((s->used[0].ctxsw + s->used[1].ctxsw + s->used[2].ctxsw) / (double)s->faults));
        snprintf(note, sizeof(note),
                 "(a)/(c) %zu alternating rounds per side, first %zu faults of a round not "
                 "counted; CPU and switches: the timed rounds, every fault; system calls: one "
                 "more round of %zu faults per side, untimed (%s)",
                 rounds, warm, count_units, sys_count_method());
        report_note(WL, note);
    }
    for (int k = 0; k < NPM; k++) side_free(&sd[k]);
    return rc;
}

/* (b): 1, 4, 16, 64 clients of one manager. */
static int throughput_part(void)
{
    static const int clients[] = {1, 4, 16, 64};
    size_t pages = opts.quick ? 20 : 300, rounds = 2;
    char note[200];
    for (size_t ci = 0; ci < 4; ci++) {
        int nc = clients[ci];
        struct side sd[NPM] = {{0}};
        for (size_t r = 0; r < rounds; r++)
            for (int k = 0; k < NPM; k++) {
                int mode = (ci + r) % 2 ? NPM - 1 - k : k;
                struct run_result res;
                if (pr_run(mode, nc, pages, false, &res) < 0) {
                    for (int j = 0; j < NPM; j++) side_free(&sd[j]);
                    return -1;
                }
                struct side *s = &sd[mode];
                side_times(s, res.times, res.n, 0, pages);
                s->busy_s += (double)(res.finish - res.start) / 1e9;
                struct counts c[3] = {res.core, res.manager, res.client};
                for (int p = 0; p < 3; p++) counts_add(&s->used[p], &c[p]);
                s->faults += res.n;
                run_free(&res);
            }
        struct stats st[NPM];
        double thr[NPM], cpu[NPM], core_cpu[NPM], cs[NPM];
        for (int k = 0; k < NPM; k++) {
            struct side *s = &sd[k];
            double f = (double)s->faults;
            stats_of(s->lat, s->n, &st[k]);
            thr[k] = f / s->busy_s;
            cpu[k] = (s->used[0].cpu_us + s->used[1].cpu_us + s->used[2].cpu_us) / f;
            core_cpu[k] = s->used[0].cpu_us / f;
            cs[k] = (s->used[0].ctxsw + s->used[1].ctxsw + s->used[2].ctxsw) / f;
        }
        char cas[64], key[128], val[64];
        snprintf(cas, sizeof(cas), "(b) %2d client%s, 1 manager", nc, nc > 1 ? "s" : "");
        report_named(WL, cas, &st[PM_ASYNC], thr[PM_ASYNC], "sync", &st[PM_SYNC], thr[PM_SYNC],
                     "faults/s");
        snprintf(key, sizeof(key), "(b) %2d clients: CPU per fault, all processes, async", nc);
        snprintf(val, sizeof(val), "us (sync: %.1f us)", cpu[PM_SYNC]);
        report_extra(WL, key, cpu[PM_ASYNC], val);
        snprintf(key, sizeof(key), "(b) %2d clients: core CPU per fault, async", nc);
        snprintf(val, sizeof(val), "us (sync: %.2f us)", core_cpu[PM_SYNC]);
        report_extra(WL, key, core_cpu[PM_ASYNC], val);
        snprintf(key, sizeof(key), "(b) %2d clients: context switches per fault, async", nc);
        snprintf(val, sizeof(val), "(sync: %.2f)", cs[PM_SYNC]);
        report_extra(WL, key, cs[PM_ASYNC], val);
        for (int k = 0; k < NPM; k++) side_free(&sd[k]);
    }
    snprintf(note, sizeof(note),
             "(b) each client touches %zu pages of its own slice at once; %zu alternating rounds "
             "per side; throughput: all faults / (last access - go), summed over the rounds",
             pages, rounds);
    report_note(WL, note);
    return 0;
}

/* ---- (d): a stopped manager ---- */

#define ST_PAGES 8192 /* each steady faulter's region */
#define ST_PACE  500  /* us between its touches */

struct st_shm {
    int mode;
    char tok[3][FL_TOKEN_LEN + 1];    /* 0: the stopped manager's, 1: A's other, 2: B's */
    volatile int stall, stop, mstop;  /* stop: the faulters; mstop: the managers */
    uint64_t stalled_t0, stalled_end; /* A's stalled thread */
    size_t n[2];                      /* faults done: A's other thread, B */
    uint64_t t0[2][ST_PAGES], end[2][ST_PAGES];
    struct chan mready, ready, go, done, exit;
};

static int st_manager(void *arg)
{
    struct st_shm *sh = arg;
    int k = worker_index;
    static const char *const names[2][3] = {{"st-stopped-async", "st-mgr-async", "st-mgr2-async"},
                                            {"st-stopped-sync", "st-mgr-sync", "st-mgr2-sync"}};
    worker_name(names[sh->mode][k]);
    struct pm m;
    pm_open(&m, sh->mode, k == 0 ? 16 * PAGE : ST_PAGES * PAGE);
    FL_CHECK(fl_cap_export(m.env, m.mds, sh->tok[k]));
    chan_post(&sh->mready, 1);
    while (!sh->mstop) pm_serve(&m, 20);
    pm_close(&m);
    return 0;
}

static void steady(struct st_shm *sh, int which, volatile char *p)
{
    size_t i = 0;
    for (; i < ST_PAGES && !sh->stop; i++) {
        sh->t0[which][i] = now_ns();
        p[i * PAGE] = 1;
        sh->end[which][i] = now_ns();
        sh->n[which] = i + 1;
        sleep_us(ST_PACE);
    }
}

struct stalled_arg {
    struct st_shm *sh;
    volatile char *p;
};

static void *stalled_thread(void *arg)
{
    struct stalled_arg *a = arg;
    while (!a->sh->stall && !a->sh->stop) sleep_us(200);
    if (a->sh->stop) return NULL;
    a->sh->stalled_t0 = now_ns();
    a->p[0] = 1; /* on the stopped manager */
    a->sh->stalled_end = now_ns();
    return NULL;
}

static volatile char *st_attach(struct fl_env *env, const char *tok)
{
    fl_cap mds;
    FL_CHECK(fl_cap_import(env, tok, &mds));
    int err;
    char *p = fl_attach(env, mds, &err);
    if (!p) die_fl("fl_attach", err);
    return p;
}

static int st_client_a(void *arg)
{
    struct st_shm *sh = arg;
    worker_name(sh->mode == PM_SYNC ? "st-client-sync" : "st-client-async");
    struct fl_env *env = env_open((ST_PAGES + 16) * PAGE + (4ul << 20));
    struct stalled_arg sa = {sh, st_attach(env, sh->tok[0])};
    volatile char *p = st_attach(env, sh->tok[1]);
    pthread_t th;
    if (pthread_create(&th, NULL, stalled_thread, &sa)) die("pthread_create");
    chan_post(&sh->ready, 1);
    if (chan_wait(&sh->go, 1, -1) < 0) return 1;
    steady(sh, 0, p);
    pthread_join(th, NULL);
    return worker_hold(&sh->done, &sh->exit);
}

static int st_client_b(void *arg)
{
    struct st_shm *sh = arg;
    worker_name(sh->mode == PM_SYNC ? "st-other-sync" : "st-other-async");
    struct fl_env *env = env_open(ST_PAGES * PAGE + (4ul << 20));
    volatile char *p = st_attach(env, sh->tok[2]);
    chan_post(&sh->ready, 1);
    if (chan_wait(&sh->go, 1, -1) < 0) return 1;
    steady(sh, 1, p);
    return worker_hold(&sh->done, &sh->exit);
}

struct st_result {
    struct stats before[2], during[2]; /* per steady faulter */
    double rate_before[2], rate_during[2], max_during[2];
    double stalled_ms; /* the stalled thread's own wait */
    double window_ms;
};

static int st_run(int mode, long pre_us, long window_us, struct st_result *out)
{
    struct st_shm *sh = shm_alloc(sizeof(*sh));
    sh->mode = mode;
    CHANS_OPEN(&sh->mready, &sh->ready, &sh->go, &sh->done, &sh->exit);
    pid_t mp[3] = {0}, a = 0, b = 0;
    int rc = -1;
    for (int k = 0; k < 3; k++) mp[k] = spawn_nth(st_manager, sh, k);
    if (chan_wait(&sh->mready, 3, 60000) < 0) goto out;
    a = spawn(st_client_a, sh);
    b = spawn(st_client_b, sh);
    if (chan_wait(&sh->ready, 2, 60000) < 0) goto out;
    uint64_t go = now_ns();
    chan_post(&sh->go, 2);
    sleep_us(pre_us);
    kill(mp[0], SIGSTOP);
    uint64_t t_stop = now_ns();
    sh->stall = 1;
    sleep_us(window_us);
    uint64_t t_cont = now_ns();
    kill(mp[0], SIGCONT);
    sleep_us(pre_us / 2);
    sh->stop = 1;
    if (chan_wait(&sh->done, 2, 60000) < 0) goto out;
    /* The stop counts from the stalled thread's touch (it polls for the
     * signal to touch), if it came before the manager went on. */
    if (sh->stalled_t0 > t_stop && sh->stalled_t0 < t_cont) t_stop = sh->stalled_t0;
    out->window_ms = (double)(t_cont - t_stop) / 1e6;
    out->stalled_ms =
        sh->stalled_end > sh->stalled_t0 ? (double)(sh->stalled_end - sh->stalled_t0) / 1e6 : NAN;
    for (int w = 0; w < 2; w++) {
        double *bef = malloc((sh->n[w] + 1) * sizeof(double)),
               *dur = malloc((sh->n[w] + 1) * sizeof(double));
        if (!bef || !dur) die("malloc");
        size_t nb = 0, nd = 0, done_in = 0;
        double mx = 0;
        for (size_t i = 0; i < sh->n[w]; i++) {
            uint64_t t0 = sh->t0[w][i], end = sh->end[w][i];
            double us = (double)(end - t0) / 1e3;
            if (end < t_stop)
                bef[nb++] = us;
            else if (t0 < t_cont) { /* pending at the stop, or started during it */
                dur[nd++] = us;
                if (us > mx) mx = us;
            }
            if (end > t_stop && end <= t_cont) done_in++;
        }
        out->rate_before[w] = (double)nb / ((double)(t_stop - go) / 1e9);
        out->rate_during[w] = (double)done_in / ((double)(t_cont - t_stop) / 1e9);
        out->max_during[w] = mx;
        stats_of(bef, nb, &out->before[w]);
        stats_of(dur, nd, &out->during[w]);
        free(bef);
        free(dur);
    }
    chan_post(&sh->exit, 2);
    rc = reap(a) == 0 && reap(b) == 0 ? 0 : -1;
    a = b = 0;
    sh->mstop = 1;
    for (int k = 0; k < 3; k++) {
        if (reap(mp[k]) != 0) rc = -1;
        mp[k] = 0;
    }
out:
    if (rc < 0) fprintf(stderr, "faultline-bench: protocol: (d) %s side failed\n", pm_name[mode]);
    if (mp[0]) kill(mp[0], SIGCONT);
    kill_worker(a);
    kill_worker(b);
    for (int k = 0; k < 3; k++) kill_worker(mp[k]);
    CHANS_CLOSE(&sh->mready, &sh->ready, &sh->go, &sh->done, &sh->exit);
    shm_free(sh, sizeof(*sh));
    return rc;
}

static int stopped_part(void)
{
    long pre = opts.quick ? 150000 : 300000, window = opts.quick ? 300000 : 1000000;
    struct st_result r[NPM];
    for (int k = 0; k < NPM; k++)
        if (st_run(k, pre, window, &r[k]) < 0) return -1;
    static const char *const who[2] = {"same client, other thread", "other client+manager"},
                             *row[2] = {"same client", "other pair"};
    char cas[96], key[160], val[64];
    for (int w = 0; w < 2; w++) {
        snprintf(cas, sizeof(cas), "(d) stopped: %s", row[w]);
        report_named(WL, cas, &r[PM_ASYNC].during[w], r[PM_ASYNC].rate_during[w], "sync",
                     &r[PM_SYNC].during[w], r[PM_SYNC].rate_during[w], "faults/s");
    }
    for (int w = 0; w < 2; w++) {
        snprintf(key, sizeof(key), "(d) %s: faults/s before the stop, async", who[w]);
        snprintf(val, sizeof(val), "(sync: %.0f)", r[PM_SYNC].rate_before[w]);
        report_extra(WL, key, r[PM_ASYNC].rate_before[w], val);
        snprintf(key, sizeof(key), "(d) %s: p50 before the stop, async", who[w]);
        snprintf(val, sizeof(val), "us (sync: %.1f us)", r[PM_SYNC].before[w].p50);
        report_extra(WL, key, r[PM_ASYNC].before[w].p50, val);
        snprintf(key, sizeof(key), "(d) %s: longest fault during the stop, async", who[w]);
        snprintf(val, sizeof(val), "ms (sync: %.1f ms)", r[PM_SYNC].max_during[w] / 1e3);
        report_extra(WL, key, r[PM_ASYNC].max_during[w] / 1e3, val);
    }
    snprintf(val, sizeof(val), "ms (sync: %.1f ms)", r[PM_SYNC].stalled_ms);
    report_extra(WL, "(d) the stalled thread's own wait (its manager stopped), async",
                 r[PM_ASYNC].stalled_ms, val);
    char note[400];
    snprintf(note, sizeof(note),
             "(d) client A: one thread touches a page of manager M1's map, which is SIGSTOPped "
             "for %.0f ms, while A's other thread touches a page of M2's map every %d us; client "
             "B touches M3's the same way. Rows: the faults pending at the stop or started "
             "during it (latency) and completed during it (faults/s). The sync client's "
             "timeout ($FAULTLINE_SYNC_TIMEOUT_MS) is the default 2000 ms, longer than the stop",
             r[PM_ASYNC].window_ms, ST_PACE);
    report_note(WL, note);
    return 0;
}

/* ---- (e): revoking a range mapped in 1, 10, 100 clients ---- */

#define RV_SZ  (64ul << 10)
#define RV_MAX 100

struct rv_shm {
    int mode, n;
    size_t reps;
    char tok[RV_MAX][FL_TOKEN_LEN + 1];
    _Atomic size_t touched;
    struct chan mready, ready, start, round, done, exit, mexit;
    uint64_t lat[]; /* ns per revocation */
};

static int rv_manager(void *arg)
{
    struct rv_shm *sh = arg;
    worker_name(sh->mode == PM_SYNC ? "rv-mgr-sync" : "rv-mgr-async");
    struct pm m;
    pm_open(&m, sh->mode, RV_SZ);
    for (int c = 0; c < sh->n; c++) FL_CHECK(fl_cap_export(m.env, m.mds, sh->tok[c]));
    chan_post(&sh->mready, 1);
    if (chan_wait(&sh->start, 1, -1) < 0) return 1;
    for (size_t r = 0; r < sh->reps; r++) {
        if (sh->mode == PM_ASYNC) {
            struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
            FL_CHECK(fl_region_map_attach(m.env, m.rm, m.lg.backing, &a, NULL));
        }
        chan_post(&sh->round, sh->n);
        size_t want = (size_t)sh->n * (r + 1);
        while (atomic_load(&sh->touched) < want) {
            if (sh->mode == PM_SYNC)
                pm_serve(&m, 1);
            else
                sleep_us(50);
        }
        uint64_t t = now_ns();
        if (sh->mode == PM_ASYNC)
            FL_CHECK(fl_region_map_detach(m.env, m.rm, 0));
        else
            FL_CHECK(fl_sync_revoke(m.sync, 0, RV_SZ, 30000));
        sh->lat[r] = now_ns() - t;
    }
    chan_post(&sh->done, 1);
    chan_wait(&sh->mexit, 1, -1);
    pm_close(&m);
    return 0;
}

static int rv_client(void *arg)
{
    struct rv_shm *sh = arg;
    worker_name(sh->mode == PM_SYNC ? "rv-client-sync" : "rv-client-async");
    struct fl_env *env = env_open(4ul << 20);
    fl_cap mds;
    FL_CHECK(fl_cap_import(env, sh->tok[worker_index], &mds));
    int err;
    volatile char *p = fl_attach(env, mds, &err);
    if (!p) die_fl("fl_attach", err);
    chan_post(&sh->ready, 1);
    for (size_t r = 0; r < sh->reps; r++) {
        if (chan_wait(&sh->round, 1, -1) < 0) return 1;
        for (size_t off = 0; off < RV_SZ; off += PAGE) p[off] = 1;
        atomic_fetch_add(&sh->touched, 1);
    }
    chan_wait(&sh->exit, 1, -1);
    return 0;
}

static int rv_run(int mode, int n, size_t reps, struct stats *st)
{
    size_t sz = sizeof(struct rv_shm) + reps * sizeof(uint64_t);
    struct rv_shm *sh = shm_alloc(sz);
    sh->mode = mode;
    sh->n = n;
    sh->reps = reps;
    CHANS_OPEN(&sh->mready, &sh->ready, &sh->start, &sh->round, &sh->done, &sh->exit, &sh->mexit);
    pid_t mp = 0, *cp = calloc((size_t)n, sizeof(pid_t));
    if (!cp) die("calloc");
    int rc = -1;
    mp = spawn(rv_manager, sh);
    if (chan_wait(&sh->mready, 1, 60000) < 0) goto out;
    for (int c = 0; c < n; c++) cp[c] = spawn_nth(rv_client, sh, c);
    if (chan_wait(&sh->ready, n, 120000) < 0) goto out;
    chan_post(&sh->start, 1);
    if (chan_wait(&sh->done, 1, 600000) < 0) goto out;
    stats_ns(sh->lat, reps, st);
    rc = 0;
    /* The clients first: a sync client would see its manager go. */
    chan_post(&sh->exit, n);
    for (int c = 0; c < n; c++) {
        if (reap(cp[c]) != 0) rc = -1;
        cp[c] = 0;
    }
    chan_post(&sh->mexit, 1);
    if (reap(mp) != 0) rc = -1;
    mp = 0;
out:
    if (rc < 0)
        fprintf(stderr, "faultline-bench: protocol: (e) %s side with %d clients failed\n",
                pm_name[mode], n);
    for (int c = 0; c < n; c++) kill_worker(cp[c]);
    kill_worker(mp);
    free(cp);
    CHANS_CLOSE(&sh->mready, &sh->ready, &sh->start, &sh->round, &sh->done, &sh->exit, &sh->mexit);
    shm_free(sh, sz);
    return rc;
}

static int revoke_part(void)
{
    static const int counts[] = {1, 10, 100};
    size_t reps = opts.quick ? 5 : 50;
    for (size_t i = 0; i < 3; i++) {
        struct stats st[NPM];
        for (int k = 0; k < NPM; k++) {
            int mode = i % 2 ? NPM - 1 - k : k;
            if (rv_run(mode, counts[i], reps, &st[mode]) < 0) return -1;
        }
        char cas[64];
        snprintf(cas, sizeof(cas), "(e) revoke in %3d client%s", counts[i],
                 counts[i] > 1 ? "s" : "");
        report_named(WL, cas, &st[PM_ASYNC], 1e6 / st[PM_ASYNC].mean, "sync", &st[PM_SYNC],
                     1e6 / st[PM_SYNC].mean, "revokes/s");
    }
    char note[320];
    snprintf(note, sizeof(note),
             "(e) %zu revocations per case and side; before each, every client touched all 16 "
             "pages; async: fl_region_map_detach in the manager's map (returns once core "
             "revoked in every client), then attach again; sync: fl_sync_revoke (returns once "
             "every client's region mapper acknowledged)",
             reps);
    report_note(WL, note);
    return 0;
}

/* ---- (f): many managed dataspaces of 4 KiB each ---- */

#define MD_SYNC_THREADS 64

struct md_shm {
    int mode;
    size_t n;
    volatile size_t cur; /* the dataspace the client touches next (async: see the note) */
    volatile int stop;
    size_t offers_ok; /* sync: how many offers core accepted */
    int offer_err;
    uint64_t mgr_setup_ns, cli_setup_ns;
    struct chan mready, ready, mgo, go, done, exit;
    char (*tok)[FL_TOKEN_LEN + 1]; /* shared memory, n */
    uint64_t *lat;                 /* shared memory, n: ns per first touch */
};

struct md_thread {
    struct md_shm *sh;
    struct fl_sync_manager *mgr;
    _Atomic unsigned clients; /* its offer's clients, as its thread last saw them */
};

static void *md_serve_thread(void *arg)
{
    struct md_thread *t = arg;
    while (!t->sh->stop) {
        int r = fl_sync_serve(t->mgr, 50);
        if (r < 0) die_fl("fl_sync_serve", r);
        atomic_store(&t->clients, fl_sync_clients(t->mgr));
    }
    return NULL;
}

static int md_manager(void *arg)
{
    struct md_shm *sh = arg;
    worker_name(sh->mode == PM_SYNC ? "md-mgr-sync" : "md-mgr-async");
    struct fl_env *env = env_open(0);
    fl_cap backing, rms, sigh = FL_CAP_INVALID;
    FL_CHECK(fl_ram_alloc(env, sh->n * PAGE, &backing));
    FL_CHECK(fl_rm_session_open(env, &rms));
    if (sh->mode == PM_ASYNC) FL_CHECK(fl_signal_context_create(env, &sigh));
    fl_cap *rm = calloc(sh->n, sizeof(fl_cap));
    struct logic *lg = calloc(sh->n, sizeof(*lg));
    struct fl_sync_manager **mgr = calloc(sh->n, sizeof(*mgr));
    if (!rm || !lg || !mgr) die("calloc");
    chan_post(&sh->mready, 1); /* the bench reads everyone's memory now */
    if (chan_wait(&sh->mgo, 1, -1) < 0) return 1;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < sh->n; i++) {
        fl_cap mds;
        lg[i] = (struct logic){.backing = backing, .size = PAGE, .ds_offset = i * PAGE};
        FL_CHECK(fl_rm_create(env, rms, PAGE, &rm[i]));
        FL_CHECK(fl_region_map_dataspace(env, rm[i], &mds));
        if (sh->mode == PM_ASYNC) {
            FL_CHECK(fl_region_map_fault_handler(env, rm[i], sigh));
        } else {
            int r = fl_sync_offer(env, rm[i], resolve, &lg[i], &mgr[i]);
            if (r < 0) {
                sh->offer_err = r;
                break;
            }
            sh->offers_ok = i + 1;
        }
        FL_CHECK(fl_cap_export(env, mds, sh->tok[i]));
    }
    sh->mgr_setup_ns = now_ns() - t0;
    chan_post(&sh->mready, 1);
    pthread_t th[MD_SYNC_THREADS];
    struct md_thread ta[MD_SYNC_THREADS];
    size_t nth = 0;
    if (sh->mode == PM_SYNC && !sh->offer_err) {
        /* fl_sync_serve waits on one offer: a thread per offer. */
        for (; nth < sh->n && nth < MD_SYNC_THREADS; nth++) {
            ta[nth].sh = sh;
            ta[nth].mgr = mgr[nth];
            atomic_init(&ta[nth].clients, 0);
            if (pthread_create(&th[nth], NULL, md_serve_thread, &ta[nth])) die("pthread_create");
        }
    }
    /* The client attached every dataspace: once each thread has taken its
     * client's channel, the touches may start. (The threads share one inbox
     * and its eventfd: a wake one thread takes, the others see only at
     * their next timeout -- a channel pickup, not a fault, is what that
     * would time.) */
    if (!sh->offer_err) {
        if (chan_wait(&sh->mgo, 1, -1) < 0) return 1;
        for (size_t i = 0; i < nth; i++)
            while (atomic_load(&ta[i].clients) < 1 && !sh->stop) sleep_us(1000);
        chan_post(&sh->mready, 1);
    }
    while (!sh->stop) {
        if (sh->mode == PM_SYNC) {
            sleep_us(20000);
            continue;
        }
        long k = fl_signal_wait(env, sigh, 20);
        if (k < 0) die_fl("fl_signal_wait", (int)k);
        if (k == 0) continue;
        size_t i = sh->cur;
        if (i < sh->n) serve_faults(env, rm[i], &lg[i]);
    }
    for (size_t i = 0; i < nth; i++) pthread_join(th[i], NULL);
    for (size_t i = 0; i < sh->n; i++) fl_sync_close(mgr[i]);
    chan_wait(&sh->exit, 1, -1);
    fl_env_close(env);
    return 0;
}

static int md_client(void *arg)
{
    struct md_shm *sh = arg;
    worker_name(sh->mode == PM_SYNC ? "md-client-sync" : "md-client-async");
    struct fl_env *env = env_open(sh->n * PAGE + (4ul << 20));
    volatile char **p = calloc(sh->n, sizeof(*p));
    if (!p) die("calloc");
    chan_post(&sh->ready, 1);
    if (chan_wait(&sh->go, 1, -1) < 0) return 1;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < sh->n; i++) {
        fl_cap mds;
        FL_CHECK(fl_cap_import(env, sh->tok[i], &mds));
        struct fl_attr a = {.writeable = true};
        struct fl_range range;
        FL_CHECK(fl_region_map_attach(env, fl_env_address_space(env), mds, &a, &range));
        p[i] = (volatile char *)range.start;
    }
    sh->cli_setup_ns = now_ns() - t0;
    chan_post(&sh->ready, 1);
    if (chan_wait(&sh->go, 1, -1) < 0) return 1;
    for (size_t i = 0; i < sh->n; i++) {
        sh->cur = i;
        uint64_t t = now_ns();
        p[i][0] = 1;
        sh->lat[i] = now_ns() - t;
    }
    return worker_hold(&sh->done, &sh->exit);
}

struct md_result {
    bool feasible;
    size_t offers_ok;
    int offer_err;
    struct stats lat;
    double setup_s, mgr_setup_s, cli_setup_s;
    double core_b, mgr_b, cli_b; /* VmRSS growth per dataspace, bytes (set-up and touches) */
};

static int md_run(int mode, size_t n, struct md_result *out)
{
    memset(out, 0, sizeof(*out));
    struct md_shm *sh = shm_alloc(sizeof(*sh));
    sh->mode = mode;
    sh->n = n;
    sh->tok = shm_alloc(n * sizeof(*sh->tok));
    sh->lat = shm_alloc(n * sizeof(uint64_t));
    CHANS_OPEN(&sh->mready, &sh->ready, &sh->mgo, &sh->go, &sh->done, &sh->exit);
    pid_t mp = 0, cp = 0;
    int rc = -1;
    int tmo = n >= 100000 ? 900000 : 300000;
    mp = spawn(md_manager, sh);
    if (chan_wait(&sh->mready, 1, 60000) < 0) goto out;
    cp = spawn(md_client, sh);
    if (chan_wait(&sh->ready, 1, 60000) < 0) goto out;
    double core0 = pid_rss_kb(core.pid), mgr0 = pid_rss_kb(mp), cli0 = pid_rss_kb(cp);
    chan_post(&sh->mgo, 1); /* the manager makes its maps */
    if (chan_wait(&sh->mready, 1, tmo) < 0) goto out;
    out->offers_ok = sh->offers_ok;
    out->offer_err = sh->offer_err;
    out->feasible = !sh->offer_err;
    out->mgr_setup_s = (double)sh->mgr_setup_ns / 1e9;
    if (out->feasible) {
        chan_post(&sh->go, 1); /* the client imports and attaches */
        if (chan_wait(&sh->ready, 1, tmo) < 0) goto out;
        out->cli_setup_s = (double)sh->cli_setup_ns / 1e9;
        out->setup_s = out->mgr_setup_s + out->cli_setup_s;
        chan_post(&sh->mgo, 1); /* the manager sees every client */
        if (chan_wait(&sh->mready, 1, tmo) < 0) goto out;
        chan_post(&sh->go, 1); /* the client touches each once */
        if (chan_wait(&sh->done, 1, tmo) < 0) goto out;
        size_t warm = n > 100 ? 10 : 0;
        stats_ns(sh->lat + warm, n - warm, &out->lat);
        out->core_b = (pid_rss_kb(core.pid) - core0) * 1024 / (double)n;
        out->mgr_b = (pid_rss_kb(mp) - mgr0) * 1024 / (double)n;
        out->cli_b = (pid_rss_kb(cp) - cli0) * 1024 / (double)n;
    }
    rc = 0;
    if (!out->feasible) { /* the client still waits to import: nothing to import */
        kill_worker(cp);
        cp = 0;
    }
    chan_post(&sh->exit, 2);
    if (cp && reap(cp) != 0) rc = -1;
    sh->stop = 1; /* after the client: a sync client would see its manager go */
    if (reap(mp) != 0) rc = -1;
    cp = mp = 0;
out:
    if (rc < 0)
        fprintf(stderr, "faultline-bench: protocol: (f) %s side with %zu dataspaces failed\n",
                pm_name[mode], n);
    kill_worker(cp);
    kill_worker(mp);
    CHANS_CLOSE(&sh->mready, &sh->ready, &sh->mgo, &sh->go, &sh->done, &sh->exit);
    shm_free(sh->tok, n * sizeof(*sh->tok));
    shm_free(sh->lat, n * sizeof(uint64_t));
    shm_free(sh, sizeof(*sh));
    return rc;
}

static void md_extras(size_t n, int mode, const struct md_result *r)
{
    char key[160];
    const char *m = pm_name[mode];
    snprintf(key, sizeof(key), "(f) %zu dataspaces, %s: set-up (manager + client)", n, m);
    char val[80];
    snprintf(val, sizeof(val), "s (%.2f + %.2f)", r->mgr_setup_s, r->cli_setup_s);
    report_extra(WL, key, r->setup_s, val);
    snprintf(key, sizeof(key), "(f) %zu dataspaces, %s: core VmRSS growth per dataspace", n, m);
    report_extra(WL, key, r->core_b, "bytes");
    snprintf(key, sizeof(key), "(f) %zu dataspaces, %s: manager VmRSS growth per dataspace", n, m);
    report_extra(WL, key, r->mgr_b, "bytes");
    snprintf(key, sizeof(key), "(f) %zu dataspaces, %s: client VmRSS growth per dataspace", n, m);
    report_extra(WL, key, r->cli_b, "bytes");
}

static int many_part(void)
{
    /* Both sides where the synchronous mode can: 64 offers per manager
     * session (core's bound) -- then the asynchronous side alone. */
    struct md_result r[NPM];
    for (int k = 0; k < NPM; k++)
        if (md_run(k, 64, &r[k]) < 0) return -1;
    struct stats *s = &r[PM_SYNC].lat;
    report_named(WL, "(f) 64 dataspaces, 1st touch", &r[PM_ASYNC].lat, 1e6 / r[PM_ASYNC].lat.mean,
                 "sync", s, 1e6 / s->mean, "faults/s");
    for (int k = 0; k < NPM; k++) md_extras(64, k, &r[k]);
    size_t sizes[3] = {1000, 10000, 100000};
    size_t nsizes = opts.quick ? 1 : opts.large ? 3 : 2;
    for (size_t i = 0; i < nsizes; i++) {
        size_t n = sizes[i];
        struct md_result a;
        if (md_run(PM_ASYNC, n, &a) < 0) return -1;
        char key[160];
        snprintf(key, sizeof(key), "(f) %zu dataspaces, async: first touch p50", n);
        report_extra(WL, key, a.lat.p50, "us");
        snprintf(key, sizeof(key), "(f) %zu dataspaces, async: first touch p99", n);
        report_extra(WL, key, a.lat.p99, "us");
        md_extras(n, PM_ASYNC, &a);
        if (i == 0) {
            /* The synchronous side at the same size: how far its offers go. */
            struct md_result sy;
            if (md_run(PM_SYNC, n, &sy) < 0) return -1;
            snprintf(key, sizeof(key), "(f) %zu dataspaces, sync: offers core accepted", n);
            report_extra(WL, key, (double)sy.offers_ok, "");
            char note[240];
            snprintf(note, sizeof(note),
                     "(f) sync with %zu dataspaces: %s after %zu offers (core keeps at most 64 "
                     "offers per manager session and 256 channels per client session)",
                     n, sy.feasible ? "no limit hit" : fl_error_name(sy.offer_err), sy.offers_ok);
            report_note(WL, note);
        }
    }
    report_note(WL, opts.large ? "(f) 1,000, 10,000 and 100,000 dataspaces (--large)"
                    : opts.quick
                        ? "(f) 1,000 dataspaces (--quick)"
                        : "(f) 1,000 and 10,000 dataspaces; 100,000 with --large (the bench's "
                          "private core runs with --ram-quota 8G --cap-quota 400000)");
    report_note(WL,
                "(f) one map of 4 KiB per dataspace, resolved with a slice of one backing RAM "
                "dataspace; the client imports and attaches each, then touches each once. "
                "async: one signal context for all maps, the manager asks fault() of the map the "
                "client names in the bench's shared memory (a context per map is an eventfd "
                "each); sync: fl_sync_serve waits on one offer, so a thread per offer. Memory: "
                "VmRSS growth from before the set-up to after the touches");
    return 0;
}

/* ---- the workload ---- */

int wl_protocol(void)
{
    report_note(WL, "rows: 'faultline' = the asynchronous protocol (core reflects, the manager "
                    "attaches), 'sync' = the local region mapper (fl_sync_offer); the same "
                    "resolve() both ways; ratio = async / sync");
    /* $FAULTLINE_BENCH_PROTOCOL names the parts to run (default: abdef;
     * (c) comes with (a)). */
    const char *parts = getenv("FAULTLINE_BENCH_PROTOCOL");
    if (!parts || !*parts) parts = "abdef";
    static int (*const fn[])(void) = {latency_part, throughput_part, NULL,
                                      stopped_part, revoke_part,     many_part};
    for (const char *c = parts; *c; c++) {
        if (*c < 'a' || *c > 'f' || !fn[*c - 'a']) continue;
        if (fn[*c - 'a']() < 0) return -1;
    }
    return 0;
}
