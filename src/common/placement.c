#include "placement.h"

#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

/* Both trees share one AVL implementation; they differ in where a node's
 * links live, how it compares and what it caches about its subtree. */
enum kind { SPANS, BLOCKS };

void fl_placement_init(struct fl_placement *p, uint64_t base, uint64_t size)
{
    memset(p, 0, sizeof(*p));
    p->base = base;
    p->size = size;
    p->root = p->block_root = NIL;
}

void fl_placement_fini(struct fl_placement *p)
{
    free(p->spans);
    free(p->links);
    free(p->blocks);
    p->spans = NULL;
    p->links = NULL;
    p->blocks = NULL;
    p->count = p->capacity = 0;
    p->nblocks = p->blocks_capacity = 0;
    p->root = p->block_root = NIL;
}

/* ------------------------------------------------------------ AVL, by index */

static uint32_t *child(const struct fl_placement *p, enum kind k, uint32_t i)
{
    return k == SPANS ? p->links[i].child : p->blocks[i].child;
}

static int height(const struct fl_placement *p, enum kind k, uint32_t i)
{
    if (i == NIL) return 0;
    return k == SPANS ? p->links[i].height : p->blocks[i].height;
}

static unsigned ctz64(uint64_t v)
{
    return v ? (unsigned)__builtin_ctzll(v) : 64;
}

/* What best fit may need beyond the length: a block of length L at s holds
 * an aligned range of size S only if s is aligned, or L - S covers the
 * padding, which is at least the lowest set bit of s. */
static uint32_t slack_of(const struct fl_placement_block *b)
{
    uint64_t len = b->end - b->start, low = b->start & (~b->start + 1);
    uint64_t v = len > low ? (len - low) >> FL_PAGE_SHIFT : 0;
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static void update(struct fl_placement *p, enum kind k, uint32_t i)
{
    const uint32_t *c = child(p, k, i);
    int hl = height(p, k, c[0]), hr = height(p, k, c[1]);
    uint8_t h = (uint8_t)(1 + (hl > hr ? hl : hr));
    if (k == SPANS) {
        p->links[i].height = h;
        return;
    }
    struct fl_placement_block *b = &p->blocks[i];
    b->height = h;
    unsigned z = ctz64(b->start);
    uint32_t s = slack_of(b);
    for (int d = 0; d < 2; d++) {
        if (c[d] == NIL) continue;
        const struct fl_placement_block *x = &p->blocks[c[d]];
        if (x->maxctz > z) z = x->maxctz;
        if (x->slack > s) s = x->slack;
    }
    b->maxctz = (uint8_t)z;
    b->slack = s;
}

/* Raise t's child on side d into t's place. */
static uint32_t rotate(struct fl_placement *p, enum kind k, uint32_t t, int d)
{
    uint32_t *ct = child(p, k, t);
    uint32_t x = ct[d];
    uint32_t *cx = child(p, k, x);
    ct[d] = cx[!d];
    cx[!d] = t;
    update(p, k, t);
    update(p, k, x);
    return x;
}

static uint32_t rebalance(struct fl_placement *p, enum kind k, uint32_t t)
{
    update(p, k, t);
    uint32_t *c = child(p, k, t);
    int bal = height(p, k, c[0]) - height(p, k, c[1]);
    if (bal > 1 || bal < -1) {
        int d = bal < 0; /* the heavy side */
        const uint32_t *cc = child(p, k, c[d]);
        if (height(p, k, cc[!d]) > height(p, k, cc[d])) c[d] = rotate(p, k, c[d], !d);
        return rotate(p, k, t, d);
    }
    return t;
}

/* Order of the key (a, b) against node i: spans by start (a), blocks by
 * (length a, start b). Keys are unique in both trees. */
static int compare(const struct fl_placement *p, enum kind k, uint64_t a, uint64_t b, uint32_t i)
{
    if (k == SPANS) {
        uint64_t s = p->spans[i].start;
        return a < s ? -1 : a > s;
    }
    const struct fl_placement_block *x = &p->blocks[i];
    uint64_t len = x->end - x->start;
    if (a != len) return a < len ? -1 : 1;
    return b < x->start ? -1 : b > x->start;
}

static void key_of(const struct fl_placement *p, enum kind k, uint32_t i, uint64_t *a, uint64_t *b)
{
    if (k == SPANS) {
        *a = p->spans[i].start;
        *b = 0;
    } else {
        *a = p->blocks[i].end - p->blocks[i].start;
        *b = p->blocks[i].start;
    }
}

static uint32_t tree_insert(struct fl_placement *p, enum kind k, uint32_t t, uint32_t n, uint64_t a,
                            uint64_t b)
{
    if (t == NIL) return n;
    uint32_t *c = child(p, k, t);
    int d = compare(p, k, a, b, t) > 0;
    c[d] = tree_insert(p, k, c[d], n, a, b);
    return rebalance(p, k, t);
}

static uint32_t remove_min(struct fl_placement *p, enum kind k, uint32_t t, uint32_t *min)
{
    uint32_t *c = child(p, k, t);
    if (c[0] == NIL) {
        *min = t;
        return c[1];
    }
    c[0] = remove_min(p, k, c[0], min);
    return rebalance(p, k, t);
}

/* Unlink the node with key (a, b) from the subtree t; *gone gets its index. */
static uint32_t tree_remove(struct fl_placement *p, enum kind k, uint32_t t, uint64_t a, uint64_t b,
                            uint32_t *gone)
{
    if (t == NIL) return NIL;
    uint32_t *c = child(p, k, t);
    int r = compare(p, k, a, b, t);
    if (r != 0) {
        c[r > 0] = tree_remove(p, k, c[r > 0], a, b, gone);
        return rebalance(p, k, t);
    }
    *gone = t;
    if (c[0] == NIL) return c[1];
    if (c[1] == NIL) return c[0];
    uint32_t m;
    uint32_t right = remove_min(p, k, c[1], &m);
    uint32_t *cm = child(p, k, m);
    cm[0] = c[0];
    cm[1] = right;
    return rebalance(p, k, m);
}

/* Node from (the last of its array) moves to the free index to: repoint the
 * link that leads to it, then copy it. Its subtree, so its cache, is the same. */
static void relocate(struct fl_placement *p, enum kind k, uint32_t from, uint32_t to)
{
    uint64_t a, b;
    key_of(p, k, from, &a, &b);
    uint32_t *root = k == SPANS ? &p->root : &p->block_root;
    if (*root == from) {
        *root = to;
    } else {
        for (uint32_t t = *root;;) {
            uint32_t *c = child(p, k, t);
            int d = compare(p, k, a, b, t) > 0;
            if (c[d] == from) {
                c[d] = to;
                break;
            }
            t = c[d];
        }
    }
    if (k == SPANS) {
        p->spans[to] = p->spans[from];
        p->links[to] = p->links[from];
    } else {
        p->blocks[to] = p->blocks[from];
    }
}

/* ----------------------------------------------------------- the two trees */

/* The region with the greatest start <= addr, or NIL. */
static uint32_t span_floor(const struct fl_placement *p, uint64_t addr)
{
    uint32_t best = NIL;
    for (uint32_t t = p->root; t != NIL;) {
        if (p->spans[t].start <= addr) {
            best = t;
            t = p->links[t].child[1];
        } else {
            t = p->links[t].child[0];
        }
    }
    return best;
}

/* The region with the least start > addr, or NIL. */
static uint32_t span_above(const struct fl_placement *p, uint64_t addr)
{
    uint32_t best = NIL;
    for (uint32_t t = p->root; t != NIL;) {
        if (p->spans[t].start > addr) {
            best = t;
            t = p->links[t].child[0];
        } else {
            t = p->links[t].child[1];
        }
    }
    return best;
}

/* The free block around addr, [*gs, *ge), from the regions on either side
 * (addr itself must not lie in a region). Empty when *ge <= *gs. */
static void gap_around(const struct fl_placement *p, uint64_t addr, uint64_t *gs, uint64_t *ge)
{
    uint32_t prev = span_floor(p, addr), next = span_above(p, addr);
    *gs = prev != NIL ? p->spans[prev].start + p->spans[prev].size : p->base;
    *ge = next != NIL ? p->spans[next].start : p->base + p->size;
}

/* Needs room for one more block. */
static void block_add(struct fl_placement *p, uint64_t start, uint64_t end)
{
    if (end <= start) return;
    uint32_t i = (uint32_t)p->nblocks++;
    p->blocks[i] = (struct fl_placement_block){.start = start, .end = end, .child = {NIL, NIL}};
    update(p, BLOCKS, i);
    p->block_root = tree_insert(p, BLOCKS, p->block_root, i, end - start, start);
}

static void block_del(struct fl_placement *p, uint64_t start, uint64_t end)
{
    if (end <= start) return;
    uint32_t gone = NIL;
    p->block_root = tree_remove(p, BLOCKS, p->block_root, end - start, start, &gone);
    if (gone == NIL) return; /* cannot happen: every gap is a block */
    uint32_t last = (uint32_t)--p->nblocks;
    if (gone != last) relocate(p, BLOCKS, last, gone);
}

/* The capacity for need elements: cap, or double (amortised O(1) growth). */
static size_t grown(size_t cap, size_t need)
{
    if (need <= cap) return cap;
    size_t c = cap ? cap * 2 : 16;
    return c < need ? need : c;
}

/* ---------------------------------------------------------------- the API */

const struct fl_span *fl_placement_lookup(const struct fl_placement *p, uint64_t addr)
{
    uint32_t i = span_floor(p, addr);
    if (i == NIL) return NULL;
    const struct fl_span *s = &p->spans[i];
    return addr - s->start < s->size ? s : NULL;
}

const struct fl_span *fl_placement_first(const struct fl_placement *p)
{
    uint32_t i = p->root;
    if (i == NIL) return NULL;
    while (p->links[i].child[0] != NIL) i = p->links[i].child[0];
    return &p->spans[i];
}

const struct fl_span *fl_placement_next(const struct fl_placement *p, const struct fl_span *s)
{
    uint32_t i = span_above(p, s->start);
    return i == NIL ? NULL : &p->spans[i];
}

int fl_placement_is_free(const struct fl_placement *p, uint64_t start, uint64_t size)
{
    if (size == 0 || start < p->base) return 0;
    if (start - p->base > p->size || size > p->size - (start - p->base)) return 0;
    uint32_t prev = span_floor(p, start);
    if (prev != NIL && start - p->spans[prev].start < p->spans[prev].size) return 0;
    uint32_t next = span_above(p, start);
    if (next != NIL && p->spans[next].start - start < size) return 0;
    return 1;
}

static int log2_floor(uint64_t v)
{
    return 63 - __builtin_clzll(v);
}

static int fits(uint64_t gap_start, uint64_t gap_end, uint64_t size, uint64_t mask)
{
    uint64_t a = (gap_start + mask) & ~mask;
    return a >= gap_start && a < gap_end && gap_end - a >= size;
}

/* The first block of subtree t in (length, start) order that fits. */
static uint32_t best_fit(const struct fl_placement *p, uint32_t t, uint64_t size, uint64_t mask,
                         unsigned align, uint32_t min_slack)
{
    while (t != NIL) {
        const struct fl_placement_block *b = &p->blocks[t];
        if (b->maxctz < align && b->slack < min_slack) return NIL;
        if (b->end - b->start < size) {
            t = b->child[1];
            continue;
        }
        uint32_t r = best_fit(p, b->child[0], size, mask, align, min_slack);
        if (r != NIL) return r;
        if (fits(b->start, b->end, size, mask)) return t;
        t = b->child[1];
    }
    return NIL;
}

int fl_placement_find(const struct fl_placement *p, uint64_t size, uint64_t ds_offset, uint64_t *at)
{
    if (size == 0 || size > p->size) return -1;
    uint64_t end = p->base + p->size;
    uint64_t pages = size >> FL_PAGE_SHIFT;
    uint32_t min_slack = pages > UINT32_MAX ? UINT32_MAX : (uint32_t)pages;
    for (int align = log2_floor(size); align >= (int)FL_PAGE_SHIFT; align--) {
        uint64_t mask = (1ull << align) - 1;
        if (ds_offset & mask) continue;
        if (p->count == 0) {
            /* The block tree is filled on the first insert. */
            if (end > p->base && fits(p->base, end, size, mask)) {
                *at = (p->base + mask) & ~mask;
                return 0;
            }
            continue;
        }
        uint32_t i = best_fit(p, p->block_root, size, mask, (unsigned)align, min_slack);
        if (i != NIL) {
            *at = (p->blocks[i].start + mask) & ~mask;
            return 0;
        }
    }
    return -1;
}

int fl_placement_insert(struct fl_placement *p, uint64_t start, uint64_t size, void *owner)
{
    if (!fl_placement_is_free(p, start, size) || p->count >= NIL - 2) return -1;
    /* All memory first, so that a failure changes nothing. At most one block
     * more than regions. */
    size_t cap = grown(p->capacity, p->count + 1);
    if (cap != p->capacity) {
        struct fl_span *spans = realloc(p->spans, cap * sizeof(*spans));
        if (!spans) return -1;
        p->spans = spans; /* larger than capacity says until links follow: harmless */
        struct fl_placement_link *links = realloc(p->links, cap * sizeof(*links));
        if (!links) return -1;
        p->links = links;
        p->capacity = cap;
    }
    size_t bcap = grown(p->blocks_capacity, p->count + 2);
    if (bcap != p->blocks_capacity) {
        struct fl_placement_block *blocks = realloc(p->blocks, bcap * sizeof(*blocks));
        if (!blocks) return -1;
        p->blocks = blocks;
        p->blocks_capacity = bcap;
    }

    if (p->count == 0) {
        p->nblocks = 0;
        p->block_root = NIL;
        block_add(p, p->base, p->base + p->size);
    }
    uint64_t gs, ge;
    gap_around(p, start, &gs, &ge);
    block_del(p, gs, ge);
    block_add(p, gs, start);
    block_add(p, start + size, ge);

    uint32_t i = (uint32_t)p->count++;
    p->spans[i] = (struct fl_span){.start = start, .size = size, .owner = owner};
    p->links[i] = (struct fl_placement_link){.child = {NIL, NIL}, .height = 1};
    p->root = tree_insert(p, SPANS, p->root, i, start, 0);
    return 0;
}

void *fl_placement_remove(struct fl_placement *p, uint64_t start)
{
    uint32_t gone = NIL;
    p->root = tree_remove(p, SPANS, p->root, start, 0, &gone);
    if (gone == NIL) return NULL;
    struct fl_span s = p->spans[gone];
    uint32_t last = (uint32_t)--p->count;
    if (gone != last) relocate(p, SPANS, last, gone);

    /* The blocks on either side and the region merge into one. Removing
     * first keeps the count within what insert reserved. */
    uint64_t gs, ge;
    gap_around(p, start, &gs, &ge);
    block_del(p, gs, start);
    block_del(p, start + s.size, ge);
    block_add(p, gs, ge);
    return s.owner;
}
