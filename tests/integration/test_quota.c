/*
 * Quotas. A session's RAM and capability quotas: allocation beyond them is
 * refused (OUT_OF_RAM / OUT_OF_CAPS) without charging anything; within them
 * it works; freeing returns the quota at once. Core's global RAM budget: a
 * second session cannot get what the first holds, and gets it once the first
 * frees it or goes away.
 */
#include "harness.h"

#include <unistd.h>

#define K 1024ull
#define M (1024ull * 1024)

static void session_quotas(void)
{
    struct t_core *core = t_core_start("--ram-quota", "1M", "--cap-quota", "8", NULL);
    struct fl_env *env = t_env();
    struct fl_session_info info;
    T_ERR(fl_env_session_info(env, &info), 0);
    T_EQ(info.ram_quota, 1 * M);
    T_EQ(info.cap_quota, 8);
    T_EQ(info.ram_used, 0);
    T_EQ(info.cap_used, 0);
    T_ASSERT(info.session_id != 0);

    /* Beyond the RAM quota: refused, nothing charged. */
    fl_cap ds = FL_CAP_INVALID;
    T_ERR(fl_ram_alloc(env, 2 * M, &ds), -FL_E_OUT_OF_RAM);
    T_ERR(fl_ram_alloc(env, 1 * M + 1, &ds), -FL_E_OUT_OF_RAM); /* rounds to 1M + 4K */
    T_ERR(fl_ram_alloc(env, 1 * M + 4 * K, &ds), -FL_E_OUT_OF_RAM);
    T_ERR(fl_ram_alloc(env, (size_t)1 << 40, &ds), -FL_E_OUT_OF_RAM);
    T_ERR(fl_ram_alloc(env, SIZE_MAX, &ds), -FL_E_OUT_OF_RAM);
    T_EQ(ds, FL_CAP_INVALID);
    T_INFO_IS(env, 0, 0);

    /* Exactly the quota: fine; then even an attachment's metadata is beyond it. */
    fl_cap full;
    T_ERR(fl_ram_alloc(env, 1 * M, &full), 0);
    T_INFO_IS(env, 1 * M, 1);
    T_ERR(fl_ram_alloc(env, 1, &ds), -FL_E_OUT_OF_RAM);
    int err = 0;
    T_ASSERT(fl_attach(env, full, &err) == NULL);
    T_ERR(err, -FL_E_OUT_OF_RAM);
    fl_cap rms, rm;
    T_ERR(fl_rm_session_open(env, &rms), -FL_E_OUT_OF_RAM);
    T_INFO_IS(env, 1 * M, 1);
    T_ERR(fl_ram_free(env, full), 0);
    T_INFO_IS(env, 0, 0); /* returned at once */

    /* Within the quota: alloc, attach, use. */
    fl_cap half;
    T_ERR(fl_ram_alloc(env, 512 * K, &half), 0);
    T_INFO_IS(env, 512 * K, 1);
    unsigned char *p = fl_attach(env, half, &err);
    T_ERR(err, 0);
    T_ASSERT(p != NULL);
    p[0] = 1;
    p[512 * K - 1] = 2;
    T_EQ(p[0] + p[512 * K - 1], 3);
    struct fl_session_info with_region;
    T_ERR(fl_env_session_info(env, &with_region), 0);
    T_ASSERT(with_region.ram_used > 512 * K && with_region.ram_used < 512 * K + 4 * K);
    T_EQ(with_region.cap_used, 1);
    T_ERR(fl_detach(env, p), 0);
    T_INFO_IS(env, 512 * K, 1);

    /* Capabilities: seven more dataspaces fit, the ninth capability does not. */
    fl_cap small[8];
    for (int i = 0; i < 7; i++) {
        T_ERR(fl_ram_alloc(env, 4 * K, &small[i]), 0);
        T_INFO_IS(env, 512 * K + (uint64_t)(i + 1) * 4 * K, (uint64_t)i + 2);
    }
    T_ERR(fl_ram_alloc(env, 4 * K, &ds), -FL_E_OUT_OF_CAPS);
    fl_cap sig = FL_CAP_INVALID;
    T_ERR(fl_signal_context_create(env, &sig), -FL_E_OUT_OF_CAPS);
    T_ERR(fl_rm_session_open(env, &rms), -FL_E_OUT_OF_CAPS);
    T_INFO_IS(env, 512 * K + 28 * K, 8);
    /* RAM is checked before capabilities */
    T_ERR(fl_ram_alloc(env, 1 * M, &ds), -FL_E_OUT_OF_RAM);

    /* Freeing one capability's worth: exactly one more fits. */
    T_ERR(fl_ram_free(env, small[6]), 0);
    T_INFO_IS(env, 512 * K + 24 * K, 7);
    T_ERR(fl_signal_context_create(env, &sig), 0);
    T_INFO_IS(env, 512 * K + 24 * K, 8);
    T_ERR(fl_ram_alloc(env, 4 * K, &ds), -FL_E_OUT_OF_CAPS);
    /* An RM session takes 64 KiB and two capabilities of the PD session's
     * quota at open, all of them for the session itself. */
    T_ERR(fl_ram_free(env, small[5]), 0);
    T_ERR(fl_rm_session_open(env, &rms), -FL_E_OUT_OF_CAPS);
    T_ERR(fl_ram_free(env, small[4]), 0);
    T_INFO_IS(env, 512 * K + 16 * K, 6);
    T_ERR(fl_rm_session_open(env, &rms), 0);
    T_INFO_IS(env, 512 * K + 80 * K, 8);
    /* So its first map needs an upgrade of two capabilities
     * (Rm_connection::create), which the PD session cannot pay: nothing moves. */
    T_ERR(fl_rm_create(env, rms, 64 * K, &rm), -FL_E_OUT_OF_CAPS);
    T_INFO_IS(env, 512 * K + 80 * K, 8);
    T_ERR(fl_ram_free(env, small[3]), 0);
    T_ERR(fl_ram_free(env, small[2]), 0);
    T_ERR(fl_rm_create(env, rms, 64 * K, &rm), 0);
    T_INFO_IS(env, 512 * K + 72 * K, 8);
    /* An outstanding export token costs its exporter one capability until it
     * is imported (so tokens cannot pile up in core for free); an imported
     * capability costs its importer one (here the exporter itself: the
     * token's capability becomes the slot's, so it fits at a full quota). */
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, half, token), -FL_E_OUT_OF_CAPS);
    T_ERR(fl_signal_context_destroy(env, sig), 0);
    T_INFO_IS(env, 512 * K + 72 * K, 7);
    T_ERR(fl_cap_export(env, half, token), 0);
    T_INFO_IS(env, 512 * K + 72 * K, 8);
    fl_cap again;
    T_ERR(fl_cap_import(env, token, &again), 0);
    T_INFO_IS(env, 512 * K + 72 * K, 8);
    T_ERR(fl_cap_release(env, again), 0);
    T_INFO_IS(env, 512 * K + 72 * K, 7);
    T_ERR(fl_signal_context_create(env, &sig), 0);

    /* Free everything: the session is back at zero. A destroyed map's charge
     * goes back to its RM session, the RM session's quota (its upgrade too)
     * to the PD session when it closes. */
    T_ERR(fl_rm_destroy(env, rms, rm), 0);
    T_INFO_IS(env, 512 * K + 72 * K, 8);
    T_ERR(fl_rm_session_close(env, rms), 0);
    T_INFO_IS(env, 512 * K + 8 * K, 4);
    T_ERR(fl_signal_context_destroy(env, sig), 0);
    for (int i = 0; i < 2; i++) T_ERR(fl_ram_free(env, small[i]), 0);
    T_ERR(fl_ram_free(env, half), 0);
    T_INFO_IS(env, 0, 0);
    /* and the whole quota is usable again */
    T_ERR(fl_ram_alloc(env, 1 * M, &full), 0);
    T_INFO_IS(env, 1 * M, 1);
    T_ERR(fl_ram_free(env, full), 0);
    T_INFO_IS(env, 0, 0);

    /* Each session has its own quota. */
    struct fl_env *other = t_env();
    T_ERR(fl_ram_alloc(env, 1 * M, &full), 0);
    fl_cap ofull;
    T_ERR(fl_ram_alloc(other, 1 * M, &ofull), 0);
    T_INFO_IS(other, 1 * M, 1);
    T_INFO_IS(env, 1 * M, 1);
    fl_env_close(other);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

static long deadline;

/* Whether b can allocate size now; fails the test on another error or when
 * the deadline passed. */
static int can_alloc(struct fl_env *b, size_t size, fl_cap *ds)
{
    int r = fl_ram_alloc(b, size, ds);
    if (r != 0 && r != -FL_E_OUT_OF_RAM) T_FAILF("alloc: %s", fl_error_name(r));
    if (r != 0 && t_now_ms() > deadline)
        T_FAILF("core did not return the budget of a closed session");
    return r == 0;
}

static void global_budget(void)
{
    struct t_core *core = t_core_start("--ram-budget", "2M", NULL);
    struct fl_env *a = t_env(), *b = t_env();
    struct fl_session_info info;
    T_ERR(fl_env_session_info(b, &info), 0);
    T_ASSERT(info.ram_quota > 2 * M); /* the per-session quota is not the limit here */

    fl_cap big, ds;
    T_ERR(fl_ram_alloc(a, 1536 * K, &big), 0);
    /* b's own quota would allow it; core's budget does not. */
    T_ERR(fl_ram_alloc(b, 1 * M, &ds), -FL_E_OUT_OF_RAM);
    T_ERR(fl_ram_alloc(b, 512 * K + 4 * K, &ds), -FL_E_OUT_OF_RAM);
    T_INFO_IS(b, 0, 0);
    fl_cap rest;
    T_ERR(fl_ram_alloc(b, 512 * K, &rest), 0);
    T_INFO_IS(b, 512 * K, 1);
    T_ERR(fl_ram_alloc(b, 1, &ds), -FL_E_OUT_OF_RAM);
    T_ERR(fl_ram_alloc(a, 1, &ds), -FL_E_OUT_OF_RAM);
    T_INFO_IS(a, 1536 * K, 1);

    /* a frees: b gets it. */
    T_ERR(fl_ram_free(a, big), 0);
    T_ERR(fl_ram_alloc(b, 1 * M, &ds), 0);
    T_INFO_IS(b, 1536 * K, 2);
    T_ERR(fl_ram_alloc(a, 1 * M, &big), -FL_E_OUT_OF_RAM);
    T_ERR(fl_ram_alloc(a, 512 * K, &big), 0);
    T_ERR(fl_ram_alloc(b, 4 * K, &ds), -FL_E_OUT_OF_RAM);

    /* a goes away: core returns what it held (asynchronously to a's close). */
    fl_env_close(a);
    deadline = t_now_ms() + 10000;
    T_WAIT_UNTIL(can_alloc(b, 512 * K, &ds));
    T_INFO_IS(b, 2 * M, 3);
    T_ERR(fl_ram_alloc(b, 4 * K, &ds), -FL_E_OUT_OF_RAM);
    fl_env_close(b);
    T_EQ(t_core_stop(core), 0);
}

/* Every capability slot is paid for: a slot core inserts for a session costs
 * it one capability unless the object's own charge covers it (its creator's
 * first slot). Before, imports and dataspace() inserted slots for free: one
 * session grew core's tables without bound at "cap_used 2". */
static void capability_slots(void)
{
    struct t_core *core = t_core_start("--cap-quota", "8", NULL);
    struct fl_env *a = t_env(), *b = t_env();
    fl_cap rms, rm, mds, again;
    T_ERR(fl_rm_session_open(a, &rms), 0);
    T_ERR(fl_rm_create(a, rms, 64 * K, &rm), 0); /* with an upgrade of two capabilities */
    T_INFO_IS(a, 64 * K, 4);
    /* The map's one dataspace capability: the same each time, covered by the
     * map's charge. */
    T_ERR(fl_region_map_dataspace(a, rm, &mds), 0);
    for (int i = 0; i < 100; i++) {
        T_ERR(fl_region_map_dataspace(a, rm, &again), 0);
        T_EQ(again, mds);
    }
    T_INFO_IS(a, 64 * K, 4);
    /* Each hold is given back on its own (threads may share the slot): after
     * 101 releases the slot is gone, and a new one is made (covered again). */
    fl_cap ds;
    for (int i = 0; i < 101; i++) {
        T_ERR(fl_dataspace_size(a, mds, &(size_t){0}), 0);
        T_ERR(fl_cap_release(a, mds), 0);
    }
    T_ERR(fl_cap_release(a, mds), -FL_E_INVALID_CAP);
    T_ERR(fl_region_map_dataspace(a, rm, &ds), 0);
    T_ASSERT(ds != mds); /* a new generation */
    mds = ds;
    T_INFO_IS(a, 64 * K, 4);

    /* Imports cost the importer one capability each, up to its quota; the
     * import beyond it fails and leaves the token usable. */
    fl_cap got[8];
    char token[FL_TOKEN_LEN + 1];
    for (int i = 0; i < 8; i++) {
        T_ERR(fl_cap_export(a, mds, token), 0);
        T_ERR(fl_cap_import(b, token, &got[i]), 0);
        T_INFO_IS(b, 0, (uint64_t)i + 1);
    }
    T_INFO_IS(a, 64 * K, 4); /* each token's capability returned at its import */
    T_ERR(fl_cap_export(a, mds, token), 0);
    T_INFO_IS(a, 64 * K, 5);
    T_ERR(fl_cap_import(b, token, &again), -FL_E_OUT_OF_CAPS);
    T_INFO_IS(b, 0, 8);
    T_INFO_IS(a, 64 * K, 5); /* the token is still outstanding */
    T_ERR(fl_cap_release(b, got[0]), 0);
    T_INFO_IS(b, 0, 7);
    T_ERR(fl_cap_import(b, token, &got[0]), 0);
    T_INFO_IS(b, 0, 8);
    T_INFO_IS(a, 64 * K, 4);
    /* dataspace() of a map b holds but did not create: a charged slot. */
    char rtoken[FL_TOKEN_LEN + 1];
    fl_cap brm, bmds;
    T_ERR(fl_cap_release(b, got[1]), 0);
    T_ERR(fl_cap_release(b, got[2]), 0);
    T_ERR(fl_cap_export(a, rm, rtoken), 0);
    T_ERR(fl_cap_import(b, rtoken, &brm), 0);
    T_INFO_IS(b, 0, 7);
    T_ERR(fl_region_map_dataspace(b, brm, &bmds), 0);
    T_INFO_IS(b, 0, 8);
    T_ERR(fl_region_map_dataspace(b, brm, &again), -FL_E_OUT_OF_CAPS);
    fl_env_close(b);
    fl_env_close(a);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(session_quotas, global_budget, capability_slots)
