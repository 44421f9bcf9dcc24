/*
 * Detach replies only after every agent that showed the range acknowledged
 * its revocation. Two clients show a managed dataspace; one is stopped
 * (SIGSTOP: its agent cannot acknowledge), the other runs. The manager is a
 * raw protocol peer, so the order of core's replies on its socket is the
 * evidence, not a timing:
 *
 *  - DETACH then SESSION_INFO: core answers SESSION_INFO first (it handles
 *    both before it would read anything else of ours, so a detach that
 *    replied at once would come first);
 *  - once the running client's acknowledgement is in (it completed two RPCs
 *    after the revocation reached it), another SESSION_INFO is still
 *    answered before the detach: one acknowledgement of two is not enough;
 *  - SIGCONT: the detach's reply comes (bounded wait), and both clients'
 *    next reads fault (no fault handler, --unresolvable sigbus: SIGBUS).
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int client_main(struct t_child *c)
{
    struct fl_env *env = t_env();
    char line[256];
    t_child_command(c, line, sizeof(line));
    volatile uint8_t *p = t_import_attach(env, line);
    t_child_say(c, "read %d", p[5]);
    for (;;) {
        t_child_command(c, line, sizeof(line));
        if (!strcmp(line, "sync")) {
            /* The second request goes out after the agent handled what came
             * before the first reply: its acknowledgement of the revocation. */
            struct fl_session_info info;
            T_ERR(fl_env_session_info(env, &info), 0);
            T_ERR(fl_env_session_info(env, &info), 0);
            t_child_say(c, "synced");
        } else if (!strcmp(line, "read")) {
            t_child_say(c, "read again %d", p[5]); /* must not return */
        } else {
            break;
        }
    }
    fl_env_close(env);
    return 0;
}

/* ---- the raw manager ---- */

static int mgr;

static uint64_t send_req(void *msg, unsigned type)
{
    t_raw_send(mgr, msg, type);
    return ((struct fl_msg_hdr *)msg)->id;
}

/* The next reply on the manager's socket, within T_WAIT_MS. */
static void next_reply(struct fl_msg_reply *r, const char *what)
{
    struct pollfd pf = {.fd = mgr, .events = POLLIN};
    long end = t_now_ms() + T_WAIT_MS;
    for (;;) {
        t_poll_until(&pf, 1, end, what);
        _Alignas(8) uint8_t buf[FL_MSG_MAX];
        ssize_t len = recv(mgr, buf, sizeof(buf), 0);
        T_ASSERT(len > 0);
        if (((struct fl_msg_hdr *)(void *)buf)->type != FL_MSG_REPLY) continue;
        memcpy(r, buf, sizeof(*r));
        return;
    }
}

static uint64_t rpc(void *msg, unsigned type)
{
    uint64_t id = send_req(msg, type);
    struct fl_msg_reply r;
    next_reply(&r, "reply to a request of the manager");
    T_EQ(r.hdr.id, id);
    T_EQ(r.status, 0);
    return r.val[0];
}

static void export_token(fl_wire_cap cap, char token[FL_TOKEN_LEN + 1])
{
    struct fl_req_cap m = {.cap = cap};
    uint64_t id = send_req(&m, FL_REQ_CAP_EXPORT);
    struct fl_msg_reply r;
    next_reply(&r, "reply to CAP_EXPORT");
    T_EQ(r.hdr.id, id);
    T_EQ(r.status, 0);
    for (int i = 0; i < FL_TOKEN_BYTES; i++) sprintf(token + 2 * i, "%02x", r.token[i]);
}

/* The next reply must answer `want`, not the detach. */
static void expect_answer_before_detach(uint64_t want, uint64_t detach, const char *when)
{
    struct fl_msg_reply r;
    next_reply(&r, "reply to SESSION_INFO");
    if (r.hdr.id == detach) T_FAILF("detach replied %s", when);
    T_EQ(r.hdr.id, want);
    T_EQ(r.status, 0);
}

static void replies_after_every_ack(void)
{
    /* The stopped client must not be ended for missing the deadline. */
    struct t_core *core =
        t_core_start("--revoke-deadline", "600000", "--unresolvable", "sigbus", NULL);
    mgr = t_raw_connect();
    struct fl_req_hello h = {
        .version = FL_PROTO_VERSION, .window_base = 0x100000000000ull, .window_size = 1ull << 30};
    rpc(&h, FL_REQ_HELLO);
    /* An RM session with room for its map (the two capabilities of the
     * open pay for the session itself). */
    struct fl_req_rm_session_open ro = {.ram_quota = 64 << 10, .cap_quota = 3};
    fl_wire_cap rms = rpc(&ro, FL_REQ_RM_SESSION_OPEN);
    struct fl_req_rm_create rc = {.rms = rms, .size = 0x10000};
    fl_wire_cap rm = rpc(&rc, FL_REQ_RM_CREATE);
    struct fl_req_ram_alloc ra = {.size = 4096};
    fl_wire_cap ram = rpc(&ra, FL_REQ_RAM_ALLOC);
    struct fl_req_rm_attach at = {
        .rm = rm, .ds = ram, .at = 0, .flags = FL_ATTACH_USE_AT | FL_ATTACH_WRITEABLE};
    rpc(&at, FL_REQ_RM_ATTACH);
    struct fl_req_cap dq = {.cap = rm};
    fl_wire_cap mds = rpc(&dq, FL_REQ_RM_DATASPACE);

    struct t_child run, stopped;
    char token[FL_TOKEN_LEN + 1];
    t_child_spawn(&run, "running client", client_main);
    t_child_spawn(&stopped, "stopped client", client_main);
    export_token(mds, token);
    t_child_send(&run, "%s", token);
    t_child_expect(&run, "read 0");
    export_token(mds, token);
    t_child_send(&stopped, "%s", token);
    t_child_expect(&stopped, "read 0");

    T_EQ(kill(stopped.pid, SIGSTOP), 0);
    int st;
    T_EQ(waitpid(stopped.pid, &st, WUNTRACED), stopped.pid);
    T_ASSERT(WIFSTOPPED(st));

    struct fl_req_rm_detach d = {.rm = rm, .at = 0};
    uint64_t detach = send_req(&d, FL_REQ_RM_DETACH);
    struct fl_req_session_info si = {0};
    uint64_t info = send_req(&si, FL_REQ_SESSION_INFO);
    expect_answer_before_detach(info, detach, "before any client acknowledged its revocation");

    t_child_send(&run, "sync");
    t_child_expect(&run, "synced");
    info = send_req(&si, FL_REQ_SESSION_INFO);
    expect_answer_before_detach(info, detach,
                                "once one client acknowledged, while the other is stopped");

    T_EQ(kill(stopped.pid, SIGCONT), 0);
    struct fl_msg_reply r;
    next_reply(&r, "reply to the detach after the stopped client was continued");
    T_EQ(r.hdr.id, detach);
    T_EQ(r.status, 0);

    /* Revoked in both: the next read faults (no handler: SIGBUS). */
    t_child_send(&run, "read");
    t_child_send(&stopped, "read");
    T_EQ(t_wait(run.pid), 128 + SIGBUS);
    T_EQ(t_wait(stopped.pid), 128 + SIGBUS);
    T_ASSERT(!t_core_log_contains(core, "missed the revocation deadline"));
    close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(replies_after_every_ack)
