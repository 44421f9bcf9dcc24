/* faultline-run: what the parts of the runner share. */
#ifndef FL_RUN_H
#define FL_RUN_H

#include "scenario.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Exit codes, per scenario and of the whole run (77 is meson's skip). */
enum run_result { RUN_PASS = 0, RUN_FAIL = 1, RUN_BROKEN = 2, RUN_SKIP = 77 };

struct run_opts {
    const char *core; /* faultline-core */
    const char *ctl;  /* faultline-ctl for the failure report, or NULL */
    int tail_lines;   /* lines of each component's log shown on failure */
};

/*
 * Run one scenario in this process: start its core and components, watch
 * them, stop everything. Output goes to stdout, one prefixed line each.
 * Returns RUN_PASS or RUN_FAIL with a one-line reason. Must run in a process
 * of its own (it becomes a child subreaper and owns SIGCHLD).
 */
int scenario_run(const struct scenario *sc, const struct run_opts *o, char *reason, size_t len);

/* --- proc.c: processes and files --- */

/* Milliseconds of CLOCK_MONOTONIC. */
long long now_ms(void);

/* Whom a child runs as ('user' in a scenario). */
struct proc_user {
    uid_t uid;
    gid_t gid;
    const gid_t *groups; /* supplementary */
    int ngroups;
};

/*
 * Fork and exec argv with envp in a new process group; stdin /dev/null,
 * stdout and stderr to out_fd, export_fd (if >= 0) as descriptor 3, nothing
 * else inherited. The child dies with deathsig when this process does and
 * starts with the signal mask `mask`; with user, as that user. Returns the
 * pid or -1.
 */
pid_t proc_spawn(char *const argv[], char *const envp[], int out_fd, int export_fd, int deathsig,
                 const sigset_t *mask, const struct proc_user *user);

/* Run argv, collect at most cap-1 bytes of its stdout+stderr, give up (and
 * kill it) after timeout_ms. Returns its wait status or -1. */
int proc_capture(char *const argv[], char *out, size_t cap, int timeout_ms);

/* SIGKILL and reap every remaining child of this process (a subreaper also
 * inherits its descendants' orphans), so nothing outlives the run. */
void proc_kill_all_children(void);

/* Describe a wait status: "exited with 1", "killed by SIGBUS". */
void proc_status_str(int status, char *buf, size_t len);

/* Remove a directory tree. */
void rm_tree(const char *dir);

/* This binary's directory (for finding faultline-core next to it). */
int self_dir(char *buf, size_t len);

/* --- shard.c: --shard K/N --- */

/* "K/N" with 1 <= K <= N: 0, or -1. */
int shard_parse(const char *arg, int *k, int *n);
/* Sort paths[0..count) by path and keep shard k of n at the front, in that
 * order; returns how many. */
int shard_select(char **paths, int count, int k, int n);

#endif
