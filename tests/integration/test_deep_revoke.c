/*
 * Revocation at the deepest legal nesting: a client's address space plus four
 * managed maps (M1 attached by the client, M2 in M1, M3 in M2, M4 in M3, all
 * at 0), RAM in the innermost map M4. Detaching that RAM, freeing it, or
 * destroying M4 must revoke it in the client before the call returns: the
 * client's next read of the page faults and is reflected to the deepest map
 * the walk reaches (M4; M3 once M4 is gone), never answered from the old
 * memory or from zeros. Each time the manager then attaches fresh RAM, and
 * the client reads that.
 */
#include "harness.h"

#include <unistd.h>

#define SZ     0x10000u
#define LEVELS 4

static struct fl_env *mgr;

static int client_main(struct t_child *c)
{
    struct fl_env *env = t_env();
    char line[256];
    t_child_command(c, line, sizeof(line));
    volatile unsigned char *p = t_import_attach(env, line);
    t_child_say(c, "attached");
    for (;;) {
        t_child_command(c, line, sizeof(line));
        if (strncmp(line, "read ", 5)) break;
        t_child_say(c, "read %#x", p[strtoul(line + 5, NULL, 0)]);
    }
    fl_env_close(env);
    return 0;
}

static void expect_read(struct t_child *c, uintptr_t off, int mark)
{
    char want[32];
    t_child_send(c, "read %#lx", (unsigned long)off);
    snprintf(want, sizeof(want), "read %#x", mark);
    t_child_expect(c, want);
}

/* The client reads off; that read must fault and be reflected to rm at addr
 * (the signal comes, the client says nothing meanwhile). */
static void expect_fault(struct t_child *c, uintptr_t off, fl_cap rm, fl_cap sigh, uintptr_t addr,
                         const char *after)
{
    t_child_send(c, "read %#lx", (unsigned long)off);
    t_expect_signal_first(mgr, sigh, &c, 1, after);
    T_ASSERT(fl_signal_wait(mgr, sigh, 0) > 0);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.type, FL_FAULT_READ);
    T_EQ(f.addr & ~0xfffu, addr);
    t_child_silent(c);
}

static void revoked_at_every_level(void)
{
    struct t_core *core = t_core_start(NULL);
    mgr = t_env();
    fl_cap rms, rm[LEVELS], ds[LEVELS], sigh[LEVELS];
    T_ERR(fl_rm_session_open(mgr, &rms), 0);
    for (int i = 0; i < LEVELS; i++) {
        T_ERR(fl_rm_create(mgr, rms, SZ, &rm[i]), 0);
        T_ERR(fl_region_map_dataspace(mgr, rm[i], &ds[i]), 0);
        T_ERR(fl_signal_context_create(mgr, &sigh[i]), 0);
        T_ERR(fl_region_map_fault_handler(mgr, rm[i], sigh[i]), 0);
        if (i > 0) {
            struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
            T_ERR(fl_region_map_attach(mgr, rm[i - 1], ds[i], &a, NULL), 0);
        }
    }
    fl_cap inner = rm[LEVELS - 1], inner_sigh = sigh[LEVELS - 1];
    t_ram_at(mgr, inner, 0x0000, 4096, 0x11);
    fl_cap b = t_ram_at(mgr, inner, 0x1000, 4096, 0x22);
    t_ram_at(mgr, inner, 0x2000, 4096, 0x33);

    struct t_child c;
    t_child_spawn(&c, "client", client_main);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, ds[0], token), 0);
    t_child_send(&c, "%s", token);
    t_child_expect(&c, "attached");
    expect_read(&c, 0x0005, 0x11); /* through all four levels */
    expect_read(&c, 0x1005, 0x22);
    expect_read(&c, 0x2005, 0x33);

    /* Detach the innermost RAM. */
    T_ERR(fl_region_map_detach(mgr, inner, 0), 0);
    expect_fault(&c, 0x0005, inner, inner_sigh, 0x0000, "detaching the innermost RAM");
    t_ram_at(mgr, inner, 0x0000, 4096, 0x44);
    t_child_expect(&c, "read 0x44");

    /* Free it: its region stays reserved, and a touch is reflected. */
    T_ERR(fl_ram_free(mgr, b), 0);
    expect_fault(&c, 0x1005, inner, inner_sigh, 0x1000, "freeing the innermost RAM");
    T_ERR(fl_region_map_detach(mgr, inner, 0x1000), 0); /* the reserved region */
    t_ram_at(mgr, inner, 0x1000, 4096, 0x55);
    t_child_expect(&c, "read 0x55");

    /* Destroy the innermost map: where M3 showed it is reserved now. */
    T_ERR(fl_rm_destroy(mgr, rms, inner), 0);
    fl_cap m3 = rm[LEVELS - 2];
    expect_fault(&c, 0x2005, m3, sigh[LEVELS - 2], 0x2000, "destroying the innermost map");
    T_ERR(fl_region_map_detach(mgr, m3, 0), 0);
    t_ram_at(mgr, m3, 0x2000, 4096, 0x66);
    t_child_expect(&c, "read 0x66");

    t_child_exit(&c);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(revoked_at_every_level)
