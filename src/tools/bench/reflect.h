/* faultline's reflected-fault path driven by real managers and clients. */
#ifndef FL_BENCH_REFLECT_H
#define FL_BENCH_REFLECT_H

#include "bench.h"

struct flr_params {
    int nclients, nmgr;  /* client i is served by manager i % nmgr */
    size_t units, unit;  /* each client walks units of unit bytes */
    size_t chunk;        /* what a manager attaches per fault (a power of two) */
    bool stream;         /* read every word of each unit; else write its first byte */
    bool count_syscalls; /* also count system calls (counts.c) */
};

int flr_run(const struct flr_params *p, struct run_result *res);
/* One client and one manager: units of unit bytes, a unit attached per fault. */
struct flr_params flr_one(size_t units, size_t unit);

/* Rounds of faultline and its baseline alternate, so that a change in the
 * machine's load during the run hits both sides alike; an acc gathers the
 * samples of one side over its rounds (workloads.c). */
/* The hops of a reflected fault (struct fault_times), in us. The first
 * three are the client's critical path; REPLY and REFLECT end at t3, which is
 * off it. */
enum {
    HOP_WAKE,    /* t1 - t0: touch -> manager woken (faults with a wake of their own) */
    HOP_FAULT,   /* t2 - t1: the manager learns the fault (fault() RPC) */
    HOP_RESUME,  /* end - t2: resolution sent -> client resumed */
    HOP_REPLY,   /* t3 - t2: the resolution's reply reaches the manager */
    HOP_REFLECT, /* t3 - t0: touch -> resolution returned, the manager's view */
    NHOPS
};
struct acc {
    double *lat, *hop[NHOPS]; /* us: end - t0; the hops */
    size_t n, nh[NHOPS];
    size_t timed;      /* faults with manager timestamps */
    size_t batched;    /* of them, picked up without a wake of their own */
    size_t early;      /* of them, the client resumed before the reply (end < t3) */
    size_t disordered; /* of them, a hop of the critical path < 0: left out */
    double busy_s;     /* summed time of the measured parts of all rounds */
};
void push(double **a, size_t *n, double v);
void acc_times(struct acc *a, const struct fault_times *t, size_t nclients, size_t units,
               size_t warm);
double acc_hop(struct acc *a, int h);
void acc_free(struct acc *a);
/* acc_times of a run of one client, and its time from the first measured
 * touch (after warm) to the last access added to busy_s. */
void acc_run(struct acc *a, const struct run_result *r, size_t units, size_t warm);

/* Latencies (end - t0) of every unit from warm on, per client (workloads.c). */
void lat_stats(const struct fault_times *t, size_t nclients, size_t units, size_t warm,
               struct stats *st);

#endif
