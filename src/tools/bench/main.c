/*
 * faultline-bench: runs its workloads against a private core and
 * prints, for each, faultline and its baseline side by side and the ratio.
 *
 * usage: faultline-bench [--quick] [--large] [--repeat N] [--json FILE] [WORKLOAD...]
 *        faultline-bench plot|compare ... (tool.c)
 */
#include "bench.h"
#include "fl_version.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct bench_opts opts;
struct core_info core;

/* ---- time ---- */

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *s, size_t n, double p)
{
    /* Nearest rank: with fewer samples than 1/(1-p) it is the maximum. */
    size_t k = (size_t)ceil(p * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return s[k - 1];
}

/* Dense where latencies spread: the tail. */
const double bench_cdf_p[BENCH_NCDF] = {0,    0.01, 0.02,  0.05,  0.1,   0.15,   0.2,    0.25,
                                        0.3,  0.35, 0.4,   0.45,  0.5,   0.55,   0.6,    0.65,
                                        0.7,  0.75, 0.8,   0.85,  0.9,   0.925,  0.95,   0.97,
                                        0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999, 1};

void stats_of(double *us, size_t n, struct stats *st)
{
    memset(st, 0, sizeof(*st));
    st->n = n;
    if (!n) return;
    qsort(us, n, sizeof(*us), cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += us[i];
    st->mean = sum / (double)n;
    st->p50 = pct(us, n, 0.50);
    st->p99 = pct(us, n, 0.99);
    st->p999 = pct(us, n, 0.999);
    for (int i = 0; i < BENCH_NCDF; i++) st->cdf[i] = i ? pct(us, n, bench_cdf_p[i]) : us[0];
}

void stats_ns(const uint64_t *ns, size_t n, struct stats *st)
{
    double *us = malloc((n ? n : 1) * sizeof(*us));
    if (!us) die("malloc");
    for (size_t i = 0; i < n; i++) us[i] = (double)ns[i] / 1000.0;
    stats_of(us, n, st);
    free(us);
}

/* ---- reporting: a table on stdout, the same rows as JSON ---- */

static FILE *json;
static char *json_buf;
static size_t json_len;
static bool json_first = true;
static const char *last_workload;

double bench_load1 = NAN;
static int run_index; /* which of --repeat's runs is reporting (0-based) */

double load1_now(void)
{
    double v = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &v) != 1) v = NAN;
        fclose(f);
    }
    return v;
}

/* ---- --repeat: each case's ratios over the runs of its workload ---- */

#define MAX_REPEAT 100
enum { RQ_P50, RQ_P99, RQ_THR, NRQ };
static const char *const rq_name[NRQ] = {"p50", "p99", "throughput"};

struct rep_row {
    char key[160];      /* the case, or a ratio extra's key */
    char base_name[16]; /* a case's baseline ("" for an extra) */
    bool is_case;
    double v[NRQ][MAX_REPEAT]; /* ratios per run (an extra: v[0]); NaN: not reported */
};
static struct rep_row *rep_rows;
static size_t rep_nrows;
static double rep_load[MAX_REPEAT];

static void rep_record(const char *key, const char *base_name, bool is_case, const double v[NRQ])
{
    if (opts.repeat <= 1) return;
    size_t i = 0;
    while (i < rep_nrows && strcmp(rep_rows[i].key, key)) i++;
    if (i == rep_nrows) {
        struct rep_row *r = realloc(rep_rows, (rep_nrows + 1) * sizeof(*r));
        if (!r) die("realloc");
        rep_rows = r;
        memset(&r[i], 0, sizeof(r[i]));
        snprintf(r[i].key, sizeof(r[i].key), "%s", key);
        snprintf(r[i].base_name, sizeof(r[i].base_name), "%s", base_name ? base_name : "");
        r[i].is_case = is_case;
        for (int q = 0; q < NRQ; q++)
            for (int k = 0; k < MAX_REPEAT; k++) r[i].v[q][k] = NAN;
        rep_nrows++;
    }
    for (int q = 0; q < NRQ; q++) rep_rows[i].v[q][run_index] = v[q];
}

static void json_sep(void)
{
    if (!json) return;
    fputs(json_first ? "\n    " : ",\n    ", json);
    json_first = false;
}

static void json_str(const char *s)
{
    fputc('"', json);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', json);
        if ((unsigned char)*s >= 0x20) fputc(*s, json);
    }
    fputc('"', json);
}

static void json_num(double v)
{
    if (isfinite(v))
        fprintf(json, "%.6g", v);
    else
        fputs("null", json);
}

static void json_side(const char *name, const struct stats *s, double thr)
{
    fprintf(json, "\"%s\": {\"n\": %zu, \"p50_us\": ", name, s->n);
    json_num(s->p50);
    fputs(", \"p99_us\": ", json);
    json_num(s->p99);
    fputs(", \"p999_us\": ", json);
    json_num(s->p999);
    fputs(", \"mean_us\": ", json);
    json_num(s->mean);
    fputs(", \"throughput\": ", json);
    json_num(thr);
    /* The distribution, for plots: [probability, latency in us] pairs. */
    fputs(", \"cdf_us\": [", json);
    for (int i = 0; s->n && i < BENCH_NCDF; i++) {
        fprintf(json, "%s[%g, ", i ? ", " : "", bench_cdf_p[i]);
        json_num(s->cdf[i]);
        fputc(']', json);
    }
    fputs("]}", json);
}

static void heading(const char *workload)
{
    progress_clear();
    if (last_workload && !strcmp(last_workload, workload)) return;
    last_workload = workload;
    char run[32] = "";
    if (opts.repeat > 1) snprintf(run, sizeof(run), ", run %d of %d", run_index + 1, opts.repeat);
    printf("\n== %s%s, load %.2f at its start (1-minute average)\n%-30s %-10s %10s %10s %10s "
           "%14s\n",
           workload, run, bench_load1, "case", "", "p50 us", "p99 us", "p99.9 us", "throughput");
}

/* A JSON row's start: its workload, the load at the run's start and, with
 * --repeat, which run. */
static void json_row(const char *workload)
{
    json_sep();
    fputs("{\"workload\": ", json);
    json_str(workload);
    fputs(", \"load1\": ", json);
    json_num(bench_load1);
    if (opts.repeat > 1) fprintf(json, ", \"run\": %d", run_index + 1);
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : NAN;
}

void report(const char *workload, const char *cas, const struct stats *fl, double fl_thr,
            const struct stats *base, double base_thr, const char *unit)
{
    report_named(workload, cas, fl, fl_thr, NULL, base, base_thr, unit);
}

void report_named(const char *workload, const char *cas, const struct stats *fl, double fl_thr,
                  const char *base_name, const struct stats *base, double base_thr,
                  const char *unit)
{
    heading(workload);
    printf("%-30s %-10s %10.1f %10.1f %10.1f %14.0f %s\n", cas, "faultline", fl->p50, fl->p99,
           fl->p999, fl_thr, unit);
    printf("%-30s %-10.10s %10.1f %10.1f %10.1f %14.0f %s\n", "",
           base_name ? base_name : "baseline", base->p50, base->p99, base->p999, base_thr, unit);
    printf("%-30s %-10s %10.2f %10.2f %10.2f %14.2f\n", "", "ratio", ratio(fl->p50, base->p50),
           ratio(fl->p99, base->p99), ratio(fl->p999, base->p999), ratio(fl_thr, base_thr));
    fflush(stdout);
    double r[NRQ] = {ratio(fl->p50, base->p50), ratio(fl->p99, base->p99), ratio(fl_thr, base_thr)};
    rep_record(cas, base_name ? base_name : "baseline", true, r);
    if (!json) return;
    json_row(workload);
    fputs(", \"case\": ", json);
    json_str(cas);
    if (base_name) {
        fputs(", \"baseline_name\": ", json);
        json_str(base_name);
    }
    fputs(", \"unit\": ", json);
    json_str(unit);
    fputs(", ", json);
    json_side("faultline", fl, fl_thr);
    fputs(", ", json);
    json_side("baseline", base, base_thr);
    fputs(", \"ratio\": {\"p50\": ", json);
    json_num(ratio(fl->p50, base->p50));
    fputs(", \"p99\": ", json);
    json_num(ratio(fl->p99, base->p99));
    fputs(", \"p999\": ", json);
    json_num(ratio(fl->p999, base->p999));
    fputs(", \"throughput\": ", json);
    json_num(ratio(fl_thr, base_thr));
    fputs("}}", json);
}

void report_ratio(const char *workload, const char *key, double value)
{
    double v[NRQ] = {value, NAN, NAN};
    rep_record(key, NULL, false, v);
    report_extra(workload, key, value, "ratio");
}

void report_extra(const char *workload, const char *key, double value, const char *unit)
{
    heading(workload);
    printf("  %-62s %10.2f %s\n", key, value, unit);
    fflush(stdout);
    if (!json) return;
    json_row(workload);
    fputs(", \"extra\": ", json);
    json_str(key);
    fputs(", \"value\": ", json);
    json_num(value);
    fputs(", \"unit\": ", json);
    json_str(unit);
    fputs("}", json);
}

void report_note(const char *workload, const char *text)
{
    heading(workload);
    if (json) {
        json_row(workload);
        fputs(", \"note\": ", json);
        json_str(text);
        fputs("}", json);
    }
    printf("  note: %s\n", text);
    fflush(stdout);
}

/* The summary of --repeat's runs of one workload: per case the median and
 * range of each ratio, the ratios of every run, and the load at each run's
 * start; then forget them for the next workload. */
static void rep_summary(const char *workload, int runs)
{
    if (opts.repeat <= 1 || !rep_nrows) return;
    printf("\n== %s: %d runs, median [min - max] of each ratio (faultline / baseline)\n", workload,
           runs);
    printf("  load at each run's start (1-minute average):");
    for (int k = 0; k < runs; k++) printf(" %.2f", rep_load[k]);
    printf("\n");
    for (size_t i = 0; i < rep_nrows; i++) {
        struct rep_row *r = &rep_rows[i];
        double med[NRQ], lo[NRQ], hi[NRQ];
        int nq = r->is_case ? NRQ : 1;
        for (int q = 0; q < nq; q++) {
            double v[MAX_REPEAT];
            int n = 0;
            for (int k = 0; k < runs; k++)
                if (isfinite(r->v[q][k])) v[n++] = r->v[q][k];
            qsort(v, (size_t)n, sizeof(double), cmp_double);
            med[q] = !n ? NAN : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
            lo[q] = n ? v[0] : NAN;
            hi[q] = n ? v[n - 1] : NAN;
            printf("  %-56.56s %-10s %6.2f [%5.2f - %5.2f]  each:", q ? "" : r->key,
                   r->is_case ? rq_name[q] : "ratio", med[q], lo[q], hi[q]);
            for (int k = 0; k < runs; k++) printf(" %.2f", r->v[q][k]);
            printf("\n");
        }
        if (r->is_case) printf("  %-56s (baseline: %s)\n", "", r->base_name);
        if (!json) continue;
        json_row(workload);
        fputs(", \"repeat\": ", json);
        json_str(r->key);
        if (r->is_case) {
            fputs(", \"baseline_name\": ", json);
            json_str(r->base_name);
        }
        fprintf(json, ", \"runs\": %d, \"load1_each\": [", runs);
        for (int k = 0; k < runs; k++) {
            if (k) fputs(", ", json);
            json_num(rep_load[k]);
        }
        fputs("], \"ratio\": {", json);
        for (int q = 0; q < nq; q++) {
            fprintf(json, "%s\"%s\": {\"median\": ", q ? ", " : "",
                    r->is_case ? rq_name[q] : "value");
            json_num(med[q]);
            fputs(", \"min\": ", json);
            json_num(lo[q]);
            fputs(", \"max\": ", json);
            json_num(hi[q]);
            fputs(", \"each\": [", json);
            for (int k = 0; k < runs; k++) {
                if (k) fputs(", ", json);
                json_num(r->v[q][k]);
            }
            fputs("]}", json);
        }
        fputs("}}", json);
    }
    fflush(stdout);
    free(rep_rows);
    rep_rows = NULL;
    rep_nrows = 0;
}

/* ---- processes ---- */

#define MAX_WORKERS 4096
static pid_t workers[MAX_WORKERS];
static int nworkers;
static pid_t bench_pid;

static void forget(pid_t pid)
{
    for (int i = 0; i < nworkers; i++)
        if (workers[i] == pid) {
            workers[i] = workers[--nworkers];
            return;
        }
}

int worker_index;

void worker_name(const char *name)
{
    prctl(PR_SET_NAME, name);
}

pid_t spawn_nth(int (*fn)(void *), void *arg, int index)
{
    worker_index = index;
    return spawn(fn, arg);
}

pid_t spawn(int (*fn)(void *), void *arg)
{
    if (nworkers == MAX_WORKERS) die("too many workers");
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1); /* the bench died before prctl */
        nworkers = 0;                      /* only the main process owns workers */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGALRM, SIG_DFL);
        alarm(0);
        int r = fn(arg);
        fflush(NULL);
        _exit(r);
    }
    workers[nworkers++] = pid;
    return pid;
}

/* Workers that chan_wait found dead, with their exit codes, for reap. */
#define MAX_EXITED 256
static struct {
    pid_t pid;
    int code;
} exited[MAX_EXITED];
static int nexited;

static int exit_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int reap(pid_t pid)
{
    for (int i = 0; i < nexited; i++)
        if (exited[i].pid == pid) {
            int code = exited[i].code;
            exited[i] = exited[--nexited];
            return code;
        }
    int st;
    pid_t r;
    /* The main process waits in steps, to keep its progress line going. */
    int pfd = getpid() == bench_pid ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    while ((r = waitpid(pid, &st, pfd >= 0 ? WNOHANG : 0)) == 0 || (r < 0 && errno == EINTR)) {
        if (r == 0) {
            struct pollfd p = {.fd = pfd, .events = POLLIN};
            poll(&p, 1, 500);
            progress_tick();
        }
    }
    if (pfd >= 0) close(pfd);
    forget(pid);
    if (r < 0) return -1;
    return exit_code(st);
}

/* A worker that failed makes every wait for its peers fail at once, instead
 * of at its timeout. */
static bool worker_failed(void)
{
    int st;
    pid_t pid;
    bool failed = false;
    while (nexited < MAX_EXITED && (pid = waitpid(-1, &st, WNOHANG)) > 0) {
        forget(pid);
        exited[nexited].pid = pid;
        exited[nexited++].code = exit_code(st);
        if (exit_code(st) != 0) {
            fprintf(stderr, "faultline-bench: %s %d exited with %d\n",
                    pid == core.pid ? "core" : "worker", (int)pid, exit_code(st));
            failed = true;
        }
    }
    return failed;
}

void kill_worker(pid_t pid)
{
    if (pid <= 0) return;
    for (int i = 0; i < nexited; i++)
        if (exited[i].pid == pid) {
            exited[i] = exited[--nexited];
            return;
        }
    kill(pid, SIGKILL);
    reap(pid);
}

void kill_all_workers(void)
{
    /* SIGKILL reaches stopped processes too. Kill all first, then reap. */
    for (int i = 0; i < nworkers; i++) kill(workers[i], SIGKILL);
    while (nworkers > 0) {
        pid_t pid = workers[nworkers - 1];
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        nworkers--;
    }
}

void *shm_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap shared");
    return p;
}

void shm_free(void *p, size_t size)
{
    if (p) munmap(p, size);
}

void chan_open(struct chan *c)
{
    int fds[2];
    if (pipe(fds) < 0) die("pipe");
    c->r = fds[0];
    c->w = fds[1];
}

void chan_close(struct chan *c)
{
    close(c->r);
    close(c->w);
    c->r = c->w = -1;
}

void chan_post(struct chan *c, int n)
{
    char buf[256];
    memset(buf, 'x', sizeof(buf));
    while (n > 0) {
        int k = n < (int)sizeof(buf) ? n : (int)sizeof(buf);
        ssize_t w = write(c->w, buf, (size_t)k);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("pipe write");
        n -= (int)w;
    }
}

int chan_wait(struct chan *c, int n, int timeout_ms)
{
    uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    bool main_process = getpid() == bench_pid;
    while (n > 0) {
        uint64_t t = now_ns();
        if (timeout_ms >= 0 && t >= end) return -1;
        if (main_process && worker_failed()) return -1;
        if (main_process) progress_tick();
        struct pollfd p = {.fd = c->r, .events = POLLIN};
        int r = poll(&p, 1,
                     main_process     ? 100
                     : timeout_ms < 0 ? -1
                                      : (int)((end - t) / 1000000 + 1));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        char buf[256];
        ssize_t k = read(c->r, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        n -= (int)k;
    }
    return 0;
}

void chans_open(struct chan *const *c)
{
    for (; *c; c++) chan_open(*c);
}

void chans_close(struct chan *const *c)
{
    for (; *c; c++) chan_close(*c);
}

int worker_hold(struct chan *post, struct chan *exit)
{
    chan_post(post, 1);
    chan_wait(exit, 1, -1);
    return 0;
}

/* ---- errors ---- */

void die_fl(const char *what, int err)
{
    fprintf(stderr, "faultline-bench[%d]: %s: %s (%s)\n", (int)getpid(), what, fl_error_name(err),
            fl_strerror(err));
    fflush(NULL);
    if (getpid() == bench_pid) exit(1);
    _exit(1);
}

void die(const char *what)
{
    fprintf(stderr, "faultline-bench[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
    fflush(NULL);
    if (getpid() == bench_pid) exit(1);
    _exit(1);
}

struct fl_env *env_open(size_t window)
{
    struct fl_env_config cfg = {.window_size = window};
    struct fl_env *env;
    int r = fl_env_open(&env, &cfg);
    if (r < 0) die_fl("fl_env_open", r);
    return env;
}

/* ---- core ---- */

static char core_path[PATH_MAX];

static int find_core(void)
{
    const char *e = getenv("FAULTLINE_CORE");
    if (e) {
        snprintf(core_path, sizeof(core_path), "%s", e);
        return access(core_path, X_OK);
    }
    char self[PATH_MAX - 64]; /* room for the suffixes below */
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0) return -1;
    self[n] = 0;
    *strrchr(self, '/') = 0;
    /* Installed: next to us. Build tree: build/src/tools/bench/ -> build/. */
    const char *rel[] = {"", "/../../.."};
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        snprintf(core_path, sizeof(core_path), "%s%s/faultline-core", self, rel[i]);
        if (access(core_path, X_OK) == 0) return 0;
    }
    return -1;
}

static bool log_contains(const char *text)
{
    FILE *f = fopen(core.log, "r");
    if (!f) return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

int core_start(void)
{
    snprintf(core.dir, sizeof(core.dir), "/tmp/flbench-XXXXXX");
    if (!mkdtemp(core.dir)) die("mkdtemp");
    snprintf(core.sock, sizeof(core.sock), "%s/core.sock", core.dir);
    snprintf(core.log, sizeof(core.log), "%s/core.log", core.dir);
    setenv("FAULTLINE_SOCKET", core.sock, 1);
    fflush(NULL);
    pid_t parent = getpid();
    core.pid = fork();
    if (core.pid < 0) die("fork");
    if (core.pid == 0) {
        int fd = open(core.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        /* Quotas large enough for 1 GiB streams, 100k attachments and
         * capscale's 100k maps (4 KiB and 2 caps each, + 1 cap per dataspace). */
        execl(core_path, core_path, "--socket", core.sock, "--ram-quota", "8G", "--cap-quota",
              "400000", (char *)NULL);
        _exit(127);
    }
    workers[nworkers++] = core.pid;
    uint64_t end = now_ns() + 10000000000ull;
    while (!log_contains("listening on")) {
        int st;
        if (waitpid(core.pid, &st, WNOHANG) == core.pid || now_ns() > end) {
            forget(core.pid);
            fprintf(stderr, "faultline-bench: %s did not start; its log (%s):\n", core_path,
                    core.log);
            FILE *f = fopen(core.log, "r");
            char line[1024];
            while (f && fgets(line, sizeof(line), f)) fputs(line, stderr);
            if (f) fclose(f);
            kill(core.pid, SIGKILL);
            waitpid(core.pid, NULL, 0);
            core.pid = 0;
            return -1;
        }
        sleep_us(2000);
    }
    return 0;
}

void core_stop(void)
{
    if (core.pid <= 0) return;
    kill(core.pid, SIGTERM);
    uint64_t end = now_ns() + 5000000000ull;
    int st;
    while (waitpid(core.pid, &st, WNOHANG) == 0) {
        if (now_ns() > end) {
            fprintf(stderr, "faultline-bench: core did not stop on SIGTERM; killing it\n");
            kill(core.pid, SIGKILL);
            waitpid(core.pid, &st, 0);
            break;
        }
        sleep_us(1000);
    }
    forget(core.pid);
    core.pid = 0;
    unlink(core.log);
    unlink(core.sock);
    rmdir(core.dir);
}

double core_cpu_us(void)
{
    return pid_cpu_us(core.pid);
}

static bool cpu_ticks; /* a process's clock could not be read: ticks used */

const char *cpu_clock_name(void)
{
    return cpu_ticks ? "clock ticks of /proc/PID/stat (10 ms at 100 Hz) for some processes; "
                       "elsewhere clock_getcpuclockid (1 ns)"
                     : "clock_getcpuclockid, 1 ns (core's loop thread: /proc/PID/schedstat, 1 ns)";
}

double pid_cpu_us(pid_t pid)
{
    /* The process's CPU-time clock: nanoseconds, every thread, the exited
     * ones too; /proc/PID/stat counts clock ticks. */
    clockid_t clk;
    struct timespec ts;
    if (clock_getcpuclockid(pid, &clk) == 0 && clock_gettime(clk, &ts) == 0)
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
    cpu_ticks = true;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NAN;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return NAN;
    buf[n] = 0;
    /* Fields after the command, which may contain spaces: start after ')'. */
    char *p = strrchr(buf, ')');
    if (!p) return NAN;
    unsigned long utime = 0, stime = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return NAN;
    return (double)(utime + stime) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

double core_loop_ns(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)core.pid);
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    unsigned long long run = 0;
    int k = fscanf(f, "%llu", &run);
    fclose(f);
    return k == 1 ? (double)run : NAN;
}

static double status_ctxsw(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    double n = 0;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "voluntary_ctxt_switches:", 24) ||
            !strncmp(line, "nonvoluntary_ctxt_switches:", 27))
            n += strtod(strchr(line, ':') + 1, NULL);
    fclose(f);
    return n;
}

double pid_ctxsw(pid_t pid)
{
    char path[320];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) return NAN;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, e->d_name);
        n += status_ctxsw(path);
    }
    closedir(d);
    return n;
}

double core_loop_ctxsw(void)
{
    char path[64];
    /* The thread group leader's own counts: core's event loop. */
    snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)core.pid, (int)core.pid);
    return status_ctxsw(path);
}

long core_status_kb(const char *field)
{
    return fl_proc_status_kb(core.pid, field);
}

/* ---- main ---- */

static void on_fatal(int sig)
{
    /* Async-signal-safe: kill and waitpid only, then leave. */
    static const char msg[] = "faultline-bench: interrupted or timed out; killing workers\n";
    if (getpid() != bench_pid) _exit(128 + sig);
    ssize_t n = write(2, msg, sizeof(msg) - 1);
    (void)n;
    for (int i = 0; i < nworkers; i++) kill(workers[i], SIGKILL);
    for (int i = 0; i < nworkers; i++) waitpid(workers[i], NULL, 0);
    if (core.sock[0]) unlink(core.sock);
    if (core.log[0]) unlink(core.log);
    if (core.dir[0]) rmdir(core.dir);
    pager_cleanup();
    _exit(sig == SIGALRM ? 1 : 128 + sig);
}

static void at_exit(void)
{
    if (getpid() != bench_pid) return;
    kill_all_workers();
    if (core.dir[0]) {
        unlink(core.sock);
        unlink(core.log);
        rmdir(core.dir);
    }
    pager_cleanup();
}

static const struct {
    const char *name;
    int (*fn)(void);
    unsigned timeout_s; /* full run; --quick gets a third */
    /* Its usual seconds, quick and full, on a 2-vCPU machine like that of
     * BENCHMARKS.md: the progress line's estimate, scaled by how this run
     * keeps up. */
    double quick_s, full_s;
} workloads[] = {
    {"touch", wl_touch, 120, 0.2, 5},        {"reflect", wl_reflect, 180, 1, 4},
    {"stream", wl_stream, 300, 0.3, 5},      {"scale", wl_scale, 600, 1, 40},
    {"map", wl_map, 600, 0.7, 10},           {"revoke", wl_revoke, 300, 0.6, 7},
    {"isolation", wl_isolation, 300, 1, 3},  {"forge", wl_forge, 900, 5, 20},
    {"capscale", wl_capscale, 600, 0.6, 10}, {"pager", wl_pager, 900, 8, 160},
    {"protocol", wl_protocol, 900, 7, 35},
};
#define NWORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

static void usage(FILE *f)
{
    fprintf(f,
            "usage: faultline-bench [--quick] [--large] [--repeat N] [--json FILE] [WORKLOAD...]\n"
            "       faultline-bench --version\nworkloads:");
    for (size_t i = 0; i < NWORKLOADS; i++) fprintf(f, " %s", workloads[i].name);
    fprintf(f, " (default: all)\nThe core binary: $FAULTLINE_CORE, else faultline-core next to "
               "this program (or at the top of its build tree).\n"
               "--repeat N runs each workload N times (each run alternates faultline with its\n"
               "baselines) and prints the median and range of every ratio, with the load at\n"
               "each run's start.\n"
               "--large adds the sizes too slow for every run (protocol: 100,000 dataspaces).\n"
               "$FAULTLINE_BENCH_PROTOCOL names protocol's parts to run (default abdef; c comes\n"
               "with a; doc/async-vs-sync.md).\n"
               "A progress line with an estimate goes to stderr ($FAULTLINE_BENCH_PROGRESS:\n"
               "0 none, 1 lines even for a short run).\n"
               "       faultline-bench plot RESULT.json OUTDIR [--format svg|png]\n"
               "       faultline-bench compare OLD.json NEW.json [--threshold PERCENT]\n"
               "plot draws each workload's latency CDFs and throughput bars, faultline beside\n"
               "its baseline (python3-matplotlib); compare prints NEW/OLD per workload and\n"
               "case and flags what moved beyond the run-to-run range (exit 1 if a case got\n"
               "worse; the rule: faultline-bench compare --help).\n");
}

#ifndef FL_BENCH_BUILDTYPE
#define FL_BENCH_BUILDTYPE "unknown"
#endif

static void machine_line(void)
{
    struct utsname u;
    uname(&u);
    double load[3] = {0};
    getloadavg(load, 3);
    printf("faultline-bench %s, %s build: kernel %s, %ld CPUs, load %.2f %.2f %.2f, %s mode",
           FL_VERSION_STRING, FL_BENCH_BUILDTYPE, u.release, sysconf(_SC_NPROCESSORS_ONLN), load[0],
           load[1], load[2], opts.quick ? "quick" : "full");
    if (opts.repeat > 1) printf(", every workload %d times", opts.repeat);
    printf("\ncore: %s\n", core_path);
    if (json) {
        /* Which build measured on what: results of two commits can be
         * compared. The build type is the bench's, of the same build tree
         * as its core unless $FAULTLINE_CORE names another. */
        fprintf(json, "{\n  \"version\": ");
        json_str(FL_VERSION);
        fprintf(json, ",\n  \"commit\": ");
        json_str(FL_COMMIT);
        fprintf(json, ",\n  \"build_type\": ");
        json_str(FL_BENCH_BUILDTYPE);
        fprintf(json, ",\n  \"core\": ");
        json_str(core_path);
        fprintf(json, ",\n  \"kernel\": ");
        json_str(u.release);
        fprintf(json,
                ",\n  \"cpus\": %ld,\n  \"load1\": %.2f,\n  \"quick\": %s,\n  \"repeat\": %d,\n  "
                "\"results\": [",
                sysconf(_SC_NPROCESSORS_ONLN), load[0], opts.quick ? "true" : "false", opts.repeat);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "plot") || !strcmp(argv[1], "compare")))
        return bench_tool(argc - 1, argv + 1); /* tool.c */
    bool want[NWORKLOADS] = {0}, any = false;
    opts.repeat = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            opts.quick = true;
        } else if (!strcmp(argv[i], "--large")) {
            opts.large = true;
        } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            opts.json = argv[++i];
        } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > MAX_REPEAT) {
                fprintf(stderr, "faultline-bench: --repeat wants a number from 1 to %d, not '%s'\n",
                        MAX_REPEAT, argv[i]);
                return 2;
            }
            opts.repeat = (int)n;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("faultline-bench %s\n", FL_VERSION_STRING);
            return 0;
        } else {
            size_t k = 0;
            while (k < NWORKLOADS && strcmp(argv[i], workloads[k].name)) k++;
            if (k == NWORKLOADS) {
                fprintf(stderr, "faultline-bench: unknown workload or option '%s'\n", argv[i]);
                usage(stderr);
                return 2;
            }
            want[k] = any = true;
        }
    }
    if (!any)
        for (size_t k = 0; k < NWORKLOADS; k++) want[k] = true;
    bench_pid = getpid();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (find_core() < 0) {
        fprintf(stderr,
                "faultline-bench: cannot find faultline-core (set $FAULTLINE_CORE); tried %s\n",
                core_path);
        return 1;
    }
    if (opts.json) {
        json = open_memstream(&json_buf, &json_len);
        if (!json) die("open_memstream");
    }
    atexit(at_exit);
    struct sigaction sa = {.sa_handler = on_fatal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    machine_line();

    int failed = 0, done = 0, nwant = 0;
    double typical = 0;
    for (size_t k = 0; k < NWORKLOADS; k++)
        if (want[k]) {
            nwant += opts.repeat;
            typical += opts.repeat * (opts.quick ? workloads[k].quick_s : workloads[k].full_s);
        }
    progress_begin(nwant, typical);
    for (size_t k = 0; k < NWORKLOADS; k++) {
        if (!want[k]) continue;
        int ok = 0;
        for (run_index = 0; run_index < opts.repeat; run_index++) {
            progress_workload(workloads[k].name,
                              opts.quick ? workloads[k].quick_s : workloads[k].full_s);
            /* Every result carries the load at its workload's start. */
            bench_load1 = rep_load[run_index] = load1_now();
            last_workload = NULL;
            /* Each run gets a fresh core: /proc numbers then are its own. */
            if (core_start() < 0) return 1;
            alarm(opts.quick ? workloads[k].timeout_s / 3 + 20 : workloads[k].timeout_s);
            uint64_t t0 = now_ns();
            pid_t core_pid = core.pid;
            int r = workloads[k].fn();
            alarm(0);
            nexited = 0;
            for (int i = nworkers - 1; i >= 0; i--)
                if (workers[i] != core.pid) kill_worker(workers[i]);
            core_stop();
            progress_done();
            printf("(%s: %s in %.1f s; its core was pid %d)\n", workloads[k].name,
                   r == 0 ? "done" : "FAILED", (double)(now_ns() - t0) / 1e9, (int)core_pid);
            ok += r == 0;
        }
        rep_summary(workloads[k].name, opts.repeat);
        if (ok == opts.repeat)
            done++;
        else
            failed++;
    }
    printf("\nfaultline-bench: %d workloads done, %d failed\n", done, failed);
    printf("CPU times: %s\n", cpu_clock_name());
    if (json) {
        fprintf(json, "\n  ],\n  \"done\": %d,\n  \"failed\": %d,\n  \"cpu_clock\": ", done,
                failed);
        json_str(cpu_clock_name());
        fputs(",\n  \"syscall_count\": ", json);
        json_str(sys_count_method());
        fputs("\n}\n", json);
        fclose(json);
        json = NULL;
        FILE *f = fopen(opts.json, "w");
        if (!f || fwrite(json_buf, 1, json_len, f) != json_len || fclose(f) != 0) {
            fprintf(stderr, "faultline-bench: cannot write %s: %s\n", opts.json, strerror(errno));
            failed++;
        }
        free(json_buf);
    }
    return failed ? 1 : 0;
}
