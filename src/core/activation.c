/*
 * Socket activation, as systemd does it (sd_listen_fds(3)), without
 * libsystemd: the service manager creates and listens on the socket
 * (faultline-core.socket), starts core on the first connection and passes
 * the socket as descriptor 3, with LISTEN_PID set to core's pid and
 * LISTEN_FDS to 1. The socket, its path and its permissions are the unit's:
 * core neither creates, changes nor removes them. SO_PEERCRED still decides
 * who is served (peer.c).
 */
#include "../common/log.h"
#include "activation.h"
#include "peer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_FDS_START 3

/* A decimal number of the environment, or -1 (and why in *bad). */
static long env_number(const char *name, const char **bad)
{
    const char *v = getenv(name);
    if (!v) return -1;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 0 || n > INT_MAX) {
        *bad = name;
        return -1;
    }
    return n;
}

static const char *kind(int fd)
{
    struct stat st;
    int domain = -1, type = -1, listening = 0;
    socklen_t l = sizeof(int);
    if (fstat(fd, &st) < 0) return "not an open descriptor";
    if (!S_ISSOCK(st.st_mode)) return "not a socket";
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) < 0 || domain != AF_UNIX)
        return "not a unix socket (ListenSequentialPacket= takes a path)";
    l = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0 || type != SOCK_SEQPACKET)
        return type == SOCK_STREAM  ? "a SOCK_STREAM socket (ListenStream=), not SOCK_SEQPACKET"
               : type == SOCK_DGRAM ? "a SOCK_DGRAM socket (ListenDatagram=), not SOCK_SEQPACKET"
                                    : "not a SOCK_SEQPACKET socket";
    l = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) < 0 || !listening)
        return "a SOCK_SEQPACKET unix socket that is not listening (Accept=yes passes a "
               "connection; core wants the listening socket: Accept=no)";
    return NULL;
}

int core_activation_socket(char *path, size_t len)
{
    const char *bad = NULL;
    long pid = env_number("LISTEN_PID", &bad), n = env_number("LISTEN_FDS", &bad);
    bool passed = getenv("LISTEN_PID") != NULL;
    /* Not for a child of core (sd_listen_fds with unset_environment). */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (!passed) return -1;
    if (bad) {
        fl_error("socket activation: $%s is not a number; refusing to start", bad);
        return -2;
    }
    if (pid != (long)getpid()) {
        fl_info("socket activation: $LISTEN_PID is %ld, not this process (%ld): ignored", pid,
                (long)getpid());
        return -1;
    }
    if (n <= 0) return -1;
    if (n > 1) {
        fl_error("socket activation: the service manager passed %ld sockets (LISTEN_FDS); core "
                 "listens on exactly one (one ListenSequentialPacket= in the .socket unit)",
                 n);
        return -2;
    }
    int fd = LISTEN_FDS_START;
    const char *what = kind(fd);
    if (what) {
        fl_error("socket activation: descriptor %d, passed by the service manager, is %s; core "
                 "needs a listening SOCK_SEQPACKET unix socket (ListenSequentialPacket=PATH)",
                 fd, what);
        return -2;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        fl_error("socket activation: cannot set up descriptor %d: %s", fd, strerror(errno));
        return -2;
    }
    struct sockaddr_un sa;
    socklen_t sl = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) < 0 ||
        sl <= offsetof(struct sockaddr_un, sun_path))
        snprintf(path, len, "(an unnamed socket)");
    else if (sa.sun_path[0] == 0) /* abstract */
        snprintf(path, len, "@%.*s", (int)(sl - offsetof(struct sockaddr_un, sun_path) - 1),
                 sa.sun_path + 1);
    else
        snprintf(path, len, "%.*s", (int)sizeof(sa.sun_path), sa.sun_path);
    fl_info("socket activation: listening on the socket the service manager passed (descriptor "
            "%d, %s); its path and permissions are the unit's, and core does not remove it",
            fd, path);
    if (strcmp(core_peer_allow_list(), "empty"))
        fl_warn("socket activation: core does not open the socket to the allow-list (%s): the "
                "unit's SocketMode=, SocketUser= and SocketGroup= decide who can connect; "
                "SO_PEERCRED still refuses everyone else",
                core_peer_allow_list());
    return fd;
}
