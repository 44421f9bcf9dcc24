/*
 * Destroying a managed region map revokes what it showed, also when the
 * client's window over it is partly backed and partly never was. The
 * revocation then spans a memfd mapping and untouched anonymous parts of the
 * window; registering MINOR over such a range is refused by the kernel as a
 * whole, and the agent used to give up on the registration (the page stayed
 * readable from the page cache after destroy returned: found by the soak).
 * With --unresolvable sigbus, the client's next read of the destroyed range
 * ends it with SIGBUS instead of returning the old bytes.
 */
#include "harness.h"

#include <signal.h>

static int client_main(struct t_child *c)
{
    struct fl_env *env = t_env();
    char line[256];
    t_child_command(c, line, sizeof(line));
    volatile char *p = t_import_attach(env, line);
    t_child_say(c, "read %s", (const char *)p);
    t_child_command(c, line, sizeof(line));
    t_child_say(c, "read again %s", (const char *)p); /* must not return */
    return 0;
}

int main(void)
{
    struct t_core *core = t_core_start("--unresolvable", "sigbus", NULL);
    struct fl_env *m = t_env();
    fl_cap rm, mds, ram;
    T_ERR(fl_rm_create(m, 1 << 20, &rm), 0);
    T_ERR(fl_region_map_dataspace(m, rm, &mds), 0);
    T_ERR(fl_ram_alloc(m, 4096, &ram), 0);
    char *local = fl_attach(m, ram, NULL);
    T_ASSERT(local);
    strcpy(local, "secret");
    struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(m, rm, ram, &a, NULL), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(m, mds, token), 0);

    struct t_child c;
    t_child_spawn(&c, "client", client_main);
    t_child_send(&c, "%s", token);
    t_child_expect(&c, "read secret");

    T_ERR(fl_rm_destroy(m, rm), 0);
    t_child_send(&c, "again");
    T_EQ(t_wait(c.pid), 128 + SIGBUS);
    T_ASSERT(!t_core_log_contains(core, "could not carry out"));
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
