/*
 * faultline-ctl: what a running core knows, for people and for scripts and
 * faultline-run's failure report. It connects like any component (a session
 * of its own, without a userfaultfd, which it leaves out of what it shows)
 * and asks core for a dump (src/core/ctl.c), which view.c prints.
 *
 *   faultline-ctl [--socket PATH] [--json] [--watch SECONDS [--count N]]
 *                 [sessions|maps|faults|all]...
 *
 * Exits 0, 2 for a wrong command line, or 1 with a message when core cannot
 * be reached or does not answer within five seconds.
 */
#include "../../common/protocol.h"
#include "view.h"
#include "fl_version.h"

#include <faultline/env.h>
#include <faultline/error.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Send req (header and payload filled in), give the CTL lines to d until
 * its reply; returns the reply's status (and its first value in *val). */
static int request(int fd, const void *req, long deadline, struct dump *d, uint64_t *val)
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
        if (h->type == FL_MSG_CTL_LINE && d) {
            dump_line(d, ((const struct fl_msg_ctl_line *)(const void *)buf)->text);
        } else if (h->type == FL_MSG_REPLY) {
            const struct fl_msg_reply *rep = (const void *)buf;
            if (val) *val = rep->val[0];
            return rep->status;
        }
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: faultline-ctl [--socket PATH] [--json] [--watch SECONDS [--count N]]\n"
               "                     [sessions|maps|faults|all]...\n"
               "Shows what a running faultline-core knows (default: all of it).\n"
               "  sessions  each session: its component, its process (running, stopped, gone),\n"
               "            RAM and capability quota\n"
               "  maps      each region map by id (SESSION.SLOT) as a tree of its attachments,\n"
               "            with its fault handler's signal: pending, taken or idle\n"
               "  faults    the faults waiting for a manager, by map, with their age\n"
               "  --socket PATH     core's socket (default: $FAULTLINE_SOCKET, then the\n"
               "                    per-user default)\n"
               "  --json            one JSON object per snapshot (doc/faultline-ctl.md)\n"
               "  --watch SECONDS   a snapshot every SECONDS (fractions allowed) until\n"
               "                    interrupted or core goes away\n"
               "  --count N         with --watch: stop after N snapshots\n"
               "  -h, --help        this text\n"
               "  --version         print the version and commit, and exit\n"
               "Exit: 0, 1 core cannot be reached or does not answer, 2 wrong usage.\n");
}

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One dump, shown; 0 or 1. */
static int snapshot(int fd, uint64_t *next_id, struct view *v, bool json, bool watch)
{
    struct dump *d = dump_new();
    if (!d) return 1;
    struct fl_req_ctl_dump dump;
    fl_msg_init(&dump, FL_REQ_CTL_DUMP, ++*next_id);
    /* The sessions always: they tell the state of each map's owner. */
    dump.what = v->what | FL_CTL_SESSIONS;
    v->time = now_wall();
    int r = request(fd, &dump, now_ms() + DEADLINE_MS, d, NULL);
    if (r == 0) {
        if (json) {
            dump_json(d, v, stdout);
        } else {
            if (watch) {
                char when[32];
                time_t t = (time_t)v->time;
                strftime(when, sizeof(when), "%H:%M:%S", localtime(&t));
                printf("%s--- faultline-ctl %s, %s ---\n", isatty(1) ? "\033[H\033[2J" : "\n",
                       v->socket, when);
            }
            dump_text(d, v, stdout);
        }
        fflush(stdout);
    } else if (r != -FL_E_SESSION_CLOSED) {
        fprintf(stderr, "faultline-ctl: core refused: %s\n", fl_strerror(r));
    }
    dump_free(d);
    return r == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    char path[108];
    const char *sock = NULL;
    uint32_t what = 0;
    bool json = false;
    double watch = 0;
    long count = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
            sock = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--watch") && i + 1 < argc) {
            watch = strtod(argv[++i], &end);
            if (*end || !(watch > 0) || watch > 86400) {
                fprintf(stderr, "faultline-ctl: --watch wants seconds (> 0), not '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
            count = strtol(argv[++i], &end, 10);
            if (*end || count < 1) {
                fprintf(stderr, "faultline-ctl: --count wants a number > 0, not '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "sessions")) {
            what |= FL_CTL_SESSIONS;
        } else if (!strcmp(argv[i], "maps")) {
            what |= FL_CTL_MAPS;
        } else if (!strcmp(argv[i], "faults")) {
            what |= FL_CTL_FAULTS;
        } else if (!strcmp(argv[i], "all")) {
            what |= FL_CTL_WHAT_ALL;
        } else if (!strcmp(argv[i], "--version")) {
            printf("faultline-ctl %s\n", FL_VERSION_STRING);
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "faultline-ctl: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (count && !watch) {
        fprintf(stderr, "faultline-ctl: --count goes with --watch\n");
        return 2;
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
    /* A session without a userfaultfd; its window is never used. */
    struct fl_req_hello hello;
    fl_msg_init(&hello, FL_REQ_HELLO, 1);
    hello.version = FL_PROTO_VERSION;
    hello.window_base = 0x10000;
    hello.window_size = 0x1000;
    struct view v = {.what = what, .socket = sock};
    int r = request(fd, &hello, now_ms() + DEADLINE_MS, NULL, &v.self);
    if (r != 0) {
        if (r != -FL_E_SESSION_CLOSED)
            fprintf(stderr, "faultline-ctl: core refused: %s\n", fl_strerror(r));
        close(fd);
        return 1;
    }
    /* SIGINT and SIGTERM end a watch between snapshots, with exit 0. */
    struct sigaction sa_stop = {.sa_handler = on_stop};
    if (watch) {
        sigaction(SIGINT, &sa_stop, NULL);
        sigaction(SIGTERM, &sa_stop, NULL);
    }
    uint64_t id = 1;
    long n = 0;
    for (;;) {
        r = snapshot(fd, &id, &v, json, watch > 0);
        if (r || !watch || stop || (count && ++n >= count)) break;
        struct timespec ts = {(time_t)watch, (long)((watch - (double)(time_t)watch) * 1e9)};
        nanosleep(&ts, NULL); /* a signal cuts it short */
        if (stop) break;
    }
    close(fd);
    return r;
}
