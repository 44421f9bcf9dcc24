/*
 * Region maps: a component's address space, or a managed region map whose
 * dataspace can be attached elsewhere. attach checks in Genode's order
 * (offset alignment, a valid dataspace -- both in core_rm_rpc_attach -- then
 * offset and size against the dataspace, then the place in the map; README's
 * API section and tests/integration/test_attach_errors.c list them).
 */
#include "../common/log.h"
#include "agent.h"
#include "dataspace.h"
#include "fault.h"
#include "mapping.h"
#include "object.h"
#include "region_map.h"
#include "revoke.h"
#include "rm_session.h"
#include "rpc.h"
#include "session.h"
#include "signal_context.h"
#include "sync_channel.h"

#include <errno.h>

#include <stdlib.h>

struct fl_region_map *core_region_map_create(struct fl_session *owner, uint64_t base, uint64_t size,
                                             bool managed)
{
    struct fl_region_map *rm = calloc(1, sizeof(*rm));
    if (!rm) return NULL;
    rm->obj.kind = FL_OBJ_REGION_MAP;
    rm->obj.refs = 1;
    rm->obj.owner = owner;
    fl_list_add_tail(&owner->objects, &rm->obj.owner_link);
    fl_placement_init(&rm->placement, base, size);
    fl_list_init(&rm->faulters);
    if (managed) {
        /* A managed map: its dataspace lives as long as the map. */
        struct fl_dataspace *ds = calloc(1, sizeof(*ds));
        if (!ds) {
            fl_list_del(&rm->obj.owner_link);
            free(rm);
            return NULL;
        }
        ds->obj.kind = FL_OBJ_DATASPACE;
        ds->obj.refs = 1; /* held by rm */
        fl_list_init(&ds->obj.owner_link);
        fl_list_init(&ds->regions);
        ds->size = size;
        ds->memfd = -1;
        ds->ready = true;
        ds->rm = rm;
        rm->ds = ds;
    }
    return rm;
}

void core_region_map_set_fault_handler(struct fl_region_map *rm, struct fl_signal *sig)
{
    if (rm->fault_handler) core_object_unref(&rm->fault_handler->obj);
    rm->fault_handler = sig;
    if (sig) core_object_ref(&sig->obj);
}

int core_rm_attach(struct fl_region_map *rm, struct fl_dataspace *ds,
                   const struct fl_req_rm_attach *req, uint64_t *start, uint64_t *size_out)
{
    if (req->offset >= ds->size) return -EEXIST;
    uint64_t size = req->size ? req->size : ds->size - req->offset;
    uint64_t rounded = (size + FL_PAGE_SIZE - 1) & ~(uint64_t)(FL_PAGE_SIZE - 1);
    if (rounded < size || rounded > ds->size - req->offset) return -EEXIST;
    size = rounded;

    uint64_t at;
    if (req->flags & FL_ATTACH_USE_AT) {
        at = req->at;
        if ((at & (FL_PAGE_SIZE - 1)) || !fl_placement_is_free(&rm->placement, at, size))
            return -EEXIST;
    } else if (fl_placement_find(&rm->placement, size, req->offset, &at) < 0) {
        return -EEXIST;
    }

    struct fl_session *payer = rm->obj.owner;
    if (!payer) return -EBADF;
    int r = core_quota_charge(payer, FL_COST_REGION, 0, 0);
    if (r < 0) return r;
    struct fl_region *reg = calloc(1, sizeof(*reg));
    if (!reg || fl_placement_insert(&rm->placement, at, size, reg) < 0) {
        free(reg);
        core_quota_release(payer, FL_COST_REGION, 0, 0);
        return -ENXIO; /* as Genode reports a metadata construction failure */
    }
    reg->rm = rm;
    reg->start = at;
    reg->size = size;
    reg->offset = req->offset;
    reg->ds = ds;
    reg->write = req->flags & FL_ATTACH_WRITEABLE;
    reg->exec = req->flags & FL_ATTACH_EXECUTABLE;
    core_object_ref(&ds->obj);
    fl_list_add_tail(&ds->regions, &reg->ds_link);

    core_mapping_map_region(reg);
    core_fault_wake_region(rm, at, size);
    *start = at;
    *size_out = size;
    return 0;
}

static void region_remove(struct fl_region_map *rm, struct fl_region *reg, bool revoke)
{
    fl_placement_remove(&rm->placement, reg->start);
    if (revoke) core_mapping_revoke(rm, reg->start, reg->size);
    if (reg->ds) {
        fl_list_del(&reg->ds_link);
        core_object_unref(&reg->ds->obj);
    }
    core_quota_release(rm->obj.owner, FL_COST_REGION, 0, 0); /* no owner: core's budget */
    free(reg);
}

/* --strict: whoever kept the memfd of detached memory, or pinned its pages,
 * must lose them too. Revoke the dataspace everywhere, make every agent drop
 * its descriptor, and (once they acknowledged) move it to a fresh memfd. */
static void strict_move(struct fl_dataspace *ds)
{
    /* A ROM module's memfd is sealed: nobody can write it, nothing to move. */
    if (ds->memfd < 0 || ds->moving || ds->obj.dead || ds->read_only) return;
    ds->moving = true;
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &ds->regions)
    {
        struct fl_region *r = fl_list_entry(pos, struct fl_region, ds_link);
        core_mapping_revoke(r->rm, r->start, r->size);
    }
    core_agent_forget_memfd(ds);
    core_revoke_move(ds);
}

int core_rm_detach(struct fl_region_map *rm, uint64_t at)
{
    const struct fl_span *span = fl_placement_lookup(&rm->placement, at);
    if (!span) {
        fl_debug("detach at %#llx: no region there, ignored", (unsigned long long)at);
        return 0;
    }
    struct fl_dataspace *ds = ((struct fl_region *)span->owner)->ds;
    if (fl_core.cfg.strict && ds) strict_move(ds);
    region_remove(rm, span->owner, true);
    return 0;
}

void core_region_reserve(struct fl_region *reg)
{
    /* The memory is gone (its memfd is being punched); the range stays taken. */
    core_mapping_revoke(reg->rm, reg->start, reg->size);
    fl_list_del(&reg->ds_link);
    core_object_unref(&reg->ds->obj);
    reg->ds = NULL;
}

void core_region_map_destroy(struct fl_region_map *rm)
{
    core_fault_map_dying(rm);
    core_fault_page_release(rm);
    if (rm->ds) {
        core_object_destroy(&rm->ds->obj); /* parents' regions become reserved; drops rm's ref */
        rm->ds = NULL;
    }
    bool is_as = rm->address_space_of != NULL;
    while (rm->placement.count)
        region_remove(rm, rm->placement.spans[rm->placement.count - 1].owner, !is_as);
    core_region_map_set_fault_handler(rm, NULL);
    if (is_as) rm->address_space_of->address_space = NULL;
    rm->address_space_of = NULL;
    if (rm->rms) core_rm_session_map_gone(rm); /* its charge returns to the RM session */
}

/* ---- requests ---- */

int core_rm_rpc_attach(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_rm_attach *m = msg;
    struct fl_region_map *rm = (void *)core_cap_lookup(s, m->rm, FL_OBJ_REGION_MAP);
    /* Genode checks the offset before the dataspace. */
    if (!rm) return -EBADF;
    if (m->offset & (FL_PAGE_SIZE - 1)) return -EEXIST;
    struct fl_dataspace *ds = (void *)core_cap_lookup(s, m->ds, FL_OBJ_DATASPACE);
    if (!ds || (ds->memfd >= 0 && !ds->ready)) return -ENXIO;
    int r = core_rm_attach(rm, ds, m, &v[0], &v[1]);
    if (r == 0 && rm->address_space_of) v[2] = core_sync_offered(ds); /* sync_channel.c */
    return r;
}

int core_rm_rpc_detach(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    const struct fl_req_rm_detach *m = msg;
    struct fl_region_map *rm = (void *)core_cap_lookup(s, m->rm, FL_OBJ_REGION_MAP);
    if (!rm) return -EBADF;
    /* Genode: when detach returns, no address space can touch the range. */
    core_revoke_begin(s, m->hdr.id);
    int r = core_rm_detach(rm, m->at);
    if (core_revoke_end()) return CORE_RPC_DEFERRED; /* replied when every agent revoked */
    return r;
}

int core_rm_rpc_dataspace(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_cap *m = msg;
    struct fl_region_map *rm = (void *)core_cap_lookup(s, m->cap, FL_OBJ_REGION_MAP);
    if (!rm || !rm->ds) return -EBADF;
    if (rm->obj.owner != s) return core_cap_insert_charged(s, &rm->ds->obj, &v[0]);
    if (core_cap_hold_again(s, rm->ds_cap, &rm->ds->obj)) {
        /* Genode: the map has one dataspace capability, counted per hold. */
        v[0] = rm->ds_cap;
        return 0;
    }
    /* The creator's slot, paid with the map's second capability. */
    int r = core_cap_insert(s, &rm->ds->obj, &v[0]);
    if (r == 0) rm->ds_cap = v[0];
    return r;
}

int core_rm_rpc_fault_handler(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_rm_fault_handler *m = msg;
    struct fl_region_map *rm = (void *)core_cap_lookup(s, m->rm, FL_OBJ_REGION_MAP);
    if (!rm) return -EBADF;
    struct fl_signal *sig = (void *)core_cap_lookup(s, m->sigh, FL_OBJ_SIGNAL);
    core_region_map_set_fault_handler(rm, sig); /* an invalid capability disables reflection */
    v[0] = core_fault_page_assign(s, rm);       /* fault() from memory from now on */
    return 0;
}

int core_rm_rpc_fault(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_cap *m = msg;
    struct fl_region_map *rm = (void *)core_cap_lookup(s, m->cap, FL_OBJ_REGION_MAP);
    if (!rm) return -EBADF;
    struct fl_fault f = {FL_FAULT_NONE, 0};
    core_fault_state(rm, &f);
    v[0] = f.type, v[1] = f.addr;
    return 0;
}
