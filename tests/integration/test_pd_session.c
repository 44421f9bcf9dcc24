/*
 * A component's address space is manageable by another component (Genode's
 * rm_fault pattern): a parent creates and funds a session for its child,
 * holds the child's address-space capability from the start, attaches into it
 * before and after the child connects, and gets the child's touch of an
 * unattached address reflected to its own fault handler. The child's quota
 * comes from the parent and returns to it when the child is gone.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <stdint.h>
#include <unistd.h>

#define WIN (16u << 20)

static char pd_token[FL_TOKEN_LEN + 1];

static int child(void *arg)
{
    (void)arg;
    setenv("FAULTLINE_PD_TOKEN", pd_token, 1);
    struct fl_env *env = t_env();
    T_ASSERT(getenv("FAULTLINE_PD_TOKEN") == NULL); /* single use: not passed on */
    volatile uint8_t *w = fl_env_window_base(env);
    T_EQ((uintptr_t)w, FL_PD_WINDOW_BASE);
    T_EQ(fl_env_window_size(env), WIN);
    struct fl_session_info info;
    T_ERR(fl_env_session_info(env, &info), 0);
    T_EQ(info.ram_quota, 1 << 20);
    T_EQ(info.cap_quota, 16);
    T_EQ(w[0], 0x17);     /* attached by the parent before we came */
    return w[0x3000 + 5]; /* unattached: reflected to the parent, which attaches */
}

static int second_claim(void *arg)
{
    (void)arg;
    struct fl_env *env;
    struct fl_env_config cfg = {.pd_token = pd_token};
    return fl_env_open(&env, &cfg) == -FL_E_TOKEN ? 0 : 1;
}

static void parent_manages_child_address_space(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *env = t_env();
    struct fl_session_info before, funded, after;
    T_ERR(fl_env_session_info(env, &before), 0);

    fl_cap as, sigh;
    struct fl_pd_config cfg = {.ram_quota = 1 << 20, .cap_quota = 16, .window_size = WIN};
    T_ERR(fl_pd_create(env, &cfg, &as, pd_token), 0);
    T_ERR(fl_env_session_info(env, &funded), 0);
    T_EQ(funded.ram_used - before.ram_used, 1 << 20);
    T_EQ(funded.cap_used - before.cap_used, 16 + 1);
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(env, as, sigh), 0);

    /* Attach into the child's address space before it exists. */
    fl_cap first, second;
    memset(t_ram(env, 4096, &first), 0x17, 4096);
    t_attach_at(env, as, first, 0, 0, FL_PD_WINDOW_BASE, T_W);

    pid_t pid = t_spawn(child, NULL);
    t_expect_signal(env, sigh);
    /* the child's own virtual address, the byte it read */
    t_expect_fault(env, as, FL_FAULT_READ, FL_PD_WINDOW_BASE + 0x3000 + 5);
    memset(t_ram(env, 4096, &second), 0x42, 4096);
    t_attach_at(env, as, second, 0, 0, FL_PD_WINDOW_BASE + 0x3000, T_W);
    T_EQ(t_wait(pid), 0x42);

    /* The token was used: a second claim fails. */
    T_EQ(t_wait(t_spawn(second_claim, NULL)), 0);

    /* The child is gone: its quota is back, its address space with it. */
    for (;;) {
        T_ERR(fl_env_session_info(env, &after), 0);
        if (after.ram_used + (1 << 20) == funded.ram_used + 2 * 4096 + 2 * FL_COST_REGION) break;
        T_ASSERT(after.ram_used > funded.ram_used - (1 << 20)); /* never below */
        t_sleep_ms(5);
    }
    struct fl_attr a = {.use_at = true, .at = FL_PD_WINDOW_BASE + 0x3000, .writeable = true};
    T_ERR(fl_region_map_attach(env, as, second, &a, NULL), -FL_E_INVALID_CAP);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(parent_manages_child_address_space)
