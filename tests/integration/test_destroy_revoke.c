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

static void destroyed_map_sigbus(void)
{
    struct t_core *core = t_core_start("--unresolvable", "sigbus", NULL);
    struct fl_env *m = t_env();
    struct t_mm mm;
    t_mm_create(&mm, m, 1 << 20, 0);
    fl_cap ram;
    strcpy(t_ram(m, 4096, &ram), "secret");
    t_mm_attach(&mm, ram, 0, 0, 0);

    struct t_child c;
    t_child_spawn(&c, "client", client_main);
    t_child_send(&c, "%s", t_mm_export(&mm));
    t_child_expect(&c, "read secret");

    T_ERR(fl_rm_destroy(m, mm.rms, mm.rm), 0);
    t_child_send(&c, "again");
    T_EQ(t_wait(c.pid), 128 + SIGBUS);
    T_ASSERT(!t_core_log_contains(core, "could not carry out"));
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(destroyed_map_sigbus)
