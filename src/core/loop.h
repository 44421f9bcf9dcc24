/* faultline-core: the event loop and its backends (loop.c, loop_epoll.c, loop_uring.c). */
#ifndef FL_CORE_LOOP_H
#define FL_CORE_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "../common/list.h"

#define FL_EV_IN  0x1u
#define FL_EV_OUT 0x4u
#define FL_EV_ERR 0x8u
#define FL_EV_HUP 0x10u

typedef void (*fl_watch_cb)(void *arg, uint32_t events);
struct fl_watch;

enum fl_backend { FL_BACKEND_AUTO, FL_BACKEND_IO_URING, FL_BACKEND_EPOLL };

int core_loop_init(enum fl_backend want);
/* Watch fd for readiness; the callback runs on the loop thread. */
struct fl_watch *core_loop_watch(int fd, uint32_t events, fl_watch_cb cb, void *arg);
int core_loop_modify(struct fl_watch *w, uint32_t events);
/* Stop watching; the loop frees w once no event for it can arrive. */
void core_loop_unwatch(struct fl_watch *w);
/* Wait for events (timeout_ms < 0: forever) and run their callbacks. */
int core_loop_run_once(int timeout_ms);
void core_loop_fini(void);

struct fl_loop_backend {
    const char *name;
    int (*init)(void);
    int (*add)(struct fl_watch *w);
    int (*modify)(struct fl_watch *w);
    void (*remove)(struct fl_watch *w);
    int (*wait)(int timeout_ms);
    void (*fini)(void);
};

struct fl_watch {
    int fd;
    uint32_t events;
    fl_watch_cb cb;
    void *arg;
    bool dead;      /* unwatched; freed when the backend says no event can follow */
    unsigned polls; /* io_uring: polls outstanding (modify is remove + add) */
    struct fl_list link;
};

extern const struct fl_loop_backend fl_backend_epoll;
extern const struct fl_loop_backend fl_backend_uring;
/* Backends call this for each event; it skips watches already unwatched. */
void core_loop_dispatch(struct fl_watch *w, uint32_t events);
void core_loop_release(struct fl_watch *w);

/* CLOCK_MONOTONIC, in milliseconds. */
uint64_t core_now_ms(void);

#endif
