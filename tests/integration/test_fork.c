/*
 * A child forked after any number of attaches inherits neither the window,
 * nor any dataspace mapped in it, nor a descriptor of one (the window and every
 * mapping are MADV_DONTFORK; the fork handler closes the descriptors).
 */
#include "harness.h"

#include <stdint.h>
#include <unistd.h>

struct span {
    uintptr_t lo, hi;
};

static int child(void *arg)
{
    struct span *w = arg;
    /* No mapping of the parent's window may exist here. */
    char line[512];
    int n = t_proc_maps_overlapping(0, w->lo, w->hi, line, sizeof(line));
    T_ASSERT(n >= 0);
    if (n) T_FAILF("the child still maps %s", line);
    /* No descriptor of a dataspace (or of the session). */
    T_EQ(t_proc_fds_with(0, "faultline-ds", NULL, 0), 0);
    T_EQ(t_proc_fds_with(0, "userfaultfd", NULL, 0), 0);
    return 0;
}

static void child_inherits_nothing(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *env = t_env();
    for (int i = 0; i < 20; i++) {
        fl_cap ds;
        char *p = t_ram(env, 8192, &ds);
        memset(p, 0x5a, 8192);
        if (i % 3 == 0) T_ERR(fl_detach(env, p), 0);
    }
    /* The parent does hold them, so the child's check below can fail. */
    T_ASSERT(t_proc_fds_with(0, "faultline-ds", NULL, 0) > 0);
    T_ASSERT(t_proc_fds_with(0, "userfaultfd", NULL, 0) > 0);
    struct span w = {(uintptr_t)fl_env_window_base(env),
                     (uintptr_t)fl_env_window_base(env) + fl_env_window_size(env)};
    T_EQ(t_wait(t_spawn(child, &w)), 0);
    /* And the parent is unaffected. */
    t_session_works(env, 1, 7);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(child_inherits_nothing)
