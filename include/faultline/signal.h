/* faultline: signal contexts — fire-and-forget notifications on eventfds. */
#ifndef FAULTLINE_SIGNAL_H
#define FAULTLINE_SIGNAL_H

#include <faultline/env.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Create a signal context. Its eventfd (fl_signal_fd) becomes readable when
 * the context was submitted; N submits before pickup are delivered once with
 * count N (Genode's coalescing). The descriptor may go into the caller's own
 * poll/epoll/io_uring loop; it stays owned by the library.
 */
int fl_signal_context_create(struct fl_env *env, fl_cap *sigh);
/* Destroy a signal context this session created; the capability dies with it. */
int fl_signal_context_destroy(struct fl_env *env, fl_cap sigh);

/* The eventfd of a context created by this session, or -FL_E_INVALID_CAP. */
int fl_signal_fd(struct fl_env *env, fl_cap sigh);

/* Submit a signal to a context (also one imported from another component). */
int fl_signal_submit(struct fl_env *env, fl_cap sigh);

/* Pick up a delivery: blocks until one arrives (timeout_ms < 0: forever;
 * 0: poll). Returns the coalesced count (> 0), 0 on timeout, or -FL_E_*. */
long fl_signal_wait(struct fl_env *env, fl_cap sigh, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
