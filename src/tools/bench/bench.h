/*
 * faultline-bench: faultline against the kernel and against a hand-written
 * userfaultfd pipeline, measured in the same run.
 *
 * The main process never opens a session: every component is a forked worker,
 * so a fork never has to reason about a live agent thread, and the main
 * process can kill every worker (and core) on any exit path.
 */
#ifndef FL_BENCH_H
#define FL_BENCH_H

#include <faultline/faultline.h>

#include "../../common/os.h" /* fl_proc_status_kb, fl_uffd_new: as the tests */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PAGE 4096ul

/* ---- options and results ---- */

struct bench_opts {
    bool quick;
    const char *json;
    int repeat; /* --repeat N: each workload N times (1: once) */
    bool large; /* --large: the sizes too slow for every run (protocol's 100,000 dataspaces) */
};
extern struct bench_opts opts;

/* The probabilities a latency distribution is kept at, for its CDF in the
 * JSON (bench_cdf_p[], main.c). */
#define BENCH_NCDF 32
extern const double bench_cdf_p[BENCH_NCDF];

struct stats {
    size_t n;
    double p50, p99, p999, mean; /* microseconds */
    double cdf[BENCH_NCDF];      /* the latency at each of bench_cdf_p */
};

/* Sorts us[] in place. */
void stats_of(double *us, size_t n, struct stats *st);
/* Latencies in ns -> stats in us (allocates a temporary array). */
void stats_ns(const uint64_t *ns, size_t n, struct stats *st);

/* One row of a workload: faultline and its baseline side by side, then the
 * ratio (faultline / baseline). unit names the throughput ("pages/s"). */
void report(const char *workload, const char *cas, const struct stats *fl, double fl_thr,
            const struct stats *base, double base_thr, const char *unit);
/* A further number of a workload (a hop of a breakdown, memory, CPU time). */
void report_extra(const char *workload, const char *key, double value, const char *unit);
void report_note(const char *workload, const char *text);
/* report() with the baseline named (text: its label column, at most 10
 * characters; JSON: "baseline_name"). */
void report_named(const char *workload, const char *cas, const struct stats *fl, double fl_thr,
                  const char *base_name, const struct stats *base, double base_thr,
                  const char *unit);
/* A ratio that is no case's (one yardstick against another): an extra with
 * unit "ratio", which --repeat summarises like the cases' ratios. */
void report_ratio(const char *workload, const char *key, double value);
/* The 1-minute load average now (/proc/loadavg), and at the start of the
 * workload run that is reporting (every result carries it). */
double load1_now(void);
extern double bench_load1;

/* ---- processes ---- */

/* Fork a worker running fn(arg); it exits with fn's return value and dies
 * with the bench (PR_SET_PDEATHSIG). Every worker is killed on any exit. */
pid_t spawn(int (*fn)(void *), void *arg);
/* The same, with an index the worker reads from worker_index (its private
 * copy: a field in shared memory could change before the worker reads it). */
pid_t spawn_nth(int (*fn)(void *), void *arg, int index);
extern int worker_index;
/* Name the worker (its comm), so perf and ps tell the roles apart. */
void worker_name(const char *name);
/* Wait for a worker; returns its exit code or 128+signal. */
int reap(pid_t pid);
/* SIGKILL and reap a worker. */
void kill_worker(pid_t pid);
void kill_all_workers(void);

/* Anonymous shared memory (inherited by workers), zeroed. */
void *shm_alloc(size_t size);
void shm_free(void *p, size_t size);

/* One-byte signals between processes over a pipe. */
struct chan {
    int r, w;
};
void chan_open(struct chan *c);
void chan_close(struct chan *c);
void chan_post(struct chan *c, int n);
/* Wait for n posts; returns 0, or -1 on EOF or when timeout_ms passed. */
int chan_wait(struct chan *c, int n, int timeout_ms);
/* Open (close) every channel of a NULL-terminated list; CHANS_OPEN and
 * CHANS_CLOSE take the channels as arguments. */
void chans_open(struct chan *const *c);
void chans_close(struct chan *const *c);
#define CHANS_OPEN(...)  chans_open((struct chan *const[]){__VA_ARGS__, NULL})
#define CHANS_CLOSE(...) chans_close((struct chan *const[]){__VA_ARGS__, NULL})
/* A worker's last steps: one post on post, then wait for exit's; returns 0. */
int worker_hold(struct chan *post, struct chan *exit);

/* ---- core ---- */

struct core_info {
    pid_t pid;
    char dir[64], sock[128], log[160];
};
extern struct core_info core;
/* Start a private core (its socket in a fresh directory; $FAULTLINE_SOCKET is
 * set for the workers). Returns 0 or -1 with a message on stderr. */
int core_start(void);
void core_stop(void);
/* Core's CPU time (all its threads, those gone too) in microseconds, from
 * its CPU-time clock (clock_getcpuclockid: nanoseconds); and its loop
 * thread's run time in ns (/proc/<core>/schedstat). To compare the two over
 * an interval, read the total first at its start and last at its end, so
 * that the loop's share cannot exceed it. */
double core_cpu_us(void);
/* The same for any process. Where the clock cannot be read it falls back to
 * /proc/<pid>/stat's clock ticks; cpu_clock_name() says which was used. */
double pid_cpu_us(pid_t pid);
const char *cpu_clock_name(void);
double core_loop_ns(void);
/* Context switches (voluntary + involuntary) of every thread of pid, and of
 * core's loop thread alone. */
double pid_ctxsw(pid_t pid);
double core_loop_ctxsw(void);
/* A field of /proc/<core>/status in kB, and of any process's (-1: unreadable). */
long core_status_kb(const char *field);

/* ---- progress (progress.c): a line on stderr with an estimate ---- */

/* The run: how many workloads and their usual seconds in all; each one's
 * start (with its usual seconds in this mode) and end; progress_tick from
 * any wait of the main process; progress_clear before printing on stdout. */
void progress_begin(int nworkloads, double total_typical_s);
void progress_workload(const char *name, double typical_s);
void progress_done(void);
void progress_tick(void);
void progress_clear(void);

/* ---- plot and compare (tool.c): the JSON, by faultline-bench.py ---- */
int bench_tool(int argc, char **argv);

/* ---- helpers ---- */

uint64_t now_ns(void);
void sleep_us(long us);
/* A session for a worker (exits the worker with a message on failure). */
struct fl_env *env_open(size_t window);
/* Exit a worker with a message naming the call and its error. */
void die_fl(const char *what, int err);
void die(const char *what);
#define FL_CHECK(call)                                                                             \
    do {                                                                                           \
        int _r = (call);                                                                           \
        if (_r < 0) die_fl(#call, _r);                                                             \
    } while (0)

/* ---- counts beside the times (counts.c) ---- */

/* What a process used over an interval: CPU time (all its threads), context
 * switches (voluntary and involuntary, all threads), system calls and those
 * of them that returned EAGAIN (NaN: could not be counted). */
struct counts {
    double cpu_us, ctxsw, syscalls, eagain;
};
/* One process's state at the interval's start, and its open counters. */
struct proc_count {
    pid_t pid;
    bool syscalls;
    double cpu0, cs0, sys0, eagain0;
    int *fd, nfd;
};
/* Start counting pid (system calls only if syscalls: see counts.c);
 * count_add adds what it used since to sum; count_stop closes the counters
 * (harmless on a proc_count never started, if zeroed). */
void count_start(struct proc_count *pc, pid_t pid, bool syscalls);
void count_add(struct counts *sum, const struct proc_count *pc);
void count_stop(struct proc_count *pc);
void counts_add(struct counts *sum, const struct counts *c);
/* How system calls are counted, or why they cannot be. */
const char *sys_count_method(void);
/* One of the counts, by name. */
enum count_field { CF_CPU, CF_CTXSW, CF_SYSCALLS, CF_EAGAIN };
double count_of(const struct counts *c, enum count_field f);
/* An extra per process of a side: field f of c[p] / per, keyed
 * "<prefix><proc[p]>" (an empty name: left out); then, if all, their sum
 * keyed "<prefix>all processes". Returns the sum (not divided). */
double report_counts(const char *workload, const char *prefix, const char *const proc[3],
                     const struct counts c[3], enum count_field f, double per, const char *unit,
                     bool all);

/* ---- the hand-written userfaultfd yardsticks (pipeline.c) ---- */

/* Timestamps of one reflected fault (CLOCK_MONOTONIC, ns; 0: not taken).
 * t0: the client is about to touch; t1: the manager woke up; t2: the manager
 * learnt the fault (faultline: fault() returned; pipeline: took it from the
 * ring) and sends its resolution; t3: the manager's resolution returned
 * (faultline: attach; pipeline: UFFDIO_COPY); end: the client's access
 * completed.
 *
 * The client's critical path is t0 -> t1 -> t2 -> end: the client resumes
 * once core (or the kernel) acted on the resolution, which can be before the
 * manager has the reply (t3). t3 is therefore no point on that path, and
 * end - t3 is not a hop (it is negative whenever the client wins that race).
 * A fault the manager picked up in the same wake as the one before it
 * (FT_BATCHED) has no wake of its own: its t1 is when the manager turned to
 * it, which can precede t0, so it has no touch -> woken hop. */
#define FT_BATCHED 0x1u
struct fault_times {
    uint64_t t0, t1, t2, t3, end;
    uint32_t flags;
};
/* A row of a table of hops to report: the side, which hop, its key. */
struct hop_row {
    int side, hop;
    const char *key;
};

struct pl_params {
    int nclients, nmgr; /* client i is served by handler (and manager) i % nmgr */
    size_t pages;       /* each client touches pages pages of its own region */
    /* The floor: the handler resolves each fault with UFFDIO_COPY itself, no
     * manager (t1 = t2: the handler woke; t3: its copy returned). */
    bool floor;
    bool count_syscalls; /* also count system calls (counts.c) */
};

/* A run of clients and their managers, whichever way their faults are
 * served (the pipeline, faultline's reflection: reflect.c, protocol.c). */
struct run_result {
    struct fault_times *times; /* shared memory, nclients * units */
    size_t n;
    uint64_t start, finish; /* go, and the last client's last access */
    /* from go to the last access, every process of each role: core (all its
     * threads; the pipeline: its handlers), the managers and the clients
     * (agents included) */
    struct counts core, manager, client;
    double core_loop_us;    /* faultline: core's loop thread alone (schedstat) */
    double core_loop_ctxsw; /* and its context switches */
};
/* Free a run_result's times. */
void run_free(struct run_result *res);
int pipeline_run(const struct pl_params *p, struct run_result *res);
/* A userfaultfd (/dev/userfaultfd, else the system call), API handshake
 * done, no features; -1 on failure. */
int uffd_open(void);

/* fault_times in shared memory: n zeroed ones; free them (*t becomes NULL);
 * the latest end among them. */
struct fault_times *times_alloc(size_t n);
void times_free(struct fault_times **t, size_t n);
uint64_t times_last(const struct fault_times *t, size_t n);
/* A client's walk: units of unit bytes from p, each timed into t[u] (t0 and
 * end); stream: read every word of each unit (returns their sum), else write
 * its first byte. */
uint64_t touch_units(volatile char *p, struct fault_times *t, size_t units, size_t unit,
                     bool stream);

/* ---- workloads (workloads.c) ---- */

int wl_touch(void);
int wl_reflect(void);
int wl_stream(void);
int wl_scale(void);
int wl_map(void);
int wl_revoke(void);
int wl_isolation(void);
int wl_pager(void);    /* pager.c */
int wl_protocol(void); /* protocol.c: asynchronous vs synchronous paging */

/* Remove the pager's file (made once per bench process) and its directory;
 * async-signal-safe. */
void pager_cleanup(void);

/* ---- attacks on core's bookkeeping (attack.c) ---- */

int wl_forge(void);
int wl_capscale(void);

#endif
