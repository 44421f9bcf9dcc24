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

static int touch_managed(void *token)
{
    volatile char *p = t_import_attach(t_env(), token);
    return p[0x3000];
}

static void no_handler(void)
{
    struct t_core *core = t_core_start("--unresolvable", "sigbus", NULL);
    T_EQ(t_wait(t_spawn(touch_own_window, NULL)), 128 + SIGBUS);
    T_ASSERT(t_core_log_contains(core, "no fault handler"));
    T_EQ(t_core_stop(core), 0);
}

static void no_handler_in_a_syscall(void)
{
    struct t_core *core = t_core_start("--unresolvable", "sigbus", NULL);
    T_EQ(t_wait(t_spawn(touch_own_window, (void *)1)), 128 + SIGBUS);
    T_EQ(t_core_stop(core), 0);
}

/* A map destroyed while its faulter waits: never woken, so SIGBUS. */
static void map_destroyed(void)
{
    struct t_core *core = t_core_start("--unresolvable", "sigbus", NULL);
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, 64 * 1024, T_MM_HANDLER);
    pid_t c = t_spawn(touch_managed, (void *)t_mm_export(&mm));
    struct fl_fault f = t_mm_next_fault(&mm);
    T_EQ(f.addr, 0x3000);
    T_ERR(fl_rm_destroy(mgr, mm.rms, mm.rm), 0);
    T_EQ(t_wait(c), 128 + SIGBUS);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(no_handler, no_handler_in_a_syscall, map_destroyed)
