/*
 * Reproducer for the second bug the soak found: freeing a RAM dataspace that
 * is still attached (Genode: free revokes it everywhere, its regions stay
 * reserved) lets a client that reads the memory at that moment see zeros.
 * Core submits the punch of the memfd together with the revocations instead
 * of after their acknowledgements; a read between the punch and the agent's
 * revocation fills the hole with a fresh zero page. A client spins reading a
 * page of a managed dataspace whose every byte is non-zero while the manager
 * frees the RAM behind it and backs the reflected fault with new RAM.
 *
 * Exit 0: no zero was read in 10 s or 3000 rounds; 1: a zero was read.
 */
#include "../integration/harness.h"

#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

static struct t_pipe tokens, ready;

static int reader(void *arg)
{
    (void)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    struct fl_env *env = t_env();
    volatile uint64_t *p = t_import_attach(env, token);
    T_ASSERT(p[0] != 0);
    t_pipe_send(&ready, "reading");
    for (uint64_t n = 0;; n++) {
        uint64_t v = p[n % 512];
        if (v == 0) {
            printf("repro: the client read a zero word at offset %zu of a page its manager "
                   "filled with non-zero bytes\n",
                   (size_t)(n % 512) * 8);
            return 1;
        }
    }
}

static fl_cap back(struct fl_env *mgr, fl_cap rm)
{
    fl_cap ds;
    T_ERR(fl_ram_alloc(mgr, 4096, &ds), 0);
    uint64_t *local = fl_attach(mgr, ds, NULL);
    T_ASSERT(local);
    for (int i = 0; i < 512; i++) local[i] = 0x0101010101010101ull * (uint64_t)(i % 255 + 1);
    T_ERR(fl_detach(mgr, local), 0);
    struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, rm, ds, &a, NULL), 0);
    return ds;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&ready);
    struct fl_env *mgr = t_env();
    fl_cap rm, sigh, mds;
    T_ERR(fl_rm_create(mgr, 4096, &rm), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    fl_cap ds = back(mgr, rm);

    char token[FL_TOKEN_LEN + 1], line[16];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    pid_t c = t_spawn(reader, NULL);
    t_pipe_send(&tokens, token);
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);

    long end = t_now_ms() + 10000;
    int rounds = 0, rc = -1;
    while (rounds < 3000 && t_now_ms() < end) {
        T_ERR(fl_ram_free(mgr, ds), 0); /* the region stays, reserved */
        struct fl_fault f = {0};
        while (f.type == FL_FAULT_NONE) {
            int st;
            if (waitpid(c, &st, WNOHANG) == c) {
                rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                break;
            }
            if (fl_signal_wait(mgr, sigh, 100) > 0) T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
        }
        if (rc >= 0) break;
        T_ERR(fl_region_map_detach(mgr, rm, 0), 0);
        ds = back(mgr, rm);
        rounds++;
    }
    if (rc < 0) {
        kill(c, SIGKILL);
        t_wait(c);
        rc = 0;
        printf("repro: %d rounds of free while a client reads, no zero read\n", rounds);
    } else {
        printf("repro: after %d rounds\n", rounds);
    }
    fl_env_close(mgr);
    t_core_stop(core);
    return rc == 0 ? 0 : 1;
}
