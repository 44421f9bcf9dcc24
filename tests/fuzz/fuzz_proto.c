/*
 * libFuzzer harness for the message decoder: what both ends do with a
 * datagram before they act on it (fl_wire_recv, fl_msg_check,
 * fl_msg_max_fds).
 *
 * Input: u8 ctl, then the datagram. ctl bits 0-2: how many descriptors travel
 * with it (up to 7, more than FL_WIRE_MAX_FDS); bits 3-4: the receiver's
 * buffer (core's FL_MSG_MAX + 8, FL_MSG_MAX + 1, a header, nothing).
 * The datagram goes through a real SOCK_SEQPACKET pair, so the kernel's
 * truncation and descriptor handling are part of what is checked.
 * The same file builds without libFuzzer for replay.c.
 */
#include "protocol.h"

#include <faultline/error.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int pair[2] = {-1, -1};
static int free_fd = -1; /* the lowest free descriptor number between iterations */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_proto: %s:%d: %s\n", __FILE__, __LINE__, #cond);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_decoder(const uint8_t *msg, size_t len)
{
    const char *why = "unset";
    int r = fl_msg_check(msg, len, &why);
    if (r < 0) {
        CHECK(r == -FL_E_PROTOCOL);
        CHECK(why && *why);
        return;
    }
    CHECK(r == 0 && why == NULL);
    struct fl_msg_hdr h;
    memcpy(&h, msg, sizeof(h));
    CHECK(h.magic == FL_PROTO_MAGIC && h.reserved == 0);
    CHECK(len == fl_msg_size(h.type) && len <= FL_MSG_MAX);
    CHECK(h.type > FL_MSG_NONE && h.type < FL_MSG_TYPE_MAX);
    CHECK(fl_msg_max_fds(h.type) <= FL_WIRE_MAX_FDS);
    /* What the sender's side makes of this type must pass as well. */
    _Alignas(8) uint8_t fresh[FL_MSG_MAX];
    fl_msg_init(fresh, h.type, h.id);
    CHECK(fl_msg_check(fresh, len, &why) == 0);
}

static void check_wire(uint8_t ctl, const uint8_t *msg, size_t len)
{
    if (pair[0] < 0) {
        CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0);
        int probe = eventfd(0, EFD_CLOEXEC);
        close(probe);
        free_fd = probe;
    }
    static const size_t caps[] = {FL_MSG_MAX + 8, FL_MSG_MAX + 1, sizeof(struct fl_msg_hdr), 0};
    size_t cap = caps[(ctl >> 3) & 3];
    int nsend = ctl & 7;

    int sfds[7];
    for (int i = 0; i < nsend; i++) CHECK((sfds[i] = eventfd(0, EFD_CLOEXEC)) >= 0);
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(7 * sizeof(int))];
    } c;
    memset(&c, 0, sizeof(c));
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nsend) {
        mh.msg_control = c.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)nsend * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nsend * sizeof(int));
        memcpy(CMSG_DATA(cm), sfds, (size_t)nsend * sizeof(int));
    }
    ssize_t sent = sendmsg(pair[0], &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    for (int i = 0; i < nsend; i++) close(sfds[i]);
    if (sent < 0) return; /* larger than the socket takes: nothing to receive */
    CHECK((size_t)sent == len);

    _Alignas(8) uint8_t buf[FL_MSG_MAX + 8];
    int fds[FL_WIRE_MAX_FDS], nfds = -1, trunc = -1;
    ssize_t n = fl_wire_recv(pair[1], buf, cap, fds, &nfds, MSG_DONTWAIT, &trunc);
    CHECK(nfds >= 0 && nfds <= FL_WIRE_MAX_FDS);
    for (int i = 0; i < nfds; i++) {
        CHECK(fcntl(fds[i], F_GETFD) == FD_CLOEXEC);
        close(fds[i]);
    }
    CHECK(n >= 0);
    size_t want = len < cap ? len : cap;
    CHECK((size_t)n == want && !memcmp(buf, msg, want));
    if (n == 0) {
        /* Indistinguishable from end of file: it must not carry descriptors
         * either, or a receiver that stops at EOF would leak them. */
        CHECK(nfds == 0);
    } else {
        CHECK(nfds == (nsend < FL_WIRE_MAX_FDS ? nsend : FL_WIRE_MAX_FDS));
        CHECK(trunc == (len > cap || nsend > FL_WIRE_MAX_FDS));
        if (!trunc) check_decoder(buf, (size_t)n);
    }
    /* Nothing left open: the lowest free number is where it was. */
    int probe = eventfd(0, EFD_CLOEXEC);
    close(probe);
    CHECK(probe == free_fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    /* Receivers decode from an aligned buffer (the structs need it). */
    _Alignas(8) uint8_t msg[4096];
    if (size - 1 <= sizeof(msg)) {
        memcpy(msg, data + 1, size - 1);
        check_decoder(msg, size - 1);
    }
    check_wire(data[0], data + 1, size - 1);
    return 0;
}
