/*
 * Kernel-enforced isolation between processes of one uid.
 *
 * The kernel lets a process into another process of the same uid that is
 * dumpable: it re-opens the target's descriptors through /proc/PID/fd/N (so
 * core's and a component's memfds), takes them with pidfd_getfd, and reads or
 * writes the target's memory with process_vm_readv/writev, /proc/PID/mem or
 * ptrace. Core makes itself non-dumpable at start-up and libfaultline makes
 * every component non-dumpable in fl_env_open, which closes all of these
 * paths to non-root peers.
 *
 * Core, a victim component and the attackers all run as uid 65534; only the
 * test itself stays root. The victim allocates a RAM dataspace, attaches it
 * and writes a secret into it. Two attackers of the victim's uid -- one that
 * is no component, one that opened a session of its own -- each try, against
 * core and against the victim:
 *   - listing /proc/PID/fd (must fail: EACCES);
 *   - open("/proc/PID/fd/N") for every N in 0..63 and beyond the highest
 *     memfd the target is known to hold (each must fail with EACCES/EPERM; the
 *     known memfd numbers are counted to have been tried);
 *   - open /proc/PID/mem and /proc/PID/maps (EACCES/EPERM);
 *   - pidfd_getfd for every N (EPERM);
 *   - process_vm_readv and process_vm_writev on an address mapped in the
 *     target (EPERM; for the victim the address of its secret, for core the
 *     first mapping of /proc/CORE/maps, which the root test reads for them);
 *   - ptrace PTRACE_ATTACH and PTRACE_SEIZE (EPERM).
 * What core needs of a non-dumpable peer still works: it reads the peer's
 * /proc/PID/comm at connect (its log names the victim by its comm) and kills
 * through a pidfd (the attackers' pidfd_send_signal of signal 0 succeeds: a
 * same-uid signal needs no more). The victim's secret is intact afterwards.
 * Root keeps its access (it lists core's descriptors and reads the victim's
 * memory).
 *
 * The opt-out shows the test can fail: a victim with FAULTLINE_DUMPABLE=1,
 * and one with fl_env_config.dumpable, stay dumpable (and say so on stderr),
 * and the attacker that is no component reads their secret with
 * process_vm_readv and re-opens their memfd through /proc/PID/fd/N.
 *
 * A process that setuid()s is made non-dumpable by the kernel itself
 * (fs.suid_dumpable, 0 by default), which would hide a missing prctl in
 * fl_env_open; so the victims make themselves dumpable again after setuid, as
 * a freshly exec'd program of that uid would be. Core is exec'd after its
 * setuid, which restores dumpability the same way.
 *
 * Needs root (to become uid 65534); skipped otherwise.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY   65534
#define FD_RANGE 64 /* /proc/PID/fd cannot be listed: try 0..FD_RANGE-1 (at least) */
#define MAX_FDS  64
#define SECRET   "faultline isolation test: the victim's secret"
#define GARBAGE  "an attacker wrote this into the victim's memory"

/* What an attacker is told of a target. */
struct target {
    const char *name;
    pid_t pid;
    uintptr_t addr;   /* mapped in the target */
    int fds[MAX_FDS]; /* memfds the target holds */
    int nfds;
    int dumpable; /* as the target found itself after fl_env_open */
};

enum optout { OPTOUT_NONE, OPTOUT_ENV, OPTOUT_FIELD };
static enum optout victim_optout; /* set before spawning a victim */

static void become_nobody(void)
{
    t_become(NOBODY, NOBODY, 0, NULL);
}

/* The memfds among a process's descriptors (as root for core, or a process
 * for itself: both may list /proc/PID/fd). */
static int list_memfds(pid_t pid, int *fds, int max)
{
    int n = t_proc_fds_with(pid, "/memfd:", fds, max);
    if (n < 0) T_FAILF("cannot list /proc/%d/fd", (int)pid);
    return n < max ? n : max;
}

static int fd_list_format(char *buf, size_t len, const int *fds, int n)
{
    size_t off = 0;
    buf[0] = 0;
    for (int i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%d", i ? "," : "", fds[i]);
    return off < len ? 0 : -1;
}

static int fd_list_parse(const char *s, int *fds, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        fds[n++] = (int)strtol(s, &end, 10);
        if (end == s) return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* ---- the victim ---- */

/* Runs fl_env_open with stderr in a pipe; returns what it printed there. */
static int open_capturing_stderr(struct fl_env **env, const struct fl_env_config *cfg, char *out,
                                 size_t len)
{
    int p[2];
    T_ASSERT(pipe(p) == 0);
    fflush(stderr);
    int saved = dup(2);
    T_ASSERT(saved >= 0 && dup2(p[1], 2) == 2);
    close(p[1]);
    int r = fl_env_open(env, cfg);
    fflush(stderr);
    T_ASSERT(dup2(saved, 2) == 2);
    close(saved);
    ssize_t n, got = 0;
    while (got + 1 < (ssize_t)len && (n = read(p[0], out + got, len - 1 - (size_t)got)) > 0)
        got += n;
    out[got] = 0;
    close(p[0]);
    fputs(out, stderr); /* still shown in the test's log */
    return r;
}

static int victim_main(struct t_child *c)
{
    become_nobody();
    /* The kernel made us non-dumpable at setuid; a program exec'd as this uid
     * would be dumpable, so be that: then only fl_env_open changes it. */
    T_ASSERT(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0);
    T_EQ(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1);
    T_ASSERT(prctl(PR_SET_NAME, "fl-victim", 0, 0, 0) == 0);

    struct fl_env_config cfg = {0};
    if (victim_optout == OPTOUT_ENV) setenv("FAULTLINE_DUMPABLE", "1", 1);
    if (victim_optout == OPTOUT_FIELD) cfg.dumpable = true;
    struct fl_env *env = NULL;
    char said[1024];
    T_ERR(open_capturing_stderr(&env, &cfg, said, sizeof(said)), 0);
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    if (victim_optout == OPTOUT_NONE) {
        /* Still dumpable is reported, and the test fails, after the attacks:
         * they then show every path it leaves open. */
        if (strstr(said, "dumpable"))
            T_FAILF("victim: fl_env_open talked of dumpability without an opt-out");
    } else {
        if (dumpable != 1) T_FAILF("victim: opted out, but fl_env_open made it non-dumpable");
        char want[64];
        snprintf(want, sizeof(want), "pid %d stays dumpable", (int)getpid());
        if (!strstr(said, want) || !strstr(said, "any process of uid 65534"))
            T_FAILF("victim: opted out, but fl_env_open did not say \"%s ... any process of "
                    "uid 65534\" on stderr",
                    want);
    }

    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4 * 4096, &ds), 0);
    int err = -1;
    char *p = fl_attach(env, ds, &err);
    T_ERR(err, 0);
    T_ASSERT(p);
    memset(p, 0, 4 * 4096);
    strcpy(p + 4096, SECRET);

    /* A non-dumpable process still reads its own /proc/self/fd (and the
     * agent its /proc/self/maps). */
    int fds[MAX_FDS];
    int n = list_memfds(getpid(), fds, MAX_FDS);
    if (n < 1) T_FAILF("victim: holds no memfd after touching an attached dataspace");
    char list[512];
    T_EQ(fd_list_format(list, sizeof(list), fds, n), 0);
    t_child_say(c, "ready %d %" PRIxPTR " %s", dumpable, (uintptr_t)(p + 4096), list);

    char cmd[64];
    for (;;) {
        t_child_command(c, cmd, sizeof(cmd));
        if (!strcmp(cmd, "check")) {
            t_child_say(c, "%s", strcmp(p + 4096, SECRET) ? "overwritten" : "intact");
        } else if (!strcmp(cmd, "exit")) {
            T_ERR(fl_detach(env, p), 0);
            T_ERR(fl_ram_free(env, ds), 0);
            fl_env_close(env);
            return T_PASS;
        }
    }
}

static void victim_start(struct t_child *c, const char *name, enum optout optout, struct target *t)
{
    victim_optout = optout;
    t_child_spawn(c, name, victim_main);
    char line[600], list[512];
    uintptr_t addr;
    int dumpable;
    t_child_line(c, line, sizeof(line));
    T_ASSERT(sscanf(line, "ready %d %" SCNxPTR " %511s", &dumpable, &addr, list) == 3);
    memset(t, 0, sizeof(*t));
    t->name = name;
    t->pid = c->pid;
    t->addr = addr;
    t->dumpable = dumpable;
    t->nfds = fd_list_parse(list, t->fds, MAX_FDS);
    T_ASSERT(t->nfds >= 1);
}

static void victim_stop(struct t_child *c)
{
    t_child_send(c, "exit");
    T_EQ(t_wait(c->pid), 0);
}

/* ---- the attackers ---- */

static int failures;
static const char *attacker; /* for messages */

__attribute__((format(printf, 2, 3))) static void expect(bool ok, const char *fmt, ...)
{
    if (ok) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", attacker);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    failures++;
}

static bool denied(int e)
{
    return e == EACCES || e == EPERM;
}

/* Every way in that a dumpable target of our uid leaves open must fail. */
static void attack(const struct target *t)
{
    char path[64];
    const char *who = t->name;
    int pid = (int)t->pid;

    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    expect(!d && errno == EACCES, "listing %s of %s: %s, expected EACCES", path, who,
           d ? "allowed" : strerror(errno));
    if (d) closedir(d);

    int hi = FD_RANGE;
    for (int i = 0; i < t->nfds; i++)
        if (t->fds[i] >= hi) hi = t->fds[i] + 1;
    int pidfd = (int)syscall(SYS_pidfd_open, t->pid, 0);
    T_ASSERT(pidfd >= 0); /* pidfd_open checks nothing but existence */
    /* A descriptor taken is a line of its own; other wrong answers (ENOENT,
     * EBADF, ENXIO: what a dumpable target answers for a number it has no
     * descriptor at, or one that cannot be re-opened) are counted. */
    int known_tried = 0, open_other = 0, open_errno = 0, getfd_other = 0, getfd_errno = 0;
    for (int n = 0; n < hi; n++) {
        bool known = false;
        for (int i = 0; i < t->nfds; i++) known |= t->fds[i] == n;
        known_tried += known;
        const char *kind = known ? " (a memfd)" : "";
        snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, n);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        int e = errno;
        expect(fd < 0, "open(%s)%s of %s: opened, expected EACCES or EPERM", path, kind, who);
        if (fd >= 0) close(fd);
        if (fd < 0 && !denied(e) && !open_other++) open_errno = e;
        fd = (int)syscall(SYS_pidfd_getfd, pidfd, n, 0);
        e = errno;
        expect(fd < 0, "pidfd_getfd(%s, %d)%s: took the descriptor, expected EPERM", who, n, kind);
        if (fd >= 0) close(fd);
        if (fd < 0 && e != EPERM && !getfd_other++) getfd_errno = e;
    }
    expect(!open_other,
           "open(/proc/%d/fd/N) of %s, N in 0..%d: %d answered neither EACCES nor EPERM "
           "(the first: %s)",
           pid, who, hi - 1, open_other, strerror(open_errno));
    expect(!getfd_other,
           "pidfd_getfd(%s, N), N in 0..%d: %d answered other than EPERM (the first: %s)", who,
           hi - 1, getfd_other, strerror(getfd_errno));
    expect(known_tried == t->nfds, "tried %d of the %d memfds %s is known to hold", known_tried,
           t->nfds, who);

    const char *files[] = {"mem", "maps"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "/proc/%d/%s", pid, files[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        int e = errno;
        expect(fd < 0 && denied(e), "open(%s) of %s: %s, expected EACCES or EPERM", path, who,
               fd >= 0 ? "opened" : strerror(e));
        if (fd >= 0) close(fd);
    }

    char buf[sizeof(GARBAGE)];
    struct iovec local = {buf, sizeof(buf)}, remote = {(void *)t->addr, sizeof(buf)};
    ssize_t n = process_vm_readv(t->pid, &local, 1, &remote, 1, 0);
    int e = errno;
    expect(n < 0 && e == EPERM, "process_vm_readv(%s, %#" PRIxPTR "): %s, expected EPERM", who,
           t->addr, n >= 0 ? "read its memory" : strerror(e));
    memcpy(buf, GARBAGE, sizeof(buf));
    n = process_vm_writev(t->pid, &local, 1, &remote, 1, 0);
    e = errno;
    expect(n < 0 && e == EPERM, "process_vm_writev(%s, %#" PRIxPTR "): %s, expected EPERM", who,
           t->addr, n >= 0 ? "wrote its memory" : strerror(e));

    long r = ptrace(PTRACE_ATTACH, t->pid, 0, 0);
    e = errno;
    expect(r < 0 && e == EPERM, "ptrace(PTRACE_ATTACH, %s): %s, expected EPERM", who,
           r == 0 ? "attached" : strerror(e));
    if (r == 0) { /* let it go again, without the SIGSTOP */
        int st;
        waitpid(t->pid, &st, __WALL);
        ptrace(PTRACE_DETACH, t->pid, 0, 0);
    }
    r = ptrace(PTRACE_SEIZE, t->pid, 0, 0);
    e = errno;
    expect(r < 0 && e == EPERM, "ptrace(PTRACE_SEIZE, %s): %s, expected EPERM", who,
           r == 0 ? "seized it" : strerror(e));
    /* A seized tracee is let go when we exit. */

    /* What core needs of a non-dumpable peer: its comm, and a signal through
     * its pidfd (signal 0 here). */
    snprintf(path, sizeof(path), "/proc/%d/comm", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    e = errno;
    expect(fd >= 0, "open(%s) of %s: %s, expected it readable", path, who, strerror(e));
    if (fd >= 0) close(fd);
    r = syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0);
    e = errno;
    expect(r == 0, "pidfd_send_signal(%s, 0): %s, expected success", who, strerror(e));
    close(pidfd);
}

/* A target that opted out is reachable: the test can tell. */
static void reach(const struct target *t)
{
    char buf[sizeof(SECRET)];
    struct iovec local = {buf, sizeof(buf)}, remote = {(void *)t->addr, sizeof(buf)};
    ssize_t n = process_vm_readv(t->pid, &local, 1, &remote, 1, 0);
    int e = errno;
    expect(n == (ssize_t)sizeof(buf) && !memcmp(buf, SECRET, sizeof(buf)),
           "process_vm_readv(%s, %#" PRIxPTR ") of a component that opted out: %s, expected to "
           "read its secret",
           t->name, t->addr, n < 0 ? strerror(e) : "read something else");
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)t->pid, t->fds[0]);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    e = errno;
    expect(fd >= 0, "open(%s) of a component that opted out: %s, expected its memfd", path,
           strerror(e));
    if (fd >= 0) close(fd);
}

struct attack_plan {
    bool component; /* open a session first */
    const struct target *t[2];
    int n;
    bool reachable; /* the targets opted out */
};

static int attacker_main(void *arg)
{
    const struct attack_plan *plan = arg;
    attacker = plan->component ? "attacker (a component of uid 65534)"
                               : "attacker (uid 65534, no component)";
    become_nobody();
    struct fl_env *env = NULL;
    if (plan->component) T_ERR(fl_env_open(&env, NULL), 0);
    for (int i = 0; i < plan->n; i++) {
        if (plan->reachable)
            reach(plan->t[i]);
        else
            attack(plan->t[i]);
    }
    if (env) fl_env_close(env);
    return failures ? T_FAIL : T_PASS;
}

/* Whether the attacker found what it should; its lines above say what not. */
static bool run_attacker(const struct attack_plan *plan)
{
    pid_t pid = t_spawn(attacker_main, (void *)plan);
    int st = t_wait(pid);
    if (st != 0)
        fprintf(stderr, "the %s attacker failed (status %d): see its lines above\n",
                plan->component ? "component" : "non-component", st);
    return st == 0;
}

/* The first mapping core has: read-only, so a write that the kernel let
 * through would fail with EFAULT rather than corrupt core. */
static uintptr_t first_mapping(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "re");
    T_ASSERT(f);
    uintptr_t addr = 0;
    while (!addr && fgets(line, sizeof(line), f)) {
        uintptr_t lo;
        char perms[8];
        if (sscanf(line, "%" SCNxPTR "-%*x %7s", &lo, perms) == 2 && perms[0] == 'r' &&
            perms[1] == '-')
            addr = lo;
    }
    fclose(f);
    T_ASSERT(addr);
    return addr;
}

/* The kernel's sign of a non-dumpable process: its /proc/PID files (but
 * not the directory /proc/PID itself) belong to root. */
static void proc_owned_by_root(pid_t pid, const char *who)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    struct stat sb;
    T_ASSERT(stat(path, &sb) == 0);
    if (sb.st_uid != 0)
        T_FAILF("%s of %s belongs to uid %u, not root: %s is dumpable", path, who,
                (unsigned)sb.st_uid, who);
}

/* Core as uid 65534 (the attackers' uid too). */
static struct t_core *start(void)
{
    t_need_root("to act as uid 65534");
    signal(SIGPIPE, SIG_IGN);
    setenv("FL_TEST_CORE_UID", "65534", 1);
    struct t_core *core = t_core_start(NULL);
    unsetenv("FL_TEST_CORE_UID");
    return core;
}

static void same_uid_kept_out(void)
{
    struct t_core *core = start();
    struct t_child victim;
    struct target vt;
    victim_start(&victim, "victim", OPTOUT_NONE, &vt);

    /* Core, as uid 65534, read the non-dumpable victim's comm at connect. */
    char want[64];
    snprintf(want, sizeof(want), "connected, pid %d (fl-victim)", (int)vt.pid);
    T_WAIT_FOR(t_core_log_contains(core, want), want);

    /* Root keeps its access: it lists core's descriptors and reads the
     * victim's memory. */
    struct target ct = {.name = "core", .pid = core->pid, .addr = first_mapping(core->pid)};
    ct.nfds = list_memfds(core->pid, ct.fds, MAX_FDS);
    if (ct.nfds < 1) T_FAILF("core holds no memfd while the victim has a dataspace");
    char buf[sizeof(SECRET)];
    struct iovec local = {buf, sizeof(buf)}, remote = {(void *)vt.addr, sizeof(buf)};
    T_EQ(process_vm_readv(vt.pid, &local, 1, &remote, 1, 0), sizeof(buf));
    T_ASSERT(!memcmp(buf, SECRET, sizeof(buf)));

    /* Both attackers run, and the secret is checked, before a verdict: a
     * failure then shows every path that was open. */
    struct attack_plan plan = {.t = {&ct, &vt}, .n = 2};
    bool kept_out = run_attacker(&plan);
    plan.component = true;
    kept_out &= run_attacker(&plan);
    t_child_send(&victim, "check");
    t_child_expect(&victim, "intact");
    if (!kept_out) T_FAILF("an attacker got in (its lines above say how)");
    /* The attacks failed for the reason this test is about. */
    if (vt.dumpable != 0) T_FAILF("the victim was still dumpable after fl_env_open");
    proc_owned_by_root(vt.pid, "the victim");
    proc_owned_by_root(core->pid, "core");
    victim_stop(&victim);
    T_EQ(t_core_stop(core), 0);
}

/* The opt-outs: then a process of the same uid reaches in. */
static void opt_outs_reachable(void)
{
    struct t_core *core = start();
    struct t_child by_env, by_field;
    struct target et, ft;
    victim_start(&by_env, "victim with FAULTLINE_DUMPABLE=1", OPTOUT_ENV, &et);
    victim_start(&by_field, "victim with fl_env_config.dumpable", OPTOUT_FIELD, &ft);
    struct attack_plan optout = {.t = {&et, &ft}, .n = 2, .reachable = true};
    if (!run_attacker(&optout)) T_FAILF("the attacker did not reach a victim that opted out");
    victim_stop(&by_field);
    victim_stop(&by_env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(same_uid_kept_out, opt_outs_reachable)
