/*
 * What the example managers share: handing tokens to whoever started them,
 * and a wait that also ends on SIGTERM, so a manager that serves until it
 * is told to stop can stop cleanly.
 */
#ifndef FL_EXAMPLE_H
#define FL_EXAMPLE_H

#include <faultline/faultline.h>

/*
 * Publish an exported token under a name. Under faultline-run the line
 * "NAME TOKEN" goes to the descriptor in $FAULTLINE_EXPORT_FD, and the runner
 * hands the token to the component whose scenario line says ${NAME}. Run by
 * hand, the same line goes to stdout. Returns 0 or -1 (with a message).
 */
int example_publish(const char *name, const char token[FL_TOKEN_LEN + 1]);

/*
 * Take SIGTERM and SIGINT over as requests to stop. Call it before
 * fl_env_open: threads inherit the signal mask, and the library's agent
 * thread must not be the one the kernel picks to die of a SIGTERM.
 */
void example_catch_stop(void);

/*
 * Wait for a delivery on sigh or for a stop request (example_catch_stop).
 * Returns the signal count (> 0), 0 if asked to stop, or -FL_E_*.
 */
long example_wait(struct fl_env *env, fl_cap sigh);

/* Report an fl_ error as "PROG: WHAT: NAME (sentence)" and return 1. */
int example_fail(const char *prog, const char *what, int err);

#endif
