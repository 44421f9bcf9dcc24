/*
 * Signal contexts: an eventfd per context, whose counter gives Genode's
 * coalescing (N submits before pickup are read once as N).
 *
 * The receiver shares the eventfd's file description, so it can clear
 * O_NONBLOCK and fill the counter, and then core's write would block.
 * RWF_NOWAIT is not supported on eventfds. So every write is watched: a
 * watchdog thread that finds the same write in progress on two consecutive
 * looks interrupts the loop thread (SIGURG, no SA_RESTART: the write returns
 * EINTR), and core ends the session of the receiver. The fast path costs two
 * atomic adds and a load. After IDLE_PERIODS quiet looks the watchdog sleeps
 * on a futex until the next write begins, so an idle core does not wake.
 * uffd.c watches its io_uring calls the same way (core_signal_watch_begin):
 * on a kernel whose uffd reads ignore IOCB_NOWAIT, a client that clears
 * O_NONBLOCK at the wrong instant could make one of them wait.
 */
#include "../common/probe.h"
#include "object.h"
#include "rpc.h"
#include "session.h"
#include "signal_context.h"
#include "worker.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_PERIOD_MS 5
#define IDLE_PERIODS       40 /* 200 ms without a write */

static pthread_t loop_thread, watchdog_thread;
/* Odd while a write is in progress. 32 bits for the futex; parity survives
 * the wrap. */
static atomic_uint write_seq;
static atomic_bool watchdog_idle, watchdog_stop;

static void futex(atomic_uint *word, int op, unsigned val)
{
    syscall(SYS_futex, word, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static void on_sigurg(int sig)
{
    (void)sig; /* only there to interrupt a write */
}

static void *watchdog(void *arg)
{
    (void)arg;
    unsigned seen = 0, quiet = 0;
    while (!atomic_load(&watchdog_stop)) {
        struct timespec ts = {0, WATCHDOG_PERIOD_MS * 1000000L};
        nanosleep(&ts, NULL);
        unsigned now = atomic_load_explicit(&write_seq, memory_order_relaxed);
        if ((now & 1) && now == seen) pthread_kill(loop_thread, SIGURG);
        quiet = now == seen ? quiet + 1 : 0;
        seen = now;
        if (quiet < IDLE_PERIODS || (now & 1)) continue;
        /* Announce the sleep, then look again (both seq_cst, as is the
         * writer's add then load): either the writer sees the flag and
         * wakes us, or we see its add and stay up. A wake that comes before
         * the wait makes the wait return at once, the word having moved. */
        atomic_store(&watchdog_idle, true);
        if (atomic_load(&write_seq) == now && !atomic_load(&watchdog_stop))
            futex(&write_seq, FUTEX_WAIT, now);
        atomic_store(&watchdog_idle, false);
        quiet = 0;
    }
    return NULL;
}

int core_signal_watchdog_start(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigurg; /* no SA_RESTART */
    sigaction(SIGURG, &sa, NULL);
    loop_thread = pthread_self();
    return -pthread_create(&watchdog_thread, NULL, watchdog, NULL);
}

void core_signal_watchdog_stop(void)
{
    atomic_store(&watchdog_stop, true);
    atomic_fetch_add(&write_seq, 2); /* parity kept: no write is in progress */
    futex(&write_seq, FUTEX_WAKE, 1);
    pthread_join(watchdog_thread, NULL);
}

void core_signal_watch_begin(void)
{
    atomic_fetch_add(&write_seq, 1);
    if (atomic_load(&watchdog_idle) && atomic_exchange(&watchdog_idle, false))
        futex(&write_seq, FUTEX_WAKE, 1);
}

void core_signal_watch_end(void)
{
    atomic_fetch_add_explicit(&write_seq, 1, memory_order_relaxed);
}

void core_signal_submit(struct fl_signal *sig)
{
    if (sig->obj.dead) return;
    FL_PROBE1(signal_submit, sig->efd);
    /* The eventfd's counter is the pending count: a receiver that lets it
     * fill up loses its session, so core keeps no count of its own. */
    uint64_t v = 1;
    core_signal_watch_begin();
    ssize_t n = write(sig->efd, &v, sizeof(v));
    int err = errno;
    core_signal_watch_end();
    if (n == sizeof(v)) return;
    struct fl_session *s = sig->obj.owner;
    if (n < 0 && err == EAGAIN) {
        /* Its counter is full: only a receiver that never reads gets there. */
        if (s) core_session_close(s, "its signal eventfd is full: it never picks up signals");
        return;
    }
    if (s)
        core_session_close(s, err == EINTR ? "it sabotaged its signal eventfd (a write to it "
                                             "blocked core; O_NONBLOCK was cleared)"
                                           : "writing its signal eventfd failed");
}

void core_signal_destroy(struct fl_signal *sig)
{
    core_worker_close(sig->efd);
    sig->efd = -1;
    if (sig->obj.owner) core_quota_release(sig->obj.owner, 0, 1, 1);
}

/* ---- requests ---- */

int core_signal_rpc_alloc(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)msg;
    if (*fd < 0 || !core_fd_is_anon(*fd, "eventfd")) {
        core_session_close(s, "protocol violation: SIG_ALLOC without an eventfd");
        return CORE_RPC_DEFERRED;
    }
    /* On an error the eventfd is closed by the caller, once: it is the peer's
     * descriptor number until then, and a second close would take whatever
     * core opened under that number meanwhile. */
    int r = core_quota_charge(s, 0, 1, 1);
    if (r < 0) return r;
    struct fl_signal *sig = calloc(1, sizeof(*sig));
    if (!sig) {
        core_quota_release(s, 0, 1, 1);
        return -ENOMEM;
    }
    sig->obj.kind = FL_OBJ_SIGNAL;
    sig->obj.owner = s;
    sig->obj.refs = 1;
    sig->efd = *fd;
    *fd = -1;
    fl_list_add_tail(&s->objects, &sig->obj.owner_link);
    r = core_cap_insert(s, &sig->obj, &v[0]);
    if (r < 0) core_object_destroy(&sig->obj);
    return r;
}

int core_signal_rpc_free(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    const struct fl_req_cap *m = msg;
    struct fl_signal *sig = (void *)core_cap_lookup(s, m->cap, FL_OBJ_SIGNAL);
    if (!sig || sig->obj.owner != s) return -EBADF;
    core_object_destroy(&sig->obj);
    core_cap_drop(s, m->cap); /* dies with the object, as for a free */
    return 0;
}

int core_signal_rpc_submit(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    const struct fl_req_cap *m = msg;
    struct fl_signal *sig = (void *)core_cap_lookup(s, m->cap, FL_OBJ_SIGNAL);
    if (!sig) return -EBADF;
    core_signal_submit(sig);
    return 0;
}
