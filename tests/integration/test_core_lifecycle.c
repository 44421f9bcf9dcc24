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
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 10000

static const char *core_bin;
static char dir[64];
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

static void forget(pid_t pid)
{
    for (int i = 0; i < nlive; i++)
        if (live[i] == pid) live[i] = 0;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Run core with args (NULL-terminated) after "-v -v [--backend B]"; stdout
 * and stderr go to files under dir named after tag. extra_env: "NAME=value"
 * to set, "NAME" to unset, or NULL. */
static pid_t run_core(const char *tag, const char *extra_env[], const char *const args[])
{
    const char *argv[32];
    int n = 0;
    argv[n++] = core_bin;
    argv[n++] = "-v";
    argv[n++] = "-v";
    const char *backend = getenv("FL_TEST_BACKEND");
    if (backend) {
        argv[n++] = "--backend";
        argv[n++] = backend;
    }
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
        execvp(core_bin, (char *const *)argv);
        _exit(127);
    }
    if (nlive < 16) live[nlive++] = pid;
    return pid;
}

/* Exit code (or 128+signal) of pid, which must end within the deadline. */
static int wait_exit(pid_t pid, const char *what)
{
    long end = now_ms() + DEADLINE_MS;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            forget(pid);
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        T_ASSERT(r == 0);
        if (now_ms() > end) {
            fprintf(stderr, "%s: core did not exit within %d ms\n", what, DEADLINE_MS);
            exit(T_FAIL);
        }
        t_sleep_ms(5);
    }
}

static int connectable(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) return 0;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    return r == 0;
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
    long end = now_ms() + DEADLINE_MS;
    while (!connectable(path)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            forget(pid);
            fprintf(stderr, "core %s exited at start-up (status %#x)\n", tag, st);
            show(tag, "err");
            exit(T_FAIL);
        }
        if (now_ms() > end) {
            fprintf(stderr, "core %s does not serve %s after %d ms\n", tag, path, DEADLINE_MS);
            show(tag, "err");
            exit(T_FAIL);
        }
        t_sleep_ms(5);
    }
}

static int file_contains(const char *tag, const char *kind, const char *text)
{
    char path[128], line[2048];
    snprintf(path, sizeof(path), "%s/%s.%s", dir, tag, kind);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

#define T_CONTAINS(tag, kind, text)                                                                \
    do {                                                                                           \
        if (!file_contains(tag, kind, text)) {                                                     \
            fprintf(stderr, "%s:%d: %s.%s lacks \"%s\"\n", __FILE__, __LINE__, tag, kind, text);   \
            show(tag, kind);                                                                       \
            exit(T_FAIL);                                                                          \
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
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4096, &ds), 0);
    int err = -1;
    volatile char *p = fl_attach(env, ds, &err);
    T_ERR(err, 0);
    p[0] = 'x';
    T_EQ(p[0], 'x');
    fl_env_close(env);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    core_bin = getenv("FAULTLINE_CORE");
    if (!core_bin) core_bin = "faultline-core";
    snprintf(dir, sizeof(dir), "/tmp/fllife-XXXXXX");
    T_ASSERT(mkdtemp(dir));
    atexit(kill_live);
    char sock[128];
    snprintf(sock, sizeof(sock), "%s/core.sock", dir);
    /* No environment-derived path may leak into the runs below by accident. */
    unsetenv("FAULTLINE_SOCKET");

    /* --check: the kernel has what faultline needs. */
    {
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
    }

    /* --help and -h: usage on stdout, exit 0, no socket. */
    {
        const char *env[] = {NULL, NULL};
        char e[160];
        snprintf(e, sizeof(e), "FAULTLINE_SOCKET=%s", sock);
        env[0] = e;
        pid_t p = run_core("help", env, (const char *const[]){"--help", NULL});
        T_EQ(wait_exit(p, "--help"), 0);
        T_CONTAINS("help", "out", "usage");
        T_CONTAINS("help", "out", "--socket");
        p = run_core("h", env, (const char *const[]){"-h", NULL});
        T_EQ(wait_exit(p, "-h"), 0);
        T_CONTAINS("h", "out", "usage");
        T_ASSERT(!exists(sock));
    }

    /* Bad usage: exit 2, the socket is not created. */
    {
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
                fprintf(stderr, "bad usage '%s' exited %d, expected 2\n", bad[i].tag, st);
                show(bad[i].tag, "err");
                return T_FAIL;
            }
            T_ASSERT(!exists(sock));
        }
        T_CONTAINS("bogus", "err", "usage");
    }

    /* A first core, and a second one on the same socket. */
    pid_t a = run_core("a", NULL, (const char *const[]){"--socket", sock, NULL});
    wait_serving(a, "a", sock);
    T_ASSERT(is_socket(sock));
    struct stat sb;
    T_ASSERT(stat(sock, &sb) == 0);
    T_EQ(sb.st_mode & 0777, 0600);
    /* Logged just after listen(): it may trail the first connect a little. */
    {
        long end = now_ms() + DEADLINE_MS;
        while (!file_contains("a", "err", "listening on")) {
            T_ASSERT(now_ms() < end);
            t_sleep_ms(5);
        }
    }
    serves(sock);
    {
        pid_t b = run_core("b", NULL, (const char *const[]){"--socket", sock, NULL});
        int st = wait_exit(b, "second core");
        if (st == 0 || st >= 128) {
            fprintf(stderr, "a second core on a served socket exited %d\n", st);
            show("b", "err");
            return T_FAIL;
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
    }

    /* SIGKILL: the socket file stays behind, stale. */
    T_ASSERT(kill(a, SIGKILL) == 0);
    T_EQ(wait_exit(a, "SIGKILLed core"), 128 + SIGKILL);
    T_ASSERT(is_socket(sock));
    /* Nobody serves it any more. (With io_uring the kernel tears the dead
     * core's ring down asynchronously: its listening socket can take a few
     * milliseconds after the reap to stop accepting connections.) */
    {
        long end = now_ms() + 2000;
        while (connectable(sock)) {
            if (now_ms() > end) {
                fprintf(stderr, "the socket of a SIGKILLed core still accepts after 2 s\n");
                return T_FAIL;
            }
            t_sleep_ms(1);
        }
    }

    /* The next core removes it and serves. */
    pid_t c = run_core("c", NULL, (const char *const[]){"--socket", sock, NULL});
    wait_serving(c, "c", sock);
    T_CONTAINS("c", "err", "stale");
    serves(sock);

    /* SIGTERM: clean exit, socket gone — with a session still connected. */
    {
        /* A raw connection stands for a connected peer: the test process must
         * not hold an fl_env while its core goes away (the library ends the
         * process then, by design). */
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, sock);
        int peer = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        T_ASSERT(connect(peer, (struct sockaddr *)&sa, sizeof(sa)) == 0);
        T_ASSERT(kill(c, SIGTERM) == 0);
        T_EQ(wait_exit(c, "SIGTERMed core"), 0);
        T_ASSERT(!exists(sock));
        T_CONTAINS("c", "err", "stopped");
        /* The peer sees the end of its session. */
        struct timeval tv = {5, 0};
        setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[256];
        ssize_t n = recv(peer, buf, sizeof(buf), 0);
        T_ASSERT(n == 0 || (n < 0 && errno == ECONNRESET));
        close(peer);
    }

    /* SIGINT likewise. */
    pid_t d = run_core("d", NULL, (const char *const[]){"--socket", sock, NULL});
    wait_serving(d, "d", sock);
    T_ASSERT(!file_contains("d", "err", "stale"));
    T_ASSERT(kill(d, SIGINT) == 0);
    T_EQ(wait_exit(d, "SIGINTed core"), 0);
    T_ASSERT(!exists(sock));

    /* Without --socket or $FAULTLINE_SOCKET: $XDG_RUNTIME_DIR/faultline/core.sock,
     * its directory created private. */
    {
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
        T_ASSERT(stat(xdir, &sb) == 0);
        T_EQ(sb.st_mode & 0777, 0700);
        serves(xsock);
        T_ASSERT(kill(x, SIGTERM) == 0);
        T_EQ(wait_exit(x, "xdg core"), 0);
        T_ASSERT(!exists(xsock));
        rmdir(xdir);
        rmdir(xdg);
    }

    /* Only a stale *socket* is removed: a regular file at the socket path
     * (a typo in --socket) is left alone and core refuses to start. */
    {
        char file[128];
        snprintf(file, sizeof(file), "%s/precious", dir);
        FILE *f = fopen(file, "w");
        T_ASSERT(f && fputs("precious data\n", f) >= 0 && fclose(f) == 0);
        pid_t x = run_core("file", NULL, (const char *const[]){"--socket", file, NULL});
        long end = now_ms() + DEADLINE_MS;
        int st = -1;
        while (st < 0) {
            int w;
            if (waitpid(x, &w, WNOHANG) == x) {
                forget(x);
                st = WIFEXITED(w) ? WEXITSTATUS(w) : 128 + WTERMSIG(w);
            } else if (!is_socket(file) && exists(file) && now_ms() < end) {
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
            fprintf(stderr,
                    "core given --socket naming a regular file: %s, %s (expected: the file "
                    "kept, core exits non-zero)\n",
                    kept ? "file kept" : "the file was deleted",
                    st < 0 ? "core started serving" : "core exited");
            show("file", "err");
            return T_FAIL;
        }
        unlink(file);
    }

    /* Clean up the logs. */
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd)) {
    }
    return T_PASS;
}
