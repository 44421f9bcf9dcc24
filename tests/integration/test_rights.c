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

/* The commands of this test's clients beyond t_client_main's. */
static void client_commands(struct t_child *c, volatile char *p, const char *line)
{
    (void)p;
    if (!strcmp(line, "own segv")) {
        /* Outside every window: the program's handler, not ours. */
        static volatile uintptr_t outside = 0x1000; /* below mmap_min_addr */
        if (sigsetjmp(own_segv, 1) == 0) *(volatile int *)outside = 1;
        t_child_say(c, "own handler ran");
    } else {
        T_FAILF("%s: unknown command %s", c->name, line);
    }
}

/* The nth reflection of this kind has reached core's log. */
static void await_reflections(const char *kind, int n)
{
    char what[64];
    snprintf(what, sizeof(what), "reflect %s fault", kind);
    T_WAIT_FOR(t_core_log_count(core, what) >= n, what);
}

/* A manager (this process) with a managed dataspace whose page 0 shows the
 * template read-only, and two clients A and B that attached it. */
static struct fl_env *m;
static struct t_mm mm;
static fl_cap backing;
static volatile char *local;
static struct t_child a, b;

/* Attach 4 KiB of ds at `at` of rm with the rights (T_RO, T_W, T_X). */
static void attach(fl_cap rm, fl_cap ds, size_t off, uintptr_t at, int rights)
{
    t_attach_at(m, rm, ds, off, 0x1000, at, rights);
}

static void reattach(fl_cap rm, fl_cap ds, size_t off, uintptr_t at, int rights)
{
    T_ERR(fl_region_map_detach(m, rm, at), 0);
    attach(rm, ds, off, at, rights);
}

static void setup(void)
{
    /* The program's own SIGSEGV handler, installed before libfaultline's
     * (which chains to it), inherited by the clients. */
    struct sigaction sa = {.sa_handler = own_handler, .sa_flags = SA_NODEFER};
    sigaction(SIGSEGV, &sa, NULL);
    core = t_core_start(NULL);
    m = t_env();
    t_mm_create(&mm, m, MAP_SIZE, T_MM_HANDLER);
    local = t_ram(m, 16 * 4096, &backing);
    strcpy((char *)local, "template");
    memcpy((char *)local + 0x2000, code42, sizeof(code42));
    strcpy((char *)local + 0x3000, "nested");

    attach(mm.rm, backing, 0, 0x0, T_RO);
    t_client_extra = client_commands;
    t_child_spawn(&a, "client A", t_client_main);
    t_child_send(&a, "import %s", t_mm_export(&mm));
    t_child_expect(&a, "attached");
    t_child_spawn(&b, "client B", t_client_main);
    t_child_send(&b, "import %s", t_mm_export(&mm)); /* tokens are single-use */
    t_child_expect(&b, "attached");
}

static void teardown(void)
{
    t_child_send(&a, "exit");
    t_child_send(&b, "exit");
    T_EQ(t_wait(a.pid), 0);
    T_EQ(t_wait(b.pid), 0);
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
}

static void need_fetch_detection(void)
{
#if !defined(__x86_64__)
    t_skip("fetch detection is verified on x86-64 only");
#endif
}

static void write_faults(void)
{
    setup();
    /* Reading read-only memory is fine and faults nothing. */
    t_child_send(&a, "read 0");
    t_child_expect(&a, "read template");
    t_mm_expect_fault(&mm, FL_FAULT_NONE, 0);

    /* WRITE by the program: reflected, the writer waits. */
    t_child_send(&a, "write 0x10 A was here");
    t_expect_signal(m, mm.sigh);
    t_mm_expect_fault(&mm, FL_FAULT_WRITE, 0x10); /* the byte A writes */
    t_child_silent(&a);
    /* WRITE by the kernel in read(2): reflected too, the syscall waits. */
    t_child_send(&b, "sysread 0x100 hello");
    await_reflections("WRITE", 2);
    t_child_silent(&b);
    /* Unresolved, A stays at the head; nothing reached the dataspace. */
    t_mm_expect_fault(&mm, FL_FAULT_WRITE, 0x10); /* the byte A writes */
    T_EQ(local[0x10], 0);
    T_EQ(local[0x100], 0);
    t_child_silent(&a);

    /* Re-attached writable: both resume and complete their writes. */
    reattach(mm.rm, backing, 0, 0x0, T_W);
    t_child_expect(&a, "wrote");
    t_child_expect(&b, "sysread 5");
    T_ASSERT(!strcmp((const char *)local + 0x10, "A was here"));
    T_ASSERT(!strcmp((const char *)local + 0x100, "hello"));
    t_mm_expect_fault(&mm, FL_FAULT_NONE, 0);
    teardown();
}

/* The program's own SIGSEGV handler still gets its own faults. */
static void own_sigsegv_handler(void)
{
    setup();
    t_child_send(&a, "own segv");
    t_child_expect(&a, "own handler ran");
    teardown();
}

static void exec_faults(void)
{
    need_fetch_detection();
    setup();
    /* EXEC: a fetch from a non-executable page. */
    attach(mm.rm, backing, 0x2000, 0x2000, T_RO);
    t_child_send(&a, "exec 0x2000");
    await_reflections("EXEC", 1);
    t_mm_expect_fault(&mm, FL_FAULT_EXEC, 0x2000);
    t_child_silent(&a);
    /* Another fault queues behind it; the EXEC faulter stays at the head. */
    t_child_send(&b, "read 0x8000");
    await_reflections("READ", 1);
    t_mm_expect_fault(&mm, FL_FAULT_EXEC, 0x2000);
    t_child_silent(&a);
    t_child_silent(&b);
    reattach(mm.rm, backing, 0x2000, 0x2000, T_X);
    t_child_expect(&a, "exec 42");
    t_mm_expect_fault(&mm, FL_FAULT_READ, 0x8000);
    attach(mm.rm, backing, 0, 0x8000, T_RO);
    t_child_expect(&b, "read template");
    t_mm_expect_fault(&mm, FL_FAULT_NONE, 0);

    /* A fetch from a missing page is a missing-page (READ) fault. */
    t_child_send(&a, "exec 0x5000");
    await_reflections("READ", 2);
    t_mm_expect_fault(&mm, FL_FAULT_READ, 0x5000);
    attach(mm.rm, backing, 0x2000, 0x5000, T_X);
    t_child_expect(&a, "exec 42");
    teardown();
}

/* Narrowing: inner map N attached read-only, non-executable into rm; its own
 * attachment is writable and executable. */
static void rights_narrow_through_nesting(void)
{
#if !defined(__x86_64__)
    bool exec_tests = false; /* fetch detection is verified on x86-64 only */
#else
    bool exec_tests = true;
#endif
    setup();
    struct t_mm n;
    t_mm_create(&n, m, 0x10000, T_MM_HANDLER);
    attach(n.rm, backing, 0x3000, 0x0, T_W | T_X);
    attach(n.rm, backing, 0x2000, 0x1000, T_W | T_X);
    struct fl_attr outer = {.use_at = true, .at = 0x40000, .writeable = false};
    struct fl_range range;
    T_ERR(fl_region_map_attach(m, mm.rm, n.ds, &outer, &range), 0);

    t_child_send(&a, "read 0x40000");
    t_child_expect(&a, "read nested");
    t_child_send(&a, "write 0x40010 through");
    t_expect_signal(m, n.sigh);
    t_mm_expect_fault(&n, FL_FAULT_WRITE, 0x10);
    t_mm_expect_fault(&mm, FL_FAULT_NONE, 0);
    t_child_silent(&a);
    if (exec_tests) {
        t_child_send(&b, "exec 0x41000");
        await_reflections("EXEC", 1);
        t_mm_expect_fault(&n, FL_FAULT_WRITE, 0x10); /* A first, B behind it */
        t_mm_expect_fault(&mm, FL_FAULT_NONE, 0);
        t_child_silent(&b);
    }
    /* Fixing the outer attachment wakes nobody: the faulters wait on N. */
    T_ERR(fl_region_map_detach(m, mm.rm, 0x40000), 0);
    outer.writeable = outer.executable = true;
    T_ERR(fl_region_map_attach(m, mm.rm, n.ds, &outer, &range), 0);
    t_child_silent(&a);
    /* Attaching in N wakes its faulters; now the rights hold at every level. */
    reattach(n.rm, backing, 0x3000, 0x0, T_W | T_X);
    t_child_expect(&a, "wrote");
    T_ASSERT(!strcmp((const char *)local + 0x3010, "through"));
    if (exec_tests) {
        t_mm_expect_fault(&n, FL_FAULT_EXEC, 0x1000);
        reattach(n.rm, backing, 0x2000, 0x1000, T_W | T_X);
        t_child_expect(&b, "exec 42");
    }
    t_mm_expect_fault(&n, FL_FAULT_NONE, 0);
    teardown();
}

T_CASES(write_faults, own_sigsegv_handler, exec_faults, rights_narrow_through_nesting)
