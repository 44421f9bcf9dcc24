/*
 * Revocation deadline: a component whose agent does not acknowledge a
 * revocation (here a raw peer that never reads its socket) is terminated via
 * its pidfd once core's --revoke-deadline passes, with a log line naming it
 * and the deadline; the manager's detach returns then, and not before: by the
 * time it returns nobody can touch the memory any more.
 */
#include "harness.h"

#include <signal.h>

static void stuck_peer_terminated(void)
{
    struct t_core *core = t_core_start("--revoke-deadline", "300", NULL);
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, 64 * 1024, 0);
    pid_t peer = t_stuck_peer(t_mm_export(&mm), 0);

    fl_cap ram;
    T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);
    t_mm_attach(&mm, ram, 0, 0, 0);                /* mapped into the peer */
    T_ERR(fl_region_map_detach(mgr, mm.rm, 0), 0); /* waits for the deadline */
    /* detach returned: the peer is already gone (killed before the reply). */
    T_ASSERT(t_core_log_contains(core, "missed the revocation deadline of 300 ms"));
    T_EQ(t_wait(peer), 128 + SIGKILL);

    /* Core serves on. */
    t_mm_attach(&mm, ram, 0, 0, 0);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(stuck_peer_terminated)
