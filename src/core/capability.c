/*
 * Capabilities. A capability is an index into the session's own table plus a
 * generation: a session can only name what is in its table, so another
 * session's handles mean nothing to it, and a reused slot does not revive a
 * released handle. Every slot is paid for (object.h).
 */
#include "object.h"
#include "rpc.h"
#include "session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* O(1): free slots form a list through next_free (an index + 1; 0 ends it). */
static int cap_insert(struct fl_session *s, struct fl_object *obj, uint64_t ram, uint32_t caps,
                      fl_wire_cap *cap)
{
    if (!s->cap_free) {
        if (s->ncaps >= FL_CAP_TABLE_MAX) return -EMFILE;
        size_t n = s->ncaps ? s->ncaps * 2 : 16;
        struct fl_cap_entry *c = realloc(s->caps, n * sizeof(*c));
        if (!c) return -ENOMEM;
        memset(c + s->ncaps, 0, (n - s->ncaps) * sizeof(*c));
        for (size_t i = s->ncaps; i < n; i++) c[i].next_free = i + 1 < n ? (uint32_t)(i + 2) : 0;
        s->cap_free = (uint32_t)s->ncaps + 1;
        s->caps = c;
        s->ncaps = n;
    }
    if (ram || caps) {
        int r = core_quota_charge(s, ram, caps, 0);
        if (r < 0) return r;
    }
    size_t i = s->cap_free - 1;
    struct fl_cap_entry *e = &s->caps[i];
    s->cap_free = e->next_free;
    e->next_free = 0;
    e->obj = obj;
    e->holds = 1;
    e->charged_caps = caps;
    e->charged_ram = ram;
    e->gen++;
    if (e->gen == 0) e->gen = 1;
    core_object_ref(obj);
    *cap = ((uint64_t)e->gen << 32) | (uint64_t)(i + 1);
    return 0;
}

int core_cap_insert(struct fl_session *s, struct fl_object *obj, fl_wire_cap *cap)
{
    return cap_insert(s, obj, 0, 0, cap);
}

int core_cap_insert_charged(struct fl_session *s, struct fl_object *obj, fl_wire_cap *cap)
{
    return cap_insert(s, obj, 0, 1, cap);
}

int core_cap_insert_paid(struct fl_session *s, struct fl_object *obj, uint64_t ram, uint32_t caps,
                         fl_wire_cap *cap)
{
    return cap_insert(s, obj, ram, caps, cap);
}

static struct fl_cap_entry *entry(struct fl_session *s, fl_wire_cap cap)
{
    uint64_t idx = cap & 0xffffffffu;
    if (idx == 0 || idx > s->ncaps) return NULL;
    struct fl_cap_entry *e = &s->caps[idx - 1];
    if (!e->obj || e->gen != (uint32_t)(cap >> 32)) return NULL;
    return e;
}

struct fl_object *core_cap_object(struct fl_session *s, fl_wire_cap cap)
{
    struct fl_cap_entry *e = entry(s, cap);
    return e && !e->obj->dead ? e->obj : NULL;
}

struct fl_object *core_cap_lookup(struct fl_session *s, fl_wire_cap cap, enum fl_obj_kind kind)
{
    struct fl_cap_entry *e = entry(s, cap);
    if (!e || e->obj->dead || e->obj->kind != kind) return NULL;
    return e->obj;
}

static void slot_release(struct fl_session *s, struct fl_cap_entry *e)
{
    struct fl_object *o = e->obj;
    e->obj = NULL;
    if (e->charged_ram || e->charged_caps)
        core_quota_release(s, e->charged_ram, e->charged_caps, 0);
    e->charged_caps = 0;
    e->charged_ram = 0;
    e->next_free = s->cap_free;
    s->cap_free = (uint32_t)(e - s->caps) + 1;
    core_object_unref(o);
}

int core_cap_drop(struct fl_session *s, fl_wire_cap cap)
{
    struct fl_cap_entry *e = entry(s, cap);
    if (!e) return -EBADF;
    slot_release(s, e);
    return 0;
}

void core_cap_drop_if(struct fl_session *s, fl_wire_cap cap, const struct fl_object *obj)
{
    struct fl_cap_entry *e = entry(s, cap);
    if (e && e->obj == obj) slot_release(s, e);
}

int core_cap_put(struct fl_session *s, fl_wire_cap cap)
{
    struct fl_cap_entry *e = entry(s, cap);
    if (!e) return -EBADF;
    if (--e->holds == 0) slot_release(s, e);
    return 0;
}

bool core_cap_hold_again(struct fl_session *s, fl_wire_cap cap, const struct fl_object *obj)
{
    struct fl_cap_entry *e = entry(s, cap);
    if (!e || e->obj != obj || e->holds == UINT32_MAX) return false;
    e->holds++;
    return true;
}

void core_cap_drop_all(struct fl_session *s)
{
    for (size_t i = 0; i < s->ncaps; i++)
        if (s->caps[i].obj) slot_release(s, &s->caps[i]);
}

/* ---- requests ---- */

int core_cap_rpc_release(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    const struct fl_req_cap *m = msg;
    return core_cap_put(s, m->cap);
}
