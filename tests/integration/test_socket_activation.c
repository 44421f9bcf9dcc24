/*
 * Socket activation (systemd's protocol, as faultline-core.socket uses it):
 * the test plays the service manager. It creates and listens on the socket
 * itself (mode 0660, which core would never choose), passes it to core as
 * descriptor 3 with LISTEN_FDS=1 and LISTEN_PID set to the child's pid
 * before the exec, and checks:
 *  - activated: a component connects and works; core neither changes nor,
 *    at exit (SIGTERM, exit 0), removes the socket; a second core started on
 *    the same socket (a service restart) serves again, and a component that
 *    connected before it started (queued in the socket's backlog) is served;
 *  - wrong_sockets: a SOCK_STREAM socket, a SOCK_SEQPACKET one that is not
 *    listening, a regular file, and LISTEN_FDS=2 make core exit 1 with a line
 *    saying what is wrong, before it touches anything;
 *  - not_for_us: LISTEN_PID naming another process is ignored, and core
 *    listens where --socket says, as without activation.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64], sock[128], logf[128];

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof(dir), "/tmp/flsd-XXXXXX");
    T_ASSERT(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/core.sock", dir);
    snprintf(logf, sizeof(logf), "%s/core.log", dir);
}

static void cleanup(void)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd)) {
    }
}

/* A unix socket of type bound at path (mode 0660), listening if asked. */
static int make_socket(int type, const char *path, int listening)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    T_ASSERT(fd >= 0);
    unlink(path);
    T_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    T_EQ(chmod(path, 0660), 0);
    if (listening) T_EQ(listen(fd, 16), 0);
    return fd;
}

/* What a service manager does before the exec. */
struct activation {
    int fd;
    const char *fds;
    int for_us;
};

static void activate(void *arg)
{
    const struct activation *a = arg;
    if (a->fd == 3)
        fcntl(3, F_SETFD, 0);
    else if (dup2(a->fd, 3) != 3)
        _exit(126);
    char v[32];
    snprintf(v, sizeof(v), "%d", a->for_us ? (int)getpid() : (int)getppid());
    setenv("LISTEN_PID", v, 1);
    setenv("LISTEN_FDS", a->fds, 1);
    unsetenv("FAULTLINE_SOCKET");
}

/* Exec core as a service manager would: fd becomes descriptor 3, LISTEN_FDS
 * is fds and LISTEN_PID the child's own pid (or another's: for_us 0); more
 * options after the harness's. Core's output goes to logf. */
static pid_t start_core(int fd, const char *fds, int for_us, const char *const more[])
{
    struct activation a = {.fd = fd, .fds = fds, .for_us = for_us};
    int log = open(logf, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    T_ASSERT(log >= 0);
    pid_t pid = t_core_exec(log, more, activate, &a);
    close(log);
    return pid;
}

/* Wait until core says it listens (count such lines in its log so far), or
 * return its exit status if it ends first (-1: it listens). */
static int wait_listening(pid_t pid, int lines)
{
    long end = t_now_ms() + T_WAIT_MS;
    while (t_file_lines_with(logf, lines + 1, "listening on", (const char *)NULL) <= lines) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
        if (t_now_ms() > end) T_FAILF("core did not start listening within %d ms", T_WAIT_MS);
        t_sleep_ms(5);
    }
    return -1;
}

static int stop_core(pid_t pid)
{
    kill(pid, SIGTERM);
    return t_wait_within(pid, T_WAIT_MS, "core's end after SIGTERM");
}

static int component(void *seed)
{
    struct fl_env *env = t_env();
    t_session_works(env, 8, (unsigned char)(uintptr_t)seed);
    fl_env_close(env);
    return 0;
}

static void show_log(void)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "cat %s >&2", logf);
    if (system(cmd)) {
    }
}

static void activated(void)
{
    setup();
    int lfd = make_socket(SOCK_SEQPACKET, sock, 1);
    pid_t core = start_core(lfd, "1", 1, NULL);
    if (wait_listening(core, 0) >= 0) {
        show_log();
        T_FAILF("core did not start on the socket passed to it");
    }
    T_ASSERT(t_file_lines_with(logf, 1,
                               "socket activation: listening on the socket the service "
                               "manager passed",
                               sock, (const char *)NULL) == 1);
    setenv("FAULTLINE_SOCKET", sock, 1);
    T_EQ(t_wait(t_spawn(component, (void *)1)), 0);
    struct stat st;
    T_EQ(stat(sock, &st), 0);
    T_EQ(st.st_mode & 07777, 0660); /* core did not chmod it */
    T_EQ(stop_core(core), 0);
    /* Core did not remove the socket it did not create. */
    T_EQ(stat(sock, &st), 0);
    T_ASSERT(S_ISSOCK(st.st_mode));
    T_EQ(st.st_mode & 07777, 0660);

    /* A restart on the same socket; a component that connects meanwhile
     * waits in its backlog and is served once core runs. */
    pid_t early = t_spawn(component, (void *)2);
    t_sleep_ms(100);
    core = start_core(lfd, "1", 1, NULL);
    if (wait_listening(core, 1) >= 0) {
        show_log();
        T_FAILF("core did not start again on the same socket");
    }
    T_EQ(t_wait_within(early, T_WAIT_MS, "the component that connected before core"), 0);
    T_EQ(t_wait(t_spawn(component, (void *)3)), 0);
    T_EQ(stop_core(core), 0);
    T_EQ(stat(sock, &st), 0);
    T_EQ(t_file_lines_with(logf, 1, "removing stale socket", (const char *)NULL), 0);
    close(lfd);
    cleanup();
}

/* Core refuses fd as its socket: exit 1, and a line naming the problem. */
static void refused(int fd, const char *fds, const char *why)
{
    unlink(logf);
    pid_t core = start_core(fd, fds, 1, NULL);
    int st = t_wait_within(core, T_WAIT_MS, why);
    if (st != 1 || t_file_lines_with(logf, 1, "socket activation:", why, (const char *)NULL) != 1) {
        show_log();
        T_FAILF("core exited %d; expected 1 and a line saying \"%s\"", st, why);
    }
    T_EQ(t_file_lines_with(logf, 1, "listening on", (const char *)NULL), 0);
}

static void wrong_sockets(void)
{
    setup();
    char path[160];
    snprintf(path, sizeof(path), "%s/stream.sock", dir);
    int fd = make_socket(SOCK_STREAM, path, 1);
    refused(fd, "1", "SOCK_STREAM");
    close(fd);
    snprintf(path, sizeof(path), "%s/quiet.sock", dir);
    fd = make_socket(SOCK_SEQPACKET, path, 0);
    refused(fd, "1", "not listening");
    close(fd);
    snprintf(path, sizeof(path), "%s/file", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    T_ASSERT(fd >= 0);
    refused(fd, "1", "not a socket");
    close(fd);
    fd = make_socket(SOCK_SEQPACKET, sock, 1);
    refused(fd, "2", "exactly one");
    refused(fd, "x", "is not a number");
    /* Nothing was created or removed: the socket is still there. */
    struct stat st;
    T_EQ(stat(sock, &st), 0);
    close(fd);
    cleanup();
}

static void not_for_us(void)
{
    setup();
    char own[160];
    snprintf(own, sizeof(own), "%s/own.sock", dir);
    int fd = make_socket(SOCK_SEQPACKET, sock, 1);
    const char *const more[] = {"--socket", own, NULL};
    pid_t core = start_core(fd, "1", 0, more);
    if (wait_listening(core, 0) >= 0) {
        show_log();
        T_FAILF("core did not start");
    }
    T_ASSERT(t_file_lines_with(logf, 1, "socket activation:", "not this process", "ignored",
                               (const char *)NULL) == 1);
    setenv("FAULTLINE_SOCKET", own, 1);
    T_EQ(t_wait(t_spawn(component, (void *)4)), 0);
    struct stat st;
    T_EQ(stat(own, &st), 0);
    T_EQ(st.st_mode & 07777, 0600); /* its own socket, made as always */
    T_EQ(stop_core(core), 0);
    T_ASSERT(stat(own, &st) < 0 && errno == ENOENT); /* and removed at exit */
    close(fd);
    cleanup();
}

T_CASES(activated, wrong_sockets, not_for_us)
