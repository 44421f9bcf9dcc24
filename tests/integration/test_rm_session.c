/*
 * RM sessions as Genode has them (Rm_connection, rm_session_component.h):
 *  - opening one moves 64 KiB and two capabilities of the PD session's quota
 *    to it, and closing it gives all of it back, upgrades included;
 *  - each region map is paid from the RM session's quota: 12 KiB (three
 *    pages of its sliced heap) and one capability, RAM checked first; beyond
 *    it core answers OUT_OF_RAM / OUT_OF_CAPS and charges nothing;
 *  - fl_rm_create upgrades the session by 8 KiB or two capabilities,
 *    whichever ran out, and tries again (Rm_connection::create), so the PD
 *    session pays in those steps; when the PD session cannot pay, the
 *    create fails with its error;
 *  - a session that holds an RM session's capability but did not open it
 *    gets DENIED for everything;
 *  - closing the session destroys its maps: their capabilities die, a client
 *    that touches what a map showed faults as after a destroy (no more
 *    memory; where the map was attached in a parent map the region is
 *    reserved, a touch there is reflected to the parent's handler), and
 *    threads queued on its maps are never woken.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <signal.h>
#include <unistd.h>

#define K 1024ull

/* Open, create, use, destroy, close: the PD session pays 64 KiB and two
 * capabilities at open (and the upgrade the first map needs), nothing per
 * map, and is back where it was after the close. */
static void open_create_destroy_close(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *env = t_env();
    struct fl_session_info base = t_info(env);
    fl_cap rms, rm, mds, ram;
    T_ERR(fl_rm_session_open(env, &rms), 0);
    T_INFO_IS(env, base.ram_used + 64 * K, base.cap_used + 2);
    T_ERR(fl_rm_create(env, rms, 256 * K, &rm), 0);
    /* The open's two capabilities paid for the session itself: one upgrade. */
    T_INFO_IS(env, base.ram_used + 64 * K, base.cap_used + 4);
    T_ERR(fl_region_map_dataspace(env, rm, &mds), 0);
    size_t size = 0;
    T_ERR(fl_dataspace_size(env, mds, &size), 0);
    T_EQ(size, 256 * K);

    /* The map works as any managed map. */
    char *p = t_ram(env, 4096, &ram);
    strcpy(p, "from the RM session's map");
    T_ERR(fl_detach(env, p), 0);
    t_attach_at(env, rm, ram, 0, 0, 8192, T_W);
    const char *v = fl_attach(env, mds, NULL);
    T_ASSERT(v != NULL);
    T_ASSERT(!strcmp(v + 8192, "from the RM session's map"));
    T_ERR(fl_detach(env, v), 0);

    /* Destroyed, the map's charge returns to the RM session, not the PD. */
    struct fl_session_info mid = t_info(env);
    T_ERR(fl_rm_destroy(env, rms, rm), 0);
    T_INFO_IS(env, mid.ram_used - FL_COST_REGION, mid.cap_used);
    T_ERR(fl_region_map_dataspace(env, rm, &mds), -FL_E_INVALID_CAP);
    T_ERR(fl_rm_destroy(env, rms, rm), -FL_E_INVALID_CAP);
    /* Its quota pays for the next map without an upgrade. */
    T_ERR(fl_rm_create(env, rms, 4096, &rm), 0);
    T_INFO_IS(env, mid.ram_used - FL_COST_REGION, mid.cap_used);

    /* Closed: the whole quota goes back, and its capability is dead. */
    T_ERR(fl_rm_session_close(env, rms), 0);
    T_ERR(fl_ram_free(env, ram), 0);
    T_INFO_IS(env, base.ram_used, base.cap_used);
    T_ERR(fl_rm_session_close(env, rms), -FL_E_INVALID_CAP);
    T_ERR(fl_rm_create(env, rms, 4096, &rm), -FL_E_INVALID_CAP);
    T_ERR(fl_rm_session_upgrade(env, rms, 4096, 0), -FL_E_INVALID_CAP);
    T_INFO_IS(env, base.ram_used, base.cap_used);

    /* Not an RM session. */
    T_ERR(fl_rm_create(env, fl_env_address_space(env), 4096, &rm), -FL_E_INVALID_CAP);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

/* ---- core's answers, without the library's upgrade-and-retry ---- */

static struct fl_msg_reply raw(int s, void *msg, unsigned type)
{
    struct fl_msg_reply r;
    t_raw_send(s, msg, type);
    t_raw_reply(s, &r);
    return r;
}

/* An upgrade by nothing: the RM session's quota and use, as the reply says. */
static void rms_is(int s, fl_wire_cap rms, uint64_t ram_quota, uint64_t ram_used,
                   uint64_t cap_quota, uint64_t cap_used, int line)
{
    struct fl_req_rm_session_upgrade u = {.rms = rms};
    struct fl_msg_reply r = raw(s, &u, FL_REQ_RM_SESSION_UPGRADE);
    if (r.status || r.val[0] != ram_quota || r.val[1] != ram_used || r.val[2] != cap_quota ||
        r.val[3] != cap_used)
        t_fail_at(__FILE__, line,
                  "RM session: status %d, RAM %llu of %llu, caps %llu of %llu; expected RAM "
                  "%llu of %llu, caps %llu of %llu",
                  r.status, (unsigned long long)r.val[1], (unsigned long long)r.val[0],
                  (unsigned long long)r.val[3], (unsigned long long)r.val[2],
                  (unsigned long long)ram_used, (unsigned long long)ram_quota,
                  (unsigned long long)cap_used, (unsigned long long)cap_quota);
}
#define RMS_IS(s, rms, rq, ru, cq, cu) rms_is(s, rms, rq, ru, cq, cu, __LINE__)

static int raw_create(int s, fl_wire_cap rms, fl_wire_cap *rm)
{
    struct fl_req_rm_create c = {.rms = rms, .size = 64 * K};
    struct fl_msg_reply r = raw(s, &c, FL_REQ_RM_CREATE);
    if (r.status == 0) *rm = r.val[0];
    return r.status;
}

static void raw_upgrade(int s, fl_wire_cap rms, uint64_t ram, uint64_t caps)
{
    struct fl_req_rm_session_upgrade u = {.rms = rms, .ram_quota = ram, .cap_quota = caps};
    T_ERR(raw(s, &u, FL_REQ_RM_SESSION_UPGRADE).status, 0);
}

static void session_used(int s, uint64_t *ram, uint64_t *caps)
{
    struct fl_req_session_info q = {0};
    struct fl_msg_reply r = raw(s, &q, FL_REQ_SESSION_INFO);
    T_EQ(r.status, 0);
    *ram = r.val[1];
    *caps = r.val[3];
}

static void core_quota_errors(void)
{
    struct t_core *core = t_core_start(NULL);
    int s = t_raw_session(NULL);
    uint64_t ram0, caps0, ram, caps;
    session_used(s, &ram0, &caps0);

    /* A donation must pay for the session object: a page, two capabilities. */
    struct fl_req_rm_session_open o = {.ram_quota = 4 * K - 1, .cap_quota = 2};
    T_ERR(raw(s, &o, FL_REQ_RM_SESSION_OPEN).status, -FL_E_OUT_OF_RAM);
    o = (struct fl_req_rm_session_open){.ram_quota = 64 * K, .cap_quota = 1};
    T_ERR(raw(s, &o, FL_REQ_RM_SESSION_OPEN).status, -FL_E_OUT_OF_CAPS);
    o = (struct fl_req_rm_session_open){.ram_quota = 8ull << 40, .cap_quota = 2};
    T_ERR(raw(s, &o, FL_REQ_RM_SESSION_OPEN).status, -FL_E_OUT_OF_RAM); /* beyond the PD's */
    session_used(s, &ram, &caps);
    T_EQ(ram, ram0);
    T_EQ(caps, caps0);

    o = (struct fl_req_rm_session_open){.ram_quota = 64 * K, .cap_quota = 2};
    struct fl_msg_reply r = raw(s, &o, FL_REQ_RM_SESSION_OPEN);
    T_ERR(r.status, 0);
    fl_wire_cap rms = r.val[0], rm[8];
    RMS_IS(s, rms, 64 * K, 4 * K, 2, 2);

    /* No capability left: OUT_OF_CAPS, nothing charged. */
    T_ERR(raw_create(s, rms, &rm[0]), -FL_E_OUT_OF_CAPS);
    RMS_IS(s, rms, 64 * K, 4 * K, 2, 2);
    raw_upgrade(s, rms, 0, 2);
    RMS_IS(s, rms, 64 * K, 4 * K, 4, 2);
    for (int i = 0; i < 2; i++) T_ERR(raw_create(s, rms, &rm[i]), 0);
    RMS_IS(s, rms, 64 * K, 28 * K, 4, 4);
    T_ERR(raw_create(s, rms, &rm[2]), -FL_E_OUT_OF_CAPS);
    raw_upgrade(s, rms, 0, 3);
    for (int i = 2; i < 5; i++) T_ERR(raw_create(s, rms, &rm[i]), 0);
    RMS_IS(s, rms, 64 * K, 64 * K, 7, 7);
    /* Out of both: RAM is checked first. */
    T_ERR(raw_create(s, rms, &rm[5]), -FL_E_OUT_OF_RAM);
    raw_upgrade(s, rms, 8 * K, 0);
    T_ERR(raw_create(s, rms, &rm[5]), -FL_E_OUT_OF_RAM); /* 8 KiB of 12 */
    raw_upgrade(s, rms, 8 * K, 0);
    T_ERR(raw_create(s, rms, &rm[5]), -FL_E_OUT_OF_CAPS);
    RMS_IS(s, rms, 80 * K, 64 * K, 7, 7);
    raw_upgrade(s, rms, 0, 1);
    T_ERR(raw_create(s, rms, &rm[5]), 0);
    RMS_IS(s, rms, 80 * K, 76 * K, 8, 8);

    /* The PD session paid what moved, and gets it all back at the close. */
    session_used(s, &ram, &caps);
    T_EQ(ram, ram0 + 80 * K);
    T_EQ(caps, caps0 + 8);
    struct fl_req_rm_destroy d = {.rms = rms, .rm = rm[1]};
    T_ERR(raw(s, &d, FL_REQ_RM_DESTROY).status, 0);
    RMS_IS(s, rms, 80 * K, 64 * K, 8, 7);
    T_ERR(raw(s, &d, FL_REQ_RM_DESTROY).status, -FL_E_INVALID_CAP);
    struct fl_req_cap c = {.cap = rms};
    T_ERR(raw(s, &c, FL_REQ_RM_SESSION_CLOSE).status, 0);
    session_used(s, &ram, &caps);
    T_EQ(ram, ram0);
    T_EQ(caps, caps0);
    T_ERR(raw(s, &c, FL_REQ_RM_SESSION_CLOSE).status, -FL_E_INVALID_CAP);
    close(s);
    T_EQ(t_core_stop(core), 0);
}

/* fl_rm_create's upgrades, step by step, as Rm_connection::create makes them:
 * what the PD session pays after each map. */
static void create_upgrades_as_genode(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *env = t_env();
    struct fl_session_info base = t_info(env);
    fl_cap rms, rm[7];
    T_ERR(fl_rm_session_open(env, &rms), 0);
    /* RAM (KiB) and capabilities the PD session has moved after map i. */
    static const struct {
        uint64_t ram_k, caps;
    } after[7] = {
        {64, 4},  /* out of capabilities: +2 */
        {64, 4},  /* fits */
        {64, 6},  /* out of capabilities: +2 */
        {64, 6},  /* fits */
        {64, 8},  /* RAM exactly enough, out of capabilities: +2 */
        {80, 8},  /* out of RAM: +8 KiB, still out: +8 KiB */
        {88, 10}, /* out of RAM: +8 KiB, then out of capabilities: +2 */
    };
    for (int i = 0; i < 7; i++) {
        T_ERR(fl_rm_create(env, rms, 4096, &rm[i]), 0);
        T_INFO_IS(env, base.ram_used + after[i].ram_k * K, base.cap_used + after[i].caps);
    }
    /* Destroying maps does not shrink the session: its quota stays for the
     * next maps until it closes. */
    for (int i = 0; i < 7; i++) T_ERR(fl_rm_destroy(env, rms, rm[i]), 0);
    T_INFO_IS(env, base.ram_used + 88 * K, base.cap_used + 10);
    for (int i = 0; i < 7; i++) T_ERR(fl_rm_create(env, rms, 4096, &rm[i]), 0);
    T_INFO_IS(env, base.ram_used + 88 * K, base.cap_used + 10);
    T_ERR(fl_rm_session_close(env, rms), 0);
    T_INFO_IS(env, base.ram_used, base.cap_used);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

/* When the PD session cannot pay an upgrade, fl_rm_create fails with its
 * error and nothing moves. Capabilities: the PD session has five. */
static void pd_caps_exhausted(void)
{
    struct t_core *core = t_core_start("--cap-quota", "5", NULL);
    struct fl_env *env = t_env();
    fl_cap rms, rm[4];
    T_ERR(fl_rm_session_open(env, &rms), 0);
    T_INFO_IS(env, 64 * K, 2);
    T_ERR(fl_rm_create(env, rms, 4096, &rm[0]), 0);
    T_ERR(fl_rm_create(env, rms, 4096, &rm[1]), 0);
    T_INFO_IS(env, 64 * K, 4);
    T_ERR(fl_rm_create(env, rms, 4096, &rm[2]), -FL_E_OUT_OF_CAPS); /* 4 + 2 > 5 */
    T_INFO_IS(env, 64 * K, 4);
    /* The PD's last capability goes to the RM session by hand. */
    T_ERR(fl_rm_session_upgrade(env, rms, 0, 2), -FL_E_OUT_OF_CAPS);
    T_ERR(fl_rm_session_upgrade(env, rms, 0, 1), 0);
    T_INFO_IS(env, 64 * K, 5);
    T_ERR(fl_rm_create(env, rms, 4096, &rm[2]), 0);
    T_ERR(fl_rm_create(env, rms, 4096, &rm[3]), -FL_E_OUT_OF_CAPS);
    /* A destroyed map's capability is the next map's. */
    T_ERR(fl_rm_destroy(env, rms, rm[0]), 0);
    T_ERR(fl_rm_create(env, rms, 4096, &rm[3]), 0);
    T_INFO_IS(env, 64 * K, 5);
    T_ERR(fl_rm_session_close(env, rms), 0);
    T_INFO_IS(env, 0, 0);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

/* RAM: only 72 KiB in the PD session, so the second upgrade of a create
 * fails. */
static void pd_ram_exhausted(void)
{
    struct t_core *core = t_core_start("--ram-quota", "72K", "--cap-quota", "64", NULL);
    struct fl_env *env = t_env();
    fl_cap rms, rm[6];
    T_ERR(fl_rm_session_open(env, &rms), 0);
    for (int i = 0; i < 5; i++) T_ERR(fl_rm_create(env, rms, 4096, &rm[i]), 0);
    T_INFO_IS(env, 64 * K, 8);
    /* The sixth needs 12 KiB: the first 8 KiB move, the next 8 do not fit. */
    T_ERR(fl_rm_create(env, rms, 4096, &rm[5]), -FL_E_OUT_OF_RAM);
    T_INFO_IS(env, 72 * K, 8);
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4096, &ds), -FL_E_OUT_OF_RAM);
    /* Closing gives the PD session everything back. */
    T_ERR(fl_rm_session_close(env, rms), 0);
    T_INFO_IS(env, 0, 0);
    T_ERR(fl_ram_alloc(env, 72 * K, &ds), 0);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

/* Another session that holds the RM session's capability: DENIED for
 * everything, and nothing is charged to either. */
static void foreign_session_denied(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *a = t_env(), *b = t_env();
    fl_cap rms, rm, brms, brm, own;
    T_ERR(fl_rm_session_open(a, &rms), 0);
    T_ERR(fl_rm_create(a, rms, 64 * K, &rm), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(a, rms, token), 0);
    T_ERR(fl_cap_import(b, token, &brms), 0);
    T_ERR(fl_cap_export(a, rm, token), 0);
    T_ERR(fl_cap_import(b, token, &brm), 0);
    struct fl_session_info ia = t_info(a), ib = t_info(b);

    T_ERR(fl_rm_create(b, brms, 4096, &own), -FL_E_DENIED);
    T_ERR(fl_rm_session_upgrade(b, brms, 8 * K, 2), -FL_E_DENIED);
    T_ERR(fl_rm_destroy(b, brms, brm), -FL_E_DENIED);
    T_ERR(fl_rm_session_close(b, brms), -FL_E_DENIED);
    T_INFO_IS(a, ia.ram_used, ia.cap_used);
    T_INFO_IS(b, ib.ram_used, ib.cap_used);
    /* b's own RM session cannot destroy a's map either: not one of its maps. */
    fl_cap bown;
    T_ERR(fl_rm_session_open(b, &bown), 0);
    T_ERR(fl_rm_destroy(b, bown, brm), -FL_E_INVALID_CAP);
    /* Nor can a's other RM session. */
    fl_cap other;
    T_ERR(fl_rm_session_open(a, &other), 0);
    T_ERR(fl_rm_destroy(a, other, rm), -FL_E_INVALID_CAP);
    T_ERR(fl_rm_session_close(a, other), 0);

    /* The map is still a's, through b's capability too. */
    fl_cap ram;
    T_ERR(fl_ram_alloc(a, 4096, &ram), 0);
    t_attach_at(a, rm, ram, 0, 0, 0, T_W);
    T_ERR(fl_region_map_detach(b, brm, 0), 0);
    T_ERR(fl_rm_destroy(a, rms, rm), 0);
    T_ERR(fl_region_map_detach(b, brm, 0), -FL_E_INVALID_CAP);
    T_ERR(fl_rm_session_close(a, rms), 0);
    /* b still holds the name of the closed session: it names nothing now. */
    T_ERR(fl_rm_create(b, brms, 4096, &own), -FL_E_INVALID_CAP);
    T_ERR(fl_cap_release(b, brms), 0);
    fl_env_close(b);
    fl_env_close(a);
    T_EQ(t_core_stop(core), 0);
}

/* ---- closing destroys the maps ---- */

static int touch_managed(void *token)
{
    volatile char *p = t_import_attach(t_env(), token);
    return p[0x3000]; /* queued on the map, never served */
}

/* Core started with --unresolvable sigbus: what can never be resolved ends
 * the thread with SIGBUS instead of halting it. */
static void close_destroys_maps(void)
{
    struct t_core *core = t_core_start("--unresolvable", "sigbus", NULL);
    struct fl_env *mgr = t_env();
    struct fl_session_info base = t_info(mgr);
    fl_cap rms, outer_rms, x, x2, xds, x2ds, p, pds, sx, sp, ram;
    T_ERR(fl_rm_session_open(mgr, &rms), 0);
    T_ERR(fl_rm_session_open(mgr, &outer_rms), 0);
    /* X and X2 from the session that closes; P, from another, shows X. */
    T_ERR(fl_rm_create(mgr, rms, 64 * K, &x), 0);
    T_ERR(fl_rm_create(mgr, rms, 64 * K, &x2), 0);
    T_ERR(fl_rm_create(mgr, outer_rms, 128 * K, &p), 0);
    T_ERR(fl_signal_context_create(mgr, &sx), 0);
    T_ERR(fl_signal_context_create(mgr, &sp), 0);
    T_ERR(fl_region_map_fault_handler(mgr, x, sx), 0);
    T_ERR(fl_region_map_fault_handler(mgr, p, sp), 0);
    T_ERR(fl_region_map_dataspace(mgr, x, &xds), 0);
    T_ERR(fl_region_map_dataspace(mgr, x2, &x2ds), 0);
    T_ERR(fl_region_map_dataspace(mgr, p, &pds), 0);
    char *ram_at = t_ram(mgr, 4096, &ram);
    strcpy(ram_at, "secret");
    t_attach_at(mgr, x, ram, 0, 0, 0, T_W);
    t_attach_at(mgr, p, xds, 0, 0, 64 * K, T_W);

    /* A client of X directly, one of P (X inside), one queued on X. */
    struct t_child direct, nested;
    t_child_spawn(&direct, "direct", t_client_main);
    t_child_spawn(&nested, "nested", t_client_main);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, xds, token), 0);
    t_child_send(&direct, "import %s", token);
    t_child_expect(&direct, "attached");
    t_child_send(&direct, "read 0");
    t_child_expect(&direct, "read secret");
    T_ERR(fl_cap_export(mgr, pds, token), 0);
    t_child_send(&nested, "import %s", token);
    t_child_expect(&nested, "attached");
    t_child_send(&nested, "read 0x10000");
    t_child_expect(&nested, "read secret");
    T_ERR(fl_cap_export(mgr, xds, token), 0);
    pid_t queued = t_spawn(touch_managed, token);
    t_expect_signal(mgr, sx);
    t_expect_fault(mgr, x, FL_FAULT_READ, 0x3000);

    T_ERR(fl_rm_session_close(mgr, rms), 0);
    /* The PD session has its quota back. What remains: P's RM session (64
     * KiB, its two capabilities and an upgrade of two), the signals, the RAM
     * with its attachment, and P's region that showed X (reserved). */
    T_INFO_IS(mgr, base.ram_used + 64 * K + 4096 + 2 * FL_COST_REGION,
              base.cap_used + 2 + 2 + 2 + 1);
    /* Both maps are gone with their capabilities. */
    T_ERR(fl_region_map_attach(mgr, x, ram, &(struct fl_attr){0}, NULL), -FL_E_INVALID_CAP);
    T_ERR(fl_region_map_dataspace(mgr, x2, &x2ds), -FL_E_INVALID_CAP);
    T_ERR(fl_rm_destroy(mgr, rms, x2), -FL_E_INVALID_CAP);
    T_ERR(fl_dataspace_size(mgr, xds, &(size_t){0}), -FL_E_INVALID_DATASPACE);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, x, &f), -FL_E_INVALID_CAP);

    /* The thread queued on X is never woken: SIGBUS. */
    T_EQ(t_wait(queued), 128 + SIGBUS);
    /* The direct client's next touch faults; nothing can resolve it. */
    t_child_send(&direct, "read 0");
    T_EQ(t_wait(direct.pid), 128 + SIGBUS);
    /* In P the region that showed X is reserved: a touch is reflected to P's
     * handler, attaching over it conflicts until it is detached. */
    t_child_send(&nested, "read 0x10000");
    t_expect_signal(mgr, sp);
    t_expect_fault(mgr, p, FL_FAULT_READ, 0x10000);
    fl_cap fresh;
    char *fresh_at = t_ram(mgr, 4096, &fresh);
    strcpy(fresh_at, "fresh");
    struct fl_attr at = {.size = 4096, .use_at = true, .at = 64 * K, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, p, fresh, &at, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(fl_region_map_detach(mgr, p, 64 * K), 0);
    T_ERR(fl_region_map_attach(mgr, p, fresh, &at, NULL), 0);
    t_child_expect(&nested, "read fresh");
    t_child_send(&nested, "exit");
    T_EQ(t_wait(nested.pid), 0);

    T_ERR(fl_rm_session_close(mgr, outer_rms), 0);
    T_ERR(fl_detach(mgr, ram_at), 0);
    T_ERR(fl_detach(mgr, fresh_at), 0);
    T_ERR(fl_ram_free(mgr, ram), 0);
    T_ERR(fl_ram_free(mgr, fresh), 0);
    T_ERR(fl_signal_context_destroy(mgr, sx), 0);
    T_ERR(fl_signal_context_destroy(mgr, sp), 0);
    T_INFO_IS(mgr, base.ram_used, base.cap_used);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

/* Under the default (halt), a thread queued on a map of a closed session
 * stays halted: not woken, not even by an attach at the same offset of a
 * new map. */
static void close_leaves_faulters_halted(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, 64 * K, T_MM_HANDLER);
    struct t_child c;
    t_child_spawn(&c, "client", t_client_main);
    t_child_send(&c, "import %s", t_mm_export(&mm));
    t_child_expect(&c, "attached");
    t_child_send(&c, "read 0x2000");
    T_EQ(t_mm_next_fault(&mm).addr, 0x2000);
    T_ERR(fl_rm_session_close(mgr, mm.rms), 0);
    struct t_mm again;
    t_mm_create(&again, mgr, 64 * K, T_MM_HANDLER);
    fl_cap ram;
    t_ram(mgr, 64 * K, &ram);
    t_mm_attach(&again, ram, 0, 0, 0);
    t_sleep_ms(300);
    t_child_silent(&c);
    kill(c.pid, SIGKILL);
    T_EQ(t_wait(c.pid), 128 + SIGKILL);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

/* A PD session that ends with RM sessions open: their maps go with it, and
 * core is back at its descriptors. */
static void pd_end_with_open_sessions(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *probe = t_env();
    int fds = t_core_fd_count(core);
    for (int round = 0; round < 3; round++) {
        struct fl_env *env = t_env();
        struct t_mm mm[3];
        for (int i = 0; i < 3; i++) {
            t_mm_create(&mm[i], env, 64 * K, T_MM_HANDLER);
            fl_cap ram;
            t_ram(env, 4096, &ram);
            t_mm_attach(&mm[i], ram, 0, 0, 0);
            if (i) t_mm_attach(&mm[i], mm[i - 1].ds, 0, 16 * K, 16 * K);
        }
        fl_env_close(env);
    }
    T_WAIT_UNTIL(t_core_fd_count(core) == fds);
    t_session_works(probe, 4, 7);
    fl_env_close(probe);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(open_create_destroy_close, core_quota_errors, create_upgrades_as_genode, pd_caps_exhausted,
        pd_ram_exhausted, foreign_session_denied, close_destroys_maps, close_leaves_faulters_halted,
        pd_end_with_open_sessions)
