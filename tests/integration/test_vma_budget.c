/*
 * The mapping cache: a manager attaching 4 KiB slices of one backing
 * dataspace in scattered order all over a managed dataspace (no two
 * neighbours can merge into one VMA) would need a VMA per page. With a budget
 * of 64 windows the client keeps at most that many, evicted windows fault
 * again and core maps them from its own database (the manager is not asked
 * twice), and every page reads the right slice on every pass.
 *
 * A pager that attaches each slice at its own offset (a file pager) makes
 * neighbours the kernel merges into one VMA; the budget counts VMAs, so such
 * a client stays mapped whatever the number of slices.
 */
#include "harness.h"

#include <signal.h>
#include <string.h>
#include <stdint.h>
#include <unistd.h>

#define PAGES   1024u
#define PERM(p) (((p)*7919u) % PAGES) /* 7919 is prime: a permutation */

static uintptr_t scattered(uintptr_t page)
{
    return PERM(page / 4096) * 4096ul;
}

/* Where the manager takes a page's slice from (set before spawning it). */
static uintptr_t (*slice_of)(uintptr_t page) = scattered;

static int manager(struct t_child *c)
{
    struct fl_env *env = t_env();
    struct t_mm mm;
    t_mm_create(&mm, env, PAGES * 4096, T_MM_HANDLER);
    fl_cap backing;
    uint32_t *b = t_ram(env, PAGES * 4096, &backing);
    for (unsigned i = 0; i < PAGES; i++) b[i * 1024] = i;
    t_child_say(c, "%s", t_mm_export(&mm));
    unsigned served = 0;
    for (;;) {
        long n = fl_signal_wait(env, mm.sigh, 200);
        T_ASSERT(n >= 0);
        served += (unsigned)t_mm_serve(&mm, backing, slice_of);
        if (n == 0 && served >= PAGES) t_child_say(c, "%u", served);
    }
    return 0;
}

static struct t_core *core;
static struct t_child mgr;
static struct fl_env *env;

/* A core, the manager, and this process as its client under a budget of 64
 * windows: the managed dataspace, attached. */
static uint32_t *start(void)
{
    core = t_core_start(NULL);
    t_child_spawn(&mgr, "manager", manager);
    char token[64];
    t_child_line(&mgr, token, sizeof(token));
    setenv("FAULTLINE_VMA_BUDGET", "64", 1);
    env = t_env();
    return t_import_attach(env, token);
}

static void stop(void)
{
    fl_env_close(env);
    kill(mgr.pid, SIGKILL);
    t_wait(mgr.pid);
    T_EQ(t_core_stop(core), 0);
}

static void windows_within_budget(void)
{
    uint32_t *p = start();
    uintptr_t lo = (uintptr_t)fl_env_window_base(env), hi = lo + fl_env_window_size(env);
    int most = 0;
    for (int pass = 0; pass < 3; pass++) {
        for (unsigned i = 0; i < PAGES; i++) {
            T_EQ(p[i * 1024], PERM(i));
            if (i % 128 == 127) {
                int w = t_proc_maps_overlapping(0, lo, hi, NULL, 0);
                if (w > most) most = w;
            }
        }
    }
    /* 64 windows and the placeholders between them; without the budget ~1024. */
    fprintf(stderr, "at most %d VMAs in the window\n", most);
    T_ASSERT(most <= 2 * 64 + 8);
    /* The manager was asked once per page: refaults came from core's database. */
    char line[32];
    t_child_line(&mgr, line, sizeof(line));
    T_EQ(atoi(line), PAGES);
    stop();
}

/* 1024 slices in order, each at its own offset, under a budget of 64: they
 * make one VMA, and the agent must not count them as 1024 windows and turn
 * the oldest back into placeholders (it did: a second pass over a 1 GiB file
 * read at 4 KiB faulted on every page again). */
static void adjacent_slices_one_window(void)
{
    slice_of = NULL; /* page i from offset i */
    uint32_t *p = start();
    for (unsigned i = 0; i < PAGES; i++) T_EQ(p[i * 1024], i);
    char line[256];
    uintptr_t lo = (uintptr_t)p, hi = lo + PAGES * 4096;
    int vmas = t_proc_maps_overlapping(0, lo, hi, line, sizeof(line));
    fprintf(stderr, "%d VMA(s) over the dataspace, the first: %s\n", vmas, line);
    T_EQ(vmas, 1);
    T_ASSERT(strstr(line, "memfd:") != NULL); /* not a placeholder */
    stop();
}

T_CASES(windows_within_budget, adjacent_slices_one_window)
