/*
 * rm-fault: a port of Genode's region-manager fault test
 * (repos/base/src/test/rm_fault/main.cc), the test Genode skips on Linux
 * because base-linux cannot manipulate another process's address space.
 *
 * The program starts itself as its child (Genode's test tells the roles
 * apart by its RAM quota; here the child finds $FAULTLINE_PD_TOKEN). The
 * parent creates the child's PD session and installs a fault handler on the
 * child's address space before the child runs; every fault of the child is
 * reflected to it, and it answers by attaching into the child's address
 * space:
 *
 *  1. READ faults: the child reads an unattached address; the parent attaches
 *     RAM with READ_TEST in it, waits until the child incremented it, and
 *     detaches it again -- four rounds.
 *  2. WRITE faults on a ROM dataspace: the parent attaches the ROM module
 *     "binary" (Genode's ld.lib.so) writeable at the same address. The child
 *     reads it and tries to modify it: a ROM is read-only whatever the
 *     attachment asks, so that is a WRITE fault ("got write fault on ... ROM
 *     (binary)"); had the write gone through, the child would say "could
 *     modify ROM". The parent then attaches RAM read-only: another WRITE fault
 *     ("... read-only attached RAM"), and finally RAM writeable, and the
 *     child's write completes.
 *  3. EXEC faults: a child thread writes code (nop, nop, ud2) to that RAM,
 *     attached non-executable, and jumps to it: an EXEC fault at exactly that
 *     address. Another thread runs on a stack in the child's "stack area" --
 *     as on Genode, a managed dataspace of its own, with its own fault handler
 *     -- and executes a word on its stack: an EXEC fault reflected to the
 *     stack area's map. Both threads stay halted, as on Genode.
 *
 * The config ROM module ("config", <config executable_fault_test="no"/> skips
 * step 3) is read by both, as Genode's Attached_rom_dataspace: two sessions,
 * the same module. Core serves the modules from --rom-dir (rm-fault.scenario:
 * examples/rm-fault/rom).
 *
 * Differences from Genode's test: the child's stack area is an ordinary
 * managed dataspace the parent creates (Linux gives threads their stacks
 * elsewhere), the exec thread's stack is placed there explicitly, and the
 * parent waits for the child process to end after the test is done.
 */
#include <faultline/faultline.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef uintptr_t addr_t;

enum {
    MANAGED_ADDR = 0x18000000, /* in the child's window */
    STOP_TEST = 0xdead,
    READ_TEST = 0x12345,
    WRITE_TEST = READ_TEST - 1,
    EXEC_TEST = WRITE_TEST - 1,
    SHUTDOWN = EXEC_TEST - 1
};

/* The child's stack area: a managed dataspace at STACK_AREA of its window;
 * the exec thread's stack is RAM in it, attached read-write, not executable. */
#define STACK_AREA      0x30000000u
#define STACK_AREA_SIZE (1u << 20)
#define STACK_OFF       0x10000u
#define STACK_SIZE      (64u * 1024)

static const char *role = "";

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    printf("%s%s\n", role, line);
}

static void error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void error(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    printf("%sError: %s\n", role, line);
}

static void pause_a_little(void)
{
    struct timespec ts = {0, 100 * 1000};
    nanosleep(&ts, NULL);
}

static const char *fault_name(const struct fl_fault *f)
{
    return f->type == FL_FAULT_READ    ? "READ_FAULT"
           : f->type == FL_FAULT_WRITE ? "WRITE_FAULT"
           : f->type == FL_FAULT_EXEC  ? "EXEC_FAULT"
                                       : "READY";
}

/* The config ROM module, attached: executable_fault_test (default true). */
static bool executable_fault_test(struct fl_env *env)
{
    fl_cap ds;
    size_t size;
    int r = fl_rom_open(env, "config", &ds);
    if (r < 0 || (r = fl_dataspace_size(env, ds, &size)) < 0) {
        fl_perror("config ROM", r);
        exit(1);
    }
    const char *p = fl_attach(env, ds, &r);
    if (!p) {
        fl_perror("attach config ROM", r);
        exit(1);
    }
    /* A ROM's tail is zero: the module is a string. */
    return !strstr(p, "executable_fault_test=\"no\"") &&
           !strstr(p, "executable_fault_test=\"false\"");
}

/***********
 ** Child **
 ***********/

static addr_t window;

static void read_at(addr_t addr)
{
    say("perform read operation at %#lx", (unsigned long)(addr - window));
    int value = *(volatile int *)addr;
    say("read value %#x", (unsigned)value);
}

static bool modify_at(addr_t addr)
{
    addr_t const value = *(addr_t volatile *)addr;

    if (value == STOP_TEST) return false;

    if (value != READ_TEST + 1) {
        (*(addr_t volatile *)(addr)) = (*(addr_t volatile *)(addr)) + 1;
        addr_t value_mod = (*(addr_t volatile *)(addr));

        /* if we are told to stop, do so */
        if (*(addr_t volatile *)(addr + sizeof(addr)) == STOP_TEST) return false;

        say("modify memory at %#lx from %#lx to %#lx", (unsigned long)(addr - window),
            (unsigned long)value, (unsigned long)value_mod);
    }

    if (value != READ_TEST && value != READ_TEST + 1) {
        error("could modify ROM !!! %#lx", (unsigned long)value);
        return false;
    }
    return true;
}

/* Writes nop, nop, ud2 at `code` and jumps there. */
static void *exec_fault_on_addr(void *arg)
{
    (void)arg;
    addr_t volatile *value = (addr_t volatile *)(window + MANAGED_ADDR);
    *value = 0x0b0f9090; /* nop, nop, ud2 */
    void (*exec_fault)(void) = (void (*)(void))(window + MANAGED_ADDR);
    exec_fault();
    return NULL;
}

/* Runs on a stack in the stack area: executes a word on it. */
static void *exec_fault_on_stack(void *arg)
{
    (void)arg;
    unsigned long volatile dummy = 0x0b0f9090; /* nop, nop, ud2 */
    void (*exec_fault)(void) = (void (*)(void))(uintptr_t)&dummy;
    exec_fault();
    return NULL;
}

static void execute_at(bool exec_test, addr_t cmd_addr)
{
    addr_t volatile *cmd = (addr_t volatile *)cmd_addr;

    if (exec_test) {
        /* perform illegal execute access on cmd addr */
        pthread_t on_addr, on_stack;
        pthread_create(&on_addr, NULL, exec_fault_on_addr, NULL);

        /* wait until parent acknowledged fault */
        while (*cmd != STOP_TEST) pause_a_little();

        /* tell parent that we start with next EXEC_TEST */
        *cmd = EXEC_TEST;

        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstack(&attr, (void *)(window + STACK_AREA + STACK_OFF), STACK_SIZE);
        pthread_create(&on_stack, &attr, exec_fault_on_stack, NULL);
        pthread_attr_destroy(&attr);

        /* wait until parent acknowledged fault */
        while (*cmd == EXEC_TEST) pause_a_little();
    }

    say("--- child role of region-manager fault test finished ---");

    /* sync shutdown with parent */
    *cmd = SHUTDOWN;
}

static int main_child(void)
{
    role = "[rmchild] ";
    struct fl_env *env;
    int r = fl_env_open(&env, NULL); /* claims the PD session: $FAULTLINE_PD_TOKEN */
    if (r < 0) return fl_perror("rmchild", r);
    window = (addr_t)fl_env_window_base(env);
    bool exec_test = executable_fault_test(env);

    say("child role started");

    /* perform illegal read access */
    read_at(window + MANAGED_ADDR);

    /* perform illegal write access */
    while (modify_at(window + MANAGED_ADDR)) continue;

    /* perform illegal execute access */
    execute_at(exec_test, window + MANAGED_ADDR);

    /* The exec threads stay halted on their faults: leave without waking
     * them (fl_env_close would), as the process ends. */
    fflush(stdout);
    _exit(0);
}

/************
 ** Parent **
 ************/

#define CHILD_RAM_QUOTA (1u << 20)
#define CHILD_CAP_QUOTA 20u

static struct fl_env *env;
static fl_cap address_space, stack_area, fault_sigh, stack_sigh, ds, binary;
static addr_t child_window;
static volatile long *local;
static unsigned fault_cnt;
static bool exec_test, done;

static volatile long *child_value(void)
{
    return local;
}

static volatile long *child_stop(void)
{
    return local + 1;
}

static void check(const char *what, int r)
{
    if (r < 0) exit(fl_perror(what, r));
}

static void attach_at(fl_cap what, addr_t at, bool writeable)
{
    struct fl_attr a = {.use_at = true, .at = at, .writeable = writeable};
    if (!writeable) a.size = 4096;
    int r = fl_region_map_attach(env, address_space, what, &a, NULL);
    if (r < 0) error("_attach_at unexpectedly failed: %s", fl_error_name(r));
}

static void test_read_fault(addr_t child_virt_addr)
{
    /* allocate dataspace to resolve the fault */
    say("attach dataspace to the child at %#lx", (unsigned long)(child_virt_addr - child_window));

    *child_value() = READ_TEST;

    attach_at(ds, child_virt_addr, true);

    /* poll until our child modifies the dataspace content */
    while (*child_value() == READ_TEST) pause_a_little();

    say("child modified dataspace content, new value is %#lx", (unsigned long)*child_value());

    say("revoke dataspace from child");
    check("detach", fl_region_map_detach(env, address_space, child_virt_addr));
}

static void test_write_fault(addr_t child_virt_addr, unsigned round)
{
    if (*child_value() != WRITE_TEST) {
        say("test WRITE faults on read-only binary and read-only attached RAM");

        *child_value() = WRITE_TEST;

        attach_at(binary, child_virt_addr, true);
        return;
    }

    enum { ROUND_FAULT_ON_ROM_BINARY = 1, ROUND_FAULT_ON_RO_RAM = 2 };

    if (round == ROUND_FAULT_ON_RO_RAM) *child_stop() = STOP_TEST;

    say("got write fault on %#lx%s", (unsigned long)(child_virt_addr - child_window),
        round == ROUND_FAULT_ON_ROM_BINARY ? " ROM (binary)"
        : round == ROUND_FAULT_ON_RO_RAM   ? " read-only attached RAM"
                                           : " unknown");

    /* detach region where fault happened */
    check("detach", fl_region_map_detach(env, address_space, child_virt_addr));

    if (round == ROUND_FAULT_ON_ROM_BINARY) {
        /* attach a RAM dataspace read-only */
        attach_at(ds, child_virt_addr, false);
    } else if (round == ROUND_FAULT_ON_RO_RAM) {
        /* let client continue by attaching RAM dataspace writeable */
        attach_at(ds, child_virt_addr, true);
    }
}

static void test_exec_fault(const struct fl_fault *fault)
{
    if (*child_value() == WRITE_TEST) {
        *child_value() = EXEC_TEST;
        return;
    }

    if (fault->type != FL_FAULT_EXEC || fault->addr != child_window + MANAGED_ADDR) {
        error("exec test failed %d addr=%#lx", (int)fault->type, (unsigned long)fault->addr);
        return;
    }

    say("got exec fault on dataspace");
    /* signal client to continue with next test, current test is done */
    *child_value() = STOP_TEST;
}

static void handle_fault_stack(void);

static void handle_fault(void)
{
    enum { FAULT_CNT_READ = 4, FAULT_CNT_WRITE = 6 };

    say("received region-map fault signal, request fault state");

    struct fl_fault fault;
    check("fault", fl_region_map_fault(env, address_space, &fault));

    say("rm session state is %s, pf_addr=%#lx", fault_name(&fault),
        (unsigned long)(fault.addr - (fault.type ? child_window : 0)));

    /* ignore spurious fault signal */
    if (fault.type == FL_FAULT_NONE) {
        say("ignoring spurious fault signal");
        return;
    }

    addr_t child_virt_addr = fault.addr & ~(addr_t)(4096 - 1);

    if (fault_cnt < FAULT_CNT_READ) test_read_fault(child_virt_addr);

    if (fault_cnt <= FAULT_CNT_WRITE && fault_cnt >= FAULT_CNT_READ)
        test_write_fault(child_virt_addr, fault_cnt - FAULT_CNT_READ);

    if (!exec_test && fault_cnt >= FAULT_CNT_WRITE) handle_fault_stack();

    if (fault_cnt > FAULT_CNT_WRITE) test_exec_fault(&fault);

    fault_cnt++;
}

static void handle_fault_stack(void)
{
    /* sanity check that we got exec fault */
    if (exec_test) {
        struct fl_fault fault, stack;
        check("fault", fl_region_map_fault(env, address_space, &fault));
        if (fault.type != FL_FAULT_EXEC) {
            error("unexpected state %s", fault_name(&fault));
            return;
        }
        check("fault", fl_region_map_fault(env, stack_area, &stack));
        say("stack area: %s at %#lx", fault_name(&stack), (unsigned long)stack.addr);
        *child_value() = STOP_TEST;
    }

    /* sync shutdown with client */
    while (*child_value() != SHUTDOWN) pause_a_little();

    say("--- parent role of region-manager fault test finished --- ");
    done = true;
}

/* Genode's test starts itself as its child: so does this one. */
static pid_t start_child(const char *token)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) return -1;
    self[n] = 0;
    fflush(stdout);
    setenv("FAULTLINE_PD_TOKEN", token, 1); /* before the fork: only exec after it */
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, "rm-fault", (char *)NULL);
        _exit(127);
    }
    unsetenv("FAULTLINE_PD_TOKEN");
    return pid;
}

int main(int argc, char **argv)
{
    (void)argv;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) {
        fprintf(stderr, "usage: rm-fault (core must serve the ROM modules config and binary: "
                        "faultline-core --rom-dir examples/rm-fault/rom)\n");
        return 2;
    }
    if (getenv("FAULTLINE_PD_TOKEN")) return main_child();

    say("--- region-manager fault test ---");
    check("env", fl_env_open(&env, NULL));
    exec_test = executable_fault_test(env);
    check("binary ROM", fl_rom_open(env, "binary", &binary));
    fl_cap rms;
    check("RM session", fl_rm_session_open(env, &rms));

    /* The child's PD session, its address space managed here from the start. */
    char token[FL_TOKEN_LEN + 1];
    struct fl_pd_config pd = {.ram_quota = CHILD_RAM_QUOTA, .cap_quota = CHILD_CAP_QUOTA};
    check("child PD", fl_pd_create(env, &pd, &address_space, token));
    child_window = FL_PD_WINDOW_BASE;
    check("signal", fl_signal_context_create(env, &fault_sigh));
    check("signal", fl_signal_context_create(env, &stack_sigh));
    check("fault handler", fl_region_map_fault_handler(env, address_space, fault_sigh));

    /* Its stack area: a managed dataspace with a fault handler of its own. */
    fl_cap stack_ds, stack_ram;
    check("stack area", fl_rm_create(env, rms, STACK_AREA_SIZE, &stack_area));
    check("fault handler", fl_region_map_fault_handler(env, stack_area, stack_sigh));
    check("stack area", fl_region_map_dataspace(env, stack_area, &stack_ds));
    struct fl_attr sa = {
        .use_at = true, .at = child_window + STACK_AREA, .writeable = true, .executable = true};
    check("attach stack area", fl_region_map_attach(env, address_space, stack_ds, &sa, NULL));
    check("stack", fl_ram_alloc(env, STACK_SIZE, &stack_ram));
    struct fl_attr st = {.use_at = true, .at = STACK_OFF, .writeable = true};
    check("attach stack", fl_region_map_attach(env, stack_area, stack_ram, &st, NULL));

    /* dataspace used for creating shared memory between parent and child */
    int r;
    check("RAM", fl_ram_alloc(env, 4096, &ds));
    local = fl_attach(env, ds, &r);
    check("attach", r);

    pid_t child = start_child(token);
    if (child < 0) return fl_perror("fork", -FL_E_SYSTEM);
    say("-- parent role started --");

    struct pollfd pfd[2] = {{.fd = fl_signal_fd(env, fault_sigh), .events = POLLIN},
                            {.fd = fl_signal_fd(env, stack_sigh), .events = POLLIN}};
    while (!done) {
        if (poll(pfd, 2, 1000) < 0 && errno != EINTR) return fl_perror("poll", -FL_E_SYSTEM);
        int status;
        if (waitpid(child, &status, WNOHANG) == child) {
            error("the child ended before the test did (status %#x)", status);
            return 1;
        }
        if (fl_signal_wait(env, stack_sigh, 0) > 0) handle_fault_stack();
        if (!done && fl_signal_wait(env, fault_sigh, 0) > 0) handle_fault();
    }

    int status;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        error("the child ended with status %#x", status);
        return 1;
    }
    fl_env_close(env);
    return 0;
}
