/*
 * Fault reflection between real processes, as Genode's rm_fault and rm_nested
 * tests do it. This process is the dataspace manager: it creates managed
 * region maps with fault handlers and exports their dataspaces; client
 * processes import and attach them like any dataspace and touch them.
 *
 *  - A client's READ of an unbacked page is reflected: the manager's signal
 *    arrives, fault() names READ at the address relative to the managed map,
 *    the client stays halted until the manager attaches a RAM dataspace it
 *    filled there, then reads the manager's bytes. A write touch is a WRITE
 *    fault. The memory is shared: the client's writes show through the
 *    manager's own attachment of the backing dataspace and the other way
 *    round. fault() is NONE whenever nothing is queued. Detach revokes: the
 *    next touch faults anew.
 *  - A manager that never answers: its client stays stuck on its fault while
 *    a healthy manager+client pair (the one above) completes normally.
 *  - No handler: a thread touching an unattached address of its own window
 *    (an address space has no handler) is named in core's log with "no fault
 *    handler" and stays halted.
 *  - Nested: managed map B attached into managed map A, which the client
 *    attaches; faults are reflected to the deepest map reached only, in its
 *    coordinates; backing attached into B is read through both levels.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 10000
#define MAP_SIZE    (1u << 20)

static struct t_core *core;

/* Where the kernel has the thread waiting: a uffd-halted thread waits in
 * handle_userfault. Empty if the kernel does not say. */
static void thread_wchan(pid_t pid, pid_t tid, char *buf, size_t len)
{
    t_proc_line(buf, len, "/proc/%d/task/%d/wchan", (int)pid, (int)tid);
    if (!strcmp(buf, "0")) buf[0] = 0;
}

/* ---- the manager that never answers ---- */

static int stuck_manager_main(struct t_child *c)
{
    struct fl_env *env = t_env();
    struct t_mm mm;
    t_mm_create(&mm, env, MAP_SIZE, T_MM_HANDLER);
    t_child_say(c, "%s", t_mm_export(&mm));
    /* Never calls fault(), never attaches: waits to be told to go. */
    char line[64];
    t_child_command(c, line, sizeof(line));
    T_ASSERT(!strcmp(line, "exit"));
    fl_env_close(env);
    return 0;
}

/* ---- a thread touching its own window, where nothing is attached ---- */

struct nohandler {
    struct t_child *c;
    struct fl_env *env;
};

static void *nohandler_thread(void *arg)
{
    struct nohandler *nh = arg;
    struct fl_session_info info;
    T_ERR(fl_env_session_info(nh->env, &info), 0);
    volatile char *base = fl_env_window_base(nh->env);
    size_t size = fl_env_window_size(nh->env);
    t_child_say(nh->c, "%ld %llu %p", (long)syscall(SYS_gettid),
                (unsigned long long)info.session_id, (void *)(base + size / 2));
    char v = base[size / 2 + 8];
    t_child_say(nh->c, "resumed %d", v);
    return NULL;
}

static int nohandler_main(struct t_child *c)
{
    struct nohandler nh = {c, t_env()};
    pthread_t t;
    T_ASSERT(pthread_create(&t, NULL, nohandler_thread, &nh) == 0);
    pthread_join(t, NULL);
    return 0;
}

/* ---- the manager's helpers ---- */

/* After a detach or free: the client's read must fault (a signal), not
 * return data from a mapping that should be gone. */
static void signal_not_line(struct fl_env *env, fl_cap sigh, struct t_child *c, const char *what,
                            int round)
{
    int sfd = fl_signal_fd(env, sigh);
    T_ASSERT(sfd >= 0);
    struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = c->from.r, .events = POLLIN}};
    int r;
    do r = poll(pf, 2, DEADLINE_MS);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        T_FAILF("%s round %d: neither a fault signal nor an answer within %d ms", what, round,
                DEADLINE_MS);
    if (pf[1].revents) {
        char line[256];
        t_child_line(c, line, sizeof(line));
        T_FAILF("%s round %d: %s returned, yet the client's next read did not fault: it got "
                "\"%s\" from a mapping that should be gone (it must be revoked everywhere "
                "before %s returns)",
                what, round, what, line, what);
    }
    T_ASSERT(fl_signal_wait(env, sigh, 0) > 0);
}

/* Attach [off, off+size) of ds at `at` of rm, writeable. */
static void attach_at(struct fl_env *env, fl_cap rm, fl_cap ds, size_t off, size_t size,
                      uintptr_t at)
{
    t_attach_at(env, rm, ds, off, size, at, T_W);
}

/* ---- the scenarios ---- */

#define READ_AT  0x3000u
#define WRITE_AT 0x20000u

static void run_healthy_pair(struct fl_env *m)
{
    struct t_mm mm;
    t_mm_create(&mm, m, MAP_SIZE, T_MM_HANDLER);
    fl_cap backing;
    size_t size = 0;
    T_ERR(fl_dataspace_size(m, mm.ds, &size), 0);
    T_EQ(size, MAP_SIZE);
    /* Nothing queued yet. */
    t_expect_fault(m, mm.rm, FL_FAULT_NONE, 0);
    t_expect_no_signal(m, mm.sigh);

    /* The backing store, filled through the manager's own attachment. */
    volatile char *local = t_ram(m, 16 * 4096, &backing);
    strcpy((char *)local, "manager's page for 0x3000");
    strcpy((char *)local + 0x2000, "second backing of 0x3000");

    struct t_child cl;
    t_child_spawn(&cl, "healthy client", t_client_main);
    t_child_send(&cl, "import %s", t_mm_export(&mm));
    t_child_expect(&cl, "attached");
    /* Attaching faults nothing. */
    t_expect_fault(m, mm.rm, FL_FAULT_NONE, 0);
    t_expect_no_signal(m, mm.sigh);

    /* READ: reflected, relative to the managed map; the client waits. */
    t_child_send(&cl, "read %#x", READ_AT);
    t_expect_signal(m, mm.sigh);
    t_expect_fault(m, mm.rm, FL_FAULT_READ, READ_AT);
    t_child_silent(&cl);
    /* Unresolved, it stays at the head. */
    t_expect_fault(m, mm.rm, FL_FAULT_READ, READ_AT);
    t_child_silent(&cl);

    /* Attaching elsewhere does not resolve it. */
    attach_at(m, mm.rm, backing, 0x4000, 0x1000, 0x80000);
    t_expect_fault(m, mm.rm, FL_FAULT_READ, READ_AT);
    t_child_silent(&cl);

    /* The answer: the client resumes and reads the manager's bytes. */
    attach_at(m, mm.rm, backing, 0, 0x1000, READ_AT);
    t_child_expect(&cl, "read manager's page for 0x3000");
    t_expect_fault(m, mm.rm, FL_FAULT_NONE, 0);

    /* WRITE. */
    t_child_send(&cl, "write %#x client wrote this", WRITE_AT);
    t_expect_signal(m, mm.sigh);
    t_expect_fault(m, mm.rm, FL_FAULT_WRITE, WRITE_AT);
    t_child_silent(&cl);
    attach_at(m, mm.rm, backing, 0x1000, 0x1000, WRITE_AT);
    t_child_expect(&cl, "wrote");
    t_expect_fault(m, mm.rm, FL_FAULT_NONE, 0);

    /* Shared, not copied: both ways. */
    if (strcmp((const char *)local + 0x1000, "client wrote this"))
        T_FAILF("the manager's view of the backing: \"%.40s\"", (const char *)local + 0x1000);
    strcpy((char *)local + 0x1000 + 200, "manager wrote back");
    t_child_send(&cl, "read %#x", WRITE_AT + 200);
    t_child_expect(&cl, "read manager wrote back");
    /* Touching mapped memory again faults nothing. */
    t_child_send(&cl, "read %#x", READ_AT + 10);
    t_child_expect(&cl, "read page for 0x3000");
    t_expect_no_signal(m, mm.sigh);

    /* Detach revokes before it returns (Genode: every mapping of the range is
     * gone from every address space when detach returns): the client's next
     * touch is reflected anew, never served from the old mapping. Then a
     * different backing attached there is what the client reads. Repeated,
     * as the client's agent races the manager's next step. */
    for (int round = 0; round < 20; round++) {
        T_ERR(fl_region_map_detach(m, mm.rm, READ_AT + 100), 0);
        t_child_send(&cl, "read %#x", READ_AT);
        signal_not_line(m, mm.sigh, &cl, "detach", round);
        t_expect_fault(m, mm.rm, FL_FAULT_READ, READ_AT);
        t_child_silent(&cl);
        attach_at(m, mm.rm, backing, round % 2 ? 0 : 0x2000, 0x1000, READ_AT);
        t_child_expect(&cl, round % 2 ? "read manager's page for 0x3000"
                                      : "read second backing of 0x3000");
        t_expect_fault(m, mm.rm, FL_FAULT_NONE, 0);
    }

    /* Freeing the backing revokes it everywhere before free returns; its
     * region stays reserved, so the client's next touch is reflected. */
    for (int round = 0; round < 10; round++) {
        fl_cap tmp;
        volatile char *t = t_ram(m, 4096, &tmp);
        snprintf((char *)t, 64, "short-lived %d", round);
        T_ERR(fl_detach(m, (const void *)t), 0);
        T_ERR(fl_region_map_detach(m, mm.rm, READ_AT), 0);
        attach_at(m, mm.rm, tmp, 0, 0x1000, READ_AT);
        char want[64];
        snprintf(want, sizeof(want), "read short-lived %d", round);
        t_child_send(&cl, "read %#x", READ_AT);
        t_child_expect(&cl, want);
        T_ERR(fl_ram_free(m, tmp), 0);
        t_child_send(&cl, "read %#x", READ_AT);
        signal_not_line(m, mm.sigh, &cl, "free", round);
        t_expect_fault(m, mm.rm, FL_FAULT_READ, READ_AT);
        /* The reserved region blocks the range until detached. */
        struct fl_attr a = {.size = 0x1000, .use_at = true, .at = READ_AT, .writeable = true};
        T_ERR(fl_region_map_attach(m, mm.rm, backing, &a, NULL), -FL_E_REGION_CONFLICT);
        T_ERR(fl_region_map_detach(m, mm.rm, READ_AT), 0);
        t_expect_fault(m, mm.rm, FL_FAULT_READ, READ_AT); /* detach wakes nobody */
        t_child_silent(&cl);
        attach_at(m, mm.rm, backing, 0, 0x1000, READ_AT);
        t_child_expect(&cl, "read manager's page for 0x3000");
    }

    t_child_send(&cl, "exit");
    T_EQ(t_wait(cl.pid), 0);
    close(cl.to.w);
    close(cl.from.r);
    T_ERR(fl_detach(m, (const void *)local), 0);
    T_ERR(fl_rm_destroy(m, mm.rms, mm.rm), 0);
    T_ERR(fl_ram_free(m, backing), 0);
    T_ERR(fl_signal_context_destroy(m, mm.sigh), 0);
}

/* The fault is reflected to `to`, and to `not` nothing. */
static void reflected_to_only(struct t_mm *to, struct t_mm * not, enum fl_fault_type type,
                              uintptr_t addr)
{
    t_expect_signal(to->env, to->sigh);
    t_mm_expect_fault(to, type, addr);
    t_mm_expect_fault(not, FL_FAULT_NONE, 0);
    t_expect_no_signal(not ->env, not ->sigh);
}

static void run_nested(struct fl_env *m)
{
    struct t_mm A, B;
    t_mm_create(&A, m, MAP_SIZE, T_MM_HANDLER);
    t_mm_create(&B, m, MAP_SIZE / 4, T_MM_HANDLER);
    fl_cap backing;
    /* B inside A at 0x40000. */
    attach_at(m, A.rm, B.ds, 0, MAP_SIZE / 4, 0x40000);

    volatile char *local = t_ram(m, 4 * 4096, &backing);
    strcpy((char *)local, "backed in B before");
    strcpy((char *)local + 0x1000, "backed in B on demand");
    strcpy((char *)local + 0x2000, "backed in A on demand");
    /* Backing in B before the client comes. */
    attach_at(m, B.rm, backing, 0, 0x1000, 0x2000);

    struct t_child cl;
    t_child_spawn(&cl, "nested client", t_client_main);
    t_child_send(&cl, "import %s", t_mm_export(&A));
    t_child_expect(&cl, "attached");

    /* Through both levels, with no fault to reflect. */
    t_child_send(&cl, "read %#x", 0x40000 + 0x2000);
    t_child_expect(&cl, "read backed in B before");
    t_expect_no_signal(m, A.sigh);
    t_expect_no_signal(m, B.sigh);

    /* Unbacked in B: reflected to B only, in B's coordinates. */
    t_child_send(&cl, "read %#x", 0x40000 + 0x5000);
    reflected_to_only(&B, &A, FL_FAULT_READ, 0x5000);
    t_child_silent(&cl);
    attach_at(m, B.rm, backing, 0x1000, 0x1000, 0x5000);
    t_child_expect(&cl, "read backed in B on demand");
    t_expect_fault(m, B.rm, FL_FAULT_NONE, 0);

    /* Unbacked in A, outside B: reflected to A only. */
    t_child_send(&cl, "write %#x outer", 0x10000);
    reflected_to_only(&A, &B, FL_FAULT_WRITE, 0x10000);
    t_child_silent(&cl);
    attach_at(m, A.rm, backing, 0x2000, 0x1000, 0x10000);
    t_child_expect(&cl, "wrote");
    T_ASSERT(!strcmp((const char *)local + 0x2000, "outer"));

    /* A write through both levels lands in the backing. */
    t_child_send(&cl, "write %#x nested write", 0x40000 + 0x2000 + 64);
    t_child_expect(&cl, "wrote");
    T_ASSERT(!strcmp((const char *)local + 64, "nested write"));

    t_child_send(&cl, "exit");
    T_EQ(t_wait(cl.pid), 0);
    close(cl.to.w);
    close(cl.from.r);
    T_ERR(fl_detach(m, (const void *)local), 0);
}

/* Core is fine after all of it. */
static void finish(struct fl_env *m)
{
    fl_cap ds;
    T_ERR(fl_ram_alloc(m, 4096, &ds), 0);
    T_ERR(fl_ram_free(m, ds), 0);
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
}

static void stuck_beside_healthy(void)
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);
    struct fl_env *m = t_env();

    /* A manager that never answers, and its client stuck on a fault. */
    struct t_child sm, sc;
    t_child_spawn(&sm, "stuck manager", stuck_manager_main);
    char token[128];
    t_child_line(&sm, token, sizeof(token));
    T_EQ(strlen(token), FL_TOKEN_LEN);
    t_child_spawn(&sc, "stuck client", t_client_main);
    t_child_send(&sc, "import %s", token);
    t_child_expect(&sc, "attached");
    t_child_send(&sc, "read %#x", 0x2000);
    char want[64];
    snprintf(want, sizeof(want), "(map address 0x2000) of pid %d (", (int)sc.pid);
    T_WAIT_FOR(t_core_log_line_has(core, "reflect READ fault", want, NULL),
               "the stuck client's fault");

    /* A thread with no fault handler anywhere. */
    struct t_child nh;
    t_child_spawn(&nh, "no-handler child", nohandler_main);
    char line[256];
    t_child_line(&nh, line, sizeof(line));
    long tid = 0;
    unsigned long long sid = 0;
    void *addr = NULL;
    T_EQ(sscanf(line, "%ld %llu %p", &tid, &sid, &addr), 3);
    T_ASSERT(tid > 0 && tid != nh.pid); /* a thread that is not the main one */
    char by[64], thr[96], at[64];
    snprintf(by, sizeof(by), "by pid %d (", (int)nh.pid);
    snprintf(thr, sizeof(thr), "thread %ld (session %llu): no fault handler", tid, sid);
    snprintf(at, sizeof(at), "READ fault at %p", addr);
    T_WAIT_FOR(t_core_log_line_has(core, at, by, thr, NULL),
               "core's log naming the handler-less thread");

    /* The healthy pair completes while the stuck one is stuck. */
    run_healthy_pair(m);
    run_nested(m);

    /* The stuck client is still stuck, the handler-less thread still halted. */
    t_child_silent(&sc);
    t_child_silent(&nh);
    char wchan[64];
    thread_wchan(nh.pid, (pid_t)tid, wchan, sizeof(wchan));
    if (wchan[0] && strcmp(wchan, "handle_userfault"))
        T_FAILF("the handler-less thread waits in %s, not in handle_userfault", wchan);
    /* The stuck client's main thread is the one that faulted. */
    thread_wchan(sc.pid, sc.pid, wchan, sizeof(wchan));
    if (wchan[0] && strcmp(wchan, "handle_userfault"))
        T_FAILF("the stuck client waits in %s, not in handle_userfault", wchan);
    /* Nothing was reflected for it: there is no map to queue it on. */
    char of[64];
    snprintf(of, sizeof(of), "of pid %d (", (int)nh.pid);
    T_ASSERT(!t_core_log_line_has(core, "reflect", of, NULL));

    kill(nh.pid, SIGKILL);
    T_EQ(t_wait(nh.pid), 128 + SIGKILL);
    kill(sc.pid, SIGKILL);
    T_EQ(t_wait(sc.pid), 128 + SIGKILL);
    t_child_send(&sm, "exit");
    T_EQ(t_wait(sm.pid), 0);

    finish(m);
}

/* A scenario with a manager of its own (this process) in a core of its own. */
static void alone(void (*scenario)(struct fl_env *m))
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);
    struct fl_env *m = t_env();
    scenario(m);
    finish(m);
}

static void healthy_pair(void)
{
    alone(run_healthy_pair);
}

static void nested(void)
{
    alone(run_nested);
}

T_CASES(healthy_pair, nested, stuck_beside_healthy)
