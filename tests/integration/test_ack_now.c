/*
 * A component's agent may hold back the acknowledgements of mappings and
 * resumes that succeeded (src/common/protocol.h): nothing waits for them, and
 * sending each one woke core once more per fault. When core does wait for
 * one -- a fault on a page whose resume is not acknowledged yet is sorted out
 * only after the acknowledgement -- it asks with AGENT_ACK_NOW, once however
 * many such faults come, and wakes the page again when the acknowledgement
 * arrives. Without the request such a thread (a write to a page mapped
 * read-only a moment ago, say) would wait until the agent happened to
 * acknowledge something else.
 *
 * This process is the component, as a raw protocol peer that acknowledges
 * nothing until asked, so that it sees every instruction; its faults are
 * EXEC_FAULTs in its own name (the messages libfaultline's SIGSEGV handler
 * sends), which core resolves like any other.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <unistd.h>

static int sock;
static uint64_t next_id = 1000;
static uint64_t at;           /* where the dataspace is attached */
static unsigned resumes;      /* AGENT_RESUMEs for its page */
static unsigned ack_nows;     /* AGENT_ACK_NOWs */
static uint64_t last_ack_now; /* the newest one's sequence number */

/* msg: made with fl_msg_init(msg, type, ...), its header's id set here. */
static void send_msg(void *msg, unsigned type, uint64_t id)
{
    ((struct fl_msg_hdr *)msg)->id = id;
    T_EQ(fl_wire_send(sock, msg, fl_msg_size(type), -1, 0), 0);
}

/* An instruction core sent the component, counted. */
static void seen(const void *msg, int nfds)
{
    (void)nfds;
    const struct fl_msg_hdr *h = msg;
    if (h->type == FL_MSG_AGENT_RESUME) {
        const struct fl_msg_agent_resume *m = msg;
        if (m->va <= at && at < m->va + m->len) resumes++;
    } else if (h->type == FL_MSG_AGENT_ACK_NOW) {
        ack_nows++;
        last_ack_now = h->id;
    }
}

static struct fl_msg_reply rpc(void *msg, unsigned type)
{
    uint64_t id = next_id++;
    send_msg(msg, type, id);
    struct fl_msg_reply r = t_raw_until_reply(sock, id, seen);
    T_EQ(r.status, 0);
    return r;
}

/* Every message sent before has been handled. */
static void sync_core(void)
{
    struct fl_req_session_info si;
    fl_msg_init(&si, FL_REQ_SESSION_INFO, 0);
    rpc(&si, FL_REQ_SESSION_INFO);
}

static void exec_fault(void)
{
    struct fl_msg_exec_fault m;
    fl_msg_init(&m, FL_MSG_EXEC_FAULT, 0);
    m.tid = (uint32_t)gettid();
    m.addr = at + 16;
    send_msg(&m, FL_MSG_EXEC_FAULT, 0);
}

static void asked_once(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, 4096, 0);
    fl_cap ram;
    T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);
    struct fl_attr a = {.use_at = true, .at = 0, .writeable = true, .executable = true};
    T_ERR(fl_region_map_attach(mgr, mm.rm, ram, &a, NULL), 0);

    sock = t_raw_connect();
    struct fl_req_hello h;
    fl_msg_init(&h, FL_REQ_HELLO, 0);
    h.version = FL_PROTO_VERSION;
    h.window_base = 0x100000000000ull;
    h.window_size = 1ull << 30;
    fl_wire_cap as = rpc(&h, FL_REQ_HELLO).val[1];
    struct fl_req_cap_import imp;
    fl_msg_init(&imp, FL_REQ_CAP_IMPORT, 0);
    t_token_bytes(t_mm_export(&mm), imp.token);
    fl_wire_cap ds = rpc(&imp, FL_REQ_CAP_IMPORT).val[0];
    struct fl_req_rm_attach ra;
    fl_msg_init(&ra, FL_REQ_RM_ATTACH, 0);
    ra.rm = as;
    ra.ds = ds;
    ra.flags = FL_ATTACH_WRITEABLE | FL_ATTACH_EXECUTABLE;
    at = rpc(&ra, FL_REQ_RM_ATTACH).val[0];

    /* A fault core resolves: its mapping and resume, nothing asked. */
    exec_fault();
    sync_core();
    T_EQ(resumes, 1);
    T_EQ(ack_nows, 0);

    /* The same page again while that resume is unacknowledged: core waits
     * for the acknowledgement, and asks for it once. */
    for (int i = 0; i < 5; i++) exec_fault();
    sync_core();
    T_EQ(ack_nows, 1);
    T_EQ(resumes, 1);

    /* The acknowledgement: the page is woken again, once. */
    struct fl_msg_agent_ack ack;
    fl_msg_init(&ack, FL_MSG_AGENT_ACK, 0);
    send_msg(&ack, FL_MSG_AGENT_ACK, last_ack_now);
    sync_core();
    T_EQ(resumes, 2);
    T_EQ(ack_nows, 1);

    close(sock);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(asked_once)
