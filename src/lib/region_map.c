/* Region maps: attach, detach, fault handler and fault state. */
#include "internal.h"

int fl_region_map_attach(struct fl_env *env, fl_cap rm, fl_cap ds, const struct fl_attr *attr,
                         struct fl_range *range)
{
    struct fl_req_rm_attach q;
    fl__hdr(&q, FL_REQ_RM_ATTACH);
    q.rm = rm;
    q.ds = ds;
    q.size = attr->size;
    q.offset = attr->offset;
    q.at = attr->at;
    q.flags = (attr->use_at ? FL_ATTACH_USE_AT : 0) |
              (attr->executable ? FL_ATTACH_EXECUTABLE : 0) |
              (attr->writeable ? FL_ATTACH_WRITEABLE : 0);
    struct fl_msg_reply rep;
    int r = fl__rpc(env, &q, sizeof(q), -1, &rep);
    if (r == 0 && (rep.val[2] & 1) && rm == env->address_space) {
        /* A managed dataspace served synchronously: the local region mapper
         * takes the range over (lrm.c; doc/async-vs-sync.md). */
        r = fl__lrm_attached(env, ds, rep.val[0], rep.val[1], attr->offset, attr->writeable);
        if (r < 0) fl_region_map_detach(env, rm, rep.val[0]);
    }
    if (r == 0 && range) {
        range->start = rep.val[0];
        range->num_bytes = rep.val[1];
    }
    return r;
}

int fl_region_map_detach(struct fl_env *env, fl_cap rm, uintptr_t at)
{
    struct fl_req_rm_detach q;
    fl__hdr(&q, FL_REQ_RM_DETACH);
    q.rm = rm;
    q.at = at;
    if (rm == env->address_space) fl__lrm_release(env, at, 0); /* lrm.c */
    return fl__rpc(env, &q, sizeof(q), -1, NULL);
}

void *fl_attach(struct fl_env *env, fl_cap ds, int *err)
{
    struct fl_attr a = {.writeable = true};
    struct fl_range range;
    int r = fl_region_map_attach(env, env->address_space, ds, &a, &range);
    if (err) *err = r;
    return r < 0 ? NULL : (void *)range.start;
}

int fl_detach(struct fl_env *env, const void *addr)
{
    return fl_region_map_detach(env, env->address_space, (uintptr_t)addr);
}

int fl_region_map_fault_handler(struct fl_env *env, fl_cap rm, fl_cap sigh)
{
    struct fl_req_rm_fault_handler q;
    struct fl_msg_reply rep;
    fl__hdr(&q, FL_REQ_RM_FAULT_HANDLER);
    q.rm = rm;
    q.sigh = sigh;
    int r = fl__rpc(env, &q, sizeof(q), -1, &rep);
    if (r < 0) return r;
    /* Core shows this map's fault state in slot val[0] of our fault page
     * (the agent mapped the page before it handed us this reply). */
    pthread_mutex_lock(&env->lock);
    size_t i = 0;
    while (i < env->nslots && env->slots[i].rm != rm) i++;
    if (i == env->nslots && i < sizeof(env->slots) / sizeof(env->slots[0])) env->nslots++;
    if (i < env->nslots) env->slots[i] = (struct fl__slot){rm, (unsigned)rep.val[0]};
    pthread_mutex_unlock(&env->lock);
    return 0;
}

/* The map's fault state from the fault page; false if it has no slot. */
static bool fault_from_page(struct fl_env *env, fl_cap rm, struct fl_fault *fault)
{
    const struct fl_fault_slot *page = atomic_load(&env->fault_page);
    if (!page) return false;
    unsigned slot = 0;
    pthread_mutex_lock(&env->lock);
    for (size_t i = 0; i < env->nslots; i++)
        if (env->slots[i].rm == rm) slot = env->slots[i].slot;
    pthread_mutex_unlock(&env->lock);
    if (!slot || slot >= FL_FAULT_PAGE_SIZE / sizeof(*page)) return false;
    const struct fl_fault_slot *s = &page[slot];
    for (;;) {
        uint32_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (seq & 1) continue; /* core is writing it */
        uint32_t type = atomic_load_explicit(&s->type, memory_order_relaxed);
        uint64_t addr = atomic_load_explicit(&s->addr, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) != seq) continue;
        if (type == FL_FAULT_SLOT_GONE) return false; /* destroyed, or another's handler */
        fault->type = (enum fl_fault_type)type;
        fault->addr = addr;
        return true;
    }
}

int fl_region_map_fault(struct fl_env *env, fl_cap rm, struct fl_fault *fault)
{
    if (fault_from_page(env, rm, fault)) return 0;
    struct fl_msg_reply rep;
    int r = fl__cap_req(env, FL_REQ_RM_FAULT, rm, &rep);
    if (r == 0) {
        fault->type = (enum fl_fault_type)rep.val[0];
        fault->addr = rep.val[1];
    }
    return r;
}

int fl_region_map_dataspace(struct fl_env *env, fl_cap rm, fl_cap *ds)
{
    struct fl_msg_reply rep;
    int r = fl__cap_req(env, FL_REQ_RM_DATASPACE, rm, &rep);
    if (r == 0) *ds = rep.val[0];
    return r;
}
