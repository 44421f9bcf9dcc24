/*
 * What does not drift with the machine's load, counted beside the times:
 * per process, CPU time, context switches and system calls over an interval.
 *
 * System calls are counted with the kernel's own counters, no perf binary:
 * perf_event_open on the tracepoints raw_syscalls:sys_enter (every call) and
 * raw_syscalls:sys_exit filtered to "ret == -11" (calls that returned
 * EAGAIN), one counter per thread of the process, inherited by threads it
 * creates while counting. That needs the tracepoints' ids from tracefs and
 * the right to trace the process (root, or perf_event_paranoid <= 1 with
 * ptrace rights); where it fails, the counts are NaN and sys_count_method()
 * says why. Enabled syscall tracepoints make every system call on the
 * machine take the slow path, so the workloads count in rounds of their own
 * whose times are not reported.
 */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static long tp_enter = -2, tp_exit = -2; /* -2: not looked up yet; -1: none */
static char why[160] = "not tried";

static long tracepoint_id(const char *name)
{
    static const char *const roots[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/events/raw_syscalls/%s/id", roots[i], name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        long id = -1;
        if (fscanf(f, "%ld", &id) != 1) id = -1;
        fclose(f);
        if (id >= 0) return id;
    }
    return -1;
}

static int open_counter(long id, pid_t tid, const char *filter)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof(a));
    a.type = PERF_TYPE_TRACEPOINT;
    a.size = sizeof(a);
    a.config = (uint64_t)id;
    a.inherit = 1;
    int fd = (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
        snprintf(why, sizeof(why), "unavailable: perf_event_open(raw_syscalls): %s",
                 strerror(errno));
        return -1;
    }
    if (filter && ioctl(fd, PERF_EVENT_IOC_SET_FILTER, filter) < 0) {
        snprintf(why, sizeof(why), "unavailable: tracepoint filter '%s': %s", filter,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

const char *sys_count_method(void)
{
    return why;
}

static void close_counters(struct proc_count *pc)
{
    for (int i = 0; i < pc->nfd; i++) close(pc->fd[i]);
    free(pc->fd);
    pc->fd = NULL;
    pc->nfd = 0;
}

static bool open_counters(struct proc_count *pc)
{
    if (tp_enter == -2) {
        tp_enter = tracepoint_id("sys_enter");
        tp_exit = tracepoint_id("sys_exit");
        if (tp_enter < 0 || tp_exit < 0)
            snprintf(why, sizeof(why),
                     "unavailable: no raw_syscalls tracepoints in /sys/kernel/tracing");
    }
    if (tp_enter < 0 || tp_exit < 0) return false;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pc->pid);
    DIR *d = opendir(path);
    if (!d) return false;
    struct dirent *e;
    bool ok = true;
    while (ok && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        pid_t tid = (pid_t)atoi(e->d_name);
        int *fd = realloc(pc->fd, (size_t)(pc->nfd + 2) * sizeof(int));
        if (!fd) die("realloc");
        pc->fd = fd;
        int a = open_counter(tp_enter, tid, NULL);
        int b = a >= 0 ? open_counter(tp_exit, tid, "ret == -11") : -1;
        if (a < 0 || b < 0) {
            if (a >= 0) close(a);
            ok = false;
            break;
        }
        pc->fd[pc->nfd++] = a;
        pc->fd[pc->nfd++] = b;
    }
    closedir(d);
    if (!ok) close_counters(pc);
    if (ok)
        snprintf(why, sizeof(why),
                 "perf_event_open on raw_syscalls:sys_enter and sys_exit (ret == -11), per thread, "
                 "in counting rounds of their own");
    return ok;
}

static void read_counters(const struct proc_count *pc, double *calls, double *eagain)
{
    *calls = *eagain = 0;
    for (int i = 0; i < pc->nfd; i++) {
        uint64_t v = 0;
        if (read(pc->fd[i], &v, sizeof(v)) != sizeof(v)) {
            *calls = *eagain = NAN;
            return;
        }
        *(i % 2 ? eagain : calls) += (double)v;
    }
}

void count_start(struct proc_count *pc, pid_t pid, bool syscalls)
{
    memset(pc, 0, sizeof(*pc));
    pc->pid = pid;
    pc->cpu0 = pid_cpu_us(pid);
    pc->cs0 = pid_ctxsw(pid);
    pc->syscalls = syscalls;
    if (syscalls && open_counters(pc)) read_counters(pc, &pc->sys0, &pc->eagain0);
}

void count_add(struct counts *sum, const struct proc_count *pc)
{
    if (pc->pid <= 0) return;
    sum->cpu_us += pid_cpu_us(pc->pid) - pc->cpu0;
    sum->ctxsw += pid_ctxsw(pc->pid) - pc->cs0;
    if (!pc->syscalls) return;
    if (!pc->nfd) {
        sum->syscalls = sum->eagain = NAN;
        return;
    }
    double s, e;
    read_counters(pc, &s, &e);
    sum->syscalls += s - pc->sys0;
    sum->eagain += e - pc->eagain0;
}

void count_stop(struct proc_count *pc)
{
    close_counters(pc);
    pc->pid = 0;
}

double count_of(const struct counts *c, enum count_field f)
{
    switch (f) {
    case CF_CPU: return c->cpu_us;
    case CF_CTXSW: return c->ctxsw;
    case CF_SYSCALLS: return c->syscalls;
    case CF_EAGAIN: return c->eagain;
    }
    return NAN;
}

double report_counts(const char *workload, const char *prefix, const char *const proc[3],
                     const struct counts c[3], enum count_field f, double per, const char *unit,
                     bool all)
{
    char key[200];
    double sum = 0;
    for (int p = 0; p < 3; p++) {
        if (!*proc[p]) continue;
        snprintf(key, sizeof(key), "%s%s", prefix, proc[p]);
        report_extra(workload, key, count_of(&c[p], f) / per, unit);
        sum += count_of(&c[p], f);
    }
    if (all) {
        snprintf(key, sizeof(key), "%sall processes", prefix);
        report_extra(workload, key, sum / per, unit);
    }
    return sum;
}

void counts_add(struct counts *sum, const struct counts *c)
{
    sum->cpu_us += c->cpu_us;
    sum->ctxsw += c->ctxsw;
    sum->syscalls += c->syscalls;
    sum->eagain += c->eagain;
}
