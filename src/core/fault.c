/*
 * The fault path, in one place: a uffd event of a component -> resolve it
 * through the region maps -> map it (and wake after the agent's ack), or
 * reflect it to the fault handler of the deepest map reached.
 *
 * Core reads a component's uffd only with preadv2(RWF_NOWAIT) or through
 * io_uring (uffd.c): the component shares the file description and can clear
 * O_NONBLOCK on it at any time.
 */
#include "../common/log.h"
#include "../common/probe.h"
#include "agent.h"
#include "ctl.h"
#include "dataspace.h"
#include "fault.h"
#include "loop.h"
#include "mapping.h"
#include "region_map.h"
#include "rpc.h"
#include "session.h"
#include "signal_context.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

struct fl_faulter {
    struct fl_list link;      /* in rm->faulters */
    struct fl_faulter *hnext; /* in s's index by thread id */
    struct fl_region_map *rm; /* the map it is queued on */
    struct fl_session *s;     /* the faulting session (its faulters go before it does) */
    uint32_t tid;
    uint64_t va;   /* in the component's address space */
    uint64_t addr; /* in the map that reflected it */
    enum fl_fault_type type;
    bool segv; /* waits in libfaultline's SIGSEGV handler, not in the uffd */
    uint64_t since_ms;
};

static const char *type_name(enum fl_fault_type t)
{
    return fl_fault_type_name(t);
}

/*
 * Each session indexes its queued faulters by thread id (a chained hash), so
 * that a fault message costs O(1) however long a map's queue is: a thread
 * waits on one fault at a time, so (session, thread) names at most one
 * faulter anywhere. An entry for another address is a fault the thread
 * abandoned (a signal handler longjmp'd out of it).
 */
static unsigned bucket_of(const struct fl_session *s, uint32_t tid)
{
    return (tid * 2654435761u) & (s->faulter_nbuckets - 1);
}

static struct fl_faulter *faulter_of(struct fl_session *s, uint32_t tid)
{
    if (!s->faulter_nbuckets) return NULL;
    for (struct fl_faulter *f = s->faulter_buckets[bucket_of(s, tid)]; f; f = f->hnext)
        if (f->tid == tid) return f;
    return NULL;
}

static int faulter_index(struct fl_session *s, struct fl_faulter *f)
{
    if (s->nfaulters >= s->faulter_nbuckets) {
        unsigned n = s->faulter_nbuckets ? s->faulter_nbuckets * 2 : 16;
        struct fl_faulter **b = calloc(n, sizeof(*b));
        if (!b) return -ENOMEM;
        for (unsigned i = 0; i < s->faulter_nbuckets; i++)
            for (struct fl_faulter *x = s->faulter_buckets[i], *next; x; x = next) {
                next = x->hnext;
                unsigned k = (x->tid * 2654435761u) & (n - 1);
                x->hnext = b[k];
                b[k] = x;
            }
        free(s->faulter_buckets);
        s->faulter_buckets = b;
        s->faulter_nbuckets = n;
    }
    struct fl_faulter **head = &s->faulter_buckets[bucket_of(s, f->tid)];
    f->hnext = *head;
    *head = f;
    s->nfaulters++;
    return 0;
}

static void faulter_free(struct fl_faulter *f)
{
    struct fl_session *s = f->s;
    for (struct fl_faulter **pp = &s->faulter_buckets[bucket_of(s, f->tid)]; *pp;
         pp = &(*pp)->hnext)
        if (*pp == f) {
            *pp = f->hnext;
            break;
        }
    s->nfaulters--;
    fl_list_del(&f->link);
    free(f);
}

/*
 * Faults core cannot act on -- it cannot route them (no handler, nesting too
 * deep, outside the window), or the peer repeats an EXEC fault that is
 * already queued -- leave the thread halted, so an honest component causes a
 * few; a stream of them is a peer replaying messages. Beyond
 * FL_UNROUTABLE_MAX in a second its session is closed. Returns false if it was.
 */
static bool unroutable_ok(struct fl_session *s, unsigned weight)
{
    uint64_t now = core_now_ms();
    if (now - s->unroutable_since_ms >= 1000) {
        s->unroutable_since_ms = now;
        s->unroutable = 0;
    }
    s->unroutable += weight;
    if (s->unroutable <= FL_UNROUTABLE_MAX) return true;
    char why[128];
    snprintf(why, sizeof(why),
             "it keeps causing faults core cannot route or has queued already (more than %u "
             "in 1 s)",
             FL_UNROUTABLE_MAX);
    core_session_close(s, why);
    return false;
}

/* A fault that can never be resolved. Genode halts the thread; with
 * --unresolvable=sigbus the component's own agent raises SIGBUS in it (core
 * makes no uffd call but WAKE), so a CI run fails fast instead of hanging. */
static void unresolvable(struct fl_session *s, uint32_t tid, uint64_t va)
{
    if (fl_core.cfg.unresolvable_sigbus) core_agent_sigbus(s, tid, va);
}

static void reflect(struct fl_session *s, struct fl_region_map *rm, uint64_t addr, uint64_t va,
                    uint32_t tid, enum fl_fault_type type, bool segv)
{
    if (!rm->fault_handler) {
        /* Genode: not queued, so a handler registered later does not get it. */
        if (!unroutable_ok(s, 1)) return;
        core_session_log(
            s, FL_LOG_ERROR,
            "unresolvable %s fault at %#llx by %s thread %u (session %llu): no fault "
            "handler on the region map; %s",
            type_name(type), (unsigned long long)va, s->label, tid, (unsigned long long)s->id,
            fl_core.cfg.unresolvable_sigbus ? "raising SIGBUS in it" : "the thread stays halted");
        unresolvable(s, tid, va);
        return;
    }
    struct fl_faulter *f = faulter_of(s, tid);
    if (f && f->rm == rm && f->va == va && f->type == type) {
        /* A duplicate. From the uffd it is the kernel's (a signal made the
         * thread retry); an EXEC_FAULT repeated while its thread waits in the
         * handler is the peer's own doing, and a flood of them is counted. */
        if (segv) (void)unroutable_ok(s, FL_UNROUTABLE_REPEAT);
        return;
    }
    if (f) {
        /* A new fault of the thread: the old one was abandoned. It queues
         * anew, at the tail (a new epoch of this faulter). */
        struct fl_region_map *old = f->rm;
        faulter_free(f);
        if (old != rm) core_fault_page_publish(old);
    }
    if (s->nfaulters >= FL_FAULTERS_MAX) {
        char why[128];
        snprintf(why, sizeof(why), "more than %u of its threads wait on faults at once",
                 FL_FAULTERS_MAX);
        core_session_close(s, why);
        return;
    }
    f = calloc(1, sizeof(*f));
    if (!f) return;
    f->rm = rm;
    f->s = s;
    f->tid = tid;
    f->va = va;
    f->addr = addr;
    f->type = type;
    f->segv = segv;
    f->since_ms = core_now_ms();
    if (faulter_index(s, f) < 0) {
        free(f);
        return; /* the thread stays halted; a signal to it faults again */
    }
    fl_list_add_tail(&rm->faulters, &f->link);
    core_fault_page_publish(rm); /* before the signal: the manager reads it next */
    FL_PROBE5(fault_reflect, s->id, va, addr, (uintptr_t)rm, rm->obj.owner ? rm->obj.owner->id : 0);
    fl_debug("reflect %s fault at %#llx (map address %#llx) of %s thread %u", type_name(type),
             (unsigned long long)va, (unsigned long long)addr, s->label, tid);
    /* Genode checks the handler's capability, not that its context lives: a
     * destroyed context still counts as installed. The fault is queued, the
     * signal goes nowhere, and an attach covering it wakes the thread. */
    if (!rm->fault_handler->obj.dead) core_signal_submit(rm->fault_handler);
}

static void defer(struct fl_dataspace *ds, struct fl_session *s, uint64_t va,
                  enum fl_fault_type type, uint32_t tid, bool segv)
{
    for (size_t i = 0; i < ds->ndeferred; i++)
        if (ds->deferred[i].session_id == s->id && ds->deferred[i].tid == tid) {
            ds->deferred[i].va = va; /* the thread's latest fault */
            return;
        }
    if (ds->ndeferred == ds->deferred_cap) {
        size_t n = ds->deferred_cap ? ds->deferred_cap * 2 : 8;
        struct fl_deferred_fault *d = realloc(ds->deferred, n * sizeof(*d));
        if (!d) return; /* the thread stays halted; a signal to it faults again */
        ds->deferred = d;
        ds->deferred_cap = n;
    }
    ds->deferred[ds->ndeferred++] = (struct fl_deferred_fault){s->id, va, tid, (uint8_t)type, segv};
}

static void handle_fault(struct fl_session *s, uint64_t exact, enum fl_fault_type type,
                         uint32_t tid, bool segv)
{
    /* Core resolves by page; the map it reflects to learns the exact byte
     * (Genode's fault address), where the kernel reports it. */
    uint64_t va = exact & ~(uint64_t)(FL_PAGE_SIZE - 1), in_page = exact - va;
    FL_PROBE3(fault_entry, s->id, va, type);
    /* A fault on a page whose resume is on its way: the same fault seen twice
     * (threads, signals), or already a new one; sorted out after the ack. */
    if (core_agent_resume_pending(s, va, !segv)) return;

    struct fl_region_map *rm = s->address_space;
    uint64_t addr = va;
    uint64_t lo = s->window_base, hi = s->window_base + s->window_size; /* clip, in va */
    bool w_ok = true, x_ok = true;
    for (int depth = 0; rm; depth++) {
        if (depth >= CORE_MAX_DEPTH) {
            if (!unroutable_ok(s, 1)) return;
            core_session_log(s, FL_LOG_ERROR,
                             "giving up on unexpectedly deep memory-mapping structure (or a cycle) "
                             "at %#llx, %s thread %u; the thread stays halted",
                             (unsigned long long)va, s->label, tid);
            unresolvable(s, tid, va);
            return;
        }
        const struct fl_span *span = fl_placement_lookup(&rm->placement, addr);
        struct fl_region *r = span ? span->owner : NULL;
        if (!r || !r->ds) {
            /* A missing page is a missing-page fault even for an instruction
             * fetch, as the uffd reports it. */
            reflect(s, rm, addr + in_page, va, tid, type == FL_FAULT_EXEC ? FL_FAULT_READ : type,
                    segv);
            return;
        }
        uint64_t rlo = va - (addr - r->start), rhi = rlo + r->size;
        if (rlo > lo) lo = rlo;
        if (rhi < hi) hi = rhi;
        w_ok = w_ok && r->write;
        x_ok = x_ok && r->exec;
        if (r->ds->memfd >= 0) {
            if (r->ds->moving) {
                defer(r->ds, s, exact, type, tid, segv);
                return;
            }
            /* Effective rights: the attachments' and the dataspace's own (a
             * ROM module is never writable). */
            if (r->ds->read_only) w_ok = false;
            /* Violations go to the deepest map, the one that holds the RAM. */
            if ((type == FL_FAULT_WRITE && !w_ok) || (type == FL_FAULT_EXEC && !x_ok)) {
                reflect(s, rm, addr + in_page, va, tid, type, segv);
                return;
            }
            /* The largest window the attachment allows, through every level. */
            uint64_t off = r->offset + (lo - rlo);
            uint64_t seq = core_agent_map(s, lo, hi - lo, r->ds, off, w_ok, x_ok);
            FL_PROBE3(fault_resolve, s->id, va, hi - lo);
            if (seq)
                core_agent_resume(s, lo, hi - lo, va);
            else
                core_agent_wait_credit(s, va);
            return;
        }
        addr = r->offset + (addr - r->start);
        rm = r->ds->rm;
    }
}

void core_fault_uffd_ready(void *arg, uint32_t events)
{
    struct fl_session *s = arg;
    if (events & FL_EV_ERR) {
        core_session_close(s, "protocol violation: its userfaultfd reports an error");
        return;
    }
    /* Bounded, so one faulting peer cannot starve the others. A short read
     * emptied the uffd (the kernel returns every message it has, up to the
     * buffer), so no call is spent to learn that it is empty. */
    for (size_t round = 0; round < 8 && !s->closing; round++) {
        struct uffd_msg msgs[16];
        struct iovec iov = {.iov_base = msgs, .iov_len = sizeof(msgs)};
        ssize_t n = preadv2(s->uffd, &iov, 1, -1, RWF_NOWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            core_session_close(s, "reading its userfaultfd failed");
            return;
        }
        core_fault_uffd_msgs(s, msgs, (size_t)n);
        if (n < (ssize_t)sizeof(msgs)) return;
    }
}

void core_fault_uffd_msgs(struct fl_session *s, const struct uffd_msg *msgs, size_t bytes)
{
    if (bytes == 0 || bytes % sizeof(struct uffd_msg)) {
        core_session_close(s, "its userfaultfd returned a partial message");
        return;
    }
    for (size_t i = 0; i < bytes / sizeof(struct uffd_msg); i++) {
        const struct uffd_msg *m = &msgs[i];
        if (m->event != UFFD_EVENT_PAGEFAULT) {
            core_session_close(s, "its userfaultfd delivers events core did not ask for");
            return;
        }
        uint64_t va = m->arg.pagefault.address;
        if (va < s->window_base || va - s->window_base >= s->window_size) {
            if (!unroutable_ok(s, 1)) return;
            core_session_log(s, FL_LOG_WARN,
                             "session %llu: fault at %#llx outside its window, "
                             "ignored",
                             (unsigned long long)s->id, (unsigned long long)va);
            continue;
        }
        /* A write to a read-only window arrives with WRITE|WP. */
        handle_fault(s, va,
                     m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE ? FL_FAULT_WRITE
                                                                        : FL_FAULT_READ,
                     m->arg.pagefault.feat.ptid, false);
    }
}

/* Whether the peer lives in core's pid namespace, so that its thread ids can
 * be looked up in core's /proc: the same NSpid depth (its pid is visible to
 * core, so it is in core's namespace or below it). */
static int nspid_depth(const char *status_path)
{
    FILE *f = fopen(status_path, "re");
    if (!f) return -1;
    char line[256];
    int depth = -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "NSpid:", 6)) {
            depth = 0;
            for (char *p = line + 6; *p;) {
                while (*p == ' ' || *p == '\t') p++;
                if (*p < '0' || *p > '9') break;
                depth++;
                while (*p >= '0' && *p <= '9') p++;
            }
            break;
        }
    fclose(f);
    return depth;
}

static bool tids_checkable(struct fl_session *s)
{
    if (!s->tid_check) {
        static int own = -2;
        if (own == -2) own = nspid_depth("/proc/self/status");
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/status", (int)s->pid);
        int depth = nspid_depth(path);
        s->tid_check = own > 0 && depth == own ? 1 : 2;
        if (s->tid_check == 2)
            core_session_log(s, FL_LOG_WARN,
                             "session %llu (%s): in another pid namespace; the thread ids of its "
                             "EXEC faults cannot be checked (at most %u queue)",
                             (unsigned long long)s->id, s->label, FL_FAULTERS_MAX);
    }
    return s->tid_check == 1;
}

void core_fault_exec(struct fl_session *s, const struct fl_msg_exec_fault *m)
{
    if (!s->address_space || m->addr < s->window_base ||
        m->addr - s->window_base >= s->window_size) {
        core_session_close(s, "protocol violation: an EXEC fault outside its window");
        return;
    }
    /* The thread id is the peer's word, unlike a uffd's: a made-up one would
     * queue a faulter per number. It must name a thread of the sender. */
    if (tids_checkable(s)) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/task/%u", (int)s->pid, m->tid);
        if (access(path, F_OK) != 0) {
            char why[128];
            snprintf(why, sizeof(why),
                     "protocol violation: an EXEC fault for thread %u, which is not one of its "
                     "threads",
                     m->tid);
            core_session_close(s, why);
            return;
        }
    }
    handle_fault(s, m->addr, FL_FAULT_EXEC, m->tid, true);
}

int core_fault_state(struct fl_region_map *rm, struct fl_fault *f)
{
    f->type = FL_FAULT_NONE;
    f->addr = 0;
    if (fl_list_empty(&rm->faulters)) return 0;
    struct fl_faulter *h = fl_list_entry(rm->faulters.next, struct fl_faulter, link);
    f->type = h->type;
    f->addr = h->addr;
    return 0;
}

void core_fault_ctl_dump(struct fl_ctl_out *o, struct fl_region_map *rm, struct fl_session *owner,
                         uint64_t now)
{
    unsigned pos = 0;
    struct fl_list *p, *t;
    fl_list_for_each_safe(p, t, &rm->faulters)
    {
        struct fl_faulter *f = fl_list_entry(p, struct fl_faulter, link);
        /* Short enough for one line of 111 characters; ctl's sessions say who is who. */
        core_ctl_line(
            o,
            "fault %u on a map of session %llu: %s at %#llx by session %llu thread %u%s, %llu ms",
            pos++, (unsigned long long)owner->id, type_name(f->type), (unsigned long long)f->addr,
            (unsigned long long)f->s->id, f->tid, f->segv ? " (SIGSEGV)" : "",
            (unsigned long long)(now - f->since_ms));
    }
    if (pos && !rm->fault_handler)
        core_ctl_line(o, "  (that map has no fault handler now: nobody will be told)");
    else if (pos && rm->fault_handler->obj.dead)
        core_ctl_line(o, "  (its fault handler's signal context was destroyed: nobody is told)");
}

void core_fault_retry_deferred(struct fl_dataspace *ds)
{
    struct fl_deferred_fault *d = ds->deferred;
    size_t n = ds->ndeferred;
    ds->deferred = NULL;
    ds->ndeferred = ds->deferred_cap = 0;
    for (size_t i = 0; i < n; i++) {
        struct fl_session *s = core_session_by_id(d[i].session_id);
        if (s && !s->closing) handle_fault(s, d[i].va, d[i].type, d[i].tid, d[i].segv);
    }
    free(d);
}

void core_fault_wake_region(struct fl_region_map *rm, uint64_t start, uint64_t size)
{
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &rm->faulters)
    {
        struct fl_faulter *f = fl_list_entry(pos, struct fl_faulter, link);
        if (f->addr - start >= size) continue;
        struct fl_session *s = f->s;
        /* The eager mapping of the attach went out before: wake once the agent
         * has done it, and the thread re-executes its access (and faults again
         * if that still does not resolve it). */
        if (!s->closing) {
            FL_PROBE3(fault_resolve, s->id, f->va, FL_PAGE_SIZE);
            core_agent_resume(s, f->va, FL_PAGE_SIZE, f->va);
        }
        faulter_free(f);
    }
    core_fault_page_publish(rm);
}

void core_fault_session_gone(struct fl_session *s)
{
    for (unsigned i = 0; i < s->faulter_nbuckets; i++)
        while (s->faulter_buckets[i]) {
            struct fl_faulter *f = s->faulter_buckets[i];
            struct fl_region_map *rm = f->rm;
            faulter_free(f);
            core_fault_page_publish(rm);
        }
    free(s->faulter_buckets);
    s->faulter_buckets = NULL;
    s->faulter_nbuckets = 0;
}

void core_fault_map_dying(struct fl_region_map *rm)
{
    /* Genode: faulters queued on a destroyed map are never woken. */
    struct fl_list *p, *t;
    fl_list_for_each_safe(p, t, &rm->faulters)
    {
        struct fl_faulter *f = fl_list_entry(p, struct fl_faulter, link);
        unresolvable(f->s, f->tid, f->va);
        faulter_free(f);
    }
}

int core_fault_rpc_exec(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    core_fault_exec(s, msg);
    return CORE_RPC_DEFERRED; /* not answered */
}
