/*
 * faultline's reflected-fault path as a user's manager drives it: a manager
 * per group of clients, each with one large RAM dataspace and a managed
 * region map; every client attaches its own slice of the map's dataspace and
 * touches it; the manager answers each fault signal with fault() and an
 * attach of a slice of its RAM dataspace at the faulting address.
 */
#include "reflect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CLIENTS 128

struct flr {
    struct flr_params p;
    char tok[MAX_CLIENTS][FL_TOKEN_LEN + 1];
    volatile int stop;
    volatile uint64_t sink;
    struct fault_times *times;
    struct chan mready, ready, go, done, exit;
};

static size_t clients_of(const struct flr *r, int m)
{
    size_t n = 0;
    for (int c = m; c < r->p.nclients; c += r->p.nmgr) n++;
    return n;
}

static int manager(void *arg)
{
    worker_name("fl-manager");
    struct flr *r = arg;
    int m = worker_index;
    size_t per = r->p.units * r->p.unit, size = per * clients_of(r, m);
    struct fl_env *env = env_open(0);
    fl_cap ram, rms, rm, sigh, mds;
    FL_CHECK(fl_ram_alloc(env, size, &ram));
    FL_CHECK(fl_rm_session_open(env, &rms));
    FL_CHECK(fl_rm_create(env, rms, size, &rm));
    FL_CHECK(fl_signal_context_create(env, &sigh));
    FL_CHECK(fl_region_map_fault_handler(env, rm, sigh));
    FL_CHECK(fl_region_map_dataspace(env, rm, &mds));
    for (int c = m; c < r->p.nclients; c += r->p.nmgr) FL_CHECK(fl_cap_export(env, mds, r->tok[c]));
    chan_post(&r->mready, 1);
    uint64_t chunk = r->p.chunk;
    while (!r->stop) {
        long n = fl_signal_wait(env, sigh, 20);
        if (n < 0) die_fl("fl_signal_wait", (int)n);
        if (n == 0) continue;
        uint64_t t1 = now_ns();
        /* One signal may stand for several faults: serve until none is left.
         * Those after the first had no wake of their own (FT_BATCHED). */
        for (uint32_t flags = 0;; flags = FT_BATCHED) {
            struct fl_fault f;
            FL_CHECK(fl_region_map_fault(env, rm, &f));
            uint64_t t2 = now_ns();
            if (f.type == FL_FAULT_NONE) break;
            uint64_t at = f.addr & ~(chunk - 1);
            struct fl_attr a = {
                .size = chunk, .offset = at, .use_at = true, .at = at, .writeable = true};
            FL_CHECK(fl_region_map_attach(env, rm, ram, &a, NULL));
            uint64_t t3 = now_ns();
            size_t j = f.addr / per, u = (f.addr % per) / r->p.unit;
            size_t c = (size_t)m + j * (size_t)r->p.nmgr;
            if (c < (size_t)r->p.nclients && u < r->p.units) {
                struct fault_times *t = &r->times[c * r->p.units + u];
                if (!t->t1) {
                    t->t1 = t1;
                    t->t2 = t2;
                    t->t3 = t3;
                    t->flags = flags;
                }
            }
            t1 = t3;
        }
    }
    fl_env_close(env);
    return 0;
}

static int client(void *arg)
{
    worker_name("fl-client");
    struct flr *r = arg;
    int c = worker_index;
    size_t j = (size_t)(c / r->p.nmgr), per = r->p.units * r->p.unit;
    struct fl_env *env = env_open(per + (4ul << 20));
    fl_cap mds;
    FL_CHECK(fl_cap_import(env, r->tok[c], &mds));
    struct fl_attr a = {.size = per, .offset = j * per, .writeable = true};
    struct fl_range range;
    FL_CHECK(fl_region_map_attach(env, fl_env_address_space(env), mds, &a, &range));
    volatile char *p = (volatile char *)range.start;
    chan_post(&r->ready, 1);
    if (chan_wait(&r->go, 1, -1) < 0) return 1;
    r->sink +=
        touch_units(p, r->times + (size_t)c * r->p.units, r->p.units, r->p.unit, r->p.stream);
    /* Stay until core's CPU time is read: a session's teardown is not the
     * fault path's cost. */
    return worker_hold(&r->done, &r->exit);
}

struct flr_params flr_one(size_t units, size_t unit)
{
    return (struct flr_params){
        .nclients = 1, .nmgr = 1, .units = units, .unit = unit, .chunk = unit};
}

int flr_run(const struct flr_params *p, struct run_result *res)
{
    memset(res, 0, sizeof(*res));
    if (p->nclients > MAX_CLIENTS || p->nmgr < 1 || p->nmgr > p->nclients) return -1;
    struct flr *r = shm_alloc(sizeof(*r));
    r->p = *p;
    res->n = (size_t)p->nclients * p->units;
    r->times = res->times = times_alloc(res->n);
    CHANS_OPEN(&r->mready, &r->ready, &r->go, &r->done, &r->exit);
    pid_t *mp = calloc((size_t)p->nmgr, sizeof(pid_t));
    pid_t *cp = calloc((size_t)p->nclients, sizeof(pid_t));
    if (!mp || !cp) die("calloc");
    int rc = -1;
    for (int m = 0; m < p->nmgr; m++) {
        mp[m] = spawn_nth(manager, r, m);
    }
    if (chan_wait(&r->mready, p->nmgr, 60000) < 0) {
        fprintf(stderr, "faultline-bench: managers did not start\n");
        goto out;
    }
    for (int c = 0; c < p->nclients; c++) {
        cp[c] = spawn_nth(client, r, c);
    }
    if (chan_wait(&r->ready, p->nclients, 60000) < 0) {
        fprintf(stderr, "faultline-bench: clients did not start\n");
        goto out;
    }
    struct proc_count cc, *mc = calloc((size_t)p->nmgr, sizeof(*mc)),
                          *clc = calloc((size_t)p->nclients, sizeof(*clc));
    if (!mc || !clc) die("calloc");
    /* Core's total first, then its loop thread; at the end in the opposite
     * order, so that the loop's share cannot exceed the total. */
    count_start(&cc, core.pid, p->count_syscalls);
    double loop0 = core_loop_ns(), cs0 = core_loop_ctxsw();
    for (int m = 0; m < p->nmgr; m++) count_start(&mc[m], mp[m], p->count_syscalls);
    for (int c = 0; c < p->nclients; c++) count_start(&clc[c], cp[c], p->count_syscalls);
    res->start = now_ns();
    chan_post(&r->go, p->nclients);
    bool finished = chan_wait(&r->done, p->nclients, 600000) == 0;
    if (finished) {
        res->core_loop_us = (core_loop_ns() - loop0) / 1000.0;
        res->core_loop_ctxsw = core_loop_ctxsw() - cs0;
        count_add(&res->core, &cc);
        for (int m = 0; m < p->nmgr; m++) count_add(&res->manager, &mc[m]);
        for (int c = 0; c < p->nclients; c++) count_add(&res->client, &clc[c]);
    }
    count_stop(&cc);
    for (int m = 0; m < p->nmgr; m++) count_stop(&mc[m]);
    for (int c = 0; c < p->nclients; c++) count_stop(&clc[c]);
    free(mc);
    free(clc);
    if (!finished) {
        fprintf(stderr, "faultline-bench: clients did not finish\n");
        goto out;
    }
    res->finish = times_last(res->times, res->n);
    rc = 0;
    r->stop = 1;
    chan_post(&r->exit, p->nclients);
    for (int c = 0; c < p->nclients; c++) {
        if (reap(cp[c]) != 0) rc = -1;
        cp[c] = 0;
    }
    for (int m = 0; m < p->nmgr; m++) {
        if (reap(mp[m]) != 0) rc = -1;
        mp[m] = 0;
    }
out:
    for (int c = 0; c < p->nclients; c++) kill_worker(cp[c]);
    for (int m = 0; m < p->nmgr; m++) kill_worker(mp[m]);
    CHANS_CLOSE(&r->mready, &r->ready, &r->go, &r->done, &r->exit);
    free(mp);
    free(cp);
    shm_free(r, sizeof(*r));
    return rc;
}
