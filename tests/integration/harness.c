#include "harness.h"

#include "../../src/common/protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

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

struct t_core *t_core_start(const char *opt, ...)
{
    const char *core = getenv("FAULTLINE_CORE");
    if (!core) core = "faultline-core";
    struct t_core *c = calloc(1, sizeof(*c));
    snprintf(c->dir, sizeof(c->dir), "/tmp/fltest-XXXXXX");
    T_ASSERT(mkdtemp(c->dir));
    snprintf(c->socket, sizeof(c->socket), "%s/core.sock", c->dir);
    snprintf(c->log, sizeof(c->log), "%s/core.log", c->dir);
    setenv("FAULTLINE_SOCKET", c->socket, 1);

    const char *argv[32];
    int n = 0;
    argv[n++] = core;
    argv[n++] = "-v";
    argv[n++] = "-v";
    const char *backend = getenv("FL_TEST_BACKEND");
    if (backend) {
        argv[n++] = "--backend";
        argv[n++] = backend;
    }
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
        execv(core, (char *const *)argv);
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
            exit(T_FAIL);
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
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)c->pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

long t_core_status_kb(struct t_core *c, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)c->pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, field, fl) && line[fl] == ':') v = strtol(line + fl + 1, NULL, 10);
    fclose(f);
    return v;
}

int t_core_log_count(struct t_core *c, const char *text)
{
    FILE *f = fopen(c->log, "r");
    if (!f) return 0;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof(line), f)) n += strstr(line, text) != NULL;
    fclose(f);
    return n;
}

int t_core_log_contains(struct t_core *c, const char *text)
{
    FILE *f = fopen(c->log, "r");
    if (!f) return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

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
    int r;
    void *p = fl_attach(env, ds, &r);
    if (!p) T_ERR(r, 0);
    return p;
}

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

int t_wait(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
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

int t_raw_connect(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *path = getenv("FAULTLINE_SOCKET");
    T_ASSERT(path && strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    T_ASSERT(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
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
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        T_ASSERT(n > 0);
        if (((struct fl_msg_hdr *)(void *)buf)->type == FL_MSG_REPLY) {
            memcpy(reply, buf, sizeof(*reply));
            return;
        }
    }
}

int t_raw_attached_peer(const char *token)
{
    int fd = t_raw_connect();
    struct fl_req_hello h = {
        .version = FL_PROTO_VERSION, .window_base = 0x100000000000ull, .window_size = 1ull << 30};
    t_raw_send(fd, &h, FL_REQ_HELLO);
    struct fl_msg_reply r;
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    fl_wire_cap as = r.val[1];
    struct fl_req_cap_import imp = {0};
    for (int i = 0; i < FL_TOKEN_BYTES; i++) {
        unsigned v;
        T_ASSERT(sscanf(token + 2 * i, "%2x", &v) == 1);
        imp.token[i] = (uint8_t)v;
    }
    t_raw_send(fd, &imp, FL_REQ_CAP_IMPORT);
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    struct fl_req_rm_attach at = {.rm = as, .ds = r.val[0], .flags = FL_ATTACH_WRITEABLE};
    t_raw_send(fd, &at, FL_REQ_RM_ATTACH);
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    return fd;
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

void t_child_expect(struct t_child *c, const char *want)
{
    char line[512];
    size_t i = 0;
    long end = t_now_ms() + T_WAIT_MS;
    while (i + 1 < sizeof(line)) {
        struct pollfd pf = {.fd = c->from.r, .events = POLLIN};
        long left = end - t_now_ms();
        int r = poll(&pf, 1, left > 0 ? (int)left : 0);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) {
            fprintf(stderr, "%s: no answer within %d ms, expected \"%s\"\n", c->name, T_WAIT_MS,
                    want);
            exit(T_FAIL);
        }
        char ch;
        if (read(c->from.r, &ch, 1) != 1) {
            fprintf(stderr, "%s: died (pipe closed), expected \"%s\"\n", c->name, want);
            exit(T_FAIL);
        }
        if (ch == '\n') break;
        line[i++] = ch;
    }
    line[i] = 0;
    if (strcmp(line, want)) {
        fprintf(stderr, "%s said \"%s\", expected \"%s\"\n", c->name, line, want);
        exit(T_FAIL);
    }
}

void t_child_silent(struct t_child *c)
{
    struct pollfd pf = {.fd = c->from.r, .events = POLLIN};
    if (poll(&pf, 1, 0) != 0) {
        fprintf(stderr, "%s should be halted but %s\n", c->name,
                pf.revents & POLLIN ? "said something" : "hung up");
        exit(T_FAIL);
    }
    T_EQ(waitpid(c->pid, NULL, WNOHANG), 0);
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
    hl = mmap(NULL, sizeof(*hl), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    T_ASSERT(hl != MAP_FAILED);
    healthy_pid = t_spawn(healthy_main, &kind);
}

static int healthy_moved(unsigned long base)
{
    int st;
    if (waitpid(healthy_pid, &st, WNOHANG) == healthy_pid) {
        fprintf(stderr, "the healthy component ended (status %#x, error %s at line %d)\n", st,
                fl_error_name(atomic_load(&hl->err)), atomic_load(&hl->line));
        exit(T_FAIL);
    }
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
