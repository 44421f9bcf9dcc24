/*
 * --unresolvable=sigbus: a fault that can never be resolved — no handler on
 * the map, nesting too deep or cyclic, its map destroyed while the thread
 * waits — makes the thread receive SIGBUS, raised by its own component's
 * agent (core makes no uffd call but WAKE), so CI fails fast instead of
 * hanging. Also for a thread inside a syscall (read(2) into the window).
 * Under the default (halt) the same thread stays halted (test_fault_reflect).
 */
#include "harness.h"

#include <signal.h>
#include <unistd.h>

static int touch_own_window(void *arg)
{
    int syscall_path = arg != NULL;
    struct fl_env *env = t_env();
    volatile char *w = fl_env_window_base(env);
    if (syscall_path) {
        int p[2];
        T_ASSERT(pipe(p) == 0);
        T_ASSERT(write(p[1], "x", 1) == 1);
        T_ASSERT(read(p[0], (char *)w + 0x2000, 1) >= 0); /* faults in the kernel */
        return 0;
    }
    return w[0x1000]; /* no handler on the address space: never resolvable */
}

static struct t_pipe tokens;

static int touch_managed(void *arg)
{
    (void)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    struct fl_env *env = t_env();
    volatile char *p = t_import_attach(env, token);
    return p[0x3000];
}

int main(void)
{
    struct t_core *core = t_core_start("--unresolvable", "sigbus", NULL);
    T_EQ(t_wait(t_spawn(touch_own_window, NULL)), 128 + SIGBUS);
    T_EQ(t_wait(t_spawn(touch_own_window, (void *)1)), 128 + SIGBUS);

    /* A map destroyed while its faulter waits: never woken, so SIGBUS. */
    t_pipe_open(&tokens);
    struct fl_env *mgr = t_env();
    fl_cap rm, sigh, mds;
    T_ERR(fl_rm_create(mgr, 64 * 1024, &rm), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    pid_t c = t_spawn(touch_managed, NULL);
    t_pipe_send(&tokens, token);
    T_ASSERT(fl_signal_wait(mgr, sigh, -1) > 0);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.addr, 0x3000);
    T_ERR(fl_rm_destroy(mgr, rm), 0);
    T_EQ(t_wait(c), 128 + SIGBUS);

    T_ASSERT(t_core_log_contains(core, "no fault handler"));
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
