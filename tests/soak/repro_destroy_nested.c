/*
 * Reproducer for the third bug the soak found: destroying a managed region
 * map S that is nested in another map T (attached there as a dataspace) does
 * not take S's memory away from a client that has T attached: after
 * fl_rm_destroy(S) returned, the client still reads the RAM S had attached.
 * Genode: the regions S was attached as become reserved and flushed in the
 * parents, before destroy returns. Here the manager, once destroy returned,
 * writes "stale" into that RAM through its own mapping; a client spinning on
 * the page must never see it (its next access faults and is reflected to T).
 *
 * Exit 0: no stale read in 10 s or 2000 rounds; 1: the client read "stale".
 */
#include "../integration/harness.h"

#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define GOOD  0x600d600d600d600dull
#define STALE 0x57a1e57a1e57a1e5ull

static struct t_pipe tokens, ready;

static int reader(void *arg)
{
    (void)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    struct fl_env *env = t_env();
    volatile uint64_t *p = t_import_attach(env, token);
    T_ASSERT(p[0] == GOOD);
    t_pipe_send(&ready, "reading");
    for (uint64_t n = 0;; n++) {
        uint64_t v = p[n % 512];
        if (v == STALE) {
            printf("repro: the client read memory of a destroyed nested map after "
                   "fl_rm_destroy returned\n");
            return 1;
        }
    }
}

static void fill(struct fl_env *mgr, fl_cap ds, uint64_t v)
{
    uint64_t *local = fl_attach(mgr, ds, NULL);
    T_ASSERT(local);
    for (int i = 0; i < 512; i++) local[i] = v;
    T_ERR(fl_detach(mgr, local), 0);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&ready);
    struct fl_env *mgr = t_env();
    fl_cap top, sigh, tds;
    T_ERR(fl_rm_create(mgr, 4096, &top), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, top, sigh), 0);
    T_ERR(fl_region_map_dataspace(mgr, top, &tds), 0);
    struct fl_attr at0 = {.use_at = true, .at = 0, .writeable = true};

    /* One round: a fresh sub map S with RAM R at 0, nested at 0 of T. */
    fl_cap sub, sds, ram;
#define NEST()                                                                                     \
    do {                                                                                           \
        T_ERR(fl_rm_create(mgr, 4096, &sub), 0);                                                   \
        T_ERR(fl_region_map_dataspace(mgr, sub, &sds), 0);                                         \
        T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);                                                   \
        fill(mgr, ram, GOOD);                                                                      \
        T_ERR(fl_region_map_attach(mgr, sub, ram, &at0, NULL), 0);                                 \
        T_ERR(fl_region_map_attach(mgr, top, sds, &at0, NULL), 0);                                 \
    } while (0)
    NEST();

    char token[FL_TOKEN_LEN + 1], line[16];
    T_ERR(fl_cap_export(mgr, tds, token), 0);
    pid_t c = t_spawn(reader, NULL);
    t_pipe_send(&tokens, token);
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);

    long end = t_now_ms() + 10000;
    int rounds = 0, rc = -1;
    while (rounds < 2000 && t_now_ms() < end) {
        T_ERR(fl_rm_destroy(mgr, sub), 0);
        fill(mgr, ram, STALE); /* R itself lives on, only S is gone */
        struct fl_fault f = {0};
        while (f.type == FL_FAULT_NONE) {
            int st;
            if (waitpid(c, &st, WNOHANG) == c) {
                rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                break;
            }
            if (fl_signal_wait(mgr, sigh, 100) > 0) T_ERR(fl_region_map_fault(mgr, top, &f), 0);
        }
        if (rc >= 0) break;
        T_ERR(fl_region_map_detach(mgr, top, 0), 0); /* the reserved region */
        T_ERR(fl_ram_free(mgr, ram), 0);
        NEST();
        rounds++;
    }
    if (rc < 0) {
        kill(c, SIGKILL);
        t_wait(c);
        rc = 0;
        printf("repro: %d rounds of destroying a nested map while a client reads, no stale "
               "read\n",
               rounds);
    } else {
        printf("repro: after %d rounds\n", rounds);
    }
    fl_env_close(mgr);
    t_core_stop(core);
    return rc == 0 ? 0 : 1;
}
