/* faultline-core: signal contexts and their bounded eventfd writes (signal.c). */
#ifndef FL_CORE_SIGNAL_CONTEXT_H
#define FL_CORE_SIGNAL_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "object.h"

struct fl_signal {
    struct fl_object obj;
    int efd; /* the receiver's eventfd (shared with it) */
};

void core_signal_submit(struct fl_signal *sig);
void core_signal_destroy(struct fl_signal *sig);
int core_signal_watchdog_start(void);
/* Around a call of the loop thread that a peer could make wait: the watchdog
 * interrupts it (SIGURG, EINTR) once it has been in progress for 5-10 ms. */
void core_signal_watch_begin(void);
void core_signal_watch_end(void);

#endif
