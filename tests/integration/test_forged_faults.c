/*
 * Faults a peer reports itself (EXEC_FAULT, the SIGSEGV path) are checked and
 * bounded; before, core queued one faulter per made-up thread id (120,000 of
 * them on one map, 15.6 MB nobody paid for, each message walking the queue)
 * and logged every fault it could not route (34 MB in 4 s).
 *
 * - A thread id that is not a thread of the sender: protocol violation, the
 *   session is closed with a line naming the thread, nothing is queued.
 * - The same fault of a real thread sent again: one faulter, one signal (a
 *   duplicate changes neither the queue nor the signal count); sent again
 *   and again (beyond 1000 a second), the session is closed.
 * - A stream of faults core cannot route (no fault handler): at most
 *   FL_LOG_BURST lines a second about them, then one counting the rest, and
 *   beyond 1000 a second the session is closed with one line saying why.
 * A healthy session is served throughout.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define K 1024ull

static struct t_core *core;

/* A raw peer (this process, so its threads are ours) that attached a token's
 * dataspace into its window; returns its socket and the attach address. */
static int raw_peer(const char *token, uint64_t *at)
{
    int fd = t_raw_connect();
    struct fl_req_hello h = {
        .version = FL_PROTO_VERSION, .window_base = 0x100000000000ull, .window_size = 1ull << 30};
    t_raw_send(fd, &h, FL_REQ_HELLO);
    struct fl_msg_reply r;
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    fl_wire_cap as = r.val[1];
    if (!token) {
        *at = h.window_base;
        return fd;
    }
    struct fl_req_cap_import imp = {0};
    for (int i = 0; i < FL_TOKEN_BYTES; i++) {
        unsigned v;
        T_ASSERT(sscanf(token + 2 * i, "%2x", &v) == 1);
        imp.token[i] = (uint8_t)v;
    }
    t_raw_send(fd, &imp, FL_REQ_CAP_IMPORT);
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    struct fl_req_rm_attach a = {.rm = as, .ds = r.val[0], .flags = FL_ATTACH_WRITEABLE};
    t_raw_send(fd, &a, FL_REQ_RM_ATTACH);
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    *at = r.val[0];
    return fd;
}

static void exec_fault(int fd, uint32_t tid, uint64_t addr)
{
    struct fl_msg_exec_fault m = {.tid = tid, .addr = addr};
    m.hdr.magic = FL_PROTO_MAGIC;
    m.hdr.type = FL_MSG_EXEC_FAULT;
    /* The peer may be closed meanwhile: that is what some cases wait for. */
    ssize_t n = send(fd, &m, sizeof(m), MSG_NOSIGNAL);
    T_ASSERT(n == (ssize_t)sizeof(m) || (n < 0 && (errno == EPIPE || errno == ECONNRESET)));
}

/* Core closes the connection (skipping instructions queued before). */
static void expect_closed(int fd, const char *what)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, T_WAIT_MS) != 1) {
            fprintf(stderr, "core did not close the session: %s\n", what);
            exit(T_FAIL);
        }
        _Alignas(8) uint8_t buf[FL_MSG_MAX];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) break;
    }
    close(fd);
}

static uint32_t gettid_(void)
{
    return (uint32_t)gettid();
}

int main(void)
{
    core = t_core_start(NULL);
    struct fl_env *mgr = t_env();
    fl_cap rm, sigh, mds;
    T_ERR(fl_rm_create(mgr, 64 * K, &rm), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    t_healthy_start(T_HEALTHY_ALLOCATES);

    /* 1. A made-up thread id: closed, nothing queued, no signal. */
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    uint64_t at;
    int fd = raw_peer(token, &at);
    exec_fault(fd, 0x7ffffff0u, at + 0x123); /* pid_max is at most 2^22 */
    expect_closed(fd, "EXEC fault of a thread that is not the sender's");
    T_WAIT_UNTIL(t_core_log_contains(core, "which is not one of its threads"));
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.type, FL_FAULT_NONE);
    T_EQ(fl_signal_wait(mgr, sigh, 0), 0);
    t_healthy_advances("a forged thread id");

    /* 2. A real thread's fault, sent 500 times: one faulter, one signal. */
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    fd = raw_peer(token, &at);
    for (int i = 0; i < 500; i++) exec_fault(fd, gettid_(), at + 2 * 4096 + 0x10);
    /* A round trip after them: every one was handled before its answer. */
    struct fl_req_session_info si = {0};
    t_raw_send(fd, &si, FL_REQ_SESSION_INFO);
    struct fl_msg_reply r;
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    T_EQ(fl_signal_wait(mgr, sigh, 5000), 1);
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.type, FL_FAULT_READ); /* a missing page: reported as the uffd would */
    T_EQ(f.addr & ~4095ull, 2 * 4096);
    T_EQ(fl_signal_wait(mgr, sigh, 200), 0);
    /* The thread's fault elsewhere replaces its old one (it abandoned it). */
    exec_fault(fd, gettid_(), at + 5 * 4096);
    t_raw_send(fd, &si, FL_REQ_SESSION_INFO);
    t_raw_reply(fd, &r);
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.addr & ~4095ull, 5 * 4096);
    T_EQ(fl_signal_wait(mgr, sigh, 5000), 1);
    /* An honest thread waits in its SIGSEGV handler: it cannot repeat its
     * fault. A stream of repeats is a flood, and closes the session. */
    for (int i = 0; i < 5000; i++) exec_fault(fd, gettid_(), at + 5 * 4096);
    expect_closed(fd, "a stream of repeated EXEC faults");
    T_WAIT_UNTIL(fl_region_map_fault(mgr, rm, &f) == 0 && f.type == FL_FAULT_NONE);
    T_EQ(fl_signal_wait(mgr, sigh, 0), 0);
    t_healthy_advances("duplicate faults");

    /* 3. Faults nobody handles, as fast as the peer can send them: the log
     * stays short and the session is closed. */
    int before = t_core_log_count(core, "unresolvable");
    fd = raw_peer(NULL, &at);
    for (int i = 0; i < 5000; i++) exec_fault(fd, gettid_(), at + 4096);
    expect_closed(fd, "a stream of unroutable faults");
    T_WAIT_UNTIL(t_core_log_contains(core, "keeps causing faults core cannot route"));
    T_WAIT_UNTIL(t_core_log_contains(core, "more lines about it suppressed"));
    int lines = t_core_log_count(core, "unresolvable") - before;
    if (lines > 2 * 10) {
        fprintf(stderr, "%d log lines for one peer's unroutable faults (at most 10 a second)\n",
                lines);
        return T_FAIL;
    }
    t_healthy_advances("a stream of unroutable faults");

    t_healthy_stop();
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
