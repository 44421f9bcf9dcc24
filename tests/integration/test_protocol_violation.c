/*
 * Core against a peer that does not speak the protocol: every violation ends
 * that one connection (the peer reads EOF, never hangs), core says so in its
 * log, and every other session — one opened before all this and one opened
 * after — goes on working.
 *
 * Raw SOCK_SEQPACKET connections to $FAULTLINE_SOCKET, with the message
 * layouts of src/common/protocol.h:
 *  (a) HELLO with version 999 -> REPLY -FL_E_VERSION carrying core's version
 *      in val[2], then EOF;
 *  (b) a request before HELLO -> EOF;
 *  (c) truncated, oversized, garbage, bad magic, unknown type, reserved field
 *      set, unknown flags, a descriptor on a message that carries none, a
 *      second HELLO, a core->component message type -> EOF;
 *  (d) SIG_ALLOC carrying a pipe instead of an eventfd -> EOF; HELLO whose
 *      "uffd" is a regular file -> (an error reply and) EOF.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <linux/userfaultfd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define WINDOW_BASE 0x100000000ull
#define WINDOW_SIZE (16 * 4096ull)

static struct t_core *core;

/* Send one datagram, optionally with a descriptor. Core may already have
 * closed the connection: EPIPE/ECONNRESET are returned, not fatal. */
static int raw_send(int sock, const void *buf, size_t len, int fd)
{
    return fl_wire_send(sock, buf, len, fd, 0);
}

static ssize_t raw_recv(int sock, void *buf, size_t len)
{
    return t_raw_recv(sock, buf, len, "a raw peer");
}

static void hdr(void *msg, unsigned type, uint64_t id)
{
    struct fl_msg_hdr *h = msg;
    h->magic = FL_PROTO_MAGIC;
    h->type = (uint16_t)type;
    h->reserved = 0;
    h->id = id;
}

static void hello_msg(struct fl_req_hello *m, uint32_t version, uint32_t flags)
{
    memset(m, 0, sizeof(*m));
    hdr(m, FL_REQ_HELLO, 1);
    m->version = version;
    m->flags = flags;
    m->window_base = WINDOW_BASE;
    m->window_size = WINDOW_SIZE;
}

static void expect_closed(int sock, const char *what)
{
    t_raw_expect_closed(sock, what, 0);
}

/* A connection with a completed HELLO (no uffd: faults are not caught). */
static int established(void)
{
    int s = t_raw_connect();
    struct fl_req_hello h;
    hello_msg(&h, FL_PROTO_VERSION, 0);
    T_EQ(raw_send(s, &h, sizeof(h), -1), 0);
    struct fl_msg_reply r;
    T_EQ(raw_recv(s, &r, sizeof(r)), sizeof(r));
    T_EQ(r.hdr.magic, FL_PROTO_MAGIC);
    T_EQ(r.hdr.type, FL_MSG_REPLY);
    T_EQ(r.hdr.id, 1);
    T_EQ(r.status, 0);
    T_ASSERT(r.val[0] != 0); /* session id */
    T_ASSERT(r.val[1] != 0); /* address-space capability */

    /* And it serves: a RAM_ALLOC is answered. */
    struct fl_req_ram_alloc a;
    memset(&a, 0, sizeof(a));
    hdr(&a, FL_REQ_RAM_ALLOC, 2);
    a.size = 4096;
    T_EQ(raw_send(s, &a, sizeof(a), -1), 0);
    T_EQ(raw_recv(s, &r, sizeof(r)), sizeof(r));
    T_EQ(r.hdr.id, 2);
    T_EQ(r.status, 0);
    T_ASSERT(r.val[0] != 0);
    return s;
}

static void send_bad(const void *buf, size_t len, int fd, const char *what)
{
    int s = established();
    raw_send(s, buf, len, fd);
    expect_closed(s, what);
}

/* The well-behaved session, opened before any of the abuse, and memory it
 * keeps attached through it. */
static struct fl_env *good;
static fl_cap keep;
static volatile unsigned char *kept;

static void begin(void)
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);
    good = t_env();
    t_session_works(good, 3, 1);
    kept = t_ram(good, 4096, &keep);
    for (int i = 0; i < 4096; i++) kept[i] = (unsigned char)(i ^ 0x5a);
}

/* Core is alive and the session opened before all this still works --
 * including memory attached before. */
static void finish(void)
{
    T_ASSERT(kill(core->pid, 0) == 0);
    for (int i = 0; i < 4096; i++) T_EQ(kept[i], (unsigned char)(i ^ 0x5a));
    t_session_works(good, 3, 2);
    for (int i = 0; i < 4096; i++) kept[i] = (unsigned char)~kept[i];
    for (int i = 0; i < 4096; i++) T_EQ(kept[i], (unsigned char)~(i ^ 0x5a));

    /* A raw session established after it all is served too. */
    close(established());

    /* And fl_env_open against core still works. */
    struct fl_env *later = t_env();
    t_session_works(later, 3, 3);
    fl_env_close(later);

    T_ERR(fl_detach(good, (const void *)kept), 0);
    T_ERR(fl_ram_free(good, keep), 0);
    t_session_works(good, 3, 4);
    fl_env_close(good);
    T_EQ(t_core_stop(core), 0);
}

static void a_version_mismatch(void)
{
    begin();
    /* A version core does not speak: a clear error, then EOF. */
    {
        int s = t_raw_connect();
        struct fl_req_hello h;
        hello_msg(&h, 999, 0);
        h.hdr.id = 77;
        T_EQ(raw_send(s, &h, sizeof(h), -1), 0);
        struct fl_msg_reply r;
        memset(&r, 0, sizeof(r));
        T_EQ(raw_recv(s, &r, sizeof(r)), sizeof(r));
        T_EQ(r.hdr.magic, FL_PROTO_MAGIC);
        T_EQ(r.hdr.type, FL_MSG_REPLY);
        T_EQ(r.hdr.id, 77);
        T_EQ(r.status, -FL_E_VERSION);
        T_EQ(r.val[2], FL_PROTO_VERSION);
        char more[FL_MSG_MAX + 8];
        ssize_t n = raw_recv(s, more, sizeof(more));
        T_ASSERT(n == 0 || n == -ECONNRESET);
        close(s);
    }
    T_WAIT_UNTIL(t_core_log_contains(core, "protocol version 999"));

    /* The same with a uffd-less HELLO of version 0. */
    {
        int s = t_raw_connect();
        struct fl_req_hello h;
        hello_msg(&h, 0, 0);
        T_EQ(raw_send(s, &h, sizeof(h), -1), 0);
        struct fl_msg_reply r;
        T_EQ(raw_recv(s, &r, sizeof(r)), sizeof(r));
        T_EQ(r.status, -FL_E_VERSION);
        T_EQ(r.val[2], FL_PROTO_VERSION);
        expect_closed(s, "HELLO version 0");
    }
    finish();
}

static void b_request_before_hello(void)
{
    begin();
    /* A request before HELLO: closed, no reply. */
    {
        int s = t_raw_connect();
        struct fl_req_ram_alloc a;
        memset(&a, 0, sizeof(a));
        hdr(&a, FL_REQ_RAM_ALLOC, 1);
        a.size = 4096;
        T_EQ(raw_send(s, &a, sizeof(a), -1), 0);
        char buf[FL_MSG_MAX + 8];
        ssize_t n = raw_recv(s, buf, sizeof(buf));
        if (n != 0 && n != -ECONNRESET) T_FAILF("a request before HELLO got %zd bytes, not EOF", n);
        close(s);
        T_WAIT_UNTIL(t_core_log_contains(core, "protocol violation: request before HELLO"));
    }
    finish();
}

static void c_malformed_messages(void)
{
    begin();
    /* Malformed messages on an established session. */
    {
        _Alignas(8) uint8_t buf[4096];
        struct fl_req_ram_alloc a;
        memset(&a, 0, sizeof(a));
        hdr(&a, FL_REQ_RAM_ALLOC, 3);
        a.size = 4096;

        /* Truncated: the header of a RAM_ALLOC without its size. */
        send_bad(&a, sizeof(struct fl_msg_hdr), -1, "truncated RAM_ALLOC");
        T_WAIT_UNTIL(t_core_log_contains(core, "protocol violation: message truncated"));
        /* Shorter than a header. */
        send_bad(&a, 6, -1, "6-byte datagram");
        T_WAIT_UNTIL(t_core_log_contains(core, "protocol violation: message shorter"));

        /* Oversized: a RAM_ALLOC with 8 trailing bytes, and one far larger
         * than any message (core must not take the truncated prefix). */
        memset(buf, 0, sizeof(buf));
        memcpy(buf, &a, sizeof(a));
        send_bad(buf, sizeof(a) + 8, -1, "RAM_ALLOC + 8 bytes");
        T_WAIT_UNTIL(t_core_log_contains(core, "protocol violation: message oversized"));
        send_bad(buf, sizeof(buf), -1, "4096-byte RAM_ALLOC");

        /* Garbage. */
        for (size_t i = 0; i < 64; i++) buf[i] = (uint8_t)(i * 151 + 17);
        send_bad(buf, 64, -1, "64 bytes of garbage");

        /* Bad magic on an otherwise valid request. */
        struct fl_req_ram_alloc bad = a;
        bad.hdr.magic = 0x31544c47; /* "GLT1" */
        send_bad(&bad, sizeof(bad), -1, "bad magic");
        T_WAIT_UNTIL(t_core_log_contains(core, "protocol violation: bad magic"));

        /* Unknown types: one never defined, one between the ranges, and the
         * highest value of the field. */
        unsigned unknown[] = {FL_MSG_NONE, 19, 31, 33, FL_MSG_TYPE_MAX, 200, 0xffff};
        for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
            struct fl_req_ram_alloc u = a;
            u.hdr.type = (uint16_t)unknown[i];
            char what[64];
            snprintf(what, sizeof(what), "unknown type %u", unknown[i]);
            send_bad(&u, sizeof(u), -1, what);
        }
        T_WAIT_UNTIL(t_core_log_contains(core, "protocol violation: unknown message type"));

        /* Messages core sends, not accepts, with their exact lengths. */
        struct fl_msg_reply rep;
        memset(&rep, 0, sizeof(rep));
        hdr(&rep, FL_MSG_REPLY, 3);
        send_bad(&rep, sizeof(rep), -1, "a REPLY sent to core");
        struct fl_msg_agent_revoke rv;
        memset(&rv, 0, sizeof(rv));
        hdr(&rv, FL_MSG_AGENT_REVOKE, 3);
        send_bad(&rv, sizeof(rv), -1, "an AGENT_REVOKE sent to core");
        T_WAIT_UNTIL(t_core_log_contains(core, "protocol violation: a message core does not"));

        /* Reserved header field set. */
        struct fl_req_ram_alloc res = a;
        res.hdr.reserved = 1;
        send_bad(&res, sizeof(res), -1, "reserved header field");

        /* Unknown attach flags; reserved attach field set. */
        struct fl_req_rm_attach at;
        memset(&at, 0, sizeof(at));
        hdr(&at, FL_REQ_RM_ATTACH, 3);
        at.flags = 0x80;
        send_bad(&at, sizeof(at), -1, "unknown attach flags");
        T_WAIT_UNTIL(t_core_log_contains(core, "protocol violation: unknown flags"));
        at.flags = 0;
        at.reserved = 1;
        send_bad(&at, sizeof(at), -1, "reserved attach field");

        /* An acknowledgement of an instruction core never sent. */
        struct fl_msg_agent_ack ack;
        memset(&ack, 0, sizeof(ack));
        hdr(&ack, FL_MSG_AGENT_ACK, 12345);
        send_bad(&ack, sizeof(ack), -1, "ack of an instruction never sent");

        /* A descriptor on a message that carries none. */
        int efd = eventfd(0, EFD_CLOEXEC);
        T_ASSERT(efd >= 0);
        send_bad(&a, sizeof(a), efd, "RAM_ALLOC with a descriptor");
        T_WAIT_UNTIL(t_core_log_contains(core, "protocol violation: descriptors attached"));
        close(efd);

        /* A second HELLO. */
        struct fl_req_hello h;
        hello_msg(&h, FL_PROTO_VERSION, 0);
        send_bad(&h, sizeof(h), -1, "second HELLO");
        T_WAIT_UNTIL(t_core_log_contains(core, "protocol violation: second HELLO"));
    }
    finish();
}

static void d_wrong_descriptors(void)
{
    begin();
    /* Descriptors of the wrong kind. */
    {
        int pfd[2];
        T_ASSERT(pipe2(pfd, O_CLOEXEC) == 0);
        struct fl_req_sig_alloc sa;
        memset(&sa, 0, sizeof(sa));
        hdr(&sa, FL_REQ_SIG_ALLOC, 4);
        send_bad(&sa, sizeof(sa), pfd[0], "SIG_ALLOC with a pipe");
        T_WAIT_UNTIL(t_core_log_contains(core, "SIG_ALLOC without an eventfd"));
        /* And with no descriptor at all. */
        send_bad(&sa, sizeof(sa), -1, "SIG_ALLOC without a descriptor");
        /* A pipe still works for us: core did not keep it open as an eventfd
         * (its write end is ours, so its read end got no data). */
        T_EQ(write(pfd[1], "x", 1), 1);
        char ch;
        T_EQ(read(pfd[0], &ch, 1), 1);
        close(pfd[0]);
        close(pfd[1]);

        /* A HELLO whose uffd is a regular file. */
        char path[160];
        snprintf(path, sizeof(path), "%s/not-a-uffd", core->dir);
        int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        T_ASSERT(f >= 0);
        int s = t_raw_connect();
        struct fl_req_hello h;
        hello_msg(&h, FL_PROTO_VERSION, FL_HELLO_UFFD);
        raw_send(s, &h, sizeof(h), f);
        expect_closed(s, "HELLO with a regular file as uffd");
        T_WAIT_UNTIL(t_core_log_contains(core, "is not a userfaultfd"));
        close(f);
        unlink(path);

        /* A HELLO whose uffd is an eventfd (an anonymous inode, but not a uffd). */
        int efd = eventfd(0, EFD_CLOEXEC);
        s = t_raw_connect();
        raw_send(s, &h, sizeof(h), efd);
        expect_closed(s, "HELLO with an eventfd as uffd");
        close(efd);

        /* A real userfaultfd, but with an event feature core must refuse
         * (EVENT_FORK would plant a descriptor in core per client fork). */
        int uffd = t_new_uffd();
        if (uffd >= 0) {
            struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_FORK};
            if (ioctl(uffd, UFFDIO_API, &api) == 0) {
                s = t_raw_connect();
                raw_send(s, &h, sizeof(h), uffd);
                expect_closed(s, "HELLO with an EVENT_FORK userfaultfd");
                T_WAIT_UNTIL(t_core_log_contains(core, "event features enabled"));
            }
            close(uffd);
        }

        /* The uffd flag without a descriptor. */
        s = t_raw_connect();
        raw_send(s, &h, sizeof(h), -1);
        expect_closed(s, "HELLO with the uffd flag but no descriptor");
        T_WAIT_UNTIL(t_core_log_contains(core, "uffd flag and descriptor disagree"));

        /* Unknown HELLO flags and a window that is not page-aligned. */
        hello_msg(&h, FL_PROTO_VERSION, 0x100);
        s = t_raw_connect();
        raw_send(s, &h, sizeof(h), -1);
        expect_closed(s, "HELLO with unknown flags");
        s = t_raw_connect();
        hello_msg(&h, FL_PROTO_VERSION, 0);
        h.window_base += 100;
        raw_send(s, &h, sizeof(h), -1);
        expect_closed(s, "HELLO with an unaligned window");
        s = t_raw_connect();
        hello_msg(&h, FL_PROTO_VERSION, 0);
        h.window_size = 0;
        raw_send(s, &h, sizeof(h), -1);
        expect_closed(s, "HELLO with an empty window");
    }
    finish();
}

static void e_hello_overdue(void)
{
    begin();
    /* A connection that never sends HELLO holds three of core's
     * descriptors: closed once the handshake is overdue. */
    {
        int s = t_raw_connect();
        struct timeval tv = {30, 0}; /* the suite's timeout bounds it, not a timed assertion */
        T_ASSERT(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
        char b[64];
        ssize_t n;
        do n = recv(s, b, sizeof(b), 0);
        while (n < 0 && errno == EINTR);
        T_EQ(n, 0);
        close(s);
        T_WAIT_UNTIL(t_core_log_contains(core, "no HELLO within"));
    }
    finish();
}

T_CASES(a_version_mismatch, b_request_before_hello, c_malformed_messages, d_wrong_descriptors,
        e_hello_overdue)
