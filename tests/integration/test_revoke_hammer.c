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

static int hammer(struct t_child *c)
{
    char token[64];
    t_child_command(c, token, sizeof(token));
    volatile uint64_t *p = t_import_attach(t_env(), token);
    p[0] = 1;
    t_child_say(c, "hammering");
    for (uint64_t i = 2;; i++) p[0] = i;
    return 0;
}

static void no_write_after_detach(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, 64 * 1024, T_MM_HANDLER);
    fl_cap old, fresh;
    volatile uint64_t *o = t_ram(mgr, 4096, &old), *n = t_ram(mgr, 4096, &fresh);
    t_mm_attach(&mm, old, 0, 0, 0);

    struct t_child c;
    t_child_spawn(&c, "hammering client", hammer);
    t_child_send(&c, "%s", t_mm_export(&mm));
    t_child_expect(&c, "hammering");
    uint64_t before = o[0];
    T_WAIT_UNTIL(o[0] > before + 1000); /* the client is writing into `old` */

    T_ERR(fl_region_map_detach(mgr, mm.rm, 0), 0);
    uint64_t at_detach = o[0];
    /* The client's next write faults: wait for it to be reflected here. */
    struct fl_fault f = t_mm_next_fault(&mm);
    T_EQ(f.type, FL_FAULT_WRITE);
    T_EQ(f.addr, 0);
    T_EQ(o[0], at_detach); /* nothing reached the old dataspace after detach */

    n[0] = 0;
    t_mm_attach(&mm, fresh, 0, 0, 0);
    T_WAIT_UNTIL(n[0] > at_detach); /* it resumed, writing into `fresh` */
    T_EQ(o[0], at_detach);

    kill(c.pid, SIGKILL);
    t_wait(c.pid);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(no_write_after_detach)
