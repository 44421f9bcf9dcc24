/*
 * Unit tests of core's attach and detach (src/core/region_map.c) against
 * Genode's rules for attach and detach (README's API section):
 *  - checks 3 to 5 in Genode's order (offset beyond the dataspace, size
 *    beyond the dataspace, use_at conflicts, no room), each REGION_CONFLICT,
 *    all of them before the metadata charge, and that a failed attach changes
 *    nothing (placement, quotas, references, no mapping, no wake);
 *  - size rounding to 4 KiB;
 *  - best fit: alignments from log2(size) down, smallest block, lowest
 *    aligned address, alignments the dataspace offset is not aligned to
 *    skipped; use_at exact placement;
 *  - the FL_COST_REGION charge to the map owner's RAM quota (OUT_OF_RAM when it
 *    or core's budget cannot cover it), released by detach;
 *  - a region holds a reference on its dataspace; map_region and wake_region
 *    are called once, with the new region and range;
 *  - detach of any address inside a region, of an empty address (ignored);
 *  - managed dataspaces: into another map, into their own map, cycles;
 *    reserved regions (dataspace gone) still conflict.
 *
 * Checks 1 and 2 (offset alignment, then a valid dataspace capability) are
 * made by core_rm_rpc_attach, the request's handler, which is called only
 * by the integration tests; only the capability lookup check 2 relies on is
 * tested here.
 *
 * The rest of core (mapping.c, fault.c, ram.c, signal.c, main.c) is replaced
 * by the stand-ins below, which record their calls.
 */
#include "check_main.h"
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataspace.h"
#include "fault.h"
#include "mapping.h"
#include "region_map.h"
#include "revoke.h"
#include "rm_session.h"
#include "session.h"
#include "signal_context.h"
#include "sync_channel.h"

#include <errno.h>

#define PG  ((uint64_t)FL_PAGE_SIZE)
#define KIB 1024ull
#define MIB (1024ull * KIB)

#define REGION_COST FL_COST_REGION

#define NO_AT 0 /* the at of a best-fit attach (ignored without FL_ATTACH_USE_AT) */

/* ----------------------------------------------------- stand-ins for core */

struct fl_core fl_core;

struct map_call {
    struct fl_region *reg;
    /* the region as it was when core asked for it to be mapped */
    struct fl_region_map *rm;
    uint64_t start, size, offset;
    struct fl_dataspace *ds;
    bool write, exec;
    bool in_placement; /* the map's placement already names it */
    bool in_ds_list;   /* its dataspace's region list already holds it */
    unsigned seq;
};

struct range_call {
    struct fl_region_map *rm;
    uint64_t start, size;
    unsigned seq;
};

#define MAX_CALLS 64

static struct {
    unsigned seq;
    unsigned nmap;
    struct map_call map[MAX_CALLS];
    unsigned nwake;
    struct range_call wake[MAX_CALLS];
    unsigned nrevoke;
    struct range_call revoke[MAX_CALLS];
    unsigned ndying, nds_destroy, nsig_destroy;
} rec;

static bool list_holds(const struct fl_list *head, const struct fl_list *n)
{
    for (const struct fl_list *p = head->next; p != head; p = p->next)
        if (p == n) return true;
    return false;
}

void core_mapping_map_region(struct fl_region *r)
{
    ck_assert_uint_lt(rec.nmap, MAX_CALLS);
    const struct fl_span *span = fl_placement_lookup(&r->rm->placement, r->start);
    rec.map[rec.nmap++] = (struct map_call){
        .reg = r,
        .rm = r->rm,
        .start = r->start,
        .size = r->size,
        .offset = r->offset,
        .ds = r->ds,
        .write = r->write,
        .exec = r->exec,
        .in_placement =
            span && span->owner == r && span->start == r->start && span->size == r->size,
        .in_ds_list = r->ds && list_holds(&r->ds->regions, &r->ds_link),
        .seq = ++rec.seq,
    };
}

void core_mapping_revoke(struct fl_region_map *rm, uint64_t start, uint64_t size)
{
    ck_assert_uint_lt(rec.nrevoke, MAX_CALLS);
    rec.revoke[rec.nrevoke++] = (struct range_call){rm, start, size, ++rec.seq};
}

void core_fault_wake_region(struct fl_region_map *rm, uint64_t start, uint64_t size)
{
    ck_assert_uint_lt(rec.nwake, MAX_CALLS);
    rec.wake[rec.nwake++] = (struct range_call){rm, start, size, ++rec.seq};
}

void core_fault_page_release(struct fl_region_map *rm)
{
    (void)rm;
}

/* --strict is not configured here. */
/* No map is served synchronously here (sync_channel.c). */
bool core_sync_offered(const struct fl_dataspace *ds)
{
    (void)ds;
    return false;
}

void core_agent_forget_memfd(struct fl_dataspace *ds)
{
    (void)ds;
    ck_abort_msg("a dataspace moved without --strict");
}

void core_revoke_move(struct fl_dataspace *ds)
{
    (void)ds;
    ck_abort_msg("a dataspace moved without --strict");
}

/* Tokens are not exercised here: no session is ever found by id. */
struct fl_session *core_session_by_id(uint64_t id)
{
    (void)id;
    return NULL;
}

/* rm_session.c's: the maps here come from no RM session. */
void core_rm_session_map_gone(struct fl_region_map *rm)
{
    (void)rm;
    ck_abort_msg("a map of an RM session");
}

void core_rm_session_destroy(struct core_rm_session *rms)
{
    (void)rms;
    ck_abort_msg("an RM session");
}

void core_fault_map_dying(struct fl_region_map *rm)
{
    (void)rm;
    rec.ndying++;
}

/* ram.c's, without the memfd: its regions become reserved. */
void core_dataspace_destroy(struct fl_dataspace *ds)
{
    rec.nds_destroy++;
    ds->rm = NULL;
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &ds->regions)
    {
        core_region_reserve(fl_list_entry(pos, struct fl_region, ds_link));
    }
    ds->memfd = -1;
}

void core_signal_destroy(struct fl_signal *sig)
{
    (void)sig;
    rec.nsig_destroy++;
}

/* The request handlers in region_map.c and capability.c: not called here. */
void core_revoke_begin(struct fl_session *s, uint64_t req_id)
{
    (void)s, (void)req_id;
    ck_abort_msg("not called by these tests");
}

bool core_revoke_end(void)
{
    ck_abort_msg("not called by these tests");
    return false;
}

int core_session_send(struct fl_session *s, const void *msg, size_t len, int fd)
{
    (void)s, (void)msg, (void)len, (void)fd;
    ck_abort_msg("not called by these tests");
    return -1;
}

unsigned core_fault_page_assign(struct fl_session *s, struct fl_region_map *rm)
{
    (void)s, (void)rm;
    ck_abort_msg("not called by these tests");
    return 0;
}

int core_fault_state(struct fl_region_map *rm, struct fl_fault *f)
{
    (void)rm, (void)f;
    ck_abort_msg("not called by these tests");
    return 0;
}

bool core_session_log_ok(struct fl_session *s)
{
    (void)s;
    return true;
}

/* ------------------------------------------------------ objects by hand */

#define MAX_SESSIONS 4
static struct fl_session *sessions[MAX_SESSIONS];
static unsigned nsessions;

static struct fl_session *session_new(void)
{
    ck_assert_uint_lt(nsessions, MAX_SESSIONS);
    struct fl_session *s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    s->id = ++fl_core.next_session_id;
    s->sock = s->pidfd = s->uffd = -1;
    s->ram_quota = 1ull << 30;
    s->cap_quota = 1ull << 20;
    fl_list_init(&s->objects);
    fl_list_init(&s->out);
    fl_list_add_tail(&fl_core.sessions, &s->link);
    sessions[nsessions++] = s;
    return s;
}

/* A ready RAM dataspace owned by s (the owner's reference only). */
static struct fl_dataspace *ram_ds(struct fl_session *owner, uint64_t size)
{
    struct fl_dataspace *ds = calloc(1, sizeof(*ds));
    ck_assert_ptr_nonnull(ds);
    ds->obj.kind = FL_OBJ_DATASPACE;
    ds->obj.refs = 1;
    ds->obj.owner = owner;
    fl_list_add_tail(&owner->objects, &ds->obj.owner_link);
    ds->size = size;
    ds->memfd = 100; /* never touched by the stand-ins */
    ds->memfd_id = ++fl_core.next_memfd_id;
    ds->ready = true;
    fl_list_init(&ds->regions);
    return ds;
}

/* A managed region map of [0, size) (its charge is an RM session's, which
 * does not appear here). */
static struct fl_region_map *managed_rm(struct fl_session *owner, uint64_t size)
{
    struct fl_region_map *rm = core_region_map_create(owner, 0, size, true);
    ck_assert_ptr_nonnull(rm);
    ck_assert_ptr_nonnull(rm->ds);
    ck_assert_uint_eq(rm->ds->size, size);
    ck_assert_int_lt(rm->ds->memfd, 0);
    return rm;
}

/* A component's address space of [base, base + size). */
static struct fl_region_map *address_space(struct fl_session *s, uint64_t base, uint64_t size)
{
    struct fl_region_map *rm = core_region_map_create(s, base, size, false);
    ck_assert_ptr_nonnull(rm);
    rm->address_space_of = s;
    s->address_space = rm;
    return rm;
}

/* Destroy everything s created, as the end of a session does. */
static void session_destroy_objects(struct fl_session *s)
{
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &s->objects)
    {
        core_object_destroy(fl_list_entry(pos, struct fl_object, owner_link));
    }
}

static void setup(void)
{
    memset(&fl_core, 0, sizeof(fl_core));
    fl_list_init(&fl_core.sessions);
    fl_core.cfg.ram_budget = 1ull << 40;
    fl_core.fd_budget = 1 << 20;
    fl_log_level = FL_LOG_ERROR;
    memset(&rec, 0, sizeof(rec));
    nsessions = 0;
}

static void teardown(void)
{
    for (unsigned i = 0; i < nsessions; i++) session_destroy_objects(sessions[i]);
    for (unsigned i = 0; i < nsessions; i++) {
        core_cap_drop_all(sessions[i]);
        free(sessions[i]->caps);
        fl_list_del(&sessions[i]->link);
        free(sessions[i]);
    }
    nsessions = 0;
}

/* ------------------------------------------------------ attach helpers */

static int attach(struct fl_region_map *rm, struct fl_dataspace *ds, uint64_t size, uint64_t offset,
                  uint64_t at, uint32_t flags, uint64_t *start, uint64_t *len)
{
    struct fl_req_rm_attach m = {
        .hdr = {.magic = FL_PROTO_MAGIC, .type = FL_REQ_RM_ATTACH, .id = 1},
        .size = size,
        .offset = offset,
        .at = at,
        .flags = flags,
    };
    return core_rm_attach(rm, ds, &m, start, len);
}

/* Best fit; returns the start and checks the region core recorded. */
static uint64_t fit(struct fl_region_map *rm, struct fl_dataspace *ds, uint64_t size,
                    uint64_t offset, uint64_t want_len)
{
    uint64_t start = 0xdead0000, len = 0xdead;
    int r = attach(rm, ds, size, offset, NO_AT, 0, &start, &len);
    ck_assert_msg(r == 0, "attach(size %#" PRIx64 ", offset %#" PRIx64 ") = %s", size, offset,
                  strerror(-r));
    ck_assert_uint_eq(len, want_len);
    const struct fl_span *span = fl_placement_lookup(&rm->placement, start);
    ck_assert_ptr_nonnull(span);
    ck_assert_uint_eq(span->start, start);
    ck_assert_uint_eq(span->size, want_len);
    struct fl_region *reg = span->owner;
    ck_assert_ptr_eq(reg->rm, rm);
    ck_assert_ptr_eq(reg->ds, ds);
    ck_assert_uint_eq(reg->start, start);
    ck_assert_uint_eq(reg->size, want_len);
    ck_assert_uint_eq(reg->offset, offset);
    return start;
}

/* use_at; checks that the region is exactly there. */
static void place(struct fl_region_map *rm, struct fl_dataspace *ds, uint64_t size, uint64_t offset,
                  uint64_t at)
{
    uint64_t start = 0xdead0000, len = 0xdead;
    int r = attach(rm, ds, size, offset, at, FL_ATTACH_USE_AT, &start, &len);
    ck_assert_msg(r == 0, "attach(size %#" PRIx64 ", at %#" PRIx64 ") = %s", size, at,
                  strerror(-r));
    ck_assert_uint_eq(start, at);
    ck_assert_uint_eq(len, size);
    const struct fl_span *span = fl_placement_lookup(&rm->placement, at);
    ck_assert_ptr_nonnull(span);
    ck_assert_uint_eq(span->start, at);
    ck_assert_uint_eq(span->size, size);
}

/* Everything an attach or detach may change. */
#define SNAP_SPANS 16
struct snap {
    size_t count;
    struct fl_span spans[SNAP_SPANS];
    uint64_t owner_ram, owner_caps, core_ram, ds_owner_ram;
    unsigned ds_refs;
    size_t ds_nregions;
    unsigned nmap, nwake, nrevoke;
};

static size_t list_len(const struct fl_list *head)
{
    size_t n = 0;
    for (const struct fl_list *p = head->next; p != head; p = p->next) n++;
    return n;
}

static struct snap snap_take(const struct fl_region_map *rm, const struct fl_dataspace *ds)
{
    struct snap s;
    memset(&s, 0, sizeof(s));
    s.count = rm->placement.count;
    ck_assert_uint_le(s.count, SNAP_SPANS);
    for (size_t i = 0; i < s.count; i++) s.spans[i] = rm->placement.spans[i];
    s.owner_ram = rm->obj.owner->ram_used;
    s.owner_caps = rm->obj.owner->cap_used;
    s.core_ram = fl_core.ram_used;
    s.ds_owner_ram = ds->obj.owner ? ds->obj.owner->ram_used : 0;
    s.ds_refs = ds->obj.refs;
    s.ds_nregions = list_len(&ds->regions);
    s.nmap = rec.nmap;
    s.nwake = rec.nwake;
    s.nrevoke = rec.nrevoke;
    return s;
}

static void snap_same(const struct snap *a, const struct snap *b)
{
    ck_assert_uint_eq(a->count, b->count);
    for (size_t i = 0; i < a->count; i++) {
        ck_assert_uint_eq(a->spans[i].start, b->spans[i].start);
        ck_assert_uint_eq(a->spans[i].size, b->spans[i].size);
        ck_assert_ptr_eq(a->spans[i].owner, b->spans[i].owner);
    }
    ck_assert_uint_eq(a->owner_ram, b->owner_ram);
    ck_assert_uint_eq(a->owner_caps, b->owner_caps);
    ck_assert_uint_eq(a->core_ram, b->core_ram);
    ck_assert_uint_eq(a->ds_owner_ram, b->ds_owner_ram);
    ck_assert_uint_eq(a->ds_refs, b->ds_refs);
    ck_assert_uint_eq(a->ds_nregions, b->ds_nregions);
    ck_assert_uint_eq(a->nmap, b->nmap);
    ck_assert_uint_eq(a->nwake, b->nwake);
    ck_assert_uint_eq(a->nrevoke, b->nrevoke);
}

/* The attach fails with err and changes nothing. */
static void attach_fails(struct fl_region_map *rm, struct fl_dataspace *ds, uint64_t size,
                         uint64_t offset, uint64_t at, uint32_t flags, int err)
{
    struct snap before = snap_take(rm, ds);
    uint64_t start = 0, len = 0;
    int r = attach(rm, ds, size, offset, at, flags, &start, &len);
    ck_assert_msg(r == -err,
                  "attach(size %#" PRIx64 ", offset %#" PRIx64 ", at %#" PRIx64
                  ", flags %#x) = %s, expected %s",
                  size, offset, at, flags, r ? strerror(-r) : "OK", strerror(-err));
    struct snap after = snap_take(rm, ds);
    snap_same(&before, &after);
}

static void detach_ok(struct fl_region_map *rm, uint64_t at)
{
    ck_assert_int_eq(core_rm_detach(rm, at), 0);
}

/* =========================================================== check order */

START_TEST(test_offset_at_or_beyond_size)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 16 * KIB);

    attach_fails(rm, ds, 0, 16 * KIB, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, PG, 16 * KIB, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, 0, 32 * KIB, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, PG, 32 * KIB, 0x10000, FL_ATTACH_USE_AT, EEXIST);
    attach_fails(rm, ds, 0, UINT64_MAX & ~(PG - 1), NO_AT, 0, EEXIST);
    attach_fails(rm, ds, PG, UINT64_MAX & ~(PG - 1), NO_AT, 0, EEXIST);

    /* the last page is still attachable */
    ck_assert_uint_eq(fit(rm, ds, 0, 12 * KIB, PG), 0);
}
END_TEST

START_TEST(test_size_beyond_dataspace)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 16 * KIB);

    attach_fails(rm, ds, 16 * KIB + 1, 0, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, 20 * KIB, 0, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, 12 * KIB + 1, 4 * KIB, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, 16 * KIB, 4 * KIB, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, 16 * KIB + 1, 0, 0x10000, FL_ATTACH_USE_AT, EEXIST);
    /* sizes whose rounding wraps around, or that wrap offset + size */
    attach_fails(rm, ds, UINT64_MAX, 0, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, UINT64_MAX - 100, 0, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, UINT64_MAX - PG + 2, 0, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, UINT64_MAX & ~(PG - 1), 0, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, UINT64_MAX & ~(PG - 1), 4 * KIB, NO_AT, 0, EEXIST);
    attach_fails(rm, ds, (UINT64_MAX & ~(PG - 1)) - 2 * PG, 4 * PG, NO_AT, 0, EEXIST);

    /* exactly the rest of the dataspace fits */
    ck_assert_uint_eq(fit(rm, ds, 12 * KIB, 4 * KIB, 12 * KIB), 0);
}
END_TEST

START_TEST(test_use_at_conflicts)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 256 * KIB);
    place(rm, ds, 64 * KIB, 0, 0x40000); /* [0x40000, 0x50000) */

    static const struct {
        uint64_t at, size;
    } bad[] = {
        {0x40000, 64 * KIB},              /* the same range */
        {0x40000, PG},                    /* its first page */
        {0x4f000, PG},                    /* its last page */
        {0x48000, 8 * KIB},               /* inside */
        {0x3f000, 8 * KIB},               /* over its start */
        {0x4f000, 8 * KIB},               /* over its end */
        {0x30000, 128 * KIB},             /* containing it */
        {0x20000, 256 * KIB},             /* containing it, larger */
        {MIB, PG},                        /* at the map's end */
        {MIB - PG, 8 * KIB},              /* over the map's end */
        {2 * MIB, PG},                    /* beyond the map */
        {UINT64_MAX & ~(PG - 1), PG},     /* far beyond */
        {UINT64_MAX & ~(PG - 1), 2 * PG}, /* wrapping */
        {0x1800, PG},                     /* not page-aligned */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        attach_fails(rm, ds, bad[i].size, 0, bad[i].at, FL_ATTACH_USE_AT, EEXIST);

    /* the ranges right next to it are free */
    place(rm, ds, 64 * KIB, 0, 0x30000);
    place(rm, ds, 64 * KIB, 0, 0x50000);
    place(rm, ds, PG, 0, MIB - PG);
    place(rm, ds, PG, 0, 0);
    ck_assert_uint_eq(rm->placement.count, 5);
}
END_TEST

START_TEST(test_use_at_outside_map_with_base)
{
    struct fl_session *s = session_new();
    struct fl_region_map *as = address_space(s, 0x40000000, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);

    attach_fails(as, ds, PG, 0, 0, FL_ATTACH_USE_AT, EEXIST);
    attach_fails(as, ds, PG, 0, 0x40000000 - PG, FL_ATTACH_USE_AT, EEXIST);
    attach_fails(as, ds, 8 * KIB, 0, 0x40000000 - PG, FL_ATTACH_USE_AT, EEXIST);
    attach_fails(as, ds, PG, 0, 0x40000000 + MIB, FL_ATTACH_USE_AT, EEXIST);
    attach_fails(as, ds, 8 * KIB, 0, 0x40000000 + MIB - PG, FL_ATTACH_USE_AT, EEXIST);

    place(as, ds, PG, 0, 0x40000000);
    place(as, ds, PG, 0, 0x40000000 + MIB - PG);
}
END_TEST

START_TEST(test_no_room)
{
    struct fl_session *s = session_new();
    struct fl_dataspace *ds = ram_ds(s, 2 * MIB);

    /* a full map */
    struct fl_region_map *full = managed_rm(s, 64 * KIB);
    ck_assert_uint_eq(fit(full, ds, 64 * KIB, 0, 64 * KIB), 0);
    attach_fails(full, ds, PG, 0, NO_AT, 0, EEXIST);

    /* 8 KiB free in total, but no 8 KiB block */
    struct fl_region_map *frag = managed_rm(s, 16 * KIB);
    place(frag, ds, PG, 0, 0x1000);
    place(frag, ds, PG, 0, 0x3000);
    attach_fails(frag, ds, 8 * KIB, 0, NO_AT, 0, EEXIST);
    ck_assert_uint_eq(fit(frag, ds, PG, 0, PG), 0);

    /* a dataspace larger than the map */
    struct fl_region_map *small = managed_rm(s, MIB);
    attach_fails(small, ds, 0, 0, NO_AT, 0, EEXIST);
    attach_fails(small, ds, MIB + PG, 0, NO_AT, 0, EEXIST);
    ck_assert_uint_eq(fit(small, ds, 0, MIB, MIB), 0);
}
END_TEST

/* Every conflict is found before the metadata is charged: with no quota left
 * the answer is still REGION_CONFLICT; only a valid attach says OUT_OF_RAM. */
START_TEST(test_conflicts_before_quota)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, 64 * KIB);
    struct fl_dataspace *ds = ram_ds(s, 128 * KIB);
    place(rm, ds, 32 * KIB, 0, 0);
    s->ram_quota = s->ram_used; /* nothing left */

    attach_fails(rm, ds, PG, 128 * KIB, NO_AT, 0, EEXIST);         /* check 3 */
    attach_fails(rm, ds, 128 * KIB, PG, NO_AT, 0, EEXIST);         /* check 4 */
    attach_fails(rm, ds, PG, 0, 0x1000, FL_ATTACH_USE_AT, EEXIST); /* check 5 */
    attach_fails(rm, ds, PG, 0, 64 * KIB, FL_ATTACH_USE_AT, EEXIST);
    attach_fails(rm, ds, 64 * KIB, 0, NO_AT, 0, EEXIST); /* no room */
    attach_fails(rm, ds, PG, 0, 0x8000, FL_ATTACH_USE_AT, ENOMEM);
    attach_fails(rm, ds, PG, 0, NO_AT, 0, ENOMEM);

    /* the offset check comes before the size check: both wrong, still a conflict */
    attach_fails(rm, ds, UINT64_MAX, UINT64_MAX & ~(PG - 1), NO_AT, 0, EEXIST);
}
END_TEST

/* ============================================================== rounding */

START_TEST(test_size_rounding)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, 4 * MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);
    static const struct {
        uint64_t size, offset, want;
    } cases[] = {
        {1, 0, PG},
        {PG - 1, 0, PG},
        {PG, 0, PG},
        {PG + 1, 0, 2 * PG},
        {3 * PG - 7, 0, 3 * PG},
        {64 * KIB - 1, 0, 64 * KIB},
        {0, 0, 64 * KIB},                   /* the whole dataspace */
        {0, 16 * KIB, 48 * KIB},            /* the rest after the offset */
        {0, 60 * KIB, PG},                  /* the last page */
        {1, 60 * KIB, PG},                  /* one byte of the last page */
        {48 * KIB - 1, 16 * KIB, 48 * KIB}, /* rounded up to exactly the end */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t start, len;
        int r = attach(rm, ds, cases[i].size, cases[i].offset, NO_AT, 0, &start, &len);
        ck_assert_msg(r == 0, "case %zu: %s", i, strerror(-r));
        ck_assert_msg(len == cases[i].want, "case %zu: size %#" PRIx64 " -> %#" PRIx64, i,
                      cases[i].size, len);
        const struct fl_span *span = fl_placement_lookup(&rm->placement, start);
        ck_assert_ptr_nonnull(span);
        ck_assert_uint_eq(span->size, cases[i].want);
        struct fl_region *reg = span->owner;
        ck_assert_uint_eq(reg->size, cases[i].want);
        ck_assert_uint_eq(reg->offset, cases[i].offset);
        /* the region ends at the rounded size */
        ck_assert_ptr_eq(fl_placement_lookup(&rm->placement, start + len - 1), span);
        ck_assert_ptr_ne(fl_placement_lookup(&rm->placement, start + len), span);
    }
    /* use_at rounds the same way */
    place(rm, ds, PG, 0, 3 * MIB);
    uint64_t start, len;
    ck_assert_int_eq(attach(rm, ds, 1, 0, 3 * MIB + PG, FL_ATTACH_USE_AT, &start, &len), 0);
    ck_assert_uint_eq(start, 3 * MIB + PG);
    ck_assert_uint_eq(len, PG);
    attach_fails(rm, ds, 1, 0, 3 * MIB + PG, FL_ATTACH_USE_AT, EEXIST);
}
END_TEST

/* ============================================================== best fit */

START_TEST(test_best_fit_sequence)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);

    ck_assert_uint_eq(fit(rm, ds, 64 * KIB, 0, 64 * KIB), 0);
    ck_assert_uint_eq(fit(rm, ds, PG, 0, PG), 0x10000);
    ck_assert_uint_eq(fit(rm, ds, 8 * KIB, 0, 8 * KIB), 0x12000); /* 8 KiB aligned */
    ck_assert_uint_eq(fit(rm, ds, PG, 0, PG), 0x11000);           /* the 4 KiB hole */
    ck_assert_uint_eq(fit(rm, ds, 12 * KIB, 0, 12 * KIB), 0x14000);
    ck_assert_uint_eq(fit(rm, ds, 64 * KIB, 0, 64 * KIB), 0x20000); /* 64 KiB aligned */
    ck_assert_uint_eq(fit(rm, ds, 16 * KIB, 0, 16 * KIB), 0x18000); /* [0x17000, 0x20000) */
    ck_assert_uint_eq(fit(rm, ds, PG, 0, PG), 0x17000);
    ck_assert_uint_eq(fit(rm, ds, 32 * KIB, 0, 32 * KIB), 0x30000);
    ck_assert_uint_eq(rm->placement.count, 9);
}
END_TEST

START_TEST(test_best_fit_smallest_block)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);
    /* free: [0, 0x10000) 64 KiB, [0x11000, 0x13000) 8 KiB, [0x14000, 1 MiB) */
    place(rm, ds, PG, 0, 0x10000);
    place(rm, ds, PG, 0, 0x13000);

    ck_assert_uint_eq(fit(rm, ds, PG, 0, PG), 0x11000);
    ck_assert_uint_eq(fit(rm, ds, PG, 0, PG), 0x12000);
    ck_assert_uint_eq(fit(rm, ds, 8 * KIB, 0, 8 * KIB), 0); /* 64 KiB block beats the rest */
    /* [0x2000, 0x10000) is the smaller block; 16 KiB alignment in it is 0x4000 */
    ck_assert_uint_eq(fit(rm, ds, 16 * KIB, 0, 16 * KIB), 0x4000);
    /* free: [0x2000, 0x4000), [0x8000, 0x10000), [0x14000, ...) */
    ck_assert_uint_eq(fit(rm, ds, 8 * KIB, 0, 8 * KIB), 0x2000);
    ck_assert_uint_eq(fit(rm, ds, 32 * KIB, 0, 32 * KIB), 0x8000);
    ck_assert_uint_eq(fit(rm, ds, 32 * KIB, 0, 32 * KIB), 0x18000);
}
END_TEST

START_TEST(test_best_fit_alignment_from_size)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);

    ck_assert_uint_eq(fit(rm, ds, PG, 0, PG), 0);
    ck_assert_uint_eq(fit(rm, ds, 12 * KIB, 0, 12 * KIB), 0x2000); /* log2(12 KiB) = 8 KiB */
    ck_assert_uint_eq(fit(rm, ds, 32 * KIB, 0, 32 * KIB), 0x8000);
    ck_assert_uint_eq(fit(rm, ds, PG, 0, PG), 0x1000);                   /* the 4 KiB hole */
    ck_assert_uint_eq(fit(rm, ds, PG, 0, PG), 0x5000);                   /* the 12 KiB hole */
    ck_assert_uint_eq(fit(rm, ds, 64 * KIB - PG, 0, 60 * KIB), 0x10000); /* 32 KiB aligned */
}
END_TEST

/* An alignment the dataspace offset is not aligned to is skipped. */
START_TEST(test_best_fit_offset_alignment)
{
    struct fl_session *s = session_new();
    struct fl_dataspace *ds = ram_ds(s, 128 * KIB);

    struct fl_region_map *a = managed_rm(s, MIB);
    place(a, ds, PG, 0, 0);
    ck_assert_uint_eq(fit(a, ds, 0, 0x1000, 124 * KIB), 0x1000); /* only 4 KiB alignment */

    struct fl_region_map *b = managed_rm(s, MIB);
    place(b, ds, PG, 0, 0);
    ck_assert_uint_eq(fit(b, ds, 124 * KIB, 0, 124 * KIB), 0x10000); /* 64 KiB alignment */

    struct fl_region_map *c = managed_rm(s, MIB);
    place(c, ds, PG, 0, 0);
    ck_assert_uint_eq(fit(c, ds, 16 * KIB, 0x2000, 16 * KIB), 0x2000); /* 8 KiB alignment */
    ck_assert_uint_eq(fit(c, ds, 16 * KIB, 0, 16 * KIB), 0x8000);      /* 16 KiB alignment */
    ck_assert_uint_eq(fit(c, ds, 16 * KIB, 0x4000, 16 * KIB), 0xc000);
}
END_TEST

/* Alignment is of the address in the map, whose base need not be aligned. */
START_TEST(test_best_fit_map_base)
{
    struct fl_session *s = session_new();
    struct fl_region_map *as = address_space(s, 0x40001000, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);

    ck_assert_uint_eq(fit(as, ds, 64 * KIB, 0, 64 * KIB), 0x40010000);
    ck_assert_uint_eq(fit(as, ds, PG, 0, PG), 0x40001000);
    ck_assert_uint_eq(fit(as, ds, 8 * KIB, 0, 8 * KIB), 0x40002000);
}
END_TEST

/* ================================================================ use_at */

START_TEST(test_use_at_exact)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, MIB);

    place(rm, ds, 64 * KIB, 0, 0x30000);
    place(rm, ds, PG, 0, 0x2f000);
    place(rm, ds, PG, 0, 0x40000);
    place(rm, ds, 8 * KIB, 0, 0x1000); /* not aligned to its size: use_at does not care */
    place(rm, ds, PG, 0, MIB - PG);
    /* best fit goes around them */
    ck_assert_uint_eq(fit(rm, ds, PG, 0, PG), 0);
    ck_assert_uint_eq(fit(rm, ds, 64 * KIB, 0, 64 * KIB), 0x10000); /* [0x3000, 0x2f000) */

    /* the whole map, into an empty map */
    struct fl_region_map *whole = managed_rm(s, MIB);
    place(whole, ds, MIB, 0, 0);
    attach_fails(whole, ds, PG, 0, NO_AT, 0, EEXIST);
}
END_TEST

/* =========================================================== mapping, wake */

START_TEST(test_map_and_wake_called)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);
    static const uint32_t flags[] = {
        0,
        FL_ATTACH_WRITEABLE,
        FL_ATTACH_EXECUTABLE,
        FL_ATTACH_WRITEABLE | FL_ATTACH_EXECUTABLE,
        FL_ATTACH_USE_AT | FL_ATTACH_WRITEABLE,
        FL_ATTACH_USE_AT | FL_ATTACH_EXECUTABLE,
    };
    for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        unsigned nmap = rec.nmap, nwake = rec.nwake;
        uint64_t at = 0x80000 + i * 0x10000, start, len;
        ck_assert_int_eq(attach(rm, ds, 8 * KIB - 100, 16 * KIB, at, flags[i], &start, &len), 0);
        if (flags[i] & FL_ATTACH_USE_AT) ck_assert_uint_eq(start, at);
        ck_assert_uint_eq(len, 8 * KIB);

        ck_assert_uint_eq(rec.nmap, nmap + 1);
        const struct map_call *m = &rec.map[nmap];
        const struct fl_span *span = fl_placement_lookup(&rm->placement, start);
        ck_assert_ptr_nonnull(span);
        ck_assert_ptr_eq(m->reg, span->owner);
        ck_assert_ptr_eq(m->rm, rm);
        ck_assert_uint_eq(m->start, start);
        ck_assert_uint_eq(m->size, 8 * KIB);
        ck_assert_uint_eq(m->offset, 16 * KIB);
        ck_assert_ptr_eq(m->ds, ds);
        ck_assert_int_eq(m->write, !!(flags[i] & FL_ATTACH_WRITEABLE));
        ck_assert_int_eq(m->exec, !!(flags[i] & FL_ATTACH_EXECUTABLE));
        ck_assert_msg(m->in_placement, "mapped before the map names the region");
        ck_assert_msg(m->in_ds_list, "mapped before the dataspace lists the region");

        /* every faulter in the new range is woken, after the mapping went out */
        ck_assert_uint_eq(rec.nwake, nwake + 1);
        const struct range_call *w = &rec.wake[nwake];
        ck_assert_ptr_eq(w->rm, rm);
        ck_assert_uint_eq(w->start, start);
        ck_assert_uint_eq(w->size, 8 * KIB);
        ck_assert_uint_gt(w->seq, m->seq);
    }

    /* size 0: the rest of the dataspace is mapped and woken */
    unsigned nmap = rec.nmap, nwake = rec.nwake;
    uint64_t start = fit(rm, ds, 0, 16 * KIB, 48 * KIB);
    ck_assert_uint_eq(rec.nmap, nmap + 1);
    ck_assert_uint_eq(rec.map[nmap].start, start);
    ck_assert_uint_eq(rec.map[nmap].size, 48 * KIB);
    ck_assert_uint_eq(rec.nwake, nwake + 1);
    ck_assert_uint_eq(rec.wake[nwake].start, start);
    ck_assert_uint_eq(rec.wake[nwake].size, 48 * KIB);

    ck_assert_uint_eq(rec.nrevoke, 0);
}
END_TEST

/* ============================================================= references */

START_TEST(test_region_holds_reference)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);
    ck_assert_uint_eq(ds->obj.refs, 1);

    uint64_t a = fit(rm, ds, 0, 0, 64 * KIB);
    ck_assert_uint_eq(ds->obj.refs, 2);
    ck_assert_uint_eq(list_len(&ds->regions), 1);
    uint64_t b = fit(rm, ds, PG, 0, PG);
    ck_assert_uint_eq(ds->obj.refs, 3);
    ck_assert_uint_eq(list_len(&ds->regions), 2);

    detach_ok(rm, a + PG);
    ck_assert_uint_eq(ds->obj.refs, 2);
    ck_assert_uint_eq(list_len(&ds->regions), 1);
    detach_ok(rm, b);
    ck_assert_uint_eq(ds->obj.refs, 1);
    ck_assert(fl_list_empty(&ds->regions));
    ck_assert(!ds->obj.dead);
}
END_TEST

/* ================================================================= quota */

START_TEST(test_charge_to_map_owner)
{
    struct fl_session *owner = session_new(), *other = session_new();
    struct fl_region_map *rm = managed_rm(owner, MIB);
    struct fl_dataspace *ds = ram_ds(other, 64 * KIB);
    uint64_t owner_ram = owner->ram_used, owner_caps = owner->cap_used;
    uint64_t other_ram = other->ram_used, core_ram = fl_core.ram_used;

    uint64_t a = fit(rm, ds, 0, 0, 64 * KIB);
    ck_assert_uint_eq(owner->ram_used, owner_ram + REGION_COST);
    ck_assert_uint_eq(fl_core.ram_used, core_ram + REGION_COST);
    ck_assert_uint_eq(owner->cap_used, owner_caps);
    ck_assert_uint_eq(other->ram_used, other_ram);
    fit(rm, ds, PG, 0, PG);
    ck_assert_uint_eq(owner->ram_used, owner_ram + 2 * REGION_COST);
    ck_assert_uint_eq(fl_core.ram_used, core_ram + 2 * REGION_COST);

    detach_ok(rm, a);
    ck_assert_uint_eq(owner->ram_used, owner_ram + REGION_COST);
    ck_assert_uint_eq(fl_core.ram_used, core_ram + REGION_COST);
    ck_assert_uint_eq(other->ram_used, other_ram);
}
END_TEST

START_TEST(test_out_of_ram_owner_quota)
{
    struct fl_session *owner = session_new(), *other = session_new();
    struct fl_region_map *rm = managed_rm(owner, MIB);
    struct fl_dataspace *ds = ram_ds(other, 64 * KIB);
    place(rm, ds, PG, 0, 0x10000);

    owner->ram_quota = owner->ram_used + REGION_COST - 1;
    attach_fails(rm, ds, 0, 0, NO_AT, 0, ENOMEM);
    attach_fails(rm, ds, PG, 0, 0x20000, FL_ATTACH_USE_AT | FL_ATTACH_WRITEABLE, ENOMEM);
    ck_assert_uint_eq(rm->placement.count, 1);

    /* exactly 128 bytes left: one more attachment */
    owner->ram_quota = owner->ram_used + REGION_COST;
    place(rm, ds, PG, 0, 0x20000);
    ck_assert_uint_eq(owner->ram_used, owner->ram_quota);
    attach_fails(rm, ds, PG, 0, NO_AT, 0, ENOMEM);

    /* what a detach gives back can be used again */
    detach_ok(rm, 0x10000);
    place(rm, ds, PG, 0, 0x30000);
    attach_fails(rm, ds, PG, 0, NO_AT, 0, ENOMEM);
}
END_TEST

/* The dataspace owner's quota plays no part. */
START_TEST(test_ds_owner_quota_irrelevant)
{
    struct fl_session *owner = session_new(), *other = session_new();
    struct fl_region_map *rm = managed_rm(owner, MIB);
    struct fl_dataspace *ds = ram_ds(other, 64 * KIB);
    other->ram_quota = other->ram_used;
    uint64_t other_ram = other->ram_used;
    fit(rm, ds, 0, 0, 64 * KIB);
    ck_assert_uint_eq(other->ram_used, other_ram);
}
END_TEST

START_TEST(test_out_of_ram_core_budget)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);

    fl_core.cfg.ram_budget = fl_core.ram_used + REGION_COST - 1;
    attach_fails(rm, ds, 0, 0, NO_AT, 0, ENOMEM);
    attach_fails(rm, ds, PG, 0, 0, FL_ATTACH_USE_AT, ENOMEM);
    fl_core.cfg.ram_budget = fl_core.ram_used + REGION_COST;
    place(rm, ds, PG, 0, 0);
    attach_fails(rm, ds, PG, 0, NO_AT, 0, ENOMEM);
}
END_TEST

/* ================================================================ detach */

START_TEST(test_detach_inner_address)
{
    static const uint64_t inner[] = {0, 1, PG - 1, PG, 0x8000, 0x8123, 0xffff};
    uint64_t where = inner[_i];
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);
    struct snap empty = snap_take(rm, ds);

    place(rm, ds, 64 * KIB, 0, 0x10000);
    ck_assert_uint_eq(s->ram_used, empty.owner_ram + REGION_COST);
    unsigned nrevoke = rec.nrevoke, nwake = rec.nwake;

    detach_ok(rm, 0x10000 + where);
    ck_assert_uint_eq(rm->placement.count, 0);
    ck_assert_ptr_null(fl_placement_lookup(&rm->placement, 0x10000));
    ck_assert_uint_eq(s->ram_used, empty.owner_ram);
    ck_assert_uint_eq(fl_core.ram_used, empty.core_ram);
    ck_assert_uint_eq(ds->obj.refs, empty.ds_refs);
    ck_assert(fl_list_empty(&ds->regions));
    /* its mappings are revoked; nobody is woken */
    ck_assert_uint_eq(rec.nrevoke, nrevoke + 1);
    ck_assert_ptr_eq(rec.revoke[nrevoke].rm, rm);
    ck_assert_uint_eq(rec.revoke[nrevoke].start, 0x10000);
    ck_assert_uint_eq(rec.revoke[nrevoke].size, 64 * KIB);
    ck_assert_uint_eq(rec.nwake, nwake);

    /* the range is free again */
    place(rm, ds, 64 * KIB, 0, 0x10000);
}
END_TEST

START_TEST(test_detach_empty_address)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);
    static const uint64_t nowhere[] = {
        0, 0xf000, 0xffff, 0x20000, 0x20001, 0x30000, MIB - 1, MIB, 2 * MIB, UINT64_MAX,
    };

    /* an empty map */
    struct snap before = snap_take(rm, ds);
    for (size_t i = 0; i < sizeof(nowhere) / sizeof(nowhere[0]); i++) detach_ok(rm, nowhere[i]);
    struct snap after = snap_take(rm, ds);
    snap_same(&before, &after);

    /* around regions */
    place(rm, ds, 64 * KIB, 0, 0x10000);
    place(rm, ds, PG, 0, 0x21000);
    before = snap_take(rm, ds);
    for (size_t i = 0; i < sizeof(nowhere) / sizeof(nowhere[0]); i++) detach_ok(rm, nowhere[i]);
    after = snap_take(rm, ds);
    snap_same(&before, &after);
}
END_TEST

START_TEST(test_detach_only_that_region)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);
    place(rm, ds, PG, 0, 0x10000);
    place(rm, ds, PG, 0, 0x11000);
    place(rm, ds, PG, 0, 0x12000);

    detach_ok(rm, 0x11fff);
    ck_assert_uint_eq(rm->placement.count, 2);
    ck_assert_ptr_nonnull(fl_placement_lookup(&rm->placement, 0x10fff));
    ck_assert_ptr_null(fl_placement_lookup(&rm->placement, 0x11000));
    ck_assert_ptr_nonnull(fl_placement_lookup(&rm->placement, 0x12000));
    ck_assert_uint_eq(ds->obj.refs, 3);
    ck_assert_uint_eq(rec.nrevoke, 1);
    ck_assert_uint_eq(rec.revoke[0].start, 0x11000);
    ck_assert_uint_eq(rec.revoke[0].size, PG);
    /* best fit finds the hole */
    ck_assert_uint_eq(fit(rm, ds, PG, 0, PG), 0x11000);
}
END_TEST

/* ========================================================= managed, cycles */

START_TEST(test_managed_into_other_map)
{
    struct fl_session *s = session_new();
    struct fl_region_map *inner = managed_rm(s, MIB);
    struct fl_region_map *outer = managed_rm(s, 4 * MIB);
    struct fl_dataspace *mds = inner->ds;
    ck_assert_uint_eq(mds->obj.refs, 1);

    ck_assert_uint_eq(fit(outer, mds, 0, 0, MIB), 0);
    ck_assert_uint_eq(mds->obj.refs, 2);
    ck_assert_uint_eq(list_len(&mds->regions), 1);
    ck_assert_uint_eq(rec.nmap, 1);
    ck_assert_ptr_eq(rec.map[0].ds, mds);
    ck_assert_ptr_eq(rec.map[0].rm, outer);

    /* a part of it, at an offset */
    place(outer, mds, 128 * KIB, 64 * KIB, 2 * MIB);
    ck_assert_uint_eq(mds->obj.refs, 3);
    attach_fails(outer, mds, 0, MIB, NO_AT, 0, EEXIST);
    attach_fails(outer, mds, MIB, PG, NO_AT, 0, EEXIST);

    /* into an address space */
    struct fl_region_map *as = address_space(s, 0x10000000, 8 * MIB);
    ck_assert_uint_eq(fit(as, mds, 0, 0, MIB), 0x10000000);
    ck_assert_uint_eq(mds->obj.refs, 4);

    detach_ok(outer, 0x1234);
    detach_ok(outer, 2 * MIB + 0x1234);
    detach_ok(as, 0x10000000 + MIB - 1);
    ck_assert_uint_eq(mds->obj.refs, 1);
    ck_assert(fl_list_empty(&mds->regions));
    ck_assert_ptr_eq(inner->ds, mds);
}
END_TEST

/* Cycles are handled at fault time, not refused at attach. */
START_TEST(test_attach_map_into_itself)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    uint64_t ram = s->ram_used;

    ck_assert_uint_eq(fit(rm, rm->ds, 64 * KIB, 0, 64 * KIB), 0);
    ck_assert_uint_eq(rm->ds->obj.refs, 2);
    ck_assert_uint_eq(s->ram_used, ram + REGION_COST);
    place(rm, rm->ds, 64 * KIB, 64 * KIB, 0x80000);
    ck_assert_uint_eq(rm->ds->obj.refs, 3);
    detach_ok(rm, 0x80000);
    detach_ok(rm, 0);
    ck_assert_uint_eq(rm->ds->obj.refs, 1);
    ck_assert_uint_eq(s->ram_used, ram);

    /* all of it */
    ck_assert_uint_eq(fit(rm, rm->ds, 0, 0, MIB), 0);
    ck_assert_uint_eq(rm->ds->obj.refs, 2);
    /* destroying it with itself attached: no crash, no leak, quota back */
    core_object_destroy(&rm->obj);
    ck_assert_uint_eq(s->ram_used, 0);
    ck_assert_uint_eq(s->cap_used, 0);
    ck_assert_uint_eq(fl_core.ram_used, 0);
}
END_TEST

START_TEST(test_attach_cycle_of_two)
{
    struct fl_session *s = session_new();
    struct fl_region_map *a = managed_rm(s, MIB), *b = managed_rm(s, MIB);

    place(b, a->ds, MIB, 0, 0);
    ck_assert_uint_eq(fit(a, b->ds, 64 * KIB, 0, 64 * KIB), 0);
    ck_assert_uint_eq(a->ds->obj.refs, 2);
    ck_assert_uint_eq(b->ds->obj.refs, 2);

    core_object_destroy(&a->obj);
    /* b's region of a's dataspace is reserved now */
    ck_assert_uint_eq(b->placement.count, 1);
    struct fl_region *reg = b->placement.spans[0].owner;
    ck_assert_ptr_null(reg->ds);
    ck_assert_uint_eq(b->ds->obj.refs, 1);
    core_object_destroy(&b->obj);
    ck_assert_uint_eq(s->ram_used, 0);
    ck_assert_uint_eq(fl_core.ram_used, 0);
}
END_TEST

/* A region whose dataspace died stays reserved until its owner detaches it. */
START_TEST(test_reserved_region)
{
    struct fl_session *s = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB), *other = ram_ds(s, 64 * KIB);
    place(rm, ds, 64 * KIB, 0, 0);
    uint64_t ram = s->ram_used;

    core_object_destroy(&ds->obj); /* frees ds: the region held the last reference */
    ck_assert_uint_eq(rm->placement.count, 1);
    ck_assert_uint_eq(rec.nrevoke, 1);
    ck_assert_uint_eq(s->ram_used, ram);

    attach_fails(rm, other, PG, 0, 0x8000, FL_ATTACH_USE_AT, EEXIST);
    attach_fails(rm, other, 64 * KIB, 0, 0, FL_ATTACH_USE_AT, EEXIST);
    ck_assert_uint_eq(fit(rm, other, 64 * KIB, 0, 64 * KIB), 0x10000);

    detach_ok(rm, 0x1000);
    ck_assert_uint_eq(rm->placement.count, 1);
    ck_assert_uint_eq(s->ram_used, ram);
    place(rm, other, 64 * KIB, 0, 0);
}
END_TEST

/* ======================================================== check 2 support */

/* dispatch() answers INVALID_DATASPACE when this lookup finds nothing. */
START_TEST(test_dataspace_cap_lookup)
{
    struct fl_session *s = session_new(), *t = session_new();
    struct fl_region_map *rm = managed_rm(s, MIB);
    struct fl_dataspace *ds = ram_ds(s, 64 * KIB);
    fl_wire_cap ds_cap, rm_cap, gone_cap;
    ck_assert_int_eq(core_cap_insert(s, &ds->obj, &ds_cap), 0);
    ck_assert_int_eq(core_cap_insert(s, &rm->obj, &rm_cap), 0);

    ck_assert_ptr_eq(core_cap_lookup(s, ds_cap, FL_OBJ_DATASPACE), &ds->obj);
    ck_assert_ptr_null(core_cap_lookup(s, 0, FL_OBJ_DATASPACE));
    ck_assert_ptr_null(core_cap_lookup(s, rm_cap, FL_OBJ_DATASPACE));
    ck_assert_ptr_null(core_cap_lookup(t, ds_cap, FL_OBJ_DATASPACE)); /* another session's */

    struct fl_dataspace *gone = ram_ds(s, PG);
    ck_assert_int_eq(core_cap_insert(s, &gone->obj, &gone_cap), 0);
    core_object_destroy(&gone->obj);
    ck_assert_ptr_null(core_cap_lookup(s, gone_cap, FL_OBJ_DATASPACE)); /* dead */
    ck_assert_int_eq(core_cap_drop(s, gone_cap), 0);
    ck_assert_ptr_null(core_cap_lookup(s, gone_cap, FL_OBJ_DATASPACE)); /* released */
}
END_TEST

/* ============================================================== teardown */

START_TEST(test_everything_given_back)
{
    struct fl_session *s = session_new(), *t = session_new();
    struct fl_region_map *a = managed_rm(s, MIB), *b = managed_rm(t, 4 * MIB);
    struct fl_region_map *as = address_space(s, 0x10000000, 16 * MIB);
    struct fl_dataspace *ds = ram_ds(t, 256 * KIB);
    fit(a, ds, 0, 0, 256 * KIB);
    fit(b, a->ds, 0, 0, MIB);
    fit(as, b->ds, 0, 0, 4 * MIB);
    fit(as, ds, PG, 0, PG);
    fit(b, ds, 0, 64 * KIB, 192 * KIB);

    session_destroy_objects(s);
    session_destroy_objects(t);
    ck_assert_uint_eq(s->ram_used, 0);
    ck_assert_uint_eq(t->ram_used, 0);
    ck_assert_uint_eq(s->cap_used, 0);
    ck_assert_uint_eq(t->cap_used, 0);
    ck_assert_uint_eq(fl_core.ram_used, 0);
}
END_TEST

static Suite *attach_suite(void)
{
    const struct check_test tests[] = {
        {"order", test_offset_at_or_beyond_size, 0},
        {"order", test_size_beyond_dataspace, 0},
        {"order", test_use_at_conflicts, 0},
        {"order", test_use_at_outside_map_with_base, 0},
        {"order", test_no_room, 0},
        {"order", test_conflicts_before_quota, 0},
        {"order", test_dataspace_cap_lookup, 0},
        {"size", test_size_rounding, 0},
        {"placement", test_best_fit_sequence, 0},
        {"placement", test_best_fit_smallest_block, 0},
        {"placement", test_best_fit_alignment_from_size, 0},
        {"placement", test_best_fit_offset_alignment, 0},
        {"placement", test_best_fit_map_base, 0},
        {"placement", test_use_at_exact, 0},
        {"effects", test_map_and_wake_called, 0},
        {"effects", test_region_holds_reference, 0},
        {"quota", test_charge_to_map_owner, 0},
        {"quota", test_out_of_ram_owner_quota, 0},
        {"quota", test_ds_owner_quota_irrelevant, 0},
        {"quota", test_out_of_ram_core_budget, 0},
        {"detach", test_detach_inner_address, 7},
        {"detach", test_detach_empty_address, 0},
        {"detach", test_detach_only_that_region, 0},
        {"managed", test_managed_into_other_map, 0},
        {"managed", test_attach_map_into_itself, 0},
        {"managed", test_attach_cycle_of_two, 0},
        {"managed", test_reserved_region, 0},
        {"managed", test_everything_given_back, 0},
    };
    return CHECK_SUITE("attach", tests, setup, teardown);
}

CHECK_MAIN(attach_suite)
