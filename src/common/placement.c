#include "placement.h"

#include <stdlib.h>
#include <string.h>

void fl_placement_init(struct fl_placement *p, uint64_t base, uint64_t size)
{
    memset(p, 0, sizeof(*p));
    p->base = base;
    p->size = size;
}

void fl_placement_fini(struct fl_placement *p)
{
    free(p->spans);
    p->spans = NULL;
    p->count = p->capacity = 0;
}

/* Index of the first span whose start is > addr. */
static size_t upper_bound(const struct fl_placement *p, uint64_t addr)
{
    size_t lo = 0, hi = p->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->spans[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const struct fl_span *fl_placement_lookup(const struct fl_placement *p, uint64_t addr)
{
    size_t i = upper_bound(p, addr);
    if (i == 0) return NULL;
    const struct fl_span *s = &p->spans[i - 1];
    return addr - s->start < s->size ? s : NULL;
}

int fl_placement_is_free(const struct fl_placement *p, uint64_t start, uint64_t size)
{
    if (size == 0 || start < p->base) return 0;
    if (start - p->base > p->size || size > p->size - (start - p->base)) return 0;
    size_t i = upper_bound(p, start);
    if (i > 0) {
        const struct fl_span *prev = &p->spans[i - 1];
        if (start - prev->start < prev->size) return 0;
    }
    if (i < p->count && p->spans[i].start - start < size) return 0;
    return 1;
}

static int log2_floor(uint64_t v)
{
    return 63 - __builtin_clzll(v);
}

int fl_placement_find(const struct fl_placement *p, uint64_t size, uint64_t ds_offset, uint64_t *at)
{
    if (size == 0 || size > p->size) return -1;
    uint64_t end = p->base + p->size;
    for (int align = log2_floor(size); align >= (int)FL_PAGE_SHIFT; align--) {
        uint64_t mask = (1ull << align) - 1;
        if (ds_offset & mask) continue;
        uint64_t best_block = UINT64_MAX, best_at = 0;
        uint64_t gap_start = p->base;
        for (size_t i = 0; i <= p->count; i++) {
            uint64_t gap_end = i < p->count ? p->spans[i].start : end;
            if (gap_end > gap_start) {
                uint64_t block = gap_end - gap_start;
                uint64_t a = (gap_start + mask) & ~mask;
                if (a >= gap_start && a < gap_end && gap_end - a >= size && block < best_block) {
                    best_block = block;
                    best_at = a;
                }
            }
            if (i < p->count) gap_start = p->spans[i].start + p->spans[i].size;
        }
        if (best_block != UINT64_MAX) {
            *at = best_at;
            return 0;
        }
    }
    return -1;
}

int fl_placement_insert(struct fl_placement *p, uint64_t start, uint64_t size, void *owner)
{
    if (p->count == p->capacity) {
        size_t cap = p->capacity ? p->capacity * 2 : 16;
        struct fl_span *n = realloc(p->spans, cap * sizeof(*n));
        if (!n) return -1;
        p->spans = n;
        p->capacity = cap;
    }
    size_t i = upper_bound(p, start);
    memmove(&p->spans[i + 1], &p->spans[i], (p->count - i) * sizeof(*p->spans));
    p->spans[i] = (struct fl_span){.start = start, .size = size, .owner = owner};
    p->count++;
    return 0;
}

void *fl_placement_remove(struct fl_placement *p, uint64_t start)
{
    size_t i = upper_bound(p, start);
    if (i == 0 || p->spans[i - 1].start != start) return NULL;
    i--;
    void *owner = p->spans[i].owner;
    memmove(&p->spans[i], &p->spans[i + 1], (p->count - i - 1) * sizeof(*p->spans));
    p->count--;
    return owner;
}
