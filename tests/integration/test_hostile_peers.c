/*
 * The misbehaving-peer catalogue, each case against a healthy component in
 * another process whose progress counter must keep advancing after it (the
 * cases' detailed error checks live in test_protocol_violation, test_tokens,
 * test_peer_uid; this test adds what they leave out and the progress
 * assertion). Raw SOCK_SEQPACKET peers speak the wire protocol directly:
 *  - truncated, oversized and garbage datagrams, a request before HELLO,
 *    HELLO of another protocol version: that connection is closed (the
 *    version with a -FL_E_VERSION answer first);
 *  - capabilities of another session, of destroyed objects (freed dataspace,
 *    destroyed region map and signal context, released capability, an
 *    imported capability whose owner freed the object) and 3,000 random
 *    ones, in every request that takes a capability: each answered with an
 *    error (INVALID_CAP / INVALID_DATASPACE), the session stays up and
 *    nothing is charged;
 *  - forged export tokens (random, all-zero) and a replayed one: -FL_E_TOKEN,
 *    the session stays up;
 *  - a regular file, a memfd and a userfaultfd where SIG_ALLOC's eventfd
 *    belongs, a memfd where HELLO's uffd belongs: that session is closed and
 *    core does not keep the descriptor;
 *  - a peer of another uid (uid 65534, when run as root): refused.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- raw peers ---- */

static struct t_core *core;
static uint64_t next_id = 100;

static int raw(void)
{
    int s = t_raw_connect();
    struct timeval tv = {T_WAIT_MS / 1000, 0};
    T_ASSERT(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    return s;
}

/* Send a request, return its reply's status (the session must answer). */
static int rpc(int s, void *msg, unsigned type, int fd, struct fl_msg_reply *out)
{
    uint64_t id = ++next_id;
    struct fl_msg_hdr *h = msg;
    fl_msg_init(h, type, id);
    T_EQ(fl_wire_send(s, msg, fl_msg_size(type), fd, 0), 0);
    struct fl_msg_reply r;
    for (;;) {
        _Alignas(8) uint8_t buf[FL_MSG_MAX + 8];
        ssize_t n = recv(s, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "request type %u: core closed the session or went silent (%s)\n", type,
                    n < 0 ? strerror(errno) : "EOF");
            exit(T_FAIL);
        }
        if (((struct fl_msg_hdr *)(void *)buf)->type != FL_MSG_REPLY) continue; /* agent work */
        memcpy(&r, buf, sizeof(r));
        break;
    }
    T_EQ(r.hdr.id, id);
    if (out) *out = r;
    return r.status;
}

static fl_wire_cap my_as; /* the last established session's address space */

static int established(void)
{
    int s = raw();
    struct fl_req_hello h;
    fl_msg_init(&h, FL_REQ_HELLO, 1);
    h.version = FL_PROTO_VERSION;
    h.window_base = 0x100000000000ull;
    h.window_size = 1ull << 30;
    T_EQ(fl_wire_send(s, &h, sizeof(h), -1, 0), 0);
    struct fl_msg_reply r;
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    my_as = r.val[1];
    return s;
}

static void expect_closed(int s, const char *what)
{
    for (int i = 0; i < 4; i++) {
        _Alignas(8) uint8_t buf[FL_MSG_MAX + 8];
        ssize_t n = recv(s, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            close(s);
            return;
        }
        if (n < 0) {
            fprintf(stderr, "%s: core neither answered nor closed (%s)\n", what, strerror(errno));
            exit(T_FAIL);
        }
        struct fl_msg_reply r;
        memcpy(&r, buf, sizeof(r));
        if (r.hdr.type != FL_MSG_REPLY || r.status >= 0) {
            fprintf(stderr, "%s: core served it (type %u, status %d)\n", what, r.hdr.type,
                    r.status);
            exit(T_FAIL);
        }
    }
    fprintf(stderr, "%s: core kept the connection open\n", what);
    exit(T_FAIL);
}

/* ---- the cases ---- */

static void malformed(void)
{
    _Alignas(8) uint8_t buf[512];
    struct fl_req_ram_alloc a;
    fl_msg_init(&a, FL_REQ_RAM_ALLOC, 7);
    a.size = 4096;
    int s = established();
    T_EQ(fl_wire_send(s, &a, sizeof(a) - 4, -1, 0), 0);
    expect_closed(s, "truncated");
    t_healthy_advances("a truncated message");

    memset(buf, 0, sizeof(buf));
    memcpy(buf, &a, sizeof(a));
    s = established();
    T_EQ(fl_wire_send(s, buf, sizeof(buf), -1, 0), 0);
    expect_closed(s, "oversized");
    t_healthy_advances("an oversized message");

    T_EQ(getrandom(buf, sizeof(buf), 0), sizeof(buf));
    s = established();
    T_EQ(fl_wire_send(s, buf, 40, -1, 0), 0);
    expect_closed(s, "garbage");
    t_healthy_advances("garbage");

    s = raw();
    T_EQ(fl_wire_send(s, &a, sizeof(a), -1, 0), 0);
    expect_closed(s, "a request before HELLO");
    t_healthy_advances("a request before HELLO");

    s = raw();
    struct fl_req_hello h;
    fl_msg_init(&h, FL_REQ_HELLO, 1);
    h.version = FL_PROTO_VERSION + 1;
    h.window_base = 0x100000000000ull;
    h.window_size = 1ull << 30;
    T_EQ(fl_wire_send(s, &h, sizeof(h), -1, 0), 0);
    struct fl_msg_reply r;
    T_EQ(recv(s, &r, sizeof(r), 0), sizeof(r));
    T_ERR(r.status, -FL_E_VERSION);
    T_EQ(r.val[2], FL_PROTO_VERSION);
    expect_closed(s, "another protocol version");
    t_healthy_advances("another protocol version");
}

/* Every request that takes a capability, with cap; none may succeed. */
static void every_cap_request(int s, fl_wire_cap cap, fl_wire_cap good_rm, fl_wire_cap good_ds)
{
    static const unsigned one_cap[] = {FL_REQ_RAM_FREE,     FL_REQ_DS_SIZE,    FL_REQ_RM_DESTROY,
                                       FL_REQ_RM_DATASPACE, FL_REQ_RM_FAULT,   FL_REQ_SIG_FREE,
                                       FL_REQ_SIG_SUBMIT,   FL_REQ_CAP_EXPORT, FL_REQ_CAP_RELEASE};
    for (size_t i = 0; i < sizeof(one_cap) / sizeof(one_cap[0]); i++) {
        struct fl_req_cap m;
        fl_msg_init(&m, one_cap[i], 0);
        int st;
        /* rpc() re-initialises the header only. */
        m.cap = cap;
        uint64_t id = ++next_id;
        m.hdr.id = id;
        T_EQ(fl_wire_send(s, &m, sizeof(m), -1, 0), 0);
        struct fl_msg_reply r;
        t_raw_reply(s, &r);
        T_EQ(r.hdr.id, id);
        st = r.status;
        /* Releasing the name of a dead object is fine. */
        if (one_cap[i] == FL_REQ_CAP_RELEASE && st == 0) continue;
        if (st != -FL_E_INVALID_CAP && st != -FL_E_INVALID_DATASPACE) {
            fprintf(stderr, "request %u with capability %#llx: status %d (%s)\n", one_cap[i],
                    (unsigned long long)cap, st, fl_error_name(st));
            exit(T_FAIL);
        }
    }
    struct fl_req_rm_attach at;
    fl_wire_cap pairs[3][2] = {{cap, good_ds}, {good_rm, cap}, {cap, cap}};
    for (int i = 0; i < 3; i++) {
        fl_msg_init(&at, FL_REQ_RM_ATTACH, ++next_id);
        at.rm = pairs[i][0];
        at.ds = pairs[i][1];
        at.flags = FL_ATTACH_WRITEABLE;
        T_EQ(fl_wire_send(s, &at, sizeof(at), -1, 0), 0);
        struct fl_msg_reply r;
        t_raw_reply(s, &r);
        T_ASSERT(r.status == -FL_E_INVALID_CAP || r.status == -FL_E_INVALID_DATASPACE);
    }
    struct fl_req_rm_detach dt;
    fl_msg_init(&dt, FL_REQ_RM_DETACH, ++next_id);
    dt.rm = cap;
    T_EQ(fl_wire_send(s, &dt, sizeof(dt), -1, 0), 0);
    struct fl_msg_reply r;
    t_raw_reply(s, &r);
    T_ERR(r.status, -FL_E_INVALID_CAP);
    struct fl_req_rm_fault_handler fh;
    fl_msg_init(&fh, FL_REQ_RM_FAULT_HANDLER, ++next_id);
    fh.rm = cap;
    fh.sigh = cap;
    T_EQ(fl_wire_send(s, &fh, sizeof(fh), -1, 0), 0);
    t_raw_reply(s, &r);
    T_ERR(r.status, -FL_E_INVALID_CAP);
}

static void session_info(int s, uint64_t *ram_used, uint64_t *cap_used)
{
    struct fl_req_session_info q;
    struct fl_msg_reply r;
    T_EQ(rpc(s, &q, FL_REQ_SESSION_INFO, -1, &r), 0);
    *ram_used = r.val[1];
    *cap_used = r.val[3];
}

static void capabilities(void)
{
    /* Objects of another session (a library session in this process). */
    struct fl_env *other = t_env();
    fl_cap ods, orm, osig;
    T_ERR(fl_ram_alloc(other, 4096, &ods), 0);
    T_ERR(fl_rm_create(other, 4 * 4096, &orm), 0);
    T_ERR(fl_signal_context_create(other, &osig), 0);

    int s = established();
    /* Its own, valid objects to pair with. */
    struct fl_req_rm_create rc;
    struct fl_msg_reply r;
    fl_msg_init(&rc, FL_REQ_RM_CREATE, ++next_id);
    rc.size = 4 * 4096;
    T_EQ(fl_wire_send(s, &rc, sizeof(rc), -1, 0), 0);
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    fl_wire_cap my_rm = r.val[0];
    struct fl_req_ram_alloc ra;
    fl_msg_init(&ra, FL_REQ_RAM_ALLOC, ++next_id);
    ra.size = 4096;
    T_EQ(fl_wire_send(s, &ra, sizeof(ra), -1, 0), 0);
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    fl_wire_cap my_ds = r.val[0];
    uint64_t ram0, caps0;
    session_info(s, &ram0, &caps0);

    /* Another session's capabilities. A capability is a name in one
     * session's table: the same value can name one of this session's own
     * objects, which is no forgery; those values are left out. */
    fl_wire_cap foreign[] = {ods, orm, osig, fl_env_address_space(other)};
    int tried = 0;
    for (size_t i = 0; i < 4; i++) {
        if (foreign[i] == my_rm || foreign[i] == my_ds || foreign[i] == my_as) continue;
        every_cap_request(s, foreign[i], my_rm, my_ds);
        tried++;
    }
    T_ASSERT(tried >= 1);
    t_healthy_advances("another session's capabilities");

    /* Destroyed objects: a freed dataspace, a destroyed map and signal
     * context, a released capability. */
    struct fl_req_cap c;
    fl_msg_init(&ra, FL_REQ_RAM_ALLOC, ++next_id);
    ra.size = 4096;
    T_EQ(fl_wire_send(s, &ra, sizeof(ra), -1, 0), 0);
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    fl_wire_cap dead_ds = r.val[0];
    fl_msg_init(&c, FL_REQ_RAM_FREE, ++next_id);
    c.cap = dead_ds;
    T_EQ(fl_wire_send(s, &c, sizeof(c), -1, 0), 0);
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    every_cap_request(s, dead_ds, my_rm, my_ds);
    fl_msg_init(&rc, FL_REQ_RM_CREATE, ++next_id);
    rc.size = 4096;
    T_EQ(fl_wire_send(s, &rc, sizeof(rc), -1, 0), 0);
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    fl_wire_cap dead_rm = r.val[0];
    fl_msg_init(&c, FL_REQ_RM_DESTROY, ++next_id);
    c.cap = dead_rm;
    T_EQ(fl_wire_send(s, &c, sizeof(c), -1, 0), 0);
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    every_cap_request(s, dead_rm, my_rm, my_ds);
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct fl_req_sig_alloc sa;
    fl_msg_init(&sa, FL_REQ_SIG_ALLOC, ++next_id);
    T_EQ(fl_wire_send(s, &sa, sizeof(sa), efd, 0), 0);
    close(efd);
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    fl_wire_cap dead_sig = r.val[0];
    fl_msg_init(&c, FL_REQ_SIG_FREE, ++next_id);
    c.cap = dead_sig;
    T_EQ(fl_wire_send(s, &c, sizeof(c), -1, 0), 0);
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    every_cap_request(s, dead_sig, my_rm, my_ds);
    /* An imported capability whose owner freed the object. */
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(other, ods, token), 0);
    struct fl_req_cap_import imp;
    fl_msg_init(&imp, FL_REQ_CAP_IMPORT, ++next_id);
    for (int i = 0; i < FL_TOKEN_BYTES; i++) {
        unsigned v;
        T_ASSERT(sscanf(token + 2 * i, "%2x", &v) == 1);
        imp.token[i] = (uint8_t)v;
    }
    T_EQ(fl_wire_send(s, &imp, sizeof(imp), -1, 0), 0);
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    fl_wire_cap imported = r.val[0];
    T_ERR(fl_ram_free(other, ods), 0);
    every_cap_request(s, imported, my_rm, my_ds);
    /* Replayed: the token was used. */
    fl_msg_init(&imp.hdr, FL_REQ_CAP_IMPORT, ++next_id);
    T_EQ(fl_wire_send(s, &imp, sizeof(imp), -1, 0), 0);
    t_raw_reply(s, &r);
    T_ERR(r.status, -FL_E_TOKEN);
    t_healthy_advances("destroyed objects' capabilities and a replayed token");

    /* Random capabilities: any value, and values with a plausible slot. */
    for (int i = 0; i < 3000; i++) {
        fl_wire_cap cap;
        T_EQ(getrandom(&cap, sizeof(cap), 0), sizeof(cap));
        if (i % 2) cap = (cap & 0xffffffff00000000ull) | (uint64_t)(1 + i % 16);
        if (cap == my_rm || cap == my_ds || cap == my_as) continue;
        static const unsigned kinds[] = {FL_REQ_DS_SIZE, FL_REQ_RM_FAULT, FL_REQ_SIG_SUBMIT,
                                         FL_REQ_RM_DATASPACE};
        fl_msg_init(&c, kinds[i % 4], ++next_id);
        c.cap = cap;
        T_EQ(fl_wire_send(s, &c, sizeof(c), -1, 0), 0);
        t_raw_reply(s, &r);
        T_ASSERT(r.status == -FL_E_INVALID_CAP || r.status == -FL_E_INVALID_DATASPACE);
        if (i % 500 == 0) every_cap_request(s, cap, my_rm, my_ds);
    }
    t_healthy_advances("random capabilities");

    /* Forged tokens. */
    for (int i = 0; i < 200; i++) {
        fl_msg_init(&imp, FL_REQ_CAP_IMPORT, ++next_id);
        if (i) T_EQ(getrandom(imp.token, sizeof(imp.token), 0), sizeof(imp.token));
        T_EQ(fl_wire_send(s, &imp, sizeof(imp), -1, 0), 0);
        t_raw_reply(s, &r);
        T_ERR(r.status, -FL_E_TOKEN);
    }
    t_healthy_advances("forged tokens");

    /* Nothing was charged for all that, and the session still works. */
    uint64_t ram1, caps1;
    session_info(s, &ram1, &caps1);
    T_EQ(ram1, ram0);
    T_EQ(caps1, caps0);
    struct fl_req_rm_attach at;
    fl_msg_init(&at, FL_REQ_RM_ATTACH, ++next_id);
    at.rm = my_rm;
    at.ds = my_ds;
    T_EQ(fl_wire_send(s, &at, sizeof(at), -1, 0), 0);
    t_raw_reply(s, &r);
    T_EQ(r.status, 0);
    close(s);
    T_ERR(fl_rm_destroy(other, orm), 0);
    T_ERR(fl_signal_context_destroy(other, osig), 0);
    fl_env_close(other);
}

static void wrong_descriptors(void)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/regular", core->dir);
    int file = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    T_ASSERT(file >= 0);
    int memfd = memfd_create("not-an-eventfd", MFD_CLOEXEC);
    T_ASSERT(memfd >= 0);
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        T_ASSERT(dev >= 0);
        uffd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        close(dev);
    }
    T_ASSERT(uffd >= 0);
    struct uffdio_api api = {.api = UFFD_API};
    T_EQ(ioctl(uffd, UFFDIO_API, &api), 0);

    const struct {
        int fd;
        const char *what;
    } sig[] = {{file, "a regular file"}, {memfd, "a memfd"}, {uffd, "a userfaultfd"}};
    for (size_t i = 0; i < 3; i++) {
        int s = established();
        struct fl_req_sig_alloc sa;
        fl_msg_init(&sa, FL_REQ_SIG_ALLOC, ++next_id);
        T_EQ(fl_wire_send(s, &sa, sizeof(sa), sig[i].fd, 0), 0);
        expect_closed(s, sig[i].what);
        t_healthy_advances(sig[i].what);
    }
    T_WAIT_UNTIL(t_core_log_count(core, "SIG_ALLOC without an eventfd") >= 3);

    int s = raw();
    struct fl_req_hello h;
    fl_msg_init(&h, FL_REQ_HELLO, 1);
    h.version = FL_PROTO_VERSION;
    h.flags = FL_HELLO_UFFD;
    h.window_base = 0x100000000000ull;
    h.window_size = 1ull << 30;
    T_EQ(fl_wire_send(s, &h, sizeof(h), memfd, 0), 0);
    expect_closed(s, "a memfd as uffd");
    t_healthy_advances("a memfd as uffd");

    /* (That core kept none of them is checked at the end: its descriptors
     * return to their baseline.) */
    T_WAIT_FOR(t_core_log_count(core, "is not a userfaultfd") >= 1, "the memfd refused as uffd");
    close(file);
    unlink(path);
    close(memfd);
    close(uffd);
}

static int nobody_main(void *arg)
{
    (void)arg;
    if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0) return 2;
    struct fl_env *env = NULL;
    int r = fl_env_open(&env, NULL);
    return r == -FL_E_PERMISSION ? 0 : 1;
}

static void foreign_uid(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "not root: the foreign-uid case is skipped (test_peer_uid has it)\n");
        return;
    }
    T_ASSERT(chmod(core->dir, 0755) == 0);
    T_ASSERT(chmod(core->socket, 0666) == 0);
    for (int i = 0; i < 20; i++) T_EQ(t_wait(t_spawn(nobody_main, NULL)), 0);
    T_ASSERT(chmod(core->socket, 0600) == 0);
    T_ASSERT(chmod(core->dir, 0700) == 0);
    T_WAIT_UNTIL(t_core_log_contains(core, "refusing connection from pid"));
    t_healthy_advances("peers of another uid");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);
    int fd_base = t_core_fd_count(core);
    t_healthy_start(T_HEALTHY_ALLOCATES);
    t_healthy_advances("the healthy component's first rounds");
    malformed();
    capabilities();
    wrong_descriptors();
    foreign_uid();
    t_healthy_stop();
    T_WAIT_FOR(t_core_fd_count(core) == fd_base, "core's descriptors back at their baseline");
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
