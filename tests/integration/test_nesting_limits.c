/*
 * Recursion limit and cycles: an address space plus four nested managed maps
 * resolve; a fifth level is "unexpectedly deep" and the thread stays halted;
 * a map attached into itself and two maps attached into each other neither
 * hang nor crash core (Genode's core deadlocks on them; faultline treats them
 * like too-deep nesting). Core keeps serving other sessions throughout.
 */
#include "harness.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define SZ (64 * 1024)

static struct fl_env *mgr;
static fl_cap rms; /* mgr's RM session */

/* Chain of `levels` managed maps, each attached at 0 of the one above; RAM
 * filled with `mark` attached at the bottom. Returns the top map's dataspace. */
static fl_cap chain(int levels, int mark)
{
    fl_cap top_ds = 0, parent = 0;
    for (int i = 0; i < levels; i++) {
        fl_cap rm, ds;
        T_ERR(fl_rm_create(mgr, rms, SZ, &rm), 0);
        T_ERR(fl_region_map_dataspace(mgr, rm, &ds), 0);
        if (parent)
            t_attach_at(mgr, parent, ds, 0, 0, 0, T_W);
        else
            top_ds = ds;
        parent = rm;
    }
    fl_cap ram;
    memset(t_ram(mgr, SZ, &ram), mark, SZ);
    t_attach_at(mgr, parent, ram, 0, 0, 0, T_W);
    return top_ds;
}

static int toucher(void *arg)
{
    const char *token = arg; /* exported before the fork */
    struct fl_env *env = t_env();
    volatile char *p = t_import_attach(env, token);
    return p[100]; /* halts here when the structure is too deep or cyclic */
}

/* Start a client that touches ds; returns its pid. */
static pid_t touch(fl_cap ds)
{
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, ds, token), 0);
    return t_spawn(toucher, token);
}

/* Core serves another session all the same. */
static void still_serving(void)
{
    struct fl_env *other = t_env();
    t_session_works(other, 1, 9);
    fl_env_close(other);
}

#define TOO_DEEP "giving up on unexpectedly deep memory-mapping"

/* The thread of pid is still halted; end it. */
static void halted(pid_t pid)
{
    T_EQ(waitpid(pid, NULL, WNOHANG), 0);
    kill(pid, SIGKILL);
    T_EQ(t_wait(pid), 128 + SIGKILL);
}

/* A core, and the manager's session with its RM session. */
static struct t_core *core;
static void start(void)
{
    core = t_core_start(NULL);
    mgr = t_env();
    T_ERR(fl_rm_session_open(mgr, &rms), 0);
}

static void stop(void)
{
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

/* Four managed levels below the address space: resolved. */
static void four_levels_resolve(void)
{
    start();
    T_EQ(t_wait(touch(chain(4, 44))), 44);
    T_ASSERT(!t_core_log_contains(core, TOO_DEEP));
    stop();
}

/* Five: too deep. */
static void five_levels_halt(void)
{
    start();
    pid_t deep = touch(chain(5, 55));
    T_WAIT_UNTIL(t_core_log_contains(core, TOO_DEEP));
    still_serving();
    halted(deep);
    stop();
}

static void cycles_halt(void)
{
    start();

    /* A map attached into itself. */
    fl_cap self, self_ds;
    T_ERR(fl_rm_create(mgr, rms, SZ, &self), 0);
    T_ERR(fl_region_map_dataspace(mgr, self, &self_ds), 0);
    struct fl_attr half = {.size = SZ / 2, .use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, self, self_ds, &half, NULL), 0);
    pid_t selfp = touch(self_ds);

    /* A in B in A. */
    fl_cap a, b, a_ds, b_ds;
    T_ERR(fl_rm_create(mgr, rms, SZ, &a), 0);
    T_ERR(fl_rm_create(mgr, rms, SZ, &b), 0);
    T_ERR(fl_region_map_dataspace(mgr, a, &a_ds), 0);
    T_ERR(fl_region_map_dataspace(mgr, b, &b_ds), 0);
    T_ERR(fl_region_map_attach(mgr, a, b_ds, &half, NULL), 0);
    T_ERR(fl_region_map_attach(mgr, b, a_ds, &half, NULL), 0);
    pid_t cyc = touch(a_ds);

    /* Both threads halted for good; core logged each and serves on. */
    T_WAIT_UNTIL(t_core_log_count(core, TOO_DEEP) >= 2);
    still_serving();
    /* Attaching RAM into a cyclic structure pushes mappings up through the
     * cycle: bounded by the same limit, no hang. */
    fl_cap ram;
    T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);
    struct fl_attr top = {.use_at = true, .at = SZ - 4096, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, a, ram, &top, NULL), 0);
    T_ERR(fl_region_map_attach(mgr, self, ram, &top, NULL), 0);
    still_serving();

    halted(selfp);
    halted(cyc);
    stop();
}

T_CASES(four_levels_resolve, five_levels_halt, cycles_halt)
