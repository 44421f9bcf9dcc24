/*
 * How core reads the components' userfaultfds. A component shares its uffd's
 * file description with core and can clear O_NONBLOCK on it at any time, so
 * core never makes a read of it that could wait. There are two ways:
 *
 *  - preadv2(RWF_NOWAIT), where the kernel's uffd reads honour it (6.18
 *    here): the loop polls each uffd and fault.c reads it when it is ready
 *    (core_fault_uffd_ready); a uffd its client made blocking reports POLLERR,
 *    which ends the session.
 *  - io_uring reads, where they do not (Debian 12's 6.1), or with
 *    --uffd-read uring: one IORING_OP_READ per session in flight at a time,
 *    on a ring of this file's own whose eventfd the loop watches (with either
 *    backend). A read of a uffd that its client made blocking goes to an
 *    io-wq worker and waits there, in the kernel, not in core. A completion
 *    is handled like a preadv2's result (fault.c), and the next read is
 *    submitted. A client that cleared O_NONBLOCK is found at its next
 *    completion and loses its session, as with POLLERR.
 *
 * Where io_uring runs a read matters. A uffd with ->read_iter (kernels that
 * honour RWF_NOWAIT) is read in core's thread with IOCB_NOWAIT, which never
 * waits; if nothing is there, the kernel arms a poll of its own and tries
 * again when the uffd is readable. 6.1's uffd has only ->read, which io_uring
 * calls in core's thread after checking O_NONBLOCK, and the read checks it
 * again: a client that clears it in between, and takes the message away
 * meanwhile, makes that call wait. So the ring is set up with DEFER_TASKRUN
 * where the kernel has it (6.1 does): the kernel's retries then run only
 * inside core's own io_uring_enter calls on this ring, which the signal
 * watchdog watches (core_signal_watch_begin) and interrupts after 5-10 ms;
 * the read completes with EINTR (as it may for harmless reasons: a signal
 * pending where it runs) and is submitted again, and the client is caught
 * with O_NONBLOCK cleared at one of its completions. (Registering the uffd as
 * a fixed file while O_NONBLOCK is off would make 6.1 read it only in io-wq,
 * but the ring's reference then goes away when the kernel pleases, possibly
 * last and in core's thread, and the final close takes the client's mmap
 * lock; a request's own reference goes with its completion.)
 *
 * A session's end cancels its read in flight (IORING_OP_ASYNC_CANCEL); the
 * reader, its buffer and the uffd stay until that read's completion comes
 * (io_uring's reference to the file goes with it), and the uffd's final
 * close then goes to a worker (it takes the client's mmap lock).
 */
#include "../common/log.h"
#include "../common/os.h"
#include "agent.h"
#include "fault.h"
#include "loop.h"
#include "session.h"
#include "signal_context.h"
#include "uffd.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#ifdef FL_HAVE_URING
#include "cqe_batch.h"
#endif
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static enum core_uffd_read want = CORE_UFFD_READ_AUTO;
/* The way chosen: reads through the ring, or preadv2 (also the default where
 * core_uffd_choose never ran, as in the fuzzers). */
static bool uring;
static char way[200] = "preadv2(RWF_NOWAIT)";

void core_uffd_want(enum core_uffd_read w)
{
    want = w;
}

bool core_uffd_needs_uring(bool nowait_ok)
{
    return want == CORE_UFFD_READ_URING || (want == CORE_UFFD_READ_AUTO && !nowait_ok);
}

bool core_uffd_choose(bool nowait_ok, bool uring_ok, char *how, size_t len)
{
    bool ok = true;
    uring = false;
    if (want == CORE_UFFD_READ_URING) {
        uring = ok = uring_ok;
        snprintf(how, len, "%s",
                 ok ? "io_uring reads (--uffd-read uring)"
                    : "--uffd-read uring, but io_uring reads of a uffd do not work here");
    } else if (nowait_ok) {
        snprintf(how, len, "preadv2(RWF_NOWAIT)");
    } else if (want == CORE_UFFD_READ_NOWAIT) {
        ok = false;
        snprintf(how, len,
                 "--uffd-read nowait, but this kernel cannot read a uffd with "
                 "RWF_NOWAIT");
    } else {
        uring = ok = uring_ok;
        snprintf(how, len, "%s",
                 ok ? "io_uring reads (this kernel cannot read a uffd without blocking)"
                    : "neither preadv2(RWF_NOWAIT) nor io_uring reads work here: core "
                      "cannot read a uffd without blocking");
    }
    snprintf(way, sizeof(way), "%s", how);
    return ok;
}

#ifdef FL_HAVE_URING

/* One session's reads. */
struct core_uffd_reader {
    struct fl_session *s; /* NULL once its session is torn down */
    int fd;
    bool in_flight; /* submitted; its completion not handled yet */
    bool cancelled;
    bool settle; /* in settle_list: agent.c waits for the reads to settle */
    struct fl_list link, settle_link;
    struct uffd_msg buf[16];
};

static struct io_uring ring;
static bool ring_up, defer_taskrun;
static int efd = -1;
static struct fl_watch *efd_watch;
static struct fl_list readers = FL_LIST_INIT(readers);
static struct fl_list settle_list = FL_LIST_INIT(settle_list);
static bool to_submit;

/* A ring whose retries run only in io_uring_enter (DEFER_TASKRUN), where the
 * kernel has that; else the plainest one. */
static int ring_init(struct io_uring *r, unsigned *flags)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        0,
    };
    int e = -EINVAL;
    for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
        struct io_uring_params p = {.flags = tries[i] | IORING_SETUP_CQSIZE, .cq_entries = 4096};
        e = io_uring_queue_init_params(256, r, &p);
        if (e == 0 && !(p.features & IORING_FEAT_NODROP)) {
            io_uring_queue_exit(r);
            return -EOPNOTSUPP;
        }
        if (e == 0) {
            *flags = tries[i];
            return 0;
        }
        if (e != -EINVAL) return e;
    }
    return e;
}

/* io_uring_enter on the ring, watched: see the top of this file. */
static int enter_submit(void)
{
    core_signal_watch_begin();
    int r = io_uring_submit(&ring);
    core_signal_watch_end();
    return r;
}

static void enter_get_events(void)
{
    if (!defer_taskrun) return; /* completions are posted without it */
    core_signal_watch_begin();
    io_uring_get_events(&ring);
    core_signal_watch_end();
}

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        enter_submit();
        sqe = io_uring_get_sqe(&ring);
    }
    if (sqe) to_submit = true;
    return sqe;
}

static void submit(void)
{
    /* Interrupted (EINTR: a read waited, and its completion comes), the
     * SQEs stay in the ring for the next call. */
    if (to_submit) to_submit = enter_submit() < 0;
}

static int submit_read(struct core_uffd_reader *r)
{
    struct io_uring_sqe *sqe = get_sqe();
    if (!sqe) return -EBUSY;
    io_uring_prep_read(sqe, r->fd, r->buf, sizeof(r->buf), 0);
    io_uring_sqe_set_data(sqe, r);
    r->in_flight = true;
    return 0;
}

static void cancel_read(struct core_uffd_reader *r)
{
    if (!r->in_flight || r->cancelled) return;
    struct io_uring_sqe *sqe = get_sqe();
    if (!sqe) return; /* the ring's end cancels it */
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)r, 0);
    io_uring_sqe_set_data(sqe, NULL);
    r->cancelled = true;
}

static void reader_free(struct core_uffd_reader *r)
{
    if (r->settle) fl_list_del(&r->settle_link);
    fl_list_del(&r->link);
    core_worker_close(r->fd); /* the final close takes the client's mmap lock */
    free(r);
}

/* Nothing read from any uffd waits to be handled: no completion in the ring,
 * none in the kernel's deferred work, none overflowed. */
static bool settled(void)
{
    unsigned f = IO_URING_READ_ONCE(*ring.sq.kflags);
    return io_uring_cq_ready(&ring) == 0 && !(f & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN));
}

static void settle_done(struct core_uffd_reader *r)
{
    if (!r->settle) return;
    r->settle = false;
    fl_list_del(&r->settle_link);
    if (r->s) core_agent_uffd_settled(r->s);
}

static void completed(struct core_uffd_reader *r, int res)
{
    r->in_flight = false;
    struct fl_session *s = r->s;
    if (!s) { /* its session was torn down meanwhile */
        reader_free(r);
        return;
    }
    if (s->closing) return; /* core_uffd_release frees it */
    /* EAGAIN: a thief of the client's took the message; EINTR: a signal was
     * pending where the read ran (io_uring's own task work, the watchdog). */
    if (res >= 0) {
        core_fault_uffd_msgs(s, r->buf, (size_t)res);
    } else if (res == -EINVAL) {
        core_session_close(s, "protocol violation: its userfaultfd reports an error (a read "
                              "fails: EINVAL)");
    } else if (res != -EAGAIN && res != -EINTR && res != -ECANCELED) {
        char why[96];
        snprintf(why, sizeof(why), "reading its userfaultfd failed (%s)", strerror(-res));
        core_session_close(s, why);
    }
    /* A blocking uffd reports POLLERR to the poll of the other way. */
    int fl = s->closing ? 0 : fcntl(r->fd, F_GETFL);
    if (!s->closing && fl >= 0 && !(fl & O_NONBLOCK))
        core_session_close(s, "protocol violation: its userfaultfd was made blocking "
                              "(O_NONBLOCK cleared)");
    if (s->closing) return;
    /* What this read returned is handled: resumes acknowledged while it was
     * in flight retire (agent.c). */
    settle_done(r);
    if (submit_read(r) < 0) core_session_close(s, "cannot read its userfaultfd (ring full)");
}

/* Handle every completion there is, then submit the next reads. */
static void drain(void)
{
    enter_get_events();
    for (;;) {
        struct core_cqe batch[CORE_CQE_BATCH];
        unsigned n = core_cqe_batch(&ring, batch);
        for (unsigned i = 0; i < n; i++)
            if (batch[i].data) completed(batch[i].data, batch[i].res); /* (NULL: a cancel's) */
        if (n) continue;
        if (!(IO_URING_READ_ONCE(*ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW)) break;
        io_uring_get_events(&ring); /* flushes what overflowed */
    }
    /* Before the next reads go out, which may complete at once: whoever waits
     * for the reads to settle is told now that none holds a message. */
    while (!fl_list_empty(&settle_list) && settled())
        settle_done(fl_list_entry(settle_list.next, struct core_uffd_reader, settle_link));
    submit();
}

static void on_ring(void *arg, uint32_t events)
{
    (void)arg, (void)events;
    uint64_t v;
    if (read(efd, &v, sizeof(v)) < 0) {
        /* EAGAIN: another round's wake-up; nothing is lost */
    }
    drain();
}

bool core_uffd_unsettled(struct fl_session *s)
{
    struct core_uffd_reader *r = s->uffd_reader;
    if (!uring || !r || s->closing) return false;
    if (settled()) return false;
    fl_debug("session %llu: an acknowledgement waits for its uffd reads to settle",
             (unsigned long long)s->id);
    if (!r->settle) {
        r->settle = true;
        fl_list_add_tail(&settle_list, &r->settle_link);
    }
    return true;
}

int core_uffd_init(void)
{
    if (!uring) {
        fl_info("userfaultfd reads: %s", way);
        return 0;
    }
    unsigned ring_flags = 0;
    int r = ring_init(&ring, &ring_flags);
    if (r < 0) {
        fl_error("userfaultfd reads: cannot set up io_uring: %s", strerror(-r));
        return r;
    }
    ring_up = true;
    defer_taskrun = ring_flags & IORING_SETUP_DEFER_TASKRUN;
    efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0 || (r = io_uring_register_eventfd(&ring, efd)) < 0 ||
        !(efd_watch = core_loop_watch(efd, FL_EV_IN, on_ring, NULL))) {
        r = efd < 0 ? -errno : r < 0 ? r : -ENOMEM;
        fl_error("userfaultfd reads: cannot watch the io_uring's completions: %s", strerror(-r));
        core_uffd_fini();
        return r;
    }
    fl_info("userfaultfd reads: %s; %s", way,
            defer_taskrun ? "the kernel's retries run in core's watched calls (DEFER_TASKRUN)"
                          : "no DEFER_TASKRUN: the kernel's retries run wherever core enters it");
    return 0;
}

void core_uffd_fini(void)
{
    if (!ring_up) return;
    /* Every session is torn down: what is left are reads in flight of uffds
     * whose sessions are gone. Cancel them and wait for their completions
     * (the kernel may write into their buffers until then). */
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &readers)
        cancel_read(fl_list_entry(pos, struct core_uffd_reader, link));
    submit();
    uint64_t end = core_now_ms() + 2000;
    while (!fl_list_empty(&readers) && core_now_ms() < end) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {0, 50 * 1000000L};
        io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
        drain();
    }
    size_t left = 0;
    fl_list_for_each_safe(pos, tmp, &readers) left++;
    if (left) /* their buffers stay: the kernel may still write there */
        fl_warn("userfaultfd reads: %zu reads did not end in 2 s", left);
    if (efd_watch) core_loop_unwatch(efd_watch);
    efd_watch = NULL;
    io_uring_queue_exit(&ring);
    ring_up = false;
    if (efd >= 0) close(efd);
    efd = -1;
}

int core_uffd_start(struct fl_session *s, int fd)
{
    s->uffd = fd;
    if (!uring) {
        s->uffd_watch = core_loop_watch(fd, FL_EV_IN, core_fault_uffd_ready, s);
        return s->uffd_watch ? 0 : -ENOMEM;
    }
    struct core_uffd_reader *r = calloc(1, sizeof(*r));
    if (!r) return -ENOMEM;
    r->s = s;
    r->fd = fd;
    fl_list_add_tail(&readers, &r->link);
    s->uffd_reader = r;
    int e = submit_read(r);
    submit();
    return e;
}

void core_uffd_stop(struct fl_session *s)
{
    if (s->uffd_watch) core_loop_unwatch(s->uffd_watch);
    s->uffd_watch = NULL;
    if (s->uffd_reader) cancel_read(s->uffd_reader); /* submitted with the next batch */
}

void core_uffd_release(struct fl_session *s)
{
    struct core_uffd_reader *r = s->uffd_reader;
    s->uffd_reader = NULL;
    if (r) {
        if (r->settle) {
            r->settle = false;
            fl_list_del(&r->settle_link);
        }
        r->s = NULL;
        if (!r->in_flight)
            reader_free(r);
        else
            cancel_read(r); /* freed, and the uffd closed, at its completion */
        submit();
    } else if (s->uffd >= 0) {
        core_worker_close(s->uffd); /* the final close takes the client's mmap lock */
    }
    s->uffd = -1;
}

/* ---- the probe ---- */

static int probe_uffd(void)
{
    bool user_mode;
    int fd = fl_uffd_new(O_NONBLOCK, &user_mode, NULL);
    if (fd < 0) return fd;
    struct uffdio_api api = {.api = UFFD_API, .features = 0};
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static void *probe_touch(void *page)
{
    return (void *)(uintptr_t) * (volatile unsigned char *)page;
}

/* The next completion on r within ms (its res in *res), or -ETIME. */
static int probe_cqe(struct io_uring *r, int ms, uint64_t *data, int *res)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {ms / 1000, (long long)(ms % 1000) * 1000000};
    int e = io_uring_wait_cqe_timeout(r, &cqe, &ts);
    if (e < 0) return e;
    *data = io_uring_cqe_get_data64(cqe);
    *res = cqe->res;
    io_uring_cqe_seen(r, cqe);
    return 0;
}

/*
 * What core relies on, on a uffd and a ring of core's own set up as
 * core_uffd_init will: a read waits without a completion while nothing
 * faults; a fault completes it with the message and signals the eventfd; a
 * read in flight can be cancelled.
 */
int core_uffd_probe_uring(char *why, size_t len)
{
    static struct uffd_msg msg; /* static: the kernel writes here until the end */
    struct io_uring r;
    unsigned flags = 0;
    int e = ring_init(&r, &flags), fd = -1, pfd = -1, res = 0;
    bool ring_ok = e == 0;
    uint64_t data = 0;
    void *page = MAP_FAILED;
    pthread_t toucher;
    bool touching = false;
    const char *step = "io_uring_setup";
    if (e < 0) goto out;
    step = "eventfd";
    pfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (pfd < 0 || (e = io_uring_register_eventfd(&r, pfd)) < 0) {
        e = pfd < 0 ? -errno : e;
        goto out;
    }
    step = "userfaultfd";
    if ((e = fd = probe_uffd()) < 0) goto out;
    step = "UFFDIO_REGISTER";
    page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct uffdio_register reg = {.range = {.start = (uintptr_t)page, .len = 4096},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (page == MAP_FAILED || ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
        e = -errno;
        goto out;
    }
    step = "a read";
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r);
    io_uring_prep_read(sqe, fd, &msg, sizeof(msg), 0);
    io_uring_sqe_set_data64(sqe, 1);
    if ((e = io_uring_submit(&r)) < 0) goto out;
    e = probe_cqe(&r, 0, &data, &res);
    if (e == 0) {
        e = res < 0 ? res : -EPROTO; /* it did not wait */
        goto out;
    }
    step = "a fault's completion";
    if ((e = -pthread_create(&toucher, NULL, probe_touch, page)) < 0) goto out;
    touching = true;
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    if (poll(&p, 1, 2000) != 1) {
        e = -ETIME; /* no eventfd signal */
        goto out;
    }
    if ((e = probe_cqe(&r, 2000, &data, &res)) < 0) goto out;
    if (res != (int)sizeof(msg) || msg.event != UFFD_EVENT_PAGEFAULT) {
        e = res < 0 ? res : -EPROTO;
        goto out;
    }
    step = "a cancelled read";
    sqe = io_uring_get_sqe(&r);
    io_uring_prep_read(sqe, fd, &msg, sizeof(msg), 0);
    io_uring_sqe_set_data64(sqe, 2);
    sqe = io_uring_get_sqe(&r);
    io_uring_prep_cancel64(sqe, 2, 0);
    io_uring_sqe_set_data64(sqe, 3);
    if ((e = io_uring_submit(&r)) < 0) goto out;
    for (int got = 0; got < 2; got++) {
        if ((e = probe_cqe(&r, 2000, &data, &res)) < 0) goto out;
        if (data == 2 && res != -ECANCELED && res != -EINTR) {
            e = res < 0 ? res : -EPROTO;
            goto out;
        }
    }
    e = 0;
out:
    if (touching) { /* resolve its fault, whatever happened */
        struct uffdio_zeropage z = {.range = {.start = (uintptr_t)page, .len = 4096}};
        ioctl(fd, UFFDIO_ZEROPAGE, &z);
        pthread_join(toucher, NULL);
    }
    if (ring_ok) io_uring_queue_exit(&r);
    if (fd >= 0) close(fd);
    if (pfd >= 0) close(pfd);
    if (page != MAP_FAILED) munmap(page, 4096);
    if (e == 0) {
        snprintf(why, len, "core's way where RWF_NOWAIT is missing%s",
                 flags & IORING_SETUP_DEFER_TASKRUN ? "" : " (without DEFER_TASKRUN)");
    } else {
        snprintf(why, len, "%s: %s", step, e == -EPROTO ? "unexpected result" : strerror(-e));
    }
    return e;
}

#else /* built without liburing */

int core_uffd_probe_uring(char *why, size_t len)
{
    snprintf(why, len, "built without liburing");
    return -ENOSYS;
}

int core_uffd_init(void)
{
    fl_info("userfaultfd reads: %s", way);
    return 0;
}

void core_uffd_fini(void) {}

bool core_uffd_unsettled(struct fl_session *s)
{
    (void)s;
    return false;
}

int core_uffd_start(struct fl_session *s, int fd)
{
    s->uffd = fd;
    s->uffd_watch = core_loop_watch(fd, FL_EV_IN, core_fault_uffd_ready, s);
    return s->uffd_watch ? 0 : -ENOMEM;
}

void core_uffd_stop(struct fl_session *s)
{
    if (s->uffd_watch) core_loop_unwatch(s->uffd_watch);
    s->uffd_watch = NULL;
}

void core_uffd_release(struct fl_session *s)
{
    if (s->uffd >= 0) core_worker_close(s->uffd); /* takes the client's mmap lock */
    s->uffd = -1;
}

#endif
