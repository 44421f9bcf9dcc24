/*
 * The agents: core's side of each component's agent thread, the emulated MMU.
 * This file alone owns what core knows of an agent: the sequence of
 * instructions sent to it and acknowledged, the descriptors in flight (its
 * credit), which memfds it holds, and the resumes on their way. The agent
 * executes instructions in order, so a reply sent after an instruction on the
 * same socket is seen by the caller only after the instruction took effect.
 * Its acknowledgements are cumulative and those of mappings and resumes may
 * come late (src/common/protocol.h): where core waits for one, it asks
 * (AGENT_ACK_NOW).
 */
#include "../common/placement.h"
#include "../common/log.h"
#include "agent.h"
#include "dataspace.h"
#include "fault.h"
#include "mapping.h"
#include "revoke.h"
#include "rpc.h"
#include "session.h"
#include "uffd.h"

#include <stdlib.h>
#include <string.h>

/* Descriptors core sends an agent before it acknowledges them. Each one in
 * flight counts against core's user in the kernel (unix_inflight, up to
 * RLIMIT_NOFILE for all of core's peers together), so an agent that does not
 * read must not be able to hold many. */
#define FD_CREDIT 64

/* A resume on its way to the agent, until acknowledged (and, with io_uring
 * reads of the uffd, until what was read before the ack is handled). */
struct wake {
    uint64_t seq, va, len;
    bool again;   /* a fault came meanwhile: wake the range again after the ack */
    bool settles; /* acknowledged; waits for the uffd reads to settle (uffd.c) */
};

/* A page to wake once the agent acknowledged instruction seq. */
struct refault {
    uint64_t seq, va;
};

struct core_agent {
    uint64_t seq;                /* last instruction sent */
    uint64_t acked;              /* last instruction acknowledged */
    uint64_t ack_asked;          /* the last ACK_NOW sent */
    uint64_t fd_seqs[FD_CREDIT]; /* sequence numbers of unacknowledged descriptor sends */
    unsigned fd_head;
    uint64_t credit_full_ms; /* since when fd_seqs is full (0: it is not) */
    struct wake *wakes;      /* resumes not yet acknowledged */
    size_t nwakes, wakes_cap;
    struct refault *refaults; /* faults that came while their resume was on its way */
    size_t nrefaults, refaults_cap;
    uint64_t *sent_memfds; /* ids of memfds already sent (sorted) */
    size_t nsent, sent_cap;
};

struct core_agent *core_agent_new(void)
{
    return calloc(1, sizeof(struct core_agent));
}

void core_agent_free(struct core_agent *a)
{
    if (!a) return;
    free(a->wakes);
    free(a->refaults);
    free(a->sent_memfds);
    free(a);
}

void core_agent_session_gone(struct fl_session *s)
{
    struct core_agent *a = s->agent;
    free(a->wakes);
    free(a->refaults);
    a->wakes = NULL;
    a->refaults = NULL;
    a->nwakes = a->wakes_cap = a->nrefaults = a->refaults_cap = 0;
}

/* Every instruction goes out here, numbered. Returns its number, or 0 when
 * the session is (being) closed. */
static uint64_t send_instruction(struct fl_session *s, void *msg, size_t len, int fd)
{
    struct fl_msg_hdr *h = msg;
    h->id = ++s->agent->seq;
    return core_session_send(s, msg, len, fd) == 0 ? h->id : 0;
}

#define INSTRUCTION(m, type) fl_msg_init(&(m), type, 0)

static bool memfd_sent(struct core_agent *a, uint64_t id, size_t *pos)
{
    size_t lo = 0, hi = a->nsent;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a->sent_memfds[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return lo < a->nsent && a->sent_memfds[lo] == id;
}

static int remember_memfd(struct core_agent *a, uint64_t id, size_t pos)
{
    if (a->nsent == a->sent_cap) {
        size_t n = a->sent_cap ? a->sent_cap * 2 : 16;
        uint64_t *p = realloc(a->sent_memfds, n * sizeof(*p));
        if (!p) return -1;
        a->sent_memfds = p;
        a->sent_cap = n;
    }
    memmove(&a->sent_memfds[pos + 1], &a->sent_memfds[pos], (a->nsent - pos) * sizeof(uint64_t));
    a->sent_memfds[pos] = id;
    a->nsent++;
    return 0;
}

uint64_t core_agent_map(struct fl_session *s, uint64_t va, uint64_t len, struct fl_dataspace *ds,
                        uint64_t off, bool write, bool exec)
{
    if (s->closing || !s->hello_done) return 0; /* a child yet to come is mapped at HELLO */
    if (ds->moving) return 0;                   /* mapped again once it moved */
    struct core_agent *a = s->agent;
    struct fl_msg_agent_map m;
    INSTRUCTION(m, FL_MSG_AGENT_MAP);
    m.va = va;
    m.len = len;
    m.memfd_id = ds->memfd_id;
    m.offset = off;
    m.flags = (write ? FL_MAP_WRITE : 0) | (exec ? FL_MAP_EXEC : 0);
    int fd = -1;
    size_t pos;
    if (!memfd_sent(a, ds->memfd_id, &pos)) {
        /* Each memfd goes to a session once; afterwards it is named by id. The
         * agent must acknowledge before the credit of descriptors runs out. */
        if (a->fd_head == FD_CREDIT) {
            /* Not mapped now; its faults wait for the agent's acknowledgements
             * (core_agent_wait_credit), and an agent that gives none for a
             * revocation deadline loses its session (core_agent_check_credit). */
            if (!a->credit_full_ms) a->credit_full_ms = core_now_ms();
            return 0;
        }
        if (remember_memfd(a, ds->memfd_id, pos) < 0) {
            core_session_close(s, "out of memory");
            return 0;
        }
        a->fd_seqs[a->fd_head++] = a->seq + 1; /* the number send_instruction gives it */
        m.flags |= FL_MAP_FD_ATTACHED;
        fd = ds->memfd;
    }
    fl_debug("session %llu: map [%#llx, +%#llx) memfd %llu@%#llx %s%s", (unsigned long long)s->id,
             (unsigned long long)va, (unsigned long long)len, (unsigned long long)ds->memfd_id,
             (unsigned long long)off, write ? "w" : "r", exec ? "x" : "");
    return send_instruction(s, &m, sizeof(m), fd);
}

bool core_agent_fd_credit(struct fl_session *s)
{
    if (s->closing || !s->hello_done) return false;
    struct core_agent *a = s->agent;
    if (a->fd_head < FD_CREDIT) return true;
    if (!a->credit_full_ms) a->credit_full_ms = core_now_ms();
    return false;
}

uint64_t core_agent_send_fd(struct fl_session *s, void *msg, size_t len, int fd)
{
    if (!core_agent_fd_credit(s)) return 0;
    struct core_agent *a = s->agent;
    a->fd_seqs[a->fd_head++] = a->seq + 1; /* the number send_instruction gives it */
    return send_instruction(s, msg, len, fd);
}

uint64_t core_agent_revoke(struct fl_session *s, uint64_t va, uint64_t len)
{
    if (s->closing || !s->hello_done) return 0;
    struct fl_msg_agent_revoke m;
    INSTRUCTION(m, FL_MSG_AGENT_REVOKE);
    m.va = va;
    m.len = len;
    fl_debug("session %llu: revoke [%#llx, +%#llx)", (unsigned long long)s->id,
             (unsigned long long)va, (unsigned long long)len);
    return send_instruction(s, &m, sizeof(m), -1);
}

void core_agent_sigbus(struct fl_session *s, uint32_t tid, uint64_t va)
{
    if (!s || s->closing) return;
    struct fl_msg_agent_sigbus m;
    INSTRUCTION(m, FL_MSG_AGENT_SIGBUS);
    m.tid = tid;
    m.addr = va;
    send_instruction(s, &m, sizeof(m), -1);
}

int core_agent_send_fault_page(struct fl_session *s, int memfd)
{
    struct fl_msg_agent_fault_page m;
    INSTRUCTION(m, FL_MSG_AGENT_FAULT_PAGE);
    return send_instruction(s, &m, sizeof(m), memfd) ? 0 : -1;
}

void core_agent_forget_memfd(struct fl_dataspace *ds)
{
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &fl_core.sessions)
    {
        struct fl_session *s = fl_list_entry(pos, struct fl_session, link);
        struct core_agent *a = s->agent;
        size_t i;
        if (s->closing || !memfd_sent(a, ds->memfd_id, &i)) continue;
        memmove(&a->sent_memfds[i], &a->sent_memfds[i + 1], (a->nsent - i - 1) * sizeof(uint64_t));
        a->nsent--;
        struct fl_msg_agent_forget m;
        INSTRUCTION(m, FL_MSG_AGENT_FORGET);
        m.memfd_id = ds->memfd_id;
        send_instruction(s, &m, sizeof(m), -1);
    }
}

/*
 * The wake is the agent's, after its mapping: core makes no uffd call on a
 * client at all, and the faulter resumes without waiting for core to hear
 * the agent's acknowledgement. Not earlier than the mapping: an early wake
 * makes the thread fault again and re-queue at the tail of its queue.
 */
void core_agent_resume(struct fl_session *s, uint64_t va, uint64_t len, uint64_t populate)
{
    if (s->closing || !s->hello_done) return;
    struct core_agent *a = s->agent;
    if (a->nwakes >= FL_WAKES_MAX) {
        /* An honest agent acknowledges as it goes; the out queue is smaller. */
        core_session_close(s, "its agent leaves too many resumes unacknowledged");
        return;
    }
    struct fl_msg_agent_resume m;
    INSTRUCTION(m, FL_MSG_AGENT_RESUME);
    m.va = va;
    m.len = len;
    m.populate = populate;
    uint64_t seq = send_instruction(s, &m, sizeof(m), -1);
    if (!seq) return;
    if (a->nwakes == a->wakes_cap) {
        size_t n = a->wakes_cap ? a->wakes_cap * 2 : 8;
        struct wake *w = realloc(a->wakes, n * sizeof(*w));
        if (!w) return; /* then a duplicate fault is simply handled twice */
        a->wakes = w;
        a->wakes_cap = n;
    }
    a->wakes[a->nwakes++] = (struct wake){seq, va, len, false, false};
}

static void wake(struct fl_session *s, uint64_t va, uint64_t len)
{
    if (s->closing || !s->hello_done) return;
    struct fl_msg_agent_resume m;
    INSTRUCTION(m, FL_MSG_AGENT_RESUME);
    m.va = va;
    m.len = len;
    m.populate = 0;
    send_instruction(s, &m, sizeof(m), -1);
}

static bool refault(struct core_agent *a, uint64_t seq, uint64_t va)
{
    va &= ~(uint64_t)(FL_PAGE_SIZE - 1);
    /* One wake per page and acknowledgement, however many threads (or
     * repeated EXEC_FAULTs) fault there meanwhile. */
    for (size_t i = 0; i < a->nrefaults; i++)
        if (a->refaults[i].seq == seq && a->refaults[i].va == va) return true;
    if (a->nrefaults == a->refaults_cap) {
        size_t n = a->refaults_cap ? a->refaults_cap * 2 : 8;
        struct refault *r = realloc(a->refaults, n * sizeof(*r));
        if (!r) return false;
        a->refaults = r;
        a->refaults_cap = n;
    }
    a->refaults[a->nrefaults++] = (struct refault){seq, va};
    return true;
}

/*
 * A fault that arrives while a resume of its page is on its way. Either the
 * thread faulted before the agent's wake, and the wake lets it through (the
 * fault is stale: its thread may long have moved on, even detached the page);
 * or it faulted after, and still waits. Core cannot tell which, and acting on
 * a stale fault is wrong once the page's state has changed: a SIGBUS to a
 * thread that is not faulting at all (doc/soak.md, bug 7), a spurious reflection. So
 * after the acknowledgement core only wakes the range again: a thread that
 * still waits retries, and its new fault is handled as it is then.
 */
bool core_agent_resume_pending(struct fl_session *s, uint64_t va, bool from_uffd)
{
    struct core_agent *a = s->agent;
    for (size_t i = 0; i < a->nwakes; i++) {
        struct wake *w = &a->wakes[i];
        if (va - w->va >= w->len || (!from_uffd && w->settles)) continue;
        w->again = true;
        /* The agent may hold a resume's acknowledgement back (protocol.h):
         * now core waits for it. */
        if (!w->settles && w->seq > a->ack_asked && !s->closing && s->hello_done) {
            struct fl_msg_agent_ack_now m;
            INSTRUCTION(m, FL_MSG_AGENT_ACK_NOW);
            uint64_t seq = send_instruction(s, &m, sizeof(m), -1);
            if (seq) a->ack_asked = seq;
        }
        return true;
    }
    return false;
}

bool core_agent_wait_credit(struct fl_session *s, uint64_t va)
{
    struct core_agent *a = s->agent;
    if (s->closing || a->fd_head < FD_CREDIT) return false;
    /* Woken when the oldest descriptor in flight is acknowledged. */
    return refault(a, a->fd_seqs[0], va);
}

uint64_t core_agent_check_credit(struct fl_session *s, uint64_t now)
{
    struct core_agent *a = s->agent;
    if (!a->credit_full_ms) return UINT64_MAX;
    uint64_t due = a->credit_full_ms + fl_core.cfg.revoke_deadline_ms;
    if (due > now) return due;
    fl_error("session %llu (%s): too many descriptors in flight: its agent has acknowledged "
             "none of %d for %u ms; closing it",
             (unsigned long long)s->id, s->label, FD_CREDIT, fl_core.cfg.revoke_deadline_ms);
    core_session_close(s, "too many descriptors in flight: its agent does not acknowledge");
    return now;
}

static void agent_ack(struct fl_session *s, const struct fl_msg_agent_ack *ack)
{
    struct core_agent *a = s->agent;
    uint64_t seq = ack->hdr.id;
    if (seq == 0 || seq > a->seq) {
        core_session_close(s, "protocol violation: acknowledgement of an instruction never sent");
        return;
    }
    if (ack->result < 0) /* a peer's value: negated only where it is an errno */
        core_session_log(s, FL_LOG_WARN,
                         "session %llu (%s): agent could not carry out instruction %llu: %s",
                         (unsigned long long)s->id, s->label, (unsigned long long)seq,
                         ack->result > -4096 ? strerror(-ack->result) : "an invalid error code");
    if (seq > a->acked) a->acked = seq;
    unsigned k = 0;
    while (k < a->fd_head && a->fd_seqs[k] <= seq) k++;
    memmove(a->fd_seqs, a->fd_seqs + k, (a->fd_head - k) * sizeof(a->fd_seqs[0]));
    a->fd_head -= k;
    if (a->fd_head < FD_CREDIT) a->credit_full_ms = 0;
    core_revoke_acked(s, seq);
    /* A retired resume must leave no stale fault behind: a message read
     * before the agent's wake whose thread that wake already sent on. The
     * kernel's wake takes the messages of the threads it wakes out of the
     * uffd unless they were read already, and with preadv2 reads (fault.c)
     * core handles what it reads at once, while the resume still counts as
     * on its way (it only marks it again). So nothing stale can be read
     * after this point, and the ack costs no read of the uffd.
     * With io_uring reads (uffd.c) a stale message is one that a read took
     * before the wake and whose completion core has not handled yet: in the
     * ring, or read by the one read of this uffd still in flight. A read
     * submitted after this point cannot return one. So an acknowledged resume
     * stays (settles) until the reads have settled: at once if no completion
     * waits in the ring (core_uffd_unsettled), else after this uffd's next
     * completion or once the ring has none left (core_agent_uffd_settled).
     * Meanwhile its range's uffd faults only mark it again, as before the
     * ack; EXEC faults pass (they come on the socket, after the ack). */
    bool retires = false;
    for (size_t i = 0; i < a->nwakes && !retires; i++)
        retires = a->wakes[i].seq <= seq && !a->wakes[i].settles;
    bool settles = retires && s->uffd >= 0 && core_uffd_unsettled(s);
    for (size_t i = 0; i < a->nwakes;) {
        if (a->wakes[i].seq <= seq && !a->wakes[i].settles) {
            if (a->wakes[i].again) wake(s, a->wakes[i].va, a->wakes[i].len);
            a->wakes[i].again = false;
            a->wakes[i].settles = settles;
            if (settles) {
                i++;
                continue;
            }
            a->wakes[i] = a->wakes[--a->nwakes];
        } else
            i++;
    }
    for (size_t i = 0; i < a->nrefaults;) {
        if (a->refaults[i].seq <= seq) {
            wake(s, a->refaults[i].va, FL_PAGE_SIZE);
            a->refaults[i] = a->refaults[--a->nrefaults];
        } else {
            i++;
        }
    }
}

void core_agent_uffd_settled(struct fl_session *s)
{
    struct core_agent *a = s->agent;
    if (s->closing) return;
    for (size_t i = 0; i < a->nwakes;) {
        if (a->wakes[i].settles) {
            /* Marked by a fault read before the ack: one wake lets a thread
             * that still waits fault anew. */
            if (a->wakes[i].again) wake(s, a->wakes[i].va, a->wakes[i].len);
            a->wakes[i] = a->wakes[--a->nwakes];
        } else
            i++;
    }
}

int core_agent_rpc_ack(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    agent_ack(s, msg);
    return CORE_RPC_DEFERRED; /* not answered */
}
