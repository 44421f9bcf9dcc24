/*
 * faultline-ctl: what a running core knows, for people and for
 * faultline-run's failure report. It connects like any component (a session
 * of its own, without a userfaultfd) and asks core for a dump.
 *
 *   faultline-ctl [--socket PATH] [sessions|maps|faults|all]...
 *
 * Exits 0, or 1 with a message when core cannot be reached or does not
 * answer within five seconds.
 */
#include "../../common/protocol.h"

#include <faultline/env.h>
#include <faultline/error.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 5000

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The next message, within the deadline; its length, or -1. */
static ssize_t next(int fd, void *buf, size_t cap, long deadline)
{
    for (;;) {
        long left = deadline - now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, left > 0 ? (int)left : 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            fprintf(stderr, "faultline-ctl: core did not answer within %d ms\n", DEADLINE_MS);
            return -1;
        }
        int fds[FL_WIRE_MAX_FDS], nfds, truncated;
        ssize_t n = fl_wire_recv(fd, buf, cap, fds, &nfds, 0, &truncated);
        for (int i = 0; i < nfds; i++) close(fds[i]);
        const char *why = "closed";
        if (n <= 0 || truncated || fl_msg_check(buf, (size_t)n, &why) < 0) {
            fprintf(stderr, "faultline-ctl: core closed the connection (%s)\n",
                    n < 0 ? strerror((int)-n) : why);
            return -1;
        }
        return n;
    }
}

/* Send req (header and payload filled in) and print CTL lines until its
 * reply; returns the reply's status. */
static int request(int fd, const void *req, long deadline)
{
    const struct fl_msg_hdr *rh = req;
    uint64_t id = rh->id;
    if (fl_wire_send(fd, req, fl_msg_size(rh->type), -1, 0) < 0) {
        fprintf(stderr, "faultline-ctl: cannot send to core: %s\n", strerror(errno));
        return -FL_E_SESSION_CLOSED;
    }
    for (;;) {
        _Alignas(8) uint8_t buf[FL_MSG_MAX + 8];
        if (next(fd, buf, sizeof(buf), deadline) < 0) return -FL_E_SESSION_CLOSED;
        const struct fl_msg_hdr *h = (const void *)buf;
        if (h->id != id) continue;
        if (h->type == FL_MSG_CTL_LINE)
            puts(((const struct fl_msg_ctl_line *)(const void *)buf)->text);
        else if (h->type == FL_MSG_REPLY)
            return ((const struct fl_msg_reply *)(const void *)buf)->status;
    }
}

int main(int argc, char **argv)
{
    char path[108];
    const char *sock = NULL;
    uint32_t what = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc)
            sock = argv[++i];
        else if (!strcmp(argv[i], "sessions"))
            what |= FL_CTL_SESSIONS;
        else if (!strcmp(argv[i], "maps"))
            what |= FL_CTL_MAPS;
        else if (!strcmp(argv[i], "faults"))
            what |= FL_CTL_FAULTS;
        else if (!strcmp(argv[i], "all"))
            what |= FL_CTL_WHAT_ALL;
        else {
            fprintf(stderr, "usage: faultline-ctl [--socket PATH] [sessions|maps|faults|all]...\n"
                            "  sessions  each session: its component, RAM and capability quota\n"
                            "  maps      each region map as a tree of its attachments\n"
                            "  faults    the faults waiting for a manager, with their age\n");
            return !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ? 0 : 2;
        }
    }
    if (!what) what = FL_CTL_WHAT_ALL;
    if (!sock) {
        if (fl_socket_path(path, sizeof(path)) < 0) {
            fprintf(stderr, "faultline-ctl: socket path too long\n");
            return 1;
        }
        sock = path;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (strlen(sock) >= sizeof(sa.sun_path) || fd < 0) {
        fprintf(stderr, "faultline-ctl: bad socket path %s\n", sock);
        return 1;
    }
    strcpy(sa.sun_path, sock);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "faultline-ctl: no faultline-core at %s: %s\n", sock, strerror(errno));
        return 1;
    }
    long deadline = now_ms() + DEADLINE_MS;
    /* A session without a userfaultfd; its window is never used. */
    struct fl_req_hello hello;
    fl_msg_init(&hello, FL_REQ_HELLO, 1);
    hello.version = FL_PROTO_VERSION;
    hello.window_base = 0x10000;
    hello.window_size = 0x1000;
    int r = request(fd, &hello, deadline);
    if (r == 0) {
        struct fl_req_ctl_dump dump;
        fl_msg_init(&dump, FL_REQ_CTL_DUMP, 2);
        dump.what = what;
        r = request(fd, &dump, deadline);
    }
    close(fd);
    if (r != 0 && r != -FL_E_SESSION_CLOSED)
        fprintf(stderr, "faultline-ctl: core refused: %s\n", fl_strerror(r));
    return r == 0 ? 0 : 1;
}
