/*
 * Deterministic reproducers for the revocation bugs the soak found
 * (doc/soak.md). A client attaches a managed dataspace T (its page 0 backed
 * by RAM R, directly or through a nested map S) and reads it, so R is mapped
 * in the client. The client is then stopped (SIGSTOP), so that its agent
 * cannot acknowledge any revocation, and the manager does one thing:
 *
 *   free           fl_ram_free(R) with R attached in T. The free waits for the
 *                  acknowledgement as documented, but core punches R's memfd
 *                  at once: the client's still-present mapping reads zeros.
 *   destroy        T holds S (nested) holds R; fl_rm_destroy(S) returns at
 *                  once, without waiting for the client's revocation; R,
 *                  freed afterwards, reads as zeros in the client.
 *   destroy-direct the same with T itself destroyed (R attached in T directly).
 *   inner-detach   T holds S holds R; a detach of S from T is pending (its
 *                  revocation unacknowledged); detaching R from S returns at
 *                  once, and R, freed afterwards, reads as zeros in the client.
 *
 * The manager reads the stopped client's mapping of R (process_vm_readv): it
 * must still be the manager's bytes or gone, never zeros. Then the client is
 * continued and spins on the page for 300 ms: it must never read a zero.
 *
 * usage: soak-repro-stopped-client free|destroy|destroy-direct|inner-detach
 * Exit 0: the case behaves; 1: it shows the bug (the lines say how).
 */
#include "../integration/harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define FILL 0xababababababababull

static struct t_pipe tokens, ready;
static struct fl_env *mgr;
static fl_cap top, sub, ram;
static _Atomic int pending_done;

static int reader(void *arg)
{
    (void)arg;
    char token[64], line[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    struct fl_env *env = t_env();
    volatile uint64_t *p = t_import_attach(env, token);
    T_ASSERT(p[0] == FILL);
    snprintf(line, sizeof(line), "%p", (void *)p);
    t_pipe_send(&ready, line);
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
    pending_done = 1;
    return NULL;
}

static void *free_ram(void *arg)
{
    (void)arg;
    T_ERR(fl_ram_free(mgr, ram), 0);
    pending_done = 1;
    return NULL;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    bool nested = strcmp(mode, "free") && strcmp(mode, "destroy-direct");
    if (strcmp(mode, "free") && strcmp(mode, "destroy") && strcmp(mode, "inner-detach") &&
        strcmp(mode, "destroy-direct")) {
        fprintf(stderr, "usage: %s free|destroy|destroy-direct|inner-detach\n", argv[0]);
        return 2;
    }
    /* The stopped client must not be terminated for the missed deadline. */
    struct t_core *core = t_core_start("--revoke-deadline", "60000", NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&ready);
    mgr = t_env();
    fl_cap sds, tds;
    T_ERR(fl_rm_create(mgr, 4096, &top), 0);
    T_ERR(fl_region_map_dataspace(mgr, top, &tds), 0);
    T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);
    uint64_t *local = fl_attach(mgr, ram, NULL);
    T_ASSERT(local);
    for (int i = 0; i < 512; i++) local[i] = FILL;
    T_ERR(fl_detach(mgr, local), 0);
    struct fl_attr at0 = {.use_at = true, .at = 0, .writeable = true};
    if (nested) {
        T_ERR(fl_rm_create(mgr, 4096, &sub), 0);
        T_ERR(fl_region_map_dataspace(mgr, sub, &sds), 0);
        T_ERR(fl_region_map_attach(mgr, sub, ram, &at0, NULL), 0);
        T_ERR(fl_region_map_attach(mgr, top, sds, &at0, NULL), 0);
    } else {
        T_ERR(fl_region_map_attach(mgr, top, ram, &at0, NULL), 0);
    }
    char token[FL_TOKEN_LEN + 1], line[64];
    T_ERR(fl_cap_export(mgr, tds, token), 0);
    pid_t c = t_spawn(reader, NULL);
    t_pipe_send(&tokens, token);
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);
    uintptr_t addr = (uintptr_t)strtoull(line, NULL, 16);
    kill(c, SIGSTOP);
    T_ASSERT(waitpid(c, NULL, WUNTRACED) == c);

    pthread_t th;
    bool threaded = false;
    long t0 = t_now_ms();
    if (!strcmp(mode, "free")) {
        pthread_create(&th, NULL, free_ram, NULL);
        threaded = true;
        t_sleep_ms(300);
        printf("free of R: %s after 300 ms (the client cannot acknowledge)\n",
               pending_done ? "returned" : "still waiting, as documented");
    } else if (!strcmp(mode, "destroy") || !strcmp(mode, "destroy-direct")) {
        T_ERR(fl_rm_destroy(mgr, nested ? sub : top), 0);
        printf("destroy of the %s map returned after %ld ms although the client could not "
               "acknowledge its revocation\n",
               nested ? "nested" : "attached", t_now_ms() - t0);
        T_ERR(fl_ram_free(mgr, ram), 0);
    } else {
        pthread_create(&th, NULL, detach_outer, NULL);
        threaded = true;
        t_sleep_ms(300);
        T_ASSERT(!pending_done); /* the outer detach waits for the client, as it should */
        t0 = t_now_ms();
        T_ERR(fl_region_map_detach(mgr, sub, 0), 0);
        printf("detach of R from S returned after %ld ms while the detach of S from T still "
               "waits for the client's revocation\n",
               t_now_ms() - t0);
        T_ERR(fl_ram_free(mgr, ram), 0);
    }

    uint64_t v = FILL;
    struct iovec li = {&v, 8}, ri = {(void *)addr, 8};
    ssize_t n = process_vm_readv(c, &li, 1, &ri, 1, 0);
    bool zero = n == 8 && v == 0;
    printf("the stopped client's mapping of R now reads %s\n",
           n != 8      ? "nothing (unmapped)"
           : v == FILL ? "the manager's bytes (not yet revoked; not freed either)"
           : v == 0    ? "ZEROS: R was punched while the client still maps it"
                       : "something else");
    kill(c, SIGCONT);
    if (threaded) pthread_join(th, NULL);
    t_sleep_ms(300);
    int st, rc = 0;
    if (waitpid(c, &st, WNOHANG) == c)
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    else {
        kill(c, SIGKILL);
        t_wait(c);
    }
    fl_env_close(mgr);
    t_core_stop(core);
    printf("%s: %s\n", mode, zero || rc ? "BUG reproduced" : "behaves");
    return zero || rc ? 1 : 0;
}
