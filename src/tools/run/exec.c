/*
 * Running one scenario: a private core, the components in dependency order,
 * every line of output checked against the scenario's rules, and everything
 * stopped at the end whatever happened.
 */
#include "run.h"

#include <faultline/env.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a component or core may take to stop after SIGTERM before it
 * counts as hanging: a bound for cleanup, not a check of speed. */
#define STOP_GRACE_MS 10000
#define TAIL_MAX      64

enum pstate { P_WAITING, P_RUNNING, P_EXITED };

struct linebuf {
    char buf[8192];
    size_t len;
};

struct proc {
    const char *name;
    pid_t pid;
    enum pstate state;
    int status;
    int out_fd, exp_fd; /* read ends, -1 once at EOF */
    struct linebuf out, exp;
    char *tail[TAIL_MAX];
    int tail_next, tail_count;
    int next_expect; /* position in this component's ordered expectations */
    bool stopped;    /* we sent SIGTERM */
};

struct token {
    char name[64];
    char value[FL_TOKEN_LEN + 1];
};

struct run {
    const struct scenario *sc;
    const struct run_opts *o;
    char dir[64], socket[128];
    struct proc p[RUN_MAX_COMPONENTS + 1]; /* components, then core */
    int core;
    bool core_ready;
    struct token tokens[RUN_MAX_COMPONENTS * RUN_MAX_NAMES];
    int ntokens;
    bool *matched;                                     /* per rule, for expect-any */
    bool line_seen[RUN_MAX_COMPONENTS][RUN_MAX_NAMES]; /* per component's after-line */
    int sigfd;
    sigset_t orig_mask;
    bool failed;
    char reason[1024];
    enum { PH_RUN, PH_STOP_COMPONENTS, PH_STOP_CORE, PH_DONE } phase;
    long long stop_deadline;
    char *snapshot; /* faultline-ctl's view, taken before anything is stopped */
    int snapshot_status;
    const char *snapshot_when;
};

static void take_snapshot(struct run *r, const char *when);

static void say(struct run *r, const char *fmt, ...)
{
    (void)r;
    va_list ap;
    va_start(ap, fmt);
    fputs("[faultline-run] ", stdout);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

static void fail(struct run *r, const char *fmt, ...)
{
    if (r->failed) return;
    r->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    say(r, "FAIL: %s", r->reason);
    /* What core knows now, before the runner stops or kills anything. */
    take_snapshot(r, r->phase == PH_RUN
                         ? "when the failure was seen, before anything was stopped"
                         : "when the failure was seen, while the runner stopped the scenario");
}

static struct token *find_token(struct run *r, const char *name)
{
    for (int i = 0; i < r->ntokens; i++)
        if (!strcmp(r->tokens[i].name, name)) return &r->tokens[i];
    return NULL;
}

/* ${NAME} replaced by a token or built-in; all exist by the time we start. */
static char *subst(struct run *r, const char *in)
{
    size_t cap = strlen(in) + 1, n = 0;
    for (const char *d = strstr(in, "${"); d; d = strstr(d + 2, "${")) cap += 256;
    char *out = malloc(cap);
    if (!out) return NULL;
    for (const char *s = in; *s;) {
        const char *end;
        if (s[0] == '$' && s[1] == '{' && (end = strchr(s, '}'))) {
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)(end - s - 2), s + 2);
            const char *v = "";
            struct token *t;
            if (!strcmp(name, "DIR"))
                v = r->dir;
            else if (!strcmp(name, "SOCKET"))
                v = r->socket;
            else if (!strcmp(name, "SCENARIO_DIR"))
                v = r->sc->dir;
            else if ((t = find_token(r, name)))
                v = t->value;
            n += (size_t)snprintf(out + n, cap - n, "%s", v);
            s = end + 1;
        } else {
            out[n++] = *s++;
        }
    }
    out[n] = 0;
    return out;
}

static void remember(struct proc *p, const char *line)
{
    free(p->tail[p->tail_next]);
    p->tail[p->tail_next] = strdup(line);
    p->tail_next = (p->tail_next + 1) % TAIL_MAX;
    if (p->tail_count < TAIL_MAX) p->tail_count++;
}

static bool targets(int target, int idx)
{
    return target == RUN_ANY || target == idx;
}

/* Check one line of component (or core) idx against every rule. */
static void on_line(struct run *r, int idx, const char *line)
{
    const struct scenario *sc = r->sc;
    struct proc *p = &r->p[idx];
    int self = idx == r->core ? RUN_CORE : idx;
    printf("[%s] %s\n", p->name, line);
    remember(p, line);
    if (idx == r->core && !r->core_ready && strstr(line, "listening on")) r->core_ready = true;
    int pos = 0;
    bool advanced = false;
    for (int i = 0; i < sc->nrules; i++) {
        const struct rule *u = &sc->rules[i];
        if (u->kind == RULE_FAIL_ON && targets(u->target, self) && pattern_match(&u->pat, line))
            fail(r, "%s:%d: fail-on %s '%s' matched: [%s] %s", sc->path, u->line,
                 scenario_target_name(sc, u->target), u->pat.text, p->name, line);
        if (u->kind == RULE_EXPECT_ANY && !r->matched[i] && targets(u->target, self) &&
            pattern_match(&u->pat, line))
            r->matched[i] = true;
        if (u->kind == RULE_EXPECT && u->target == self) {
            if (pos == p->next_expect && !advanced && pattern_match(&u->pat, line)) {
                r->matched[i] = true;
                p->next_expect++;
                advanced = true;
            }
            pos++;
        }
    }
    for (int c = 0; c < sc->ncomp; c++)
        for (int k = 0; k < sc->comp[c].nafter_line; k++)
            if (sc->comp[c].after_line[k].target == self && !r->line_seen[c][k] &&
                pattern_match(&sc->comp[c].after_line[k].pat, line))
                r->line_seen[c][k] = true;
    /* Sanitizer reports fail every scenario: they are bugs whatever the
     * scenario expects. */
    if (strstr(line, "ERROR: AddressSanitizer") || strstr(line, "ERROR: LeakSanitizer") ||
        strstr(line, "runtime error:"))
        fail(r, "sanitizer report from %s: %s", p->name, line);
}

static void on_export(struct run *r, int idx, char *line)
{
    const struct component *c = &r->sc->comp[idx];
    char name[64], value[128];
    if (sscanf(line, "%63s %127s", name, value) != 2) {
        fail(r, "%s wrote '%s' to $FAULTLINE_EXPORT_FD; want lines 'NAME TOKEN'", c->name, line);
        return;
    }
    bool declared = false;
    for (int i = 0; i < c->nexports; i++) declared |= !strcmp(c->exports[i], name);
    if (!declared) {
        fail(r, "%s:%d: %s exported %s, which its 'exports' line does not name", r->sc->path,
             c->line, c->name, name);
        return;
    }
    bool hex = strlen(value) == FL_TOKEN_LEN;
    for (const char *s = value; *s; s++) hex &= isxdigit((unsigned char)*s) != 0;
    if (!hex) {
        fail(r, "%s exported %s as '%s', not a token of %d hex digits from fl_cap_export", c->name,
             name, value, FL_TOKEN_LEN);
        return;
    }
    if (find_token(r, name)) {
        fail(r, "%s exported %s twice", c->name, name);
        return;
    }
    struct token *t = &r->tokens[r->ntokens++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    snprintf(t->value, sizeof(t->value), "%s", value);
    say(r, "%s exported %s", c->name, name);
}

/* Read what is there; split into lines; EOF closes the descriptor. */
static void drain(struct run *r, int idx, bool export)
{
    struct proc *p = &r->p[idx];
    int *fd = export ? &p->exp_fd : &p->out_fd;
    struct linebuf *b = export ? &p->exp : &p->out;
    while (*fd >= 0) {
        ssize_t n = read(*fd, b->buf + b->len, sizeof(b->buf) - 1 - b->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) {
            close(*fd);
            *fd = -1;
        } else {
            b->len += (size_t)n;
        }
        char *start = b->buf, *nl;
        b->buf[b->len] = 0;
        /* A full buffer without a newline, or the last words before EOF,
         * still make a line. */
        while ((nl = memchr(start, '\n', b->len - (size_t)(start - b->buf))) ||
               ((*fd < 0 || b->len == sizeof(b->buf) - 1) && start < b->buf + b->len)) {
            if (nl)
                *nl = 0;
            else
                nl = b->buf + b->len;
            if (export)
                on_export(r, idx, start);
            else
                on_line(r, idx, start);
            start = nl + 1;
            if (start > b->buf + b->len) start = b->buf + b->len;
        }
        b->len -= (size_t)(start - b->buf);
        memmove(b->buf, start, b->len);
    }
}

static char **build_env(struct run *r, const struct component *c, bool with_export)
{
    extern char **environ;
    int n = 0;
    while (environ[n]) n++;
    char **env = calloc((size_t)n + RUN_MAX_ENV + 4, sizeof(char *));
    if (!env) return NULL;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const char *e = environ[i];
        if (!strncmp(e, "FAULTLINE_SOCKET=", 17) || !strncmp(e, "FAULTLINE_EXPORT_FD=", 20) ||
            !strncmp(e, "FAULTLINE_PD_TOKEN=", 19))
            continue;
        bool overridden = false;
        for (int j = 0; c && j < c->nenv; j++) {
            size_t l = strcspn(c->env[j], "=") + 1;
            overridden |= !strncmp(e, c->env[j], l);
        }
        if (!overridden) env[k++] = strdup(e);
    }
    if (asprintf(&env[k++], "FAULTLINE_SOCKET=%s", r->socket) < 0) return NULL;
    if (with_export) env[k++] = strdup("FAULTLINE_EXPORT_FD=3");
    for (int j = 0; c && j < c->nenv; j++) env[k++] = subst(r, c->env[j]);
    env[k] = NULL;
    return env;
}

static void free_vec(char **v)
{
    for (int i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}

static int start_proc(struct run *r, int idx, char **argv, char **env, bool with_export,
                      int deathsig, const struct proc_user *user)
{
    struct proc *p = &r->p[idx];
    int out[2], exp[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC)) return -1;
    if (with_export && pipe2(exp, O_CLOEXEC)) return -1;
    p->pid = proc_spawn(argv, env, out[1], exp[1], deathsig, &r->orig_mask, user);
    close(out[1]);
    if (exp[1] >= 0) close(exp[1]);
    p->out_fd = out[0];
    p->exp_fd = exp[0];
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    if (exp[0] >= 0) fcntl(exp[0], F_SETFL, O_NONBLOCK);
    if (p->pid < 0) return -1;
    p->state = P_RUNNING;
    return 0;
}

static void start_component(struct run *r, int idx)
{
    const struct component *c = &r->sc->comp[idx];
    char *argv[RUN_MAX_ARGS + 1] = {0};
    argv[0] = strdup(c->argv[0]);
    for (int i = 1; i < c->argc; i++) argv[i] = subst(r, c->argv[i]);
    char **env = build_env(r, c, c->nexports > 0);
    char cmd[2048];
    size_t n = 0;
    for (int i = 0; i < c->argc && n < sizeof(cmd); i++)
        n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, "%s%s", i ? " " : "", argv[i]);
    /* As another user only as root; otherwise 'user' names the runner's own
     * uid (missing_root skipped the rest) and there is nothing to change. */
    struct proc_user user = {c->uid, c->gid, c->groups, c->ngroups};
    const struct proc_user *as = c->user_line && geteuid() == 0 ? &user : NULL;
    if (c->user_line)
        say(r, "start %s as user %s (uid %u): %s", c->name, c->user, (unsigned)c->uid, cmd);
    else
        say(r, "start %s: %s", c->name, cmd);
    if (!env || start_proc(r, idx, argv, env, c->nexports > 0, SIGKILL, as))
        fail(r, "cannot start %s: %s", c->name, strerror(errno));
    for (int i = 0; i < c->argc; i++) free(argv[i]);
    free_vec(env);
}

/* Whether every token and every 'after' component a waiting one needs is
 * there; fails the run if one can no longer come. */
static bool ready(struct run *r, int idx)
{
    const struct scenario *sc = r->sc;
    const struct component *c = &sc->comp[idx];
    bool ok = true;
    for (int a = 0; a < c->nafter; a++) {
        struct proc *d = &r->p[c->after[a]];
        if (d->state != P_EXITED) {
            ok = false;
            continue;
        }
        const struct component *dc = &sc->comp[c->after[a]];
        bool good = dc->exit_kind == EXIT_ANY ||
                    (dc->exit_kind == EXIT_CODE && WIFEXITED(d->status) &&
                     WEXITSTATUS(d->status) == dc->exit_value) ||
                    (dc->exit_kind == EXIT_SIGNAL && WIFSIGNALED(d->status) &&
                     WTERMSIG(d->status) == dc->exit_value);
        if (!good) fail(r, "%s was to start after %s, which failed", c->name, dc->name);
    }
    for (int k = 0; k < c->nafter_line; k++) {
        if (r->line_seen[idx][k]) continue;
        ok = false;
        const struct after_line *a = &c->after_line[k];
        const struct proc *t = &r->p[a->target == RUN_CORE ? r->core : a->target];
        if (t->state == P_EXITED && t->out_fd < 0)
            fail(r, "%s:%d: %s waits for a line from %s that never came: %s", sc->path, a->line,
                 c->name, t->name, a->pat.text);
    }
    for (int m = 0; m < c->nimports; m++) {
        if (find_token(r, c->imports[m])) continue;
        ok = false;
        for (int k = 0; k < sc->ncomp; k++)
            for (int e = 0; e < sc->comp[k].nexports; e++)
                if (!strcmp(sc->comp[k].exports[e], c->imports[m]) && r->p[k].state == P_EXITED &&
                    r->p[k].exp_fd < 0)
                    fail(r, "%s needs ${%s}, but %s ended without exporting it", c->name,
                         c->imports[m], sc->comp[k].name);
    }
    return ok;
}

static bool exit_as_expected(const struct component *c, int st)
{
    switch (c->exit_kind) {
    case EXIT_ANY: return true;
    case EXIT_CODE: return WIFEXITED(st) && WEXITSTATUS(st) == c->exit_value;
    case EXIT_SIGNAL: return WIFSIGNALED(st) && WTERMSIG(st) == c->exit_value;
    case EXIT_RUNNING: return false;
    }
    return false;
}

static void expected_str(const struct component *c, char *buf, size_t len)
{
    switch (c->exit_kind) {
    case EXIT_ANY: snprintf(buf, len, "any status"); break;
    case EXIT_CODE: snprintf(buf, len, "exit %d", c->exit_value); break;
    case EXIT_SIGNAL: snprintf(buf, len, "SIG%s", sigabbrev_np(c->exit_value)); break;
    case EXIT_RUNNING: snprintf(buf, len, "running until the end"); break;
    }
}

static void on_exit_of(struct run *r, int idx)
{
    struct proc *p = &r->p[idx];
    /* Its last words are in the pipe already; read them before judging. */
    drain(r, idx, false);
    drain(r, idx, true);
    char how[64], want[64];
    proc_status_str(p->status, how, sizeof(how));
    say(r, "%s %s", p->name, how);
    /* Whatever it left behind in its group is stray by now. */
    kill(-p->pid, SIGKILL);
    if (idx == r->core) {
        if (r->phase != PH_STOP_CORE)
            fail(r, "faultline-core %s%s", how,
                 r->core_ready ? " during the run" : " before listening (see its log above)");
        else if (!WIFEXITED(p->status) || WEXITSTATUS(p->status))
            fail(r, "faultline-core %s when stopped (want exit 0)", how);
        return;
    }
    const struct component *c = &r->sc->comp[idx];
    if (p->stopped) {
        if (!(WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0) &&
            !(WIFSIGNALED(p->status) && WTERMSIG(p->status) == SIGTERM))
            fail(r, "%s %s when stopped with SIGTERM (want exit 0 or SIGTERM)", c->name, how);
        return;
    }
    if (!exit_as_expected(c, p->status)) {
        expected_str(c, want, sizeof(want));
        fail(r, "%s:%d: %s %s, expected %s", r->sc->path, c->exit_line, c->name, how, want);
    }
}

static void reap(struct run *r)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (int i = 0; i <= r->core; i++) {
            if (r->p[i].pid == pid && r->p[i].state == P_RUNNING) {
                r->p[i].state = P_EXITED;
                r->p[i].status = st;
                on_exit_of(r, i);
            }
        }
    }
}

static void on_signal(struct run *r)
{
    struct signalfd_siginfo si;
    while (read(r->sigfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) continue;
        fail(r, "interrupted by SIG%s", sigabbrev_np((int)si.ssi_signo));
    }
    reap(r);
}

/* All components that should end by themselves have, and what the
 * scenario waits for otherwise has happened. */
static bool finished(struct run *r)
{
    const struct scenario *sc = r->sc;
    int self_ending = 0;
    for (int i = 0; i < sc->ncomp; i++) {
        if (sc->comp[i].exit_kind == EXIT_RUNNING) continue;
        self_ending++;
        if (r->p[i].state != P_EXITED || r->p[i].out_fd >= 0) return false;
    }
    if (self_ending) return true;
    for (int i = 0; i < sc->nrules; i++)
        if (sc->rules[i].kind != RULE_FAIL_ON && !r->matched[i]) return false;
    return true;
}

static void stop(struct run *r, int idx)
{
    struct proc *p = &r->p[idx];
    if (p->state != P_RUNNING || p->stopped) return;
    p->stopped = true;
    kill(idx == r->core ? p->pid : -p->pid, SIGTERM);
}

/* What a component that has not started waits for, for the timeout message. */
static size_t describe_wait(struct run *r, int idx, char *buf, size_t len)
{
    const struct component *c = &r->sc->comp[idx];
    size_t n = (size_t)snprintf(buf, len, "; %s never started, waiting for", c->name);
    for (int m = 0; m < c->nimports && n < len; m++)
        if (!find_token(r, c->imports[m]))
            n += (size_t)snprintf(buf + n, len - n, " ${%s}", c->imports[m]);
    for (int a = 0; a < c->nafter && n < len; a++)
        if (r->p[c->after[a]].state != P_EXITED)
            n += (size_t)snprintf(buf + n, len - n, " %s to exit", r->p[c->after[a]].name);
    for (int k = 0; k < c->nafter_line && n < len; k++)
        if (!r->line_seen[idx][k])
            n += (size_t)snprintf(buf + n, len - n, " '%s' from %s", c->after_line[k].pat.text,
                                  scenario_target_name(r->sc, c->after_line[k].target));
    return n < len ? n : len;
}

static void describe_pending(struct run *r, char *buf, size_t len)
{
    const struct scenario *sc = r->sc;
    size_t n = 0;
    buf[0] = 0;
    if (!r->core_ready) {
        snprintf(buf, len, "; core never printed 'listening on'");
        return;
    }
    for (int i = 0; i < sc->ncomp && n < len; i++) {
        if (r->p[i].state == P_WAITING)
            n += describe_wait(r, i, buf + n, len - n);
        else if (r->p[i].state == P_RUNNING && sc->comp[i].exit_kind != EXIT_RUNNING)
            n += (size_t)snprintf(buf + n, len - n, "; %s still running", sc->comp[i].name);
    }
}

static void advance(struct run *r)
{
    const struct scenario *sc = r->sc;
    if (r->phase == PH_RUN && r->core_ready && !r->failed) {
        for (int i = 0; i < sc->ncomp && !r->failed; i++)
            if (r->p[i].state == P_WAITING && ready(r, i)) start_component(r, i);
        if (!r->failed && finished(r)) {
            for (int i = 0; i < sc->ncomp && !r->failed; i++) {
                if (r->p[i].state != P_WAITING) continue;
                char why[512];
                describe_wait(r, i, why, sizeof(why));
                fail(r, "the scenario ended, but %s", why + 2);
            }
            if (r->failed) return;
            /* An expectation still open may fail the scenario once all
             * is stopped: keep core's view of this moment for the report. */
            for (int i = 0; i < sc->nrules; i++)
                if (sc->rules[i].kind != RULE_FAIL_ON && !r->matched[i]) {
                    take_snapshot(r, "when the scenario ended, before anything was stopped");
                    break;
                }
            r->phase = PH_STOP_COMPONENTS;
            r->stop_deadline = now_ms() + STOP_GRACE_MS;
            for (int i = 0; i < sc->ncomp; i++) stop(r, i);
        }
    }
    if (r->phase == PH_STOP_COMPONENTS) {
        for (int i = 0; i < sc->ncomp; i++)
            if (r->p[i].state == P_RUNNING || r->p[i].out_fd >= 0) return;
        r->phase = PH_STOP_CORE;
        r->stop_deadline = now_ms() + STOP_GRACE_MS;
        stop(r, r->core);
    }
    if (r->phase == PH_STOP_CORE && r->p[r->core].state == P_EXITED && r->p[r->core].out_fd < 0)
        r->phase = PH_DONE;
}

static void report_unmatched(struct run *r)
{
    const struct scenario *sc = r->sc;
    for (int i = 0; i < sc->nrules; i++) {
        const struct rule *u = &sc->rules[i];
        if (u->kind == RULE_FAIL_ON || r->matched[i]) continue;
        say(r, "not seen: %s:%d: %s %s %s%s%s", sc->path, u->line,
            u->kind == RULE_EXPECT ? "expect" : "expect-any", scenario_target_name(sc, u->target),
            u->pat.is_regex ? "/" : "", u->pat.text, u->pat.is_regex ? "/" : "");
        if (!r->failed) {
            fail(r, "%s:%d: expected line from %s not seen: %s", sc->path, u->line,
                 scenario_target_name(sc, u->target), u->pat.text);
            if (u->kind == RULE_EXPECT)
                say(r, "(expect lines of one component must appear in the order written)");
        }
    }
}

/*
 * faultline-ctl's view of core (its sessions with their processes' state,
 * the faults waiting, by map, with the state of each map's fault signal),
 * once per run, while core and every component still run as they were: at
 * the first failure, or when the scenario ends with an expectation open.
 */
static void take_snapshot(struct run *r, const char *when)
{
    struct proc *core = &r->p[r->core];
    if (r->snapshot || !r->o->ctl || !r->core_ready || core->state != P_RUNNING) return;
    char *argv[] = {(char *)r->o->ctl, "--socket", r->socket, "sessions", "faults", NULL};
    char *out = malloc(16384);
    if (!out) return;
    r->snapshot_status = proc_capture(argv, out, 16384, 5000);
    r->snapshot = out;
    r->snapshot_when = when;
}

static void failure_report(struct run *r)
{
    int tail = r->o->tail_lines;
    for (int i = 0; i <= r->core; i++) {
        struct proc *p = &r->p[i];
        if (p->state == P_WAITING) continue;
        int show = p->tail_count < tail ? p->tail_count : tail;
        if (!show) {
            say(r, "--- %s printed nothing ---", p->name);
            continue;
        }
        say(r, "--- last %d line%s of %s ---", show, show == 1 ? "" : "s", p->name);
        for (int k = show; k > 0; k--)
            printf("  [%s] %s\n", p->name, p->tail[(p->tail_next - k + TAIL_MAX * 2) % TAIL_MAX]);
    }
    if (r->snapshot) {
        say(r, "--- faultline-ctl sessions faults, taken %s ---", r->snapshot_when);
        for (char *save = NULL, *l = strtok_r(r->snapshot, "\n", &save); l;
             l = strtok_r(NULL, "\n", &save))
            printf("  [faultline-ctl] %s\n", l);
        if (r->snapshot_status != 0) say(r, "(faultline-ctl did not succeed)");
    }
    fflush(stdout);
}

/* Bring everything down after a failure: components at once, then core. */
static void kill_everything(struct run *r)
{
    for (int i = 0; i < r->sc->ncomp; i++)
        if (r->p[i].pid > 0) kill(-r->p[i].pid, SIGKILL);
    struct proc *c = &r->p[r->core];
    if (c->state == P_RUNNING) {
        kill(c->pid, SIGTERM);
        long long end = now_ms() + STOP_GRACE_MS;
        int st;
        while (now_ms() < end && waitpid(c->pid, &st, WNOHANG) == 0)
            nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    }
    proc_kill_all_children();
}

static int poll_once(struct run *r, long long deadline)
{
    struct pollfd fds[2 * (RUN_MAX_COMPONENTS + 1) + 1];
    int who[2 * (RUN_MAX_COMPONENTS + 1) + 1];
    int n = 0;
    fds[n] = (struct pollfd){.fd = r->sigfd, .events = POLLIN};
    who[n++] = -1;
    for (int i = 0; i <= r->core; i++) {
        if (r->p[i].out_fd >= 0) {
            fds[n] = (struct pollfd){.fd = r->p[i].out_fd, .events = POLLIN};
            who[n++] = i * 2;
        }
        if (r->p[i].exp_fd >= 0) {
            fds[n] = (struct pollfd){.fd = r->p[i].exp_fd, .events = POLLIN};
            who[n++] = i * 2 + 1;
        }
    }
    long long left = deadline - now_ms();
    int k = poll(fds, (nfds_t)n, left < 0 ? 0 : (int)left);
    if (k < 0) return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        if (!fds[i].revents) continue;
        if (who[i] < 0)
            on_signal(r);
        else
            drain(r, who[i] / 2, who[i] % 2);
    }
    return 0;
}

int scenario_run(const struct scenario *sc, const struct run_opts *o, char *reason, size_t len)
{
    struct run *r = calloc(1, sizeof(*r));
    bool matched[RUN_MAX_RULES] = {0};
    r->sc = sc;
    r->o = o;
    r->matched = matched;
    r->core = sc->ncomp;
    for (int i = 0; i <= r->core; i++) {
        r->p[i].name = i == r->core ? "core" : sc->comp[i].name;
        r->p[i].out_fd = r->p[i].exp_fd = -1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Orphans of components re-parent to us, so we can stop them too. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, &r->orig_mask);
    sigdelset(&r->orig_mask, SIGCHLD);
    sigdelset(&r->orig_mask, SIGINT);
    sigdelset(&r->orig_mask, SIGTERM);
    sigdelset(&r->orig_mask, SIGHUP);
    r->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

    snprintf(r->dir, sizeof(r->dir), "/tmp/faultline-run.XXXXXX");
    if (!mkdtemp(r->dir)) {
        snprintf(reason, len, "mkdtemp in /tmp: %s", strerror(errno));
        free(r);
        return RUN_FAIL;
    }
    snprintf(r->socket, sizeof(r->socket), "%s/core.sock", r->dir);
    say(r, "scenario %s: core on %s", sc->path, r->socket);

    char *core_argv[RUN_MAX_ARGS + 4 + 2 * RUN_MAX_COMPONENTS] = {(char *)o->core, "--socket",
                                                                  r->socket};
    int na = 3;
    /* Built-ins only (scenario.c checked): ${SCENARIO_DIR}/rom, ${DIR}/data. */
    char *core_opts[RUN_MAX_ARGS];
    for (int i = 0; i < sc->ncore_args; i++) {
        core_opts[i] = subst(r, sc->core_args[i]);
        core_argv[na++] = core_opts[i] ? core_opts[i] : sc->core_args[i];
    }
    /* Core serves the users the components run as ('user' lines). */
    char uids[RUN_MAX_COMPONENTS][16];
    for (int i = 0; i < sc->ncomp; i++) {
        uid_t u = sc->comp[i].uid;
        bool dup = false;
        for (int k = 0; k < i; k++) dup |= sc->comp[k].user_line && sc->comp[k].uid == u;
        if (!sc->comp[i].user_line || dup || u == geteuid() || u == 0) continue;
        snprintf(uids[i], sizeof(uids[i]), "%u", (unsigned)u);
        core_argv[na++] = "--allow-uid";
        core_argv[na++] = uids[i];
    }
    char **core_env = build_env(r, NULL, false);
    /* Core stops cleanly (and removes its socket) if we die unexpectedly. */
    if (!core_env || start_proc(r, r->core, core_argv, core_env, false, SIGTERM, NULL))
        fail(r, "cannot start %s: %s", o->core, strerror(errno));
    free_vec(core_env);
    for (int i = 0; i < sc->ncore_args; i++) free(core_opts[i]);

    long long deadline = now_ms() + (long long)sc->timeout_s * 1000;
    bool timed_out = false;
    while (!r->failed && r->phase != PH_DONE) {
        advance(r);
        if (r->failed || r->phase == PH_DONE) break;
        if (now_ms() >= deadline && r->phase == PH_RUN) {
            char pending[512];
            describe_pending(r, pending, sizeof(pending));
            fail(r, "%s: timeout after %d s%s", sc->path, sc->timeout_s, pending);
            timed_out = true;
            break;
        }
        if (r->phase != PH_RUN && now_ms() >= r->stop_deadline) {
            for (int i = 0; i <= r->core; i++)
                if (r->p[i].stopped && r->p[i].state == P_RUNNING)
                    fail(r, "%s did not stop within %d ms of SIGTERM", r->p[i].name, STOP_GRACE_MS);
            if (!r->failed) fail(r, "output pipes stayed open after everyone stopped");
            break;
        }
        if (poll_once(r, r->phase == PH_RUN ? deadline : r->stop_deadline) < 0) {
            fail(r, "poll: %s", strerror(errno));
            break;
        }
    }
    /* Expectations still open matter when the run got to its end (or timed
     * out waiting); after an early failure they only bury its reason. */
    if (!r->failed || timed_out) report_unmatched(r);
    if (r->failed) failure_report(r);
    kill_everything(r);
    for (int i = 0; i <= r->core; i++) {
        if (r->p[i].out_fd >= 0) close(r->p[i].out_fd);
        if (r->p[i].exp_fd >= 0) close(r->p[i].exp_fd);
        for (int k = 0; k < TAIL_MAX; k++) free(r->p[i].tail[k]);
    }
    struct stat st;
    if (!r->failed && stat(r->socket, &st) == 0) fail(r, "core left its socket %s", r->socket);
    rm_tree(r->dir);
    close(r->sigfd);
    sigprocmask(SIG_SETMASK, &r->orig_mask, NULL);
    int result = r->failed ? RUN_FAIL : RUN_PASS;
    snprintf(reason, len, "%s", r->failed ? r->reason : "");
    say(r, "%s %s", result == RUN_PASS ? "PASS" : "FAIL", sc->name);
    free(r->snapshot);
    free(r);
    return result;
}
