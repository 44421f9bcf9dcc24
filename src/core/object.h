/* faultline-core: objects (object.c), capabilities (capability.c), export tokens
 * (token.c) and quotas (quota.c). */
#ifndef FL_CORE_OBJECT_H
#define FL_CORE_OBJECT_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "../common/list.h"
#include "../common/protocol.h"

/* As the wire names them (CAP_IMPORT's reply). */
enum fl_obj_kind {
    FL_OBJ_DATASPACE = FL_CAP_KIND_DATASPACE,
    FL_OBJ_REGION_MAP = FL_CAP_KIND_REGION_MAP,
    FL_OBJ_SIGNAL = FL_CAP_KIND_SIGNAL,
    FL_OBJ_RM_SESSION = FL_CAP_KIND_RM_SESSION,
};

struct fl_session;

struct fl_object {
    enum fl_obj_kind kind;
    unsigned refs;             /* capabilities, regions and jobs that point here */
    bool dead;                 /* freed/destroyed: every capability to it is invalid */
    unsigned tokens;           /* export tokens outstanding for it */
    struct fl_session *owner;  /* the session that created it; NULL once it is dead */
    struct fl_list owner_link; /* in owner->objects */
};

struct fl_cap_entry {
    struct fl_object *obj; /* NULL: free slot */
    uint32_t gen;
    uint32_t next_free; /* free: the next free slot's index + 1 (0: none) */
    uint32_t holds;     /* times handed out; CAP_RELEASE gives one back */
    /* What it costs its session's quota until released: one capability for a
     * slot that is not the creator's own (an import, ...), a ROM session's
     * quota for a ROM module's (rom.c); 0 for the creator's. */
    uint32_t charged_caps;
    uint64_t charged_ram;
};

#define FL_CAP_TABLE_MAX (1u << 24) /* slots of one session's table */
/* A slot for the object's creator: its charge covers the slot. */
int core_cap_insert(struct fl_session *s, struct fl_object *obj, fl_wire_cap *cap);
/* Any other slot (an import, a further dataspace() of a map): one capability
 * of s's quota until the slot is released. */
int core_cap_insert_charged(struct fl_session *s, struct fl_object *obj, fl_wire_cap *cap);
/* A slot that holds ram and caps of s's quota until it is released (a ROM
 * session's quota: its only object is the dataspace). 0, or -ENOMEM /
 * -EMFILE with nothing charged. */
int core_cap_insert_paid(struct fl_session *s, struct fl_object *obj, uint64_t ram, uint32_t caps,
                         fl_wire_cap *cap);
/* cap names obj in s's table: hand it out once more (false: it does not). */
bool core_cap_hold_again(struct fl_session *s, fl_wire_cap cap, const struct fl_object *obj);
/* Give back one hold of cap (CAP_RELEASE); the slot goes with the last. */
int core_cap_put(struct fl_session *s, fl_wire_cap cap);
/* The live object cap names, of any kind, or NULL. */
struct fl_object *core_cap_object(struct fl_session *s, fl_wire_cap cap);
struct fl_object *core_cap_lookup(struct fl_session *s, fl_wire_cap cap, enum fl_obj_kind kind);
/* The slot goes, however often it was handed out (its object died). */
int core_cap_drop(struct fl_session *s, fl_wire_cap cap);
/* The same if cap still names obj in s's table (a creator's slot that its
 * holder may have released, and core reused, meanwhile). */
void core_cap_drop_if(struct fl_session *s, fl_wire_cap cap, const struct fl_object *obj);
void core_cap_drop_all(struct fl_session *s);
int core_cap_export(struct fl_session *s, fl_wire_cap cap, uint8_t token[FL_TOKEN_BYTES]);
int core_cap_import(struct fl_session *s, const uint8_t token[FL_TOKEN_BYTES], fl_wire_cap *cap,
                    enum fl_obj_kind *kind);
void core_tokens_forget_object(struct fl_object *obj);
void core_object_ref(struct fl_object *obj);
void core_object_unref(struct fl_object *obj);
/* Destroy an object: mark it dead, release what it holds, drop owner's ref. */
void core_object_destroy(struct fl_object *obj);

int core_quota_charge(struct fl_session *s, uint64_t ram, uint64_t caps, long fds);
void core_quota_release(struct fl_session *s, uint64_t ram, uint64_t caps, long fds);
/* A session's quotas grow by what its funder moved to it (an upgrade). */
void core_quota_grow(struct fl_session *s, uint64_t ram, uint64_t caps);

/* Quotas (quota.c): a session's RAM and capabilities, core's RAM budget and
 * descriptors; s NULL charges or releases core's budgets only. 0, or
 * -ENOMEM (RAM) / -EMFILE (capabilities, descriptors) with nothing charged. */
int core_quota_charge(struct fl_session *s, uint64_t ram, uint64_t caps, long fds);
void core_quota_release(struct fl_session *s, uint64_t ram, uint64_t caps, long fds);
/* A session's quotas grow by what its funder moved to it (an upgrade). */
void core_quota_grow(struct fl_session *s, uint64_t ram, uint64_t caps);

/* A quota of an object that is paid for like a session of its own (an RM
 * session: Genode's Ram_quota_guard and Cap_quota_guard): all of it moved
 * there from a PD session, which gets it back at the end. */
struct core_quota {
    uint64_t ram_quota, ram_used;
    uint64_t cap_quota, cap_used;
};
/* Spend from q: 0, or -ENOMEM (RAM, checked first) / -EMFILE with nothing spent. */
int core_quota_spend(struct core_quota *q, uint64_t ram, uint64_t caps);
void core_quota_replenish(struct core_quota *q, uint64_t ram, uint64_t caps);
/* Move quota from session s to q (charged to s as if s had spent it): 0, or
 * s's -ENOMEM / -EMFILE with nothing moved. */
int core_quota_donate(struct fl_session *s, struct core_quota *q, uint64_t ram, uint64_t caps);
/* Everything q was given goes back to s (q's end; s NULL: core's budget only). */
void core_quota_return(struct fl_session *s, struct core_quota *q);

#endif
