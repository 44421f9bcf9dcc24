/*
 * Revocation barriers: a detach, free or destroy replies only once every
 * agent it sent a revocation to has acknowledged it, and memfds it freed are
 * punched only then (a client reading meanwhile must not see zeros). Core's
 * loop goes on meanwhile; an agent that misses the deadline has its component
 * terminated. This file alone owns the barriers and each session's
 * revocation waits.
 */
#include "../common/log.h"
#include "../common/probe.h"
#include "agent.h"
#include "dataspace.h"
#include "mapping.h"
#include "object.h"
#include "revoke.h"
#include "session.h"
#include "worker.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A reply that waits until agents acknowledged their revocations. */
struct barrier {
    uint64_t session_id, req_id;
    unsigned pending;
    struct fl_dataspace *move; /* --strict: then move it, then reply */
    struct fl_list punches;    /* fl_job: freed memfds, punched once nobody maps them */
};

struct revoke_wait {
    uint64_t seq; /* the agent's instruction */
    struct barrier *barrier;
    uint64_t deadline_ms; /* CLOCK_MONOTONIC */
};

/* A session's revocations on their way (allocated at its first). */
struct core_revoke_waits {
    struct revoke_wait *w;
    size_t n, cap;
};

static struct barrier *open_barrier;

static size_t nwaits(const struct fl_session *s)
{
    return s->revoke_waits ? s->revoke_waits->n : 0;
}

void core_revoke_begin(struct fl_session *s, uint64_t req_id)
{
    open_barrier = calloc(1, sizeof(*open_barrier));
    if (!open_barrier) return; /* then the reply is not held back: detach still revokes */
    open_barrier->session_id = s ? s->id : 0; /* 0: nobody to reply to */
    open_barrier->req_id = req_id;
    fl_list_init(&open_barrier->punches);
    FL_PROBE2(revoke_begin, open_barrier->session_id, req_id);
}

bool core_revoke_punch(struct fl_job *job)
{
    if (!open_barrier) return false;
    fl_list_add_tail(&open_barrier->punches, &job->link);
    return true;
}

void core_revoke_move(struct fl_dataspace *ds)
{
    if (!open_barrier || open_barrier->move) return;
    core_object_ref(&ds->obj);
    open_barrier->move = ds;
}

static void submit_punches(struct barrier *b)
{
    while (!fl_list_empty(&b->punches)) {
        struct fl_list *pos = b->punches.next;
        fl_list_del(pos);
        core_worker_submit(fl_list_entry(pos, struct fl_job, link));
    }
}

void core_revoke_wait(struct fl_session *s, uint64_t seq)
{
    if (!open_barrier || !seq) return;
    struct core_revoke_waits *rw = s->revoke_waits;
    if (!rw && !(rw = s->revoke_waits = calloc(1, sizeof(*rw)))) return;
    if (rw->n == rw->cap) {
        size_t n = rw->cap ? rw->cap * 2 : 8;
        struct revoke_wait *w = realloc(rw->w, n * sizeof(*w));
        if (!w) return;
        rw->w = w;
        rw->cap = n;
    }
    rw->w[rw->n++] =
        (struct revoke_wait){seq, open_barrier, core_now_ms() + fl_core.cfg.revoke_deadline_ms};
    open_barrier->pending++;
}

/* Revocations other requests sent may cover this request's range too (a
 * detach inside a nested map whose own detach waits for a client): wait for
 * every one still on its way, not only for this request's own. */
static void wait_for_others(struct barrier *b)
{
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
        uint64_t last = 0;
        for (size_t i = 0; !s->closing && i < nwaits(s); i++) {
            struct revoke_wait *w = &s->revoke_waits->w[i];
            if (w->barrier != b && w->seq > last) last = w->seq;
        }
        if (last) core_revoke_wait(s, last);
    }
}

/* Every agent revoked: reply, or first move the dataspace (which replies). */
static void barrier_done(struct barrier *b)
{
    FL_PROBE2(revoke_end, b->session_id, b->req_id);
    submit_punches(b);
    if (b->move) {
        core_dataspace_move(b->move, b->session_id, b->req_id);
        core_object_unref(&b->move->obj);
    } else {
        struct fl_session *s = core_session_by_id(b->session_id);
        if (s) core_session_reply(s, b->req_id, 0, NULL, 0);
    }
    free(b);
}

bool core_revoke_end(void)
{
    struct barrier *b = open_barrier;
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

static void barrier_release(struct barrier *b)
{
    if (--b->pending == 0) barrier_done(b);
}

void core_revoke_acked(struct fl_session *s, uint64_t seq)
{
    struct core_revoke_waits *rw = s->revoke_waits;
    for (size_t i = 0; rw && i < rw->n;) {
        if (rw->w[i].seq <= seq) {
            struct barrier *b = rw->w[i].barrier;
            rw->w[i] = rw->w[--rw->n];
            barrier_release(b);
        } else {
            i++;
        }
    }
}

int core_revoke_check_deadlines(void)
{
    uint64_t now = core_now_ms(), next = UINT64_MAX;
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
        if (s->closing) continue;
        uint64_t due = core_agent_check_credit(s, now);
        if (due < next) next = due;
        if (s->closing || nwaits(s) == 0) continue;
        uint64_t oldest = UINT64_MAX;
        for (size_t i = 0; i < nwaits(s); i++)
            if (s->revoke_waits->w[i].deadline_ms < oldest)
                oldest = s->revoke_waits->w[i].deadline_ms;
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
        core_session_close(s, "missed the revocation deadline");
        next = now; /* its teardown is due: do not sleep before it */
    }
    return next == UINT64_MAX ? -1 : (int)(next - now);
}

void core_revoke_session_gone(struct fl_session *s)
{
    /* Its mappings die with it: nothing to wait for any more. */
    struct core_revoke_waits *rw = s->revoke_waits;
    if (!rw) return;
    s->revoke_waits = NULL;
    for (size_t i = 0; i < rw->n; i++) barrier_release(rw->w[i].barrier);
    free(rw->w);
    free(rw);
}
