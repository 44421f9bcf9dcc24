/*
 * faultline-run SCENARIO...: runs scenario files (doc/faultline-run.md).
 * Each scenario runs in a worker process of its own, so that scenarios run
 * in parallel (-j) cannot see each other's children, and a worker that dies
 * takes nothing of another scenario along.
 */
#include "report.h"
#include "run.h"
#include "../../common/config.h"
#include "fl_version.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: faultline-run [OPTIONS] SCENARIO...\n"
               "Runs each scenario with its own faultline-core: starts its components, checks\n"
               "their output and exit codes, stops everything. Format: doc/faultline-run.md.\n"
               "\n"
               "  --tap            TAP on stdout (the components' output as '# ' comments)\n"
               "  --junit FILE     also write JUnit XML to FILE\n"
               "  --keep-going     run the remaining scenarios after one failed\n"
               "  -j N             run up to N scenarios at once, each with its own core\n"
               "  --path DIR       look for component commands in DIR first (repeatable;\n"
               "                   also $FAULTLINE_RUN_PATH, colon-separated)\n"
               "  --core PATH      the faultline-core to run (default: $FAULTLINE_CORE, the\n"
               "                   build tree's, the one next to faultline-run, $PATH)\n"
               "  --tail N         lines of each log shown on failure (default 20)\n"
               "  --shard K/N      run only shard K of N (1 <= K <= N): of the scenarios\n"
               "                   sorted by path, the K-th, (K+N)-th, ...\n"
               "  -h, --help       this text\n"
               "  --version        print the version and commit, and exit\n"
               "Exit: 0 all passed, 1 a scenario failed (or the run was interrupted), 2 a\n"
               "scenario is broken, 77 every scenario was skipped.\n");
}

static bool executable(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISREG(st.st_mode) && !access(path, X_OK);
}

static char *find_core(const char *opt)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    if (opt) return strdup(opt);
    const char *env = getenv("FAULTLINE_CORE");
    if (env && *env) return strdup(env);
    if (!self_dir(dir, sizeof(dir))) {
        /* build/src/tools/run/faultline-run -> build/faultline-core */
        snprintf(path, sizeof(path), "%s/../../../faultline-core", dir);
        if (executable(path)) return realpath(path, NULL);
        snprintf(path, sizeof(path), "%s/faultline-core", dir);
        if (executable(path)) return strdup(path);
    }
    char *dirs = strdup(getenv("PATH") ? getenv("PATH") : ""), *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof(path), "%s/faultline-core", d);
        if (executable(path)) {
            free(dirs);
            return strdup(path);
        }
    }
    free(dirs);
    return NULL;
}

/* faultline-ctl is optional: the failure report uses it if it was built. */
static char *find_ctl(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    if (self_dir(dir, sizeof(dir))) return NULL;
    snprintf(path, sizeof(path), "%s/../ctl/faultline-ctl", dir);
    if (executable(path)) return realpath(path, NULL);
    snprintf(path, sizeof(path), "%s/faultline-ctl", dir);
    if (executable(path)) return strdup(path);
    return NULL;
}

/* --- require: the kernel features faultline-core --check reports --- */

static char check_out[8192];
static int check_status = -1;

/* The line of the check's report that names want, preferring an "ok" one. */
static bool check_line(const char *want, char *line, size_t len)
{
    bool found = false;
    for (const char *l = check_out; *l;) {
        size_t ll = strcspn(l, "\n");
        char one[512];
        snprintf(one, sizeof(one), "%.*s", (int)(ll < 511 ? ll : 511), l);
        if (strstr(one, want) && (!found || !strncmp(one, "ok", 2))) {
            snprintf(line, len, "%s", one);
            found = true;
        }
        l += ll + (l[ll] == '\n');
    }
    return found;
}

/* NULL if the scenario can run here, else why it is skipped. */
static const char *missing_feature(const char *core, const struct scenario *sc, char *buf,
                                   size_t len)
{
    if (!sc->nrequires) return NULL;
    if (check_status == -1) {
        char *argv[] = {(char *)core, "--check", NULL};
        check_status = proc_capture(argv, check_out, sizeof(check_out), 30000);
    }
    char line[512];
    for (int i = 0; i < sc->nrequires; i++) {
        const char *want = sc->requires[i];
        if (!check_line(want, line, sizeof(line)))
            snprintf(buf, len, "%s:%d: requires '%s', which faultline-core --check does not list",
                     sc->path, sc->require_lines[i], want);
        else if (strncmp(line, "ok", 2))
            snprintf(buf, len, "%s:%d: requires '%s': %s", sc->path, sc->require_lines[i], want,
                     line);
        else
            continue;
        return buf;
    }
    /* Core refuses to start on a kernel that fails its check: nothing a
     * scenario requires can run then. */
    if (check_status != 0) {
        snprintf(buf, len, "faultline-core --check fails on this kernel, so core cannot start");
        return buf;
    }
    return NULL;
}

/* NULL if the scenario's 'user' lines can be honoured here, else why it is
 * skipped: only root can start a process as another user. */
static const char *missing_root(const struct scenario *sc, char *buf, size_t len)
{
    if (geteuid() == 0) return NULL;
    for (int i = 0; i < sc->ncomp; i++) {
        const struct component *c = &sc->comp[i];
        if (!c->user_line || c->uid == geteuid()) continue;
        snprintf(buf, len, "%s:%d: runs %s as user %s, which needs faultline-run to run as root",
                 sc->path, c->user_line, c->name, c->user);
        return buf;
    }
    return NULL;
}

/* --- workers --- */

struct worker {
    int idx; /* into the results */
    pid_t pid;
    int out_fd, res_fd;
    long long started;
    size_t printed; /* output bytes already echoed (streaming) */
};

static void append(struct result *r, const char *buf, size_t n)
{
    char *o = realloc(r->output, r->output_len + n + 1);
    if (!o) return;
    memcpy(o + r->output_len, buf, n);
    r->output = o;
    r->output_len += n;
    o[r->output_len] = 0;
}

/* Echo complete lines of r's output from *printed on (all of it at EOF). */
static void echo(const struct result *r, size_t *printed, bool tap, bool all)
{
    while (*printed < r->output_len) {
        const char *s = r->output + *printed;
        const char *nl = memchr(s, '\n', r->output_len - *printed);
        if (!nl && !all) break;
        size_t n = nl ? (size_t)(nl - s) : r->output_len - *printed;
        printf("%s%.*s\n", tap ? "# " : "", (int)n, s);
        *printed += n + (nl ? 1 : 0);
    }
    fflush(stdout);
}

static pid_t start_worker(const struct scenario *sc, const struct run_opts *o, struct worker *w,
                          const sigset_t *orig)
{
    int out[2], res[2];
    if (pipe(out) || pipe(res)) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(RUN_FAIL);
        /* With us gone its output has no reader; it must still clean up. */
        signal(SIGPIPE, SIG_IGN);
        sigprocmask(SIG_SETMASK, orig, NULL);
        close(out[0]);
        close(res[0]);
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(out[1]);
        char reason[1024];
        int code = scenario_run(sc, o, reason, sizeof(reason));
        fflush(stdout);
        dprintf(res[1], "%d %s", code, reason);
        _exit(code);
    }
    close(out[1]);
    close(res[1]);
    w->pid = pid;
    w->out_fd = out[0];
    w->res_fd = res[0];
    w->started = now_ms();
    w->printed = 0;
    return pid;
}

static void finish_worker(struct worker *w, struct result *r, int status)
{
    char buf[1200];
    ssize_t n = read(w->res_fd, buf, sizeof(buf) - 1);
    close(w->res_fd);
    close(w->out_fd);
    r->seconds = (double)(now_ms() - w->started) / 1000.0;
    int code;
    char *sp;
    if (n > 0 && (buf[n] = 0, sscanf(buf, "%d", &code) == 1) && (sp = strchr(buf, ' '))) {
        r->code = code;
        r->reason = strdup(sp + 1);
        return;
    }
    char how[64];
    proc_status_str(status, how, sizeof(how));
    r->code = RUN_FAIL;
    if (asprintf(&r->reason, "the worker running it %s", how) < 0) r->reason = NULL;
}

/* Live until exit, and reachable from here for LeakSanitizer's sake. */
static struct run_opts o;
static struct scenario *sc;
static struct result *res;
static bool *todo;
static char *envp_copy;

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"tap", no_argument, NULL, 't'},         {"junit", required_argument, NULL, 'u'},
        {"keep-going", no_argument, NULL, 'k'},  {"path", required_argument, NULL, 'p'},
        {"core", required_argument, NULL, 'c'},  {"tail", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},        {"version", no_argument, NULL, 'V'},
        {"shard", required_argument, NULL, 's'}, {NULL, 0, NULL, 0}};
    bool tap = false, keep_going = false;
    const char *junit = NULL, *core_opt = NULL;
    int jobs = 1, tail = 20, npath = 0;
    int shard_k = 0, shard_n = 0;
    const char *search[66] = {0};
    int c;
    while ((c = getopt_long(argc, argv, "j:h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': tap = true; break;
        case 'u': junit = optarg; break;
        case 'k': keep_going = true; break;
        case 'c': core_opt = optarg; break;
        case 'n':
        case 'j': { /* counts, parsed as everywhere (src/common/config.c) */
            uint64_t v;
            if (fl_config_value("faultline-run", c == 'n' ? "--tail" : "-j", optarg,
                                FL_CONFIG_COUNT, 1, c == 'n' ? 100000 : 64, &v) < 0)
                return RUN_BROKEN;
            if (c == 'n')
                tail = (int)v;
            else
                jobs = (int)v;
            break;
        }
        case 'p':
            if (npath < 32) search[npath++] = optarg;
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("faultline-run %s\n", FL_VERSION_STRING); return 0;
        case 's':
            if (shard_parse(optarg, &shard_k, &shard_n) < 0) {
                fprintf(stderr, "faultline-run: --shard wants K/N with 1 <= K <= N, not '%s'\n",
                        optarg);
                return RUN_BROKEN;
            }
            break;
        default: usage(stderr); return RUN_BROKEN;
        }
    }
    if (optind == argc) {
        usage(stderr);
        return RUN_BROKEN;
    }
    if (shard_n) { /* this job's share of the scenarios (shard.c) */
        int all = argc - optind;
        argc = optind + shard_select(argv + optind, all, shard_k, shard_n);
        if (argc == optind) {
            if (tap)
                printf("TAP version 13\n1..0 # SKIP shard %d/%d: none of %d\n", shard_k, shard_n,
                       all);
            else
                printf("faultline-run: shard %d/%d has none of the %d scenarios\n", shard_k,
                       shard_n, all);
            return RUN_PASS;
        }
    }
    const char *env_path = getenv("FAULTLINE_RUN_PATH");
    char *save = NULL;
    envp_copy = env_path ? strdup(env_path) : NULL;
    for (char *d = envp_copy ? strtok_r(envp_copy, ":", &save) : NULL; d && npath < 64;
         d = strtok_r(NULL, ":", &save))
        search[npath++] = d;
    /* Run from a build tree, the examples are found without --path. */
    char dir[PATH_MAX], examples[PATH_MAX + 32];
    struct stat st;
    if (!self_dir(dir, sizeof(dir))) {
        snprintf(examples, sizeof(examples), "%s/../../../examples", dir);
        if (!stat(examples, &st) && S_ISDIR(st.st_mode)) search[npath++] = examples;
    }

    o = (struct run_opts){.core = find_core(core_opt), .ctl = find_ctl(), .tail_lines = tail};
    if (!o.core || !executable(o.core)) {
        fprintf(stderr,
                "faultline-run: faultline-core not found (%s); build it, or name it with --core "
                "or $FAULTLINE_CORE\n",
                o.core ? o.core : "not in the build tree, next to faultline-run or in $PATH");
        return RUN_BROKEN;
    }

    int n = argc - optind;
    sc = calloc((size_t)n, sizeof(*sc));
    res = calloc((size_t)n, sizeof(*res));
    if (!sc || !res) return RUN_BROKEN;
    if (tap) printf("TAP version 13\n1..%d\n", n);
    int reported = 0, failures = 0, broken = 0, skipped = 0, passed = 0;
    bool stop_starting = false, interrupted = false;

    /* Parse everything first: a broken scenario should not wait for the
     * others to run before it is reported. */
    todo = calloc((size_t)n, sizeof(bool));
    for (int i = 0; i < n; i++) {
        char err[1024], why[1024];
        res[i].path = argv[optind + i];
        res[i].name = argv[optind + i];
        if (scenario_load(argv[optind + i], search, &sc[i], err, sizeof(err))) {
            res[i].code = RUN_BROKEN;
            res[i].reason = strdup(err);
            fprintf(tap ? stdout : stderr, "%sfaultline-run: broken scenario: %s\n",
                    tap ? "# " : "", err);
        } else if (missing_root(&sc[i], why, sizeof(why)) ||
                   missing_feature(o.core, &sc[i], why, sizeof(why))) {
            res[i].name = sc[i].name;
            res[i].code = RUN_SKIP;
            res[i].reason = strdup(why);
            if (!tap) printf("[faultline-run] SKIP %s: %s\n", sc[i].name, why);
        } else {
            res[i].name = sc[i].name;
            todo[i] = true;
            continue;
        }
        if (tap) report_tap_line(++reported, &res[i]);
        if (res[i].code == RUN_BROKEN && !keep_going) stop_starting = true;
    }

    /* A shell starts background jobs with SIGINT ignored, and an ignored
     * signal never reaches a signalfd: take it back. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t mask, orig;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, &orig);
    int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    /* A worker killed outright leaves its components' orphans to us. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);

    struct worker w[64];
    int active = 0, next = 0;
    for (;;) {
        while (!stop_starting && active < jobs && next < n) {
            if (!todo[next]) {
                next++;
                continue;
            }
            fflush(stdout);
            w[active].idx = next;
            if (start_worker(&sc[next], &o, &w[active], &orig) < 0) {
                res[next].code = RUN_FAIL;
                res[next].reason = strdup("cannot fork a worker");
            } else {
                active++;
            }
            todo[next++] = false;
        }
        if (!active) break;
        struct pollfd fds[65];
        fds[0] = (struct pollfd){.fd = sigfd, .events = POLLIN};
        for (int i = 0; i < active; i++)
            fds[i + 1] = (struct pollfd){.fd = w[i].out_fd, .events = POLLIN};
        if (poll(fds, (nfds_t)active + 1, -1) < 0 && errno != EINTR) break;
        for (int i = 0; i < active; i++) {
            if (!fds[i + 1].revents) continue;
            char buf[8192];
            ssize_t k = read(w[i].out_fd, buf, sizeof(buf));
            if (k > 0) {
                append(&res[w[i].idx], buf, (size_t)k);
                if (jobs == 1) echo(&res[w[i].idx], &w[i].printed, tap, false);
            }
        }
        struct signalfd_siginfo si;
        while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
            if (si.ssi_signo == SIGCHLD) continue;
            interrupted = stop_starting = true;
            for (int i = 0; i < active; i++) kill(w[i].pid, (int)si.ssi_signo);
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (int i = 0; i < active; i++) {
                if (w[i].pid != pid) continue;
                struct result *r = &res[w[i].idx];
                /* The rest of its output is in the pipe already. */
                char buf[8192];
                ssize_t k;
                while ((k = read(w[i].out_fd, buf, sizeof(buf))) > 0) append(r, buf, (size_t)k);
                echo(r, &w[i].printed, tap, true);
                finish_worker(&w[i], r, status);
                if (tap) report_tap_line(++reported, r);
                if (r->code != RUN_PASS && r->code != RUN_SKIP && !keep_going) stop_starting = true;
                w[i] = w[--active];
                break;
            }
        }
    }
    /* Orphans of a worker that died without cleaning up. */
    proc_kill_all_children();

    for (int i = 0; i < n; i++) {
        if (todo[i]) {
            res[i].code = RUN_SKIP;
            res[i].reason = strdup(interrupted ? "not run: interrupted"
                                               : "not run: an earlier scenario failed "
                                                 "(--keep-going runs all)");
            if (tap) report_tap_line(++reported, &res[i]);
        }
        switch (res[i].code) {
        case RUN_PASS: passed++; break;
        case RUN_SKIP: skipped++; break;
        case RUN_BROKEN: broken++; break;
        default: failures++;
        }
    }
    if (!tap) {
        for (int i = 0; i < n; i++)
            if (res[i].code != RUN_PASS)
                printf("%s %s: %s\n",
                       res[i].code == RUN_SKIP     ? "SKIP"
                       : res[i].code == RUN_BROKEN ? "BROKEN"
                                                   : "FAIL",
                       res[i].name, res[i].reason ? res[i].reason : "");
        printf("faultline-run: %d passed, %d failed, %d broken, %d skipped%s\n", passed, failures,
               broken, skipped, interrupted ? " (interrupted)" : "");
    }
    if (junit && report_junit(junit, res, n)) {
        fprintf(stderr, "faultline-run: writing %s: %s\n", junit, strerror(errno));
        return RUN_FAIL;
    }
    if (interrupted) return RUN_FAIL;
    if (broken) return RUN_BROKEN;
    if (failures) return RUN_FAIL;
    if (skipped == n) return RUN_SKIP;
    return RUN_PASS;
}
