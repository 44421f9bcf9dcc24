/*
 * Reproducer for a bug the soak found: an honest client that attaches a
 * managed dataspace backed by more than 64 RAM dataspaces loses its session
 * ("too many descriptors in flight: its agent does not acknowledge") and is
 * terminated (exit 70). The attach makes core send one memfd per backing
 * dataspace in one burst; the credit of 64 unacknowledged descriptors is
 * meant for agents that stop acknowledging, not for core's own bursts.
 *
 * Passes when the client read all pages and kept its session; fails when it
 * lost it.
 */
#include "../integration/harness.h"
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#define N 100
static int client(void *token)
{
    struct fl_env *env = t_env();
    fl_cap ds;
    T_ERR(fl_cap_import(env, token, &ds), 0);
    int r;
    volatile char *p = fl_attach(env, ds, &r);
    printf("client: attach of a managed dataspace with %d RAM dataspaces: %s\n", N,
           p ? "ok" : fl_error_name(r));
    int sum = 0;
    if (p)
        for (int i = 0; i < N; i++) sum += p[i * 4096];
    printf("client: read %d pages, sum %d\n", N, sum);
    struct fl_session_info info;
    r = fl_env_session_info(env, &info);
    printf("client: session afterwards: %s\n", r ? fl_error_name(r) : "alive");
    return r == 0 ? 0 : 1;
}
static void burst_of_descriptors_keeps_the_session(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, N * 4096, 0);
    for (int i = 0; i < N; i++) {
        fl_cap ds;
        T_ERR(fl_ram_alloc(mgr, 4096, &ds), 0);
        t_mm_attach(&mm, ds, 0, 0, (uintptr_t)i * 4096);
    }
    int rc = t_wait(t_spawn(client, (void *)t_mm_export(&mm)));
    printf("core log: %s\n", t_core_log_contains(core, "too many descriptors in flight")
                                 ? "session closed: too many descriptors in flight"
                                 : "no closure");
    fl_env_close(mgr);
    t_core_stop(core);
    if (rc) T_FAILF("the client lost its session (exit %d): BUG reproduced", rc);
}

T_CASES(burst_of_descriptors_keeps_the_session)
