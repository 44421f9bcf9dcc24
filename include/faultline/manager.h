/*
 * faultline: what every dataspace manager needs besides the API — stopping
 * cleanly when asked, handing tokens to whoever started it (faultline-run, or
 * a person), reporting errors, reading sizes, and the library's version.
 */
#ifndef FAULTLINE_MANAGER_H
#define FAULTLINE_MANAGER_H

#include <stdint.h>

#include <faultline/env.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Take SIGTERM and SIGINT over as stop requests, which fl_manager_wait
 * reports by returning 0, instead of their default action of killing the
 * process in the middle of serving a fault. faultline-run stops a component
 * with SIGTERM; Ctrl-C sends SIGINT.
 *
 * It blocks both signals in the calling thread and opens a signalfd for them.
 * Call it early in main, before starting threads of your own: a thread
 * inherits its creator's signal mask, and a thread that does not block
 * SIGTERM would take it and die of it. libfaultline's own threads (the agent
 * fl_env_open starts) block every asynchronous signal, so it does not matter
 * whether this comes before or after fl_env_open. A stop request that comes
 * before it ends the process the default way. A program this one forks and
 * execs inherits the blocked signals: unblock them in the child before the
 * exec (or use posix_spawn with POSIX_SPAWN_SETSIGMASK).
 *
 * Calling it again does nothing. Returns 0 or -FL_E_SYSTEM.
 */
int fl_manager_catch_stop(void);

/*
 * Wait for a delivery on the signal context sigh (created by this session),
 * or for a stop request. timeout_ms < 0: no time limit. sigh FL_CAP_INVALID:
 * wait for a stop request (or the timeout) only.
 *
 * Returns the signal's count (> 0: submits coalesce, so one delivery means
 * "look": serve until fl_region_map_fault reports FL_FAULT_NONE); 0 once a
 * stop was requested (and on every call after that); -FL_E_TIMEOUT if the
 * time ran out first; -FL_E_INVALID_CAP (sigh is not a context of this
 * session) or -FL_E_SYSTEM. If fl_manager_catch_stop was not called yet, the
 * first call does it (too late for a program that already started threads).
 *
 *     long n;
 *     while ((n = fl_manager_wait(env, sigh, -1)) > 0)
 *         serve_faults();
 *     if (n < 0) return fl_perror("wait", (int)n);
 *     fl_env_close(env);   // asked to stop
 */
long fl_manager_wait(struct fl_env *env, fl_cap sigh, int timeout_ms);

/*
 * Hand a token (from fl_cap_export, fl_pd_create) to whoever started this
 * program, under a name: writes the line "NAME TOKEN" with one write(2) to
 * the descriptor whose number is in $FAULTLINE_EXPORT_FD (faultline-run sets
 * it and gives the token to the component whose command says ${NAME}), or to
 * stdout when the variable is not set (run by hand). name: 1 to 63 letters,
 * digits or '_'.
 *
 * Returns 0, or -FL_E_INVALID_ARG (a bad name or token, or a
 * $FAULTLINE_EXPORT_FD that is not a descriptor number) or -FL_E_SYSTEM (the
 * write failed); either with a line on stderr that names the value.
 */
int fl_publish(const char *name, const char token[FL_TOKEN_LEN + 1]);

/*
 * Report an error of an fl_ call on stderr as one line,
 * "PROGRAM: WHAT: NAME (sentence)", e.g.
 * "lazy-alloc: attach: REGION_CONFLICT (offset or size out of range, ...)":
 * fl_error_name for logs and searches, fl_strerror for what to do. what may
 * be NULL. Returns 1, an exit status, for `return fl_perror("attach", r);`.
 */
int fl_perror(const char *what, int err);

/*
 * Parse a size the way every faultline program and variable takes one:
 * bytes, or a number with a K, M or G suffix (binary: 64K is 65536), decimal
 * or hexadecimal with 0x; nothing else, not even a space. Returns 0 with
 * *out set, or -FL_E_INVALID_ARG (garbage or overflow).
 */
int fl_parse_size(const char *s, uint64_t *out);

/*
 * The library's version, for logs and bug reports: "0.1.0 (commit C)", C
 * being what git describe said of the tree it was built from ("-dirty" if it
 * had uncommitted changes) or "unknown" outside git. The programs' --version
 * prints the same. FAULTLINE_VERSION_MAJOR and _MINOR are the headers' own
 * version, for compile-time checks.
 */
const char *fl_version(void);

#ifdef __cplusplus
}
#endif
#endif
