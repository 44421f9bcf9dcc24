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
 *    destroyed region map and signal context, closed RM session, released
 *    capability, an imported capability whose owner freed the object) and 3,000 random
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

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- raw peers ---- */

static struct t_core *core;
static uint64_t next_id = 100;

/* Send msg (its header filled in here, a new id) with descriptor fd (or -1);
 * its reply (agent instructions skipped; the session must answer). */
static struct fl_msg_reply request(int s, void *msg, unsigned type, int fd)
{
    struct fl_msg_hdr *h = msg;
    h->magic = FL_PROTO_MAGIC;
    h->type = (uint16_t)type;
    h->reserved = 0;
    h->id = ++next_id;
    T_EQ(fl_wire_send(s, msg, fl_msg_size(type), fd, 0), 0);
    struct fl_msg_reply r;
    t_raw_reply(s, &r);
    T_EQ(r.hdr.id, h->id);
    return r;
}

/* A request whose one argument (a size or a capability) follows the header. */
static struct fl_msg_reply call(int s, unsigned type, uint64_t arg, int fd)
{
    struct fl_req_cap m = {.cap = arg};
    return request(s, &m, type, fd);
}

/* The same, which must succeed: its val[0]. */
static fl_wire_cap call_ok(int s, unsigned type, uint64_t arg, int fd)
{
    struct fl_msg_reply r = call(s, type, arg, fd);
    if (r.status != 0) T_FAILF("request %u: %d (%s)", type, r.status, fl_error_name(r.status));
    return r.val[0];
}

static fl_wire_cap my_as; /* the last established session's address space */

static int established(void)
{
    return t_raw_session(&my_as);
}

static void expect_closed(int s, const char *what)
{
    t_raw_expect_closed(s, what, 0);
    t_healthy_advances(what);
}

/* A core and the healthy component, whose progress is checked after each
 * hostile action; at the end core's descriptors are back at their baseline. */
static void begin(void)
{
    core = t_core_start(NULL);
    t_baseline_begin(core, T_HEALTHY_ALLOCATES);
}

/* ---- the cases ---- */

static void malformed(void)
{
    begin();
    _Alignas(8) uint8_t buf[512];
    struct fl_req_ram_alloc a;
    fl_msg_init(&a, FL_REQ_RAM_ALLOC, 7);
    a.size = 4096;
    int s = established();
    T_EQ(fl_wire_send(s, &a, sizeof(a) - 4, -1, 0), 0);
    expect_closed(s, "a truncated message");

    memset(buf, 0, sizeof(buf));
    memcpy(buf, &a, sizeof(a));
    s = established();
    T_EQ(fl_wire_send(s, buf, sizeof(buf), -1, 0), 0);
    expect_closed(s, "an oversized message");

    T_EQ(getrandom(buf, sizeof(buf), 0), sizeof(buf));
    s = established();
    T_EQ(fl_wire_send(s, buf, 40, -1, 0), 0);
    expect_closed(s, "garbage");

    s = t_raw_connect();
    T_EQ(fl_wire_send(s, &a, sizeof(a), -1, 0), 0);
    expect_closed(s, "a request before HELLO");

    s = t_raw_connect();
    struct fl_req_hello h;
    fl_msg_init(&h, FL_REQ_HELLO, 1);
    h.version = FL_PROTO_VERSION + 1;
    h.window_base = 0x100000000000ull;
    h.window_size = 1ull << 30;
    T_EQ(fl_wire_send(s, &h, sizeof(h), -1, 0), 0);
    struct fl_msg_reply r;
    T_EQ(t_raw_recv(s, &r, sizeof(r), "another protocol version"), sizeof(r));
    T_ERR(r.status, -FL_E_VERSION);
    T_EQ(r.val[2], FL_PROTO_VERSION);
    expect_closed(s, "another protocol version");
    t_baseline_end(core);
}

static fl_wire_cap my_rms; /* the RM session of the capabilities case */

/* Every request that takes a capability, with cap; none may succeed. */
static void every_cap_request(int s, fl_wire_cap cap, fl_wire_cap good_rm, fl_wire_cap good_ds)
{
    static const unsigned one_cap[] = {
        FL_REQ_RAM_FREE,     FL_REQ_DS_SIZE,    FL_REQ_RM_SESSION_CLOSE,
        FL_REQ_RM_DATASPACE, FL_REQ_RM_FAULT,   FL_REQ_SIG_FREE,
        FL_REQ_SIG_SUBMIT,   FL_REQ_CAP_EXPORT, FL_REQ_CAP_RELEASE};
    for (size_t i = 0; i < sizeof(one_cap) / sizeof(one_cap[0]); i++) {
        int st = call(s, one_cap[i], cap, -1).status;
        /* Releasing the name of a dead object is fine. */
        if (one_cap[i] == FL_REQ_CAP_RELEASE && st == 0) continue;
        if (st != -FL_E_INVALID_CAP && st != -FL_E_INVALID_DATASPACE)
            T_FAILF("request %u with capability %#llx: status %d (%s)", one_cap[i],
                    (unsigned long long)cap, st, fl_error_name(st));
    }
    fl_wire_cap pairs[3][2] = {{cap, good_ds}, {good_rm, cap}, {cap, cap}};
    for (int i = 0; i < 3; i++) {
        struct fl_req_rm_attach at = {
            .rm = pairs[i][0], .ds = pairs[i][1], .flags = FL_ATTACH_WRITEABLE};
        struct fl_msg_reply r = request(s, &at, FL_REQ_RM_ATTACH, -1);
        T_ASSERT(r.status == -FL_E_INVALID_CAP || r.status == -FL_E_INVALID_DATASPACE);
    }
    struct fl_req_rm_detach dt = {.rm = cap};
    T_ERR(request(s, &dt, FL_REQ_RM_DETACH, -1).status, -FL_E_INVALID_CAP);
    struct fl_req_rm_create cr = {.rms = cap, .size = 4096};
    T_ERR(request(s, &cr, FL_REQ_RM_CREATE, -1).status, -FL_E_INVALID_CAP);
    struct fl_req_rm_session_upgrade up = {.rms = cap, .ram_quota = 4096, .cap_quota = 1};
    T_ERR(request(s, &up, FL_REQ_RM_SESSION_UPGRADE, -1).status, -FL_E_INVALID_CAP);
    fl_wire_cap dpairs[3][2] = {{cap, good_rm}, {my_rms, cap}, {cap, cap}};
    for (int i = 0; i < 3; i++) {
        struct fl_req_rm_destroy d = {.rms = dpairs[i][0], .rm = dpairs[i][1]};
        T_ERR(request(s, &d, FL_REQ_RM_DESTROY, -1).status, -FL_E_INVALID_CAP);
    }
    struct fl_req_rm_fault_handler fh = {.rm = cap, .sigh = cap};
    T_ERR(request(s, &fh, FL_REQ_RM_FAULT_HANDLER, -1).status, -FL_E_INVALID_CAP);
}

static void session_info(int s, uint64_t *ram_used, uint64_t *cap_used)
{
    struct fl_msg_reply r = call(s, FL_REQ_SESSION_INFO, 0, -1);
    T_EQ(r.status, 0);
    *ram_used = r.val[1];
    *cap_used = r.val[3];
}

static void capabilities(void)
{
    begin();
    /* Objects of another session (a library session in this process). */
    struct fl_env *other = t_env();
    fl_cap ods, orms, orm, osig;
    T_ERR(fl_ram_alloc(other, 4096, &ods), 0);
    T_ERR(fl_rm_session_open(other, &orms), 0);
    T_ERR(fl_rm_create(other, orms, 4 * 4096, &orm), 0);
    T_ERR(fl_signal_context_create(other, &osig), 0);

    int s = established();
    /* Its own, valid objects to pair with. */
    struct fl_req_rm_session_open op = {.ram_quota = 64 << 10, .cap_quota = 4};
    struct fl_msg_reply r = request(s, &op, FL_REQ_RM_SESSION_OPEN, -1);
    T_ERR(r.status, 0);
    my_rms = r.val[0];
    struct fl_req_rm_create cr = {.rms = my_rms, .size = 4 * 4096};
    r = request(s, &cr, FL_REQ_RM_CREATE, -1);
    T_ERR(r.status, 0);
    fl_wire_cap my_rm = r.val[0];
    fl_wire_cap my_ds = call_ok(s, FL_REQ_RAM_ALLOC, 4096, -1);
    uint64_t ram0, caps0;
    session_info(s, &ram0, &caps0);

    /* Another session's capabilities. A capability is a name in one
     * session's table: the same value can name one of this session's own
     * objects, which is no forgery; those values are left out. */
    fl_wire_cap foreign[] = {ods, orms, orm, osig, fl_env_address_space(other)};
    int tried = 0;
    for (size_t i = 0; i < 5; i++) {
        if (foreign[i] == my_rm || foreign[i] == my_ds || foreign[i] == my_as ||
            foreign[i] == my_rms)
            continue;
        every_cap_request(s, foreign[i], my_rm, my_ds);
        tried++;
    }
    T_ASSERT(tried >= 1);
    t_healthy_advances("another session's capabilities");

    /* Destroyed objects: a freed dataspace, a destroyed map and signal
     * context, a released capability. */
    fl_wire_cap dead_ds = call_ok(s, FL_REQ_RAM_ALLOC, 4096, -1);
    call_ok(s, FL_REQ_RAM_FREE, dead_ds, -1);
    every_cap_request(s, dead_ds, my_rm, my_ds);
    cr.size = 4096;
    r = request(s, &cr, FL_REQ_RM_CREATE, -1);
    T_ERR(r.status, 0);
    fl_wire_cap dead_rm = r.val[0];
    struct fl_req_rm_destroy d = {.rms = my_rms, .rm = dead_rm};
    T_ERR(request(s, &d, FL_REQ_RM_DESTROY, -1).status, 0);
    every_cap_request(s, dead_rm, my_rm, my_ds);
    r = request(s, &op, FL_REQ_RM_SESSION_OPEN, -1);
    T_ERR(r.status, 0);
    fl_wire_cap dead_rms = r.val[0];
    call_ok(s, FL_REQ_RM_SESSION_CLOSE, dead_rms, -1);
    every_cap_request(s, dead_rms, my_rm, my_ds);
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    fl_wire_cap dead_sig = call_ok(s, FL_REQ_SIG_ALLOC, 0, efd);
    close(efd);
    call_ok(s, FL_REQ_SIG_FREE, dead_sig, -1);
    every_cap_request(s, dead_sig, my_rm, my_ds);
    /* An imported capability whose owner freed the object. */
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(other, ods, token), 0);
    struct fl_req_cap_import imp = {0};
    for (int i = 0; i < FL_TOKEN_BYTES; i++) {
        unsigned v;
        T_ASSERT(sscanf(token + 2 * i, "%2x", &v) == 1);
        imp.token[i] = (uint8_t)v;
    }
    r = request(s, &imp, FL_REQ_CAP_IMPORT, -1);
    T_EQ(r.status, 0);
    fl_wire_cap imported = r.val[0];
    T_ERR(fl_ram_free(other, ods), 0);
    every_cap_request(s, imported, my_rm, my_ds);
    /* Replayed: the token was used. */
    T_ERR(request(s, &imp, FL_REQ_CAP_IMPORT, -1).status, -FL_E_TOKEN);
    t_healthy_advances("destroyed objects' capabilities and a replayed token");

    /* Random capabilities: any value, and values with a plausible slot. */
    for (int i = 0; i < 3000; i++) {
        fl_wire_cap cap;
        T_EQ(getrandom(&cap, sizeof(cap), 0), sizeof(cap));
        if (i % 2) cap = (cap & 0xffffffff00000000ull) | (uint64_t)(1 + i % 16);
        if (cap == my_rm || cap == my_ds || cap == my_as || cap == my_rms) continue;
        static const unsigned kinds[] = {FL_REQ_DS_SIZE, FL_REQ_RM_FAULT, FL_REQ_SIG_SUBMIT,
                                         FL_REQ_RM_DATASPACE};
        r = call(s, kinds[i % 4], cap, -1);
        T_ASSERT(r.status == -FL_E_INVALID_CAP || r.status == -FL_E_INVALID_DATASPACE);
        if (i % 500 == 0) every_cap_request(s, cap, my_rm, my_ds);
    }
    t_healthy_advances("random capabilities");

    /* Forged tokens: all zeros, then random. */
    memset(imp.token, 0, sizeof(imp.token));
    for (int i = 0; i < 200; i++) {
        if (i) T_EQ(getrandom(imp.token, sizeof(imp.token), 0), sizeof(imp.token));
        T_ERR(request(s, &imp, FL_REQ_CAP_IMPORT, -1).status, -FL_E_TOKEN);
    }
    t_healthy_advances("forged tokens");

    /* Nothing was charged for all that, and the session still works. */
    uint64_t ram1, caps1;
    session_info(s, &ram1, &caps1);
    T_EQ(ram1, ram0);
    T_EQ(caps1, caps0);
    struct fl_req_rm_attach at = {.rm = my_rm, .ds = my_ds};
    T_EQ(request(s, &at, FL_REQ_RM_ATTACH, -1).status, 0);
    close(s);
    T_ERR(fl_rm_destroy(other, orms, orm), 0);
    T_ERR(fl_signal_context_destroy(other, osig), 0);
    fl_env_close(other);
    t_baseline_end(core);
}

static void wrong_descriptors(void)
{
    begin();
    char path[160];
    snprintf(path, sizeof(path), "%s/regular", core->dir);
    int file = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    T_ASSERT(file >= 0);
    int memfd = memfd_create("not-an-eventfd", MFD_CLOEXEC);
    T_ASSERT(memfd >= 0);
    int uffd = t_new_uffd();
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
    }
    T_WAIT_UNTIL(t_core_log_count(core, "SIG_ALLOC without an eventfd") >= 3);

    int s = t_raw_connect();
    T_EQ(t_raw_hello(s, FL_HELLO_UFFD, memfd), 0);
    expect_closed(s, "a memfd as uffd");

    /* (That core kept none of them is checked at the end: its descriptors
     * return to their baseline.) */
    T_WAIT_FOR(t_core_log_count(core, "is not a userfaultfd") >= 1, "the memfd refused as uffd");
    close(file);
    unlink(path);
    close(memfd);
    close(uffd);
    t_baseline_end(core);
}

static int nobody_main(void *arg)
{
    (void)arg;
    t_become(65534, 65534, 0, NULL);
    struct fl_env *env = NULL;
    int r = fl_env_open(&env, NULL);
    return r == -FL_E_PERMISSION ? 0 : 1;
}

static void foreign_uid(void)
{
    t_need_root("to act as uid 65534 (test_peer_uid has the details)");
    begin();
    T_ASSERT(chmod(core->dir, 0755) == 0);
    T_ASSERT(chmod(core->socket, 0666) == 0);
    for (int i = 0; i < 20; i++) T_EQ(t_wait(t_spawn(nobody_main, NULL)), 0);
    T_ASSERT(chmod(core->socket, 0600) == 0);
    T_ASSERT(chmod(core->dir, 0700) == 0);
    T_WAIT_UNTIL(t_core_log_contains(core, "refusing connection from pid"));
    t_healthy_advances("peers of another uid");
    t_baseline_end(core);
}

T_CASES(malformed, capabilities, wrong_descriptors, foreign_uid)
