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

static struct t_pipe tokens, saw_a, to_client;
static sigjmp_buf jump;

static void on_usr1(int sig)
{
    (void)sig;
    siglongjmp(jump, 1);
}

static int manager(void *arg)
{
    (void)arg;
    struct fl_env *env = t_env();
    fl_cap rm, sigh, mds, ram;
    T_ERR(fl_rm_create(env, 64 * 1024, &rm), 0);
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(env, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(env, rm, &mds), 0);
    T_ERR(fl_ram_alloc(env, 4096, &ram), 0);
    char *p = fl_attach(env, ram, NULL);
    p[7] = 77;
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, mds, token), 0);
    t_pipe_send(&tokens, token);
    for (;;) {
        T_ASSERT(fl_signal_wait(env, sigh, -1) > 0);
        struct fl_fault f;
        T_ERR(fl_region_map_fault(env, rm, &f), 0);
        if (f.addr == A) {
            t_pipe_send(&saw_a, "A"); /* not served: the client gives up on it */
        } else if (f.addr == B) {
            struct fl_attr a = {.use_at = true, .at = B, .writeable = true};
            T_ERR(fl_region_map_attach(env, rm, ram, &a, NULL), 0);
        }
    }
    return 0;
}

int main(void)
{
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&saw_a);
    t_pipe_open(&to_client);
    pid_t mgr = t_spawn(manager, NULL);
    char token[64], line[8];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    struct fl_env *env = t_env();
    volatile char *p = t_import_attach(env, token);

    /* A helper process interrupts us once the manager has seen fault A. */
    pid_t self = getpid();
    pid_t kicker = fork();
    if (kicker == 0) {
        if (t_pipe_recv(&saw_a, line, sizeof(line)) == 0) kill(self, SIGUSR1);
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
    kill(mgr, SIGKILL);
    t_wait(mgr);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
