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

/* Chain of `levels` managed maps, each attached at 0 of the one above; RAM
 * filled with `mark` attached at the bottom. Returns the top map's dataspace. */
static fl_cap chain(int levels, int mark)
{
    fl_cap top_ds = 0, parent = 0;
    for (int i = 0; i < levels; i++) {
        fl_cap rm, ds;
        T_ERR(fl_rm_create(mgr, SZ, &rm), 0);
        T_ERR(fl_region_map_dataspace(mgr, rm, &ds), 0);
        if (parent) {
            struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
            T_ERR(fl_region_map_attach(mgr, parent, ds, &a, NULL), 0);
        } else {
            top_ds = ds;
        }
        parent = rm;
    }
    fl_cap ram;
    T_ERR(fl_ram_alloc(mgr, SZ, &ram), 0);
    char *p = fl_attach(mgr, ram, NULL);
    T_ASSERT(p);
    memset(p, mark, SZ);
    struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, parent, ram, &a, NULL), 0);
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

static void still_serving(void)
{
    struct fl_env *other = t_env();
    fl_cap ds;
    T_ERR(fl_ram_alloc(other, 4096, &ds), 0);
    char *p = fl_attach(other, ds, NULL);
    T_ASSERT(p);
    p[1] = 9;
    T_EQ(p[1], 9);
    fl_env_close(other);
}

int main(void)
{
    struct t_core *core = t_core_start(NULL);
    mgr = t_env();

    /* Four managed levels below the address space: resolved. */
    T_EQ(t_wait(touch(chain(4, 44))), 44);

    /* Five: too deep. */
    pid_t deep = touch(chain(5, 55));
    T_WAIT_UNTIL(t_core_log_contains(core, "giving up on unexpectedly deep memory-mapping"));
    still_serving();

    /* A map attached into itself. */
    fl_cap self, self_ds;
    T_ERR(fl_rm_create(mgr, SZ, &self), 0);
    T_ERR(fl_region_map_dataspace(mgr, self, &self_ds), 0);
    struct fl_attr half = {.size = SZ / 2, .use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, self, self_ds, &half, NULL), 0);
    pid_t selfp = touch(self_ds);

    /* A in B in A. */
    fl_cap a, b, a_ds, b_ds;
    T_ERR(fl_rm_create(mgr, SZ, &a), 0);
    T_ERR(fl_rm_create(mgr, SZ, &b), 0);
    T_ERR(fl_region_map_dataspace(mgr, a, &a_ds), 0);
    T_ERR(fl_region_map_dataspace(mgr, b, &b_ds), 0);
    struct fl_attr at0 = {.size = SZ / 2, .use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, a, b_ds, &at0, NULL), 0);
    T_ERR(fl_region_map_attach(mgr, b, a_ds, &at0, NULL), 0);
    pid_t cyc = touch(a_ds);

    /* Three threads halted for good; core logged each and serves on. */
    T_WAIT_UNTIL(t_core_log_count(core, "giving up on unexpectedly deep") >= 3);
    still_serving();
    /* Attaching RAM into a cyclic structure pushes mappings up through the
     * cycle: bounded by the same limit, no hang. */
    fl_cap ram;
    T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);
    struct fl_attr top = {.use_at = true, .at = SZ - 4096, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, a, ram, &top, NULL), 0);
    T_ERR(fl_region_map_attach(mgr, self, ram, &top, NULL), 0);
    still_serving();

    int halted[3] = {deep, selfp, cyc};
    for (int i = 0; i < 3; i++) {
        T_EQ(waitpid(halted[i], NULL, WNOHANG), 0); /* still halted */
        kill(halted[i], SIGKILL);
        T_EQ(t_wait(halted[i]), 128 + SIGKILL);
    }
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
