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
 * relaxed stores.
 */
#include "core.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_PERIOD_MS 5

static pthread_t loop_thread, watchdog_thread;
static atomic_ulong write_seq; /* odd while a write is in progress */
static atomic_bool watchdog_stop;

static void on_sigurg(int sig)
{
    (void)sig; /* only there to interrupt a write */
}

static void *watchdog(void *arg)
{
    (void)arg;
    unsigned long seen = 0;
    while (!atomic_load(&watchdog_stop)) {
        struct timespec ts = {0, WATCHDOG_PERIOD_MS * 1000000L};
        nanosleep(&ts, NULL);
        unsigned long now = atomic_load_explicit(&write_seq, memory_order_relaxed);
        if ((now & 1) && now == seen) pthread_kill(loop_thread, SIGURG);
        seen = now;
    }
    return NULL;
}

int fl_signal_watchdog_start(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigurg; /* no SA_RESTART */
    sigaction(SIGURG, &sa, NULL);
    loop_thread = pthread_self();
    return -pthread_create(&watchdog_thread, NULL, watchdog, NULL);
}

void fl_signal_watchdog_stop(void)
{
    atomic_store(&watchdog_stop, true);
    pthread_join(watchdog_thread, NULL);
}

void core_signal_submit(struct fl_signal *sig)
{
    if (sig->obj.dead) return;
    FL_PROBE1(signal_submit, sig->efd);
    /* The eventfd's counter is the pending count: a receiver that lets it
     * fill up loses its session, so core keeps no count of its own. */
    uint64_t v = 1;
    atomic_fetch_add_explicit(&write_seq, 1, memory_order_relaxed);
    ssize_t n = write(sig->efd, &v, sizeof(v));
    int err = errno;
    atomic_fetch_add_explicit(&write_seq, 1, memory_order_relaxed);
    if (n == sizeof(v)) return;
    struct fl_session *s = sig->obj.owner;
    if (n < 0 && err == EAGAIN) {
        /* Its counter is full: only a receiver that never reads gets there. */
        if (s) fl_session_close(s, "its signal eventfd is full: it never picks up signals");
        return;
    }
    if (s)
        fl_session_close(s, err == EINTR ? "it sabotaged its signal eventfd (a write to it "
                                           "blocked core; O_NONBLOCK was cleared)"
                                         : "writing its signal eventfd failed");
}

void fl_signal_destroy(struct fl_signal *sig)
{
    fl_worker_close(sig->efd);
    sig->efd = -1;
    if (sig->obj.owner) fl_quota_release(sig->obj.owner, 0, 1, 1);
}
