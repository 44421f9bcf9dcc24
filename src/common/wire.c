/* Datagrams with descriptors (SCM_RIGHTS), for both ends of a session socket. */
#include "protocol.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int fl_wire_send(int sock, const void *msg, size_t len, int fd, int flags)
{
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } c;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&c, 0, sizeof(c));
        mh.msg_control = c.buf;
        mh.msg_controllen = sizeof(c.buf);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    ssize_t n;
    do n = sendmsg(sock, &mh, flags | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR && !(flags & MSG_DONTWAIT));
    return n < 0 ? -errno : 0;
}

static void close_fd(int fd)
{
    close(fd);
}
void (*fl_wire_discard)(int fd) = close_fd;

/* The descriptors a received datagram carried (n its length), into fds;
 * returns whether the datagram or its descriptors were truncated. */
static int take_fds(struct msghdr *mh, ssize_t n, int fds[FL_WIRE_MAX_FDS], int *nfds)
{
    *nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int j = 0; j < k; j++) {
            int f;
            memcpy(&f, CMSG_DATA(cm) + j * sizeof(int), sizeof(int));
            if (*nfds < FL_WIRE_MAX_FDS) {
                fds[(*nfds)++] = f;
            } else {
                fl_wire_discard(f);
                mh->msg_flags |= MSG_CTRUNC; /* more than any message carries */
            }
        }
    }
    /* A zero-length datagram reads as end of file, and callers stop there:
     * descriptors it carried would stay open in the receiver for good. */
    if (n == 0) {
        for (int j = 0; j < *nfds; j++) fl_wire_discard(fds[j]);
        *nfds = 0;
    }
    return (mh->msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
}

ssize_t fl_wire_recv(int sock, void *buf, size_t cap, int fds[FL_WIRE_MAX_FDS], int *nfds,
                     int flags, int *truncated)
{
    union fl_wire_cmsg c;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf)};
    *nfds = 0;
    *truncated = 0;
    ssize_t n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
    if (n < 0) return -errno;
    *truncated = take_fds(&mh, n, fds, nfds);
    return n;
}

int fl_wire_recv_many(int sock, struct fl_wire_rx *rx, unsigned n, int flags)
{
    struct mmsghdr mm[FL_WIRE_BATCH];
    struct iovec iov[FL_WIRE_BATCH];
    if (n > FL_WIRE_BATCH) n = FL_WIRE_BATCH;
    for (unsigned i = 0; i < n; i++) {
        iov[i] = (struct iovec){.iov_base = rx[i].buf, .iov_len = sizeof(rx[i].buf)};
        mm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i],
                                             .msg_iovlen = 1,
                                             .msg_control = rx[i].cmsg.buf,
                                             .msg_controllen = sizeof(rx[i].cmsg.buf)}};
    }
    int got = recvmmsg(sock, mm, n, flags | MSG_CMSG_CLOEXEC, NULL);
    if (got < 0) return -errno;
    for (int i = 0; i < got; i++) {
        rx[i].len = (ssize_t)mm[i].msg_len;
        rx[i].truncated = take_fds(&mm[i].msg_hdr, rx[i].len, rx[i].fds, &rx[i].nfds);
    }
    return got;
}

int fl_wire_send_many(int sock, const struct fl_wire_tx *tx, unsigned n, int flags)
{
    struct mmsghdr mm[FL_WIRE_BATCH];
    struct iovec iov[FL_WIRE_BATCH];
    if (n > FL_WIRE_BATCH) n = FL_WIRE_BATCH;
    for (unsigned i = 0; i < n; i++) {
        iov[i] = (struct iovec){.iov_base = (void *)tx[i].msg, .iov_len = tx[i].len};
        mm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    int sent;
    do sent = sendmmsg(sock, mm, n, flags | MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR && !(flags & MSG_DONTWAIT));
    return sent < 0 ? -errno : sent;
}
