/*
 * Export tokens: how a capability travels to another session. 128 random
 * bits, single use; an outstanding token costs its exporter one capability.
 */
#include "object.h"
#include "rpc.h"
#include "session.h"

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

int core_cap_export(struct fl_session *s, fl_wire_cap cap, uint8_t token[FL_TOKEN_BYTES])
{
    struct fl_object *obj = core_cap_object(s, cap);
    if (!obj) return -EBADF;
    if (ntokens == tokens_cap) {
        size_t n = tokens_cap ? tokens_cap * 2 : 16;
        struct token *t = realloc(tokens, n * sizeof(*t));
        if (!t) return -ENOMEM;
        tokens = t;
        tokens_cap = n;
    }
    if (getrandom(token, FL_TOKEN_BYTES, 0) != FL_TOKEN_BYTES) return -EIO;
    int r = core_quota_charge(s, 0, 1, 0);
    if (r < 0) return r;
    memcpy(tokens[ntokens].bytes, token, FL_TOKEN_BYTES);
    tokens[ntokens].exporter = s->id;
    tokens[ntokens].obj = obj;
    core_object_ref(obj);
    obj->tokens++;
    ntokens++;
    return 0;
}

static void token_remove(size_t i, bool refund)
{
    struct fl_object *o = tokens[i].obj;
    struct fl_session *exporter = core_session_by_id(tokens[i].exporter);
    if (exporter && refund) core_quota_release(exporter, 0, 1, 0);
    o->tokens--;
    tokens[i] = tokens[--ntokens];
    core_object_unref(o);
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
        struct fl_session *exporter = core_session_by_id(tokens[i].exporter);
        if (exporter) core_quota_release(exporter, 0, 1, 0);
        int r = core_cap_insert_charged(s, o, cap);
        if (r < 0) {
            if (exporter) (void)core_quota_charge(exporter, 0, 1, 0); /* just released: fits */
            return r;
        }
        *kind = o->kind;
        token_remove(i, false); /* single use */
        return 0;
    }
    return -ENOKEY;
}

void core_tokens_forget_object(struct fl_object *obj)
{
    /* Most objects were never exported: no walk over everyone's tokens. */
    for (size_t i = 0; i < ntokens && obj->tokens;) {
        if (tokens[i].obj == obj)
            token_remove(i, true);
        else
            i++;
    }
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
    core_session_send(s, &rep, sizeof(rep), -1);
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
