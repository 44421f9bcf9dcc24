/*
 * The progress line of a long run, on stderr: which workload of how many,
 * how long it has run, and an estimate of what is left. The estimate is each
 * workload's usual duration in this mode (main.c's table, from the machine of
 * BENCHMARKS.md), scaled by how this run kept up with the workloads done so
 * far. On a terminal the line is rewritten in place every second (and wiped
 * before the results are printed); otherwise a line at each workload's start
 * and every 30 s, for runs estimated at 20 s or more. $FAULTLINE_BENCH_PROGRESS
 * set to 0 turns it off, to 1 makes it lines whatever the run's length.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LONG_RUN_S     20.0
#define LOG_INTERVAL_S 30.0

static struct {
    int total, index;
    double total_typical, done_typical, done_actual;
    const char *name;
    double typical;
    uint64_t start, last;
    bool tty, shown, logging;
} pg;

static double secs_since(uint64_t t)
{
    return (double)(now_ns() - t) / 1e9;
}

static void fmt_time(double s, char *buf, size_t len)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

/* How much slower (> 1) or faster than usual this run goes: what the
 * workloads done so far took against their usual time, starting from a prior
 * of "as usual" worth a quarter of the run, so one odd workload does not
 * swing the estimate. */
static double pace(void)
{
    double prior = pg.total_typical / 4 > 5 ? pg.total_typical / 4 : 5;
    double f = (pg.done_actual + prior) / (pg.done_typical + prior);
    return f < 0.25 ? 0.25 : f > 8 ? 8 : f;
}

static void line(char *buf, size_t len)
{
    double el = secs_since(pg.start), expect = pg.typical * pace();
    double rest = (pg.total_typical - pg.done_typical - pg.typical) * pace();
    if (rest < 0) rest = 0;
    char a[32], b[32], c[32];
    fmt_time(el, a, sizeof(a));
    fmt_time(expect > el ? expect - el : 0, b, sizeof(b));
    fmt_time((expect > el ? expect - el : 0) + rest, c, sizeof(c));
    if (el <= expect)
        snprintf(buf, len, "faultline-bench: [%d/%d] %s %s, about %s left of it, %s in all",
                 pg.index, pg.total, pg.name, a, b, c);
    else {
        fmt_time(expect, b, sizeof(b));
        fmt_time(rest, c, sizeof(c));
        snprintf(buf, len,
                 "faultline-bench: [%d/%d] %s %s (longer than its usual %s), then about %s",
                 pg.index, pg.total, pg.name, a, b, c);
    }
}

void progress_begin(int nworkloads, double total_typical)
{
    pg.total = nworkloads;
    pg.total_typical = total_typical;
    const char *env = getenv("FAULTLINE_BENCH_PROGRESS");
    bool force = env && !strcmp(env, "1"), off = env && !strcmp(env, "0");
    pg.tty = isatty(2) && !force && !off;
    pg.logging = !off && (force || total_typical >= LONG_RUN_S);
}

void progress_workload(const char *name, double typical_s)
{
    pg.index++;
    pg.name = name;
    pg.typical = typical_s;
    pg.start = pg.last = now_ns();
    if (!pg.tty && pg.logging) {
        char buf[256];
        line(buf, sizeof(buf));
        fprintf(stderr, "%s\n", buf);
    }
}

void progress_tick(void)
{
    if (!pg.name) return;
    double since = secs_since(pg.last);
    if (pg.tty ? since < 1 || secs_since(pg.start) < 1 : !pg.logging || since < LOG_INTERVAL_S)
        return;
    pg.last = now_ns();
    char buf[256];
    line(buf, sizeof(buf));
    if (pg.tty) {
        fprintf(stderr, "\r\033[K%s", buf);
        pg.shown = true;
    } else {
        fprintf(stderr, "%s\n", buf);
    }
}

void progress_clear(void)
{
    if (!pg.shown) return;
    fputs("\r\033[K", stderr);
    pg.shown = false;
}

void progress_done(void)
{
    progress_clear();
    pg.done_actual += secs_since(pg.start);
    pg.done_typical += pg.typical;
    pg.name = NULL;
}
