/*
 * Crashes cost only the crashed: a manager killed with faults pending, a
 * client killed with faults pending, and a client killed while core waits for
 * its revocation acknowledgement. Core survives, releases what the dead
 * owned (its descriptors come back to their baseline), and everyone else
 * carries on: a detach waiting for the dead client returns at once.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static struct t_pipe tokens, ready;

static int touch(void *arg)
{
    (void)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    struct fl_env *env = t_env();
    volatile char *p = t_import_attach(env, token);
    t_pipe_send(&ready, "touching");
    return p[0x2000]; /* waits for a manager */
}

static int manager(void *arg)
{
    (void)arg;
    struct fl_env *env = t_env();
    fl_cap rm, sigh, mds;
    T_ERR(fl_rm_create(env, 64 * 1024, &rm), 0);
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(env, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(env, rm, &mds), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, mds, token), 0);
    t_pipe_send(&tokens, token);
    T_ASSERT(fl_signal_wait(env, sigh, -1) > 0); /* the fault arrived... */
    t_pipe_send(&ready, "fault pending");
    for (;;) pause(); /* ...and is never answered */
    return 0;
}

static int stuck_peer(void *arg)
{
    (void)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    t_raw_attached_peer(token);
    t_pipe_send(&ready, "attached");
    for (;;) pause();
    return 0;
}

struct detach_call {
    struct fl_env *env;
    fl_cap rm;
    int result;
};

static void *detach_thread(void *arg)
{
    struct detach_call *d = arg;
    __atomic_store_n(&d->result, fl_region_map_detach(d->env, d->rm, 0), __ATOMIC_SEQ_CST);
    return NULL;
}

int main(void)
{
    struct t_core *core = t_core_start("--revoke-deadline", "600000", NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&ready);
    char line[32];
    /* Before any session: a closed session's descriptors are closed on core's
     * worker, so a count taken right after one could still include them. */
    int baseline = t_core_fd_count(core);

    /* 1. A manager killed with a fault pending. */
    pid_t m = t_spawn(manager, NULL);
    pid_t c = t_spawn(touch, NULL);
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);
    kill(m, SIGKILL);
    t_wait(m);
    kill(c, SIGKILL); /* its map is gone: halted for good */
    t_wait(c);
    T_WAIT_UNTIL(t_core_fd_count(core) == baseline);

    /* 2. A client killed with a fault pending: its faulter leaves the queue. */
    struct fl_env *mgr = t_env();
    fl_cap rm, sigh, mds;
    T_ERR(fl_rm_create(mgr, 64 * 1024, &rm), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    c = t_spawn(touch, NULL);
    t_pipe_send(&tokens, token);
    T_ASSERT(fl_signal_wait(mgr, sigh, -1) > 0);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.type, FL_FAULT_READ);
    kill(c, SIGKILL);
    t_wait(c);
    do T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    while (f.type != FL_FAULT_NONE);

    /* 3. A client killed while core waits for its revocation ack. */
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    pid_t peer = t_spawn(stuck_peer, NULL);
    t_pipe_send(&tokens, token);
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0); /* the earlier client's "touching" */
    fl_cap ram;
    T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);
    struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, rm, ram, &a, NULL), 0);
    struct detach_call d = {mgr, rm, 1};
    pthread_t t;
    T_ASSERT(pthread_create(&t, NULL, detach_thread, &d) == 0);
    T_WAIT_UNTIL(t_core_log_contains(core, "revoke [0"));
    t_sleep_ms(50); /* give a wrong, early reply the chance to show */
    T_EQ(__atomic_load_n(&d.result, __ATOMIC_SEQ_CST), 1); /* still waiting for the peer */
    kill(peer, SIGKILL);                                   /* long before the 600 s deadline */
    t_wait(peer);
    pthread_join(t, NULL);
    T_EQ(d.result, 0);

    fl_env_close(mgr);
    T_WAIT_UNTIL(t_core_fd_count(core) == baseline);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
