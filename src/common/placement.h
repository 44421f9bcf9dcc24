/*
 * The placement allocator of a region map: which ranges of [base, base+size)
 * are taken, Genode's best-fit choice of a free one, and lookup of the region
 * containing an address.
 *
 * Regions are kept in an array sorted by start: lookup and the overlap check
 * are binary searches; insert and remove move the tail (a memmove, fast at
 * the sizes of one map); best fit scans the gaps.
 */
#ifndef FL_PLACEMENT_H
#define FL_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#define FL_PAGE_SIZE  4096u
#define FL_PAGE_SHIFT 12u

struct fl_span {
    uint64_t start;
    uint64_t size;
    void *owner;
};

struct fl_placement {
    uint64_t base, size; /* the map covers [base, base + size) */
    struct fl_span *spans;
    size_t count, capacity;
};

void fl_placement_init(struct fl_placement *p, uint64_t base, uint64_t size);
void fl_placement_fini(struct fl_placement *p);

/* Best fit for size bytes of a dataspace attached at ds_offset: alignments
 * from log2(size) down to the page size, skipping those ds_offset is not
 * aligned to; for each, the smallest free block that fits an aligned range,
 * at its lowest aligned address. Returns 0 and *at, or -1 when nothing fits. */
int fl_placement_find(const struct fl_placement *p, uint64_t size, uint64_t ds_offset,
                      uint64_t *at);

/* Whether [start, start+size) lies within the map and overlaps no region. */
int fl_placement_is_free(const struct fl_placement *p, uint64_t start, uint64_t size);

/* Record a region; the range must be free. Returns 0, or -1 when out of memory. */
int fl_placement_insert(struct fl_placement *p, uint64_t start, uint64_t size, void *owner);

/* The region containing addr, or NULL. */
const struct fl_span *fl_placement_lookup(const struct fl_placement *p, uint64_t addr);

/* Remove the region starting at start. Returns its owner, or NULL. */
void *fl_placement_remove(struct fl_placement *p, uint64_t start);

#endif
