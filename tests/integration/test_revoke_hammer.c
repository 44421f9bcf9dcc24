/*
 * Revocation that holds: a client hammers a page of a managed dataspace while
 * the manager detaches the RAM behind it. Once detach returns, no write of
 * the client reaches the old dataspace: its next write faults and is
 * reflected to the manager, and after the manager attaches fresh memory the
 * client's writes land there.
 */
#include "harness.h"

#include <signal.h>
#include <stdint.h>
#include <unistd.h>

static struct t_pipe tokens, ready;

static int hammer(void *arg)
{
    (void)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    struct fl_env *env = t_env();
    volatile uint64_t *p = t_import_attach(env, token);
    p[0] = 1;
    t_pipe_send(&ready, "hammering");
    for (uint64_t i = 2;; i++) p[0] = i;
    return 0;
}

int main(void)
{
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&ready);
    struct fl_env *mgr = t_env();
    fl_cap rm, sigh, mds, old, fresh;
    T_ERR(fl_rm_create(mgr, 64 * 1024, &rm), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    T_ERR(fl_ram_alloc(mgr, 4096, &old), 0);
    T_ERR(fl_ram_alloc(mgr, 4096, &fresh), 0);
    volatile uint64_t *o = fl_attach(mgr, old, NULL), *n = fl_attach(mgr, fresh, NULL);
    T_ASSERT(o && n);
    struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, rm, old, &a, NULL), 0);

    char token[FL_TOKEN_LEN + 1], line[16];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    pid_t c = t_spawn(hammer, NULL);
    t_pipe_send(&tokens, token);
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);
    uint64_t before = o[0];
    T_WAIT_UNTIL(o[0] > before + 1000); /* the client is writing into `old` */

    T_ERR(fl_region_map_detach(mgr, rm, 0), 0);
    uint64_t at_detach = o[0];
    /* The client's next write faults: wait for it to be reflected here. */
    T_ASSERT(fl_signal_wait(mgr, sigh, -1) > 0);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.type, FL_FAULT_WRITE);
    T_EQ(f.addr, 0);
    T_EQ(o[0], at_detach); /* nothing reached the old dataspace after detach */

    n[0] = 0;
    T_ERR(fl_region_map_attach(mgr, rm, fresh, &a, NULL), 0);
    T_WAIT_UNTIL(n[0] > at_detach); /* it resumed, writing into `fresh` */
    T_EQ(o[0], at_detach);

    kill(c, SIGKILL);
    t_wait(c);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
