/*
 * Access rights between real processes (Genode's rm_fault: write faults on
 * read-only attachments, EXEC faults, rights narrowed through nesting). This
 * process is the manager; clients import its managed dataspace and obey line
 * commands.
 *
 *  - A write to a read-only attachment is reflected as a WRITE fault and the
 *    writer waits (uffd write-protect, not SIGSEGV) -- also when the writer is
 *    the kernel in read(2). Unresolved, the faulter stays at the head of the
 *    queue. Re-attaching the page writable resumes both; their writes land in
 *    the backing dataspace.
 *  - An instruction fetch from a non-executable attachment is an EXEC fault
 *    (libfaultline's SIGSEGV handler); it stays at the head of the queue while
 *    other faults queue behind it; re-attaching executable resumes it. A fetch
 *    from a missing page is a READ (missing-page) fault.
 *  - Rights narrow at every level: a managed map attached read-only and
 *    non-executable makes writes and fetches inside it violations, reflected
 *    to the deepest map (where the RAM is), not to the outer one; fixing the
 *    outer attachment alone wakes nobody (Genode wakes the faulters of the map
 *    attached into), re-attaching in the inner map then completes the write.
 *  - Another signal handler of the program still gets its own SIGSEGVs.
 */
#include "harness.h"

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAP_SIZE (1u << 20)

static struct t_core *core;

/* mov eax, 42; ret */
static const unsigned char code42[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3};

static sigjmp_buf own_segv;
static void own_handler(int sig)
{
    (void)sig;
    siglongjmp(own_segv, 1);
}

static int client_main(struct t_child *c)
{
    struct fl_env *env = t_env();
    volatile char *p = NULL;
    char line[256];
    for (;;) {
        t_child_command(c, line, sizeof(line));
        if (!strncmp(line, "import ", 7)) {
            /* Writable and executable: the manager's rights decide. */
            fl_cap ds;
            T_ERR(fl_cap_import(env, line + 7, &ds), 0);
            struct fl_attr at = {.writeable = true, .executable = true};
            struct fl_range r;
            T_ERR(fl_region_map_attach(env, fl_env_address_space(env), ds, &at, &r), 0);
            p = (volatile char *)r.start;
            t_child_say(c, "attached");
        } else if (!strncmp(line, "read ", 5)) {
            size_t off = strtoul(line + 5, NULL, 0);
            char got[80];
            size_t i = 0;
            for (; i < 64 && (got[i] = p[off + i]); i++) continue;
            got[i] = 0;
            t_child_say(c, "read %s", got);
        } else if (!strncmp(line, "write ", 6)) {
            char *text;
            size_t off = strtoul(line + 6, &text, 0);
            text++;
            for (size_t i = 0; i <= strlen(text); i++) p[off + i] = text[i];
            t_child_say(c, "wrote");
        } else if (!strncmp(line, "sysread ", 8)) {
            /* The kernel writes into the page: read(2) from a pipe. */
            char *text;
            size_t off = strtoul(line + 8, &text, 0);
            text++;
            int fds[2];
            T_ASSERT(pipe(fds) == 0);
            T_EQ(write(fds[1], text, strlen(text) + 1), (long)strlen(text) + 1);
            ssize_t n = read(fds[0], (char *)p + off, 64);
            close(fds[0]);
            close(fds[1]);
            t_child_say(c, "sysread %zd", n);
        } else if (!strncmp(line, "exec ", 5)) {
            size_t off = strtoul(line + 5, NULL, 0);
            int (*fn)(void) = (int (*)(void))(uintptr_t)(p + off);
            t_child_say(c, "exec %d", fn());
        } else if (!strcmp(line, "own segv")) {
            /* Outside every window: the program's handler, not ours. */
            static volatile uintptr_t outside = 0x1000; /* below mmap_min_addr */
            if (sigsetjmp(own_segv, 1) == 0) *(volatile int *)outside = 1;
            t_child_say(c, "own handler ran");
        } else if (!strcmp(line, "exit")) {
            break;
        }
    }
    fl_env_close(env);
    return 0;
}

static void expect_fault(struct fl_env *m, fl_cap rm, enum fl_fault_type type, uintptr_t addr)
{
    struct fl_fault f = {(enum fl_fault_type) - 1, 0xdead};
    T_ERR(fl_region_map_fault(m, rm, &f), 0);
    if (f.type != type || f.addr != addr) {
        fprintf(stderr, "fault() = {%s, %#lx}, expected {%s, %#lx}\n", fl_fault_type_name(f.type),
                (unsigned long)f.addr, fl_fault_type_name(type), (unsigned long)addr);
        exit(T_FAIL);
    }
}

static void expect_signal(struct fl_env *m, fl_cap sigh)
{
    long n = fl_signal_wait(m, sigh, T_WAIT_MS);
    if (n <= 0) {
        fprintf(stderr, "no fault signal within %d ms (%ld)\n", T_WAIT_MS, n);
        exit(T_FAIL);
    }
}

static void attach(struct fl_env *m, fl_cap rm, fl_cap ds, size_t off, uintptr_t at, bool w, bool x)
{
    struct fl_attr a = {
        .size = 0x1000, .offset = off, .use_at = true, .at = at, .writeable = w, .executable = x};
    struct fl_range r = {0, 0};
    T_ERR(fl_region_map_attach(m, rm, ds, &a, &r), 0);
    T_EQ(r.start, at);
}

static void reattach(struct fl_env *m, fl_cap rm, fl_cap ds, size_t off, uintptr_t at, bool w,
                     bool x)
{
    T_ERR(fl_region_map_detach(m, rm, at), 0);
    attach(m, rm, ds, off, at, w, x);
}

/* The nth reflection of this kind has reached core's log. */
static void await_reflections(const char *kind, int n)
{
    char what[64];
    snprintf(what, sizeof(what), "reflect %s fault", kind);
    T_WAIT_FOR(t_core_log_count(core, what) >= n, what);
}

int main(void)
{
#if !defined(__x86_64__)
    bool exec_tests = false; /* fetch detection is verified on x86-64 only */
#else
    bool exec_tests = true;
#endif
    /* The program's own SIGSEGV handler, installed before libfaultline's
     * (which chains to it), inherited by the clients. */
    struct sigaction sa = {.sa_handler = own_handler, .sa_flags = SA_NODEFER};
    sigaction(SIGSEGV, &sa, NULL);
    core = t_core_start(NULL);
    struct fl_env *m = t_env();
    fl_cap rm, sigh, mds, backing;
    T_ERR(fl_rm_create(m, MAP_SIZE, &rm), 0);
    T_ERR(fl_signal_context_create(m, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(m, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(m, rm, &mds), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(m, mds, token), 0);

    T_ERR(fl_ram_alloc(m, 16 * 4096, &backing), 0);
    int err = -1;
    volatile char *local = fl_attach(m, backing, &err);
    T_ERR(err, 0);
    strcpy((char *)local, "template");
    memcpy((char *)local + 0x2000, code42, sizeof(code42));
    strcpy((char *)local + 0x3000, "nested");

    attach(m, rm, backing, 0, 0x0, false, false);
    struct t_child a, b;
    t_child_spawn(&a, "client A", client_main);
    t_child_send(&a, "import %s", token);
    t_child_expect(&a, "attached");
    t_child_spawn(&b, "client B", client_main);
    T_ERR(fl_cap_export(m, mds, token), 0); /* tokens are single-use */
    t_child_send(&b, "import %s", token);
    t_child_expect(&b, "attached");

    /* Reading read-only memory is fine and faults nothing. */
    t_child_send(&a, "read 0");
    t_child_expect(&a, "read template");
    expect_fault(m, rm, FL_FAULT_NONE, 0);

    /* WRITE by the program: reflected, the writer waits. */
    t_child_send(&a, "write 0x10 A was here");
    expect_signal(m, sigh);
    expect_fault(m, rm, FL_FAULT_WRITE, 0x0);
    t_child_silent(&a);
    /* WRITE by the kernel in read(2): reflected too, the syscall waits. */
    t_child_send(&b, "sysread 0x100 hello");
    await_reflections("WRITE", 2);
    t_child_silent(&b);
    /* Unresolved, A stays at the head; nothing reached the dataspace. */
    expect_fault(m, rm, FL_FAULT_WRITE, 0x0);
    T_EQ(local[0x10], 0);
    T_EQ(local[0x100], 0);
    t_child_silent(&a);

    /* Re-attached writable: both resume and complete their writes. */
    reattach(m, rm, backing, 0, 0x0, true, false);
    t_child_expect(&a, "wrote");
    t_child_expect(&b, "sysread 6");
    T_ASSERT(!strcmp((const char *)local + 0x10, "A was here"));
    T_ASSERT(!strcmp((const char *)local + 0x100, "hello"));
    expect_fault(m, rm, FL_FAULT_NONE, 0);

    /* The program's own SIGSEGV handler still gets its own faults. */
    t_child_send(&a, "own segv");
    t_child_expect(&a, "own handler ran");

    if (exec_tests) {
        /* EXEC: a fetch from a non-executable page. */
        attach(m, rm, backing, 0x2000, 0x2000, false, false);
        t_child_send(&a, "exec 0x2000");
        await_reflections("EXEC", 1);
        expect_fault(m, rm, FL_FAULT_EXEC, 0x2000);
        t_child_silent(&a);
        /* Another fault queues behind it; the EXEC faulter stays at the head. */
        t_child_send(&b, "read 0x8000");
        await_reflections("READ", 1);
        expect_fault(m, rm, FL_FAULT_EXEC, 0x2000);
        t_child_silent(&a);
        t_child_silent(&b);
        reattach(m, rm, backing, 0x2000, 0x2000, false, true);
        t_child_expect(&a, "exec 42");
        expect_fault(m, rm, FL_FAULT_READ, 0x8000);
        attach(m, rm, backing, 0, 0x8000, false, false);
        t_child_expect(&b, "read template");
        expect_fault(m, rm, FL_FAULT_NONE, 0);

        /* A fetch from a missing page is a missing-page (READ) fault. */
        t_child_send(&a, "exec 0x5000");
        await_reflections("READ", 2);
        expect_fault(m, rm, FL_FAULT_READ, 0x5000);
        attach(m, rm, backing, 0x2000, 0x5000, false, true);
        t_child_expect(&a, "exec 42");
    }

    /* Narrowing: inner map N attached read-only, non-executable into rm; its
     * own attachment is writable and executable. */
    fl_cap nrm, nsig, nds;
    T_ERR(fl_rm_create(m, 0x10000, &nrm), 0);
    T_ERR(fl_signal_context_create(m, &nsig), 0);
    T_ERR(fl_region_map_fault_handler(m, nrm, nsig), 0);
    T_ERR(fl_region_map_dataspace(m, nrm, &nds), 0);
    attach(m, nrm, backing, 0x3000, 0x0, true, true);
    attach(m, nrm, backing, 0x2000, 0x1000, true, true);
    struct fl_attr outer = {.use_at = true, .at = 0x40000, .writeable = false};
    struct fl_range range;
    T_ERR(fl_region_map_attach(m, rm, nds, &outer, &range), 0);

    t_child_send(&a, "read 0x40000");
    t_child_expect(&a, "read nested");
    t_child_send(&a, "write 0x40010 through");
    expect_signal(m, nsig);
    expect_fault(m, nrm, FL_FAULT_WRITE, 0x0);
    expect_fault(m, rm, FL_FAULT_NONE, 0);
    t_child_silent(&a);
    if (exec_tests) {
        t_child_send(&b, "exec 0x41000");
        await_reflections("EXEC", 2);
        expect_fault(m, nrm, FL_FAULT_WRITE, 0x0); /* A first, B behind it */
        expect_fault(m, rm, FL_FAULT_NONE, 0);
        t_child_silent(&b);
    }
    /* Fixing the outer attachment wakes nobody: the faulters wait on N. */
    T_ERR(fl_region_map_detach(m, rm, 0x40000), 0);
    outer.writeable = outer.executable = true;
    T_ERR(fl_region_map_attach(m, rm, nds, &outer, &range), 0);
    t_child_silent(&a);
    /* Attaching in N wakes its faulters; now the rights hold at every level. */
    reattach(m, nrm, backing, 0x3000, 0x0, true, true);
    t_child_expect(&a, "wrote");
    T_ASSERT(!strcmp((const char *)local + 0x3010, "through"));
    if (exec_tests) {
        expect_fault(m, nrm, FL_FAULT_EXEC, 0x1000);
        reattach(m, nrm, backing, 0x2000, 0x1000, true, true);
        t_child_expect(&b, "exec 42");
    }
    expect_fault(m, nrm, FL_FAULT_NONE, 0);

    t_child_send(&a, "exit");
    t_child_send(&b, "exit");
    T_EQ(t_wait(a.pid), 0);
    T_EQ(t_wait(b.pid), 0);
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
