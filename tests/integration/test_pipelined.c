/*
 * A peer that sends many requests at once gets every reply. Core reads a
 * session's messages 32 at a time (so one chatty peer cannot starve the
 * others) and must come back for the rest even though the peer sends nothing
 * more: with an edge-triggered wait (io_uring's multishot poll) the rest was
 * stranded, and a revocation's acknowledgement stranded that way once made a
 * detach hang until the revocation deadline killed an innocent client.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQUESTS 500

static void every_reply_of_a_burst(void)
{
    struct t_core *core = t_core_start(NULL);
    int fd = t_raw_connect();
    T_EQ(t_raw_hello(fd, 0, -1), 0);
    struct fl_msg_reply r;
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);

    /* All at once, reading replies only when the socket is full. */
    int sent = 0, got = 0;
    while (got < REQUESTS) {
        while (sent < REQUESTS) {
            struct fl_req_session_info q;
            fl_msg_init(&q, FL_REQ_SESSION_INFO, (uint64_t)sent + 100);
            if (send(fd, &q, sizeof(q), MSG_DONTWAIT | MSG_NOSIGNAL) != sizeof(q)) break;
            sent++;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, T_WAIT_MS) != 1)
            T_FAILF("%d requests sent, %d replies, then nothing for %d ms", sent, got, T_WAIT_MS);
        _Alignas(8) uint8_t buf[FL_MSG_MAX];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        T_EQ(n, sizeof(struct fl_msg_reply));
        memcpy(&r, buf, sizeof(r));
        T_EQ(r.hdr.type, FL_MSG_REPLY);
        T_EQ(r.hdr.id, (uint64_t)got + 100); /* in order */
        T_EQ(r.status, 0);
        got++;
    }
    close(fd);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(every_reply_of_a_burst)
