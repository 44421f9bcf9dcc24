/*
 * A PD session is claimed once. While its child runs, neither the claim
 * token again nor a token of all zeros (what a claimed session's token
 * could have been cleared to) claims it, through libfaultline or as a raw
 * PD_CLAIM; an all-zero token claims no session before the child came
 * either. And the child's session keeps working throughout: the same
 * session, its RPCs answered, its faults reflected to the parent's handler
 * and resolved.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

#define WIN    (16u << 20)
#define ZEROES "00000000000000000000000000000000"

static int child_main(struct t_child *c)
{
    char token[128];
    t_child_command(c, token, sizeof(token));
    struct fl_session_info info;
    struct fl_env *env = t_pd_claim(token, &info);
    volatile uint8_t *w = fl_env_window_base(env);
    t_child_say(c, "claimed %llu read %d", (unsigned long long)info.session_id, w[0x10]);
    char line[64];
    t_child_command(c, line, sizeof(line));
    /* Still the same session, and it works: RPCs, its own memory, and a
     * fault reflected to the parent. */
    T_ERR(fl_env_session_info(env, &info), 0);
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4096, &ds), 0);
    volatile uint8_t *p = fl_attach(env, ds, NULL);
    T_ASSERT(p);
    p[3] = 9;
    T_EQ(p[3], 9);
    t_child_say(c, "session %llu read %d", (unsigned long long)info.session_id, w[0x5000 + 1]);
    t_child_command(c, line, sizeof(line));
    fl_env_close(env);
    return 0;
}

/* A claim in a process of its own: its fl_env_open's error (0: claimed). */
static int claim(void *arg)
{
    struct fl_env *env;
    struct fl_env_config cfg = {.pd_token = arg};
    return -fl_env_open(&env, &cfg);
}

static void expect_refused(const char *token, const char *what)
{
    int r = t_wait(t_spawn(claim, (void *)token));
    if (r != FL_E_TOKEN)
        T_FAILF("a claim with %s: fl_env_open returned %d (%s), expected TOKEN", what, -r,
                fl_error_name(-r));
    /* The same without libfaultline: PD_CLAIM is the first message. */
    int fd = t_raw_connect();
    struct fl_req_pd_claim m = {0};
    t_token_bytes(token, m.token);
    t_raw_send(fd, &m, FL_REQ_PD_CLAIM);
    struct fl_msg_reply rep;
    t_raw_reply(fd, &rep);
    T_EQ(rep.status, -FL_E_TOKEN);
    close(fd);
}

static void claimed_once(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *env = t_env();
    fl_cap as, sigh, first, second;
    char token[FL_TOKEN_LEN + 1];
    struct fl_pd_config cfg = {.ram_quota = 1 << 20, .cap_quota = 16, .window_size = WIN};
    T_ERR(fl_pd_create(env, &cfg, &as, token), 0);
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(env, as, sigh), 0);
    T_ERR(fl_ram_alloc(env, 4096, &first), 0);
    uint8_t *p = fl_attach(env, first, NULL);
    T_ASSERT(p);
    memset(p, 0x17, 4096);
    struct fl_attr a = {.use_at = true, .at = FL_PD_WINDOW_BASE, .writeable = true};
    T_ERR(fl_region_map_attach(env, as, first, &a, NULL), 0);

    expect_refused(ZEROES, "an all-zero token before the child came");

    struct t_child c;
    t_child_spawn(&c, "child", child_main);
    t_child_send(&c, "%s", token);
    char want[64], line[128];
    t_child_line(&c, line, sizeof(line)); /* "claimed ID read 23": the id is the child's */
    unsigned long long id;
    int v;
    T_ASSERT(sscanf(line, "claimed %llu read %d", &id, &v) == 2);
    T_EQ(v, 0x17);

    expect_refused(token, "the claim token again");
    expect_refused(ZEROES, "an all-zero token");

    /* The child's session is untouched. */
    t_child_send(&c, "go on");
    T_ASSERT(fl_signal_wait(env, sigh, T_WAIT_MS) > 0);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(env, as, &f), 0);
    T_EQ(f.type, FL_FAULT_READ);
    T_EQ(f.addr & ~0xfffull, FL_PD_WINDOW_BASE + 0x5000);
    T_ERR(fl_ram_alloc(env, 4096, &second), 0);
    p = fl_attach(env, second, NULL);
    T_ASSERT(p);
    memset(p, 0x42, 4096);
    a.at = FL_PD_WINDOW_BASE + 0x5000;
    T_ERR(fl_region_map_attach(env, as, second, &a, NULL), 0);
    snprintf(want, sizeof(want), "session %llu read %d", id, 0x42);
    t_child_expect(&c, want);
    T_ASSERT(!t_core_log_contains(core, "second HELLO"));

    t_child_send(&c, "exit");
    T_EQ(t_wait(c.pid), 0);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(claimed_once)
