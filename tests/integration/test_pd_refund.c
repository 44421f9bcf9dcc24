/*
 * A child's PD session is funded from its parent's quota: RAM and
 * capabilities, one capability more for the PD itself, and whatever
 * fl_pd_upgrade moves later. All of it comes back when the child's session
 * ends: the parent's RAM and capability use return exactly to their values
 * before fl_pd_create -- whatever the child allocated, created and exported
 * meanwhile, whatever the parent attached into the child's address space,
 * and whether the child closed its session or was killed.
 */
#include "harness.h"

#include <signal.h>
#include <unistd.h>

#define RAM  (1u << 20)
#define CAPS 16u

static int child_main(struct t_child *c)
{
    char token[128];
    t_child_command(c, token, sizeof(token));
    struct fl_session_info info;
    struct fl_env *env = t_pd_claim(token, &info);
    T_EQ(info.ram_quota, RAM + 64 * 1024);
    T_EQ(info.cap_quota, CAPS + 4);
    /* Spend from its own quota: RAM, a signal context, an RM session, and an
     * export token (a capability while outstanding). */
    fl_cap ds, sigh, rms, rm;
    for (int i = 0; i < 3; i++) T_ERR(fl_ram_alloc(env, 8192, &ds), 0);
    T_ASSERT(fl_attach(env, ds, NULL));
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    T_ERR(fl_rm_session_open(env, &rms), 0);
    T_ERR(fl_rm_create(env, rms, 1 << 16, &rm), 0);
    char export[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, sigh, export), 0);
    volatile char *w = fl_env_window_base(env);
    t_child_say(c, "ready %d", w[5]); /* attached by the parent */
    t_child_command(c, token, sizeof(token));
    if (!strcmp(token, "close")) fl_env_close(env);
    return 0;
}

/* Round 0: the child closes its session; round 1: it is killed. */
static void refunded(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *env = t_env();
    fl_cap shared;
    T_ERR(fl_ram_alloc(env, 4096, &shared), 0);
    char *p = fl_attach(env, shared, NULL);
    T_ASSERT(p);
    memset(p, 0x2a, 4096);

    for (int round = 0; round < 2; round++) {
        struct fl_session_info before, now;
        T_ERR(fl_env_session_info(env, &before), 0);
        fl_cap as;
        char token[FL_TOKEN_LEN + 1];
        struct fl_pd_config cfg = {.ram_quota = RAM, .cap_quota = CAPS, .window_size = 1 << 24};
        T_ERR(fl_pd_create(env, &cfg, &as, token), 0);
        T_ERR(fl_pd_upgrade(env, as, 64 * 1024, 4), 0);
        T_ERR(fl_env_session_info(env, &now), 0);
        T_EQ(now.ram_used - before.ram_used, RAM + 64 * 1024);
        T_EQ(now.cap_used - before.cap_used, CAPS + 4 + 1); /* + the PD's own */
        struct fl_attr a = {.use_at = true, .at = FL_PD_WINDOW_BASE, .writeable = true};
        T_ERR(fl_region_map_attach(env, as, shared, &a, NULL), 0);

        struct t_child c;
        t_child_spawn(&c, "child", child_main);
        t_child_send(&c, "%s", token);
        t_child_expect(&c, "ready 42");
        if (round == 0) {
            t_child_send(&c, "close");
            T_EQ(t_wait(c.pid), 0);
        } else {
            kill(c.pid, SIGKILL);
            T_EQ(t_wait(c.pid), 128 + SIGKILL);
        }

        /* Both are returned at once, when the child's session is torn down. */
        T_WAIT_UNTIL(fl_env_session_info(env, &now) == 0 && now.ram_used == before.ram_used);
        if (now.cap_used != before.cap_used)
            T_FAILF("round %d (%s): the parent uses %llu capabilities, %llu before its child",
                    round, round ? "killed" : "closed", (unsigned long long)now.cap_used,
                    (unsigned long long)before.cap_used);
        T_EQ(now.ram_quota, before.ram_quota);
        T_EQ(now.cap_quota, before.cap_quota);
        T_ERR(fl_region_map_attach(env, as, shared, &a, NULL), -FL_E_INVALID_CAP);
        T_ERR(fl_cap_release(env, as), 0);
        T_ERR(fl_env_session_info(env, &now), 0);
        T_EQ(now.cap_used, before.cap_used);
    }
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(refunded)
