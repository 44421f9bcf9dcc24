/* RM sessions (Genode's Rm_connection) and the managed region maps made from them. */
#include "internal.h"

/* Upgrades fl_rm_create makes at most: a map needs 12 KiB and one capability,
 * which an empty session gets in two RAM and one capability upgrade. */
#define CREATE_UPGRADES 4

int fl_rm_session_open(struct fl_env *env, fl_cap *rms)
{
    struct fl_req_rm_session_open q;
    fl__hdr(&q, FL_REQ_RM_SESSION_OPEN);
    q.ram_quota = FL_RM_SESSION_RAM_QUOTA;
    q.cap_quota = FL_RM_SESSION_CAP_QUOTA;
    return fl__rpc_val(env, &q, sizeof(q), rms);
}

int fl_rm_session_close(struct fl_env *env, fl_cap rms)
{
    return fl__cap_req(env, FL_REQ_RM_SESSION_CLOSE, rms, NULL);
}

int fl_rm_session_upgrade(struct fl_env *env, fl_cap rms, size_t ram_quota, size_t cap_quota)
{
    return fl__upgrade(env, FL_REQ_RM_SESSION_UPGRADE, rms, ram_quota, cap_quota);
}

static int create(struct fl_env *env, fl_cap rms, size_t size, fl_cap *rm)
{
    struct fl_req_rm_create q;
    fl__hdr(&q, FL_REQ_RM_CREATE);
    q.rms = rms;
    q.size = size;
    return fl__rpc_val(env, &q, sizeof(q), rm);
}

int fl_rm_create(struct fl_env *env, fl_cap rms, size_t size, fl_cap *rm)
{
    /* Rm_connection::create: upgrade what ran out, and try again. */
    for (int upgrades = 0;; upgrades++) {
        int r = create(env, rms, size, rm);
        if ((r != -FL_E_OUT_OF_RAM && r != -FL_E_OUT_OF_CAPS) || upgrades == CREATE_UPGRADES)
            return r;
        int u = r == -FL_E_OUT_OF_RAM
                    ? fl_rm_session_upgrade(env, rms, FL_RM_SESSION_UPGRADE_RAM, 0)
                    : fl_rm_session_upgrade(env, rms, 0, FL_RM_SESSION_UPGRADE_CAPS);
        if (u < 0) return u;
    }
}

int fl_rm_destroy(struct fl_env *env, fl_cap rms, fl_cap rm)
{
    struct fl_req_rm_destroy q;
    fl__hdr(&q, FL_REQ_RM_DESTROY);
    q.rms = rms;
    q.rm = rm;
    return fl__rpc(env, &q, sizeof(q), -1, NULL);
}
