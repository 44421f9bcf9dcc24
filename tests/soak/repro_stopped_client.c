/*
 * Deterministic regression checks for the revocation bugs the soak found
 * (doc/soak.md, bugs 2, 3, 4 and 8; all fixed). A client attaches a managed
 * dataspace T (its page 0 backed by RAM R, directly or through a nested map
 * S) and reads it, so R is mapped in the client. The client is then stopped
 * (SIGSTOP), so that its agent cannot acknowledge any revocation, and the
 * manager does one thing in a thread of its own:
 *
 *   free           fl_ram_free(R) with R attached in T (bug 2: the free
 *                  waited, but core punched R's memfd at once).
 *   destroy        T holds S (nested) holds R; fl_rm_destroy(S) (bug 3: it
 *                  returned at once; R, freed afterwards, read as zeros).
 *   destroy-direct the same with T itself destroyed (R attached in T directly).
 *   inner-detach   T holds S holds R; while a detach of S from T waits for the
 *                  client, R is detached from S (bug 4: that detach returned
 *                  at once; R, freed afterwards, read as zeros).
 *   session-end    R attached in T directly; the manager's session ends (as
 *                  when a manager is killed). Nobody waits for anything, but
 *                  R must not be punched before the client's agent revoked
 *                  it (bug 8: core punched at once; fixed in 24591e6).
 *
 * Correct behaviour: the operation is still waiting 300 ms later (the client
 * cannot acknowledge; the revocation deadline is 60 s), and the stopped
 * client's mapping of R (read with process_vm_readv) is still the manager's
 * bytes, never zeros. Then the client is continued, so that its agent
 * acknowledges: the operation returns, R is freed (where the mode has not
 * freed it already), and the client, spinning on the page for another
 * 300 ms, must never read a zero (it faults instead, and stays halted there).
 *
 * usage: soak-repro-stopped-client [-l] [[-f] free|destroy|destroy-direct|inner-detach|session-end]
 * Each mode is a case: it passes when it behaves, and fails when it shows a
 * bug (the lines say which).
 */
#include "../integration/harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define FILL 0xababababababababull

static struct fl_env *mgr;
static fl_cap top_rms, top, sub_rms, sub, ram;
static _Atomic int pending_done, outer_done;

static int reader(struct t_child *c)
{
    char token[64];
    t_child_command(c, token, sizeof(token));
    struct fl_env *env = t_env();
    volatile uint64_t *p = t_import_attach(env, token);
    T_ASSERT(p[0] == FILL);
    t_child_say(c, "%p", (void *)p);
    for (;;)
        if (p[0] == 0) {
            printf("client: read a zero the manager never wrote\n");
            return 1;
        }
}

static void *detach_outer(void *arg)
{
    (void)arg;
    T_ERR(fl_region_map_detach(mgr, top, 0), 0);
    outer_done = 1;
    return NULL;
}

static void *operate(void *arg)
{
    const char *mode = arg;
    if (!strcmp(mode, "free"))
        T_ERR(fl_ram_free(mgr, ram), 0);
    else if (!strcmp(mode, "destroy"))
        T_ERR(fl_rm_destroy(mgr, sub_rms, sub), 0);
    else if (!strcmp(mode, "destroy-direct"))
        T_ERR(fl_rm_destroy(mgr, top_rms, top), 0);
    else if (!strcmp(mode, "inner-detach"))
        T_ERR(fl_region_map_detach(mgr, sub, 0), 0);
    else
        return NULL; /* session-end: nothing waits */
    pending_done = 1;
    return NULL;
}

/* What the stopped client's mapping of R reads; true if zeros. */
static bool read_stopped(pid_t c, uintptr_t addr, const char *when)
{
    uint64_t v = FILL;
    struct iovec li = {&v, 8}, ri = {(void *)addr, 8};
    ssize_t n = process_vm_readv(c, &li, 1, &ri, 1, 0);
    printf("%s, the stopped client's mapping of R reads %s\n", when,
           n != 8      ? "nothing (unmapped)"
           : v == FILL ? "the manager's bytes"
           : v == 0    ? "ZEROS: R was punched while the client still maps it"
                       : "something else");
    return n == 8 && v == 0;
}

static void run(const char *mode)
{
    bool session_end = !strcmp(mode, "session-end");
    bool nested = strcmp(mode, "free") && strcmp(mode, "destroy-direct") && !session_end;
    /* The stopped client must not be terminated for the missed deadline. */
    struct t_core *core = t_core_start("--revoke-deadline", "60000", NULL);
    mgr = t_env();
    struct t_mm t, s;
    t_mm_create(&t, mgr, 4096, 0);
    top = t.rm;
    top_rms = t.rms;
    uint64_t *local = t_ram(mgr, 4096, &ram);
    for (int i = 0; i < 512; i++) local[i] = FILL;
    T_ERR(fl_detach(mgr, local), 0);
    if (nested) {
        t_mm_create(&s, mgr, 4096, 0);
        sub = s.rm;
        sub_rms = s.rms;
        t_mm_attach(&s, ram, 0, 0, 0);
        t_mm_attach(&t, s.ds, 0, 0, 0);
    } else {
        t_mm_attach(&t, ram, 0, 0, 0);
    }
    struct t_child reader_child;
    t_child_spawn(&reader_child, "reader", reader);
    pid_t c = reader_child.pid;
    t_child_send(&reader_child, "%s", t_mm_export(&t));
    char line[64];
    t_child_line(&reader_child, line, sizeof(line));
    uintptr_t addr = (uintptr_t)strtoull(line, NULL, 16);
    kill(c, SIGSTOP);
    T_ASSERT(waitpid(c, NULL, WUNTRACED) == c);

    if (session_end) {
        fl_env_close(mgr); /* core tears the session down: R dies with it */
        t_sleep_ms(300);
        bool zero = read_stopped(c, addr, "300 ms after the manager's session ended");
        kill(c, SIGCONT);
        t_sleep_ms(300);
        int rc = t_reap_or_kill(c);
        t_core_stop(core);
        if (zero || rc > 0) T_FAILF("%s: BUG reproduced (the lines above say how)", mode);
        return;
    }

    bool bug = false;
    pthread_t outer, th;
    bool inner = !strcmp(mode, "inner-detach");
    if (inner) {
        pthread_create(&outer, NULL, detach_outer, NULL);
        t_sleep_ms(300);
        if (outer_done) {
            printf("BUG: the detach of S from T returned although the client could not "
                   "acknowledge\n");
            bug = true;
        }
    }
    pthread_create(&th, NULL, operate, (void *)mode);
    t_sleep_ms(300);
    if (pending_done) {
        printf("BUG: %s returned although the stopped client could not acknowledge its "
               "revocation\n",
               mode);
        bug = true;
    } else {
        printf("%s: still waiting after 300 ms for the stopped client, as it should\n", mode);
    }
    bool freed = !strcmp(mode, "free");
    if (pending_done && !freed) {
        T_ERR(fl_ram_free(mgr, ram), 0);
        freed = true;
    }
    bug |= read_stopped(c, addr, "while it waits");

    kill(c, SIGCONT);
    long t0 = t_now_ms();
    pthread_join(th, NULL);
    if (inner) pthread_join(outer, NULL);
    printf("%s returned %ld ms after the client was continued\n", mode, t_now_ms() - t0);
    if (!freed) T_ERR(fl_ram_free(mgr, ram), 0);
    t_sleep_ms(300);
    int rc = t_reap_or_kill(c);
    if (rc > 0) printf("BUG: the client ended with %d\n", rc);
    fl_env_close(mgr);
    t_core_stop(core);
    if (bug || rc > 0) T_FAILF("%s: BUG reproduced (the lines above say which)", mode);
}

static void case_free(void)
{
    run("free");
}

static void case_destroy(void)
{
    run("destroy");
}

static void case_destroy_direct(void)
{
    run("destroy-direct");
}

static void case_inner_detach(void)
{
    run("inner-detach");
}

static void case_session_end(void)
{
    run("session-end");
}

static const struct t_case cases[] = {
    {"free", case_free},
    {"destroy", case_destroy},
    {"destroy-direct", case_destroy_direct},
    {"inner-detach", case_inner_detach},
    {"session-end", case_session_end},
};
T_MAIN(cases)
