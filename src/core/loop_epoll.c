/* The epoll backend of the event loop. */
#include "loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

static int epfd = -1;

static uint32_t to_epoll(uint32_t ev)
{
    return (ev & FL_EV_IN ? EPOLLIN : 0) | (ev & FL_EV_OUT ? EPOLLOUT : 0);
}

static int ep_init(void)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    return epfd < 0 ? -errno : 0;
}

static int ep_add(struct fl_watch *w)
{
    struct epoll_event e = {.events = to_epoll(w->events), .data.ptr = w};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, w->fd, &e) < 0 ? -errno : 0;
}

static int ep_modify(struct fl_watch *w)
{
    struct epoll_event e = {.events = to_epoll(w->events), .data.ptr = w};
    return epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &e) < 0 ? -errno : 0;
}

static void ep_remove(struct fl_watch *w)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
    /* Events of this batch may still name w: the loop frees it after the batch. */
    core_loop_release(w);
}

static int ep_wait(int timeout_ms)
{
    struct epoll_event ev[64];
    int n = epoll_wait(epfd, ev, 64, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = ev[i].events, out = 0;
        if (e & EPOLLIN) out |= FL_EV_IN;
        if (e & EPOLLOUT) out |= FL_EV_OUT;
        if (e & EPOLLERR) out |= FL_EV_ERR;
        if (e & (EPOLLHUP | EPOLLRDHUP)) out |= FL_EV_HUP;
        core_loop_dispatch(ev[i].data.ptr, out);
    }
    return n;
}

static void ep_fini(void)
{
    if (epfd >= 0) close(epfd);
    epfd = -1;
}

const struct fl_loop_backend fl_backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .add = ep_add,
    .modify = ep_modify,
    .remove = ep_remove,
    .wait = ep_wait,
    .fini = ep_fini,
};
