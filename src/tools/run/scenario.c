/*
 * The scenario parser. Every error names FILE:LINE and says what to write
 * instead, because a broken scenario in CI is read by someone who did not
 * write it.
 */
#include "scenario.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct parser {
    struct scenario *sc;
    const char *const *search;
    int line;
    char *err;
    size_t errlen;
};

static int perr(struct parser *p, const char *fmt, ...)
{
    int n = snprintf(p->err, p->errlen, "%s:%d: ", p->sc->path, p->line);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < p->errlen) vsnprintf(p->err + n, p->errlen - n, fmt, ap);
    va_end(ap);
    return -1;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        perror("faultline-run");
        exit(2);
    }
    return d;
}

static const char *const builtins[] = {"DIR", "SOCKET", "SCENARIO_DIR", NULL};

static bool is_builtin(const char *name)
{
    for (int i = 0; builtins[i]; i++)
        if (!strcmp(builtins[i], name)) return true;
    return false;
}

static bool valid_name(const char *s, bool allow_dash)
{
    if (!*s || isdigit((unsigned char)*s)) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && !(allow_dash && *s == '-')) return false;
    return true;
}

/*
 * Split shell-like: blanks separate words, "..." groups with \" \\ escapes,
 * '...' groups literally. The words are written into buf, which must be as
 * long as the input.
 */
static int split(struct parser *p, const char *s, char *buf, char **words, int max)
{
    int n = 0;
    char *o = buf;
    while (*s) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) break;
        if (n == max) return perr(p, "more than %d words on one line", max);
        words[n++] = o;
        while (*s && *s != ' ' && *s != '\t') {
            if (*s == '"' || *s == '\'') {
                char q = *s++;
                while (*s && *s != q) {
                    if (q == '"' && *s == '\\' && (s[1] == '"' || s[1] == '\\')) s++;
                    *o++ = *s++;
                }
                if (!*s) return perr(p, "unterminated %c quote", q);
                s++;
            } else {
                *o++ = *s++;
            }
        }
        *o++ = 0;
    }
    return n;
}

static int find_component(const struct scenario *sc, const char *name)
{
    for (int i = 0; i < sc->ncomp; i++)
        if (!strcmp(sc->comp[i].name, name)) return i;
    return -1;
}

const char *scenario_target_name(const struct scenario *sc, int target)
{
    if (target == RUN_ANY) return "*";
    if (target == RUN_CORE) return "core";
    return sc->comp[target].name;
}

/* access(X_OK) alone says yes to directories, and to any file for root. */
static bool runnable(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISREG(st.st_mode) && (st.st_mode & 0111) && !access(path, X_OK);
}

static int resolve_command(struct parser *p, const char *cmd, char **out)
{
    char path[PATH_MAX];
    if (strchr(cmd, '/')) {
        if (cmd[0] == '/')
            snprintf(path, sizeof(path), "%s", cmd);
        else
            snprintf(path, sizeof(path), "%s/%s", p->sc->dir, cmd);
        if (!runnable(path))
            return perr(p,
                        "command %s: %s (a relative path is taken from the scenario's directory)",
                        path, access(path, F_OK) ? strerror(errno) : "not an executable file");
        *out = xstrdup(path);
        return 0;
    }
    for (int i = 0; p->search && p->search[i]; i++) {
        snprintf(path, sizeof(path), "%s/%s", p->search[i], cmd);
        if (runnable(path)) {
            *out = xstrdup(path);
            return 0;
        }
    }
    snprintf(path, sizeof(path), "%s/%s", p->sc->dir, cmd);
    if (runnable(path)) {
        *out = xstrdup(path);
        return 0;
    }
    const char *env = getenv("PATH");
    char *dirs = xstrdup(env ? env : "/usr/bin:/bin"), *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof(path), "%s/%s", d, cmd);
        if (runnable(path)) {
            free(dirs);
            *out = xstrdup(path);
            return 0;
        }
    }
    free(dirs);
    return perr(p,
                "command '%s' not found in the --path directories, $FAULTLINE_RUN_PATH, the "
                "scenario's directory or $PATH (build it, or pass --path DIR)",
                cmd);
}

/* A ${NAME}'s name with its NUL. */
#define REF_NAME_BYTES 64

/* The next ${NAME} reference of s after *at (NULL: the first), which *at
 * then points to: 1 with its name, 0 when there is none, or -1 (perr) for
 * one that is not well formed. */
static int next_ref(struct parser *p, const char *s, const char **at, char name[REF_NAME_BYTES])
{
    const char *d = strstr(*at ? *at + 2 : s, "${");
    if (!d) return 0;
    *at = d;
    const char *end = strchr(d, '}');
    if (!end) return perr(p, "'${' without a closing '}'");
    size_t len = (size_t)(end - d - 2);
    if (len == 0 || len >= REF_NAME_BYTES) return perr(p, "bad ${...} reference");
    memcpy(name, d + 2, len);
    name[len] = 0;
    return 1;
}

/* Record every ${NAME} of s that is not a built-in as an import of c. */
static int collect_imports(struct parser *p, struct component *c, const char *s)
{
    char name[REF_NAME_BYTES];
    int k;
    for (const char *at = NULL; (k = next_ref(p, s, &at, name)) > 0;) {
        if (!valid_name(name, false))
            return perr(p, "'${%s}': names are letters, digits and '_'", name);
        if (is_builtin(name)) continue;
        bool dup = false;
        for (int i = 0; i < c->nimports; i++) dup |= !strcmp(c->imports[i], name);
        if (dup) continue;
        if (c->nimports == RUN_MAX_NAMES) return perr(p, "too many imports");
        c->imports[c->nimports++] = xstrdup(name);
    }
    return k;
}

/* Core starts before any token exists: its options may name built-ins only. */
static int check_core_refs(struct parser *p, const char *s)
{
    char name[REF_NAME_BYTES];
    int k;
    for (const char *at = NULL; (k = next_ref(p, s, &at, name)) > 0;) {
        if (!is_builtin(name))
            return perr(p,
                        "core %s: core's options can use only ${DIR}, ${SOCKET} and "
                        "${SCENARIO_DIR} (core starts before any token exists)",
                        s);
    }
    return k;
}

static int parse_pattern(struct parser *p, const char *text, struct pattern *pat)
{
    size_t len = strlen(text);
    if (!len) return perr(p, "missing the text to match");
    if (len >= 2 && text[0] == '/' && text[len - 1] == '/') {
        pat->text = xstrdup(text + 1);
        pat->text[len - 2] = 0;
        pat->is_regex = true;
        int r = regcomp(&pat->re, pat->text, REG_EXTENDED | REG_NOSUB);
        if (r) {
            char msg[128];
            regerror(r, &pat->re, msg, sizeof(msg));
            return perr(p, "regular expression /%s/: %s", pat->text, msg);
        }
        return 0;
    }
    pat->text = xstrdup(text);
    pat->is_regex = false;
    return 0;
}

bool pattern_match(const struct pattern *p, const char *line)
{
    if (p->is_regex) return regexec(&p->re, line, 0, NULL, 0) == 0;
    return strstr(line, p->text) != NULL;
}

static int parse_pattern(struct parser *p, const char *text, struct pattern *pat);

/* "after-line COMPONENT TEXT": raw text like expect's. */
static int parse_after_line(struct parser *p, const char *rest)
{
    struct scenario *sc = p->sc;
    if (!sc->ncomp) return perr(p, "'after-line' must follow a 'component' line");
    struct component *c = &sc->comp[sc->ncomp - 1];
    while (*rest == ' ' || *rest == '\t') rest++;
    size_t tl = strcspn(rest, " \t");
    char target[64];
    if (!tl || tl >= sizeof(target)) return perr(p, "usage: after-line COMPONENT TEXT");
    snprintf(target, sizeof(target), "%.*s", (int)tl, rest);
    const char *text = rest + tl;
    while (*text == ' ' || *text == '\t') text++;
    if (c->nafter_line == RUN_MAX_NAMES) return perr(p, "too many after-line lines");
    struct after_line *a = &c->after_line[c->nafter_line];
    a->line = p->line;
    if (!strcmp(target, "core")) {
        a->target = RUN_CORE;
    } else {
        a->target = find_component(sc, target);
        if (a->target < 0 || a->target == sc->ncomp - 1)
            return perr(p, "after-line %s: name 'core' or a component declared above this one",
                        target);
    }
    if (parse_pattern(p, text, &a->pat)) return -1;
    c->nafter_line++;
    return 0;
}

static int parse_exit(struct parser *p, struct component *c, char **w, int n)
{
    if (n != 2) return perr(p, "usage: exit CODE | SIGNAME | any | running");
    c->exit_line = p->line;
    if (!strcmp(w[1], "any")) {
        c->exit_kind = EXIT_ANY;
        return 0;
    }
    if (!strcmp(w[1], "running")) {
        c->exit_kind = EXIT_RUNNING;
        return 0;
    }
    if (!strncmp(w[1], "SIG", 3)) {
        for (int s = 1; s < NSIG; s++) {
            const char *abbrev = sigabbrev_np(s);
            if (abbrev && !strcmp(abbrev, w[1] + 3)) {
                c->exit_kind = EXIT_SIGNAL;
                c->exit_value = s;
                return 0;
            }
        }
        return perr(p, "unknown signal %s (write e.g. SIGBUS, SIGKILL)", w[1]);
    }
    char *end;
    long v = strtol(w[1], &end, 10);
    if (*end || v < 0 || v > 255)
        return perr(p, "exit '%s': want a code 0-255, a signal name (SIGBUS), 'any' or 'running'",
                    w[1]);
    c->exit_kind = EXIT_CODE;
    c->exit_value = (int)v;
    return 0;
}

/* "user NAME|UID": whom to run the component as, with the user's primary
 * and supplementary groups (a uid without a passwd entry: the group of the
 * same number, no others). Whether the runner may is checked before a run. */
static int parse_user(struct parser *p, struct component *c, char **w, int n)
{
    if (n != 2) return perr(p, "usage: user NAME|UID");
    if (c->user_line) return perr(p, "%s has a 'user' line already", c->name);
    struct passwd *pw;
    errno = 0;
    if (strspn(w[1], "0123456789") == strlen(w[1])) {
        unsigned long v = strtoul(w[1], NULL, 10);
        if (errno || v >= 0xffffffffUL) return perr(p, "user %s: not a valid uid", w[1]);
        c->uid = (uid_t)v;
        pw = getpwuid(c->uid);
        c->gid = pw ? pw->pw_gid : (gid_t)v;
    } else {
        pw = getpwnam(w[1]);
        if (!pw)
            return perr(p,
                        "user '%s': no such user (give a name from the password database or "
                        "a uid)",
                        w[1]);
        c->uid = pw->pw_uid;
        c->gid = pw->pw_gid;
    }
    c->ngroups = 0;
    if (pw) {
        char *name = xstrdup(pw->pw_name);
        int ng = 16;
        for (;;) {
            free(c->groups);
            c->groups = calloc((size_t)ng, sizeof(gid_t));
            int want = ng;
            if (!c->groups || getgrouplist(name, c->gid, c->groups, &want) >= 0) {
                c->ngroups = c->groups ? want : 0;
                break;
            }
            if (want <= ng) break; /* cannot happen: then no supplementary groups */
            ng = want;
        }
        free(name);
        if (!c->groups) return perr(p, "out of memory");
    }
    c->user = xstrdup(w[1]);
    c->user_line = p->line;
    return 0;
}

/* Directives that belong to the component declared last. */
static int parse_component_directive(struct parser *p, char **w, int n)
{
    struct scenario *sc = p->sc;
    if (!sc->ncomp) return perr(p, "'%s' must follow a 'component' line", w[0]);
    struct component *c = &sc->comp[sc->ncomp - 1];
    if (!strcmp(w[0], "env")) {
        for (int i = 1; i < n; i++) {
            char *eq = strchr(w[i], '=');
            if (!eq || eq == w[i]) return perr(p, "env '%s': write NAME=VALUE", w[i]);
            if (c->nenv == RUN_MAX_ENV) return perr(p, "too many env lines");
            if (collect_imports(p, c, w[i])) return -1;
            c->env[c->nenv++] = xstrdup(w[i]);
        }
        return 0;
    }
    if (!strcmp(w[0], "exports")) {
        if (n < 2) return perr(p, "usage: exports NAME...");
        for (int i = 1; i < n; i++) {
            if (!valid_name(w[i], false))
                return perr(p, "token name '%s': letters, digits and '_'", w[i]);
            if (is_builtin(w[i])) return perr(p, "'%s' is a built-in variable", w[i]);
            for (int k = 0; k < sc->ncomp; k++)
                for (int e = 0; e < sc->comp[k].nexports; e++)
                    if (!strcmp(sc->comp[k].exports[e], w[i]))
                        return perr(p, "token %s is already exported by %s", w[i],
                                    sc->comp[k].name);
            if (c->nexports == RUN_MAX_NAMES) return perr(p, "too many exports");
            c->exports[c->nexports++] = xstrdup(w[i]);
        }
        return 0;
    }
    if (!strcmp(w[0], "user")) return parse_user(p, c, w, n);
    if (!strcmp(w[0], "after")) {
        if (n < 2) return perr(p, "usage: after COMPONENT...");
        for (int i = 1; i < n; i++) {
            int k = find_component(sc, w[i]);
            if (k < 0 || k == sc->ncomp - 1)
                return perr(p, "after %s: name a component declared above this one", w[i]);
            c->after[c->nafter++] = k;
        }
        return 0;
    }
    return parse_exit(p, c, w, n);
}

static int parse_component(struct parser *p, char **w, int n)
{
    struct scenario *sc = p->sc;
    if (n < 3) return perr(p, "usage: component NAME COMMAND [ARG...]");
    if (!valid_name(w[1], true) || !strcmp(w[1], "core"))
        return perr(p, "component name '%s': letters, digits, '-' and '_', not 'core'", w[1]);
    if (find_component(sc, w[1]) >= 0) return perr(p, "component %s declared twice", w[1]);
    if (sc->ncomp == RUN_MAX_COMPONENTS) return perr(p, "too many components");
    if (n - 2 > RUN_MAX_ARGS) return perr(p, "too many arguments");
    struct component *c = &sc->comp[sc->ncomp];
    memset(c, 0, sizeof(*c));
    c->name = xstrdup(w[1]);
    c->line = p->line;
    if (strstr(w[2], "${")) return perr(p, "the command itself cannot contain ${...}");
    if (resolve_command(p, w[2], &c->argv[0])) return -1;
    for (int i = 3; i < n; i++) {
        if (collect_imports(p, c, w[i])) return -1;
        c->argv[i - 2] = xstrdup(w[i]);
    }
    c->argc = n - 2;
    c->exit_kind = EXIT_CODE;
    c->exit_line = p->line;
    sc->ncomp++;
    return 0;
}

/* "expect", "expect-any", "fail-on": TARGET then the raw rest of the line. */
static int parse_rule(struct parser *p, enum rule_kind kind, const char *rest)
{
    struct scenario *sc = p->sc;
    while (*rest == ' ' || *rest == '\t') rest++;
    size_t tl = strcspn(rest, " \t");
    char target[64];
    if (!tl || tl >= sizeof(target)) return perr(p, "usage: %s COMPONENT TEXT", "expect");
    memcpy(target, rest, tl);
    target[tl] = 0;
    const char *text = rest + tl;
    while (*text == ' ' || *text == '\t') text++;
    if (sc->nrules == RUN_MAX_RULES) return perr(p, "too many expect/fail-on lines");
    struct rule *r = &sc->rules[sc->nrules];
    r->kind = kind;
    r->line = p->line;
    if (!strcmp(target, "*")) {
        if (kind == RULE_EXPECT)
            return perr(p, "'expect *' has no order to keep; write 'expect-any * TEXT'");
        r->target = RUN_ANY;
    } else if (!strcmp(target, "core")) {
        r->target = RUN_CORE;
    } else {
        r->target = find_component(sc, target);
        if (r->target < 0)
            return perr(p, "no component named '%s' (declare it with 'component' first)", target);
    }
    if (parse_pattern(p, text, &r->pat)) return -1;
    sc->nrules++;
    return 0;
}

static int parse_line(struct parser *p, char *line)
{
    struct scenario *sc = p->sc;
    while (*line == ' ' || *line == '\t') line++;
    size_t len = strlen(line);
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
        line[--len] = 0;
    if (!*line || *line == '#') return 0;
    size_t kl = strcspn(line, " \t");
    char kw[32];
    snprintf(kw, sizeof(kw), "%.*s", (int)(kl < 31 ? kl : 31), line);
    const char *rest = line + kl;
    if (!strcmp(kw, "expect")) return parse_rule(p, RULE_EXPECT, rest);
    if (!strcmp(kw, "expect-any")) return parse_rule(p, RULE_EXPECT_ANY, rest);
    if (!strcmp(kw, "fail-on")) return parse_rule(p, RULE_FAIL_ON, rest);
    if (!strcmp(kw, "after-line")) return parse_after_line(p, rest);
    if (!strcmp(kw, "require")) {
        while (*rest == ' ' || *rest == '\t') rest++;
        if (!*rest) return perr(p, "usage: require FEATURE (as faultline-core --check names it)");
        if (sc->nrequires == RUN_MAX_REQUIRES) return perr(p, "too many require lines");
        sc->require_lines[sc->nrequires] = p->line;
        sc->requires[sc->nrequires++] = xstrdup(rest);
        return 0;
    }

    char buf[len + 1];
    char *w[RUN_MAX_ARGS + 2];
    int n = split(p, line, buf, w, RUN_MAX_ARGS + 2);
    if (n < 0) return -1;
    if (!strcmp(kw, "component")) return parse_component(p, w, n);
    if (!strcmp(kw, "env") || !strcmp(kw, "exports") || !strcmp(kw, "after") ||
        !strcmp(kw, "exit") || !strcmp(kw, "user"))
        return parse_component_directive(p, w, n);
    if (!strcmp(kw, "timeout")) {
        char *end;
        long v = n == 2 ? strtol(w[1], &end, 10) : 0;
        if (n != 2 || *end || v <= 0 || v > 86400)
            return perr(p, "usage: timeout SECONDS (1-86400)");
        sc->timeout_s = (int)v;
        return 0;
    }
    if (!strcmp(kw, "core")) {
        if (n < 2) return perr(p, "usage: core OPTION... (faultline-core's options)");
        for (int i = 1; i < n; i++) {
            if (!strcmp(w[i], "--socket") || !strncmp(w[i], "--socket=", 9) ||
                !strcmp(w[i], "--check"))
                return perr(p, "core %s: faultline-run chooses the socket and runs the check",
                            w[i]);
            if (!strcmp(w[i], "-q") || !strcmp(w[i], "--quiet"))
                return perr(p, "core %s would hide the 'listening on' line faultline-run waits for",
                            w[i]);
            if (check_core_refs(p, w[i]) < 0) return -1;
            if (sc->ncore_args == RUN_MAX_ARGS - 4) return perr(p, "too many core options");
            sc->core_args[sc->ncore_args++] = xstrdup(w[i]);
        }
        sc->core_line = p->line;
        return 0;
    }
    return perr(p,
                "unknown directive '%s' (known: timeout, core, require, component, env, exports, "
                "after, after-line, exit, user, expect, expect-any, fail-on)",
                kw);
}

/* Whole-file checks: every import has an exporter and exactly one importer. */
static int check_tokens(struct parser *p)
{
    struct scenario *sc = p->sc;
    for (int i = 0; i < sc->ncomp; i++) {
        struct component *c = &sc->comp[i];
        p->line = c->line;
        for (int m = 0; m < c->nimports; m++) {
            int exporter = -1;
            for (int k = 0; k < sc->ncomp; k++)
                for (int e = 0; e < sc->comp[k].nexports; e++)
                    if (!strcmp(sc->comp[k].exports[e], c->imports[m])) exporter = k;
            if (exporter < 0)
                return perr(p, "%s uses ${%s}, but no component has 'exports %s'", c->name,
                            c->imports[m], c->imports[m]);
            if (exporter == i)
                return perr(p, "%s uses ${%s}, which it exports itself", c->name, c->imports[m]);
            for (int k = 0; k < i; k++)
                for (int e = 0; e < sc->comp[k].nimports; e++)
                    if (!strcmp(sc->comp[k].imports[e], c->imports[m]))
                        return perr(p,
                                    "${%s} is used by %s and %s, but a token can be imported "
                                    "only once: export one token per importer",
                                    c->imports[m], sc->comp[k].name, c->name);
        }
    }
    return 0;
}

int scenario_load(const char *path, const char *const *search, struct scenario *sc, char *err,
                  size_t errlen)
{
    memset(sc, 0, sizeof(*sc));
    sc->path = xstrdup(path);
    sc->timeout_s = 60;
    struct parser p = {.sc = sc, .search = search, .err = err, .errlen = errlen};
    char *slash = strrchr(path, '/');
    sc->dir = slash ? strndup(path, (size_t)(slash - path)) : xstrdup(".");
    if (slash && slash == path) sc->dir[0] = '/', sc->dir[1] = 0;
    sc->name = xstrdup(slash ? slash + 1 : path);
    size_t nl = strlen(sc->name);
    if (nl > 9 && !strcmp(sc->name + nl - 9, ".scenario")) sc->name[nl - 9] = 0;

    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int r = 0;
    while (getline(&line, &cap, f) >= 0) {
        p.line++;
        line[strcspn(line, "\n")] = 0;
        if ((r = parse_line(&p, line))) break;
    }
    free(line);
    fclose(f);
    if (r) return r;
    p.line = 0;
    if (!sc->ncomp) {
        snprintf(err, errlen, "%s:1: no component (add 'component NAME COMMAND ARGS...')", path);
        return -1;
    }
    bool self_ending = false, expects = false;
    for (int i = 0; i < sc->ncomp; i++) self_ending |= sc->comp[i].exit_kind != EXIT_RUNNING;
    for (int i = 0; i < sc->nrules; i++) expects |= sc->rules[i].kind != RULE_FAIL_ON;
    if (!self_ending && !expects) {
        snprintf(err, errlen,
                 "%s:%d: every component runs until the end and nothing is expected, so the "
                 "scenario would end at once: add an 'expect' line or a component that exits",
                 path, sc->comp[0].line);
        return -1;
    }
    return check_tokens(&p);
}
