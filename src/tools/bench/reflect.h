/* faultline's reflected-fault path driven by real managers and clients. */
#ifndef FL_BENCH_REFLECT_H
#define FL_BENCH_REFLECT_H

#include "bench.h"

struct flr_params {
    int nclients, nmgr; /* client i is served by manager i % nmgr */
    size_t units, unit; /* each client walks units of unit bytes */
    size_t chunk;       /* what a manager attaches per fault (a power of two) */
    bool stream;        /* read every word of each unit; else write its first byte */
};

struct flr_result {
    struct fault_times *times; /* shared memory, nclients * units */
    size_t n;
    uint64_t start, finish;
    double core_cpu_us;  /* core, all threads, from go to the last access */
    double core_loop_us; /* core's loop thread alone (schedstat) */
    double manager_cpu_us;
    /* context switches from go to the last access: core's loop thread, and
     * every thread of the managers and clients (agents included) */
    double core_ctxsw, manager_ctxsw, client_ctxsw;
};

int flr_run(const struct flr_params *p, struct flr_result *res);
void flr_free(struct flr_result *res);

/* Latencies (end - t0) of every unit from warm on, per client (workloads.c). */
void lat_stats(const struct fault_times *t, size_t nclients, size_t units, size_t warm,
               struct stats *st);

#endif
