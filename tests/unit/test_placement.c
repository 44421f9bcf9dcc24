/*
 * Unit tests of the region map placement allocator (src/common/placement.c):
 * bookkeeping, lookup, the overlap check, Genode's best-fit choice, removal,
 * a randomised run against a page bitmap model, and randomised runs against
 * a reference model: the sorted-array implementation the trees replaced,
 * whose results the trees must reproduce exactly.
 */
#include "check_main.h"
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "placement.h"

#define PG  ((uint64_t)FL_PAGE_SIZE)
#define KIB 1024ull
#define MIB (1024ull * KIB)

/* Distinct owners; only their addresses matter. */
static int owner_a, owner_b, owner_c, owner_d;

/* ---------------------------------------------------------------- helpers */

static void insert_ok(struct fl_placement *p, uint64_t start, uint64_t size, void *owner)
{
    ck_assert_msg(fl_placement_is_free(p, start, size), "[%#" PRIx64 ", +%#" PRIx64 ") not free",
                  start, size);
    ck_assert_int_eq(fl_placement_insert(p, start, size, owner), 0);
}

static void assert_span(const struct fl_span *s, uint64_t start, uint64_t size, const void *owner)
{
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->start, start);
    ck_assert_uint_eq(s->size, size);
    ck_assert_ptr_eq(s->owner, owner);
}

static uint64_t find_ok(const struct fl_placement *p, uint64_t size, uint64_t ds_offset)
{
    uint64_t at = 0xdeadbeef;
    ck_assert_int_eq(fl_placement_find(p, size, ds_offset, &at), 0);
    return at;
}

static void find_none(const struct fl_placement *p, uint64_t size, uint64_t ds_offset)
{
    uint64_t at = 0xdeadbeef;
    ck_assert_int_eq(fl_placement_find(p, size, ds_offset, &at), -1);
}

/* ------------------------------------------------------------- init, fini */

START_TEST(test_init_sets_fields)
{
    struct fl_placement p;
    memset(&p, 0xa5, sizeof(p)); /* init must not depend on prior contents */
    fl_placement_init(&p, 0x100000, MIB);
    ck_assert_uint_eq(p.base, 0x100000);
    ck_assert_uint_eq(p.size, MIB);
    ck_assert_ptr_null(p.spans);
    ck_assert_uint_eq(p.count, 0);
    ck_assert_uint_eq(p.capacity, 0);
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x100000));
    ck_assert_int_eq(fl_placement_is_free(&p, 0x100000, MIB), 1);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_fini_releases_and_is_idempotent)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    insert_ok(&p, 0x100000, PG, &owner_a);
    insert_ok(&p, 0x102000, PG, &owner_b);
    ck_assert_uint_eq(p.count, 2);
    ck_assert_uint_ge(p.capacity, 2);
    fl_placement_fini(&p);
    ck_assert_ptr_null(p.spans);
    ck_assert_uint_eq(p.count, 0);
    ck_assert_uint_eq(p.capacity, 0);
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x100000));
    fl_placement_fini(&p); /* a second fini is harmless */
    ck_assert_ptr_null(p.spans);

    /* The structure is usable again after init. */
    fl_placement_init(&p, 0x200000, MIB);
    insert_ok(&p, 0x200000, PG, &owner_c);
    assert_span(fl_placement_lookup(&p, 0x200000), 0x200000, PG, &owner_c);
    fl_placement_fini(&p);
}
END_TEST

/* ---------------------------------------------------------- insert, lookup */

START_TEST(test_insert_lookup)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    /* Inserted out of address order on purpose. */
    insert_ok(&p, 0x110000, 0x3000, &owner_a);
    insert_ok(&p, 0x120000, 0x1000, &owner_b);
    insert_ok(&p, 0x105000, 0x2000, &owner_c);
    ck_assert_uint_eq(p.count, 3);
    const struct fl_span *it = fl_placement_first(&p);
    assert_span(it, 0x105000, 0x2000, &owner_c);
    assert_span(it = fl_placement_next(&p, it), 0x110000, 0x3000, &owner_a);
    assert_span(it = fl_placement_next(&p, it), 0x120000, 0x1000, &owner_b);
    ck_assert_ptr_null(fl_placement_next(&p, it));

    /* A: start, inside, end - 1, end, just before start. */
    assert_span(fl_placement_lookup(&p, 0x110000), 0x110000, 0x3000, &owner_a);
    assert_span(fl_placement_lookup(&p, 0x111234), 0x110000, 0x3000, &owner_a);
    assert_span(fl_placement_lookup(&p, 0x112fff), 0x110000, 0x3000, &owner_a);
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x113000));
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x10ffff));

    /* C, the lowest region. */
    assert_span(fl_placement_lookup(&p, 0x105000), 0x105000, 0x2000, &owner_c);
    assert_span(fl_placement_lookup(&p, 0x106fff), 0x105000, 0x2000, &owner_c);
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x107000));
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x104fff));

    /* B, the highest region, and past it. */
    assert_span(fl_placement_lookup(&p, 0x120000), 0x120000, 0x1000, &owner_b);
    assert_span(fl_placement_lookup(&p, 0x120fff), 0x120000, 0x1000, &owner_b);
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x121000));
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x1fffff));

    /* Gaps, the map's edges and far outside the map. */
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x100000));
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x108000));
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x11ffff));
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x200000));
    ck_assert_ptr_null(fl_placement_lookup(&p, 0));
    ck_assert_ptr_null(fl_placement_lookup(&p, UINT64_MAX));

    /* An adjacent region: the boundary byte belongs to the right one. */
    insert_ok(&p, 0x113000, 0x1000, &owner_d);
    assert_span(fl_placement_lookup(&p, 0x112fff), 0x110000, 0x3000, &owner_a);
    assert_span(fl_placement_lookup(&p, 0x113000), 0x113000, 0x1000, &owner_d);
    assert_span(fl_placement_lookup(&p, 0x113fff), 0x113000, 0x1000, &owner_d);
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x114000));
    ck_assert_uint_eq(p.count, 4);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_insert_many_stays_sorted)
{
    /* 1000 one-page regions in a scrambled order: the array grows past its
     * initial capacity several times and stays sorted. */
    enum { N = 1000 };
    static char owners[N];
    struct fl_placement p;
    fl_placement_init(&p, 0x40000000, N * PG);
    for (unsigned i = 0; i < N; i++) {
        unsigned k = (i * 619u) % N; /* 619 is coprime to 1000: a permutation */
        ck_assert_int_eq(fl_placement_insert(&p, 0x40000000 + k * PG, PG, &owners[k]), 0);
    }
    ck_assert_uint_eq(p.count, N);
    ck_assert_uint_ge(p.capacity, N);
    const struct fl_span *it = fl_placement_first(&p);
    for (unsigned k = 0; k < N; k++, it = fl_placement_next(&p, it)) {
        if (!it || it->start != 0x40000000 + k * PG || it->owner != &owners[k])
            ck_abort_msg("span %u out of order", k);
        const struct fl_span *s = fl_placement_lookup(&p, 0x40000000 + k * PG + 17);
        if (!s || s->owner != &owners[k]) ck_abort_msg("lookup of page %u failed", k);
    }
    ck_assert_ptr_null(it);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x40000000, PG), 0);
    find_none(&p, PG, 0);
    fl_placement_fini(&p);
}
END_TEST

/* ----------------------------------------------------------------- is_free */

START_TEST(test_is_free_ranges)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB); /* [0x100000, 0x200000) */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x100000, MIB), 1);
    insert_ok(&p, 0x140000, 0x10000, &owner_a); /* [0x140000, 0x150000) */
    insert_ok(&p, 0x160000, 0x10000, &owner_b); /* [0x160000, 0x170000) */

    /* Free ranges, including ones touching a region exactly. */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x100000, PG), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x100000, 0x40000), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x13ffff, 1), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x150000, 0x10000), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x150000, 1), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x170000, 0x90000), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x1ff000, PG), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x1fffff, 1), 1);

    /* Overlapping a region from the left, from the right, contained in it,
     * exactly it, covering it, and one byte at each of its ends. */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x13f000, 0x2000), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x13ffff, 2), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x14f000, 0x2000), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x141000, PG), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x140000, 0x10000), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x130000, 0x30000), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x140000, 1), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x14ffff, 1), 0);
    /* Between two regions, one byte too long, or starting one byte early. */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x150000, 0x10001), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x14ffff, 0x10000), 0);
    /* Spanning both regions. */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x100000, MIB), 0);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_is_free_outside_map)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);                             /* [0x100000, 0x200000) */
    ck_assert_int_eq(fl_placement_is_free(&p, 0xff000, PG), 0);       /* below */
    ck_assert_int_eq(fl_placement_is_free(&p, 0xfffff, 2), 0);        /* across base */
    ck_assert_int_eq(fl_placement_is_free(&p, 0, PG), 0);             /* far below */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x1ff000, 0x2000), 0);  /* across end */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x1fffff, 2), 0);       /* across end */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x200000, PG), 0);      /* at end */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x200000, 1), 0);       /* at end */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x300000, PG), 0);      /* above */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x100000, MIB + 1), 0); /* too long */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x100000, MIB), 1);     /* exactly the map */
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_is_free_size_zero)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x100000, 0), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x180000, 0), 0);
    insert_ok(&p, 0x140000, PG, &owner_a);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x140000, 0), 0);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_is_free_wraparound)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB); /* [0x100000, 0x200000) */
    insert_ok(&p, 0x140000, 0x10000, &owner_a);
    /* Sizes whose start + size wraps past 2^64 to an address inside or
     * below the map must not pass for free. */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x1ff000, UINT64_MAX), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x100000, UINT64_MAX), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x150000, 0ull - 0x40000), 0); /* end 0x110000 */
    ck_assert_int_eq(fl_placement_is_free(&p, 0x150000, 0ull - 0x150000 + 0x1000), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x180000, 0ull - 0x180000), 0); /* end 0 */
    ck_assert_int_eq(fl_placement_is_free(&p, UINT64_MAX, 2), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, UINT64_MAX - 0xfff, PG), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x1fffff, UINT64_MAX), 0);
    fl_placement_fini(&p);

    /* A map ending exactly at the top of the address space. */
    fl_placement_init(&p, 0ull - MIB, MIB);
    ck_assert_int_eq(fl_placement_is_free(&p, 0ull - MIB, MIB), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, UINT64_MAX, 1), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, UINT64_MAX, 2), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0ull - MIB, MIB + 1), 0);
    ck_assert_int_eq(fl_placement_is_free(&p, 0ull - MIB - 1, 2), 0);
    fl_placement_fini(&p);

    /* A map starting at address 0. */
    fl_placement_init(&p, 0, MIB);
    ck_assert_int_eq(fl_placement_is_free(&p, 0, PG), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, 0, MIB), 1);
    ck_assert_int_eq(fl_placement_is_free(&p, MIB - 1, UINT64_MAX), 0);
    fl_placement_fini(&p);
}
END_TEST

/* -------------------------------------------------------------------- find */

START_TEST(test_find_empty_map)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB); /* base is 1 MiB aligned */
    ck_assert_uint_eq(find_ok(&p, PG, 0), 0x100000);
    ck_assert_uint_eq(find_ok(&p, 64 * KIB, 0), 0x100000);
    ck_assert_uint_eq(find_ok(&p, MIB, 0), 0x100000);
    ck_assert_uint_eq(find_ok(&p, 0x1800, 0), 0x100000); /* not a page multiple */
    find_none(&p, MIB + 1, 0);
    find_none(&p, MIB + PG, 0);
    find_none(&p, 0, 0);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_find_empty_map_unaligned_base)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x101000, MIB); /* [0x101000, 0x201000) */
    ck_assert_uint_eq(find_ok(&p, PG, 0), 0x101000);
    ck_assert_uint_eq(find_ok(&p, 0x2000, 0), 0x102000);    /* 8 KiB aligned */
    ck_assert_uint_eq(find_ok(&p, 0x3000, 0), 0x102000);    /* log2 -> 8 KiB */
    ck_assert_uint_eq(find_ok(&p, 0x4000, 0), 0x104000);    /* 16 KiB aligned */
    ck_assert_uint_eq(find_ok(&p, 64 * KIB, 0), 0x110000);  /* 64 KiB aligned */
    ck_assert_uint_eq(find_ok(&p, 512 * KIB, 0), 0x180000); /* 512 KiB aligned */
    /* The whole map: only page alignment leaves room. */
    ck_assert_uint_eq(find_ok(&p, MIB, 0), 0x101000);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_find_best_fit_not_first_fit)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    /* Gaps: 64 KiB at 0x100000, 32 KiB at 0x120000, 16 KiB at 0x130000. */
    insert_ok(&p, 0x110000, 0x10000, &owner_a);
    insert_ok(&p, 0x128000, 0x8000, &owner_b);
    insert_ok(&p, 0x134000, 0x200000 - 0x134000, &owner_c);

    ck_assert_uint_eq(find_ok(&p, 0x4000, 0), 0x130000); /* the 16 KiB gap, last */
    ck_assert_uint_eq(find_ok(&p, 0x1000, 0), 0x130000);
    ck_assert_uint_eq(find_ok(&p, 0x5000, 0), 0x120000); /* too big for 16 KiB */
    ck_assert_uint_eq(find_ok(&p, 0x8000, 0), 0x120000);
    ck_assert_uint_eq(find_ok(&p, 0x9000, 0), 0x100000); /* only the 64 KiB gap */
    ck_assert_uint_eq(find_ok(&p, 0x10000, 0), 0x100000);
    find_none(&p, 0x11000, 0);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_find_best_fit_lowest_aligned_in_block)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    /* One free block [0x103000, 0x118000) of 84 KiB, all else taken. */
    insert_ok(&p, 0x100000, 0x3000, &owner_a);
    insert_ok(&p, 0x118000, 0x200000 - 0x118000, &owner_b);
    ck_assert_uint_eq(find_ok(&p, 0x1000, 0), 0x103000);
    ck_assert_uint_eq(find_ok(&p, 0x2000, 0), 0x104000);
    ck_assert_uint_eq(find_ok(&p, 0x4000, 0), 0x104000);
    ck_assert_uint_eq(find_ok(&p, 0x8000, 0), 0x108000);
    ck_assert_uint_eq(find_ok(&p, 0x10000, 0), 0x108000); /* 32 KiB aligned, exactly */
    ck_assert_uint_eq(find_ok(&p, 0x14000, 0), 0x104000); /* 16 KiB aligned */
    ck_assert_uint_eq(find_ok(&p, 0x15000, 0), 0x103000); /* the whole block */
    find_none(&p, 0x16000, 0);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_find_alignment_beats_smaller_block)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    /* Gaps: 64 KiB at 0x100000, and 20 KiB at [0x121000, 0x126000), which
     * is big enough for 16 KiB but holds no 16 KiB aligned 16 KiB range. */
    insert_ok(&p, 0x110000, 0x11000, &owner_a);
    insert_ok(&p, 0x126000, 0x200000 - 0x126000, &owner_b);
    ck_assert_uint_eq(find_ok(&p, 0x4000, 0), 0x100000);
    /* At 8 KiB alignment the smaller block wins. */
    ck_assert_uint_eq(find_ok(&p, 0x4000, 0x2000), 0x122000);
    ck_assert_uint_eq(find_ok(&p, 0x4000, 0x1000), 0x121000);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_find_alignment_preference)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    insert_ok(&p, 0x100000, PG, &owner_a); /* free from 0x101000 */
    /* 64 KiB lands 64 KiB aligned although 0x101000 is free and lower. */
    ck_assert_uint_eq(find_ok(&p, 64 * KIB, 0), 0x110000);
    ck_assert_uint_eq(find_ok(&p, 128 * KIB, 0), 0x120000);
    ck_assert_uint_eq(find_ok(&p, 256 * KIB, 0), 0x140000);
    ck_assert_uint_eq(find_ok(&p, 96 * KIB, 0), 0x110000); /* log2 -> 64 KiB */
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_find_falls_back_to_smaller_alignment)
{
    struct fl_placement p;
    /* [0x11000, 0x22000): no 64, 32 or 16 KiB aligned 64 KiB range fits;
     * the first that does is 8 KiB aligned. */
    fl_placement_init(&p, 0x11000, 0x11000);
    ck_assert_uint_eq(find_ok(&p, 0x10000, 0), 0x12000);
    fl_placement_fini(&p);

    /* [0x11000, 0x21000): exactly 64 KiB, only page aligned. */
    fl_placement_init(&p, 0x11000, 0x10000);
    ck_assert_uint_eq(find_ok(&p, 0x10000, 0), 0x11000);
    fl_placement_fini(&p);

    /* The aligned slot is taken: fall back inside the same map. */
    fl_placement_init(&p, 0x100000, 0x2f000); /* [0x100000, 0x12f000) */
    insert_ok(&p, 0x100000, 0x1000, &owner_a);
    insert_ok(&p, 0x11f000, 0x1000, &owner_b);
    /* Free: [0x101000, 0x11f000) and [0x120000, 0x12f000): no 64 KiB
     * aligned 64 KiB range; 32 KiB aligned [0x108000, 0x118000) fits. */
    ck_assert_uint_eq(find_ok(&p, 0x10000, 0), 0x108000);
    /* Once that block is taken there is no room for 64 KiB at all. */
    insert_ok(&p, 0x110000, 0x1000, &owner_c);
    find_none(&p, 0x10000, 0);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_find_ds_offset_limits_alignment)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    insert_ok(&p, 0x100000, PG, &owner_a);                       /* free from 0x101000 */
    ck_assert_uint_eq(find_ok(&p, 64 * KIB, 0x1000), 0x101000);  /* 4 KiB only */
    ck_assert_uint_eq(find_ok(&p, 64 * KIB, 0x3000), 0x101000);  /* 4 KiB only */
    ck_assert_uint_eq(find_ok(&p, 64 * KIB, 0x2000), 0x102000);  /* 8 KiB */
    ck_assert_uint_eq(find_ok(&p, 64 * KIB, 0x6000), 0x102000);  /* 8 KiB */
    ck_assert_uint_eq(find_ok(&p, 64 * KIB, 0x8000), 0x108000);  /* 32 KiB */
    ck_assert_uint_eq(find_ok(&p, 64 * KIB, 0x10000), 0x110000); /* 64 KiB */
    ck_assert_uint_eq(find_ok(&p, 64 * KIB, 0x30000), 0x110000); /* 64 KiB */
    /* An offset more aligned than the size does not raise the alignment
     * above log2(size). */
    ck_assert_uint_eq(find_ok(&p, 0x4000, 0x100000), 0x104000);
    /* An offset that is not even page aligned leaves no alignment. */
    find_none(&p, 64 * KIB, 0x123);
    find_none(&p, PG, 0x800);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_find_no_room)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    insert_ok(&p, 0x100000, MIB, &owner_a); /* full */
    find_none(&p, PG, 0);
    fl_placement_fini(&p);

    /* Only 12 KiB gaps: every 16 KiB holds a 4 KiB region. */
    fl_placement_init(&p, 0x100000, 0x40000);
    static char owners[16];
    for (unsigned i = 0; i < 16; i++) insert_ok(&p, 0x100000 + i * 0x4000, PG, &owners[i]);
    find_none(&p, 0x4000, 0);
    find_none(&p, 0x3001, 0);
    find_none(&p, MIB, 0);
    /* All gaps are equal, so which one wins is not specified; the place in
     * the gap is: its start for 12 KiB, its 8 KiB aligned middle for 8 KiB. */
    uint64_t at = find_ok(&p, 0x3000, 0);
    ck_assert_uint_eq((at - 0x100000) % 0x4000, 0x1000);
    ck_assert_int_eq(fl_placement_is_free(&p, at, 0x3000), 1);
    at = find_ok(&p, 0x2000, 0);
    ck_assert_uint_eq((at - 0x100000) % 0x4000, 0x2000);
    ck_assert_int_eq(fl_placement_is_free(&p, at, 0x2000), 1);
    fl_placement_fini(&p);

    /* Larger than the map. */
    fl_placement_init(&p, 0x100000, MIB);
    find_none(&p, 2 * MIB, 0);
    find_none(&p, UINT64_MAX, 0);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_find_gap_at_end_of_map)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    insert_ok(&p, 0x100000, 0xf0000, &owner_a); /* free: [0x1f0000, 0x200000) */
    ck_assert_uint_eq(find_ok(&p, 0x10000, 0), 0x1f0000);
    find_none(&p, 0x10001, 0);
    ck_assert_uint_eq(find_ok(&p, 0x1000, 0), 0x1f0000);
    fl_placement_fini(&p);
}
END_TEST

/* ------------------------------------------------------------------ remove */

START_TEST(test_remove)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, MIB);
    ck_assert_ptr_null(fl_placement_remove(&p, 0x100000)); /* empty map */
    insert_ok(&p, 0x110000, 0x3000, &owner_a);
    insert_ok(&p, 0x120000, 0x2000, &owner_b);
    insert_ok(&p, 0x130000, 0x1000, &owner_c);

    /* Not the start of a region: nothing happens. */
    ck_assert_ptr_null(fl_placement_remove(&p, 0x111000));
    ck_assert_ptr_null(fl_placement_remove(&p, 0x110001));
    ck_assert_ptr_null(fl_placement_remove(&p, 0x112fff));
    ck_assert_ptr_null(fl_placement_remove(&p, 0x10f000));
    ck_assert_ptr_null(fl_placement_remove(&p, 0x100000));
    ck_assert_ptr_null(fl_placement_remove(&p, 0x140000));
    ck_assert_ptr_null(fl_placement_remove(&p, UINT64_MAX));
    ck_assert_uint_eq(p.count, 3);

    /* The middle one. */
    ck_assert_ptr_eq(fl_placement_remove(&p, 0x120000), &owner_b);
    ck_assert_uint_eq(p.count, 2);
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x120000));
    assert_span(fl_placement_lookup(&p, 0x110000), 0x110000, 0x3000, &owner_a);
    assert_span(fl_placement_lookup(&p, 0x130000), 0x130000, 0x1000, &owner_c);
    ck_assert_int_eq(fl_placement_is_free(&p, 0x120000, 0x2000), 1);
    ck_assert_ptr_null(fl_placement_remove(&p, 0x120000)); /* twice */

    /* The first and the last. */
    ck_assert_ptr_eq(fl_placement_remove(&p, 0x110000), &owner_a);
    ck_assert_ptr_eq(fl_placement_remove(&p, 0x130000), &owner_c);
    ck_assert_uint_eq(p.count, 0);
    ck_assert_ptr_null(fl_placement_lookup(&p, 0x110000));
    ck_assert_int_eq(fl_placement_is_free(&p, 0x100000, MIB), 1);

    /* The freed range can be used again. */
    insert_ok(&p, 0x110000, 0x3000, &owner_d);
    assert_span(fl_placement_lookup(&p, 0x111000), 0x110000, 0x3000, &owner_d);
    ck_assert_ptr_eq(fl_placement_remove(&p, 0x110000), &owner_d);
    fl_placement_fini(&p);
}
END_TEST

START_TEST(test_remove_frees_for_find)
{
    struct fl_placement p;
    fl_placement_init(&p, 0x100000, 0x20000);
    insert_ok(&p, 0x100000, 0x10000, &owner_a);
    insert_ok(&p, 0x110000, 0x10000, &owner_b);
    find_none(&p, PG, 0);
    ck_assert_ptr_eq(fl_placement_remove(&p, 0x110000), &owner_b);
    ck_assert_uint_eq(find_ok(&p, 0x10000, 0), 0x110000);
    ck_assert_ptr_eq(fl_placement_remove(&p, 0x100000), &owner_a);
    ck_assert_uint_eq(find_ok(&p, 0x20000, 0), 0x100000);
    fl_placement_fini(&p);
}
END_TEST

/* ------------------------------------------------------------------ stress */

/*
 * A map of NPAGES pages at an address that is only page aligned, modelled as
 * one entry per page: -1 when free, else the page index of the region's start.
 * The region starting at page k has owner &tokens[k] and npages[k] pages.
 */
#define NPAGES      256
#define STRESS_BASE 0x7f0000013000ull
#define STRESS_OPS  10000

static int model[NPAGES];
static unsigned model_npages[NPAGES];
static char tokens[NPAGES];
static uint64_t rng_state;

/* Fail without Check's per-assertion bookkeeping, which is slow in loops. */
#define STRESS_CHECK(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond)) ck_abort_msg(__VA_ARGS__);                                                    \
    } while (0)

static uint64_t rng(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static unsigned rnd(unsigned n)
{
    return (unsigned)(rng() % n);
}

static uint64_t page_addr(long page)
{
    return STRESS_BASE + (uint64_t)page * PG;
}

/* Whether pages [first, first + n) lie in the map and are all free. */
static int model_free(long first, long n)
{
    if (first < 0 || n <= 0 || first + n > NPAGES) return 0;
    for (long i = first; i < first + n; i++)
        if (model[i] != -1) return 0;
    return 1;
}

static void model_insert(long first, long n)
{
    for (long i = first; i < first + n; i++) model[i] = (int)first;
    model_npages[first] = (unsigned)n;
}

static void model_remove(long first)
{
    for (long i = first; i < first + (long)model_npages[first]; i++) model[i] = -1;
    model_npages[first] = 0;
}

/*
 * Genode's best fit computed from the page model: for each alignment from
 * log2(size) down to the page size, skipping those ds_offset is not aligned
 * to, the smallest free run holding an aligned range. Returns the alignment
 * (log2) and the size of the chosen block, or -1.
 */
static int model_find(uint64_t size, uint64_t ds_offset, uint64_t *best_block_out)
{
    int top = 63 - __builtin_clzll(size);
    for (int align = top; align >= (int)FL_PAGE_SHIFT; align--) {
        uint64_t mask = (1ull << align) - 1;
        if (ds_offset & mask) continue;
        uint64_t best = 0;
        for (long i = 0; i < NPAGES;) {
            if (model[i] != -1) {
                i++;
                continue;
            }
            long j = i;
            while (j < NPAGES && model[j] == -1) j++;
            uint64_t gs = page_addr(i), ge = page_addr(j);
            uint64_t a = (gs + mask) & ~mask;
            if (a < ge && ge - a >= size && (best == 0 || ge - gs < best)) best = ge - gs;
            i = j;
        }
        if (best) {
            *best_block_out = best;
            return align;
        }
    }
    return -1;
}

/* The free run of the model containing page, as [*lo, *hi). */
static void model_run(long page, long *lo, long *hi)
{
    long i = page, j = page;
    while (i > 0 && model[i - 1] == -1) i--;
    while (j < NPAGES && model[j] == -1) j++;
    *lo = i;
    *hi = j;
}

static void model_check_all(const struct fl_placement *p)
{
    size_t regions = 0;
    for (long k = 0; k < NPAGES; k++) {
        if (model[k] == k) regions++;
        for (int off = 0; off < 2; off++) {
            uint64_t addr = page_addr(k) + (off ? PG - 1 : 0);
            const struct fl_span *s = fl_placement_lookup(p, addr);
            if (model[k] == -1) {
                STRESS_CHECK(s == NULL, "page %ld: lookup found a region in a free page", k);
            } else {
                long st = model[k];
                STRESS_CHECK(s != NULL, "page %ld: lookup found nothing", k);
                STRESS_CHECK(s->start == page_addr(st) && s->size == model_npages[st] * PG &&
                                 s->owner == &tokens[st],
                             "page %ld: lookup found the wrong region", k);
            }
        }
    }
    STRESS_CHECK(p->count == regions, "count %zu, model has %zu regions", p->count, regions);
    size_t n = 0;
    for (const struct fl_span *s = fl_placement_first(p), *t; s; s = t, n++) {
        t = fl_placement_next(p, s);
        STRESS_CHECK(!t || s->start + s->size <= t->start,
                     "spans %zu and %zu overlap or are out of order", n, n + 1);
        STRESS_CHECK(s->start >= STRESS_BASE && s->start + s->size <= page_addr(NPAGES),
                     "span %zu lies outside the map", n);
    }
    STRESS_CHECK(n == regions, "iteration saw %zu regions, model has %zu", n, regions);
}

static void stress_insert_random(struct fl_placement *p, uint64_t seed, int op)
{
    long first = (long)rnd(NPAGES + 8) - 4; /* a few pages outside on each side */
    long n = rnd(8) == 0 ? (long)rnd(64) + 1 : (long)rnd(8) + 1;
    int want = model_free(first, n);
    uint64_t start = STRESS_BASE + (uint64_t)((int64_t)first * (int64_t)PG);
    int got = fl_placement_is_free(p, start, (uint64_t)n * PG);
    STRESS_CHECK(got == want,
                 "seed %#" PRIx64 " op %d: is_free(page %ld, %ld pages) = %d, model %d", seed, op,
                 first, n, got, want);
    if (!got) return;
    STRESS_CHECK(fl_placement_insert(p, start, (uint64_t)n * PG, &tokens[first]) == 0,
                 "op %d: insert failed", op);
    model_insert(first, n);
}

static void stress_find(struct fl_placement *p, uint64_t seed, int op)
{
    static const uint64_t offsets[] = {0, 1, 2, 3, 4, 6, 8, 16, 32, 64, 5, 12};
    uint64_t size = (uint64_t)(rnd(4) == 0 ? rnd(96) + 1 : rnd(16) + 1) * PG;
    uint64_t ds_offset = offsets[rnd(sizeof(offsets) / sizeof(offsets[0]))] * PG;
    uint64_t block = 0, at = 0;
    int align = model_find(size, ds_offset, &block);
    int rc = fl_placement_find(p, size, ds_offset, &at);
    STRESS_CHECK(rc == (align < 0 ? -1 : 0),
                 "seed %#" PRIx64 " op %d: find(%#" PRIx64 ", %#" PRIx64 ") = %d, model %d", seed,
                 op, size, ds_offset, rc, align);
    if (rc != 0) return;
    uint64_t mask = (1ull << align) - 1;
    STRESS_CHECK(at >= STRESS_BASE && (at - STRESS_BASE) % PG == 0 && at < page_addr(NPAGES),
                 "op %d: find returned %#" PRIx64 " outside the map", op, at);
    long first = (long)((at - STRESS_BASE) / PG), n = (long)(size / PG);
    STRESS_CHECK(model_free(first, n), "seed %#" PRIx64 " op %d: find returned a taken range", seed,
                 op);
    long lo, hi;
    model_run(first, &lo, &hi);
    uint64_t want_at = (page_addr(lo) + mask) & ~mask;
    STRESS_CHECK((hi - lo) * PG == block,
                 "seed %#" PRIx64 " op %d: find chose a %ld page block, best fit is %" PRIu64, seed,
                 op, hi - lo, block / PG);
    STRESS_CHECK(at == want_at,
                 "seed %#" PRIx64 " op %d: find returned %#" PRIx64 ", want %#" PRIx64
                 " (alignment 2^%d)",
                 seed, op, at, want_at, align);
    STRESS_CHECK(fl_placement_is_free(p, at, size) == 1, "op %d: found range not free", op);
    STRESS_CHECK(fl_placement_insert(p, at, size, &tokens[first]) == 0, "op %d: insert failed", op);
    model_insert(first, n);
}

static void stress_remove(struct fl_placement *p, uint64_t seed, int op)
{
    long page = (long)rnd(NPAGES);
    if (rnd(4) != 0) {
        /* Usually the first region at or after a random page (wrapping). */
        for (long i = 0; i < NPAGES; i++) {
            long k = (page + i) % NPAGES;
            if (model[k] == k) {
                page = k;
                break;
            }
        }
    }
    if (model[page] == page) {
        void *owner = fl_placement_remove(p, page_addr(page));
        STRESS_CHECK(owner == &tokens[page],
                     "seed %#" PRIx64 " op %d: remove(page %ld) wrong owner", seed, op, page);
        model_remove(page);
        return;
    }
    /* Not a region's start (inside one or free): nothing must change. */
    size_t before = p->count;
    STRESS_CHECK(fl_placement_remove(p, page_addr(page)) == NULL,
                 "seed %#" PRIx64 " op %d: remove(page %ld) removed something", seed, op, page);
    STRESS_CHECK(p->count == before, "op %d: count changed", op);
    /* Nor at one byte past a region's start. */
    if (model[page] != -1) {
        long st = model[page];
        STRESS_CHECK(fl_placement_remove(p, page_addr(st) + 1) == NULL,
                     "op %d: remove(start + 1) removed something", op);
        STRESS_CHECK(p->count == before, "op %d: count changed", op);
    }
}

static void stress_lookup(const struct fl_placement *p, uint64_t seed, int op)
{
    /* Any byte from two pages below the map to two pages above it. */
    uint64_t addr = STRESS_BASE - 2 * PG + rng() % ((NPAGES + 4) * PG);
    const struct fl_span *s = fl_placement_lookup(p, addr);
    long page = addr >= STRESS_BASE ? (long)((addr - STRESS_BASE) / PG) : -1;
    if (page < 0 || page >= NPAGES || model[page] == -1) {
        STRESS_CHECK(s == NULL, "seed %#" PRIx64 " op %d: lookup(%#" PRIx64 ") found a region",
                     seed, op, addr);
        return;
    }
    long st = model[page];
    STRESS_CHECK(s != NULL && s->start == page_addr(st) && s->size == model_npages[st] * PG &&
                     s->owner == &tokens[st],
                 "seed %#" PRIx64 " op %d: lookup(%#" PRIx64 ") disagrees with the model", seed, op,
                 addr);
}

START_TEST(test_stress_against_model)
{
    uint64_t seed = 0x5eedf417u + (uint64_t)_i * 0x9e3779b97f4a7c15ull;
    const char *env = getenv("FL_TEST_SEED");
    if (env) seed = strtoull(env, NULL, 0) + (uint64_t)_i;
    rng_state = seed ? seed : 1;
    for (long i = 0; i < NPAGES; i++) {
        model[i] = -1;
        model_npages[i] = 0;
    }

    struct fl_placement p;
    fl_placement_init(&p, STRESS_BASE, NPAGES * PG);
    unsigned inserts = 0, finds = 0, find_fails = 0, removes = 0;
    for (int op = 0; op < STRESS_OPS; op++) {
        unsigned r = rnd(100);
        size_t before = p.count;
        if (r < 30) {
            stress_insert_random(&p, seed, op);
            inserts += p.count > before;
        } else if (r < 55) {
            stress_find(&p, seed, op);
            finds += p.count > before;
            find_fails += p.count == before;
        } else if (r < 80) {
            stress_remove(&p, seed, op);
            removes += p.count < before;
        } else {
            stress_lookup(&p, seed, op);
        }
        if (op % 250 == 0) model_check_all(&p);
    }
    model_check_all(&p);
    /* The run exercised all paths (guards against a degenerate generator). */
    ck_assert_uint_gt(inserts, 150);
    ck_assert_uint_gt(finds, 500);
    ck_assert_uint_gt(find_fails, 200);
    ck_assert_uint_gt(removes, 500);

    /* Empty the map through remove: nothing is left over. */
    for (long k = 0; k < NPAGES; k++)
        if (model[k] == k) {
            STRESS_CHECK(fl_placement_remove(&p, page_addr(k)) == &tokens[k], "final remove %ld",
                         k);
            model_remove(k);
        }
    ck_assert_uint_eq(p.count, 0);
    ck_assert_int_eq(fl_placement_is_free(&p, STRESS_BASE, NPAGES * PG), 1);
    fl_placement_fini(&p);
}
END_TEST

/* --------------------------------------------------------- reference model */

/*
 * The implementation the trees replaced, kept verbatim in substance: regions
 * in an array sorted by start, best fit by scanning every gap. Its results
 * are the specification; the trees must agree on every call.
 */
struct ref {
    uint64_t base, size;
    struct fl_span *spans;
    size_t count, capacity;
};

static void ref_init(struct ref *r, uint64_t base, uint64_t size)
{
    memset(r, 0, sizeof(*r));
    r->base = base;
    r->size = size;
}

static void ref_fini(struct ref *r)
{
    free(r->spans);
    r->spans = NULL;
    r->count = r->capacity = 0;
}

static size_t ref_upper_bound(const struct ref *r, uint64_t addr)
{
    size_t lo = 0, hi = r->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->spans[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const struct fl_span *ref_lookup(const struct ref *r, uint64_t addr)
{
    size_t i = ref_upper_bound(r, addr);
    if (i == 0) return NULL;
    const struct fl_span *s = &r->spans[i - 1];
    return addr - s->start < s->size ? s : NULL;
}

static int ref_is_free(const struct ref *r, uint64_t start, uint64_t size)
{
    if (size == 0 || start < r->base) return 0;
    if (start - r->base > r->size || size > r->size - (start - r->base)) return 0;
    size_t i = ref_upper_bound(r, start);
    if (i > 0) {
        const struct fl_span *prev = &r->spans[i - 1];
        if (start - prev->start < prev->size) return 0;
    }
    if (i < r->count && r->spans[i].start - start < size) return 0;
    return 1;
}

static int ref_find(const struct ref *r, uint64_t size, uint64_t ds_offset, uint64_t *at)
{
    if (size == 0 || size > r->size) return -1;
    uint64_t end = r->base + r->size;
    for (int align = 63 - __builtin_clzll(size); align >= (int)FL_PAGE_SHIFT; align--) {
        uint64_t mask = (1ull << align) - 1;
        if (ds_offset & mask) continue;
        uint64_t best_block = UINT64_MAX, best_at = 0;
        uint64_t gap_start = r->base;
        for (size_t i = 0; i <= r->count; i++) {
            uint64_t gap_end = i < r->count ? r->spans[i].start : end;
            if (gap_end > gap_start) {
                uint64_t block = gap_end - gap_start;
                uint64_t a = (gap_start + mask) & ~mask;
                if (a >= gap_start && a < gap_end && gap_end - a >= size && block < best_block) {
                    best_block = block;
                    best_at = a;
                }
            }
            if (i < r->count) gap_start = r->spans[i].start + r->spans[i].size;
        }
        if (best_block != UINT64_MAX) {
            *at = best_at;
            return 0;
        }
    }
    return -1;
}

static void ref_insert(struct ref *r, uint64_t start, uint64_t size, void *owner)
{
    if (r->count == r->capacity) {
        r->capacity = r->capacity ? r->capacity * 2 : 16;
        r->spans = realloc(r->spans, r->capacity * sizeof(*r->spans));
        if (!r->spans) abort();
    }
    size_t i = ref_upper_bound(r, start);
    memmove(&r->spans[i + 1], &r->spans[i], (r->count - i) * sizeof(*r->spans));
    r->spans[i] = (struct fl_span){.start = start, .size = size, .owner = owner};
    r->count++;
}

static void *ref_remove(struct ref *r, uint64_t start)
{
    size_t i = ref_upper_bound(r, start);
    if (i == 0 || r->spans[i - 1].start != start) return NULL;
    i--;
    void *owner = r->spans[i].owner;
    memmove(&r->spans[i], &r->spans[i + 1], (r->count - i - 1) * sizeof(*r->spans));
    r->count--;
    return owner;
}

/* ------------------------------------------------- structure of the trees */

#define NIL UINT32_MAX

/* Height of span subtree t, checking order, balance and cached heights;
 * appends its regions in order to out[*n]. Returns -1 on a broken tree. */
static int check_span_tree(const struct fl_placement *p, uint32_t t, struct fl_span *out, size_t *n,
                           size_t max)
{
    if (t == NIL) return 0;
    if (t >= p->count || *n >= max) return -1;
    int hl = check_span_tree(p, p->links[t].child[0], out, n, max);
    if (hl < 0 || *n >= max) return -1;
    out[(*n)++] = p->spans[t];
    int hr = check_span_tree(p, p->links[t].child[1], out, n, max);
    if (hr < 0 || hl - hr > 1 || hr - hl > 1) return -1;
    int h = 1 + (hl > hr ? hl : hr);
    return p->links[t].height == h ? h : -1;
}

/* Likewise for the block tree, also checking each node's cached subtree
 * maxima against a recomputation. */
static int check_block_tree(const struct fl_placement *p, uint32_t t,
                            struct fl_placement_block *out, size_t *n, size_t max, unsigned *maxctz,
                            uint32_t *slack)
{
    *maxctz = 0;
    *slack = 0;
    if (t == NIL) return 0;
    if (t >= p->nblocks || *n >= max) return -1;
    const struct fl_placement_block *b = &p->blocks[t];
    unsigned zl, zr;
    uint32_t sl, sr;
    int hl = check_block_tree(p, b->child[0], out, n, max, &zl, &sl);
    if (hl < 0 || *n >= max) return -1;
    out[(*n)++] = *b;
    int hr = check_block_tree(p, b->child[1], out, n, max, &zr, &sr);
    if (hr < 0 || hl - hr > 1 || hr - hl > 1) return -1;
    int h = 1 + (hl > hr ? hl : hr);
    unsigned z = b->start ? (unsigned)__builtin_ctzll(b->start) : 64;
    uint64_t len = b->end - b->start, low = b->start & (~b->start + 1);
    uint64_t v = len > low ? (len - low) >> FL_PAGE_SHIFT : 0;
    uint32_t s = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    z = z > zl ? z : zl;
    z = z > zr ? z : zr;
    s = s > sl ? s : sl;
    s = s > sr ? s : sr;
    if (b->height != h || b->maxctz != z || b->slack != s) return -1;
    *maxctz = z;
    *slack = s;
    return h;
}

static int block_before(const struct fl_placement_block *a, const struct fl_placement_block *b)
{
    uint64_t la = a->end - a->start, lb = b->end - b->start;
    return la != lb ? la < lb : a->start < b->start;
}

static int block_by_start(const void *a, const void *b)
{
    const struct fl_placement_block *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* The trees hold exactly the reference's regions and its non-empty gaps. */
static void check_against_ref(const struct fl_placement *p, const struct ref *r, const char *what)
{
    STRESS_CHECK(p->count == r->count, "%s: count %zu, reference %zu", what, p->count, r->count);
    STRESS_CHECK(p->capacity >= p->count, "%s: capacity", what);
    struct fl_span *in_order = malloc((r->count + 1) * sizeof(*in_order));
    struct fl_placement_block *blocks = malloc((r->count + 2) * sizeof(*blocks));
    if (!in_order || !blocks) abort();
    size_t n = 0;
    STRESS_CHECK(check_span_tree(p, p->root, in_order, &n, r->count) >= 0, "%s: span tree broken",
                 what);
    STRESS_CHECK(n == r->count, "%s: span tree holds %zu, reference %zu", what, n, r->count);
    for (size_t i = 0; i < n; i++)
        STRESS_CHECK(in_order[i].start == r->spans[i].start &&
                         in_order[i].size == r->spans[i].size &&
                         in_order[i].owner == r->spans[i].owner,
                     "%s: region %zu differs", what, i);
    /* Address order through the iterator too. */
    n = 0;
    for (const struct fl_span *s = fl_placement_first(p); s; s = fl_placement_next(p, s), n++)
        STRESS_CHECK(n < r->count && s->start == r->spans[n].start, "%s: iteration %zu", what, n);
    STRESS_CHECK(n == r->count, "%s: iteration saw %zu", what, n);

    if (r->count > 0) { /* before the first insert the block tree is empty */
        size_t nb = 0, want = 0;
        unsigned z;
        uint32_t sl;
        STRESS_CHECK(check_block_tree(p, p->block_root, blocks, &nb, r->count + 1, &z, &sl) >= 0,
                     "%s: block tree broken", what);
        STRESS_CHECK(nb == p->nblocks, "%s: block tree holds %zu of %zu", what, nb, p->nblocks);
        STRESS_CHECK(p->blocks_capacity >= p->count + 1, "%s: block capacity", what);
        for (size_t i = 0; i + 1 < nb; i++)
            STRESS_CHECK(block_before(&blocks[i], &blocks[i + 1]), "%s: blocks out of order", what);
        qsort(blocks, nb, sizeof(*blocks), block_by_start);
        uint64_t gs = r->base, end = r->base + r->size;
        for (size_t i = 0; i <= r->count; i++) {
            uint64_t ge = i < r->count ? r->spans[i].start : end;
            if (ge > gs) {
                STRESS_CHECK(want < nb && blocks[want].start == gs && blocks[want].end == ge,
                             "%s: gap [%#" PRIx64 ", %#" PRIx64 ") not a block", what, gs, ge);
                want++;
            }
            if (i < r->count) gs = r->spans[i].start + r->spans[i].size;
        }
        STRESS_CHECK(nb == want, "%s: %zu blocks, %zu gaps", what, nb, want);
    }
    free(in_order);
    free(blocks);
}

/* --------------------------------------------------- randomised, exact */

#define DIFF_PAGES 8192
#define DIFF_OPS   20000
static char diff_tokens[DIFF_PAGES];

/* Sizes in pages: mostly small, some powers of two and their neighbours
 * (where alignment matters most), some large. */
static uint64_t diff_size(void)
{
    switch (rnd(6)) {
    case 0: return (uint64_t)1 << rnd(9);
    case 1: return ((uint64_t)1 << (rnd(8) + 1)) + (rnd(2) ? 1 : (uint64_t)-1);
    case 2: return rnd(256) + 1;
    case 3: return rnd(2048) + 1;
    default: return rnd(8) + 1;
    }
}

static void diff_run(uint64_t seed, uint64_t base, bool check_structure)
{
    rng_state = seed ? seed : 1;
    struct fl_placement p;
    struct ref r;
    fl_placement_init(&p, base, DIFF_PAGES * PG);
    ref_init(&r, base, DIFF_PAGES * PG);
    static const uint64_t offsets[] = {0, 1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 512, 5, 12, 1024};
    unsigned finds_ok = 0, finds_none = 0, removes = 0, inserts = 0;
    for (int op = 0; op < DIFF_OPS; op++) {
        unsigned k = rnd(100);
        if (k < 25) { /* insert at an address, often not free */
            uint64_t start = base + (uint64_t)((int64_t)rnd(DIFF_PAGES + 16) - 8) * PG;
            uint64_t size = diff_size() * PG;
            int want = ref_is_free(&r, start, size);
            STRESS_CHECK(fl_placement_is_free(&p, start, size) == want,
                         "seed %#" PRIx64 " op %d: is_free(%#" PRIx64 ", %#" PRIx64 ")", seed, op,
                         start, size);
            if (want) {
                void *owner = &diff_tokens[(start - base) / PG];
                STRESS_CHECK(fl_placement_insert(&p, start, size, owner) == 0, "op %d insert", op);
                ref_insert(&r, start, size, owner);
                inserts++;
            } else {
                size_t before = p.count;
                STRESS_CHECK(fl_placement_insert(&p, start, size, NULL) == -1,
                             "op %d: insert of a taken range succeeded", op);
                STRESS_CHECK(p.count == before, "op %d: count changed", op);
            }
        } else if (k < 55) { /* best fit, then take it */
            uint64_t size = diff_size() * PG;
            uint64_t off = offsets[rnd(sizeof(offsets) / sizeof(offsets[0]))] * PG;
            uint64_t at = 1, want_at = 2;
            int rc = fl_placement_find(&p, size, off, &at);
            int want = ref_find(&r, size, off, &want_at);
            STRESS_CHECK(rc == want,
                         "seed %#" PRIx64 " op %d: find(%#" PRIx64 ", %#" PRIx64
                         ") = %d, reference %d",
                         seed, op, size, off, rc, want);
            if (rc == 0) {
                STRESS_CHECK(at == want_at,
                             "seed %#" PRIx64 " op %d: find(%#" PRIx64 ", %#" PRIx64
                             ") at %#" PRIx64 ", reference %#" PRIx64,
                             seed, op, size, off, at, want_at);
                void *owner = &diff_tokens[(at - base) / PG];
                STRESS_CHECK(fl_placement_insert(&p, at, size, owner) == 0, "op %d insert", op);
                ref_insert(&r, at, size, owner);
                finds_ok++;
            } else {
                finds_none++;
            }
        } else if (k < 85) { /* remove: usually a region's start */
            uint64_t start;
            if (r.count && rnd(5)) {
                const struct fl_span *s = &r.spans[rnd((unsigned)r.count)];
                start = s->start + (rnd(10) == 0 ? PG : 0);
            } else {
                start = base + (uint64_t)rnd(DIFF_PAGES) * PG;
            }
            void *want = ref_remove(&r, start);
            STRESS_CHECK(fl_placement_remove(&p, start) == want,
                         "seed %#" PRIx64 " op %d: remove(%#" PRIx64 ")", seed, op, start);
            removes += want != NULL;
        } else { /* lookup and is_free anywhere near the map */
            uint64_t addr = base - 4 * PG + rng() % ((DIFF_PAGES + 8) * PG);
            const struct fl_span *a = fl_placement_lookup(&p, addr), *b = ref_lookup(&r, addr);
            STRESS_CHECK(
                (a == NULL) == (b == NULL) &&
                    (!a || (a->start == b->start && a->size == b->size && a->owner == b->owner)),
                "seed %#" PRIx64 " op %d: lookup(%#" PRIx64 ")", seed, op, addr);
            uint64_t size = rnd(8) == 0 ? rng() : diff_size() * PG - rnd(2);
            STRESS_CHECK(fl_placement_is_free(&p, addr, size) == ref_is_free(&r, addr, size),
                         "seed %#" PRIx64 " op %d: is_free(%#" PRIx64 ", %#" PRIx64 ")", seed, op,
                         addr, size);
        }
        if (check_structure && op % 64 == 0) check_against_ref(&p, &r, "run");
    }
    check_against_ref(&p, &r, "end");
    ck_assert_uint_gt(inserts, 500);
    ck_assert_uint_gt(finds_ok, 1000);
    ck_assert_uint_gt(finds_none, 50);
    ck_assert_uint_gt(removes, 1000);
    /* Empty it in a random order, checking as it shrinks. */
    while (r.count) {
        uint64_t start = r.spans[rnd((unsigned)r.count)].start;
        void *want = ref_remove(&r, start);
        STRESS_CHECK(fl_placement_remove(&p, start) == want, "final remove %#" PRIx64, start);
        if (check_structure && r.count % 16 == 0) check_against_ref(&p, &r, "drain");
    }
    ck_assert_uint_eq(p.count, 0);
    ck_assert_int_eq(fl_placement_is_free(&p, base, DIFF_PAGES * PG), 1);
    fl_placement_fini(&p);
    ref_fini(&r);
}

START_TEST(test_against_reference)
{
    /* Fixed seeds; bases aligned to a page only, to 2 MiB, and at 0. */
    static const uint64_t bases[] = {0x7f0000013000ull, 0x40200000ull, 0};
    uint64_t seed = 0x7ee5eed0ull + (uint64_t)_i * 0x9e3779b97f4a7c15ull;
    const char *env = getenv("FL_TEST_SEED");
    if (env) seed = strtoull(env, NULL, 0) + (uint64_t)_i;
    diff_run(seed, bases[_i % 3], _i < 3);
}
END_TEST

/*
 * The case the subtree caches exist for: many blocks just long enough but
 * misaligned for the size asked (two-page holes at odd pages, asked for two
 * pages at 8 KiB alignment). The answer must still match the reference.
 */
START_TEST(test_find_many_misaligned_blocks)
{
    enum { N = 3000 };
    static char owners[3 * N + 8];
    struct fl_placement p;
    struct ref r;
    uint64_t base = 0x10000000;
    fl_placement_init(&p, base, (3 * N + 8) * PG);
    ref_init(&r, base, (3 * N + 8) * PG);
    /* Regions at pages 0, 3, 6, ...: holes [3k+1, 3k+3), aligned to 8 KiB
     * only when k is odd. */
    for (unsigned k = 0; k <= N; k++) {
        uint64_t start = base + 3ull * k * PG;
        ck_assert_int_eq(fl_placement_insert(&p, start, PG, &owners[3 * k]), 0);
        ref_insert(&r, start, PG, &owners[3 * k]);
    }
    for (int round = 0; round < 200; round++) {
        uint64_t size = (round % 3 + 1) * PG, at = 0, want_at = 1;
        int rc = fl_placement_find(&p, size, 0, &at);
        ck_assert_int_eq(rc, ref_find(&r, size, 0, &want_at));
        if (rc) break;
        ck_assert_uint_eq(at, want_at);
        ck_assert_int_eq(fl_placement_insert(&p, at, size, &owners[(at - base) / PG]), 0);
        ref_insert(&r, at, size, &owners[(at - base) / PG]);
    }
    check_against_ref(&p, &r, "misaligned");
    fl_placement_fini(&p);
    ref_fini(&r);
}
END_TEST

/* ---------------------------------------------------------- out of memory */

/*
 * Insert must fail with -1 and change nothing when its arrays cannot grow.
 * Run in a child under RLIMIT_AS set just above what the process uses, for
 * a range of headroom values, so that each of the three reallocations
 * (blocks at one size, spans and links at the next) fails in some run.
 * Sanitizers reserve huge address ranges, so the test only runs without.
 */
#if defined(__SANITIZE_ADDRESS__)
#define FL_NO_RLIMIT_AS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define FL_NO_RLIMIT_AS 1
#endif
#endif

#ifndef FL_NO_RLIMIT_AS
static uint64_t vm_bytes(void)
{
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%lu", &pages) != 1) pages = 0;
    fclose(f);
    return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* 0: it failed at least once and every failure left the state intact and
 * usable; 1: it never failed; 2+: a check failed. */
static int oom_child(uint64_t headroom)
{
    enum { FILL = 65536 - 4, MORE = 16 };
    static struct fl_placement p;
    static struct ref r;
    uint64_t base = 0x100000000ull;
    fl_placement_init(&p, base, 4ull * (FILL + MORE) * PG);
    ref_init(&r, base, 4ull * (FILL + MORE) * PG);
    r.spans = malloc((FILL + MORE + 16) * sizeof(*r.spans)); /* no growth later */
    r.capacity = FILL + MORE + 16;
    for (unsigned k = 0; k < FILL; k++) {
        unsigned page = (k * 7919u) % FILL; /* scrambled order */
        if (fl_placement_insert(&p, base + 2ull * page * PG, PG, &diff_tokens[page % DIFF_PAGES]))
            return 2;
    }
    for (unsigned page = 0; page < FILL; page++) /* the reference, sorted directly */
        r.spans[page] =
            (struct fl_span){base + 2ull * page * PG, PG, &diff_tokens[page % DIFF_PAGES]};
    r.count = FILL;
    struct rlimit old, lim;
    getrlimit(RLIMIT_AS, &old);
    lim = old;
    lim.rlim_cur = vm_bytes() + headroom;
    if (setrlimit(RLIMIT_AS, &lim) != 0) return 3;
    int failures = 0;
    for (unsigned k = 0; k < MORE; k++) {
        uint64_t start = base + 2ull * (FILL + k) * PG;
        size_t count = p.count, cap = p.capacity, bcap = p.blocks_capacity, nb = p.nblocks;
        uint32_t root = p.root, broot = p.block_root;
        if (fl_placement_insert(&p, start, PG, &diff_tokens[0]) == 0) {
            ref_insert(&r, start, PG, &diff_tokens[0]);
            continue;
        }
        failures++;
        if (p.count != count || p.capacity != cap || p.blocks_capacity != bcap || p.nblocks != nb ||
            p.root != root || p.block_root != broot)
            return 4;
        if (fl_placement_lookup(&p, start) || !fl_placement_is_free(&p, start, PG)) return 5;
        uint64_t at = 0, want = 1;
        if (fl_placement_find(&p, PG, 0, &at) != ref_find(&r, PG, 0, &want) || at != want) return 6;
        /* With the limit lifted the same insert works. */
        setrlimit(RLIMIT_AS, &old);
        if (fl_placement_insert(&p, start, PG, &diff_tokens[0]) != 0) return 7;
        ref_insert(&r, start, PG, &diff_tokens[0]);
        lim.rlim_cur = vm_bytes() + headroom;
        setrlimit(RLIMIT_AS, &lim);
    }
    setrlimit(RLIMIT_AS, &old);
    check_against_ref(&p, &r, "after out of memory");
    return failures ? 0 : 1;
}
#endif

START_TEST(test_insert_out_of_memory)
{
#ifdef FL_NO_RLIMIT_AS
    /* Nothing to do under sanitizers (see above). */
#else
    int failed_somewhere = 0;
    for (uint64_t headroom = 0; headroom <= (3ull << 20); headroom += 256 << 10) {
        fflush(NULL);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) _exit(oom_child(headroom));
        int status = 0;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status), "headroom %" PRIu64 ": child died", headroom);
        int code = WEXITSTATUS(status);
        ck_assert_msg(code <= 1, "headroom %" PRIu64 ": check %d failed", headroom, code);
        failed_somewhere += code == 0;
    }
    ck_assert_int_gt(failed_somewhere, 2);
#endif
}
END_TEST

/* -------------------------------------------------------------------- main */

static Suite *placement_suite(void)
{
    Suite *s = suite_create("placement");

    TCase *tc = tcase_create("init_fini");
    tcase_add_test(tc, test_init_sets_fields);
    tcase_add_test(tc, test_fini_releases_and_is_idempotent);
    suite_add_tcase(s, tc);

    tc = tcase_create("insert_lookup");
    tcase_add_test(tc, test_insert_lookup);
    tcase_add_test(tc, test_insert_many_stays_sorted);
    suite_add_tcase(s, tc);

    tc = tcase_create("is_free");
    tcase_add_test(tc, test_is_free_ranges);
    tcase_add_test(tc, test_is_free_outside_map);
    tcase_add_test(tc, test_is_free_size_zero);
    tcase_add_test(tc, test_is_free_wraparound);
    suite_add_tcase(s, tc);

    tc = tcase_create("find");
    tcase_add_test(tc, test_find_empty_map);
    tcase_add_test(tc, test_find_empty_map_unaligned_base);
    tcase_add_test(tc, test_find_best_fit_not_first_fit);
    tcase_add_test(tc, test_find_best_fit_lowest_aligned_in_block);
    tcase_add_test(tc, test_find_alignment_beats_smaller_block);
    tcase_add_test(tc, test_find_alignment_preference);
    tcase_add_test(tc, test_find_falls_back_to_smaller_alignment);
    tcase_add_test(tc, test_find_ds_offset_limits_alignment);
    tcase_add_test(tc, test_find_no_room);
    tcase_add_test(tc, test_find_gap_at_end_of_map);
    suite_add_tcase(s, tc);

    tc = tcase_create("remove");
    tcase_add_test(tc, test_remove);
    tcase_add_test(tc, test_remove_frees_for_find);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_stress_against_model, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase_create("reference");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_against_reference, 0, 6);
    tcase_add_test(tc, test_find_many_misaligned_blocks);
    tcase_add_test(tc, test_insert_out_of_memory);
    suite_add_tcase(s, tc);

    return s;
}

CHECK_MAIN(placement_suite)
