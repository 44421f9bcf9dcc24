/*
 * Reproducer for the first bug the soak found: a revocation whose range
 * includes pages the component never touched fails in its agent with EINVAL
 * (core logs "agent could not carry out instruction N: Invalid argument"),
 * and the pages it did touch stay mapped. Here a client attaches a two-page
 * managed dataspace, touches only the first page, detaches, and reads the
 * first page again: that must fault (and, with --unresolvable=sigbus, end in
 * SIGBUS), but it reads the manager's old data. Once the manager frees that
 * RAM, the same read returns zeros nobody provided.
 *
 * Exit 0: the read after detach was refused (bug fixed); 1: it succeeded.
 */
#include "../integration/harness.h"

#include <setjmp.h>
#include <signal.h>
#include <unistd.h>

static struct t_pipe tokens, done;
static sigjmp_buf jb;

static void on_sigbus(int sig)
{
    siglongjmp(jb, sig);
}

static int client(void *arg)
{
    (void)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    struct fl_env *env = t_env();
    volatile char *p = t_import_attach(env, token);
    T_ASSERT(p[0] == 'A'); /* page 0 faults in; page 1 is never touched */
    T_ERR(fl_detach(env, (const void *)p), 0);
    signal(SIGBUS, on_sigbus);
    signal(SIGSEGV, on_sigbus);
    int sig = sigsetjmp(jb, 1);
    if (sig == 0) {
        char c = p[0];
        printf("repro: after detach returned, the client still reads %#x at the detached "
               "address\n",
               (unsigned char)c);
        t_pipe_send(&done, "stale");
        return 1;
    }
    printf("repro: the read after detach got signal %d, as it should\n", sig);
    t_pipe_send(&done, "refused");
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct t_core *core = t_core_start("--unresolvable", "sigbus", NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&done);
    struct fl_env *mgr = t_env();
    fl_cap rm, sigh, mds, ram;
    T_ERR(fl_rm_create(mgr, 2 * 4096, &rm), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);
    char *local = fl_attach(mgr, ram, NULL);
    T_ASSERT(local);
    local[0] = 'A';
    struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, rm, ram, &a, NULL), 0);

    char token[FL_TOKEN_LEN + 1], line[32];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    pid_t c = t_spawn(client, NULL);
    t_pipe_send(&tokens, token);
    T_EQ(t_pipe_recv(&done, line, sizeof(line)), 0);
    int rc = t_wait(c);
    printf("repro: core logged the failed revocation: %s\n",
           t_core_log_contains(core, "could not carry out") ? "yes" : "no");
    fl_env_close(mgr);
    t_core_stop(core);
    return rc == 0 ? 0 : 1;
}
