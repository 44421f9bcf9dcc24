/*
 * Every attach error, in Genode's check order, in a component's own address
 * space and in a managed region map: offset alignment before the dataspace,
 * the dataspace before offset/size, offset/size before placement; use_at
 * conflicts and bounds; no room; best-fit placement with alignment; detach of
 * any address inside a region and of addresses with no region. Afterwards the
 * session still works, no metadata leaked, and core is alive.
 */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define K 1024ul

static struct fl_env *env;

/* Attach with explicit attributes; *start gets the placement on success. */
static int att(fl_cap rm, fl_cap ds, size_t size, size_t offset, int use_at, uintptr_t at,
               uintptr_t *start, size_t *num)
{
    struct fl_attr a = {
        .size = size, .offset = offset, .use_at = use_at != 0, .at = at, .writeable = true};
    struct fl_range r = {0, 0};
    int e = fl_region_map_attach(env, rm, ds, &a, &r);
    if (start) *start = e == 0 ? r.start : 0;
    if (num) *num = e == 0 ? r.num_bytes : 0;
    return e;
}

/* Attach that must succeed at the expected place with the expected size. */
static void att_ok(fl_cap rm, fl_cap ds, size_t size, size_t offset, int use_at, uintptr_t at,
                   uintptr_t want_start, size_t want_num, int line)
{
    uintptr_t s;
    size_t n;
    int e = att(rm, ds, size, offset, use_at, at, &s, &n);
    if (e != 0 || s != want_start || n != want_num)
        t_fail_at(__FILE__, line,
                  "attach(size %#zx, offset %#zx, use_at %d, at %#lx) = %d (%s) at %#lx +%#zx, "
                  "expected 0 at %#lx +%#zx",
                  size, offset, use_at, (unsigned long)at, e, fl_error_name(e), (unsigned long)s, n,
                  (unsigned long)want_start, want_num);
}
#define ATT_OK(rm, ds, size, off, use_at, at, want, num)                                           \
    att_ok(rm, ds, size, off, use_at, at, want, num, __LINE__)

static void fill(fl_cap ds, size_t size, uint8_t base)
{
    int err;
    uint8_t *p = fl_attach(env, ds, &err);
    T_ERR(err, 0);
    for (size_t i = 0; i < size; i++) p[i] = (uint8_t)(base + i / 4096);
    T_ERR(fl_detach(env, p), 0);
}

/* The errors that do not depend on the map: checks 1-4. ds16 is 16 KiB. */
static void common_errors(fl_cap rm, fl_cap ds16, const fl_cap *bad, int nbad, fl_cap other_rm,
                          int room)
{
    /* 1. offset not page-aligned: REGION_CONFLICT, before the dataspace is looked at. */
    T_ERR(att(rm, ds16, 0, 100, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 4096, 4095, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 0, 4097, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    for (int i = 0; i < nbad; i++) {
        T_ERR(att(rm, bad[i], 0, 1, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
        T_ERR(att(rm, bad[i], 4096, 2048, 1, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    }

    /* 2. not a valid dataspace: INVALID_DATASPACE, before offset and size. */
    for (int i = 0; i < nbad; i++) {
        T_ERR(att(rm, bad[i], 0, 0, 0, 0, NULL, NULL), -FL_E_INVALID_DATASPACE);
        T_ERR(att(rm, bad[i], 4096, 0, 0, 0, NULL, NULL), -FL_E_INVALID_DATASPACE);
        /* offset beyond any size, size beyond any size, an impossible use_at */
        T_ERR(att(rm, bad[i], 0, 1ul << 40, 0, 0, NULL, NULL), -FL_E_INVALID_DATASPACE);
        T_ERR(att(rm, bad[i], 1ul << 40, 0, 0, 0, NULL, NULL), -FL_E_INVALID_DATASPACE);
        T_ERR(att(rm, bad[i], 4096, 0, 1, 4095, NULL, NULL), -FL_E_INVALID_DATASPACE);
    }
    T_ERR(att(rm, rm, 0, 0, 0, 0, NULL, NULL), -FL_E_INVALID_DATASPACE);
    T_ERR(att(rm, other_rm, 0, 0, 0, 0, NULL, NULL), -FL_E_INVALID_DATASPACE);

    /* 3. offset >= dataspace size */
    T_ERR(att(rm, ds16, 0, 16 * K, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 4096, 16 * K, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 0, 20 * K, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 0, 1ul << 40, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 0, SIZE_MAX & ~4095ul, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);

    /* 4. size (rounded up to 4 KiB) + offset beyond the dataspace */
    T_ERR(att(rm, ds16, 20 * K, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 16 * K + 1, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 16 * K, 4 * K, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 12 * K + 1, 4 * K, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 4096, 12 * K + 4096, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, SIZE_MAX, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, SIZE_MAX, 4096, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, SIZE_MAX - 4095, 8192, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, (SIZE_MAX & ~4095ul) - 8191, 12 * K, 0, 0, NULL, NULL),
          -FL_E_REGION_CONFLICT);

    if (!room) return;
    /* The largest valid combinations are fine: size 0 means "the rest". */
    uintptr_t s;
    size_t n;
    T_ERR(att(rm, ds16, 12 * K, 4 * K, 0, 0, &s, &n), 0);
    T_EQ(n, 12 * K);
    T_ERR(fl_region_map_detach(env, rm, s), 0);
    T_ERR(att(rm, ds16, 12 * K - 1, 4 * K, 0, 0, &s, &n), 0);
    T_EQ(n, 12 * K);
    T_ERR(fl_region_map_detach(env, rm, s), 0);
    T_ERR(att(rm, ds16, 0, 12 * K, 0, 0, &s, &n), 0);
    T_EQ(n, 4 * K);
    T_ERR(fl_region_map_detach(env, rm, s), 0);
    T_ERR(att(rm, ds16, 1, 12 * K, 0, 0, &s, &n), 0);
    T_EQ(n, 4 * K);
    T_ERR(fl_region_map_detach(env, rm, s), 0);
    T_ERR(att(rm, ds16, 0, 8 * K, 0, 0, &s, &n), 0);
    T_EQ(n, 8 * K);
    T_ERR(fl_region_map_detach(env, rm, s), 0);
}

/* use_at conflicts in a map with a free range [lo, hi) of at least 64 KiB. */
static void use_at_errors(fl_cap rm, fl_cap ds16, fl_cap ds4, uintptr_t lo, uintptr_t hi)
{
    T_ASSERT(hi - lo >= 64 * K);
    uintptr_t x = lo + 32 * K; /* 16 KiB region at [x, x+16K) */
    ATT_OK(rm, ds16, 0, 0, 1, x, x, 16 * K);
    /* exactly, inside, overlapping either end, covering */
    T_ERR(att(rm, ds16, 0, 0, 1, x, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds4, 0, 0, 1, x, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds4, 0, 0, 1, x + 12 * K, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 8 * K, 0, 1, x - 4 * K, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 8 * K, 0, 1, x + 12 * K, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 0, 0, 1, x - 8 * K, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 0, 0, 1, x + 8 * K, NULL, NULL), -FL_E_REGION_CONFLICT);
    /* a use_at conflict is still REGION_CONFLICT with a checked offset */
    T_ERR(att(rm, ds16, 4 * K, 8 * K, 1, x + 4 * K, NULL, NULL), -FL_E_REGION_CONFLICT);
    /* adjacent on both sides is fine */
    ATT_OK(rm, ds4, 0, 0, 1, x - 4 * K, x - 4 * K, 4 * K);
    ATT_OK(rm, ds4, 0, 0, 1, x + 16 * K, x + 16 * K, 4 * K);
    /* detach any address inside: the range is free again */
    T_ERR(fl_region_map_detach(env, rm, x + 9 * K + 123), 0);
    T_ERR(fl_region_map_detach(env, rm, x - 1), 0);
    T_ERR(fl_region_map_detach(env, rm, x + 20 * K - 1), 0);
    ATT_OK(rm, ds16, 16 * K, 0, 1, x - 8 * K, x - 8 * K, 16 * K);
    ATT_OK(rm, ds16, 0, 0, 1, x + 8 * K, x + 8 * K, 16 * K);
    T_ERR(fl_region_map_detach(env, rm, x - 8 * K), 0);
    T_ERR(fl_region_map_detach(env, rm, x + 24 * K - 4), 0);
    /* detach where there is no region: ignored, returns 0 */
    T_ERR(fl_region_map_detach(env, rm, x), 0);
    T_ERR(fl_region_map_detach(env, rm, x + 16 * K), 0);
    /* and the whole range is free */
    ATT_OK(rm, ds16, 0, 0, 1, x - 8 * K, x - 8 * K, 16 * K);
    T_ERR(fl_region_map_detach(env, rm, x), 0);
}

/* use_at outside a map [base, base+size): conflicts; the edges are fine. */
static void outside_errors(fl_cap rm, fl_cap ds16, fl_cap ds4, uintptr_t base, size_t size)
{
    uintptr_t end = base + size;
    if (base >= 4096) T_ERR(att(rm, ds4, 0, 0, 1, base - 4096, NULL, NULL), -FL_E_REGION_CONFLICT);
    if (base >= 4096)
        T_ERR(att(rm, ds16, 8 * K, 0, 1, base - 4096, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds4, 0, 0, 1, end, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds4, 0, 0, 1, end + 4096, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 8 * K, 0, 1, end - 4096, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 0, 0, 1, end - 12 * K, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds4, 0, 0, 1, UINTPTR_MAX & ~4095ul, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds16, 0, 0, 1, (UINTPTR_MAX & ~4095ul) - 8 * K, NULL, NULL),
          -FL_E_REGION_CONFLICT);
    /* the first and the last page are inside */
    ATT_OK(rm, ds4, 0, 0, 1, end - 4096, end - 4096, 4096);
    ATT_OK(rm, ds4, 0, 0, 1, base, base, 4096);
    T_ERR(fl_region_map_detach(env, rm, end - 1), 0);
    T_ERR(fl_region_map_detach(env, rm, base), 0);
    /* detach outside the map: no region, ignored */
    T_ERR(fl_region_map_detach(env, rm, end), 0);
    T_ERR(fl_region_map_detach(env, rm, UINTPTR_MAX), 0);
}

/* A freed dataspace's regions stay reserved until detached: use_at over them
 * conflicts, best fit goes around them, detach frees the range. [lo, lo+32K)
 * must be free and lie inside rm. */
static void reserved_region(fl_cap rm, fl_cap ds4, uintptr_t lo)
{
    fl_cap gone;
    T_ERR(fl_ram_alloc(env, 8 * K, &gone), 0);
    ATT_OK(rm, gone, 0, 0, 1, lo + 8 * K, lo + 8 * K, 8 * K);
    T_ERR(fl_ram_free(env, gone), 0);
    T_ERR(att(rm, ds4, 0, 0, 1, lo + 8 * K, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, ds4, 0, 0, 1, lo + 12 * K, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm, gone, 0, 0, 1, lo + 16 * K, NULL, NULL), -FL_E_INVALID_DATASPACE);
    ATT_OK(rm, ds4, 0, 0, 1, lo + 4 * K, lo + 4 * K, 4 * K); /* adjacent */
    ATT_OK(rm, ds4, 0, 0, 1, lo + 16 * K, lo + 16 * K, 4 * K);
    T_ERR(fl_region_map_detach(env, rm, lo + 4 * K), 0);
    T_ERR(fl_region_map_detach(env, rm, lo + 16 * K), 0);
    T_ERR(fl_region_map_detach(env, rm, lo + 12 * K + 1), 0); /* the reserved region */
    ATT_OK(rm, ds4, 0, 0, 1, lo + 8 * K, lo + 8 * K, 4 * K);
    ATT_OK(rm, ds4, 0, 0, 1, lo + 12 * K, lo + 12 * K, 4 * K);
    T_ERR(fl_region_map_detach(env, rm, lo + 8 * K), 0);
    T_ERR(fl_region_map_detach(env, rm, lo + 12 * K), 0);
}

static int core_alive(struct t_core *c)
{
    int st;
    return kill(c->pid, 0) == 0 && waitpid(c->pid, &st, WNOHANG) == 0;
}

static void every_attach_error(void)
{
    struct t_core *core = t_core_start(NULL);
    env = t_env();
    fl_cap as = fl_env_address_space(env);
    T_ASSERT(as != FL_CAP_INVALID);
    uintptr_t wb = (uintptr_t)fl_env_window_base(env);
    size_t ws = fl_env_window_size(env);
    T_ASSERT(wb != 0 && wb % 4096 == 0 && ws >= 16 * 1024 * K);

    struct fl_session_info info0;
    T_ERR(fl_env_session_info(env, &info0), 0);

    /* Sizes: a RAM dataspace of 0 is DENIED, everything else rounds up to 4 KiB. */
    fl_cap ds = FL_CAP_INVALID;
    T_ERR(fl_ram_alloc(env, 0, &ds), -FL_E_DENIED);
    T_EQ(ds, FL_CAP_INVALID);
    /* A region map of size 0 is created, as on Genode (core warns that its
     * allocator is empty): every attach into it conflicts. */
    fl_cap rms, empty, empty_ds, one;
    T_ERR(fl_rm_session_open(env, &rms), 0);
    T_ERR(fl_rm_create(env, rms, 0, &empty), 0);
    T_ERR(fl_ram_alloc(env, 4096, &one), 0);
    T_ERR(att(empty, one, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(empty, one, 0, 0, 1, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(fl_region_map_dataspace(env, empty, &empty_ds), 0);
    size_t empty_size = 1;
    T_ERR(fl_dataspace_size(env, empty_ds, &empty_size), 0);
    T_EQ(empty_size, 0);
    T_ERR(att(fl_env_address_space(env), empty_ds, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_WAIT_UNTIL(t_core_log_contains(core, "a region map of size 0"));
    T_ERR(fl_rm_destroy(env, rms, empty), 0);
    T_ERR(fl_ram_free(env, one), 0);
    size_t sz = 0;
    fl_cap ds1, ds4097, ds16, ds64, dsfree, dsrel, sig, rm, rm16, rm64;
    T_ERR(fl_ram_alloc(env, 1, &ds1), 0);
    T_ERR(fl_dataspace_size(env, ds1, &sz), 0);
    T_EQ(sz, 4096);
    T_ERR(fl_ram_alloc(env, 4097, &ds4097), 0);
    T_ERR(fl_dataspace_size(env, ds4097, &sz), 0);
    T_EQ(sz, 8192);
    T_ERR(fl_ram_alloc(env, 16 * K, &ds16), 0);
    T_ERR(fl_dataspace_size(env, ds16, &sz), 0);
    T_EQ(sz, 16 * K);
    T_ERR(fl_ram_alloc(env, 64 * K, &ds64), 0);
    T_ERR(fl_rm_create(env, rms, 256 * K - 100, &rm), 0); /* rounds up to 256 KiB */
    fl_cap rm_ds;
    T_ERR(fl_region_map_dataspace(env, rm, &rm_ds), 0);
    T_ERR(fl_dataspace_size(env, rm_ds, &sz), 0);
    T_EQ(sz, 256 * K);
    T_ERR(fl_rm_create(env, rms, 16 * K, &rm16), 0);
    T_ERR(fl_rm_create(env, rms, 64 * K, &rm64), 0);
    T_ERR(fl_signal_context_create(env, &sig), 0);
    T_ERR(fl_ram_alloc(env, 4096, &dsfree), 0);
    T_ERR(fl_ram_free(env, dsfree), 0);
    /* The capability died with the dataspace (a kept entry would hold the
     * dead dataspace's metadata in core until the session ends). */
    T_ERR(fl_cap_release(env, dsfree), -FL_E_INVALID_CAP);
    T_ERR(fl_ram_alloc(env, 4096, &dsrel), 0);
    T_ERR(fl_cap_release(env, dsrel), 0);

    /* Not dataspaces of this session: 0, made-up values, a region map, a
     * signal context, a freed dataspace, a released capability. */
    const fl_cap bad[] = {
        0,    0xdeadbeef12345678ull, (0x7777ull << 32) | 3, 1ull << 32, as, rm, rm16, sig, dsfree,
        dsrel};
    const int nbad = (int)(sizeof(bad) / sizeof(bad[0]));

    /* Content, so that offsets can be checked: page i of ds16 holds 0x10+i. */
    fill(ds16, 16 * K, 0x10);

    /* ---- the own address space ---- */
    common_errors(as, ds16, bad, nbad, rm, 1);
    use_at_errors(as, ds16, ds1, wb + 1024 * K, wb + 2048 * K);
    outside_errors(as, ds16, ds1, wb, ws);
    reserved_region(as, ds1, wb + 4096 * K);
    T_ERR(att(as, ds16, 0, 0, 1, wb + 1024 * K + 2048, NULL, NULL), -FL_E_REGION_CONFLICT);

    /* An attachment at an offset shows the dataspace from there. */
    uintptr_t s;
    size_t n;
    T_ERR(att(as, ds16, 0, 8 * K, 0, 0, &s, &n), 0);
    T_EQ(n, 8 * K);
    T_ASSERT(s >= wb && s + n <= wb + ws && s % 4096 == 0);
    T_EQ(((uint8_t *)s)[0], 0x12);
    T_EQ(((uint8_t *)s)[8 * K - 1], 0x13);
    /* any address inside detaches it */
    T_ERR(fl_region_map_detach(env, as, s + 5000), 0);
    T_ERR(att(as, ds16, 8 * K, 0, 1, s, NULL, NULL), 0);
    T_EQ(((uint8_t *)s)[0], 0x10);
    T_EQ(((uint8_t *)s)[8 * K - 1], 0x11);
    T_ERR(fl_detach(env, (void *)(s + 8 * K - 1)), 0);

    /* Invalid region maps: INVALID_CAP for attach and detach. */
    T_ERR(att(0, ds16, 0, 0, 0, 0, NULL, NULL), -FL_E_INVALID_CAP);
    T_ERR(att(ds16, ds16, 0, 0, 0, 0, NULL, NULL), -FL_E_INVALID_CAP);
    T_ERR(att(sig, ds16, 0, 0, 0, 0, NULL, NULL), -FL_E_INVALID_CAP);
    T_ERR(fl_region_map_detach(env, 0, wb), -FL_E_INVALID_CAP);
    T_ERR(fl_region_map_detach(env, ds16, wb), -FL_E_INVALID_CAP);

    /* ---- a managed region map of 256 KiB ---- */
    common_errors(rm, ds16, bad, nbad, as, 1);
    use_at_errors(rm, ds16, ds1, 0, 256 * K);
    outside_errors(rm, ds16, ds1, 0, 256 * K);
    reserved_region(rm, ds1, 64 * K);
    T_ERR(att(rm, ds1, 0, 0, 1, 100, NULL, NULL), -FL_E_REGION_CONFLICT);

    /* Best fit: alignments from log2(size) down, the lowest aligned address
     * in the smallest free block that fits. */
    ATT_OK(rm, ds64, 0, 0, 0, 0, 0, 64 * K);           /* [0, 64K) */
    ATT_OK(rm, ds1, 0, 0, 0, 0, 64 * K, 4 * K);        /* right after */
    ATT_OK(rm, ds4097, 0, 0, 0, 0, 72 * K, 8 * K);     /* 8K-aligned: 72K, not 68K */
    ATT_OK(rm, ds1, 0, 0, 0, 0, 68 * K, 4 * K);        /* the smallest hole: 68K */
    ATT_OK(rm, ds16, 0, 0, 0, 0, 80 * K, 16 * K);      /* 16K-aligned after 80K */
    T_ERR(fl_region_map_detach(env, rm, 0x8123), 0);   /* inside the 64K region */
    ATT_OK(rm, ds16, 0, 0, 0, 0, 0, 16 * K);           /* smallest block: [0, 64K) */
    ATT_OK(rm, ds64, 0, 0, 0, 0, 128 * K, 64 * K);     /* 64K-aligned: 128K, not 96K */
    ATT_OK(rm, ds16, 8 * K, 0, 0, 0, 96 * K, 8 * K);   /* smallest: [96K,128K) */
    ATT_OK(rm, ds64, 0, 0, 0, 0, 192 * K, 64 * K);     /* the last 64K */
    ATT_OK(rm, ds64, 32 * K, 0, 0, 0, 32 * K, 32 * K); /* [16K,64K): 32K-aligned */
    ATT_OK(rm, ds1, 0, 0, 0, 0, 16 * K, 4 * K);        /* [16K,32K) < [104K,128K) */
    ATT_OK(rm, ds16, 0, 0, 0, 0, 112 * K, 16 * K);     /* 16K-aligned: 112K, not 104K */
    T_ERR(att(rm, ds16, 20 * K, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT); /* check 4 */
    T_ERR(att(rm, ds64, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);      /* no room */
    ATT_OK(rm, ds16, 8 * K, 0, 0, 0, 104 * K, 8 * K); /* [104K,112K) < [20K,32K) */
    ATT_OK(rm, ds1, 0, 0, 0, 0, 20 * K, 4 * K);       /* the last hole [20K,32K) */
    ATT_OK(rm, ds4097, 0, 0, 0, 0, 24 * K, 8 * K);    /* fills it */
    T_ERR(att(rm, ds1, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT); /* full */
    T_ERR(att(rm, ds1, 0, 0, 1, 20 * K, NULL, NULL), -FL_E_REGION_CONFLICT);
    /* detach every page address: the first hit of each region detaches it,
     * the others find no region and are ignored */
    for (uintptr_t a = 0; a < 256 * K; a += 4 * K) T_ERR(fl_region_map_detach(env, rm, a), 0);
    ATT_OK(rm, ds64, 0, 0, 1, 192 * K, 192 * K, 64 * K); /* all free again */
    T_ERR(fl_region_map_detach(env, rm, 200 * K), 0);

    /* An alignment the dataspace offset does not have is skipped. */
    ATT_OK(rm64, ds1, 0, 0, 1, 0, 0, 4 * K);
    ATT_OK(rm64, ds16, 8 * K, 0, 0, 0, 8 * K, 8 * K); /* offset 0: 8K-aligned */
    T_ERR(fl_region_map_detach(env, rm64, 8 * K), 0);
    ATT_OK(rm64, ds16, 8 * K, 4 * K, 0, 0, 4 * K, 8 * K); /* offset 4K: 4K-aligned */
    T_ERR(fl_region_map_detach(env, rm64, 4 * K), 0);
    ATT_OK(rm64, ds16, 8 * K, 8 * K, 0, 0, 8 * K, 8 * K); /* offset 8K: 8K-aligned again */
    T_ERR(fl_region_map_detach(env, rm64, 8 * K), 0);
    T_ERR(fl_region_map_detach(env, rm64, 0), 0);

    /* ---- no room: a managed map of 16 KiB ---- */
    ATT_OK(rm16, ds16, 0, 0, 0, 0, 0, 16 * K);
    T_ERR(att(rm16, ds1, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(att(rm16, ds64, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(fl_region_map_detach(env, rm16, 15 * K), 0);
    T_ERR(att(rm16, ds64, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT); /* larger than map */
    T_ERR(att(rm16, ds64, 0, 0, 1, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    ATT_OK(rm16, ds4097, 0, 0, 1, 4 * K, 4 * K, 8 * K); /* [4K,12K): two 4K holes */
    T_ERR(att(rm16, ds4097, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT); /* fragmented */
    ATT_OK(rm16, ds1, 0, 0, 0, 0, 0, 4 * K);
    ATT_OK(rm16, ds1, 0, 0, 0, 0, 12 * K, 4 * K);
    T_ERR(att(rm16, ds1, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    common_errors(rm16, ds16, bad, nbad, rm, 0); /* full map: checks 1-4 still come first */
    T_ERR(fl_region_map_detach(env, rm16, 0), 0);
    T_ERR(fl_region_map_detach(env, rm16, 4 * K), 0);
    T_ERR(fl_region_map_detach(env, rm16, 12 * K), 0);

    /* ---- no room in the own address space: a session with a 16 KiB window ---- */
    struct fl_env *small = NULL;
    struct fl_env_config cfg = {.window_size = 16 * K};
    T_ERR(fl_env_open(&small, &cfg), 0);
    T_EQ(fl_env_window_size(small), 16 * K);
    struct fl_env *keep = env;
    env = small;
    fl_cap sds16, sds1;
    T_ERR(fl_ram_alloc(small, 16 * K, &sds16), 0);
    T_ERR(fl_ram_alloc(small, 1, &sds1), 0);
    fl_cap sas = fl_env_address_space(small);
    uintptr_t sb = (uintptr_t)fl_env_window_base(small);
    /* the other session's capabilities are no dataspaces here */
    T_ERR(att(sas, ds64, 0, 0, 0, 0, NULL, NULL), -FL_E_INVALID_DATASPACE);
    ATT_OK(sas, sds16, 0, 0, 0, 0, sb, 16 * K);
    T_ERR(att(sas, sds1, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(fl_region_map_detach(env, sas, sb + 8 * K), 0);
    ATT_OK(sas, sds1, 0, 0, 0, 0, sb, 4 * K);
    memset((void *)sb, 0x77, 4096);
    T_EQ(((uint8_t *)sb)[4095], 0x77);
    T_ERR(att(sas, sds16, 0, 0, 0, 0, NULL, NULL), -FL_E_REGION_CONFLICT);
    T_ERR(fl_detach(small, (void *)sb), 0);
    fl_env_close(small);
    env = keep;

    /* ---- after all that, the session works and nothing leaked ---- */
    T_ASSERT(core_alive(core));
    int err = -1;
    uint8_t *p = fl_attach(env, ds64, &err);
    T_ERR(err, 0);
    T_ASSERT(p != NULL);
    memset(p, 0x5c, 64 * K);
    T_EQ(p[64 * K - 1], 0x5c);
    struct fl_session_info info;
    T_ERR(fl_env_session_info(env, &info), 0);
    /* ds1 4K + ds4097 8K + ds16 16K + ds64 64K + dsrel 4K (released, not freed)
     * + the RM session's 64K (its three maps, 36K, fit) + one attachment's
     * metadata; capabilities: its two at open (they pay for the session
     * itself) and two upgrades of two (for the empty map and for rm64) */
    uint64_t ram = 4 * K + 8 * K + 16 * K + 64 * K + 4 * K + 64 * K;
    T_ASSERT(info.ram_used > info0.ram_used + ram && info.ram_used <= info0.ram_used + ram + 1024);
    T_EQ(info.cap_used, info0.cap_used + 5 + 3 * 2 + 1);
    T_ERR(fl_detach(env, p), 0);
    T_ERR(fl_env_session_info(env, &info), 0);
    T_EQ(info.ram_used, info0.ram_used + ram);

    T_ERR(fl_rm_destroy(env, rms, rm), 0);
    T_ERR(fl_rm_destroy(env, rms, rm16), 0);
    T_ERR(fl_rm_destroy(env, rms, rm64), 0);
    T_ERR(fl_rm_session_close(env, rms), 0);
    T_ERR(fl_ram_free(env, ds1), 0);
    T_ERR(fl_ram_free(env, ds4097), 0);
    T_ERR(fl_ram_free(env, ds16), 0);
    T_ERR(fl_ram_free(env, ds64), 0);
    T_ERR(fl_signal_context_destroy(env, sig), 0);
    T_ERR(fl_env_session_info(env, &info), 0);
    T_EQ(info.ram_used, info0.ram_used + 4 * K); /* the released-but-not-freed dataspace */
    T_EQ(info.cap_used, info0.cap_used + 1);
    T_ASSERT(core_alive(core));
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(every_attach_error)
