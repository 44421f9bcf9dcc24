/*
 * Quotas: a session's RAM and capability quota, core's RAM budget for all
 * top-level sessions, core's descriptor budget, and the quotas a PD session
 * moves to an RM session (struct core_quota). Everything core keeps for a
 * session is charged here (the charges are in src/common/protocol.h).
 */
#include "object.h"
#include "session.h"

#include <errno.h>

int core_quota_charge(struct fl_session *s, uint64_t ram, uint64_t caps, long fds)
{
    /* A child's RAM was counted against core's budget when its parent funded
     * it; without a session only core's own budgets are charged. */
    bool global = !s || !s->parent_id;
    if (s && ram > s->ram_quota - s->ram_used) return -ENOMEM;
    if (global && ram > fl_core.cfg.ram_budget - fl_core.ram_used) return -ENOMEM;
    if (s && caps > s->cap_quota - s->cap_used) return -EMFILE;
    if (fds > fl_core.fd_budget - fl_core.fd_used) return -EMFILE;
    if (s) {
        s->ram_used += ram;
        s->cap_used += caps;
    }
    if (global) fl_core.ram_used += ram;
    fl_core.fd_used += fds;
    return 0;
}

void core_quota_grow(struct fl_session *s, uint64_t ram, uint64_t caps)
{
    s->ram_quota += ram;
    s->cap_quota += caps;
}

void core_quota_release(struct fl_session *s, uint64_t ram, uint64_t caps, long fds)
{
    if (s) {
        s->ram_used -= ram;
        s->cap_used -= caps;
    }
    if (!s || !s->parent_id) fl_core.ram_used -= ram;
    fl_core.fd_used -= fds;
}

int core_quota_spend(struct core_quota *q, uint64_t ram, uint64_t caps)
{
    if (ram > q->ram_quota - q->ram_used) return -ENOMEM;
    if (caps > q->cap_quota - q->cap_used) return -EMFILE;
    q->ram_used += ram;
    q->cap_used += caps;
    return 0;
}

void core_quota_replenish(struct core_quota *q, uint64_t ram, uint64_t caps)
{
    q->ram_used -= ram;
    q->cap_used -= caps;
}

int core_quota_donate(struct fl_session *s, struct core_quota *q, uint64_t ram, uint64_t caps)
{
    int r = core_quota_charge(s, ram, caps, 0);
    if (r < 0) return r;
    q->ram_quota += ram;
    q->cap_quota += caps;
    return 0;
}

void core_quota_return(struct fl_session *s, struct core_quota *q)
{
    core_quota_release(s, q->ram_quota, q->cap_quota, 0);
    q->ram_quota = q->ram_used = q->cap_quota = q->cap_used = 0;
}
