/*
 * Faulter bookkeeping: a thread can leave a fault for good (a signal
 * handler's siglongjmp) and fault elsewhere later. Its new fault must not be
 * taken for a duplicate of the abandoned one: it queues anew, the manager
 * sees it at fault(), and the thread is resumed.
 */
#include "harness.h"

#include <setjmp.h>
#include <signal.h>
#include <unistd.h>

#define A 0x1000
#define B 0x5000

static sigjmp_buf jump;

static void on_usr1(int sig)
{
    (void)sig;
    siglongjmp(jump, 1);
}

static int manager(struct t_child *c)
{
    struct fl_env *env = t_env();
    struct t_mm mm;
    t_mm_create(&mm, env, 64 * 1024, T_MM_HANDLER);
    fl_cap ram;
    char *p = t_ram(env, 4096, &ram);
    p[7] = 77;
    t_child_say(c, "%s", t_mm_export(&mm));
    for (;;) {
        struct fl_fault f = t_mm_next_fault(&mm);
        if (f.addr == A)
            t_child_say(c, "A");  /* not served: the client gives up on it */
        else if (f.addr == B + 7) /* the byte it read */
            t_mm_attach(&mm, ram, 0, 0, B);
    }
    return 0;
}

static void abandoned_fault_queues_anew(void)
{
    struct t_core *core = t_core_start(NULL);
    struct t_child mgr;
    t_child_spawn(&mgr, "manager", manager);
    char token[64], line[8];
    t_child_line(&mgr, token, sizeof(token));
    struct fl_env *env = t_env();
    volatile char *p = t_import_attach(env, token);

    /* A helper process interrupts us once the manager has seen fault A. */
    pid_t self = getpid();
    pid_t kicker = fork();
    if (kicker == 0) {
        if (t_pipe_recv(&mgr.from, line, sizeof(line)) == 0) kill(self, SIGUSR1);
        _exit(0);
    }
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    if (sigsetjmp(jump, 1) == 0) {
        (void)p[A]; /* never served */
        T_ASSERT(!"fault A was resolved");
    }
    T_EQ(p[B + 7], 77); /* abandoned A; B must be reflected and served */
    t_wait(kicker);
    kill(mgr.pid, SIGKILL);
    t_wait(mgr.pid);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(abandoned_fault_queues_anew)
