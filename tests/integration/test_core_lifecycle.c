/*
 * The core binary's life cycle, run directly ($FAULTLINE_CORE, fork/exec):
 * --check and --help exit 0; bad usage exits 2 without touching the socket;
 * a second core on a socket a live core serves refuses to start, names the
 * socket, and leaves the first core (and its socket) alone; a core killed with
 * SIGKILL leaves a stale socket that the next core removes ("stale" in its
 * log); SIGTERM and SIGINT remove the socket and exit 0; without --socket the
 * path follows $FAULTLINE_SOCKET, else $XDG_RUNTIME_DIR/faultline/core.sock.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEADLINE_MS 10000

static char dir[64], sock[128];
static pid_t live[16];
static int nlive;

static void kill_live(void)
{
    for (int i = 0; i < nlive; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}

/* A directory of the case's own for sockets and logs; no
 * environment-derived path may leak into the runs by accident. */
static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof(dir), "/tmp/fllife-XXXXXX");
    T_ASSERT(mkdtemp(dir));
    atexit(kill_live);
    snprintf(sock, sizeof(sock), "%s/core.sock", dir);
    unsetenv("FAULTLINE_SOCKET");
}

/* Clean up the logs. */
static void teardown(void)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd)) {
    }
}

static void forget(pid_t pid)
{
    for (int i = 0; i < nlive; i++)
        if (live[i] == pid) live[i] = 0;
}

/* Run core with args (NULL-terminated) after "-v -v [--backend B]"; stdout
 * and stderr go to files under dir named after tag. extra_env: "NAME=value"
 * to set, "NAME" to unset, or NULL. */
static pid_t run_core(const char *tag, const char *extra_env[], const char *const args[])
{
    const char *argv[32];
    int n = t_core_argv(argv, 32);
    for (int i = 0; args[i] && n < 30; i++) argv[n++] = args[i];
    argv[n] = NULL;
    char out[128], err[128];
    snprintf(out, sizeof(out), "%s/%s.out", dir, tag);
    snprintf(err, sizeof(err), "%s/%s.err", dir, tag);
    fflush(NULL);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0) _exit(126);
        dup2(o, 1);
        dup2(e, 2);
        for (int i = 0; extra_env && extra_env[i]; i++) {
            if (strchr(extra_env[i], '='))
                putenv((char *)extra_env[i]);
            else
                unsetenv(extra_env[i]);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (nlive < 16) live[nlive++] = pid;
    return pid;
}

/* Exit code (or 128+signal) of pid, which must end within the deadline. */
static int wait_exit(pid_t pid, const char *what)
{
    int st = t_wait_within(pid, DEADLINE_MS, what);
    forget(pid);
    return st;
}

static int connectable(const char *path)
{
    int fd = t_socket_connect(path);
    if (fd >= 0) close(fd);
    return fd >= 0;
}

static void show(const char *tag, const char *kind)
{
    char path[128], line[1024];
    snprintf(path, sizeof(path), "%s/%s.%s", dir, tag, kind);
    FILE *f = fopen(path, "r");
    if (!f) return;
    fprintf(stderr, "---- %s.%s ----\n", tag, kind);
    while (fgets(line, sizeof(line), f)) fputs(line, stderr);
    fclose(f);
}

/* Wait until core serves path; fail if it exits or takes too long. */
static void wait_serving(pid_t pid, const char *tag, const char *path)
{
    long end = t_now_ms() + DEADLINE_MS;
    while (!connectable(path)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            forget(pid);
            show(tag, "err");
            T_FAILF("core %s exited at start-up (status %#x)", tag, st);
        }
        if (t_now_ms() > end) {
            show(tag, "err");
            T_FAILF("core %s does not serve %s after %d ms", tag, path, DEADLINE_MS);
        }
        t_sleep_ms(5);
    }
}

static int file_contains(const char *tag, const char *kind, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s.%s", dir, tag, kind);
    return t_file_lines_with(path, 1, text, (const char *)NULL) > 0;
}

#define T_CONTAINS(tag, kind, text)                                                                \
    do {                                                                                           \
        if (!file_contains(tag, kind, text)) {                                                     \
            show(tag, kind);                                                                       \
            T_FAILF("%s.%s lacks \"%s\"", tag, kind, text);                                        \
        }                                                                                          \
    } while (0)

static int is_socket(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISSOCK(sb.st_mode);
}

static int exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

/* A session with the core at path does real work. */
static void serves(const char *path)
{
    struct fl_env_config cfg = {.socket_path = path, .window_size = 1 << 20};
    struct fl_env *env = NULL;
    T_ERR(fl_env_open(&env, &cfg), 0);
    t_session_works(env, 1, 'x');
    fl_env_close(env);
}

/* Core pid, sent sig, exits 0 and removes its socket at path. */
static void stops_cleanly(pid_t pid, int sig, const char *path, const char *what)
{
    T_ASSERT(kill(pid, sig) == 0);
    T_EQ(wait_exit(pid, what), 0);
    T_ASSERT(!exists(path));
}

/* A core on sock, serving. */
static pid_t serving_core(const char *tag)
{
    pid_t pid = run_core(tag, NULL, (const char *const[]){"--socket", sock, NULL});
    wait_serving(pid, tag, sock);
    return pid;
}

/* --check: the kernel has what faultline needs. */
static void check(void)
{
    setup();
    pid_t p = run_core("check", NULL, (const char *const[]){"--check", NULL});
    int st = wait_exit(p, "--check");
    if (st != 0) {
        show("check", "out");
        show("check", "err");
    }
    T_EQ(st, 0);
    T_CONTAINS("check", "out", "ok");
    T_CONTAINS("check", "out", "userfaultfd");
    T_ASSERT(!exists(sock));
    teardown();
}

/* --help and -h: usage on stdout, exit 0, no socket. */
static void help(void)
{
    setup();
    char e[160];
    snprintf(e, sizeof(e), "FAULTLINE_SOCKET=%s", sock);
    const char *env[] = {e, NULL};
    pid_t p = run_core("help", env, (const char *const[]){"--help", NULL});
    T_EQ(wait_exit(p, "--help"), 0);
    T_CONTAINS("help", "out", "usage");
    T_CONTAINS("help", "out", "--socket");
    p = run_core("h", env, (const char *const[]){"-h", NULL});
    T_EQ(wait_exit(p, "-h"), 0);
    T_CONTAINS("h", "out", "usage");
    T_ASSERT(!exists(sock));
    teardown();
}

/* Bad usage: exit 2, the socket is not created. */
static void bad_usage(void)
{
    setup();
    struct {
        const char *tag;
        const char *args[4];
    } bad[] = {
        {"bogus", {"--bogus", NULL}},
        {"short", {"-Z", NULL}},
        {"positional", {"--socket", sock, "extra", NULL}},
        {"backend", {"--backend", "kqueue", "--socket", sock}},
        {"size", {"--ram-quota", "12X", "--socket", sock}},
        {"caps", {"--cap-quota", "many", "--socket", sock}},
        {"noarg", {"--socket", NULL}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *args[6] = {0};
        for (int j = 0; j < 4 && bad[i].args[j]; j++) args[j] = bad[i].args[j];
        pid_t p = run_core(bad[i].tag, NULL, args);
        int st = wait_exit(p, bad[i].tag);
        if (st != 2) {
            show(bad[i].tag, "err");
            T_FAILF("bad usage '%s' exited %d, expected 2", bad[i].tag, st);
        }
        T_ASSERT(!exists(sock));
    }
    T_CONTAINS("bogus", "err", "usage");
    teardown();
}

/* A first core, and a second one on the same socket. */
static void second_core_refused(void)
{
    setup();
    pid_t a = serving_core("a");
    T_ASSERT(is_socket(sock));
    struct stat sb;
    T_ASSERT(stat(sock, &sb) == 0);
    T_EQ(sb.st_mode & 0777, 0600);
    /* Logged just after listen(): it may trail the first connect a little. */
    T_WAIT_UNTIL(file_contains("a", "err", "listening on"));
    serves(sock);
    pid_t b = run_core("b", NULL, (const char *const[]){"--socket", sock, NULL});
    int st = wait_exit(b, "second core");
    if (st == 0 || st >= 128) {
        show("b", "err");
        T_FAILF("a second core on a served socket exited %d", st);
    }
    T_CONTAINS("b", "err", sock);
    T_CONTAINS("b", "err", "another faultline-core");
    /* The first core and its socket are untouched. */
    T_ASSERT(kill(a, 0) == 0);
    T_ASSERT(is_socket(sock));
    serves(sock);
    /* The same through $FAULTLINE_SOCKET instead of --socket. */
    char e[160];
    snprintf(e, sizeof(e), "FAULTLINE_SOCKET=%s", sock);
    const char *env[] = {e, NULL};
    b = run_core("b2", env, (const char *const[]){NULL});
    st = wait_exit(b, "second core via $FAULTLINE_SOCKET");
    T_ASSERT(st != 0 && st < 128);
    T_CONTAINS("b2", "err", sock);
    T_ASSERT(is_socket(sock));
    serves(sock);
    teardown();
}

/* SIGKILL: the socket file stays behind, stale; the next core removes it. */
static void stale_socket_removed(void)
{
    setup();
    pid_t a = serving_core("a");
    T_ASSERT(kill(a, SIGKILL) == 0);
    T_EQ(wait_exit(a, "SIGKILLed core"), 128 + SIGKILL);
    T_ASSERT(is_socket(sock));
    /* Nobody serves it any more. (With io_uring the kernel tears the dead
     * core's ring down asynchronously: its listening socket can take a few
     * milliseconds after the reap to stop accepting connections.) */
    long end = t_now_ms() + 2000;
    while (connectable(sock)) {
        if (t_now_ms() > end) T_FAILF("the socket of a SIGKILLed core still accepts after 2 s");
        t_sleep_ms(1);
    }
    serving_core("c");
    T_CONTAINS("c", "err", "stale");
    serves(sock);
    teardown();
}

/* SIGTERM: clean exit, socket gone — with a session still connected. */
static void sigterm_with_a_peer(void)
{
    setup();
    pid_t c = serving_core("c");
    /* A raw connection stands for a connected peer: the test process must
     * not hold an fl_env while its core goes away (the library ends the
     * process then, by design). */
    int peer = t_socket_connect(sock);
    T_ASSERT(peer >= 0);
    stops_cleanly(c, SIGTERM, sock, "SIGTERMed core");
    T_CONTAINS("c", "err", "stopped");
    /* The peer sees the end of its session. */
    struct timeval tv = {5, 0};
    setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[256];
    ssize_t n = recv(peer, buf, sizeof(buf), 0);
    T_ASSERT(n == 0 || (n < 0 && errno == ECONNRESET));
    close(peer);
    teardown();
}

/* SIGINT likewise. */
static void sigint(void)
{
    setup();
    pid_t d = serving_core("d");
    T_ASSERT(!file_contains("d", "err", "stale"));
    stops_cleanly(d, SIGINT, sock, "SIGINTed core");
    teardown();
}

/* Without --socket or $FAULTLINE_SOCKET: $XDG_RUNTIME_DIR/faultline/core.sock,
 * its directory created private. */
static void xdg_runtime_dir(void)
{
    setup();
    char xdg[96], xsock[200], xdir[160];
    snprintf(xdg, sizeof(xdg), "%s/xdg", dir);
    T_ASSERT(mkdir(xdg, 0700) == 0);
    snprintf(xdir, sizeof(xdir), "%s/faultline", xdg);
    snprintf(xsock, sizeof(xsock), "%s/core.sock", xdir);
    char e[160];
    snprintf(e, sizeof(e), "XDG_RUNTIME_DIR=%s", xdg);
    const char *env[] = {e, "FAULTLINE_SOCKET", NULL};
    pid_t x = run_core("xdg", env, (const char *const[]){NULL});
    wait_serving(x, "xdg", xsock);
    struct stat sb;
    T_ASSERT(stat(xdir, &sb) == 0);
    T_EQ(sb.st_mode & 0777, 0700);
    serves(xsock);
    stops_cleanly(x, SIGTERM, xsock, "xdg core");
    teardown();
}

/* Only a stale *socket* is removed: a regular file at the socket path (a
 * typo in --socket) is left alone and core refuses to start. */
static void regular_file_kept(void)
{
    setup();
    char file[128];
    snprintf(file, sizeof(file), "%s/precious", dir);
    FILE *f = fopen(file, "w");
    T_ASSERT(f && fputs("precious data\n", f) >= 0 && fclose(f) == 0);
    pid_t x = run_core("file", NULL, (const char *const[]){"--socket", file, NULL});
    long end = t_now_ms() + DEADLINE_MS;
    int st = -1;
    while (st < 0) {
        int w;
        if (waitpid(x, &w, WNOHANG) == x) {
            forget(x);
            st = WIFEXITED(w) ? WEXITSTATUS(w) : 128 + WTERMSIG(w);
        } else if (!is_socket(file) && exists(file) && t_now_ms() < end) {
            t_sleep_ms(5);
        } else {
            break; /* it replaced the file, or never decided */
        }
    }
    struct stat fs;
    int kept = lstat(file, &fs) == 0 && S_ISREG(fs.st_mode);
    if (st < 0) {
        kill(x, SIGTERM);
        wait_exit(x, "core on a regular file");
    }
    if (!kept || st == 0 || st < 0) {
        show("file", "err");
        T_FAILF("core given --socket naming a regular file: %s, %s (expected: the file kept, "
                "core exits non-zero)",
                kept ? "file kept" : "the file was deleted",
                st < 0 ? "core started serving" : "core exited");
    }
    teardown();
}

T_CASES(check, help, bad_usage, second_core_refused, stale_socket_removed, sigterm_with_a_peer,
        sigint, xdg_runtime_dir, regular_file_kept)
