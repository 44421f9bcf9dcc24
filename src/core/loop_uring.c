/*
 * The io_uring backend of the event loop: one poll per watch, armed again
 * after each completion. Not multishot: a multishot poll reports wake-ups,
 * not readiness, and callers leave data behind on purpose (a session's
 * messages are read 32 at a time so that one chatty peer cannot starve the
 * others) -- with multishot the rest waited for the peer's next message,
 * which may never come (a revocation's acknowledgement stranded that way
 * let a detach hang). A re-armed poll sees what is still there, like epoll.
 * A watch can have more than one poll outstanding for a moment (modify is
 * remove + add), so each keeps a count and is released only when its last
 * poll completed.
 */
#include "cqe_batch.h"
#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <liburing.h>

static struct io_uring ring;
static bool ring_up;

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    return sqe;
}

static uint32_t to_poll(uint32_t ev)
{
    return (ev & FL_EV_IN ? POLLIN : 0) | (ev & FL_EV_OUT ? POLLOUT : 0);
}

static int ur_init(void)
{
    struct io_uring_params p = {0};
    int r = io_uring_queue_init_params(256, &ring, &p);
    if (r < 0) return r;
    if (!(p.features & IORING_FEAT_NODROP)) {
        io_uring_queue_exit(&ring);
        return -EOPNOTSUPP;
    }
    ring_up = true;
    return 0;
}

static int arm(struct fl_watch *w)
{
    struct io_uring_sqe *sqe = get_sqe();
    if (!sqe) return -EBUSY;
    io_uring_prep_poll_add(sqe, w->fd, to_poll(w->events));
    io_uring_sqe_set_data(sqe, w);
    w->polls++; /* outstanding polls */
    return 0;
}

static void disarm(struct fl_watch *w)
{
    struct io_uring_sqe *sqe = get_sqe();
    if (!sqe) return;
    io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)w);
    io_uring_sqe_set_data(sqe, NULL);
}

static int ur_add(struct fl_watch *w)
{
    return arm(w);
}

static int ur_modify(struct fl_watch *w)
{
    disarm(w);
    return arm(w);
}

static void ur_remove(struct fl_watch *w)
{
    disarm(w);
    io_uring_submit(&ring);
}

static int ur_wait(int timeout_ms)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                   .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    int r = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
    if (r < 0 && r != -ETIME && r != -EINTR) return r;
    struct core_cqe batch[CORE_CQE_BATCH];
    unsigned n = core_cqe_batch(&ring, batch);
    for (unsigned i = 0; i < n; i++) {
        struct fl_watch *w = batch[i].data;
        if (!w) continue; /* a poll-remove's own completion */
        if (batch[i].res > 0) {
            uint32_t e = (uint32_t)batch[i].res, out = 0;
            if (e & POLLIN) out |= FL_EV_IN;
            if (e & POLLOUT) out |= FL_EV_OUT;
            if (e & POLLERR) out |= FL_EV_ERR;
            if (e & (POLLHUP | POLLRDHUP)) out |= FL_EV_HUP;
            core_loop_dispatch(w, out);
        }
        if (!(batch[i].flags & IORING_CQE_F_MORE)) {
            /* This poll is over: it fired, or it was cancelled. */
            w->polls--;
            if (w->dead) {
                if (w->polls == 0) core_loop_release(w);
            } else if (w->polls == 0) {
                arm(w);
            }
        }
    }
    /* The polls armed again go in with the next wait's submission: one
     * io_uring_enter a round, not two. */
    return (int)n;
}

static void ur_fini(void)
{
    if (ring_up) io_uring_queue_exit(&ring);
    ring_up = false;
}

const struct fl_loop_backend fl_backend_uring = {
    .name = "io_uring",
    .init = ur_init,
    .add = ur_add,
    .modify = ur_modify,
    .remove = ur_remove,
    .wait = ur_wait,
    .fini = ur_fini,
};
