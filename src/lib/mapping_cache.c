/*
 * The component's mappings are a cache of core's mapping database, like a
 * TLB. vm.max_map_count (65530) caps a process at roughly 32k scattered
 * windows, and at the limit even the splits a revocation needs fail. So the
 * agent keeps at most a budget of windows ($FAULTLINE_VMA_BUDGET, default
 * 16384) and, beyond it, drops the oldest quarter back to placeholders; the
 * next touch of one faults and core maps it again.
 *
 * A window is what the kernel keeps as one VMA: mappings of one memfd at
 * contiguous offsets with the same rights, side by side, merge into one (a
 * pager that attaches each slice of a file at its own offset makes one VMA
 * of the whole file), so they count once against the budget.
 *
 * Only the agent thread uses this. Windows are kept sorted by address (to
 * find the ones a new mapping replaces); their sequence numbers say which
 * are oldest.
 */
#include "internal.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

void fl__cache_init(struct fl_env *env, size_t budget)
{
    env->vma_budget = budget < 4 ? 4 : budget;
}

void fl__cache_fini(struct fl_env *env)
{
    free(env->windows);
    env->windows = NULL;
    env->nwindows = env->windows_cap = 0;
}

/* Index of the first window ending after va. */
static size_t first_after(struct fl_env *env, uintptr_t va)
{
    size_t lo = 0, hi = env->nwindows;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (env->windows[mid].va + env->windows[mid].len <= va)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Turn [va, va+len) back into a registered placeholder. Never an unregistered
 * anonymous page, not even for an instant (a touch would read silent zeros):
 * PROT_NONE first, then register, then open it up. */
static int placeholder(struct fl_env *env, uintptr_t va, size_t len)
{
    void *p = mmap((void *)va, len, PROT_NONE,
                   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return -errno;
    madvise(p, len, MADV_DONTFORK);
    struct uffdio_register reg = {.range = {.start = va, .len = len},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(env->uffd, UFFDIO_REGISTER, &reg) < 0) return -errno;
    return mprotect(p, len, PROT_READ | PROT_WRITE) < 0 ? -errno : 0;
}

void fl__cache_evict(struct fl_env *env, size_t keep)
{
    if (env->nwindows <= keep) return;
    uint64_t threshold = env->window_seq - keep;
    size_t out = 0;
    for (size_t i = 0; i < env->nwindows; i++) {
        struct fl__window *w = &env->windows[i];
        if (w->seq < threshold)
            placeholder(env, w->va, w->len);
        else
            env->windows[out++] = *w;
    }
    env->nwindows = out;
}

/* Make room for one more window at index i. */
static bool insert_at(struct fl_env *env, size_t i)
{
    if (!fl__grow((void **)&env->windows, &env->windows_cap, env->nwindows, sizeof(*env->windows),
                  64))
        return false;
    memmove(&env->windows[i + 1], &env->windows[i], (env->nwindows - i) * sizeof(*env->windows));
    env->nwindows++;
    return true;
}

static void remove_range(struct fl_env *env, size_t i, size_t j)
{
    if (j == i) return; /* windows may still be NULL */
    memmove(&env->windows[i], &env->windows[j], (env->nwindows - j) * sizeof(*env->windows));
    env->nwindows -= j - i;
}

/* Take [va, end) out of the windows; the ones it overlaps in part keep the
 * rest (the kernel split their VMAs the same way). Returns the index where a
 * window starting at va belongs. */
static size_t cut(struct fl_env *env, uintptr_t va, uintptr_t end)
{
    size_t i = first_after(env, va);
    if (i < env->nwindows && env->windows[i].va < va) {
        struct fl__window w = env->windows[i];
        env->windows[i].len = va - w.va;
        i++;
        if (w.va + w.len > end) {
            /* A hole in the middle: the right part is a window of its own.
             * Out of memory, it goes untracked -- still mapped, which is
             * correct, only never evicted. */
            if (insert_at(env, i)) {
                size_t d = end - w.va;
                env->windows[i] = w;
                env->windows[i].va = end;
                env->windows[i].len = w.len - d;
                env->windows[i].offset = w.offset + d;
            }
            return i;
        }
    }
    size_t j = i;
    while (j < env->nwindows && env->windows[j].va + env->windows[j].len <= end) j++;
    remove_range(env, i, j);
    if (i < env->nwindows && env->windows[i].va < end) {
        size_t d = end - env->windows[i].va;
        env->windows[i].va = end;
        env->windows[i].len -= d;
        env->windows[i].offset += d;
    }
    return i;
}

void fl__cache_forget(struct fl_env *env, uintptr_t va, size_t len)
{
    cut(env, va, va + len);
}

size_t fl__cache_extent(struct fl_env *env, uintptr_t va)
{
    size_t i = first_after(env, va);
    if (i == env->nwindows || env->windows[i].va > va) return 0;
    return env->windows[i].va + env->windows[i].len - va;
}

/* b continues a in the kernel's eyes: the two VMAs merge. */
static bool continues(const struct fl__window *a, const struct fl__window *b)
{
    return a->va + a->len == b->va && a->memfd_id == b->memfd_id && a->rights == b->rights &&
           a->offset + a->len == b->offset;
}

void fl__cache_mapped(struct fl_env *env, uintptr_t va, size_t len, uint64_t memfd_id,
                      uint64_t offset, uint32_t rights)
{
    /* The new mapping replaces whatever it overlaps. */
    size_t i = cut(env, va, va + len);
    struct fl__window w = {va, len, env->window_seq++, memfd_id, offset, rights};
    struct fl__window *prev = i > 0 ? &env->windows[i - 1] : NULL;
    struct fl__window *next = i < env->nwindows ? &env->windows[i] : NULL;
    if (prev && continues(prev, &w)) {
        prev->len += len;
        prev->seq = w.seq;
        if (next && continues(prev, next)) {
            prev->len += next->len;
            remove_range(env, i, i + 1);
        }
    } else if (next && continues(&w, next)) {
        w.len += next->len;
        *next = w;
    } else if (insert_at(env, i)) {
        env->windows[i] = w;
    } /* else untracked: it stays mapped, which is still correct */
    if (env->nwindows > env->vma_budget) fl__cache_evict(env, env->vma_budget * 3 / 4);
}
