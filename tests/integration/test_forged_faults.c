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
 *   and again (each repeat counts 16 against 1000 a second), the session is
 *   closed.
 * - A stream of faults core cannot route (no fault handler): at most
 *   FL_LOG_BURST lines a second about them, then one counting the rest, and
 *   beyond 1000 a second the session is closed with one line saying why.
 * A healthy session is served throughout.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#define K 1024ull

static struct t_core *core;

static void exec_fault(int fd, uint32_t tid, uint64_t addr)
{
    struct fl_msg_exec_fault m = {.tid = tid, .addr = addr};
    m.hdr.magic = FL_PROTO_MAGIC;
    m.hdr.type = FL_MSG_EXEC_FAULT;
    /* The peer may be closed meanwhile: that is what some cases wait for. */
    ssize_t n = send(fd, &m, sizeof(m), MSG_NOSIGNAL);
    T_ASSERT(n == (ssize_t)sizeof(m) || (n < 0 && (errno == EPIPE || errno == ECONNRESET)));
}

static uint32_t gettid_(void)
{
    return (uint32_t)gettid();
}

/* A core, a manager with a managed dataspace, and the healthy component. */
static struct t_mm mm;
static void setup(void)
{
    core = t_core_start(NULL);
    t_mm_create(&mm, t_env(), 64 * K, T_MM_HANDLER);
    t_healthy_start(T_HEALTHY_ALLOCATES);
}

static void teardown(void)
{
    t_healthy_stop();
    fl_env_close(mm.env);
    T_EQ(t_core_stop(core), 0);
}

/* A raw peer in this process (its threads are ours) that attached mm's
 * dataspace; its socket, and where in *at. */
static int raw_peer(uint64_t *at)
{
    return t_raw_peer(t_mm_export(&mm), at);
}

/* A made-up thread id: closed, nothing queued, no signal. */
static void forged_thread_id(void)
{
    setup();
    uint64_t at;
    int fd = raw_peer(&at);
    exec_fault(fd, 0x7ffffff0u, at + 0x123); /* pid_max is at most 2^22 */
    t_raw_expect_closed(fd, "EXEC fault of a thread that is not the sender's", 0);
    T_WAIT_UNTIL(t_core_log_contains(core, "which is not one of its threads"));
    t_mm_expect_fault(&mm, FL_FAULT_NONE, 0);
    t_expect_no_signal(mm.env, mm.sigh);
    t_healthy_advances("a forged thread id");
    teardown();
}

/* A real thread's fault, sent 50 times: one faulter, one signal. */
static void duplicate_faults(void)
{
    setup();
    uint64_t at;
    int fd = raw_peer(&at);
    for (int i = 0; i < 50; i++) exec_fault(fd, gettid_(), at + 2 * 4096 + 0x10);
    /* A round trip after them: every one was handled before its answer. */
    struct fl_req_session_info si = {0};
    t_raw_send(fd, &si, FL_REQ_SESSION_INFO);
    struct fl_msg_reply r;
    t_raw_reply(fd, &r);
    T_EQ(r.status, 0);
    T_EQ(fl_signal_wait(mm.env, mm.sigh, 5000), 1);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mm.env, mm.rm, &f), 0);
    T_EQ(f.type, FL_FAULT_READ); /* a missing page: reported as the uffd would */
    T_EQ(f.addr & ~4095ull, 2 * 4096);
    T_EQ(fl_signal_wait(mm.env, mm.sigh, 200), 0);
    /* The thread's fault elsewhere replaces its old one (it abandoned it). */
    exec_fault(fd, gettid_(), at + 5 * 4096);
    t_raw_send(fd, &si, FL_REQ_SESSION_INFO);
    t_raw_reply(fd, &r);
    T_ERR(fl_region_map_fault(mm.env, mm.rm, &f), 0);
    T_EQ(f.addr & ~4095ull, 5 * 4096);
    T_EQ(fl_signal_wait(mm.env, mm.sigh, 5000), 1);
    /* An honest thread waits in its SIGSEGV handler: it cannot repeat its
     * fault. A stream of repeats is a flood, and closes the session. */
    for (int i = 0; i < 5000; i++) exec_fault(fd, gettid_(), at + 5 * 4096);
    t_raw_expect_closed(fd, "a stream of repeated EXEC faults", 0);
    T_WAIT_UNTIL(fl_region_map_fault(mm.env, mm.rm, &f) == 0 && f.type == FL_FAULT_NONE);
    t_expect_no_signal(mm.env, mm.sigh);
    t_healthy_advances("duplicate faults");
    teardown();
}

/* Faults nobody handles, as fast as the peer can send them: the log stays
 * short and the session is closed. */
static void unroutable_faults(void)
{
    setup();
    int before = t_core_log_count(core, "unresolvable");
    uint64_t at;
    int fd = t_raw_peer(NULL, &at);
    for (int i = 0; i < 5000; i++) exec_fault(fd, gettid_(), at + 4096);
    t_raw_expect_closed(fd, "a stream of unroutable faults", 0);
    T_WAIT_UNTIL(t_core_log_contains(core, "keeps causing faults core cannot route"));
    T_WAIT_UNTIL(t_core_log_contains(core, "more lines about it suppressed"));
    int lines = t_core_log_count(core, "unresolvable") - before;
    if (lines > 2 * 10)
        T_FAILF("%d log lines for one peer's unroutable faults (at most 10 a second)", lines);
    t_healthy_advances("a stream of unroutable faults");
    teardown();
}

T_CASES(forged_thread_id, duplicate_faults, unroutable_faults)
