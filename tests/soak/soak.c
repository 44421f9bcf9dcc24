/*
 * faultline-soak: a randomized endurance workload against a private core.
 *
 * Managers back managed dataspaces on demand, clients read and write them
 * from several threads, and all of them detach, free, destroy and nest
 * memory at random while this driver kills and restarts them. Every page a
 * manager provides carries a stamp (dataspace id, page index, version) and a
 * pattern derived from it; the manager announces each version in shared
 * memory (the "oracle") before it attaches the page, so a client can tell
 * whether what it read is something its manager actually provided, and
 * whether it is still allowed to see it. See doc/soak.md.
 *
 * usage: faultline-soak [SECONDS] [--seed N] [options]   (--help lists them)
 * Exit 0: every invariant held; 1: a violation (the message says which).
 */
#include <faultline/faultline.h>

#include "../integration/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE         4096
#define MAX_MANAGERS 4
#define MAX_CLIENTS  8
#define MAX_THREADS  4
#define TOP_PAGES    64 /* a manager's top map: leaf pages, then the nested slot */
#define SLOT_START   48 /* where the next manager's sub map is nested */
#define SUB_PAGES    16
#define STAMP_BYTES  2048 /* the manager's part of each page */
#define WSLOT_OFF    2048 /* clients' write slots: 8 bytes per client thread */
#define MAX_DSID     (1u << 20)
#define DETACHING    (1ull << 63)
#define STAMP_MAGIC  0x4b414f534c46ull /* "FLSOAK" */

enum { TOP = 0, SUB = 1 };

/* ---- the oracle: shared memory between the driver and every component ---- */

struct map_oracle {
    _Atomic uint32_t dsid; /* the live map's dataspace id; 0 while there is none */
    /* TOP only: gen << 32 | dsid of the sub map attached at SLOT_START (0:
     * none). Published after a detach returned and before an attach. */
    _Atomic uint64_t slot;
    _Atomic uint64_t announced[TOP_PAGES]; /* highest version ever attached */
    _Atomic uint64_t minver[TOP_PAGES];    /* lowest version still visible */
    _Atomic uint64_t pin[TOP_PAGES];       /* client threads' bits, or DETACHING */
};

enum { MB_EMPTY, MB_FULL, MB_PRODUCER, MB_CONSUMER };
struct mailbox {
    _Atomic int state;
    uint32_t dsid;
    char token[FL_TOKEN_LEN + 1];
};

struct thread_hb {
    _Atomic int busy;
    _Atomic long since;
    _Atomic int m, page, tid;
    _Atomic uint32_t dsid;
};

enum mop {
    OP_START,
    OP_WAIT,
    OP_SERVE,
    OP_DETACH,
    OP_FREE,
    OP_PREFETCH,
    OP_NEST,
    OP_DESTROY,
    OP_REFILL,
    OP_EXIT
};
static const char *const op_names[] = {
    "start-up",        "signal wait", "serving faults", "detach",           "free",
    "prefetch attach", "nesting",     "destroy",        "exporting tokens", "exit"};

struct proc {
    _Atomic int pid;
    _Atomic long beat; /* managers: last progress */
    _Atomic int op;
    uint32_t incarnation;
    struct thread_hb thr[MAX_THREADS];
};

enum counter {
    C_FAULTS,
    C_ATTACH,
    C_DETACH,
    C_FREE,
    C_DESTROY,
    C_NEST,
    C_IMPORT,
    C_CDETACH,
    C_CHECK,
    C_WRITE_OK,
    C_SIGBUS,
    C_KILL_M,
    C_KILL_C,
    C_EXIT_C,
    C_SPURIOUS,
    C_TORN,
    C_LATE_SIGBUS,
    C_NCOUNTERS
};

struct oracle {
    _Atomic int stop; /* 1: clients finish; 2: managers too */
    _Atomic int violation;
    char msg[4096];
    _Atomic uint32_t next_dsid;
    int nmanagers, nclients, nthreads;
    bool destroy, nest;
    bool prefault;       /* --no-partial-revoke */
    bool free;           /* managers free RAM that is still attached */
    bool serialize;      /* --no-overlapping-revocations */
    bool big_chunks;     /* --few-descriptors */
    long defer_free_ms;  /* --defer-free */
    bool late_sigbus_ok; /* --tolerate-late-sigbus */
    /* Per sub map (index: its manager): held by the pid revoking through it. */
    _Atomic int nest_lock[MAX_MANAGERS];
    struct map_oracle maps[MAX_MANAGERS][2];
    struct mailbox top_mb[MAX_MANAGERS][MAX_CLIENTS];
    struct mailbox sub_mb[MAX_MANAGERS]; /* consumed by manager (m + N - 1) % N */
    struct proc mgr[MAX_MANAGERS], cli[MAX_CLIENTS];
    _Atomic uint64_t count[C_NCOUNTERS];
    _Atomic uint16_t owner[MAX_DSID]; /* (manager + 1) | kind << 8 */
};

static struct oracle *O;
static const char *role = "driver";

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t rnd(uint64_t *s)
{
    *s = mix(*s);
    return *s;
}

static void count(enum counter c)
{
    atomic_fetch_add_explicit(&O->count[c], 1, memory_order_relaxed);
}

/* The first violation wins; its text is what the driver reports. */
static void violation(const char *fmt, ...)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&O->violation, &expect, 1)) return;
    int n = snprintf(O->msg, sizeof(O->msg), "%s (pid %d): ", role, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(O->msg + n, sizeof(O->msg) - (size_t)n, fmt, ap);
    va_end(ap);
    atomic_store(&O->violation, 2);
}

/* ---- page stamps ---- */

struct stamp {
    uint64_t magic;
    uint32_t dsid, page;
    uint64_t version;
};

static void stamp_page(uint8_t *p, uint32_t dsid, uint32_t page, uint64_t version)
{
    struct stamp s = {STAMP_MAGIC, dsid, page, version};
    memcpy(p, &s, sizeof(s));
    uint64_t x = mix(((uint64_t)dsid << 32 | page) ^ mix(version));
    for (size_t i = sizeof(s); i < STAMP_BYTES; i += 8) {
        x = mix(x);
        memcpy(p + i, &x, 8);
    }
}

/* Offset (from on) of the first 8 bytes that are not the pattern of
 * (dsid, page, version), or -1. */
static long pattern_mismatch(const uint8_t *p, uint32_t dsid, uint32_t page, uint64_t version,
                             size_t from)
{
    uint64_t x = mix(((uint64_t)dsid << 32 | page) ^ mix(version));
    for (size_t i = sizeof(struct stamp); i < STAMP_BYTES; i += 8) {
        x = mix(x);
        if (i >= from && memcmp(p + i, &x, 8)) return (long)i;
    }
    return -1;
}

/*
 * Check a copied page: its stamp, then the pattern. A read that raced with a
 * legitimate replacement of the page (revoked mid-copy, faulted, backed
 * anew) is torn: a prefix of one version, the rest of newer versions of the
 * same page. *last is the newest version seen. Returns the offset of the
 * first byte that belongs to no version, or -1.
 */
static long stamp_bad(const uint8_t *p, uint64_t *last, bool *torn)
{
    struct stamp s;
    memcpy(&s, p, sizeof(s));
    *last = s.version;
    *torn = false;
    if (s.magic != STAMP_MAGIC) return 0;
    long off = pattern_mismatch(p, s.dsid, s.page, s.version, 0);
    while (off >= 0) {
        uint64_t v = *last + 1;
        long next = off;
        for (; v <= *last + 256 && next == off; v++)
            next = pattern_mismatch(p, s.dsid, s.page, v, (size_t)off);
        if (next == off) return off;
        *last = v - 1;
        *torn = true;
        off = next;
    }
    return -1;
}

static uint32_t new_dsid(int m, int kind)
{
    uint32_t d = atomic_fetch_add(&O->next_dsid, 1) % (MAX_DSID - 1) + 1;
    atomic_store(&O->owner[d], (uint16_t)((m + 1) | kind << 8));
    return d;
}

static bool is_sub_of(uint32_t dsid, int m)
{
    return dsid && dsid < MAX_DSID && atomic_load(&O->owner[dsid]) == ((m + 1) | SUB << 8);
}

/* ---- mailboxes: export tokens travel from producer to consumer ---- */

static bool mb_take(struct mailbox *mb, uint32_t *dsid, char token[FL_TOKEN_LEN + 1])
{
    int s = MB_FULL;
    if (!atomic_compare_exchange_strong(&mb->state, &s, MB_CONSUMER)) return false;
    *dsid = mb->dsid;
    memcpy(token, mb->token, FL_TOKEN_LEN + 1);
    atomic_store(&mb->state, MB_EMPTY);
    return true;
}

/* ---- managers ---- */

struct chunk {
    fl_cap ds;
    int n;
    bool freed;
};

struct mapstate {
    int kind, npages;
    fl_cap rm, mds;
    uint32_t dsid;
    int chunk_of[TOP_PAGES]; /* first page of the chunk covering the page, or -1 */
    struct chunk chunks[TOP_PAGES];
    uint64_t ver[TOP_PAGES];
};

struct manager {
    struct fl_env *env;
    int m;
    uint64_t rng;
    fl_cap rms, sigh; /* its RM session: every map of it is created from it */
    struct mapstate top, sub;
    /* the nested slot of top: the next manager's sub map */
    fl_cap sub_cap;
    uint32_t sub_dsid;
    bool slot_attached;
    uint32_t slot_gen;
    /* --defer-free: RAM of destroyed maps, freed once due */
    struct {
        fl_cap ds;
        long due;
    } deferred[256];
    int ndeferred;
};

static struct map_oracle *mo_of(struct manager *g, struct mapstate *ms)
{
    return &O->maps[g->m][ms->kind];
}

static void beat(struct manager *g, enum mop op)
{
    atomic_store(&O->mgr[g->m].beat, now_ms());
    atomic_store(&O->mgr[g->m].op, op);
}

static _Noreturn void mgr_fail(struct manager *g, const char *what, int err)
{
    violation("manager %d: %s failed: %s (%s)", g->m, what, fl_error_name(err), fl_strerror(err));
    _exit(1);
}

static void publish_slot(struct manager *g, uint32_t dsid)
{
    g->slot_gen++;
    atomic_store(&O->maps[g->m][TOP].slot, (uint64_t)g->slot_gen << 32 | dsid);
}

static void map_create(struct manager *g, struct mapstate *ms, int kind)
{
    struct map_oracle *mo = &O->maps[g->m][kind];
    atomic_store(&mo->dsid, 0);
    atomic_store(&mo->slot, 0);
    for (int p = 0; p < TOP_PAGES; p++) {
        atomic_store(&mo->announced[p], 0);
        atomic_store(&mo->minver[p], 0);
        atomic_store(&mo->pin[p], 0);
    }
    memset(ms, 0, sizeof(*ms));
    ms->kind = kind;
    ms->npages = kind == TOP ? TOP_PAGES : SUB_PAGES;
    for (int p = 0; p < TOP_PAGES; p++) ms->chunk_of[p] = -1;
    int r;
    if ((r = fl_rm_create(g->env, g->rms, (size_t)ms->npages * PAGE, &ms->rm)) < 0)
        mgr_fail(g, "rm_create", r);
    if ((r = fl_region_map_fault_handler(g->env, ms->rm, g->sigh)) < 0)
        mgr_fail(g, "fault_handler", r);
    if ((r = fl_region_map_dataspace(g->env, ms->rm, &ms->mds)) < 0) mgr_fail(g, "dataspace()", r);
    ms->dsid = new_dsid(g->m, kind);
    atomic_store(&mo->dsid, ms->dsid);
}

/* Announce each page's new version before the attach makes it visible. */
static void attach_chunk(struct manager *g, struct mapstate *ms, int first, int n)
{
    struct map_oracle *mo = mo_of(g, ms);
    fl_cap ds;
    int r;
    if ((r = fl_ram_alloc(g->env, (size_t)n * PAGE, &ds)) < 0) mgr_fail(g, "ram_alloc", r);
    uint8_t *p = fl_attach(g->env, ds, &r);
    if (!p) mgr_fail(g, "local attach", r);
    for (int i = 0; i < n; i++) {
        uint64_t v = ++ms->ver[first + i];
        atomic_store(&mo->announced[first + i], v);
        stamp_page(p + (size_t)i * PAGE, ms->dsid, (uint32_t)(first + i), v);
    }
    if ((r = fl_detach(g->env, p)) < 0) mgr_fail(g, "local detach", r);
    struct fl_attr a = {.use_at = true, .at = (uintptr_t)first * PAGE, .writeable = true};
    if ((r = fl_region_map_attach(g->env, ms->rm, ds, &a, NULL)) < 0) mgr_fail(g, "attach", r);
    ms->chunks[first] = (struct chunk){.ds = ds, .n = n};
    for (int i = 0; i < n; i++) ms->chunk_of[first + i] = first;
    count(C_ATTACH);
}

/* Take the pages away from clients that might pin them; false if one is pinned. */
static bool lock_pages(struct map_oracle *mo, int first, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t w = 0;
        if (!atomic_compare_exchange_strong(&mo->pin[first + i], &w, DETACHING)) {
            while (i-- > 0) atomic_store(&mo->pin[first + i], 0);
            return false;
        }
    }
    return true;
}

static void unlock_pages(struct map_oracle *mo, int first, int n)
{
    for (int i = 0; i < n; i++) atomic_store(&mo->pin[first + i], 0);
}

/* After a detach or free returned, no client may see these versions again. */
static void retire_versions(struct manager *g, struct mapstate *ms, int first, int n)
{
    for (int i = 0; i < n; i++)
        atomic_store(&mo_of(g, ms)->minver[first + i], ms->ver[first + i] + 1);
}

/*
 * --no-overlapping-revocations works around the bug doc/soak.md describes: a
 * detach inside a sub map returns while a detach of that sub map from its
 * parent still waits for clients, so the RAM freed after it can still be
 * read. The sub map's owner and the owner of the map it is nested in then
 * take turns.
 */
static void nest_lock(int sub_owner)
{
    if (!O->serialize) return;
    int expect = 0;
    while (!atomic_compare_exchange_weak(&O->nest_lock[sub_owner], &expect, (int)getpid())) {
        expect = 0;
        sleep_us(100);
    }
}

static void nest_unlock(int sub_owner)
{
    if (O->serialize) atomic_store(&O->nest_lock[sub_owner], 0);
}

static bool detach_chunk(struct manager *g, struct mapstate *ms, int first, bool respect_pins)
{
    struct chunk *c = &ms->chunks[first];
    int n = c->n, r;
    if (respect_pins && !lock_pages(mo_of(g, ms), first, n)) return false;
    if (ms->kind == SUB) nest_lock(g->m);
    if ((r = fl_region_map_detach(g->env, ms->rm, (uintptr_t)first * PAGE)) < 0)
        mgr_fail(g, "detach", r);
    retire_versions(g, ms, first, n);
    if (!c->freed && (r = fl_ram_free(g->env, c->ds)) < 0) mgr_fail(g, "ram_free", r);
    if (ms->kind == SUB) nest_unlock(g->m);
    for (int i = 0; i < n; i++) ms->chunk_of[first + i] = -1;
    *c = (struct chunk){0};
    if (respect_pins) unlock_pages(mo_of(g, ms), first, n);
    count(C_DETACH);
    return true;
}

static bool free_chunk(struct manager *g, struct mapstate *ms, int first)
{
    struct chunk *c = &ms->chunks[first];
    int r;
    if (c->freed || !lock_pages(mo_of(g, ms), first, c->n)) return false;
    if ((r = fl_ram_free(g->env, c->ds)) < 0) mgr_fail(g, "ram_free", r);
    retire_versions(g, ms, first, c->n);
    c->freed = true; /* the region stays reserved until we detach it */
    unlock_pages(mo_of(g, ms), first, c->n);
    count(C_FREE);
    return true;
}

/* Leaf pages: a chunk of one page, or sometimes four aligned ones. */
static void back_page(struct manager *g, struct mapstate *ms, int p, int limit)
{
    int first = p, n = 1;
    /* --few-descriptors works around the bug doc/soak.md describes: an attach
     * that maps more than 64 new memfds at once costs the client its session. */
    if (O->big_chunks || rnd(&g->rng) % 3 == 0) {
        int f4 = p & ~3;
        bool free4 = f4 + 4 <= limit;
        for (int i = f4; free4 && i < f4 + 4; i++) free4 = ms->chunk_of[i] < 0;
        if (free4) first = f4, n = 4;
    }
    attach_chunk(g, ms, first, n);
}

static void release_sub(struct manager *g)
{
    if (g->sub_cap) fl_cap_release(g->env, g->sub_cap);
    g->sub_cap = FL_CAP_INVALID;
    g->sub_dsid = 0;
}

static void detach_slot(struct manager *g)
{
    int r;
    if (!g->slot_attached) return;
    int m2 = (g->m + 1) % O->nmanagers;
    nest_lock(m2);
    if ((r = fl_region_map_detach(g->env, g->top.rm, (uintptr_t)SLOT_START * PAGE)) < 0)
        mgr_fail(g, "detach of the nested slot", r);
    nest_unlock(m2);
    g->slot_attached = false;
    publish_slot(g, 0);
    count(C_DETACH);
}

/* Nest the next manager's live sub map into the slot; false if there is none. */
static bool nest(struct manager *g)
{
    int m2 = (g->m + 1) % O->nmanagers, r;
    uint32_t live = atomic_load(&O->maps[m2][SUB].dsid);
    if (g->sub_cap && g->sub_dsid != live) release_sub(g);
    if (!g->sub_cap) {
        uint32_t d;
        char token[FL_TOKEN_LEN + 1];
        if (!mb_take(&O->sub_mb[m2], &d, token)) return false;
        if ((r = fl_cap_import(g->env, token, &g->sub_cap)) < 0) {
            g->sub_cap = FL_CAP_INVALID;
            if (r != -FL_E_TOKEN) mgr_fail(g, "import of a sub map", r);
            return false;
        }
        g->sub_dsid = d;
        count(C_IMPORT);
    }
    for (int p = SLOT_START; p < TOP_PAGES; p++)
        if (g->top.chunk_of[p] == p) detach_chunk(g, &g->top, p, false);
    publish_slot(g, g->sub_dsid);
    struct fl_attr a = {.use_at = true,
                        .at = (uintptr_t)SLOT_START * PAGE,
                        .size = (size_t)SUB_PAGES * PAGE,
                        .writeable = true};
    r = fl_region_map_attach(g->env, g->top.rm, g->sub_cap, &a, NULL);
    if (r == -FL_E_INVALID_DATASPACE) { /* it died since we imported it */
        publish_slot(g, 0);
        release_sub(g);
        return false;
    }
    if (r < 0) mgr_fail(g, "attach of the nested slot", r);
    g->slot_attached = true;
    count(C_NEST);
    return true;
}

static void resolve_slot(struct manager *g, int p)
{
    /* With the sub map attached, a fault here means it died: its region
     * is reserved now. */
    if (g->slot_attached) {
        detach_slot(g);
        release_sub(g);
    }
    if (O->nest && nest(g)) return;
    /* No sub map to be had: the manager provides a page of its own. */
    if (g->top.chunk_of[p] >= 0) detach_chunk(g, &g->top, g->top.chunk_of[p], false);
    attach_chunk(g, &g->top, p, 1);
}

/* false: the fault cannot be resolved now (a pinned page faulted). */
static bool resolve(struct manager *g, struct mapstate *ms, uintptr_t addr)
{
    int p = (int)(addr / PAGE);
    if (p < 0 || p >= ms->npages) {
        violation("manager %d: fault() reported address %#lx beyond its %s map", g->m,
                  (unsigned long)addr, ms->kind == TOP ? "top" : "sub");
        _exit(1);
    }
    count(C_FAULTS);
    if (ms->kind == TOP && p >= SLOT_START) {
        resolve_slot(g, p);
        return true;
    }
    int first = ms->chunk_of[p];
    if (first >= 0) {
        if (!ms->chunks[first].freed) {
            /* Attached and not freed, yet reflected: core's view differs
             * from ours. Counted and reported at the end. */
            count(C_SPURIOUS);
            fprintf(stderr, "soak: manager %d: fault at %s page %d which is attached\n", g->m,
                    ms->kind == TOP ? "top" : "sub", p);
            if (!detach_chunk(g, ms, first, true)) return false;
        } else {
            detach_chunk(g, ms, first, false);
        }
    }
    back_page(g, ms, p, ms->kind == TOP ? SLOT_START : SUB_PAGES);
    return true;
}

static void serve(struct manager *g, struct mapstate *ms)
{
    for (int i = 0; i < 64; i++) {
        struct fl_fault f;
        int r;
        if ((r = fl_region_map_fault(g->env, ms->rm, &f)) < 0) mgr_fail(g, "fault()", r);
        if (f.type == FL_FAULT_NONE) return;
        if (!resolve(g, ms, f.addr)) return;
    }
}

static void refill_one(struct manager *g, struct mailbox *mb, struct mapstate *ms)
{
    int s = atomic_load(&mb->state);
    if (s == MB_FULL && mb->dsid == ms->dsid) return;
    if ((s != MB_EMPTY && s != MB_FULL) ||
        !atomic_compare_exchange_strong(&mb->state, &s, MB_PRODUCER))
        return;
    int r = fl_cap_export(g->env, ms->mds, mb->token);
    if (r < 0) mgr_fail(g, "export", r);
    mb->dsid = ms->dsid;
    atomic_store(&mb->state, MB_FULL);
}

static void refill(struct manager *g)
{
    beat(g, OP_REFILL);
    for (int c = 0; c < O->nclients; c++) refill_one(g, &O->top_mb[g->m][c], &g->top);
    refill_one(g, &O->sub_mb[g->m], &g->sub);
}

/* Destroy a map and make a new one; clients see its dataspace die. */
static void recreate(struct manager *g, struct mapstate *ms)
{
    int r;
    beat(g, OP_DESTROY);
    atomic_store(&mo_of(g, ms)->dsid, 0); /* faults on it are expected to be reported now */
    if ((r = fl_rm_destroy(g->env, g->rms, ms->rm)) < 0) mgr_fail(g, "rm_destroy", r);
    for (int p = 0; p < ms->npages; p++) {
        if (ms->chunk_of[p] != p || ms->chunks[p].freed) continue;
        /* --defer-free works around the bug doc/soak.md describes: destroy
         * returns before clients acknowledged, so RAM freed at once may
         * still be mapped there and read as zeros. */
        if (O->defer_free_ms > 0 && g->ndeferred < 256) {
            g->deferred[g->ndeferred].ds = ms->chunks[p].ds;
            g->deferred[g->ndeferred++].due = now_ms() + O->defer_free_ms;
        } else if ((r = fl_ram_free(g->env, ms->chunks[p].ds)) < 0) {
            mgr_fail(g, "ram_free after destroy", r);
        }
    }
    if (ms->kind == TOP) g->slot_attached = false;
    map_create(g, ms, ms->kind);
    if (ms->kind == TOP) g->slot_gen = 0;
    count(C_DESTROY);
}

static void free_deferred(struct manager *g)
{
    long now = now_ms();
    int r;
    for (int i = 0; i < g->ndeferred;) {
        if (g->deferred[i].due > now) {
            i++;
            continue;
        }
        if ((r = fl_ram_free(g->env, g->deferred[i].ds)) < 0) mgr_fail(g, "deferred ram_free", r);
        g->deferred[i] = g->deferred[--g->ndeferred];
    }
}

static int random_chunk(struct manager *g, struct mapstate **msp)
{
    for (int i = 0; i < 8; i++) {
        struct mapstate *ms = rnd(&g->rng) % 3 ? &g->top : &g->sub;
        int p = ms->chunk_of[rnd(&g->rng) % (uint64_t)ms->npages];
        if (p >= 0) {
            *msp = ms;
            return p;
        }
    }
    return -1;
}

static void random_op(struct manager *g)
{
    uint64_t x = rnd(&g->rng) % 1000;
    struct mapstate *ms;
    int p;
    if (x < 60) {
        beat(g, OP_DETACH);
        if ((p = random_chunk(g, &ms)) >= 0) detach_chunk(g, ms, p, true);
    } else if (x < 90 && O->free) {
        beat(g, OP_FREE);
        if ((p = random_chunk(g, &ms)) >= 0) free_chunk(g, ms, p);
    } else if (x < 110) {
        beat(g, OP_PREFETCH);
        ms = rnd(&g->rng) % 3 ? &g->top : &g->sub;
        int limit = ms->kind == TOP ? SLOT_START : SUB_PAGES;
        p = (int)(rnd(&g->rng) % (uint64_t)limit);
        if (ms->chunk_of[p] < 0) back_page(g, ms, p, limit);
    } else if (x < 125 && O->nest) {
        beat(g, OP_NEST);
        if (g->slot_attached)
            detach_slot(g);
        else
            nest(g);
    } else if (x < 128 && O->destroy) {
        recreate(g, &g->sub);
    } else if (x < 130 && O->destroy) {
        recreate(g, &g->top);
    }
}

static int manager_main(int m, uint64_t seed)
{
    struct manager *g = calloc(1, sizeof(*g));
    g->m = m;
    g->rng = seed;
    beat(g, OP_START);
    int r;
    if ((r = fl_env_open(&g->env, NULL)) < 0) mgr_fail(g, "env_open", r);
    if ((r = fl_signal_context_create(g->env, &g->sigh)) < 0) mgr_fail(g, "signal context", r);
    if ((r = fl_rm_session_open(g->env, &g->rms)) < 0) mgr_fail(g, "RM session", r);
    map_create(g, &g->top, TOP);
    map_create(g, &g->sub, SUB);
    while (atomic_load(&O->stop) < 2) {
        beat(g, OP_WAIT);
        long n = fl_signal_wait(g->env, g->sigh, 10);
        if (n < 0) mgr_fail(g, "signal wait", (int)n);
        beat(g, OP_SERVE);
        serve(g, &g->top);
        serve(g, &g->sub);
        refill(g);
        random_op(g);
        free_deferred(g);
    }
    beat(g, OP_EXIT);
    fl_env_close(g->env);
    return 0;
}

/* ---- clients ---- */

struct att {
    pthread_rwlock_t lock;
    fl_cap cap;
    uint32_t dsid;
    uint8_t *base;
};

struct client {
    struct fl_env *env;
    int c;
    uint64_t seed;
    struct att att[MAX_MANAGERS];
    _Atomic bool leaving;
};

struct worker {
    struct client *cl;
    int t;
    uint64_t rng, bit;
    /* a write that must still be there: its page is pinned */
    bool pending;
    int pm, pp, countdown;
    uint32_t pdsid;
    uint64_t pvalue, pversion;
};

static __thread sigjmp_buf fault_jmp;
static __thread volatile sig_atomic_t in_access;

static void on_fault_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (in_access) {
        in_access = 0;
        siglongjmp(fault_jmp, sig);
    }
    /* Not while touching managed memory: a report that came late or twice
     * (bug 7 in doc/soak.md), or a crash of the soak itself. The agent
     * raises it with tgkill, so returning re-executes nothing. */
    if (sig == SIGBUS && O->late_sigbus_ok && si->si_code == SI_TKILL) {
        count(C_LATE_SIGBUS);
        return;
    }
    violation("%s outside any access to managed memory (tid %d)",
              sig == SIGBUS ? "SIGBUS" : "SIGSEGV", (int)syscall(SYS_gettid));
    signal(sig, SIG_DFL);
    raise(sig);
}

static _Noreturn void cli_fail(struct client *cl, const char *what, int err)
{
    violation("client %d: %s failed: %s (%s)", cl->c, what, fl_error_name(err), fl_strerror(err));
    _exit(1);
}

enum access_result { A_OK, A_REPORTED, A_SKIP };

/* The line of /proc/self/maps covering addr: which memfd (or none) the
 * bytes came from, for the report. */
static void describe_vma(uintptr_t addr, char *out, size_t len)
{
    char line[300];
    if (t_proc_maps_overlapping(0, addr, addr + 1, line, sizeof(line)) > 0)
        snprintf(out, len, "VMA %.200s", line);
    else
        snprintf(out, len, "no mapping");
}

/*
 * Read page p of manager m's top map (and write the worker's slot if
 * *wvalue), checking that the bytes are a stamp the manager provided and may
 * still be seen. Oracle values that bound the page from below are read
 * before the page, those that bound it from above after it.
 */
static enum access_result access_page(struct worker *w, int m, int p, uint64_t *wvalue,
                                      uint64_t *slotval, uint64_t *version)
{
    struct client *cl = w->cl;
    struct att *a = &cl->att[m];
    struct map_oracle *top = &O->maps[m][TOP];
    int m2 = (m + 1) % O->nmanagers;
    struct map_oracle *sub = &O->maps[m2][SUB];
    uint32_t D = a->dsid;
    struct thread_hb *hb = &O->cli[cl->c].thr[w->t];

    uint32_t d1 = atomic_load(&top->dsid);
    if (d1 != D) return A_SKIP;
    uint64_t sl1 = atomic_load(&top->slot);
    uint64_t mn = atomic_load(&top->minver[p]);
    uint32_t s1 = atomic_load(&sub->dsid);
    uint64_t smn = p >= SLOT_START ? atomic_load(&sub->minver[p - SLOT_START]) : 0;

    atomic_store(&hb->m, m);
    atomic_store(&hb->page, p);
    atomic_store(&hb->dsid, D);
    atomic_store(&hb->since, now_ms());
    atomic_store(&hb->busy, 1);
    _Alignas(8) uint8_t buf[STAMP_BYTES];
    volatile uint8_t *page = a->base + (size_t)p * PAGE;
    volatile uint64_t *ws = (volatile uint64_t *)(page + WSLOT_OFF) + w->bit;
    int sig = sigsetjmp(fault_jmp, 1);
    if (sig == 0) {
        in_access = 1;
        for (size_t i = 0; i < STAMP_BYTES; i += 8) {
            uint64_t v = *(volatile uint64_t *)(page + i);
            memcpy(buf + i, &v, 8);
        }
        if (wvalue) *ws = *wvalue;
        *slotval = *ws;
        in_access = 0;
    }
    atomic_store(&hb->busy, 0);

    uint64_t ann = atomic_load(&top->announced[p]);
    uint64_t sann = p >= SLOT_START ? atomic_load(&sub->announced[p - SLOT_START]) : 0;
    uint32_t d2 = atomic_load(&top->dsid), s2 = atomic_load(&sub->dsid);
    uint64_t sl2 = atomic_load(&top->slot);
    const char *who = "";
    char whobuf[160];
    snprintf(whobuf, sizeof(whobuf),
             "client %d thread %d (tid %d), manager %d's top map (dsid %u) page %d%s at %p", cl->c,
             w->t, (int)syscall(SYS_gettid), m, D, p, p >= SLOT_START ? " (nested slot)" : "",
             (void *)page);
    who = whobuf;

    if (sig) {
        /* A fault reported as unresolvable: only allowed when the memory's
         * map died (its manager killed or its map destroyed). */
        if (sig == SIGBUS && (d2 != D || (p >= SLOT_START && (s1 == 0 || s2 != s1)))) {
            count(C_SIGBUS);
            return A_REPORTED;
        }
        violation("%s: %s though the map is alive (top dsid %u, sub of manager %d dsid %u->%u)",
                  who, sig == SIGBUS ? "SIGBUS (fault reported unresolvable)" : "SIGSEGV", d2, m2,
                  s1, s2);
        _exit(1);
    }

    uint64_t last;
    bool torn;
    long bad = stamp_bad(buf, &last, &torn);
    if (torn) count(C_TORN);
    if (bad >= 0) {
        char vma[256];
        describe_vma((uintptr_t)page, vma, sizeof(vma));
        violation("%s: read bytes no manager provided: byte %ld is %#x (first 16 bytes: "
                  "%016" PRIx64 " %016" PRIx64 "); the page is in %s; during the read: top "
                  "dsid %u->%u, slot %#" PRIx64 "->%#" PRIx64 ", sub map dsid %u->%u",
                  who, bad, buf[bad], ((uint64_t *)(void *)buf)[0], ((uint64_t *)(void *)buf)[1],
                  vma, d1, d2, sl1, sl2, s1, s2);
        _exit(1);
    }
    struct stamp s;
    memcpy(&s, buf, sizeof(s));
    *version = last;
    bool own = s.dsid == D && s.page == (uint32_t)p;
    bool nested = p >= SLOT_START && is_sub_of(s.dsid, m2) && s.page == (uint32_t)(p - SLOT_START);
    if (!own && !nested) {
        violation("%s: read the stamp of dataspace %u page %u version %" PRIu64
                  " (owner %#x), which does not belong here",
                  who, s.dsid, s.page, s.version,
                  s.dsid < MAX_DSID ? (unsigned)atomic_load(&O->owner[s.dsid]) : 0u);
        _exit(1);
    }
    if (own && d1 == D && d2 == D && (s.version < mn || last > ann)) {
        violation("%s: read version %" PRIu64 "..%" PRIu64 ", but only versions %" PRIu64
                  "..%" PRIu64 " may be visible (%s)",
                  who, s.version, last, mn, ann,
                  s.version < mn ? "an older one was detached or freed before the read began"
                                 : "never announced");
        _exit(1);
    }
    if (nested && s.dsid == s1 && s1 == s2 && (s.version < smn || last > sann)) {
        violation("%s: read version %" PRIu64 "..%" PRIu64
                  " of sub map %u (manager %d) page %u, but only "
                  "versions %" PRIu64 "..%" PRIu64 " may be visible",
                  who, s.version, last, s.dsid, m2, s.page, smn, sann);
        _exit(1);
    }
    if (nested && sl1 == sl2 && d1 == D && d2 == D) {
        uint32_t in_slot = (uint32_t)sl1;
        if (in_slot != s.dsid) {
            violation("%s: read sub map %u through the slot while the slot holds %s%u "
                      "(slot generation %u)",
                      who, s.dsid, in_slot ? "sub map " : "nothing since a detach returned, ",
                      in_slot, (unsigned)(sl1 >> 32));
            _exit(1);
        }
    }
    count(C_CHECK);
    return A_OK;
}

static void unpin(struct worker *w)
{
    atomic_fetch_and(&O->maps[w->pm][TOP].pin[w->pp], ~(1ull << w->bit));
    w->pending = false;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct client *cl = w->cl;
    int nm = O->nmanagers;
    uint64_t wseq = 0;
    atomic_store(&O->cli[cl->c].thr[w->t].tid, (int)syscall(SYS_gettid));
    while (!atomic_load(&O->stop) && !atomic_load(&cl->leaving)) {
        int m = w->pending && w->countdown-- <= 0 ? w->pm : (int)(rnd(&w->rng) % (uint64_t)nm);
        struct att *a = &cl->att[m];
        pthread_rwlock_rdlock(&a->lock);
        if (!a->base || a->dsid != atomic_load(&O->maps[m][TOP].dsid)) {
            pthread_rwlock_unlock(&a->lock);
            if (w->pending && w->pm == m) unpin(w);
            sleep_us(1000);
            continue;
        }
        uint64_t slotval, version;
        enum access_result r;
        if (w->pending && w->pm == m && w->countdown < 0) {
            /* Read the write back: the page stayed pinned, so it must be there. */
            if (a->dsid != w->pdsid) {
                unpin(w);
            } else {
                r = access_page(w, m, w->pp, NULL, &slotval, &version);
                if (r == A_OK && atomic_load(&O->maps[m][TOP].dsid) == w->pdsid) {
                    if (slotval != w->pvalue || version != w->pversion) {
                        violation("client %d thread %d: write lost on manager %d's top map (dsid "
                                  "%u) page %d: wrote %#" PRIx64 " at version %" PRIu64
                                  ", read back %#" PRIx64 " at version %" PRIu64
                                  " while the page was pinned",
                                  cl->c, w->t, m, w->pdsid, w->pp, w->pvalue, w->pversion, slotval,
                                  version);
                        _exit(1);
                    }
                    count(C_WRITE_OK);
                }
                unpin(w);
            }
        } else {
            int p = (int)(rnd(&w->rng) % TOP_PAGES);
            uint64_t value = 0, *wv = NULL;
            if (!w->pending && p < SLOT_START && rnd(&w->rng) % 4 == 0) {
                /* Pin the page so its manager keeps it attached, then write. */
                _Atomic uint64_t *pin = &O->maps[m][TOP].pin[p];
                uint64_t old = atomic_load(pin);
                while (!(old & DETACHING) &&
                       !atomic_compare_exchange_weak(pin, &old, old | 1ull << w->bit)) {
                }
                if (!(old & DETACHING)) {
                    w->pending = true;
                    w->pm = m;
                    w->pp = p;
                    w->pdsid = a->dsid;
                    value = mix(w->bit << 48 ^ ++wseq ^ w->rng) | 1;
                    wv = &value;
                }
            }
            r = access_page(w, m, p, wv, &slotval, &version);
            if (wv) {
                if (r == A_OK) {
                    w->pvalue = value;
                    w->pversion = version;
                    w->countdown = (int)(rnd(&w->rng) % 16);
                } else {
                    unpin(w);
                }
            }
        }
        pthread_rwlock_unlock(&a->lock);
        sleep_us((long)(rnd(&w->rng) % 1500));
    }
    if (w->pending) unpin(w);
    return NULL;
}

/*
 * --no-partial-revoke works around the bug doc/soak.md describes: every
 * page of the attachment is touched once, so that each is a mapping of a
 * memfd before any revocation covers it. A revocation that raced with the
 * touching may have failed and left pages mapped, so detach (that revocation
 * now covers touched pages only) and attach again at the same place.
 * Returns the attachment, or NULL if its map died meanwhile.
 */
static uint8_t *attach_whole(struct client *cl, fl_cap cap)
{
    int r;
    uint8_t *base = fl_attach(cl->env, cap, &r);
    if (!base) {
        if (r == -FL_E_INVALID_DATASPACE) return NULL;
        cli_fail(cl, "attach", r);
    }
    if (!O->prefault) return base;
    bool dead = false;
    for (int p = 0; p < TOP_PAGES && !dead; p++) {
        if (sigsetjmp(fault_jmp, 1)) {
            dead = true;
            break;
        }
        in_access = 1;
        (void)*(volatile uint8_t *)(base + (size_t)p * PAGE);
        in_access = 0;
    }
    /* A dead map's range may hold pages whose revocation failed: never
     * detach it, so that nothing is attached over them again. */
    if (dead) return NULL;
    if ((r = fl_detach(cl->env, base)) < 0) cli_fail(cl, "detach after touching", r);
    struct fl_attr a = {.use_at = true, .at = (uintptr_t)base, .writeable = true};
    r = fl_region_map_attach(cl->env, fl_env_address_space(cl->env), cap, &a, NULL);
    if (r == -FL_E_INVALID_DATASPACE) return NULL;
    if (r < 0) cli_fail(cl, "attach at the same place", r);
    return base;
}

/* Keep an attachment of each manager's live top map. */
static void maintain(struct client *cl, int m, uint64_t *rng)
{
    struct att *a = &cl->att[m];
    uint32_t live = atomic_load(&O->maps[m][TOP].dsid);
    int r;
    if (a->base && a->dsid != live) {
        pthread_rwlock_wrlock(&a->lock);
        if ((r = fl_detach(cl->env, a->base)) < 0) cli_fail(cl, "detach of a dead map", r);
        fl_cap_release(cl->env, a->cap);
        a->base = NULL;
        pthread_rwlock_unlock(&a->lock);
        count(C_CDETACH);
    }
    if (!a->base) {
        uint32_t d;
        char token[FL_TOKEN_LEN + 1];
        fl_cap cap;
        if (!live || !mb_take(&O->top_mb[m][cl->c], &d, token) || d != live) return;
        if ((r = fl_cap_import(cl->env, token, &cap)) < 0) {
            if (r == -FL_E_TOKEN) return; /* the map died meanwhile */
            cli_fail(cl, "import", r);
        }
        count(C_IMPORT);
        uint8_t *base = attach_whole(cl, cap);
        if (!base) {
            fl_cap_release(cl->env, cap);
            return;
        }
        pthread_rwlock_wrlock(&a->lock);
        a->cap = cap;
        a->dsid = d;
        a->base = base;
        pthread_rwlock_unlock(&a->lock);
        return;
    }
    if (rnd(rng) % 200 == 0) {
        /* Detach and attach again: pinned writes must survive this too. */
        pthread_rwlock_wrlock(&a->lock);
        if ((r = fl_detach(cl->env, a->base)) < 0) cli_fail(cl, "detach", r);
        count(C_CDETACH);
        a->base = attach_whole(cl, a->cap);
        if (!a->base) fl_cap_release(cl->env, a->cap);
        pthread_rwlock_unlock(&a->lock);
    }
}

static int client_main(int c, uint64_t seed)
{
    struct client *cl = calloc(1, sizeof(*cl));
    cl->c = c;
    cl->seed = seed;
    uint64_t rng = seed;
    struct sigaction sa = {.sa_sigaction = on_fault_signal, .sa_flags = SA_SIGINFO | SA_NODEFER};
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    int r;
    if ((r = fl_env_open(&cl->env, NULL)) < 0) cli_fail(cl, "env_open", r);
    for (int m = 0; m < O->nmanagers; m++) pthread_rwlock_init(&cl->att[m].lock, NULL);
    pthread_t th[MAX_THREADS];
    struct worker ws[MAX_THREADS];
    for (int t = 0; t < O->nthreads; t++) {
        ws[t] = (struct worker){.cl = cl, .t = t, .rng = mix(seed ^ (uint64_t)t << 56)};
        ws[t].bit = (uint64_t)(c * MAX_THREADS + t);
        pthread_create(&th[t], NULL, worker_main, &ws[t]);
    }
    bool leave = false;
    while (!atomic_load(&O->stop) && !leave) {
        for (int m = 0; m < O->nmanagers; m++) maintain(cl, m, &rng);
        leave = rnd(&rng) % 2000 == 0; /* now and then a clean exit */
        sleep_us(10000);
    }
    atomic_store(&cl->leaving, true);
    for (int t = 0; t < O->nthreads; t++) pthread_join(th[t], NULL);
    fl_env_close(cl->env);
    return 0;
}

/* ---- the driver ---- */

struct opts {
    long seconds;
    uint64_t seed;
    int managers, clients, threads;
    long kill_interval_ms, hang_ms, progress_s;
    long rss_tol_kb, shmem_tol_kb;
    int vma_budget;
    bool kill, kill_managers, keep;
    int verbose_core;
    const char *backend;
};

static struct opts opt = {
    .seconds = 60,
    .managers = 3,
    .clients = 5,
    .threads = 3,
    .kill_interval_ms = 1500,
    .hang_ms = 30000,
    .progress_s = 5,
#ifdef __SANITIZE_ADDRESS__
    .rss_tol_kb = 512 * 1024, /* core's ASan quarantine keeps freed memory resident */
#else
    .rss_tol_kb = 16 * 1024,
#endif
    .shmem_tol_kb = 256,
    .kill = true,
    .kill_managers = true,
};

static char dir[64], core_log[128], comp_log[128];
static pid_t core_pid;
static int comp_fd = -1;
static pid_t driver_pid;

/* SIGINT or SIGTERM ends a run early, with the usual checks at the end. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void kill_core_at_exit(void)
{
    if (getpid() == driver_pid && core_pid > 0) kill(core_pid, SIGKILL);
}

static void show_tail(const char *path, int lines)
{
    char cmd[256];
    fprintf(stderr, "---- last %d lines of %s ----\n", lines, path);
    snprintf(cmd, sizeof(cmd), "tail -n %d %s >&2", lines, path);
    if (system(cmd)) {
    }
}

static const char *core_path(void)
{
    const char *env = getenv("FAULTLINE_CORE");
    if (env) return env;
    /* tests/soak/faultline-soak sits two levels below the build root. */
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);
    if (n < 0) return "faultline-core";
    path[n] = 0;
    for (int i = 0; i < 3; i++) *strrchr(path, '/') = 0;
    strcat(path, "/faultline-core");
    return path;
}

static void start_core(void)
{
    snprintf(dir, sizeof(dir), "/tmp/flsoak-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    char sock[128];
    snprintf(sock, sizeof(sock), "%s/core.sock", dir);
    snprintf(core_log, sizeof(core_log), "%s/core.log", dir);
    snprintf(comp_log, sizeof(comp_log), "%s/components.log", dir);
    setenv("FAULTLINE_SOCKET", sock, 1);
    comp_fd = open(comp_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const char *core = core_path();
    const char *argv[16];
    int n = 0;
    argv[n++] = core;
    argv[n++] = "--socket";
    argv[n++] = sock;
    /* A fault whose map died must come back as SIGBUS, so that "resolved or
     * reported" is observable rather than a halted thread. */
    argv[n++] = "--unresolvable";
    argv[n++] = "sigbus";
    /* Our agents are honest but share two CPUs with everything else. */
    argv[n++] = "--revoke-deadline";
    argv[n++] = "20000";
    if (opt.backend) {
        argv[n++] = "--backend";
        argv[n++] = opt.backend;
    }
    for (int i = 0; i < opt.verbose_core && i < 2; i++) argv[n++] = "-v";
    argv[n] = NULL;
    fflush(NULL);
    core_pid = fork();
    if (core_pid < 0) {
        perror("fork");
        exit(1);
    }
    if (core_pid == 0) {
        int fd = open(core_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setpgid(0, 0); /* a Ctrl-C is for the driver, which then stops core itself */
        execv(core, (char *const *)argv);
        _exit(127);
    }
    atexit(kill_core_at_exit);
    long end = now_ms() + 20000;
    while (!t_file_lines_with(core_log, 1, "listening on", (const char *)NULL)) {
        int st;
        if (waitpid(core_pid, &st, WNOHANG) == core_pid || now_ms() > end) {
            fprintf(stderr, "soak: faultline-core (%s) did not start\n", core);
            show_tail(core_log, 30);
            exit(1);
        }
        sleep_us(5000);
    }
}

static pid_t spawn(bool manager, int idx)
{
    struct proc *pr = manager ? &O->mgr[idx] : &O->cli[idx];
    pr->incarnation++;
    uint64_t seed =
        mix(opt.seed ^ (uint64_t)manager << 62 ^ (uint64_t)idx << 40 ^ (uint64_t)pr->incarnation);
    memset(pr->thr, 0, sizeof(pr->thr));
    atomic_store(&pr->beat, now_ms());
    atomic_store(&pr->op, OP_START);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != driver_pid) _exit(1);
        dup2(comp_fd, 2);
        static char rolebuf[32];
        snprintf(rolebuf, sizeof(rolebuf), "%s %d", manager ? "manager" : "client", idx);
        role = rolebuf;
        if (!manager && opt.vma_budget > 0) {
            char b[32];
            snprintf(b, sizeof(b), "%d", opt.vma_budget);
            setenv("FAULTLINE_VMA_BUDGET", b, 1);
        }
        _exit(manager ? manager_main(idx, seed) : client_main(idx, seed));
    }
    atomic_store(&pr->pid, pid);
    dprintf(comp_fd, "soak: %s %d incarnation %u is pid %d\n", manager ? "manager" : "client", idx,
            pr->incarnation, (int)pid);
    return pid;
}

/* A killed component's share of the oracle goes back to neutral. */
static void cleanup_client(int c)
{
    for (int m = 0; m < MAX_MANAGERS; m++) {
        for (int p = 0; p < TOP_PAGES; p++)
            atomic_fetch_and(&O->maps[m][TOP].pin[p],
                             ~(((1ull << MAX_THREADS) - 1) << (c * MAX_THREADS)));
        int s = MB_CONSUMER;
        atomic_compare_exchange_strong(&O->top_mb[m][c].state, &s, MB_EMPTY);
    }
    memset(O->cli[c].thr, 0, sizeof(O->cli[c].thr));
}

static void cleanup_manager(int m, pid_t pid)
{
    for (int i = 0; i < MAX_MANAGERS; i++) {
        int holder = (int)pid;
        if (pid > 0) atomic_compare_exchange_strong(&O->nest_lock[i], &holder, 0);
    }
    for (int k = 0; k < 2; k++) atomic_store(&O->maps[m][k].dsid, 0);
    for (int c = 0; c < MAX_CLIENTS; c++) atomic_store(&O->top_mb[m][c].state, MB_EMPTY);
    atomic_store(&O->sub_mb[m].state, MB_EMPTY);
    int s = MB_CONSUMER;
    atomic_compare_exchange_strong(&O->sub_mb[(m + 1) % O->nmanagers].state, &s, MB_EMPTY);
}

static int exit_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void kill_component(bool manager, int idx)
{
    struct proc *pr = manager ? &O->mgr[idx] : &O->cli[idx];
    pid_t pid = atomic_load(&pr->pid);
    int st;
    if (pid <= 0) return;
    if (manager) {
        /* Stop it first so that it cannot publish a new map after we
         * declared its maps dead: faults on them may be reported from now. */
        kill(pid, SIGSTOP);
        if (waitpid(pid, &st, WUNTRACED) == pid && !WIFSTOPPED(st)) {
            atomic_store(&pr->pid, 0);
            violation("manager %d (pid %d) exited with %d before it was killed", idx, (int)pid,
                      exit_code(st));
            return;
        }
        for (int k = 0; k < 2; k++) atomic_store(&O->maps[idx][k].dsid, 0);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    atomic_store(&pr->pid, 0);
    if (manager)
        cleanup_manager(idx, pid);
    else
        cleanup_client(idx);
    count(manager ? C_KILL_M : C_KILL_C);
}

static void progress(long t0, const char *tag)
{
    uint64_t c[C_NCOUNTERS];
    for (int i = 0; i < C_NCOUNTERS; i++) c[i] = atomic_load(&O->count[i]);
    printf("soak %s t=%lds faults=%" PRIu64 " attaches=%" PRIu64 " detaches=%" PRIu64
           " frees=%" PRIu64 " destroys=%" PRIu64 " nests=%" PRIu64 " imports=%" PRIu64
           " client-detaches=%" PRIu64 " checks=%" PRIu64 " writes-verified=%" PRIu64
           " sigbus-expected=%" PRIu64 " kills=%" PRIu64 "m+%" PRIu64 "c clean-exits=%" PRIu64
           " spurious=%" PRIu64 " torn-reads=%" PRIu64 " late-sigbus=%" PRIu64
           " core-fds=%d core-rss=%ldkB\n",
           tag, (now_ms() - t0) / 1000, c[C_FAULTS], c[C_ATTACH], c[C_DETACH], c[C_FREE],
           c[C_DESTROY], c[C_NEST], c[C_IMPORT], c[C_CDETACH], c[C_CHECK], c[C_WRITE_OK],
           c[C_SIGBUS], c[C_KILL_M], c[C_KILL_C], c[C_EXIT_C], c[C_SPURIOUS], c[C_TORN],
           c[C_LATE_SIGBUS], t_proc_fd_count(core_pid), t_proc_status_kb(core_pid, "VmRSS"));
    fflush(stdout);
}

static void check_hangs(void)
{
    long now = now_ms();
    for (int c = 0; c < opt.clients; c++) {
        if (atomic_load(&O->cli[c].pid) <= 0) continue;
        for (int t = 0; t < opt.threads; t++) {
            struct thread_hb *hb = &O->cli[c].thr[t];
            long since = atomic_load(&hb->since);
            if (!atomic_load(&hb->busy) || now - since <= opt.hang_ms) continue;
            int m = atomic_load(&hb->m), p = atomic_load(&hb->page);
            int m2 = (m + 1) % opt.managers;
            violation(
                "fault neither resolved nor reported for %ld ms: client %d (pid %d) "
                "thread %d (tid %d) reading manager %d's top map (dsid %u) page %d; manager %d "
                "(pid %d) is at '%s', its top map now dsid %u, slot %#" PRIx64
                "; manager %d's sub map dsid %u",
                now - since, c, atomic_load(&O->cli[c].pid), t, atomic_load(&hb->tid), m,
                atomic_load(&hb->dsid), p, m, atomic_load(&O->mgr[m].pid),
                op_names[atomic_load(&O->mgr[m].op)], atomic_load(&O->maps[m][TOP].dsid),
                atomic_load(&O->maps[m][TOP].slot), m2, atomic_load(&O->maps[m2][SUB].dsid));
            return;
        }
    }
    for (int m = 0; m < opt.managers; m++) {
        long b = atomic_load(&O->mgr[m].beat);
        if (atomic_load(&O->mgr[m].pid) > 0 && now - b > opt.hang_ms) {
            violation("manager %d (pid %d) made no progress for %ld ms, at '%s'", m,
                      atomic_load(&O->mgr[m].pid), now - b, op_names[atomic_load(&O->mgr[m].op)]);
            return;
        }
    }
}

/* Reap children that exited by themselves. */
static void reap(long *restart_at_m, long *restart_at_c)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (pid == core_pid) {
            core_pid = 0;
            violation("faultline-core died (exit %d)", exit_code(st));
            return;
        }
        for (int i = 0; i < opt.managers; i++)
            if (atomic_load(&O->mgr[i].pid) == pid) {
                atomic_store(&O->mgr[i].pid, 0);
                cleanup_manager(i, pid);
                if (atomic_load(&O->stop) < 2)
                    violation("manager %d (pid %d) exited on its own with %d", i, (int)pid,
                              exit_code(st));
                restart_at_m[i] = now_ms() + 100;
            }
        for (int i = 0; i < opt.clients; i++)
            if (atomic_load(&O->cli[i].pid) == pid) {
                atomic_store(&O->cli[i].pid, 0);
                cleanup_client(i);
                if (exit_code(st) != 0)
                    violation("client %d (pid %d) exited with %d", i, (int)pid, exit_code(st));
                else
                    count(C_EXIT_C);
                restart_at_c[i] = now_ms() + 100;
            }
    }
}

static bool wait_gone(bool managers, long ms)
{
    long end = now_ms() + ms;
    int n = managers ? opt.managers : opt.clients;
    for (;;) {
        bool any = false;
        for (int i = 0; i < n; i++) {
            struct proc *pr = managers ? &O->mgr[i] : &O->cli[i];
            pid_t pid = atomic_load(&pr->pid);
            int st;
            if (pid <= 0) continue;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                atomic_store(&pr->pid, 0);
                if (exit_code(st) != 0)
                    violation("%s %d exited with %d at the end", managers ? "manager" : "client", i,
                              exit_code(st));
                continue;
            }
            any = true;
        }
        if (!any) return true;
        if (now_ms() > end) return false;
        sleep_us(10000);
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: faultline-soak [SECONDS] [options]\n"
            "  --duration S         run for S seconds (default 60)\n"
            "  --seed N             random seed (printed at start; replays the choices)\n"
            "  --managers N         dataspace managers, 1..%d (default 3)\n"
            "  --clients N          clients, 1..%d (default 5)\n"
            "  --threads N          faulting threads per client, 1..%d (default 3)\n"
            "  --kill-interval MS   mean time between random kills (default 1500)\n"
            "  --no-kill            kill nothing (clients still exit cleanly now and then)\n"
            "  --no-kill-managers   kill clients only\n"
            "  --no-destroy         managers never destroy a map\n"
            "  --no-nest            managers never nest a sub map\n"
            "  --no-free            managers never free RAM that is still attached\n"
            "  --no-overlapping-revocations  a sub map's owner and the owner of the map it is\n"
            "                       nested in take turns revoking (works around a bug)\n"
            "  --defer-free MS      managers free the RAM of a destroyed map MS ms later\n"
            "                       (works around a bug)\n"
            "  --tolerate-late-sigbus  count a SIGBUS raised outside any access instead of\n"
            "                       failing (works around a bug)\n"
            "  --few-descriptors    managers back four pages per RAM dataspace where they can\n"
            "                       (fewer memfds per attach; works around a bug)\n"
            "  --no-partial-revoke  clients touch every page of an attachment first (works\n"
            "                       around the partial-revocation bug, doc/soak.md)\n"
            "  --hang-ms MS         bound for a fault to be resolved or reported (default "
            "30000)\n"
            "  --rss-tolerance-kb N core VmRSS growth allowed at the end\n"
            "  --shmem-tolerance-kb N core RssShmem growth allowed at the end (default 256)\n"
            "  --vma-budget N       clients' FAULTLINE_VMA_BUDGET (mapping cache evictions)\n"
            "  --backend B          core's event loop backend\n"
            "  --progress S         seconds between progress lines (default 5)\n"
            "  --core-verbose       pass -v to core (twice: -v -v, debug)\n"
            "  --keep               keep the run directory (core and component logs)\n",
            MAX_MANAGERS, MAX_CLIENTS, MAX_THREADS);
}

static void parse(int argc, char **argv)
{
    bool seeded = false;
    /* The options with a number (into a long or an int), and the switches. */
    const struct {
        const char *name;
        long *l;
        int *i;
    } nums[] = {
        {"--duration", &opt.seconds, NULL},
        {"--managers", NULL, &opt.managers},
        {"--clients", NULL, &opt.clients},
        {"--threads", NULL, &opt.threads},
        {"--kill-interval", &opt.kill_interval_ms, NULL},
        {"--hang-ms", &opt.hang_ms, NULL},
        {"--rss-tolerance-kb", &opt.rss_tol_kb, NULL},
        {"--shmem-tolerance-kb", &opt.shmem_tol_kb, NULL},
        {"--vma-budget", NULL, &opt.vma_budget},
        {"--progress", &opt.progress_s, NULL},
        {"--defer-free", &O->defer_free_ms, NULL},
    };
    const struct {
        const char *name;
        bool *b, v;
    } switches[] = {
        {"--no-kill", &opt.kill, false},
        {"--no-kill-managers", &opt.kill_managers, false},
        {"--no-destroy", &O->destroy, false},
        {"--no-nest", &O->nest, false},
        {"--no-free", &O->free, false},
        {"--no-overlapping-revocations", &O->serialize, true},
        {"--tolerate-late-sigbus", &O->late_sigbus_ok, true},
        {"--few-descriptors", &O->big_chunks, true},
        {"--no-partial-revoke", &O->prefault, true},
        {"--keep", &opt.keep, true},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        size_t k = 0;
        while (k < sizeof(nums) / sizeof(nums[0]) && (strcmp(a, nums[k].name) || !v)) k++;
        if (k < sizeof(nums) / sizeof(nums[0])) {
            if (nums[k].l)
                *nums[k].l = atol(v);
            else
                *nums[k].i = atoi(v);
            i++;
            continue;
        }
        for (k = 0; k < sizeof(switches) / sizeof(switches[0]) && strcmp(a, switches[k].name);) k++;
        if (k < sizeof(switches) / sizeof(switches[0])) {
            *switches[k].b = switches[k].v;
        } else if (!strcmp(a, "--seed") && v) {
            opt.seed = strtoull(v, NULL, 0);
            seeded = true;
            i++;
        } else if (!strcmp(a, "--backend") && v) {
            opt.backend = v;
            i++;
        } else if (!strcmp(a, "--core-verbose")) {
            opt.verbose_core++;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (a[0] != '-' && atol(a) > 0) {
            opt.seconds = atol(a);
        } else {
            usage(stderr);
            exit(2);
        }
    }
    if (opt.managers < 1 || opt.managers > MAX_MANAGERS || opt.clients < 1 ||
        opt.clients > MAX_CLIENTS || opt.threads < 1 || opt.threads > MAX_THREADS ||
        opt.seconds < 1 || opt.progress_s < 1) {
        usage(stderr);
        exit(2);
    }
    if (!seeded) opt.seed = mix((uint64_t)time(NULL) ^ (uint64_t)getpid() << 32) % 1000000000;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    driver_pid = getpid();
    O = mmap(NULL, sizeof(*O), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (O == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    O->destroy = O->nest = O->free = true;
    parse(argc, argv);
    O->nmanagers = opt.managers;
    O->nclients = opt.clients;
    O->nthreads = opt.threads;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);

    printf("soak: seed %" PRIu64 " (replay: --seed %" PRIu64 "), %ld s, %d managers, %d "
           "clients x %d threads, kills %s, destroy %s, nesting %s%s%s%s\n",
           opt.seed, opt.seed, opt.seconds, opt.managers, opt.clients, opt.threads,
           opt.kill ? (opt.kill_managers ? "on" : "clients only") : "off",
           O->destroy ? "on" : "off", O->nest ? "on" : "off",
           O->prefault ? ", no partial revocations" : "",
           O->serialize ? ", no overlapping revocations" : "",
           O->big_chunks ? ", few descriptors" : "");
    start_core();
    int base_fds = t_proc_fd_count(core_pid);
    long base_rss = t_proc_status_kb(core_pid, "VmRSS"),
         base_shmem = t_proc_status_kb(core_pid, "RssShmem");
    printf("soak: core pid %d, logs in %s; baseline %d descriptors, VmRSS %ld kB, RssShmem %ld "
           "kB\n",
           (int)core_pid, dir, base_fds, base_rss, base_shmem);

    uint64_t rng = opt.seed;
    long t0 = now_ms(), end = t0 + opt.seconds * 1000, next_progress = t0 + opt.progress_s * 1000;
    long restart_m[MAX_MANAGERS] = {0}, restart_c[MAX_CLIENTS] = {0};
    for (int m = 0; m < opt.managers; m++) spawn(true, m);
    for (int c = 0; c < opt.clients; c++) spawn(false, c);
    long next_kill = t0 + (long)(rnd(&rng) % (uint64_t)(2 * opt.kill_interval_ms + 1));

    while (now_ms() < end && atomic_load(&O->violation) != 2 && !stop_requested) {
        sleep_us(20000);
        reap(restart_m, restart_c);
        check_hangs();
        long now = now_ms();
        for (int m = 0; m < opt.managers; m++)
            if (restart_m[m] && now >= restart_m[m]) {
                restart_m[m] = 0;
                spawn(true, m);
            }
        for (int c = 0; c < opt.clients; c++)
            if (restart_c[c] && now >= restart_c[c]) {
                restart_c[c] = 0;
                spawn(false, c);
            }
        if (opt.kill && now >= next_kill) {
            next_kill = now + (long)(rnd(&rng) % (uint64_t)(2 * opt.kill_interval_ms + 1));
            bool manager = rnd(&rng) % 4 == 0 && opt.kill_managers;
            int idx = (int)(rnd(&rng) % (uint64_t)(manager ? opt.managers : opt.clients));
            if (atomic_load(manager ? &O->mgr[idx].pid : &O->cli[idx].pid) > 0) {
                kill_component(manager, idx);
                long delay = 50 + (long)(rnd(&rng) % 450);
                (manager ? restart_m : restart_c)[idx] = now_ms() + delay;
            }
        }
        if (now >= next_progress) {
            next_progress += opt.progress_s * 1000;
            progress(t0, "progress");
        }
    }

    long ran_s = (now_ms() - t0) / 1000;
    /* Wind down: clients first (their faults still need the managers). */
    bool ok = atomic_load(&O->violation) == 0;
    atomic_store(&O->stop, 1);
    if (ok && !wait_gone(false, opt.hang_ms)) {
        check_hangs();
        violation("clients did not finish within %ld ms of the end", opt.hang_ms);
    }
    atomic_store(&O->stop, 2);
    if (atomic_load(&O->violation) == 0 && !wait_gone(true, opt.hang_ms))
        violation("managers did not finish within %ld ms of the end", opt.hang_ms);
    for (int m = 0; m < opt.managers; m++)
        if (atomic_load(&O->mgr[m].pid) > 0) kill(atomic_load(&O->mgr[m].pid), SIGKILL);
    for (int c = 0; c < opt.clients; c++)
        if (atomic_load(&O->cli[c].pid) > 0) kill(atomic_load(&O->cli[c].pid), SIGKILL);
    for (int m = 0; m < opt.managers; m++)
        if (atomic_load(&O->mgr[m].pid) > 0) waitpid(atomic_load(&O->mgr[m].pid), NULL, 0);
    for (int c = 0; c < opt.clients; c++)
        if (atomic_load(&O->cli[c].pid) > 0) waitpid(atomic_load(&O->cli[c].pid), NULL, 0);
    progress(t0, "final");

    /* Core must give back what the components cost once they are gone. */
    int fds = -1;
    long rss = -1, shmem = -1;
    if (atomic_load(&O->violation) == 0 && core_pid > 0) {
        long settle = now_ms() + 20000;
        do {
            int st;
            if (waitpid(core_pid, &st, WNOHANG) == core_pid) {
                core_pid = 0;
                violation("faultline-core died (exit %d) after the run", exit_code(st));
                break;
            }
            fds = t_proc_fd_count(core_pid);
            rss = t_proc_status_kb(core_pid, "VmRSS");
            shmem = t_proc_status_kb(core_pid, "RssShmem");
            if (fds == base_fds && shmem - base_shmem <= opt.shmem_tol_kb &&
                rss - base_rss <= opt.rss_tol_kb)
                break;
            sleep_us(100000);
        } while (now_ms() < settle);
        printf("soak: core at the end: %d descriptors (baseline %d), VmRSS %ld kB (baseline %ld, "
               "tolerance +%ld), RssShmem %ld kB (baseline %ld, tolerance +%ld)\n",
               fds, base_fds, rss, base_rss, opt.rss_tol_kb, shmem, base_shmem, opt.shmem_tol_kb);
        if (atomic_load(&O->violation) == 0) {
            if (fds != base_fds)
                violation("core holds %d descriptors after every component is gone, baseline %d",
                          fds, base_fds);
            else if (shmem - base_shmem > opt.shmem_tol_kb)
                violation("core's RssShmem is %ld kB after the run, baseline %ld kB", shmem,
                          base_shmem);
            else if (rss - base_rss > opt.rss_tol_kb)
                violation("core's VmRSS is %ld kB after the run, baseline %ld kB (tolerance "
                          "+%ld kB)",
                          rss, base_rss, opt.rss_tol_kb);
        }
    }
    if (core_pid > 0) {
        int st;
        kill(core_pid, SIGTERM);
        waitpid(core_pid, &st, 0);
        core_pid = 0;
        if (exit_code(st) != 0 && atomic_load(&O->violation) == 0)
            violation("faultline-core exited with %d on SIGTERM", exit_code(st));
    }

    uint64_t spurious = atomic_load(&O->count[C_SPURIOUS]);
    if (atomic_load(&O->violation)) {
        printf("soak: FAIL (seed %" PRIu64 "): %s\n", opt.seed, O->msg);
        fprintf(stderr, "soak: FAIL (seed %" PRIu64 "): %s\n", opt.seed, O->msg);
        show_tail(core_log, 40);
        show_tail(comp_log, 20);
        fprintf(stderr, "soak: logs kept in %s\n", dir);
        return 1;
    }
    printf("soak: PASS (seed %" PRIu64 ", %ld s%s): every invariant held%s\n", opt.seed, ran_s,
           stop_requested ? ", stopped early" : "",
           spurious ? "; see the spurious count: faults reflected for attached pages" : "");
    if (!opt.keep) {
        unlink(core_log);
        unlink(comp_log);
        rmdir(dir);
    }
    return 0;
}
