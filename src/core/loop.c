/*
 * The event loop: one thread, readiness callbacks, two interchangeable
 * backends. io_uring is preferred; container seccomp profiles often forbid
 * io_uring_setup, so epoll is the run-time fallback. Callbacks only ever make
 * non-blocking calls: readiness is a hint, never a promise.
 */
#include "../common/log.h"
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct fl_loop_backend *backend;
static struct fl_list watches = FL_LIST_INIT(watches); /* every watch not yet released */
static struct fl_list graveyard = FL_LIST_INIT(graveyard);
static const char *backend_why = "";

int core_loop_init(enum fl_backend want)
{
    if (want != FL_BACKEND_EPOLL) {
#ifdef FL_HAVE_URING
        int r = fl_backend_uring.init();
#else
        int r = -ENOSYS; /* built without liburing */
#endif
        if (r == 0) {
#ifdef FL_HAVE_URING
            backend = &fl_backend_uring;
#endif
            backend_why = want == FL_BACKEND_IO_URING ? "requested" : "available";
            fl_info("event loop: io_uring (%s)", backend_why);
            return 0;
        }
        if (want == FL_BACKEND_IO_URING) {
            fl_error("event loop: io_uring requested but io_uring_setup failed: %s", strerror(-r));
            return r;
        }
        fl_info("event loop: epoll (io_uring_setup failed: %s; seccomp or "
                "kernel.io_uring_disabled may forbid it)",
                strerror(-r));
    } else {
        fl_info("event loop: epoll (requested)");
    }
    backend = &fl_backend_epoll;
    return backend->init();
}

struct fl_watch *core_loop_watch(int fd, uint32_t events, fl_watch_cb cb, void *arg)
{
    struct fl_watch *w = calloc(1, sizeof(*w));
    if (!w) return NULL;
    w->fd = fd;
    w->events = events;
    w->cb = cb;
    w->arg = arg;
    if (backend->add(w) < 0) {
        free(w);
        return NULL;
    }
    fl_list_add_tail(&watches, &w->link);
    return w;
}

int core_loop_modify(struct fl_watch *w, uint32_t events)
{
    if (w->events == events) return 0;
    w->events = events;
    return backend->modify(w);
}

void core_loop_unwatch(struct fl_watch *w)
{
    if (!w || w->dead) return;
    w->dead = true;
    backend->remove(w);
}

void core_loop_dispatch(struct fl_watch *w, uint32_t events)
{
    if (!w->dead) w->cb(w->arg, events);
}

/* Backends hand over a watch that no event can name any more. */
void core_loop_release(struct fl_watch *w)
{
    fl_list_del(&w->link);
    fl_list_add_tail(&graveyard, &w->link);
}

int core_loop_run_once(int timeout_ms)
{
    int r = backend->wait(timeout_ms);
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &graveyard)
    {
        fl_list_del(pos);
        free(fl_list_entry(pos, struct fl_watch, link));
    }
    return r;
}

void core_loop_fini(void)
{
    if (backend) backend->fini();
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &watches)
    {
        fl_list_del(pos);
        free(fl_list_entry(pos, struct fl_watch, link));
    }
    fl_list_for_each_safe(pos, tmp, &graveyard)
    {
        fl_list_del(pos);
        free(fl_list_entry(pos, struct fl_watch, link));
    }
    backend = NULL;
}

uint64_t core_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
