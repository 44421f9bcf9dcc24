/*
 * Bursts larger than core's per-wake-up bounds. Core reads at most 32
 * messages of a session, accepts at most 16 connections and reads at most 128
 * uffd events per wake-up, so that no peer starves the others. What it leaves
 * behind must still be served: the next wait of the loop must report the
 * socket again, under both backends (an io_uring multishot poll reports only
 * new wake-ups and stranded exactly these; the loop now re-arms one-shot
 * polls).
 *  (a) pipelined requests: a raw peer sends 200 SESSION_INFO requests without
 *      reading, then reads: every one is answered;
 *  (b) a reply flooder: a raw peer pipelines requests and never reads a reply.
 *      Core queues at most max_out_queue (4096) replies and then ends that
 *      session only ("it stopped reading: its outgoing queue is full"); the
 *      peer's sends fail then instead of blocking for ever;
 *  (c) a burst of 64 connections made before core accepts any: each gets its
 *      HELLO answered;
 *  (d) 256 threads of one client fault on distinct pages of a managed
 *      dataspace at once: every one is reflected and resumed.
 * A healthy component in another process keeps completing rounds of
 * alloc/attach/touch/detach/free meanwhile (asserted after each part).
 * $FL_TEST_BURST_PARTS (e.g. "cd") runs only the parts named.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- raw peers ---- */

static struct t_core *core;

/* A receive that gives up after T_WAIT_MS with a reason (core went silent). */
static void recv_timeout(int s)
{
    struct timeval tv = {T_WAIT_MS / 1000, 0};
    T_ASSERT(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
}

static ssize_t recv_one(int s, void *buf, size_t len, const char *what)
{
    ssize_t n;
    do n = recv(s, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        fprintf(stderr, "%s: core went silent\n", what);
        exit(T_FAIL);
    }
    return n;
}

static int hello(int s)
{
    struct fl_req_hello h;
    fl_msg_init(&h, FL_REQ_HELLO, 1);
    h.version = FL_PROTO_VERSION;
    h.window_base = 0x100000000000ull;
    h.window_size = 1ull << 30;
    return fl_wire_send(s, &h, sizeof(h), -1, 0);
}

static void pipelined(void)
{
    int s = t_raw_connect();
    recv_timeout(s);
    T_EQ(hello(s), 0);
    struct fl_msg_reply r;
    T_EQ(recv_one(s, &r, sizeof(r), "HELLO"), sizeof(r));
    T_EQ(r.status, 0);
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        struct fl_req_session_info q;
        fl_msg_init(&q, FL_REQ_SESSION_INFO, (uint64_t)i + 2);
        T_EQ(fl_wire_send(s, &q, sizeof(q), -1, 0), 0);
    }
    for (int i = 0; i < N; i++) {
        char what[64];
        snprintf(what, sizeof(what), "reply %d of %d pipelined requests", i + 1, N);
        T_EQ(recv_one(s, &r, sizeof(r), what), sizeof(r));
        T_EQ(r.hdr.type, FL_MSG_REPLY);
        T_EQ(r.hdr.id, (uint64_t)i + 2);
        T_EQ(r.status, 0);
    }
    close(s);
}

static int log_has_pid(pid_t pid, const char *text)
{
    char want[64];
    snprintf(want, sizeof(want), "(pid %d (", (int)pid);
    FILE *f = fopen(core->log, "r");
    if (!f) return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) found = strstr(line, want) && strstr(line, text);
    fclose(f);
    return found;
}

static int reply_flooder(void *arg)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan when the test fails */
    struct t_pipe *p = arg;
    int s = t_raw_connect();
    T_EQ(hello(s), 0);
    long sent = 0;
    for (; sent < 1000000; sent++) {
        struct fl_req_session_info q;
        fl_msg_init(&q, FL_REQ_SESSION_INFO, (uint64_t)sent + 2);
        if (fl_wire_send(s, &q, sizeof(q), -1, 0) < 0) break; /* core closed it */
    }
    char line[32];
    snprintf(line, sizeof(line), "%ld", sent);
    t_pipe_send(p, line);
    for (;;) pause();
}

static void flooder(void)
{
    struct t_pipe p;
    t_pipe_open(&p);
    pid_t pid = t_spawn(reply_flooder, &p);
    T_WAIT_FOR(log_has_pid(pid, "it stopped reading: its outgoing queue is full"),
               "core ending the reply flooder's session");
    char line[32];
    T_EQ(t_pipe_recv(&p, line, sizeof(line)), 0);
    T_ASSERT(atol(line) > 4096);
    kill(pid, SIGKILL);
    t_wait(pid);
    close(p.r);
    close(p.w);
}

static void connection_burst(void)
{
    enum { N = 64 };
    int s[N];
    for (int i = 0; i < N; i++) s[i] = t_raw_connect();
    for (int i = 0; i < N; i++) {
        recv_timeout(s[i]);
        T_EQ(hello(s[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        char what[64];
        snprintf(what, sizeof(what), "HELLO of connection %d of a burst of %d", i + 1, N);
        struct fl_msg_reply r;
        T_EQ(recv_one(s[i], &r, sizeof(r), what), sizeof(r));
        T_EQ(r.status, 0);
    }
    for (int i = 0; i < N; i++) close(s[i]);
}

/* ---- many faulting threads ---- */

#define THREADS 256

struct faults {
    atomic_int started, done;
};
static struct faults *fs;
static struct t_pipe go; /* one byte per thread: touch now */
static volatile unsigned char *fview;

static void *toucher(void *arg)
{
    long i = (long)arg;
    atomic_fetch_add(&fs->started, 1);
    char ch;
    if (read(go.r, &ch, 1) != 1) abort();
    if (fview[i * 4096 + 5] != (unsigned char)(i + 1)) abort();
    atomic_fetch_add(&fs->done, 1);
    return NULL;
}

static int fault_client(void *arg)
{
    const char *token = arg;
    struct fl_env *env = t_env();
    fview = t_import_attach(env, token);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) T_EQ(pthread_create(&t[i], NULL, toucher, (void *)i), 0);
    for (long i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    fl_env_close(env);
    return 0;
}

static void fault_burst(void)
{
    fs = mmap(NULL, sizeof(*fs), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    T_ASSERT(fs != MAP_FAILED);
    struct fl_env *mgr = t_env();
    fl_cap rm, mds, sigh, backing;
    T_ERR(fl_rm_create(mgr, THREADS * 4096, &rm), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0);
    T_ERR(fl_ram_alloc(mgr, THREADS * 4096, &backing), 0);
    unsigned char *b = fl_attach(mgr, backing, NULL);
    T_ASSERT(b);
    for (int i = 0; i < THREADS; i++) memset(b + i * 4096, i + 1, 4096);
    static char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    t_pipe_open(&go);
    pid_t client = t_spawn(fault_client, token);
    T_WAIT_UNTIL(atomic_load(&fs->started) == THREADS);
    char all[THREADS];
    memset(all, 'g', sizeof(all));
    T_EQ(write(go.w, all, sizeof(all)), sizeof(all));
    int served = 0;
    long end = t_now_ms() + T_WAIT_MS;
    while (atomic_load(&fs->done) < THREADS) {
        if (t_now_ms() > end) {
            fprintf(stderr, "%d of %d faulting threads resumed, %d faults served\n",
                    atomic_load(&fs->done), THREADS, served);
            exit(T_FAIL);
        }
        fl_signal_wait(mgr, sigh, 10);
        struct fl_fault f;
        for (;;) {
            T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
            if (f.type == FL_FAULT_NONE) break;
            uintptr_t page = f.addr & ~(uintptr_t)4095;
            struct fl_attr a = {
                .size = 4096, .offset = page, .use_at = true, .at = page, .writeable = true};
            T_ERR(fl_region_map_attach(mgr, rm, backing, &a, NULL), 0);
            served++;
        }
    }
    T_EQ(t_wait(client), 0);
    T_ERR(fl_detach(mgr, b), 0);
    T_ERR(fl_rm_destroy(mgr, rm), 0);
    T_ERR(fl_ram_free(mgr, backing), 0);
    fl_env_close(mgr);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);
    t_healthy_start(T_HEALTHY_ALLOCATES);
    t_healthy_advances("the healthy component's first rounds");
    /* $FL_TEST_BURST_PARTS (e.g. "cd") runs only some parts, to tell them apart. */
    const char *parts = getenv("FL_TEST_BURST_PARTS");
    if (!parts) parts = "abcd";
    if (strchr(parts, 'a')) {
        pipelined();
        t_healthy_advances("200 pipelined requests");
    }
    if (strchr(parts, 'b')) {
        flooder();
        t_healthy_advances("the reply flooder's end");
    }
    if (strchr(parts, 'c')) {
        connection_burst();
        t_healthy_advances("a burst of 64 connections");
    }
    if (strchr(parts, 'd')) {
        fault_burst();
        t_healthy_advances("256 threads faulting at once");
    }
    t_healthy_stop();
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
