/*
 * Descriptors in flight: core sends each memfd to a session once, and a
 * session may hold at most a credit of them unacknowledged. A peer that stops
 * reading while core keeps mapping new dataspaces into it loses its session;
 * the manager's attaches and a healthy client of the same memory carry on.
 *
 * Root would hide the kernel's own limit on descriptors in flight (it counts
 * against the sending user, and root is exempt), so core and the stuck peer
 * run as another uid.
 */
#include "harness.h"

#include "../../src/common/protocol.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define UID   65534
#define PAGES 100
#define MSIZE (PAGES * 4096)

static struct t_pipe tokens, ready;

static void raw_send(int fd, void *msg, unsigned type)
{
    struct fl_msg_hdr *h = msg;
    h->magic = FL_PROTO_MAGIC;
    h->type = (uint16_t)type;
    static uint64_t id;
    h->id = ++id;
    T_ASSERT(send(fd, msg, fl_msg_size(type), 0) == (ssize_t)fl_msg_size(type));
}

static struct fl_msg_reply raw_reply(int fd)
{
    for (;;) {
        _Alignas(8) uint8_t buf[FL_MSG_MAX];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        T_ASSERT(n > 0);
        struct fl_msg_hdr *h = (void *)buf;
        if (h->type == FL_MSG_REPLY) {
            struct fl_msg_reply r;
            memcpy(&r, buf, sizeof(r));
            return r;
        }
    }
}

/* A peer that attaches the managed dataspace and then never reads again. */
static int stuck_peer(void *arg)
{
    (void)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    T_ASSERT(setgid(UID) == 0 && setuid(UID) == 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", getenv("FAULTLINE_SOCKET"));
    int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    T_ASSERT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);

    struct fl_req_hello h = {
        .version = FL_PROTO_VERSION, .window_base = 0x100000000000ull, .window_size = 1ull << 30};
    raw_send(fd, &h, FL_REQ_HELLO);
    struct fl_msg_reply r = raw_reply(fd);
    T_EQ(r.status, 0);
    fl_wire_cap as = r.val[1];

    struct fl_req_cap_import imp = {0};
    for (int i = 0; i < FL_TOKEN_BYTES; i++) {
        unsigned v;
        T_ASSERT(sscanf(token + 2 * i, "%2x", &v) == 1);
        imp.token[i] = (uint8_t)v;
    }
    raw_send(fd, &imp, FL_REQ_CAP_IMPORT);
    r = raw_reply(fd);
    T_EQ(r.status, 0);
    struct fl_req_rm_attach at = {.rm = as, .ds = r.val[0], .flags = FL_ATTACH_WRITEABLE};
    raw_send(fd, &at, FL_REQ_RM_ATTACH);
    T_EQ(raw_reply(fd).status, 0);
    t_pipe_send(&ready, "attached");
    for (;;) pause(); /* never reads, never acknowledges */
    return 0;
}

int main(void)
{
    if (geteuid() != 0) return T_SKIP;
    setenv("FL_TEST_CORE_UID", "65534", 1);
    struct t_core *core = t_core_start(NULL);
    unsetenv("FL_TEST_CORE_UID");
    t_pipe_open(&tokens);
    t_pipe_open(&ready);
    pid_t peer = t_spawn(stuck_peer, NULL);

    struct fl_env *mgr = t_env();
    fl_cap rm, mds;
    T_ERR(fl_rm_create(mgr, MSIZE, &rm), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    t_pipe_send(&tokens, token);
    char line[32];
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);

    /* A healthy client of the same managed dataspace. */
    struct fl_env *client = t_env();
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    fl_cap cmds;
    T_ERR(fl_cap_import(client, token, &cmds), 0);
    unsigned char *view = fl_attach(client, cmds, NULL);
    T_ASSERT(view);

    /* Every attach makes a new memfd visible in both clients. */
    for (int i = 0; i < PAGES; i++) {
        fl_cap ds;
        T_ERR(fl_ram_alloc(mgr, 4096, &ds), 0);
        unsigned char *p = fl_attach(mgr, ds, NULL);
        T_ASSERT(p);
        memset(p, i + 1, 4096);
        T_ERR(fl_detach(mgr, p), 0);
        struct fl_attr a = {.use_at = true, .at = (uintptr_t)i * 4096, .writeable = true};
        T_ERR(fl_region_map_attach(mgr, rm, ds, &a, NULL), 0);
    }
    T_WAIT_UNTIL(t_core_log_contains(core, "too many descriptors in flight"));
    for (int i = 0; i < PAGES; i++) T_EQ(view[i * 4096 + 17], i + 1);

    kill(peer, SIGKILL);
    t_wait(peer);
    fl_env_close(client);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
