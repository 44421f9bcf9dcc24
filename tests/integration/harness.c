#include "harness.h"

#include "../../src/common/protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct t_core *current;

long t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void t_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int t_poll_until(struct pollfd *pf, int n, long end, const char *what)
{
    for (;;) {
        long left = end - t_now_ms();
        int r = poll(pf, (nfds_t)n, left > 0 ? (int)left : 0);
        if (r > 0) return r;
        if (r < 0 && errno != EINTR) T_FAILF("poll waiting for %s: %s", what, strerror(errno));
        if (r == 0) T_FAILF("no %s within %d ms", what, T_WAIT_MS);
    }
}

/* ---- failing, skipping, and the cases ---- */

/* What a case's processes said about its end, shared with the runner. */
struct outcome {
    pid_t case_pid;
    atomic_int child_said;
    char reason[512];       /* the case's own process: its FAIL or SKIP reason */
    char child_reason[512]; /* the first failure of a process the case spawned */
};
static struct outcome *outcome;

static void keep_reason(const char *text)
{
    if (!outcome) return;
    if (getpid() == outcome->case_pid) {
        if (!outcome->reason[0]) snprintf(outcome->reason, sizeof(outcome->reason), "%s", text);
    } else if (!atomic_exchange(&outcome->child_said, 1)) {
        snprintf(outcome->child_reason, sizeof(outcome->child_reason), "%s", text);
    }
}

_Noreturn void t_fail_at(const char *file, int line, const char *fmt, ...)
{
    char msg[400], text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    snprintf(text, sizeof(text), "%s:%d: %s", base ? base + 1 : file, line, msg);
    fprintf(stderr, "%s\n", text);
    keep_reason(text);
    exit(T_FAIL);
}

_Noreturn void t_skip(const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "skipped: %s\n", msg);
    keep_reason(msg);
    exit(T_SKIP);
}

void t_need_root(const char *why)
{
    if (geteuid() != 0) t_skip("needs root %s", why);
}

/* Kill and reap what a case left behind: processes it spawned and did not
 * end (they were re-parented to the runner, a subreaper). */
static void reap_leftovers(void)
{
    for (int round = 0; round < 8; round++) {
        char line[4096];
        if (t_proc_line(line, sizeof(line), "/proc/self/task/%d/children", (int)getpid()) < 0 ||
            !line[0])
            break;
        for (char *s = line, *end; *s; s = end) {
            long pid = strtol(s, &end, 10);
            if (end == s) break;
            if (pid > 0) kill((pid_t)pid, SIGKILL);
        }
        while (waitpid(-1, NULL, 0) > 0) continue;
    }
    while (waitpid(-1, NULL, WNOHANG) > 0) continue;
}

/* Run one case in a process of its own; print its line; return its result. */
static int run_case(const struct t_case *c)
{
    memset(outcome, 0, sizeof(*outcome));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        printf("FAIL %s: fork: %s\n", c->name, strerror(errno));
        return T_FAIL;
    }
    if (pid == 0) {
        outcome->case_pid = getpid();
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the runner killed (a timeout): the case too */
        c->fn();
        exit(T_PASS);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            printf("FAIL %s: waitpid: %s\n", c->name, strerror(errno));
            return T_FAIL;
        }
    reap_leftovers();
    if (WIFEXITED(st) && WEXITSTATUS(st) == T_PASS) {
        printf("PASS %s\n", c->name);
        return T_PASS;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == T_SKIP) {
        printf("SKIP %s: %s\n", c->name, outcome->reason[0] ? outcome->reason : "no reason given");
        return T_SKIP;
    }
    char why[600];
    if (outcome->reason[0])
        snprintf(why, sizeof(why), "%s", outcome->reason);
    else if (WIFSIGNALED(st))
        snprintf(why, sizeof(why), "killed by signal %d (%s)", WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
    else
        snprintf(why, sizeof(why), "exit status %d (its output above says why)", WEXITSTATUS(st));
    if (outcome->child_reason[0] && strcmp(outcome->child_reason, outcome->reason))
        printf("FAIL %s: %s (first failure in a process it spawned: %s)\n", c->name, why,
               outcome->child_reason);
    else
        printf("FAIL %s: %s\n", c->name, why);
    return T_FAIL;
}

int t_main(int argc, char **argv, const struct t_case *cases, size_t n)
{
    const char *only[32];
    size_t nonly = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-l")) {
            for (size_t k = 0; k < n; k++) printf("%s\n", cases[k].name);
            return T_PASS;
        }
        const char *name = argv[i];
        if (!strcmp(argv[i], "-f") && i + 1 < argc)
            name = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr,
                    "usage: %s [-l] [[-f] NAME]...\n"
                    "  -l       list the cases\n"
                    "  -f NAME  run only this case (repeatable); without, run every case\n",
                    argv[0]);
            return strcmp(argv[i], "-h") ? 2 : T_PASS;
        }
        size_t k = 0;
        while (k < n && strcmp(cases[k].name, name)) k++;
        if (k == n) {
            fprintf(stderr, "%s: no case named \"%s\" (-l lists them)\n", argv[0], name);
            return 2;
        }
        if (nonly < sizeof(only) / sizeof(only[0])) only[nonly++] = name;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    outcome =
        mmap(NULL, sizeof(*outcome), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (outcome == MAP_FAILED) {
        perror("mmap");
        return T_FAIL;
    }
    /* What a case leaves behind comes to this process, which ends it. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    int passed = 0, failed = 0, skipped = 0;
    for (size_t k = 0; k < n; k++) {
        bool selected = !nonly;
        for (size_t j = 0; j < nonly; j++) selected |= !strcmp(only[j], cases[k].name);
        if (!selected) continue;
        switch (run_case(&cases[k])) {
        case T_PASS: passed++; break;
        case T_SKIP: skipped++; break;
        default: failed++; break;
        }
    }
    return failed ? T_FAIL : !passed && skipped ? T_SKIP : T_PASS;
}

/* ---- the core ---- */

/* A failing test shows the end of core's log: in CI that is the why. */
static void stop_at_exit(int status, void *arg)
{
    (void)arg;
    if (current && current->pid > 0 && getpid() != current->pid) {
        /* Before core goes: then this process's agent exits (70), core lost. */
        if (status != T_PASS && status != T_SKIP) {
            char cmd[200];
            fprintf(stderr, "--- the last lines of faultline-core's log (%s):\n", current->log);
            snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", current->log);
            if (system(cmd)) {
            }
        }
        kill(current->pid, SIGKILL);
        waitpid(current->pid, NULL, 0);
        current->pid = 0;
        unlink(current->log);
        rmdir(current->dir);
    }
}

int t_core_argv(const char **argv, int max)
{
    T_ASSERT(max >= 8);
    const char *core = getenv("FAULTLINE_CORE");
    int n = 0;
    argv[n++] = core ? core : "faultline-core";
    argv[n++] = "-v";
    argv[n++] = "-v";
    const char *backend = getenv("FL_TEST_BACKEND");
    if (backend) {
        argv[n++] = "--backend";
        argv[n++] = backend;
    }
    const char *uffd_read = getenv("FL_TEST_UFFD_READ");
    if (uffd_read && *uffd_read) {
        argv[n++] = "--uffd-read";
        argv[n++] = uffd_read;
    }
    argv[n] = NULL;
    return n;
}

pid_t t_core_exec(int out, const char *const more[], void (*prep)(void *), void *arg)
{
    const char *argv[32];
    int n = t_core_argv(argv, 24);
    for (int i = 0; more && more[i] && n < 31; i++) argv[n++] = more[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(out, 1);
        dup2(out, 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (prep) prep(arg);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

int t_core_run(const char *const more[], char *said, size_t len)
{
    FILE *tmp = tmpfile();
    T_ASSERT(tmp);
    int code =
        t_wait_within(t_core_exec(fileno(tmp), more, NULL, NULL), T_WAIT_MS, "faultline-core");
    rewind(tmp);
    size_t n = fread(said, 1, len - 1, tmp);
    said[n] = 0;
    fclose(tmp);
    return code;
}

struct t_core *t_core_start(const char *opt, ...)
{
    struct t_core *c = calloc(1, sizeof(*c));
    snprintf(c->dir, sizeof(c->dir), "/tmp/fltest-XXXXXX");
    T_ASSERT(mkdtemp(c->dir));
    snprintf(c->socket, sizeof(c->socket), "%s/core.sock", c->dir);
    snprintf(c->log, sizeof(c->log), "%s/core.log", c->dir);
    setenv("FAULTLINE_SOCKET", c->socket, 1);

    const char *argv[32];
    int n = t_core_argv(argv, 32);
    va_list ap;
    va_start(ap, opt);
    for (const char *o = opt; o && n < 30; o = va_arg(ap, const char *)) argv[n++] = o;
    va_end(ap);
    argv[n] = NULL;

    const char *uid = getenv("FL_TEST_CORE_UID");
    if (uid) T_ASSERT(chown(c->dir, (uid_t)atoi(uid), (gid_t)atoi(uid)) == 0);
    c->pid = fork();
    T_ASSERT(c->pid >= 0);
    if (c->pid == 0) {
        int fd = open(c->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        dup2(fd, 2);
        dup2(fd, 1); /* not the test's stdout: meson waits for that to close */
        /* A test that dies without its atexit handler (a sanitizer's _exit, a
         * signal) takes its core with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (uid && (setgid((gid_t)atoi(uid)) < 0 || setuid((uid_t)atoi(uid)) < 0)) _exit(126);
        const char *nofile = getenv("FL_TEST_CORE_NOFILE");
        if (nofile) {
            struct rlimit rl = {.rlim_cur = strtoul(nofile, NULL, 0), .rlim_max = rl.rlim_cur};
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    current = c;
    on_exit(stop_at_exit, NULL);
    /* Ready when it says so: a probe connection would be a session of its
     * own, still open in core when a test counts core's descriptors. */
    while (!t_core_log_contains(c, "listening on")) {
        int st;
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            fprintf(stderr, "faultline-core exited at start-up; its log:\n");
            char cmd[200];
            snprintf(cmd, sizeof(cmd), "cat %s >&2", c->log);
            if (system(cmd)) {
            }
            c->pid = 0;
            T_FAILF("faultline-core exited at start-up (status %#x)", st);
        }
        t_sleep_ms(5);
    }
    return c;
}

int t_core_stop(struct t_core *c)
{
    int st = -1;
    kill(c->pid, SIGTERM);
    waitpid(c->pid, &st, 0);
    c->pid = 0;
    /* A core that did not exit 0 says why in its log (LeakSanitizer's report, too). */
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char cmd[200];
        fprintf(stderr, "--- faultline-core exited with status %#x; the end of its log:\n", st);
        snprintf(cmd, sizeof(cmd), "tail -n 60 %s >&2", c->log);
        if (system(cmd)) {
        }
    }
    struct stat sb;
    if (stat(c->socket, &sb) == 0) {
        fprintf(stderr, "core left its socket %s behind\n", c->socket);
        return -1;
    }
    if (getenv("FL_TEST_SHOW_LOG")) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "cat %s >&2", c->log);
        if (system(cmd)) {
        }
    }
    unlink(c->log);
    rmdir(c->dir);
    if (current == c) current = NULL;
    free(c);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int t_core_fd_count(struct t_core *c)
{
    return t_proc_fd_count(c->pid);
}

long t_core_status_kb(struct t_core *c, const char *field)
{
    return t_proc_status_kb(c->pid, field);
}

int t_core_log_count(struct t_core *c, const char *text)
{
    return t_file_lines_with(c->log, INT_MAX, text, (const char *)NULL);
}

int t_core_log_contains(struct t_core *c, const char *text)
{
    return t_file_lines_with(c->log, 1, text, (const char *)NULL) > 0;
}

int t_core_log_line_has(struct t_core *c, const char *text, ...)
{
    va_list ap;
    va_start(ap, text);
    int n = t_file_lines_withv(c->log, 1, text, ap);
    va_end(ap);
    return n > 0;
}

int t_core_log_names(struct t_core *c, pid_t pid, const char *text)
{
    char who[48];
    snprintf(who, sizeof(who), "(pid %d (", (int)pid);
    return t_file_lines_with(c->log, 1, who, text, (const char *)NULL) > 0;
}

/* ---- sessions and memory ---- */

struct fl_env *t_env(void)
{
    struct fl_env *env = NULL;
    T_ERR(fl_env_open(&env, NULL), 0);
    return env;
}

void *t_import_attach(struct fl_env *env, const char *token)
{
    fl_cap ds;
    T_ERR(fl_cap_import(env, token, &ds), 0);
    int r = 0;
    void *p = fl_attach(env, ds, &r);
    if (!p) T_FAILF("attaching an imported dataspace: %s", fl_error_name(r));
    return p;
}

void *t_ram(struct fl_env *env, size_t size, fl_cap *ds)
{
    T_ERR(fl_ram_alloc(env, size, ds), 0);
    int r = 0;
    void *p = fl_attach(env, *ds, &r);
    if (!p) T_FAILF("attaching a RAM dataspace of %zu bytes: %s", size, fl_error_name(r));
    return p;
}

unsigned char *t_ram_pages(struct fl_env *env, size_t pages, unsigned char first, fl_cap *ds)
{
    unsigned char *p = t_ram(env, pages * 4096, ds);
    for (size_t i = 0; i < pages; i++) memset(p + i * 4096, (unsigned char)(first + i), 4096);
    return p;
}

void t_session_works(struct fl_env *env, size_t pages, unsigned char seed)
{
    size_t size = pages * 4096, got = 0;
    fl_cap ds;
    volatile unsigned char *p = t_ram(env, size, &ds);
    for (size_t i = 0; i < size; i++) T_EQ(p[i], 0);
    for (size_t i = 0; i < size; i++) p[i] = (unsigned char)(i * 31 + seed);
    for (size_t i = 0; i < size; i++) T_EQ(p[i], (unsigned char)(i * 31 + seed));
    T_ERR(fl_dataspace_size(env, ds, &got), 0);
    T_EQ(got, size);
    T_ERR(fl_detach(env, (const void *)p), 0);
    T_ERR(fl_ram_free(env, ds), 0);
    struct fl_session_info info;
    T_ERR(fl_env_session_info(env, &info), 0);
}

void *t_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    T_ASSERT(p != MAP_FAILED);
    return p;
}

void t_attach_at(struct fl_env *env, fl_cap rm, fl_cap ds, size_t off, size_t size, uintptr_t at,
                 int rights)
{
    struct fl_attr a = {.size = size,
                        .offset = off,
                        .use_at = true,
                        .at = at,
                        .writeable = (rights & T_W) != 0,
                        .executable = (rights & T_X) != 0};
    struct fl_range r = {0, 0};
    T_ERR(fl_region_map_attach(env, rm, ds, &a, &r), 0);
    T_EQ(r.start, at);
    if (size) T_EQ(r.num_bytes, size);
}

fl_cap t_ram_at(struct fl_env *env, fl_cap rm, uintptr_t at, size_t size, int fill)
{
    fl_cap ram;
    void *p = t_ram(env, size, &ram);
    memset(p, fill, size);
    T_ERR(fl_detach(env, p), 0);
    struct fl_attr a = {.use_at = true, .at = at, .writeable = true};
    T_ERR(fl_region_map_attach(env, rm, ram, &a, NULL), 0);
    return ram;
}

struct fl_session_info t_info(struct fl_env *env)
{
    struct fl_session_info i;
    T_ERR(fl_env_session_info(env, &i), 0);
    return i;
}

void t_info_is_at(const char *file, int line, struct fl_env *env, uint64_t ram_used,
                  uint64_t cap_used)
{
    struct fl_session_info i;
    int r = fl_env_session_info(env, &i);
    if (r != 0 || i.ram_used != ram_used || i.cap_used != cap_used)
        t_fail_at(file, line,
                  "session info: r=%d ram_used %llu cap_used %llu, expected ram_used %llu "
                  "cap_used %llu",
                  r, (unsigned long long)i.ram_used, (unsigned long long)i.cap_used,
                  (unsigned long long)ram_used, (unsigned long long)cap_used);
}

struct fl_env *t_pd_claim(const char *token, struct fl_session_info *info)
{
    struct fl_env_config cfg = {.pd_token = token};
    struct fl_env *env;
    T_ERR(fl_env_open(&env, &cfg), 0);
    T_ERR(fl_env_session_info(env, info), 0);
    return env;
}

void t_mm_create(struct t_mm *m, struct fl_env *env, size_t size, int flags)
{
    memset(m, 0, sizeof(*m));
    m->env = env;
    m->sigh = FL_CAP_INVALID;
    T_ERR(fl_rm_session_open(env, &m->rms), 0);
    T_ERR(fl_rm_create(env, m->rms, size, &m->rm), 0);
    if (flags & T_MM_HANDLER) {
        T_ERR(fl_signal_context_create(env, &m->sigh), 0);
        T_ERR(fl_region_map_fault_handler(env, m->rm, m->sigh), 0);
    }
    T_ERR(fl_region_map_dataspace(env, m->rm, &m->ds), 0);
}

const char *t_mm_export(struct t_mm *m)
{
    T_ERR(fl_cap_export(m->env, m->ds, m->token), 0);
    return m->token;
}

void t_mm_attach(struct t_mm *m, fl_cap ds, size_t off, size_t size, uintptr_t at)
{
    t_attach_at(m->env, m->rm, ds, off, size, at, T_W);
}

int t_mm_serve(struct t_mm *m, fl_cap backing, uintptr_t (*offset_of)(uintptr_t page))
{
    for (int served = 0;; served++) {
        struct fl_fault f;
        T_ERR(fl_region_map_fault(m->env, m->rm, &f), 0);
        if (f.type == FL_FAULT_NONE) return served;
        uintptr_t page = f.addr & ~(uintptr_t)4095;
        struct fl_attr a = {.size = 4096,
                            .offset = offset_of ? offset_of(page) : page,
                            .use_at = true,
                            .at = page,
                            .writeable = true};
        T_ERR(fl_region_map_attach(m->env, m->rm, backing, &a, NULL), 0);
    }
}

int t_mm_serve_while(struct t_mm *m, fl_cap backing, int (*more)(void), const char *what)
{
    int served = 0;
    long end = t_now_ms() + T_WAIT_MS;
    while (more()) {
        if (t_now_ms() > end) T_FAILF("%s (%d faults served)", what, served);
        fl_signal_wait(m->env, m->sigh, 10);
        served += t_mm_serve(m, backing, NULL);
    }
    return served;
}

/* ---- fault and signal expectations ---- */

void t_expect_signal(struct fl_env *env, fl_cap sigh)
{
    long n = fl_signal_wait(env, sigh, T_WAIT_MS);
    if (n <= 0) T_FAILF("no signal within %d ms (%ld)", T_WAIT_MS, n);
}

void t_expect_no_signal(struct fl_env *env, fl_cap sigh)
{
    long n = fl_signal_wait(env, sigh, 0);
    if (n != 0) T_FAILF("a signal was pending (%ld), expected none", n);
}

void t_expect_fault(struct fl_env *env, fl_cap rm, enum fl_fault_type type, uintptr_t addr)
{
    struct fl_fault f = {(enum fl_fault_type) - 1, 0xdead};
    T_ERR(fl_region_map_fault(env, rm, &f), 0);
    if (f.type != type || f.addr != addr)
        T_FAILF("fault() = {%s, %#lx}, expected {%s, %#lx}", fl_fault_type_name(f.type),
                (unsigned long)f.addr, fl_fault_type_name(type), (unsigned long)addr);
}

void t_mm_expect_fault(struct t_mm *m, enum fl_fault_type type, uintptr_t addr)
{
    t_expect_fault(m->env, m->rm, type, addr);
}

struct fl_fault t_mm_next_fault(struct t_mm *m)
{
    t_expect_signal(m->env, m->sigh);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(m->env, m->rm, &f), 0);
    return f;
}

void t_expect_signal_first(struct fl_env *env, fl_cap sigh, struct t_child *const *quiet, int n,
                           const char *after)
{
    struct pollfd pf[8] = {{.fd = fl_signal_fd(env, sigh), .events = POLLIN}};
    T_ASSERT(n >= 0 && n < 8);
    for (int i = 0; i < n; i++)
        pf[i + 1] = (struct pollfd){.fd = quiet[i]->from.r, .events = POLLIN};
    char what[160];
    snprintf(what, sizeof(what), "signal after %s", after);
    t_poll_until(pf, n + 1, t_now_ms() + T_WAIT_MS, what);
    for (int i = 0; i < n; i++)
        if (pf[i + 1].revents) {
            char line[128];
            t_child_line(quiet[i], line, sizeof(line));
            T_FAILF("after %s, %s said \"%s\" before the signal came", after, quiet[i]->name, line);
        }
}

/* ---- processes ---- */

pid_t t_spawn(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        current = NULL; /* the child does not own the core */
        _exit(fn(arg));
    }
    return pid;
}

static int exit_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int t_wait(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return exit_code(st);
}

int t_wait_within(pid_t pid, int ms, const char *what)
{
    long end = t_now_ms() + ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return exit_code(st);
        if (r < 0 && errno != EINTR)
            T_FAILF("%s: waitpid(%d): %s", what, (int)pid, strerror(errno));
        if (t_now_ms() > end) {
            kill(pid, SIGKILL);
            T_FAILF("%s: pid %d did not end within %d ms", what, (int)pid, ms);
        }
        t_sleep_ms(5);
    }
}

int t_reap_or_kill(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) return exit_code(st);
    kill(pid, SIGKILL);
    t_wait(pid);
    return -1;
}

int t_new_uffd(void)
{
    int fd = fl_uffd_new(O_NONBLOCK, NULL, NULL);
    return fd < 0 ? -1 : fd;
}

int t_thread_waits_in_uffd(int tid)
{
    long end = t_now_ms() + T_WAIT_MS;
    bool told = false;
    for (;;) {
        char w[64];
        t_proc_line(w, sizeof(w), "/proc/self/task/%d/wchan", tid);
        if (!strcmp(w, "handle_userfault")) return 0;
        told = told || (w[0] && strcmp(w, "0"));
        if (t_now_ms() > end) {
            if (!told) return -1;
            T_FAILF("thread %d does not wait in the uffd (wchan %s)", tid, w);
        }
        t_sleep_ms(5);
    }
}

void t_become(uid_t uid, gid_t gid, int ngroups, const gid_t *groups)
{
    T_ASSERT(setgroups((size_t)ngroups, groups) == 0);
    T_ASSERT(setgid(gid) == 0);
    T_ASSERT(setuid(uid) == 0);
    T_EQ(getuid(), uid);
    T_EQ(geteuid(), uid);
    T_EQ(getegid(), gid);
}

void t_pipe_open(struct t_pipe *p)
{
    int fds[2];
    T_ASSERT(pipe2(fds, O_CLOEXEC) == 0);
    p->r = fds[0];
    p->w = fds[1];
}

void t_pipe_send(struct t_pipe *p, const char *line)
{
    size_t n = strlen(line);
    T_ASSERT(write(p->w, line, n) == (ssize_t)n && write(p->w, "\n", 1) == 1);
}

int t_pipe_recv(struct t_pipe *p, char *buf, size_t len)
{
    size_t i = 0;
    while (i + 1 < len) {
        char ch;
        ssize_t n = read(p->r, &ch, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        if (ch == '\n') break;
        buf[i++] = ch;
    }
    buf[i] = 0;
    return 0;
}

static int child_entry(void *arg)
{
    struct t_child *c = arg;
    close(c->to.w);
    close(c->from.r);
    return c->fn(c);
}

void t_child_spawn(struct t_child *c, const char *name, int (*fn)(struct t_child *))
{
    c->name = name;
    c->fn = fn;
    t_pipe_open(&c->to);
    t_pipe_open(&c->from);
    c->pid = t_spawn(child_entry, c);
    close(c->to.r);
    close(c->from.w);
}

static void vsay(struct t_pipe *p, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    t_pipe_send(p, line);
}

void t_child_send(struct t_child *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(&c->to, fmt, ap);
    va_end(ap);
}

void t_child_say(struct t_child *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(&c->from, fmt, ap);
    va_end(ap);
}

void t_child_command(struct t_child *c, char *buf, size_t len)
{
    if (t_pipe_recv(&c->to, buf, len) < 0) _exit(T_FAIL);
}

void t_child_line(struct t_child *c, char *line, size_t len)
{
    size_t i = 0;
    long end = t_now_ms() + T_WAIT_MS;
    while (i + 1 < len) {
        struct pollfd pf = {.fd = c->from.r, .events = POLLIN};
        long left = end - t_now_ms();
        int r = poll(&pf, 1, left > 0 ? (int)left : 0);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) T_FAILF("%s: no answer within %d ms", c->name, T_WAIT_MS);
        char ch;
        if (read(c->from.r, &ch, 1) != 1) T_FAILF("%s: died (pipe closed)", c->name);
        if (ch == '\n') break;
        line[i++] = ch;
    }
    line[i] = 0;
}

void t_child_expect(struct t_child *c, const char *want)
{
    char line[512];
    t_child_line(c, line, sizeof(line));
    if (strcmp(line, want)) T_FAILF("%s said \"%s\", expected \"%s\"", c->name, line, want);
}

void t_child_silent(struct t_child *c)
{
    struct pollfd pf = {.fd = c->from.r, .events = POLLIN};
    if (poll(&pf, 1, 0) != 0) {
        char line[512] = "";
        if (pf.revents & POLLIN) t_child_line(c, line, sizeof(line));
        T_FAILF("%s should be halted but %s \"%s\"", c->name,
                pf.revents & POLLIN ? "said" : "hung up", line);
    }
    T_EQ(waitpid(c->pid, NULL, WNOHANG), 0);
}

void t_child_exit(struct t_child *c)
{
    t_child_send(c, "exit");
    int code = t_wait(c->pid);
    if (code != 0) T_FAILF("%s ended with %d, expected 0", c->name, code);
}

/* ---- the line-command client ---- */

void (*t_client_extra)(struct t_child *c, volatile char *p, const char *line);

int t_client_main(struct t_child *c)
{
    struct fl_env *env = t_env();
    volatile char *p = NULL;
    char line[256];
    for (;;) {
        t_child_command(c, line, sizeof(line));
        if (!strncmp(line, "import ", 7)) {
            fl_cap ds;
            T_ERR(fl_cap_import(env, line + 7, &ds), 0);
            struct fl_attr at = {.writeable = true, .executable = true};
            struct fl_range r;
            T_ERR(fl_region_map_attach(env, fl_env_address_space(env), ds, &at, &r), 0);
            p = (volatile char *)r.start;
            t_child_say(c, "attached");
        } else if (!strncmp(line, "read ", 5)) {
            /* The first access is a read of the named byte. */
            size_t off = strtoul(line + 5, NULL, 0);
            char got[80];
            size_t i = 0;
            for (; i < 64 && (got[i] = p[off + i]); i++) continue;
            got[i] = 0;
            t_child_say(c, "read %s", got);
        } else if (!strncmp(line, "write ", 6)) {
            /* The first access is a write of the named byte. */
            char *text;
            size_t off = strtoul(line + 6, &text, 0);
            text++;
            for (size_t i = 0, n = strlen(text); i <= n; i++) p[off + i] = text[i];
            t_child_say(c, "wrote");
        } else if (!strncmp(line, "sysread ", 8)) {
            /* The kernel writes into the page: read(2) from a pipe. */
            char *text;
            size_t off = strtoul(line + 8, &text, 0);
            text++;
            int fds[2];
            T_ASSERT(pipe(fds) == 0);
            T_EQ(write(fds[1], text, strlen(text)), (long)strlen(text));
            ssize_t n = read(fds[0], (char *)p + off, 64);
            close(fds[0]);
            close(fds[1]);
            t_child_say(c, "sysread %zd", n);
        } else if (!strncmp(line, "exec ", 5)) {
            int (*fn)(void) = (int (*)(void))(uintptr_t)(p + strtoul(line + 5, NULL, 0));
            t_child_say(c, "exec %d", fn());
        } else if (!strcmp(line, "exit")) {
            break;
        } else if (t_client_extra) {
            t_client_extra(c, p, line);
        } else {
            T_FAILF("%s: unknown command %s", c->name, line);
        }
    }
    fl_env_close(env);
    return 0;
}

/* ---- the healthy component ---- */

struct healthy {
    atomic_ulong rounds;
    atomic_int stop, err, line;
};
static struct healthy *hl;
static pid_t healthy_pid;

#define H_CHECK(call)                                                                              \
    do {                                                                                           \
        int _r = (call);                                                                           \
        if (_r < 0) {                                                                              \
            atomic_store(&hl->line, __LINE__);                                                     \
            atomic_store(&hl->err, _r);                                                            \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* Attach ds, write and check two pages, detach. */
static int healthy_touch(struct fl_env *env, fl_cap ds)
{
    int r = 0;
    volatile unsigned char *p = fl_attach(env, ds, &r);
    H_CHECK(r);
    unsigned char v = (unsigned char)atomic_load(&hl->rounds);
    p[0] = v;
    p[4096] = (unsigned char)~v;
    if (p[0] != v || p[4096] != (unsigned char)~v) H_CHECK(-FL_E_SYSTEM);
    H_CHECK(fl_detach(env, (const void *)p));
    return 0;
}

static int healthy_main(void *arg)
{
    bool allocates = *(enum t_healthy_kind *)arg == T_HEALTHY_ALLOCATES;
    struct fl_env *env = NULL;
    fl_cap ds = FL_CAP_INVALID;
    H_CHECK(fl_env_open(&env, NULL));
    if (!allocates) H_CHECK(fl_ram_alloc(env, 2 * 4096, &ds));
    while (!atomic_load(&hl->stop)) {
        if (allocates) H_CHECK(fl_ram_alloc(env, 2 * 4096, &ds));
        if (healthy_touch(env, ds)) return 1;
        if (allocates) {
            H_CHECK(fl_ram_free(env, ds));
        } else {
            struct fl_session_info info;
            H_CHECK(fl_env_session_info(env, &info));
        }
        atomic_fetch_add(&hl->rounds, 1);
    }
    if (!allocates) H_CHECK(fl_ram_free(env, ds));
    fl_env_close(env);
    return 0;
}

void t_healthy_start(enum t_healthy_kind kind)
{
    hl = t_shared(sizeof(*hl));
    healthy_pid = t_spawn(healthy_main, &kind);
}

static int healthy_moved(unsigned long base)
{
    int st;
    if (waitpid(healthy_pid, &st, WNOHANG) == healthy_pid)
        T_FAILF("the healthy component ended (status %#x, error %s at line %d)", st,
                fl_error_name(atomic_load(&hl->err)), atomic_load(&hl->line));
    return atomic_load(&hl->rounds) >= base + 3;
}

void t_healthy_advances(const char *after)
{
    unsigned long base = atomic_load(&hl->rounds);
    T_WAIT_FOR(healthy_moved(base), after);
}

unsigned long t_healthy_rounds(void)
{
    return atomic_load(&hl->rounds);
}

void t_healthy_stop(void)
{
    atomic_store(&hl->stop, 1);
    T_EQ(t_wait(healthy_pid), 0);
}

void t_baseline_begin(struct t_core *c, enum t_healthy_kind kind)
{
    signal(SIGPIPE, SIG_IGN); /* a hostile peer's end is not the test's */
    c->fd_base = t_core_fd_count(c);
    t_healthy_start(kind);
    t_healthy_advances("the healthy component's first rounds");
}

void t_baseline_end(struct t_core *c)
{
    t_healthy_stop();
    T_WAIT_FOR(t_core_fd_count(c) == c->fd_base, "core's descriptors back at their baseline");
    T_EQ(t_core_stop(c), 0);
}

/* ---- raw protocol peers ---- */

int t_socket_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int t_raw_connect(void)
{
    const char *path = getenv("FAULTLINE_SOCKET");
    T_ASSERT(path);
    int fd = t_socket_connect(path);
    if (fd < 0) T_FAILF("connecting to %s: %s", path, strerror(-fd));
    struct timeval tv = {T_WAIT_MS / 1000, 0};
    T_ASSERT(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    return fd;
}

void t_raw_send(int fd, void *msg, unsigned type)
{
    static uint64_t id;
    struct fl_msg_hdr *h = msg;
    h->magic = FL_PROTO_MAGIC;
    h->type = (uint16_t)type;
    h->reserved = 0;
    h->id = ++id;
    T_ASSERT(send(fd, msg, fl_msg_size(type), MSG_NOSIGNAL) == (ssize_t)fl_msg_size(type));
}

void t_raw_reply(int fd, struct fl_msg_reply *reply)
{
    for (;;) {
        _Alignas(8) uint8_t buf[FL_MSG_MAX];
        ssize_t n = t_raw_recv(fd, buf, sizeof(buf), "a reply");
        if (n <= 0) T_FAILF("waiting for a reply: %s", n ? strerror((int)-n) : "EOF");
        if (((struct fl_msg_hdr *)(void *)buf)->type == FL_MSG_REPLY) {
            memcpy(reply, buf, sizeof(*reply));
            return;
        }
    }
}

struct fl_msg_reply t_raw_until_reply(int fd, uint64_t id, void (*seen)(const void *msg, int nfds))
{
    long end = t_now_ms() + T_WAIT_MS;
    char what[64];
    snprintf(what, sizeof(what), "the reply to request %llu", (unsigned long long)id);
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        t_poll_until(&pf, 1, end, what);
        _Alignas(8) uint8_t buf[FL_MSG_MAX + 8];
        int fds[FL_WIRE_MAX_FDS], nfds, truncated;
        ssize_t n = fl_wire_recv(fd, buf, sizeof(buf), fds, &nfds, 0, &truncated);
        T_ASSERT(n > 0 && !truncated);
        for (int i = 0; i < nfds; i++) close(fds[i]);
        if (((const struct fl_msg_hdr *)(const void *)buf)->type != FL_MSG_REPLY) {
            if (seen) seen(buf, nfds);
            continue;
        }
        struct fl_msg_reply rep;
        memcpy(&rep, buf, sizeof(rep));
        if (rep.hdr.id == id) return rep;
    }
}

int t_raw_session(uint64_t *as)
{
    int s = t_raw_connect();
    T_EQ(t_raw_hello(s, 0, -1), 0);
    struct fl_msg_reply r;
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    if (as) *as = r.val[1];
    return s;
}

void t_token_bytes(const char *token, uint8_t *bytes)
{
    for (int i = 0; i < FL_TOKEN_BYTES; i++) {
        unsigned v;
        T_ASSERT(sscanf(token + 2 * i, "%2x", &v) == 1);
        bytes[i] = (uint8_t)v;
    }
}

int t_raw_hello(int fd, uint32_t flags, int uffd)
{
    struct fl_req_hello h;
    fl_msg_init(&h, FL_REQ_HELLO, 1);
    h.version = FL_PROTO_VERSION;
    h.flags = flags;
    h.window_base = 0x100000000000ull;
    h.window_size = 1ull << 30;
    return fl_wire_send(fd, &h, sizeof(h), uffd, 0);
}

ssize_t t_raw_recv(int fd, void *buf, size_t len, const char *what)
{
    ssize_t n;
    do n = recv(fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        T_FAILF("%s: core neither answered nor closed the connection within %d ms", what,
                T_WAIT_MS);
    return n < 0 ? -errno : n;
}

void t_raw_expect_closed(int fd, const char *what, int may_succeed)
{
    for (int errors = 0;;) {
        _Alignas(8) uint8_t buf[FL_MSG_MAX + 8];
        ssize_t n = t_raw_recv(fd, buf, sizeof(buf), what);
        if (n == 0 || n == -ECONNRESET) break;
        if (n < 0) T_FAILF("%s: recv failed: %s", what, strerror((int)-n));
        struct fl_msg_reply r;
        memset(&r, 0, sizeof(r));
        memcpy(&r, buf, (size_t)n < sizeof(r) ? (size_t)n : sizeof(r));
        if (r.hdr.magic == FL_PROTO_MAGIC && r.hdr.type != FL_MSG_REPLY &&
            (size_t)n == fl_msg_size(r.hdr.type))
            continue; /* an agent instruction queued before */
        if ((size_t)n != sizeof(r) || r.hdr.magic != FL_PROTO_MAGIC)
            T_FAILF("%s: core sent a %zd-byte datagram instead of closing", what, n);
        if (r.status >= 0 && may_succeed-- <= 0)
            T_FAILF("%s: core answered (status %d) instead of closing", what, r.status);
        if (r.status < 0 && ++errors > 4) T_FAILF("%s: core kept the connection open", what);
    }
    close(fd);
}

int t_raw_peer(const char *token, uint64_t *at)
{
    int fd = t_raw_connect();
    struct fl_req_hello h = {
        .version = FL_PROTO_VERSION, .window_base = 0x100000000000ull, .window_size = 1ull << 30};
    t_raw_send(fd, &h, FL_REQ_HELLO);
    struct fl_msg_reply r;
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    fl_wire_cap as = r.val[1];
    *at = h.window_base;
    if (!token) return fd;
    struct fl_req_cap_import imp = {0};
    t_token_bytes(token, imp.token);
    t_raw_send(fd, &imp, FL_REQ_CAP_IMPORT);
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    struct fl_req_rm_attach a = {.rm = as, .ds = r.val[0], .flags = FL_ATTACH_WRITEABLE};
    t_raw_send(fd, &a, FL_REQ_RM_ATTACH);
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    *at = r.val[0];
    return fd;
}

int t_raw_attached_peer(const char *token)
{
    uint64_t at;
    return t_raw_peer(token, &at);
}

static const char *stuck_token;
static uid_t stuck_uid;

static int stuck_main(struct t_child *c)
{
    if (stuck_uid) t_become(stuck_uid, stuck_uid, 0, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan when the test fails */
    t_raw_attached_peer(stuck_token);
    t_child_say(c, "attached");
    for (;;) pause(); /* never reads, never acknowledges */
    return 0;
}

pid_t t_stuck_peer(const char *token, uid_t uid)
{
    stuck_token = token;
    stuck_uid = uid;
    struct t_child c;
    t_child_spawn(&c, "the stuck peer", stuck_main);
    t_child_expect(&c, "attached");
    close(c.to.w);
    close(c.from.r);
    return c.pid;
}
