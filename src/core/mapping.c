/*
 * The mapping database and the agents. Core alone knows where every range of
 * every dataspace is visible: a region's memory is visible in an address space
 * through a chain of regions (the address space's own, then up to four nested
 * managed maps). Core instructs each affected component's agent to map or to
 * revoke; the agent executes instructions in order, so a reply sent after an
 * instruction on the same socket is seen by the caller only after the
 * instruction took effect.
 */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The address space plus at most four nested managed maps (Genode's limit). */
#define MAX_DEPTH 5

/* Descriptors core sends a session's agent before it acknowledges them. Each
 * one in flight counts against core's user in the kernel (unix_inflight, up
 * to RLIMIT_NOFILE for all of core's peers together), so an agent that does
 * not read must not be able to hold many. */
#define FD_CREDIT (sizeof(((struct fl_session *)0)->fd_seqs) / sizeof(uint64_t))

static bool memfd_sent(struct fl_session *s, uint64_t id, size_t *pos)
{
    size_t lo = 0, hi = s->nsent;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->sent_memfds[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return lo < s->nsent && s->sent_memfds[lo] == id;
}

static int remember_memfd(struct fl_session *s, uint64_t id, size_t pos)
{
    if (s->nsent == s->sent_cap) {
        size_t n = s->sent_cap ? s->sent_cap * 2 : 16;
        uint64_t *a = realloc(s->sent_memfds, n * sizeof(*a));
        if (!a) return -1;
        s->sent_memfds = a;
        s->sent_cap = n;
    }
    memmove(&s->sent_memfds[pos + 1], &s->sent_memfds[pos], (s->nsent - pos) * sizeof(uint64_t));
    s->sent_memfds[pos] = id;
    s->nsent++;
    return 0;
}

uint64_t fl_mapping_map_window(struct fl_session *s, uint64_t va, uint64_t len,
                               struct fl_dataspace *ds, uint64_t off, bool write, bool exec)
{
    if (s->closing || !s->hello_done) return 0; /* a child yet to come is mapped at HELLO */
    if (ds->moving) return 0;                   /* mapped again once it moved */
    struct fl_msg_agent_map m;
    fl_msg_init(&m, FL_MSG_AGENT_MAP, ++s->agent_seq);
    m.va = va;
    m.len = len;
    m.memfd_id = ds->memfd_id;
    m.offset = off;
    m.flags = (write ? FL_MAP_WRITE : 0) | (exec ? FL_MAP_EXEC : 0);
    int fd = -1;
    size_t pos;
    if (!memfd_sent(s, ds->memfd_id, &pos)) {
        /* Each memfd goes to a session once; afterwards it is named by id. The
         * agent must acknowledge before the credit of descriptors runs out. */
        if (s->fd_head == FD_CREDIT) {
            /* Not mapped now; its faults wait for the agent's acknowledgements
             * (fl_mapping_wait_credit), and an agent that gives none for a
             * revocation deadline loses its session (check_deadlines). */
            if (!s->credit_full_ms) s->credit_full_ms = fl_now_ms();
            return 0;
        }
        if (remember_memfd(s, ds->memfd_id, pos) < 0) {
            fl_session_close(s, "out of memory");
            return 0;
        }
        s->fd_seqs[s->fd_head++] = m.hdr.id;
        m.flags |= FL_MAP_FD_ATTACHED;
        fd = ds->memfd;
    }
    fl_debug("session %llu: map [%#llx, +%#llx) memfd %llu@%#llx %s%s", (unsigned long long)s->id,
             (unsigned long long)va, (unsigned long long)len, (unsigned long long)ds->memfd_id,
             (unsigned long long)off, write ? "w" : "r", exec ? "x" : "");
    if (fl_session_send(s, &m, sizeof(m), fd) < 0) return 0;
    return m.hdr.id;
}

static struct fl_barrier *open_barrier;
static void wait_for_revoke(struct fl_session *s, uint64_t seq);

void fl_mapping_barrier_begin(struct fl_session *s, uint64_t req_id)
{
    open_barrier = calloc(1, sizeof(*open_barrier));
    if (!open_barrier) return; /* then the reply is not held back: detach still revokes */
    open_barrier->session_id = s ? s->id : 0; /* 0: nobody to reply to */
    open_barrier->req_id = req_id;
    fl_list_init(&open_barrier->punches);
    FL_PROBE2(revoke_begin, open_barrier->session_id, req_id);
}

bool fl_mapping_barrier_punch(struct fl_job *job)
{
    if (!open_barrier) return false;
    fl_list_add_tail(&open_barrier->punches, &job->link);
    return true;
}

static void submit_punches(struct fl_barrier *b)
{
    while (!fl_list_empty(&b->punches)) {
        struct fl_list *pos = b->punches.next;
        fl_list_del(pos);
        fl_worker_submit(fl_list_entry(pos, struct fl_job, link));
    }
}

/* Revocations other requests sent may cover this request's range too (a
 * detach inside a nested map whose own detach waits for a client): wait for
 * every one still on its way, not only for this request's own. */
static void wait_for_others(struct fl_barrier *b)
{
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
        uint64_t last = 0;
        for (size_t i = 0; !s->closing && i < s->nrevokes; i++)
            if (s->revokes[i].barrier != b && s->revokes[i].seq > last) last = s->revokes[i].seq;
        if (last) wait_for_revoke(s, last);
    }
}

void fl_mapping_barrier_move(struct fl_dataspace *ds)
{
    if (!open_barrier || open_barrier->move) return;
    fl_object_ref(&ds->obj);
    open_barrier->move = ds;
}

/* Every agent revoked: reply, or first move the dataspace (which replies). */
static void barrier_done(struct fl_barrier *b)
{
    FL_PROBE2(revoke_end, b->session_id, b->req_id);
    submit_punches(b);
    if (b->move) {
        fl_dataspace_move(b->move, b->session_id, b->req_id);
        fl_object_unref(&b->move->obj);
    } else {
        struct fl_session *s = fl_session_by_id(b->session_id);
        if (s) fl_session_reply(s, b->req_id, 0, NULL, 0);
    }
    free(b);
}

bool fl_mapping_barrier_end(void)
{
    struct fl_barrier *b = open_barrier;
    if (!b) return false;
    wait_for_others(b);
    open_barrier = NULL;
    if (b->pending == 0) {
        if (!b->move) {
            FL_PROBE2(revoke_end, b->session_id, b->req_id);
            submit_punches(b);
            free(b);
            return false;
        }
        barrier_done(b);
    }
    return true;
}

static void barrier_release(struct fl_barrier *b)
{
    if (--b->pending == 0) barrier_done(b);
}

static void wait_for_revoke(struct fl_session *s, uint64_t seq)
{
    if (!open_barrier) return;
    if (s->nrevokes == s->revokes_cap) {
        size_t n = s->revokes_cap ? s->revokes_cap * 2 : 8;
        struct fl_revoke_wait *w = realloc(s->revokes, n * sizeof(*w));
        if (!w) return;
        s->revokes = w;
        s->revokes_cap = n;
    }
    s->revokes[s->nrevokes++] =
        (struct fl_revoke_wait){seq, open_barrier, fl_now_ms() + fl_core.cfg.revoke_deadline_ms};
    open_barrier->pending++;
}

uint64_t fl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int fl_mapping_check_deadlines(void)
{
    uint64_t now = fl_now_ms(), next = UINT64_MAX;
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
        if (s->closing) continue;
        if (s->credit_full_ms) {
            uint64_t due = s->credit_full_ms + fl_core.cfg.revoke_deadline_ms;
            if (due <= now) {
                fl_error("session %llu (%s): too many descriptors in flight: its agent has "
                         "acknowledged none of %zu for %u ms; closing it",
                         (unsigned long long)s->id, s->label, FD_CREDIT,
                         fl_core.cfg.revoke_deadline_ms);
                fl_session_close(s, "too many descriptors in flight: its agent does not "
                                    "acknowledge");
                next = now;
                continue;
            }
            if (due < next) next = due;
        }
        if (s->nrevokes == 0) continue;
        uint64_t oldest = UINT64_MAX;
        for (size_t i = 0; i < s->nrevokes; i++)
            if (s->revokes[i].deadline_ms < oldest) oldest = s->revokes[i].deadline_ms;
        if (oldest > now) {
            if (oldest < next) next = oldest;
            continue;
        }
        /* Its memory must go, and only its agent can unmap it: end the
         * component (a CLONE_VM sibling would survive this; see README). */
        fl_error("session %llu (%s) missed the revocation deadline of %u ms: terminating it",
                 (unsigned long long)s->id, s->label, fl_core.cfg.revoke_deadline_ms);
        if (s->pidfd < 0 || syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0) < 0)
            if (s->pid > 0) kill(s->pid, SIGKILL);
        fl_session_close(s, "missed the revocation deadline");
        next = now; /* its teardown is due: do not sleep before it */
    }
    return next == UINT64_MAX ? -1 : (int)(next - now);
}

void fl_mapping_session_gone(struct fl_session *s)
{
    /* Its mappings die with it: nothing to wait for any more. */
    for (size_t i = 0; i < s->nrevokes; i++) barrier_release(s->revokes[i].barrier);
    free(s->revokes);
    s->revokes = NULL;
    s->nrevokes = s->revokes_cap = 0;
}

static void agent_revoke(struct fl_session *s, uint64_t va, uint64_t len)
{
    if (s->closing || !s->hello_done) return;
    struct fl_msg_agent_revoke m;
    fl_msg_init(&m, FL_MSG_AGENT_REVOKE, ++s->agent_seq);
    m.va = va;
    m.len = len;
    fl_debug("session %llu: revoke [%#llx, +%#llx)", (unsigned long long)s->id,
             (unsigned long long)va, (unsigned long long)len);
    if (fl_session_send(s, &m, sizeof(m), -1) == 0) wait_for_revoke(s, m.hdr.id);
}

/* Eager mapping is only a head start (a touch maps the rest from core's
 * database): an attach that makes thousands of regions visible at once
 * would flood the agent's queue past its bound and end a well-behaved
 * session, so one request maps at most this many windows eagerly. */
#define EAGER_WINDOWS 1024
static unsigned eager_left = EAGER_WINDOWS;

/* Carry [start, start+len) of map rm up through every chain of parents to the
 * address spaces it is visible in. leaf/off: the RAM dataspace and offset
 * backing start (NULL to revoke). */
static void push_up(struct fl_region_map *rm, uint64_t start, uint64_t len,
                    struct fl_dataspace *leaf, uint64_t off, bool write, bool exec, int depth)
{
    if (depth >= MAX_DEPTH || len == 0) return;
    if (rm->address_space_of) {
        if (leaf && eager_left > 0) {
            eager_left--;
            fl_mapping_map_window(rm->address_space_of, start, len, leaf, off, write, exec);
        } else if (!leaf)
            agent_revoke(rm->address_space_of, start, len);
        return;
    }
    if (!rm->ds) return;
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &rm->ds->regions)
    {
        struct fl_region *p = fl_list_entry(pos, struct fl_region, ds_link);
        uint64_t a = start > p->offset ? start : p->offset;
        uint64_t b = start + len < p->offset + p->size ? start + len : p->offset + p->size;
        if (a >= b) continue;
        push_up(p->rm, p->start + (a - p->offset), b - a, leaf, leaf ? off + (a - start) : 0,
                write && p->write, exec && p->exec, depth + 1);
    }
}

/* Map every RAM-backed part of [offset, offset+len) of a managed map, as seen
 * through its parents. */
static void push_down(struct fl_region_map *rm, uint64_t offset, uint64_t len, int depth)
{
    if (depth >= MAX_DEPTH) return;
    for (const struct fl_span *sp = fl_placement_first(&rm->placement); sp;
         sp = fl_placement_next(&rm->placement, sp)) {
        struct fl_region *q = sp->owner;
        if (q->start >= offset + len) break;
        if (q->start + q->size <= offset || !q->ds) continue;
        if (q->ds->memfd >= 0)
            push_up(rm, q->start, q->size, q->ds, q->offset, q->write, q->exec, 0);
        else if (q->ds->rm)
            push_down(q->ds->rm, q->offset, q->size, depth + 1);
    }
}

void fl_mapping_eager_budget(void)
{
    eager_left = EAGER_WINDOWS;
}

void fl_mapping_map_region(struct fl_region *r)
{
    if (!r->ds) return;
    if (r->ds->memfd >= 0)
        push_up(r->rm, r->start, r->size, r->ds, r->offset, r->write, r->exec, 0);
    else if (r->ds->rm)
        push_down(r->ds->rm, r->offset, r->size, 1);
}

void fl_mapping_revoke(struct fl_region_map *rm, uint64_t start, uint64_t size)
{
    push_up(rm, start, size, NULL, 0, false, false, 0);
}

/*
 * The wake is the agent's, after its mapping: core makes no uffd call on a
 * client at all, and the faulter resumes without waiting for core to hear
 * the agent's acknowledgement. Not earlier than the mapping: an early wake
 * makes the thread fault again and re-queue at the tail of its queue.
 */
void fl_mapping_resume(struct fl_session *s, uint64_t va, uint64_t len, uint64_t populate)
{
    if (s->closing || !s->hello_done) return;
    if (s->nwakes >= FL_WAKES_MAX) {
        /* An honest agent acknowledges as it goes; the out queue is smaller. */
        fl_session_close(s, "its agent leaves too many resumes unacknowledged");
        return;
    }
    struct fl_msg_agent_resume m;
    fl_msg_init(&m, FL_MSG_AGENT_RESUME, ++s->agent_seq);
    m.va = va;
    m.len = len;
    m.populate = populate;
    if (fl_session_send(s, &m, sizeof(m), -1) < 0) return;
    if (s->nwakes == s->wakes_cap) {
        size_t n = s->wakes_cap ? s->wakes_cap * 2 : 8;
        struct fl_wake *w = realloc(s->wakes, n * sizeof(*w));
        if (!w) return; /* then a duplicate fault is simply handled twice */
        s->wakes = w;
        s->wakes_cap = n;
    }
    s->wakes[s->nwakes++] = (struct fl_wake){m.hdr.id, va, len, false};
}

static void wake(struct fl_session *s, uint64_t va, uint64_t len)
{
    if (s->closing || !s->hello_done) return;
    struct fl_msg_agent_resume m;
    fl_msg_init(&m, FL_MSG_AGENT_RESUME, ++s->agent_seq);
    m.va = va;
    m.len = len;
    m.populate = 0;
    fl_session_send(s, &m, sizeof(m), -1);
}

static bool refault(struct fl_session *s, uint64_t seq, uint64_t va)
{
    va &= ~(uint64_t)(FL_PAGE_SIZE - 1);
    /* One wake per page and acknowledgement, however many threads (or
     * repeated EXEC_FAULTs) fault there meanwhile. */
    for (size_t i = 0; i < s->nrefaults; i++)
        if (s->refaults[i].seq == seq && s->refaults[i].va == va) return true;
    if (s->nrefaults == s->refaults_cap) {
        size_t n = s->refaults_cap ? s->refaults_cap * 2 : 8;
        struct fl_refault *r = realloc(s->refaults, n * sizeof(*r));
        if (!r) return false;
        s->refaults = r;
        s->refaults_cap = n;
    }
    s->refaults[s->nrefaults++] = (struct fl_refault){seq, va};
    return true;
}

/*
 * A fault that arrives while a resume of its page is on its way. Either the
 * thread faulted before the agent's wake, and the wake lets it through (the
 * fault is stale: its thread may long have moved on, even detached the page);
 * or it faulted after, and still waits. Core cannot tell which, and acting on
 * a stale fault is wrong once the page's state has changed: a SIGBUS to a
 * thread that is not faulting at all (soak bug 7), a spurious reflection. So
 * after the acknowledgement core only wakes the range again: a thread that
 * still waits retries, and its new fault is handled as it is then.
 */
bool fl_mapping_resume_pending(struct fl_session *s, uint64_t va)
{
    for (size_t i = 0; i < s->nwakes; i++)
        if (va - s->wakes[i].va < s->wakes[i].len) return s->wakes[i].again = true;
    return false;
}

bool fl_mapping_wait_credit(struct fl_session *s, uint64_t va)
{
    if (s->closing || s->fd_head < FD_CREDIT) return false;
    /* Woken when the oldest descriptor in flight is acknowledged. */
    return refault(s, s->fd_seqs[0], va);
}

void fl_mapping_agent_ack(struct fl_session *s, const struct fl_msg_agent_ack *ack)
{
    uint64_t seq = ack->hdr.id;
    if (seq == 0 || seq > s->agent_seq) {
        fl_session_close(s, "protocol violation: acknowledgement of an instruction never sent");
        return;
    }
    if (ack->result < 0) /* a peer's value: negated only where it is an errno */
        fl_session_log(s, FL_LOG_WARN,
                       "session %llu (%s): agent could not carry out instruction %llu: %s",
                       (unsigned long long)s->id, s->label, (unsigned long long)seq,
                       ack->result > -4096 ? strerror(-ack->result) : "an invalid error code");
    if (seq > s->acked_seq) s->acked_seq = seq;
    unsigned k = 0;
    while (k < s->fd_head && s->fd_seqs[k] <= seq) k++;
    memmove(s->fd_seqs, s->fd_seqs + k, (s->fd_head - k) * sizeof(s->fd_seqs[0]));
    s->fd_head -= k;
    if (s->fd_head < FD_CREDIT) s->credit_full_ms = 0;
    for (size_t i = 0; i < s->nrevokes;) {
        if (s->revokes[i].seq <= seq) {
            struct fl_barrier *b = s->revokes[i].barrier;
            s->revokes[i] = s->revokes[--s->nrevokes];
            barrier_release(b);
        } else {
            i++;
        }
    }
    /* Faults that came before the agent's wake are in the uffd by now (the
     * agent woke, then acknowledged): read them while their resume still
     * counts as on its way, so that they are taken for the stale faults they
     * may be, not for new ones. */
    bool retires = false;
    for (size_t i = 0; i < s->nwakes && !retires; i++) retires = s->wakes[i].seq <= seq;
    if (retires && s->uffd >= 0) fl_fault_read_uffd(s, SIZE_MAX);
    if (s->closing) return;
    for (size_t i = 0; i < s->nwakes;) {
        if (s->wakes[i].seq <= seq) {
            if (s->wakes[i].again) wake(s, s->wakes[i].va, s->wakes[i].len);
            s->wakes[i] = s->wakes[--s->nwakes];
        } else
            i++;
    }
    for (size_t i = 0; i < s->nrefaults;) {
        if (s->refaults[i].seq <= seq) {
            wake(s, s->refaults[i].va, FL_PAGE_SIZE);
            s->refaults[i] = s->refaults[--s->nrefaults];
        } else {
            i++;
        }
    }
}

void fl_mapping_forget_memfd(struct fl_dataspace *ds)
{
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
        size_t i;
        if (s->closing || !memfd_sent(s, ds->memfd_id, &i)) continue;
        memmove(&s->sent_memfds[i], &s->sent_memfds[i + 1], (s->nsent - i - 1) * sizeof(uint64_t));
        s->nsent--;
        struct fl_msg_agent_forget m;
        fl_msg_init(&m, FL_MSG_AGENT_FORGET, ++s->agent_seq);
        m.memfd_id = ds->memfd_id;
        fl_session_send(s, &m, sizeof(m), -1);
    }
}
