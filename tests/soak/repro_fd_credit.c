/*
 * Reproducer for a bug the soak found: an honest client that attaches a
 * managed dataspace backed by more than 64 RAM dataspaces loses its session
 * ("too many descriptors in flight: its agent does not acknowledge") and is
 * terminated (exit 70). The attach makes core send one memfd per backing
 * dataspace in one burst; the credit of 64 unacknowledged descriptors is
 * meant for agents that stop acknowledging, not for core's own bursts.
 *
 * Exit 0: the client read all pages and kept its session; 1: it lost it.
 */
#include "../integration/harness.h"
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
static struct t_pipe tokens, done;
#define N 100
static int client(void *arg)
{
    (void)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
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
    t_pipe_send(&done, "x");
    return r == 0 ? 0 : 1;
}
int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&done);
    struct fl_env *mgr = t_env();
    fl_cap rm, mds;
    T_ERR(fl_rm_create(mgr, N * 4096, &rm), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    for (int i = 0; i < N; i++) {
        fl_cap ds;
        T_ERR(fl_ram_alloc(mgr, 4096, &ds), 0);
        struct fl_attr a = {.use_at = true, .at = (uintptr_t)i * 4096, .writeable = true};
        T_ERR(fl_region_map_attach(mgr, rm, ds, &a, NULL), 0);
    }
    char token[FL_TOKEN_LEN + 1], line[8];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    pid_t c = t_spawn(client, NULL);
    t_pipe_send(&tokens, token);
    t_pipe_recv(&done, line, sizeof(line));
    int rc = t_wait(c);
    printf("core log: %s\n", t_core_log_contains(core, "too many descriptors in flight")
                                 ? "session closed: too many descriptors in flight"
                                 : "no closure");
    fl_env_close(mgr);
    t_core_stop(core);
    printf("client exit %d: %s\n", rc, rc ? "BUG reproduced" : "behaves");
    return rc ? 1 : 0;
}
