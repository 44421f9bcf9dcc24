/*
 * The mapping cache: a manager attaching 4 KiB slices of one backing
 * dataspace in scattered order all over a managed dataspace (no two
 * neighbours can merge into one VMA) would need a VMA per page. With a budget
 * of 64 windows the client keeps at most that many, evicted windows fault
 * again and core maps them from its own database (the manager is not asked
 * twice), and every page reads the right slice on every pass.
 */
#include "harness.h"

#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#define PAGES   1024u
#define PERM(p) (((p)*7919u) % PAGES) /* 7919 is prime: a permutation */

static struct t_pipe tokens, stats;

static int manager(void *arg)
{
    (void)arg;
    struct fl_env *env = t_env();
    fl_cap rm, sigh, mds, backing;
    T_ERR(fl_rm_create(env, PAGES * 4096, &rm), 0);
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(env, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(env, rm, &mds), 0);
    T_ERR(fl_ram_alloc(env, PAGES * 4096, &backing), 0);
    uint32_t *b = fl_attach(env, backing, NULL);
    T_ASSERT(b);
    for (unsigned i = 0; i < PAGES; i++) b[i * 1024] = i;
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, mds, token), 0);
    t_pipe_send(&tokens, token);
    unsigned served = 0;
    for (;;) {
        long n = fl_signal_wait(env, sigh, 200);
        T_ASSERT(n >= 0);
        struct fl_fault f;
        for (;;) {
            T_ERR(fl_region_map_fault(env, rm, &f), 0);
            if (f.type == FL_FAULT_NONE) break;
            unsigned page = (unsigned)(f.addr / 4096);
            struct fl_attr a = {.size = 4096,
                                .offset = PERM(page) * 4096ul,
                                .use_at = true,
                                .at = page * 4096ul,
                                .writeable = true};
            T_ERR(fl_region_map_attach(env, rm, backing, &a, NULL), 0);
            served++;
        }
        char line[32];
        snprintf(line, sizeof(line), "%u", served);
        if (n == 0 && served >= PAGES) t_pipe_send(&stats, line);
    }
    return 0;
}

static int windows_in(uintptr_t lo, uintptr_t hi)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a < hi && b > lo) n++;
    }
    fclose(f);
    return n;
}

int main(void)
{
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&stats);
    pid_t mgr = t_spawn(manager, NULL);
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);

    setenv("FAULTLINE_VMA_BUDGET", "64", 1);
    struct fl_env *env = t_env();
    uint32_t *p = t_import_attach(env, token);
    uintptr_t lo = (uintptr_t)fl_env_window_base(env), hi = lo + fl_env_window_size(env);
    int most = 0;
    for (int pass = 0; pass < 3; pass++) {
        for (unsigned i = 0; i < PAGES; i++) {
            T_EQ(p[i * 1024], PERM(i));
            if (i % 128 == 127) {
                int w = windows_in(lo, hi);
                if (w > most) most = w;
            }
        }
    }
    /* 64 windows and the placeholders between them; without the budget ~1024. */
    fprintf(stderr, "at most %d VMAs in the window\n", most);
    T_ASSERT(most <= 2 * 64 + 8);
    /* The manager was asked once per page: refaults came from core's database. */
    char line[32];
    T_EQ(t_pipe_recv(&stats, line, sizeof(line)), 0);
    T_EQ(atoi(line), PAGES);
    fl_env_close(env);
    kill(mgr, SIGKILL);
    t_wait(mgr);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
