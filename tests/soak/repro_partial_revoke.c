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
 * Passes when the read after detach was refused (bug fixed); fails when it
 * succeeded.
 */
#include "../integration/harness.h"

#include <setjmp.h>
#include <signal.h>
#include <unistd.h>

static sigjmp_buf jb;

static void on_sigbus(int sig)
{
    siglongjmp(jb, sig);
}

static int client(void *token)
{
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
        return 1;
    }
    printf("repro: the read after detach got signal %d, as it should\n", sig);
    return 0;
}

static void read_after_detach_refused(void)
{
    struct t_core *core = t_core_start("--unresolvable", "sigbus", NULL);
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, 2 * 4096, T_MM_HANDLER);
    fl_cap ram;
    char *local = t_ram(mgr, 4096, &ram);
    local[0] = 'A';
    t_mm_attach(&mm, ram, 0, 0, 0);

    int rc = t_wait(t_spawn(client, (void *)t_mm_export(&mm)));
    printf("repro: core logged the failed revocation: %s\n",
           t_core_log_contains(core, "could not carry out") ? "yes" : "no");
    fl_env_close(mgr);
    t_core_stop(core);
    if (rc != 0) T_FAILF("after detach returned, the client still read the detached page");
}

T_CASES(read_after_detach_refused)
