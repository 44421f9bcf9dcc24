/*
 * Failure of core: a client with memory attached (its pending faults would
 * never be served) terminates with a message saying so, instead of ever
 * reading a silently zero-filled page.
 */
#include "harness.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int client(struct t_child *c)
{
    fl_cap ds;
    char *p = t_ram(t_env(), 4096, &ds);
    p[0] = 1;
    t_child_say(c, "ready");
    for (;;) pause(); /* the agent terminates the process when core is gone */
    return 0;
}

static void client_ends_with_core(void)
{
    struct t_core *core = t_core_start(NULL);
    struct t_child c;
    t_child_spawn(&c, "client", client);
    t_child_expect(&c, "ready");
    kill(core->pid, SIGKILL);
    waitpid(core->pid, NULL, 0);
    core->pid = 0;
    T_EQ(t_wait(c.pid), 70); /* the agent's "lost the connection to faultline-core" exit */
}

T_CASES(client_ends_with_core)
