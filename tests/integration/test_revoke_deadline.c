/*
 * Revocation deadline: a component whose agent does not acknowledge a
 * revocation (here a raw peer that never reads its socket) is terminated via
 * its pidfd once core's --revoke-deadline passes, with a log line naming it
 * and the deadline; the manager's detach returns then, and not before: by the
 * time it returns nobody can touch the memory any more.
 */
#include "harness.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static struct t_pipe tokens, ready;

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

int main(void)
{
    struct t_core *core = t_core_start("--revoke-deadline", "300", NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&ready);
    pid_t peer = t_spawn(stuck_peer, NULL);

    struct fl_env *mgr = t_env();
    fl_cap rm, mds, ram;
    T_ERR(fl_rm_create(mgr, 64 * 1024, &rm), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    t_pipe_send(&tokens, token);
    char line[16];
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);

    T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);
    struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, rm, ram, &a, NULL), 0); /* mapped into the peer */
    T_ERR(fl_region_map_detach(mgr, rm, 0), 0);             /* waits for the deadline */
    /* detach returned: the peer is already gone (killed before the reply). */
    T_ASSERT(t_core_log_contains(core, "missed the revocation deadline of 300 ms"));
    T_EQ(t_wait(peer), 128 + SIGKILL);

    /* Core serves on. */
    T_ERR(fl_region_map_attach(mgr, rm, ram, &a, NULL), 0);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
