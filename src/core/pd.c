/*
 * PD sessions: a parent creates a session for a child it is about to start
 * and funds it from its own quota (Genode's PD session). The parent holds the
 * child's address-space capability from the start, so it can install a fault
 * handler on it and attach into it; the child's first connection claims the
 * session with a single-use token the parent hands it out of band.
 */
#include "../common/log.h"
#include "loop.h"
#include "object.h"
#include "pd.h"
#include "region_map.h"
#include "rpc.h"
#include "session.h"

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Lowest address a parent may place a child's window at, and the highest end. */
#define WINDOW_MIN 0x10000ull
#define WINDOW_END (1ull << 47)

static void reply_pd(struct fl_session *s, uint64_t req_id, int status, fl_wire_cap cap,
                     const uint8_t *token)
{
    struct fl_msg_reply r;
    fl_msg_init(&r, FL_MSG_REPLY, req_id);
    r.status = core_rpc_status(status);
    r.val[0] = cap;
    if (token) memcpy(r.token, token, FL_TOKEN_BYTES);
    core_session_send(s, &r, sizeof(r), -1);
}

void core_pd_create(struct fl_session *parent, const struct fl_req_pd_create *m)
{
    uint64_t id = m->hdr.id;
    if (!m->window_size || (m->window_base | m->window_size) & (FL_PAGE_SIZE - 1) ||
        m->window_base < WINDOW_MIN || m->window_base > WINDOW_END ||
        m->window_size > WINDOW_END - m->window_base) {
        reply_pd(parent, id, -EINVAL, 0, NULL);
        return;
    }
    /* The child's quota, one capability for the PD itself, and the descriptors
     * its connection will need. */
    int r = core_quota_charge(parent, m->ram_quota, m->cap_quota + 1, 3);
    if (r < 0) {
        reply_pd(parent, id, r, 0, NULL);
        return;
    }
    uint8_t token[FL_TOKEN_BYTES];
    struct fl_session *c = NULL;
    if (getrandom(token, FL_TOKEN_BYTES, 0) != FL_TOKEN_BYTES ||
        !(c = core_session_new(m->ram_quota, m->cap_quota))) {
        core_quota_release(parent, m->ram_quota, m->cap_quota + 1, 3);
        reply_pd(parent, id, -ENOMEM, 0, NULL);
        return;
    }
    memcpy(c->claim_token, token, FL_TOKEN_BYTES);
    c->unclaimed = true;
    c->parent_id = parent->id;
    c->funded_ram = m->ram_quota;
    c->funded_caps = m->cap_quota;
    c->window_base = m->window_base;
    c->window_size = m->window_size;
    snprintf(c->label, sizeof(c->label), "child of session %llu", (unsigned long long)parent->id);
    c->address_space = core_region_map_create(c, m->window_base, m->window_size, false);
    fl_wire_cap as = 0;
    if (!c->address_space || core_cap_insert(parent, &c->address_space->obj, &as) < 0) {
        core_session_close(c, NULL); /* refunds the parent */
        reply_pd(parent, id, -ENOMEM, 0, NULL);
        return;
    }
    c->address_space->address_space_of = c;
    core_session_log(
        parent, FL_LOG_INFO,
        "session %llu: created PD session %llu for a child (RAM %llu KiB, %llu caps, window "
        "[%#llx, %#llx))",
        (unsigned long long)parent->id, (unsigned long long)c->id,
        (unsigned long long)(m->ram_quota >> 10), (unsigned long long)m->cap_quota,
        (unsigned long long)m->window_base, (unsigned long long)(m->window_base + m->window_size));
    reply_pd(parent, id, 0, as, c->claim_token);
}

/* Genode's session upgrade: quota moves from the parent to the child and
 * returns to the parent when the child's session ends. Only the creator can
 * upgrade: the quota it funds is the quota it gets back. */
int core_pd_upgrade(struct fl_session *s, const struct fl_req_pd_upgrade *m, uint64_t v[4])
{
    struct fl_region_map *rm = (void *)core_cap_lookup(s, m->pd, FL_OBJ_REGION_MAP);
    struct fl_session *c = rm ? rm->address_space_of : NULL;
    if (!c) return -EBADF;
    if (c->parent_id != s->id || c->closing) return -EPERM;
    int r = core_quota_charge(s, m->ram_quota, m->cap_quota, 0);
    if (r < 0) return r;
    core_quota_grow(c, m->ram_quota, m->cap_quota);
    c->funded_ram += m->ram_quota;
    c->funded_caps += m->cap_quota;
    core_session_log(s, FL_LOG_INFO,
                     "session %llu: upgraded PD session %llu by %llu KiB and %llu caps",
                     (unsigned long long)s->id, (unsigned long long)c->id,
                     (unsigned long long)(m->ram_quota >> 10), (unsigned long long)m->cap_quota);
    v[0] = c->ram_quota, v[1] = c->ram_used, v[2] = c->cap_quota, v[3] = c->cap_used;
    return 0;
}

void core_pd_claim(struct fl_session *fresh, const struct fl_req_pd_claim *m)
{
    struct fl_session *c = NULL;
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *x = fl_list_entry(pos, struct fl_session, link);
        if (x->closing || !x->unclaimed) continue;
        unsigned diff = 0;
        for (unsigned j = 0; j < FL_TOKEN_BYTES; j++) diff |= x->claim_token[j] ^ m->token[j];
        if (!diff) c = x;
    }
    if (!c) {
        core_session_reply(fresh, m->hdr.id, -ENOKEY, NULL, 0);
        return;
    }
    c->unclaimed = false;
    memset(c->claim_token, 0, sizeof(c->claim_token));
    if (core_session_take_connection(c, fresh) < 0) return;
    uint64_t v[2] = {c->window_base, c->window_size};
    fl_info("session %llu: claimed by %s", (unsigned long long)c->id, c->label);
    core_session_reply(c, m->hdr.id, 0, v, 2);
}

void core_pd_session_gone(struct fl_session *s)
{
    /* A parent's children go with it (Genode: a PD dies with its parent). */
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *x = fl_list_entry(pos, struct fl_session, link);
        if (x->parent_id == s->id && !x->closing)
            core_session_close(x, "its parent session closed");
    }
    /* A child's quota returns to its parent. */
    if (s->parent_id) {
        struct fl_session *p = core_session_by_id(s->parent_id);
        /* The parent gone first: the RAM goes back to core's budget only. */
        core_quota_release(p, s->funded_ram, p ? s->funded_caps + 1 : 0, 0);
        s->parent_id = 0;
    }
}

/* ---- requests ---- */

int core_pd_rpc_create(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    core_pd_create(s, msg); /* replies itself, with a token */
    return CORE_RPC_DEFERRED;
}

int core_pd_rpc_upgrade(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    return core_pd_upgrade(s, msg, v);
}

int core_pd_rpc_session_info(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)msg, (void)fd;
    v[0] = s->ram_quota, v[1] = s->ram_used, v[2] = s->cap_quota, v[3] = s->cap_used;
    return 0;
}
