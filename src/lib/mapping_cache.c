/*
 * The component's mappings are a cache of core's mapping database, like a
 * TLB. vm.max_map_count (65530) caps a process at roughly 32k scattered
 * windows, and at the limit even the splits a revocation needs fail. So the
 * agent keeps at most a budget of windows ($FAULTLINE_VMA_BUDGET, default
 * 16384) and, beyond it, drops the oldest quarter back to placeholders; the
 * next touch of one faults and core maps it again.
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

void fl__cache_forget(struct fl_env *env, uintptr_t va, size_t len)
{
    size_t i = first_after(env, va), j = i;
    while (j < env->nwindows && env->windows[j].va < va + len) j++;
    if (j == i) return;
    memmove(&env->windows[i], &env->windows[j], (env->nwindows - j) * sizeof(*env->windows));
    env->nwindows -= j - i;
}

size_t fl__cache_extent(struct fl_env *env, uintptr_t va)
{
    size_t i = first_after(env, va);
    if (i == env->nwindows || env->windows[i].va > va) return 0;
    return env->windows[i].va + env->windows[i].len - va;
}

void fl__cache_mapped(struct fl_env *env, uintptr_t va, size_t len)
{
    /* The new mapping replaces whatever windows it overlaps. */
    size_t i = first_after(env, va), j = i;
    while (j < env->nwindows && env->windows[j].va < va + len) j++;
    if (j > i) {
        memmove(&env->windows[i], &env->windows[j], (env->nwindows - j) * sizeof(*env->windows));
        env->nwindows -= j - i;
    }
    if (!fl__grow((void **)&env->windows, &env->windows_cap, env->nwindows, sizeof(*env->windows),
                  64))
        return; /* untracked: it stays mapped, which is still correct */
    memmove(&env->windows[i + 1], &env->windows[i], (env->nwindows - i) * sizeof(*env->windows));
    env->windows[i] = (struct fl__window){va, len, env->window_seq++};
    env->nwindows++;
    if (env->nwindows > env->vma_budget) fl__cache_evict(env, env->vma_budget * 3 / 4);
}
