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

/* Whether one line of core's log contains every one of the texts. */
static int log_line_has(const char *a, const char *b, const char *c)
{
    FILE *f = fopen(core->log, "r");
    if (!f) return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, a) && (!b || strstr(line, b)) && (!c || strstr(line, c));
    fclose(f);
    return found;
}

/* ---- pipes to a child, with deadlines ---- */

struct child {
    pid_t pid;
    struct t_pipe to, from; /* parent -> child, child -> parent */
    const char *name;
};

static void sendf(struct t_pipe *p, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    t_pipe_send(p, line);
}

/* One line from the child, which must come within the deadline. */
static void recv_line(struct child *c, char *buf, size_t len)
{
    long end = t_now_ms() + DEADLINE_MS;
    size_t i = 0;
    while (i + 1 < len) {
        struct pollfd pf = {.fd = c->from.r, .events = POLLIN};
        long left = end - t_now_ms();
        int r = poll(&pf, 1, left > 0 ? (int)left : 0);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) {
            fprintf(stderr, "%s: no answer within %d ms\n", c->name, DEADLINE_MS);
            exit(T_FAIL);
        }
        char ch;
        ssize_t n = read(c->from.r, &ch, 1);
        if (n <= 0) {
            fprintf(stderr, "%s: died (pipe closed)\n", c->name);
            exit(T_FAIL);
        }
        if (ch == '\n') break;
        buf[i++] = ch;
    }
    buf[i] = 0;
}

static void expect_line(struct child *c, const char *want)
{
    char line[256];
    recv_line(c, line, sizeof(line));
    if (strcmp(line, want)) {
        fprintf(stderr, "%s said \"%s\", expected \"%s\"\n", c->name, line, want);
        exit(T_FAIL);
    }
}

/* The child has said nothing more and is still alive (it is halted). */
static void silent_and_alive(struct child *c)
{
    struct pollfd pf = {.fd = c->from.r, .events = POLLIN};
    int r = poll(&pf, 1, 0);
    if (r != 0) {
        char line[256] = "";
        if (pf.revents & POLLIN) recv_line(c, line, sizeof(line));
        fprintf(stderr, "%s should be halted but %s \"%s\"\n", c->name,
                pf.revents & POLLIN ? "said" : "hung up", line);
        exit(T_FAIL);
    }
    T_EQ(waitpid(c->pid, NULL, WNOHANG), 0);
}

/* Where the kernel has the thread waiting: a uffd-halted thread waits in
 * handle_userfault. Empty if the kernel does not say. */
static void thread_wchan(pid_t pid, pid_t tid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/wchan", (int)pid, (int)tid);
    buf[0] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    if (!strcmp(buf, "0")) buf[0] = 0;
}

static void spawn(struct child *c, const char *name, int (*fn)(void *))
{
    c->name = name;
    t_pipe_open(&c->to);
    t_pipe_open(&c->from);
    c->pid = t_spawn(fn, c);
    close(c->to.r);
    close(c->from.w);
}

/* ---- the generic client: obeys line commands from the parent ---- */

static int client_main(void *arg)
{
    struct child *c = arg;
    close(c->to.w);
    close(c->from.r);
    struct fl_env *env = t_env();
    fl_cap ds = FL_CAP_INVALID;
    volatile char *p = NULL;
    char line[256];
    for (;;) {
        T_EQ(t_pipe_recv(&c->to, line, sizeof(line)), 0);
        if (!strncmp(line, "import ", 7)) {
            T_ERR(fl_cap_import(env, line + 7, &ds), 0);
            int err = -1;
            p = fl_attach(env, ds, &err);
            T_ERR(err, 0);
            T_ASSERT(p != NULL);
            t_pipe_send(&c->from, "attached");
        } else if (!strncmp(line, "read ", 5)) {
            /* The first access is a read of the named byte. */
            size_t off = strtoul(line + 5, NULL, 0);
            char got[80];
            size_t i = 0;
            for (; i < 64; i++) {
                got[i] = p[off + i];
                if (!got[i]) break;
            }
            got[i] = 0;
            sendf(&c->from, "read %s", got);
        } else if (!strncmp(line, "write ", 6)) {
            /* The first access is a write of the named byte. */
            char *text;
            size_t off = strtoul(line + 6, &text, 0);
            text++;
            size_t n = strlen(text);
            for (size_t i = 0; i <= n; i++) p[off + i] = text[i];
            t_pipe_send(&c->from, "wrote");
        } else if (!strcmp(line, "exit")) {
            break;
        } else {
            fprintf(stderr, "client: unknown command %s\n", line);
            return 1;
        }
    }
    fl_env_close(env);
    return 0;
}

/* ---- the manager that never answers ---- */

static int stuck_manager_main(void *arg)
{
    struct child *c = arg;
    close(c->to.w);
    close(c->from.r);
    struct fl_env *env = t_env();
    fl_cap rm, sigh, ds;
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_rm_create(env, MAP_SIZE, &rm), 0);
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(env, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(env, rm, &ds), 0);
    T_ERR(fl_cap_export(env, ds, token), 0);
    t_pipe_send(&c->from, token);
    /* Never calls fault(), never attaches: waits to be told to go. */
    char line[64];
    if (t_pipe_recv(&c->to, line, sizeof(line)) == 0) T_ASSERT(!strcmp(line, "exit"));
    fl_env_close(env);
    return 0;
}

/* ---- a thread touching its own window, where nothing is attached ---- */

struct nohandler {
    struct child *c;
    struct fl_env *env;
};

static void *nohandler_thread(void *arg)
{
    struct nohandler *nh = arg;
    struct fl_session_info info;
    T_ERR(fl_env_session_info(nh->env, &info), 0);
    volatile char *base = fl_env_window_base(nh->env);
    size_t size = fl_env_window_size(nh->env);
    sendf(&nh->c->from, "%ld %llu %p", (long)syscall(SYS_gettid),
          (unsigned long long)info.session_id, (void *)(base + size / 2));
    char v = base[size / 2 + 8];
    sendf(&nh->c->from, "resumed %d", v);
    return NULL;
}

static int nohandler_main(void *arg)
{
    struct child *c = arg;
    close(c->to.w);
    close(c->from.r);
    struct nohandler nh = {c, t_env()};
    pthread_t t;
    T_ASSERT(pthread_create(&t, NULL, nohandler_thread, &nh) == 0);
    pthread_join(t, NULL);
    return 0;
}

/* ---- the manager's helpers ---- */

static void expect_fault(struct fl_env *env, fl_cap rm, enum fl_fault_type type, uintptr_t addr)
{
    struct fl_fault f = {(enum fl_fault_type) - 1, 0xdead};
    T_ERR(fl_region_map_fault(env, rm, &f), 0);
    if (f.type != type || f.addr != addr) {
        fprintf(stderr, "fault() = {%s, %#lx}, expected {%s, %#lx}\n", fl_fault_type_name(f.type),
                (unsigned long)f.addr, fl_fault_type_name(type), (unsigned long)addr);
        exit(T_FAIL);
    }
}

static void expect_signal(struct fl_env *env, fl_cap sigh)
{
    long n = fl_signal_wait(env, sigh, DEADLINE_MS);
    if (n <= 0) {
        fprintf(stderr, "no fault signal within %d ms (%ld)\n", DEADLINE_MS, n);
        exit(T_FAIL);
    }
}

/* After a detach or free: the client's read must fault (a signal), not
 * return data from a mapping that should be gone. */
static void signal_not_line(struct fl_env *env, fl_cap sigh, struct child *c, const char *what,
                            int round)
{
    int sfd = fl_signal_fd(env, sigh);
    T_ASSERT(sfd >= 0);
    struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = c->from.r, .events = POLLIN}};
    int r;
    do r = poll(pf, 2, DEADLINE_MS);
    while (r < 0 && errno == EINTR);
    if (r == 0) {
        fprintf(stderr, "%s round %d: neither a fault signal nor an answer within %d ms\n", what,
                round, DEADLINE_MS);
        exit(T_FAIL);
    }
    if (pf[1].revents) {
        char line[256];
        recv_line(c, line, sizeof(line));
        fprintf(stderr,
                "%s round %d: %s returned, yet the client's next read did not fault: it got "
                "\"%s\" from a mapping that should be gone (it must be revoked everywhere "
                "before %s returns)\n",
                what, round, what, line, what);
        exit(T_FAIL);
    }
    T_ASSERT(fl_signal_wait(env, sigh, 0) > 0);
}

static void expect_no_signal(struct fl_env *env, fl_cap sigh)
{
    T_EQ(fl_signal_wait(env, sigh, 0), 0);
}

/* Attach [off, off+size) of ds at `at` of rm, writeable. */
static void attach_at(struct fl_env *env, fl_cap rm, fl_cap ds, size_t off, size_t size,
                      uintptr_t at)
{
    struct fl_attr a = {.size = size, .offset = off, .use_at = true, .at = at, .writeable = true};
    struct fl_range r = {0, 0};
    T_ERR(fl_region_map_attach(env, rm, ds, &a, &r), 0);
    T_EQ(r.start, at);
    T_EQ(r.num_bytes, size);
}

/* ---- the scenarios ---- */

#define READ_AT  0x3000u
#define WRITE_AT 0x20000u

static void healthy_pair(struct fl_env *m)
{
    fl_cap rm, sigh, mds, backing;
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_rm_create(m, MAP_SIZE, &rm), 0);
    T_ERR(fl_signal_context_create(m, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(m, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(m, rm, &mds), 0);
    size_t size = 0;
    T_ERR(fl_dataspace_size(m, mds, &size), 0);
    T_EQ(size, MAP_SIZE);
    T_ERR(fl_cap_export(m, mds, token), 0);
    /* Nothing queued yet. */
    expect_fault(m, rm, FL_FAULT_NONE, 0);
    expect_no_signal(m, sigh);

    /* The backing store, filled through the manager's own attachment. */
    T_ERR(fl_ram_alloc(m, 16 * 4096, &backing), 0);
    int err = -1;
    volatile char *local = fl_attach(m, backing, &err);
    T_ERR(err, 0);
    strcpy((char *)local, "manager's page for 0x3000");
    strcpy((char *)local + 0x2000, "second backing of 0x3000");

    struct child cl;
    spawn(&cl, "healthy client", client_main);
    sendf(&cl.to, "import %s", token);
    expect_line(&cl, "attached");
    /* Attaching faults nothing. */
    expect_fault(m, rm, FL_FAULT_NONE, 0);
    expect_no_signal(m, sigh);

    /* READ: reflected, relative to the managed map; the client waits. */
    sendf(&cl.to, "read %#x", READ_AT);
    expect_signal(m, sigh);
    expect_fault(m, rm, FL_FAULT_READ, READ_AT);
    silent_and_alive(&cl);
    /* Unresolved, it stays at the head. */
    expect_fault(m, rm, FL_FAULT_READ, READ_AT);
    silent_and_alive(&cl);

    /* Attaching elsewhere does not resolve it. */
    attach_at(m, rm, backing, 0x4000, 0x1000, 0x80000);
    expect_fault(m, rm, FL_FAULT_READ, READ_AT);
    silent_and_alive(&cl);

    /* The answer: the client resumes and reads the manager's bytes. */
    attach_at(m, rm, backing, 0, 0x1000, READ_AT);
    expect_line(&cl, "read manager's page for 0x3000");
    expect_fault(m, rm, FL_FAULT_NONE, 0);

    /* WRITE. */
    sendf(&cl.to, "write %#x client wrote this", WRITE_AT);
    expect_signal(m, sigh);
    expect_fault(m, rm, FL_FAULT_WRITE, WRITE_AT);
    silent_and_alive(&cl);
    attach_at(m, rm, backing, 0x1000, 0x1000, WRITE_AT);
    expect_line(&cl, "wrote");
    expect_fault(m, rm, FL_FAULT_NONE, 0);

    /* Shared, not copied: both ways. */
    if (strcmp((const char *)local + 0x1000, "client wrote this")) {
        fprintf(stderr, "the manager's view of the backing: \"%.40s\"\n",
                (const char *)local + 0x1000);
        exit(T_FAIL);
    }
    strcpy((char *)local + 0x1000 + 200, "manager wrote back");
    sendf(&cl.to, "read %#x", WRITE_AT + 200);
    expect_line(&cl, "read manager wrote back");
    /* Touching mapped memory again faults nothing. */
    sendf(&cl.to, "read %#x", READ_AT + 10);
    expect_line(&cl, "read page for 0x3000");
    expect_no_signal(m, sigh);

    /* Detach revokes before it returns (Genode: every mapping of the range is
     * gone from every address space when detach returns): the client's next
     * touch is reflected anew, never served from the old mapping. Then a
     * different backing attached there is what the client reads. Repeated,
     * as the client's agent races the manager's next step. */
    for (int round = 0; round < 20; round++) {
        T_ERR(fl_region_map_detach(m, rm, READ_AT + 100), 0);
        sendf(&cl.to, "read %#x", READ_AT);
        signal_not_line(m, sigh, &cl, "detach", round);
        expect_fault(m, rm, FL_FAULT_READ, READ_AT);
        silent_and_alive(&cl);
        attach_at(m, rm, backing, round % 2 ? 0 : 0x2000, 0x1000, READ_AT);
        expect_line(&cl,
                    round % 2 ? "read manager's page for 0x3000" : "read second backing of 0x3000");
        expect_fault(m, rm, FL_FAULT_NONE, 0);
    }

    /* Freeing the backing revokes it everywhere before free returns; its
     * region stays reserved, so the client's next touch is reflected. */
    for (int round = 0; round < 10; round++) {
        fl_cap tmp;
        T_ERR(fl_ram_alloc(m, 4096, &tmp), 0);
        volatile char *t = fl_attach(m, tmp, &err);
        T_ERR(err, 0);
        snprintf((char *)t, 64, "short-lived %d", round);
        T_ERR(fl_detach(m, (const void *)t), 0);
        T_ERR(fl_region_map_detach(m, rm, READ_AT), 0);
        attach_at(m, rm, tmp, 0, 0x1000, READ_AT);
        char want[64];
        snprintf(want, sizeof(want), "read short-lived %d", round);
        sendf(&cl.to, "read %#x", READ_AT);
        expect_line(&cl, want);
        T_ERR(fl_ram_free(m, tmp), 0);
        sendf(&cl.to, "read %#x", READ_AT);
        signal_not_line(m, sigh, &cl, "free", round);
        expect_fault(m, rm, FL_FAULT_READ, READ_AT);
        /* The reserved region blocks the range until detached. */
        struct fl_attr a = {.size = 0x1000, .use_at = true, .at = READ_AT, .writeable = true};
        T_ERR(fl_region_map_attach(m, rm, backing, &a, NULL), -FL_E_REGION_CONFLICT);
        T_ERR(fl_region_map_detach(m, rm, READ_AT), 0);
        expect_fault(m, rm, FL_FAULT_READ, READ_AT); /* detach wakes nobody */
        silent_and_alive(&cl);
        attach_at(m, rm, backing, 0, 0x1000, READ_AT);
        expect_line(&cl, "read manager's page for 0x3000");
    }

    sendf(&cl.to, "exit");
    T_EQ(t_wait(cl.pid), 0);
    close(cl.to.w);
    close(cl.from.r);
    T_ERR(fl_detach(m, (const void *)local), 0);
    T_ERR(fl_rm_destroy(m, rm), 0);
    T_ERR(fl_ram_free(m, backing), 0);
    T_ERR(fl_signal_context_destroy(m, sigh), 0);
}

static void nested(struct fl_env *m)
{
    fl_cap a, b, sa, sb, ads, bds, backing;
    T_ERR(fl_rm_create(m, MAP_SIZE, &a), 0);
    T_ERR(fl_rm_create(m, MAP_SIZE / 4, &b), 0);
    T_ERR(fl_signal_context_create(m, &sa), 0);
    T_ERR(fl_signal_context_create(m, &sb), 0);
    T_ERR(fl_region_map_fault_handler(m, a, sa), 0);
    T_ERR(fl_region_map_fault_handler(m, b, sb), 0);
    T_ERR(fl_region_map_dataspace(m, a, &ads), 0);
    T_ERR(fl_region_map_dataspace(m, b, &bds), 0);
    /* B inside A at 0x40000. */
    attach_at(m, a, bds, 0, MAP_SIZE / 4, 0x40000);

    T_ERR(fl_ram_alloc(m, 4 * 4096, &backing), 0);
    int err = -1;
    volatile char *local = fl_attach(m, backing, &err);
    T_ERR(err, 0);
    strcpy((char *)local, "backed in B before");
    strcpy((char *)local + 0x1000, "backed in B on demand");
    strcpy((char *)local + 0x2000, "backed in A on demand");
    /* Backing in B before the client comes. */
    attach_at(m, b, backing, 0, 0x1000, 0x2000);

    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(m, ads, token), 0);
    struct child cl;
    spawn(&cl, "nested client", client_main);
    sendf(&cl.to, "import %s", token);
    expect_line(&cl, "attached");

    /* Through both levels, with no fault to reflect. */
    sendf(&cl.to, "read %#x", 0x40000 + 0x2000);
    expect_line(&cl, "read backed in B before");
    expect_no_signal(m, sa);
    expect_no_signal(m, sb);

    /* Unbacked in B: reflected to B only, in B's coordinates. */
    sendf(&cl.to, "read %#x", 0x40000 + 0x5000);
    expect_signal(m, sb);
    expect_fault(m, b, FL_FAULT_READ, 0x5000);
    expect_fault(m, a, FL_FAULT_NONE, 0);
    expect_no_signal(m, sa);
    silent_and_alive(&cl);
    attach_at(m, b, backing, 0x1000, 0x1000, 0x5000);
    expect_line(&cl, "read backed in B on demand");
    expect_fault(m, b, FL_FAULT_NONE, 0);

    /* Unbacked in A, outside B: reflected to A only. */
    sendf(&cl.to, "write %#x outer", 0x10000);
    expect_signal(m, sa);
    expect_fault(m, a, FL_FAULT_WRITE, 0x10000);
    expect_fault(m, b, FL_FAULT_NONE, 0);
    expect_no_signal(m, sb);
    silent_and_alive(&cl);
    attach_at(m, a, backing, 0x2000, 0x1000, 0x10000);
    expect_line(&cl, "wrote");
    T_ASSERT(!strcmp((const char *)local + 0x2000, "outer"));

    /* A write through both levels lands in the backing. */
    sendf(&cl.to, "write %#x nested write", 0x40000 + 0x2000 + 64);
    expect_line(&cl, "wrote");
    T_ASSERT(!strcmp((const char *)local + 64, "nested write"));

    sendf(&cl.to, "exit");
    T_EQ(t_wait(cl.pid), 0);
    close(cl.to.w);
    close(cl.from.r);
    T_ERR(fl_detach(m, (const void *)local), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);
    struct fl_env *m = t_env();

    /* A manager that never answers, and its client stuck on a fault. */
    struct child sm, sc;
    spawn(&sm, "stuck manager", stuck_manager_main);
    char token[128];
    recv_line(&sm, token, sizeof(token));
    T_EQ(strlen(token), FL_TOKEN_LEN);
    spawn(&sc, "stuck client", client_main);
    sendf(&sc.to, "import %s", token);
    expect_line(&sc, "attached");
    sendf(&sc.to, "read %#x", 0x2000);
    char want[64];
    snprintf(want, sizeof(want), "(map address 0x2000) of pid %d (", (int)sc.pid);
    T_WAIT_FOR(log_line_has("reflect READ fault", want, NULL), "the stuck client's fault");

    /* A thread with no fault handler anywhere. */
    struct child nh;
    spawn(&nh, "no-handler child", nohandler_main);
    char line[256];
    recv_line(&nh, line, sizeof(line));
    long tid = 0;
    unsigned long long sid = 0;
    void *addr = NULL;
    T_EQ(sscanf(line, "%ld %llu %p", &tid, &sid, &addr), 3);
    T_ASSERT(tid > 0 && tid != nh.pid); /* a thread that is not the main one */
    char by[64], thr[96], at[64];
    snprintf(by, sizeof(by), "by pid %d (", (int)nh.pid);
    snprintf(thr, sizeof(thr), "thread %ld (session %llu): no fault handler", tid, sid);
    snprintf(at, sizeof(at), "READ fault at %p", addr);
    T_WAIT_FOR(log_line_has(at, by, thr), "core's log naming the handler-less thread");

    /* The healthy pair completes while the stuck one is stuck. */
    healthy_pair(m);
    nested(m);

    /* The stuck client is still stuck, the handler-less thread still halted. */
    silent_and_alive(&sc);
    silent_and_alive(&nh);
    char wchan[64];
    thread_wchan(nh.pid, (pid_t)tid, wchan, sizeof(wchan));
    if (wchan[0] && strcmp(wchan, "handle_userfault")) {
        fprintf(stderr, "the handler-less thread waits in %s, not in handle_userfault\n", wchan);
        return T_FAIL;
    }
    /* The stuck client's main thread is the one that faulted. */
    thread_wchan(sc.pid, sc.pid, wchan, sizeof(wchan));
    if (wchan[0] && strcmp(wchan, "handle_userfault")) {
        fprintf(stderr, "the stuck client waits in %s, not in handle_userfault\n", wchan);
        return T_FAIL;
    }
    /* Nothing was reflected for it: there is no map to queue it on. */
    char of[64];
    snprintf(of, sizeof(of), "of pid %d (", (int)nh.pid);
    T_ASSERT(!log_line_has("reflect", of, NULL));

    kill(nh.pid, SIGKILL);
    T_EQ(t_wait(nh.pid), 128 + SIGKILL);
    kill(sc.pid, SIGKILL);
    T_EQ(t_wait(sc.pid), 128 + SIGKILL);
    sendf(&sm.to, "exit");
    T_EQ(t_wait(sm.pid), 0);

    /* Core is fine after all of it. */
    fl_cap ds;
    T_ERR(fl_ram_alloc(m, 4096, &ds), 0);
    T_ERR(fl_ram_free(m, ds), 0);
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
