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
 * Each part is a case of its own (-f names one).
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <unistd.h>

/* ---- raw peers ---- */

static struct t_core *core;

static void pipelined(void)
{
    int s = t_raw_connect();
    T_EQ(t_raw_hello(s, 0, -1), 0);
    struct fl_msg_reply r;
    T_EQ(t_raw_recv(s, &r, sizeof(r), "HELLO"), sizeof(r));
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
        T_EQ(t_raw_recv(s, &r, sizeof(r), what), sizeof(r));
        T_EQ(r.hdr.type, FL_MSG_REPLY);
        T_EQ(r.hdr.id, (uint64_t)i + 2);
        T_EQ(r.status, 0);
    }
    close(s);
}

static int reply_flooder(struct t_child *c)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan when the test fails */
    int s = t_raw_connect();
    T_EQ(t_raw_hello(s, 0, -1), 0);
    long sent = 0;
    for (; sent < 1000000; sent++) {
        struct fl_req_session_info q;
        fl_msg_init(&q, FL_REQ_SESSION_INFO, (uint64_t)sent + 2);
        if (fl_wire_send(s, &q, sizeof(q), -1, 0) < 0) break; /* core closed it */
    }
    t_child_say(c, "%ld", sent);
    for (;;) pause();
    return 0;
}

static void flooder(void)
{
    struct t_child c;
    t_child_spawn(&c, "reply flooder", reply_flooder);
    T_WAIT_FOR(t_core_log_names(core, c.pid, "it stopped reading: its outgoing queue is full"),
               "core ending the reply flooder's session");
    char line[32];
    t_child_line(&c, line, sizeof(line));
    T_ASSERT(atol(line) > 4096);
    kill(c.pid, SIGKILL);
    t_wait(c.pid);
}

static void connection_burst(void)
{
    enum { N = 64 };
    int s[N];
    for (int i = 0; i < N; i++) s[i] = t_raw_connect();
    for (int i = 0; i < N; i++) T_EQ(t_raw_hello(s[i], 0, -1), 0);
    for (int i = 0; i < N; i++) {
        char what[64];
        snprintf(what, sizeof(what), "HELLO of connection %d of a burst of %d", i + 1, N);
        struct fl_msg_reply r;
        T_EQ(t_raw_recv(s[i], &r, sizeof(r), what), sizeof(r));
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

static int not_all_done(void)
{
    return atomic_load(&fs->done) < THREADS;
}

static void fault_burst(void)
{
    fs = t_shared(sizeof(*fs));
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, THREADS * 4096, T_MM_HANDLER);
    fl_cap backing;
    unsigned char *b = t_ram_pages(mgr, THREADS, 1, &backing);
    t_pipe_open(&go);
    pid_t client = t_spawn(fault_client, (void *)t_mm_export(&mm));
    T_WAIT_UNTIL(atomic_load(&fs->started) == THREADS);
    char all[THREADS];
    memset(all, 'g', sizeof(all));
    T_EQ(write(go.w, all, sizeof(all)), sizeof(all));
    t_mm_serve_while(&mm, backing, not_all_done, "256 faulting threads to resume");
    T_EQ(t_wait(client), 0);
    T_ERR(fl_detach(mgr, b), 0);
    T_ERR(fl_rm_destroy(mgr, mm.rms, mm.rm), 0);
    T_ERR(fl_ram_free(mgr, backing), 0);
    fl_env_close(mgr);
}

/* A part between a core's start and stop, while the healthy component runs. */
static void run_part(void (*part)(void), const char *after)
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);
    t_healthy_start(T_HEALTHY_ALLOCATES);
    t_healthy_advances("the healthy component's first rounds");
    part();
    t_healthy_advances(after);
    t_healthy_stop();
    T_EQ(t_core_stop(core), 0);
}

static void a_pipelined_requests(void)
{
    run_part(pipelined, "200 pipelined requests");
}

static void b_reply_flooder(void)
{
    run_part(flooder, "the reply flooder's end");
}

static void c_connection_burst(void)
{
    run_part(connection_burst, "a burst of 64 connections");
}

static void d_fault_burst(void)
{
    run_part(fault_burst, "256 threads faulting at once");
}

T_CASES(a_pipelined_requests, b_reply_flooder, c_connection_burst, d_fault_burst)
