/*
 * The placement allocator of a region map: which ranges of [base, base+size)
 * are taken, Genode's best-fit choice of a free one, and lookup of the region
 * containing an address.
 *
 * A map may hold 100k regions or more, and every attach, detach and fault
 * walks it, so all operations are O(log n) and none moves the other regions:
 *
 * - The regions sit in an AVL tree keyed by start (lookup, the overlap check
 *   and finding a region's neighbours, which bound the free block it takes
 *   or gives back).
 * - The free blocks (maximal gaps between regions) sit in a second AVL tree
 *   keyed by (length, start). That is the order best fit wants: the first
 *   block at or after the requested length that fits an aligned range is
 *   the smallest, and ties go to the lowest address. Each block caches the
 *   largest alignment of a start and the largest (length - lowest set bit
 *   of start) in its subtree, which lets the search skip whole subtrees of
 *   blocks that are long enough but could not hold an aligned range.
 *
 * Nodes live in arrays and link by 32-bit index, not pointer: no allocation
 * per region, and about 68 bytes per region in all. spans[0, count) stays an
 * array of plain struct fl_span, in no particular order (removal moves the
 * last one into the hole), because callers walk all regions through it; use
 * fl_placement_first/next for address order. Pointers into it, like those
 * fl_placement_lookup returns, are valid only until the next insert or remove.
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

/* Internal: spans[i]'s place in the tree of regions. */
struct fl_placement_link {
    uint32_t child[2];
    uint8_t height;
};

/* Internal: a free block [start, end) and its place in the tree of blocks. */
struct fl_placement_block {
    uint64_t start, end;
    uint32_t child[2];
    uint32_t slack; /* subtree max of (length - lowest bit of start) in pages, saturated */
    uint8_t height;
    uint8_t maxctz; /* subtree max of the trailing zeros of start (64 for 0) */
};

struct fl_placement {
    uint64_t base, size;    /* the map covers [base, base + size) */
    struct fl_span *spans;  /* the regions, [0, count), unordered */
    size_t count, capacity; /* of spans and links */
    struct fl_placement_link *links;
    struct fl_placement_block *blocks;
    size_t nblocks, blocks_capacity;
    uint32_t root, block_root;
};

void fl_placement_init(struct fl_placement *p, uint64_t base, uint64_t size);
void fl_placement_fini(struct fl_placement *p);

/* Best fit for size bytes of a dataspace attached at ds_offset: alignments
 * from log2(size) down to the page size, skipping those ds_offset is not
 * aligned to; for each, the smallest free block that fits an aligned range
 * (the lowest such block among equals), at its lowest aligned address.
 * Returns 0 and *at, or -1 when nothing fits. */
int fl_placement_find(const struct fl_placement *p, uint64_t size, uint64_t ds_offset,
                      uint64_t *at);

/* Whether [start, start+size) lies within the map and overlaps no region. */
int fl_placement_is_free(const struct fl_placement *p, uint64_t start, uint64_t size);

/* Record a region. Returns 0, or -1 without any change when out of memory or
 * when the range is not free (see fl_placement_is_free). */
int fl_placement_insert(struct fl_placement *p, uint64_t start, uint64_t size, void *owner);

/* The region containing addr, or NULL. */
const struct fl_span *fl_placement_lookup(const struct fl_placement *p, uint64_t addr);

/* Remove the region starting at start. Returns its owner, or NULL. */
void *fl_placement_remove(struct fl_placement *p, uint64_t start);

/* The regions in address order: the lowest, and the one after s (NULL at the
 * end). O(log n) each; s must be a current region. */
const struct fl_span *fl_placement_first(const struct fl_placement *p);
const struct fl_span *fl_placement_next(const struct fl_placement *p, const struct fl_span *s);

#endif
