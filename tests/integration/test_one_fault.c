/*
 * A resolved fault costs the faulting thread exactly one fault. Core sends a
 * component's agent the mapping first and the wake (AGENT_RESUME) after it. A
 * wake sent before the mapping lets the thread retry into the missing page:
 * it faults again, core wakes it again once the agent acknowledged, and the
 * thread gets its memory all the same -- only a count shows the extra fault.
 *
 * The count is the thread's voluntary context switches across its one
 * access (getrusage RUSAGE_THREAD): each wait in the uffd is one, and nothing
 * else in that access sleeps. So that an early wake costs a fault every time,
 * not only when the thread outruns the agent's mmap, the client runs on one
 * CPU and the faulting thread is SCHED_FIFO: the agent's wake hands the CPU
 * to the thread before the agent's next instruction. Skipped where
 * SCHED_FIFO is not permitted.
 *
 * Both ways a resolved faulter is woken: a fault core resolves from its own
 * database (a window the agent dropped from its mapping cache, with
 * FAULTLINE_VMA_BUDGET=4), and the manager's attach over a reflected fault.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAP_SIZE  (1u << 20)
#define SLICES    6 /* RAM slices at SLICE_GAP steps: more windows than the budget */
#define SLICE_GAP 0x2000u
#define UNBACKED  0x40000u /* reflected: the manager attaches there when asked */

/* ---- the client ---- */

static volatile char *view;

struct access {
    size_t off;
    int value;
    long faults;
};

static void *faulter(void *arg)
{
    struct access *a = arg;
    struct rusage before, after;
    getrusage(RUSAGE_THREAD, &before);
    a->value = view[a->off];
    getrusage(RUSAGE_THREAD, &after);
    a->faults = after.ru_nvcsw - before.ru_nvcsw;
    return NULL;
}

/* Run fn in a SCHED_FIFO thread; returns pthread_create's error. */
static int run_fifo(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    struct sched_param sp = {.sched_priority = sched_get_priority_min(SCHED_FIFO)};
    pthread_attr_init(&attr);
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    pthread_attr_setschedparam(&attr, &sp);
    pthread_t t;
    int r = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    if (r == 0) pthread_join(t, NULL);
    return r;
}

static void *nothing(void *arg)
{
    return arg;
}

/* Whether the page at p is an anonymous placeholder (inode 0 in
 * /proc/self/maps), not a mapping of a dataspace's memfd. */
static bool placeholder(const volatile void *p)
{
    FILE *f = fopen("/proc/self/maps", "re");
    T_ASSERT(f);
    char line[512];
    bool anon = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi, inode;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &inode) == 3 && (uintptr_t)p >= lo &&
            (uintptr_t)p < hi) {
            anon = inode == 0;
            break;
        }
    }
    fclose(f);
    return anon;
}

static int client_main(struct t_child *c)
{
    /* One CPU for every thread of the client, the agent included (it
     * inherits the mask at fl_env_open). */
    cpu_set_t set;
    T_ASSERT(sched_getaffinity(0, sizeof(set), &set) == 0);
    int cpu = 0;
    while (!CPU_ISSET(cpu, &set)) cpu++;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    T_ASSERT(sched_setaffinity(0, sizeof(set), &set) == 0);
    if (run_fifo(nothing, NULL) != 0) {
        t_child_say(c, "no SCHED_FIFO");
        return T_SKIP;
    }
    setenv("FAULTLINE_VMA_BUDGET", "4", 1);
    struct fl_env *env = t_env();
    t_child_say(c, "ready");
    char line[256];
    for (;;) {
        t_child_command(c, line, sizeof(line));
        if (!strncmp(line, "attach ", 7)) {
            view = t_import_attach(env, line + 7);
            t_child_say(c, "attached");
        } else if (!strcmp(line, "evicted")) {
            char list[128] = "evicted";
            for (unsigned i = 0; i < SLICES; i++)
                if (placeholder(view + i * SLICE_GAP))
                    snprintf(list + strlen(list), sizeof(list) - strlen(list), " %u", i);
            t_child_say(c, "%s", list);
        } else if (!strncmp(line, "touch ", 6)) {
            struct access a = {.off = strtoul(line + 6, NULL, 0)};
            T_EQ(run_fifo(faulter, &a), 0);
            t_child_say(c, "read %d faults %ld", a.value, a.faults);
        } else {
            break;
        }
    }
    fl_env_close(env);
    return 0;
}

/* ---- the manager (this process) ---- */

static void expect_one_fault(struct t_child *c, int value)
{
    char line[128], want[64];
    t_child_line(c, line, sizeof(line));
    snprintf(want, sizeof(want), "read %d faults 1", value);
    if (strcmp(line, want))
        T_FAILF("the client said \"%s\", expected \"%s\": a resolved fault must cost the thread "
                "exactly one fault (was it woken before its mapping?)",
                line, want);
}

static void one_fault_each(void)
{
    struct t_core *core = t_core_start(NULL);
    struct t_mm mm;
    t_mm_create(&mm, t_env(), MAP_SIZE, T_MM_HANDLER);
    struct fl_env *mgr = mm.env;
    for (unsigned i = 0; i < SLICES; i++) t_ram_at(mgr, mm.rm, i * SLICE_GAP, 4096, 10 + (int)i);

    struct t_child c;
    t_child_spawn(&c, "client", client_main);
    char line[128];
    t_child_line(&c, line, sizeof(line));
    if (!strcmp(line, "no SCHED_FIFO")) {
        T_EQ(t_wait(c.pid), T_SKIP);
        t_skip("SCHED_FIFO is not permitted here");
    }
    T_ASSERT(!strcmp(line, "ready"));
    t_child_send(&c, "attach %s", t_mm_export(&mm));
    t_child_expect(&c, "attached");

    /* Its attach mapped all six slices; beyond a budget of four windows the
     * agent dropped the oldest back to placeholders: touching them faults,
     * and core maps them again from its database. */
    t_child_send(&c, "evicted");
    t_child_line(&c, line, sizeof(line));
    unsigned evicted[SLICES], n = 0;
    for (char *tok = strchr(line, ' '); tok && n < SLICES; tok = strchr(tok + 1, ' '))
        evicted[n++] = (unsigned)atoi(tok + 1);
    if (n == 0) T_FAILF("the client's mapping cache kept all %u windows (budget 4)", SLICES);
    for (unsigned i = 0; i < n && i < 2; i++) {
        t_child_send(&c, "touch %#x", evicted[i] * SLICE_GAP + 5);
        expect_one_fault(&c, 10 + (int)evicted[i]);
    }

    /* Unbacked: reflected here, resolved by an attach, which wakes it. */
    for (unsigned i = 0; i < 2; i++) {
        uintptr_t at = UNBACKED + i * SLICE_GAP;
        t_child_send(&c, "touch %#lx", (unsigned long)(at + 7));
        struct fl_fault f = t_mm_next_fault(&mm);
        T_EQ(f.type, FL_FAULT_READ);
        T_EQ(f.addr & ~0xfffu, at); /* its page */
        t_ram_at(mgr, mm.rm, at, 4096, 70 + (int)i);
        expect_one_fault(&c, 70 + (int)i);
    }

    t_child_exit(&c);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(one_fault_each)
