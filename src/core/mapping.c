/*
 * The mapping database. Core alone knows where every range of every dataspace
 * is visible: a region's memory is visible in an address space through a
 * chain of regions (the address space's own, then up to four nested managed
 * maps). Mapping or revoking a range walks those chains and instructs the
 * agent of each address space reached (agent.c); a revocation also joins the
 * open barrier (revoke.c).
 */
#include "agent.h"
#include "dataspace.h"
#include "mapping.h"
#include "region_map.h"
#include "revoke.h"

/* Eager mapping is only a head start (a touch maps the rest from core's
 * database): an attach that makes thousands of regions visible at once
 * would flood the agent's queue past its bound and end a well-behaved
 * session, so one request maps at most this many windows eagerly. */
#define EAGER_WINDOWS 1024
static unsigned eager_left = EAGER_WINDOWS;

/* Carry [start, start+len) of map rm up through every chain of parents to the
 * address spaces it is visible in. leaf/off: the RAM dataspace and offset
 * backing start (NULL to revoke). */
static void push_up(struct fl_region_map *rm, uint64_t start, uint64_t len,
                    struct fl_dataspace *leaf, uint64_t off, bool write, bool exec, int depth)
{
    if (depth >= CORE_MAX_DEPTH || len == 0) return;
    if (leaf && leaf->read_only) write = false; /* a ROM module: whatever was asked */
    if (rm->address_space_of) {
        if (leaf && eager_left > 0) {
            eager_left--;
            core_agent_map(rm->address_space_of, start, len, leaf, off, write, exec);
        } else if (!leaf) {
            core_revoke_wait(rm->address_space_of,
                             core_agent_revoke(rm->address_space_of, start, len));
        }
        return;
    }
    if (!rm->ds) return;
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &rm->ds->regions)
    {
        struct fl_region *p = fl_list_entry(pos, struct fl_region, ds_link);
        uint64_t a = start > p->offset ? start : p->offset;
        uint64_t b = start + len < p->offset + p->size ? start + len : p->offset + p->size;
        if (a >= b) continue;
        push_up(p->rm, p->start + (a - p->offset), b - a, leaf, leaf ? off + (a - start) : 0,
                write && p->write, exec && p->exec, depth + 1);
    }
}

/* Map every RAM-backed part of [offset, offset+len) of a managed map, as seen
 * through its parents. */
static void push_down(struct fl_region_map *rm, uint64_t offset, uint64_t len, int depth)
{
    if (depth >= CORE_MAX_DEPTH) return;
    for (const struct fl_span *sp = fl_placement_first(&rm->placement); sp;
         sp = fl_placement_next(&rm->placement, sp)) {
        struct fl_region *q = sp->owner;
        if (q->start >= offset + len) break;
        if (q->start + q->size <= offset || !q->ds) continue;
        if (q->ds->memfd >= 0)
            push_up(rm, q->start, q->size, q->ds, q->offset, q->write, q->exec, 0);
        else if (q->ds->rm)
            push_down(q->ds->rm, q->offset, q->size, depth + 1);
    }
}

void core_mapping_eager_budget(void)
{
    eager_left = EAGER_WINDOWS;
}

void core_mapping_map_region(struct fl_region *r)
{
    if (!r->ds) return;
    if (r->ds->memfd >= 0)
        push_up(r->rm, r->start, r->size, r->ds, r->offset, r->write, r->exec, 0);
    else if (r->ds->rm)
        push_down(r->ds->rm, r->offset, r->size, 1);
}

void core_mapping_revoke(struct fl_region_map *rm, uint64_t start, uint64_t size)
{
    push_up(rm, start, size, NULL, 0, false, false, 0);
}
