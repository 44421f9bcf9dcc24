/*
 * Quota moves between sessions only by transfer from the creator of a PD
 * session (Genode's session upgrade). A child that ran out of RAM quota
 * continues after its parent upgrades it; an upgrade beyond the parent's own
 * quota fails with OUT_OF_RAM and moves nothing; a session that merely holds
 * the child's capability (imported) is DENIED, as is upgrading oneself; the
 * wrong kind of capability
 * is INVALID_CAP. When the child is gone, the parent has all of it back.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <unistd.h>

#define KIB 1024u

static char pd_token[FL_TOKEN_LEN + 1];

static int child_main(struct t_child *c)
{
    setenv("FAULTLINE_PD_TOKEN", pd_token, 1);
    struct fl_env *env = t_env();
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 64 * KIB, &ds), 0);
    T_ERR(fl_ram_alloc(env, 64 * KIB, &ds), -FL_E_OUT_OF_RAM);
    t_child_say(c, "out of ram");
    char line[64];
    t_child_command(c, line, sizeof(line));
    T_ERR(fl_ram_alloc(env, 64 * KIB, &ds), 0);
    struct fl_session_info info;
    T_ERR(fl_env_session_info(env, &info), 0);
    t_child_say(c, "quota %llu KiB, %llu caps", (unsigned long long)(info.ram_quota / KIB),
                (unsigned long long)info.cap_quota);
    t_child_command(c, line, sizeof(line));
    fl_env_close(env);
    return 0;
}

static void upgraded_by_its_creator_only(void)
{
    struct t_core *core = t_core_start("--ram-quota", "4M", NULL);
    struct fl_env *env = t_env();
    struct fl_session_info before, info;
    T_ERR(fl_env_session_info(env, &before), 0);

    fl_cap pd;
    struct fl_pd_config cfg = {.ram_quota = 64 * KIB + 2 * FL_COST_REGION, .cap_quota = 8};
    T_ERR(fl_pd_create(env, &cfg, &pd, pd_token), 0);
    struct t_child c;
    t_child_spawn(&c, "child", child_main);
    t_child_expect(&c, "out of ram");

    /* More than the parent has: nothing moves. */
    T_ERR(fl_env_session_info(env, &info), 0);
    T_ERR(fl_pd_upgrade(env, pd, 64u << 20, 0), -FL_E_OUT_OF_RAM);
    T_ERR(fl_pd_upgrade(env, pd, 0, 1u << 20), -FL_E_OUT_OF_CAPS);
    struct fl_session_info same;
    T_ERR(fl_env_session_info(env, &same), 0);
    T_EQ(same.ram_used, info.ram_used);
    T_EQ(same.cap_used, info.cap_used);

    /* Not a PD's address space; not this session's child. */
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4096, &ds), 0);
    T_ERR(fl_pd_upgrade(env, ds, 4096, 0), -FL_E_INVALID_CAP);
    T_ERR(fl_pd_upgrade(env, fl_env_address_space(env), 4096, 0), -FL_E_DENIED);
    struct fl_env *other = t_env();
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, pd, token), 0);
    fl_cap held;
    T_ERR(fl_cap_import(other, token, &held), 0);
    T_ERR(fl_pd_upgrade(other, held, 128 * KIB, 0), -FL_E_DENIED);

    /* The creator upgrades: the child continues. */
    T_ERR(fl_pd_upgrade(env, pd, 128 * KIB, 4), 0);
    t_child_send(&c, "go on");
    char want[64];
    snprintf(want, sizeof(want), "quota %u KiB, 12 caps", 192 * KIB / KIB);
    t_child_expect(&c, want);
    T_ERR(fl_env_session_info(env, &info), 0);
    T_EQ(info.ram_used - before.ram_used, 64 * KIB + 2 * FL_COST_REGION + 128 * KIB + 4096);

    /* The child ends: its funding, upgrade included, comes back. */
    t_child_send(&c, "exit");
    T_EQ(t_wait(c.pid), 0);
    T_WAIT_FOR(fl_env_session_info(env, &info) == 0 && info.ram_used == before.ram_used + 4096,
               "the child's quota to return to its parent");
    fl_env_close(other);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(upgraded_by_its_creator_only)
