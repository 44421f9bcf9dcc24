/*
 * Capabilities, objects and quotas.
 *
 * A capability is an index into the session's own table plus a generation:
 * a session can only name what is in its table, so another session's handles
 * mean nothing to it, and a reused slot does not revive a released handle.
 * Delegation goes through export tokens: 128 random bits, single use.
 */
#include "dataspace.h"
#include "object.h"
#include "region_map.h"
#include "rpc.h"
#include "session.h"
#include "signal_context.h"

#include <errno.h>

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct token {
    uint8_t bytes[FL_TOKEN_BYTES];
    struct fl_object *obj;
    uint64_t exporter; /* session id: an outstanding token costs it one capability */
};
static struct token *tokens;
static size_t ntokens, tokens_cap;

void fl_object_ref(struct fl_object *obj)
{
    obj->refs++;
}

void fl_object_unref(struct fl_object *obj)
{
    if (--obj->refs > 0) return;
    switch (obj->kind) {
    case FL_OBJ_DATASPACE: {
        struct fl_dataspace *ds = (void *)obj;
        free(ds);
        break;
    }
    case FL_OBJ_REGION_MAP: {
        struct fl_region_map *rm = (void *)obj;
        fl_placement_fini(&rm->placement);
        free(rm);
        break;
    }
    case FL_OBJ_SIGNAL: free(obj); break;
    }
}

void fl_object_destroy(struct fl_object *obj)
{
    if (obj->dead) return;
    obj->dead = true;
    fl_tokens_forget_object(obj);
    switch (obj->kind) {
    case FL_OBJ_DATASPACE: fl_dataspace_destroy((void *)obj); break;
    case FL_OBJ_REGION_MAP: fl_region_map_destroy((void *)obj); break;
    case FL_OBJ_SIGNAL: fl_signal_destroy((void *)obj); break;
    }
    if (obj->owner) {
        fl_list_del(&obj->owner_link);
        obj->owner = NULL;
    }
    fl_object_unref(obj); /* the owner's reference */
}

/* O(1): free slots form a list through next_free (an index + 1; 0 ends it). */
static int cap_insert(struct fl_session *s, struct fl_object *obj, bool charged, fl_wire_cap *cap)
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
    if (charged) {
        int r = fl_quota_charge(s, 0, 1, 0);
        if (r < 0) return r;
    }
    size_t i = s->cap_free - 1;
    struct fl_cap_entry *e = &s->caps[i];
    s->cap_free = e->next_free;
    e->next_free = 0;
    e->obj = obj;
    e->holds = 1;
    e->charged = charged;
    e->gen++;
    if (e->gen == 0) e->gen = 1;
    fl_object_ref(obj);
    *cap = ((uint64_t)e->gen << 32) | (uint64_t)(i + 1);
    return 0;
}

int fl_cap_insert(struct fl_session *s, struct fl_object *obj, fl_wire_cap *cap)
{
    return cap_insert(s, obj, false, cap);
}

int fl_cap_insert_charged(struct fl_session *s, struct fl_object *obj, fl_wire_cap *cap)
{
    return cap_insert(s, obj, true, cap);
}

static struct fl_cap_entry *entry(struct fl_session *s, fl_wire_cap cap)
{
    uint64_t idx = cap & 0xffffffffu;
    if (idx == 0 || idx > s->ncaps) return NULL;
    struct fl_cap_entry *e = &s->caps[idx - 1];
    if (!e->obj || e->gen != (uint32_t)(cap >> 32)) return NULL;
    return e;
}

struct fl_object *fl_cap_lookup(struct fl_session *s, fl_wire_cap cap, enum fl_obj_kind kind)
{
    struct fl_cap_entry *e = entry(s, cap);
    if (!e || e->obj->dead || e->obj->kind != kind) return NULL;
    return e->obj;
}

static void slot_release(struct fl_session *s, struct fl_cap_entry *e)
{
    struct fl_object *o = e->obj;
    e->obj = NULL;
    if (e->charged) fl_quota_release(s, 0, 1, 0);
    e->charged = false;
    e->next_free = s->cap_free;
    s->cap_free = (uint32_t)(e - s->caps) + 1;
    fl_object_unref(o);
}

int fl_cap_drop(struct fl_session *s, fl_wire_cap cap)
{
    struct fl_cap_entry *e = entry(s, cap);
    if (!e) return -EBADF;
    slot_release(s, e);
    return 0;
}

int fl_cap_put(struct fl_session *s, fl_wire_cap cap)
{
    struct fl_cap_entry *e = entry(s, cap);
    if (!e) return -EBADF;
    if (--e->holds == 0) slot_release(s, e);
    return 0;
}

bool fl_cap_hold_again(struct fl_session *s, fl_wire_cap cap, const struct fl_object *obj)
{
    struct fl_cap_entry *e = entry(s, cap);
    if (!e || e->obj != obj || e->holds == UINT32_MAX) return false;
    e->holds++;
    return true;
}

void fl_cap_drop_all(struct fl_session *s)
{
    for (size_t i = 0; i < s->ncaps; i++)
        if (s->caps[i].obj) slot_release(s, &s->caps[i]);
}

int core_cap_export(struct fl_session *s, fl_wire_cap cap, uint8_t token[FL_TOKEN_BYTES])
{
    struct fl_cap_entry *e = entry(s, cap);
    if (!e || e->obj->dead) return -EBADF;
    if (ntokens == tokens_cap) {
        size_t n = tokens_cap ? tokens_cap * 2 : 16;
        struct token *t = realloc(tokens, n * sizeof(*t));
        if (!t) return -ENOMEM;
        tokens = t;
        tokens_cap = n;
    }
    if (getrandom(token, FL_TOKEN_BYTES, 0) != FL_TOKEN_BYTES) return -EIO;
    int r = fl_quota_charge(s, 0, 1, 0);
    if (r < 0) return r;
    memcpy(tokens[ntokens].bytes, token, FL_TOKEN_BYTES);
    tokens[ntokens].exporter = s->id;
    tokens[ntokens].obj = e->obj;
    fl_object_ref(e->obj);
    e->obj->tokens++;
    ntokens++;
    return 0;
}

static void token_remove(size_t i, bool refund)
{
    struct fl_object *o = tokens[i].obj;
    struct fl_session *exporter = fl_session_by_id(tokens[i].exporter);
    if (exporter && refund) fl_quota_release(exporter, 0, 1, 0);
    o->tokens--;
    tokens[i] = tokens[--ntokens];
    fl_object_unref(o);
}

int core_cap_import(struct fl_session *s, const uint8_t token[FL_TOKEN_BYTES], fl_wire_cap *cap,
                    enum fl_obj_kind *kind)
{
    for (size_t i = 0; i < ntokens; i++) {
        /* Every byte is compared, so the time taken says nothing about a guess. */
        unsigned diff = 0;
        for (unsigned j = 0; j < FL_TOKEN_BYTES; j++) diff |= tokens[i].bytes[j] ^ token[j];
        if (diff) continue;
        struct fl_object *o = tokens[i].obj;
        if (o->dead) {
            token_remove(i, true);
            return -ENOKEY;
        }
        /* The importer pays for its slot. The token's capability returns to
         * its exporter first, so a session importing its own token at a full
         * quota trades one for the other; if the import fails, nothing moved. */
        struct fl_session *exporter = fl_session_by_id(tokens[i].exporter);
        if (exporter) fl_quota_release(exporter, 0, 1, 0);
        int r = fl_cap_insert_charged(s, o, cap);
        if (r < 0) {
            if (exporter) (void)fl_quota_charge(exporter, 0, 1, 0); /* just released: fits */
            return r;
        }
        *kind = o->kind;
        token_remove(i, false); /* single use */
        return 0;
    }
    return -ENOKEY;
}

void fl_tokens_forget_object(struct fl_object *obj)
{
    /* Most objects were never exported: no walk over everyone's tokens. */
    for (size_t i = 0; i < ntokens && obj->tokens;) {
        if (tokens[i].obj == obj)
            token_remove(i, true);
        else
            i++;
    }
}

int fl_quota_charge(struct fl_session *s, uint64_t ram, uint64_t caps, long fds)
{
    /* A child's RAM was counted against core's budget when its parent funded it. */
    bool global = !s->parent_id;
    if (ram > s->ram_quota - s->ram_used) return -ENOMEM;
    if (global && ram > fl_core.cfg.ram_budget - fl_core.ram_used) return -ENOMEM;
    if (caps > s->cap_quota - s->cap_used) return -EMFILE;
    if (fds > fl_core.fd_budget - fl_core.fd_used) return -EMFILE;
    s->ram_used += ram;
    if (global) fl_core.ram_used += ram;
    s->cap_used += caps;
    fl_core.fd_used += fds;
    return 0;
}

void fl_quota_release(struct fl_session *s, uint64_t ram, uint64_t caps, long fds)
{
    if (s) {
        s->ram_used -= ram;
        s->cap_used -= caps;
    }
    if (!s || !s->parent_id) fl_core.ram_used -= ram;
    fl_core.fd_used -= fds;
}

/* ---- requests ---- */

int core_cap_rpc_export(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    const struct fl_req_cap *m = msg;
    uint8_t token[FL_TOKEN_BYTES];
    int r = core_cap_export(s, m->cap, token);
    if (r < 0) return r;
    struct fl_msg_reply rep;
    fl_msg_init(&rep, FL_MSG_REPLY, m->hdr.id);
    memcpy(rep.token, token, FL_TOKEN_BYTES);
    fl_session_send(s, &rep, sizeof(rep), -1);
    return CORE_RPC_DEFERRED;
}

int core_cap_rpc_import(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_cap_import *m = msg;
    enum fl_obj_kind kind = 0;
    int r = core_cap_import(s, m->token, &v[0], &kind);
    v[1] = kind;
    return r;
}

int core_cap_rpc_release(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    const struct fl_req_cap *m = msg;
    return fl_cap_put(s, m->cap);
}
