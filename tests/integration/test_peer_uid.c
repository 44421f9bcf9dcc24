/*
 * Core serves its own uid (and root) only. With the socket opened up for the
 * test (directory 0755, socket 0666), a process of another uid can connect,
 * but core refuses it: fl_env_open fails, a raw HELLO gets no answer but the
 * end of the connection, and core's log says "refusing connection ... uid".
 * Root sessions — one opened before, one after — are served throughout.
 * Needs root (to become uid 65534); skipped otherwise.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define NOBODY 65534

static void works(struct fl_env *env, unsigned char seed)
{
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 2 * 4096, &ds), 0);
    int err = -1;
    volatile unsigned char *p = fl_attach(env, ds, &err);
    T_ERR(err, 0);
    for (int i = 0; i < 2 * 4096; i++) p[i] = (unsigned char)(i + seed);
    for (int i = 0; i < 2 * 4096; i++) T_EQ(p[i], (unsigned char)(i + seed));
    T_ERR(fl_detach(env, (const void *)p), 0);
    T_ERR(fl_ram_free(env, ds), 0);
}

static int nobody_main(void *arg)
{
    struct t_pipe *to_parent = arg;
    T_ASSERT(setgroups(0, NULL) == 0);
    T_ASSERT(setgid(NOBODY) == 0);
    T_ASSERT(setuid(NOBODY) == 0);
    T_EQ(getuid(), NOBODY);
    T_EQ(geteuid(), NOBODY);

    /* The file system lets this uid in: whatever refuses it is core. */
    const char *path = getenv("FAULTLINE_SOCKET");
    T_ASSERT(path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    T_ASSERT(strlen(path) < sizeof(sa.sun_path));
    strcpy(sa.sun_path, path);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    T_ASSERT(s >= 0);
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "uid %d cannot connect: %s\n", NOBODY, strerror(errno));
        return 1;
    }
    struct timeval tv = {5, 0};
    T_ASSERT(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    struct fl_req_hello h;
    memset(&h, 0, sizeof(h));
    h.hdr.magic = FL_PROTO_MAGIC;
    h.hdr.type = FL_REQ_HELLO;
    h.hdr.id = 1;
    h.version = FL_PROTO_VERSION;
    h.window_base = 0x100000000ull;
    h.window_size = 1 << 20;
    ssize_t n = send(s, &h, sizeof(h), MSG_NOSIGNAL);
    T_ASSERT(n == (ssize_t)sizeof(h) || (n < 0 && (errno == EPIPE || errno == ECONNRESET)));
    char buf[FL_MSG_MAX + 8];
    n = recv(s, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        fprintf(stderr, "core neither answered nor closed a foreign uid's connection in 5 s\n");
        return 1;
    }
    if (n > 0) {
        /* The only answer allowed: the refusal (id 0, PERMISSION), then EOF. */
        struct fl_msg_reply r;
        memset(&r, 0, sizeof(r));
        memcpy(&r, buf, n < (ssize_t)sizeof(r) ? (size_t)n : sizeof(r));
        if (n != (ssize_t)sizeof(r) || r.hdr.type != FL_MSG_REPLY || r.hdr.id != 0 ||
            r.status != -FL_E_PERMISSION) {
            fprintf(stderr, "core answered a foreign uid (%zd bytes, id %llu, status %d)\n", n,
                    (unsigned long long)r.hdr.id, r.status);
            return 1;
        }
        /* EOF, or a reset: core closed without reading our HELLO. */
        n = recv(s, buf, sizeof(buf), 0);
        if (n != 0 && !(n < 0 && errno == ECONNRESET)) {
            fprintf(stderr, "core did not close a foreign uid's connection after refusing it\n");
            return 1;
        }
    }
    close(s);

    /* The library says no as well. */
    struct fl_env *env = NULL;
    int r = fl_env_open(&env, NULL);
    char line[64];
    snprintf(line, sizeof(line), "%d", r);
    t_pipe_send(to_parent, line);
    if (r == 0) fl_env_close(env);
    return 0;
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: needs root to act as another uid\n");
        return T_SKIP;
    }
    signal(SIGPIPE, SIG_IGN);
    struct t_core *core = t_core_start(NULL);
    struct fl_env *before = t_env();
    works(before, 1);

    /* Test only: let another uid reach the socket. */
    T_ASSERT(chmod(core->dir, 0755) == 0);
    T_ASSERT(chmod(core->socket, 0666) == 0);

    struct t_pipe p;
    t_pipe_open(&p);
    pid_t child = t_spawn(nobody_main, &p);
    close(p.w);
    char line[64];
    int got = t_pipe_recv(&p, line, sizeof(line));
    int st = t_wait(child);
    T_EQ(st, 0);
    T_EQ(got, 0);
    int r = atoi(line);
    if (r == 0) {
        fprintf(stderr, "core served a session of uid %d\n", NOBODY);
        return T_FAIL;
    }
    fprintf(stderr, "fl_env_open as uid %d: %s\n", NOBODY, fl_error_name(r));
    T_EQ(r, -FL_E_PERMISSION);

    char want[96];
    snprintf(want, sizeof(want), "refusing connection from pid %d: uid %d", (int)child, NOBODY);
    T_ASSERT(t_core_log_contains(core, want));

    /* Root is still served: the session from before and a new one. */
    works(before, 2);
    struct fl_env *after = t_env();
    works(after, 3);
    fl_env_close(after);
    fl_env_close(before);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
