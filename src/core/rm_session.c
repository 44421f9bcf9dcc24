/*
 * RM sessions (Genode's Rm_connection): a PD session opens one with quota it
 * moves there, creates managed region maps from it, each paid from the RM
 * session's quota, moves more quota to it when it runs out (an upgrade), and
 * closes it, which destroys every map created from it and returns the quota.
 * The amounts are Genode's (FL_COST_RM_* in src/common/protocol.h). Only the
 * PD session that opened an RM session can use it: any other, even one that
 * imported its capability, gets DENIED.
 */
#include "../common/log.h"
#include "dataspace.h"
#include "object.h"
#include "region_map.h"
#include "revoke.h"
#include "rm_session.h"
#include "rpc.h"
#include "session.h"

#include <errno.h>
#include <stdlib.h>

/* The RM session cap names in s's table, if s opened it: NULL with *err
 * -EBADF (names none) or -EPERM (another's). */
static struct core_rm_session *own(struct fl_session *s, fl_wire_cap cap, int *err)
{
    struct core_rm_session *rms = (void *)core_cap_lookup(s, cap, FL_OBJ_RM_SESSION);
    *err = !rms ? -EBADF : rms->obj.owner != s ? -EPERM : 0;
    return *err ? NULL : rms;
}

/* Destroy a map and the capabilities its creator was given with it (the
 * map's and its dataspace's), unless the creator released them already. */
static void map_destroy(struct fl_region_map *rm)
{
    struct fl_session *owner = rm->obj.owner;
    fl_wire_cap cap = rm->cap, ds_cap = rm->ds_cap;
    const struct fl_object *ds = rm->ds ? &rm->ds->obj : NULL;
    core_object_destroy(&rm->obj); /* parents' regions reserved, revoked; faulters stay */
    if (!owner) return;
    core_cap_drop_if(owner, cap, &rm->obj);
    if (ds) core_cap_drop_if(owner, ds_cap, ds);
}

void core_rm_session_map_gone(struct fl_region_map *rm)
{
    struct core_rm_session *rms = rm->rms;
    fl_list_del(&rm->rms_link);
    rm->rms = NULL;
    core_quota_replenish(&rms->quota, FL_COST_RM_RAM, FL_COST_RM_CAPS);
}

void core_rm_session_destroy(struct core_rm_session *rms)
{
    unsigned n = 0;
    while (!fl_list_empty(&rms->maps)) {
        map_destroy(fl_list_entry(rms->maps.next, struct fl_region_map, rms_link));
        n++;
    }
    struct fl_session *s = rms->obj.owner;
    if (s)
        fl_debug("session %llu: closed an RM session (%u region maps destroyed, %llu KiB and %llu "
                 "caps returned)",
                 (unsigned long long)s->id, n, (unsigned long long)(rms->quota.ram_quota >> 10),
                 (unsigned long long)rms->quota.cap_quota);
    core_quota_return(s, &rms->quota);
}

/* ---- requests ---- */

int core_rm_session_rpc_open(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_rm_session_open *m = msg;
    /* Genode: the donation must pay for the session object (INSUFFICIENT_RAM
     * and _CAPS at session creation). */
    if (m->ram_quota < FL_COST_RM_SESSION_RAM) return -ENOMEM;
    if (m->cap_quota < FL_COST_RM_SESSION_CAPS) return -EMFILE;
    struct core_rm_session *rms = calloc(1, sizeof(*rms));
    if (!rms) return -ENOMEM;
    int r = core_quota_donate(s, &rms->quota, m->ram_quota, m->cap_quota);
    if (r < 0) {
        free(rms);
        return r;
    }
    core_quota_spend(&rms->quota, FL_COST_RM_SESSION_RAM, FL_COST_RM_SESSION_CAPS); /* fits */
    rms->obj.kind = FL_OBJ_RM_SESSION;
    rms->obj.refs = 1;
    rms->obj.owner = s;
    fl_list_add_tail(&s->objects, &rms->obj.owner_link);
    fl_list_init(&rms->maps);
    /* The creator's slot: paid by the session capability. */
    r = core_cap_insert(s, &rms->obj, &v[0]);
    if (r < 0) core_object_destroy(&rms->obj); /* returns the donation */
    return r;
}

int core_rm_session_rpc_close(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    const struct fl_req_cap *m = msg;
    int r;
    struct core_rm_session *rms = own(s, m->cap, &r);
    if (!rms) return r;
    /* As a destroy of each map: it returns once nobody can touch what they showed. */
    core_revoke_begin(s, m->hdr.id);
    core_object_destroy(&rms->obj);
    core_cap_drop(s, m->cap);
    if (core_revoke_end()) return CORE_RPC_DEFERRED; /* replied when every agent revoked */
    return 0;
}

int core_rm_session_rpc_upgrade(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_rm_session_upgrade *m = msg;
    int r;
    struct core_rm_session *rms = own(s, m->rms, &r);
    if (!rms) return r;
    r = core_quota_donate(s, &rms->quota, m->ram_quota, m->cap_quota);
    if (r < 0) return r;
    v[0] = rms->quota.ram_quota, v[1] = rms->quota.ram_used;
    v[2] = rms->quota.cap_quota, v[3] = rms->quota.cap_used;
    return 0;
}

int core_rm_rpc_create(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_rm_create *m = msg;
    int r;
    struct core_rm_session *rms = own(s, m->rms, &r);
    if (!rms) return r;
    uint64_t size = (m->size + FL_PAGE_SIZE - 1) & ~(uint64_t)(FL_PAGE_SIZE - 1);
    if (size < m->size) return -EPERM;
    /* From the RM session's quota: RAM first, then the capability (Genode's
     * Accounted_allocator). */
    r = core_quota_spend(&rms->quota, FL_COST_RM_RAM, FL_COST_RM_CAPS);
    if (r < 0) return r;
    if (size == 0) /* Genode creates it too, and warns: every attach into it conflicts. */
        core_session_log(s, FL_LOG_WARN,
                         "session %llu (%s): a region map of size 0: its allocator is empty, every "
                         "attach into it is REGION_CONFLICT",
                         (unsigned long long)s->id, s->label);
    struct fl_region_map *rm = core_region_map_create(s, 0, size, true);
    if (!rm) {
        core_quota_replenish(&rms->quota, FL_COST_RM_RAM, FL_COST_RM_CAPS);
        return -ENOMEM;
    }
    r = core_cap_insert(s, &rm->obj, &v[0]);
    if (r < 0) {
        core_object_destroy(&rm->obj);
        core_quota_replenish(&rms->quota, FL_COST_RM_RAM, FL_COST_RM_CAPS);
        return r;
    }
    rm->rms = rms;
    rm->cap = v[0];
    fl_list_add_tail(&rms->maps, &rm->rms_link);
    return 0;
}

int core_rm_rpc_destroy(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    const struct fl_req_rm_destroy *m = msg;
    int r;
    struct core_rm_session *rms = own(s, m->rms, &r);
    if (!rms) return r;
    struct fl_region_map *rm = (void *)core_cap_lookup(s, m->rm, FL_OBJ_REGION_MAP);
    if (!rm || rm->rms != rms) return -EBADF; /* not a map of this RM session */
    /* Like detach: it returns once nobody can touch what the map showed. */
    core_revoke_begin(s, m->hdr.id);
    map_destroy(rm);
    core_cap_drop(s, m->rm); /* the slot named, if another than the creator's */
    if (core_revoke_end()) return CORE_RPC_DEFERRED; /* replied when every agent revoked */
    return 0;
}
