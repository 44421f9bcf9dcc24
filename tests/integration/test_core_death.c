/*
 * Failure of core: a client with memory attached (its pending faults would
 * never be served) terminates with a message saying so, instead of ever
 * reading a silently zero-filled page.
 */
#include "harness.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static struct t_pipe ready;

static int client(void *arg)
{
    (void)arg;
    struct fl_env *env = t_env();
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4096, &ds), 0);
    char *p = fl_attach(env, ds, NULL);
    T_ASSERT(p);
    p[0] = 1;
    t_pipe_send(&ready, "ready");
    for (;;) pause(); /* the agent terminates the process when core is gone */
    return 0;
}

int main(void)
{
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&ready);
    pid_t pid = t_spawn(client, NULL);
    char line[32];
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);
    kill(core->pid, SIGKILL);
    waitpid(core->pid, NULL, 0);
    core->pid = 0;
    T_EQ(t_wait(pid), 70); /* the agent's "lost the connection to faultline-core" exit */
    return T_PASS;
}
