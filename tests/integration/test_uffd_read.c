/*
 * How core reads userfaultfds (--uffd-read, src/core/uffd.c), and what
 * --check and the start-up log say of it:
 *  - the_way_is_logged: --check names the way core would take, and a core
 *    says at start-up which way it takes: preadv2(RWF_NOWAIT) with nowait
 *    (and with auto on a kernel that has it, as here), io_uring reads with
 *    uring; either serves a component that faults;
 *  - without_io_uring: with io_uring_setup forbidden (a seccomp filter, as
 *    container profiles do), --uffd-read uring is missing (--check exits 1,
 *    a core refuses to start and creates no socket), while auto still takes
 *    preadv2(RWF_NOWAIT) and runs its loop on epoll. On a kernel without
 *    RWF_NOWAIT reads (6.1) that is the fatal case for auto too.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64], out[128];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/flur-XXXXXX");
    T_ASSERT(mkdtemp(dir));
    snprintf(out, sizeof(out), "%s/out", dir);
}

static void cleanup(void)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd)) {
    }
}

/* io_uring_setup fails ENOSYS. */
static void no_io_uring(void *arg)
{
    (void)arg;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        _exit(125);
}

/* Run core (the harness's options, then more), stdout and stderr to out,
 * with io_uring_setup failing ENOSYS if no_uring; its exit status. */
static int run_core(int no_uring, const char *const more[])
{
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    T_ASSERT(fd >= 0);
    pid_t pid = t_core_exec(fd, more, no_uring ? no_io_uring : NULL, NULL);
    close(fd);
    return t_wait_within(pid, T_WAIT_MS, "faultline-core");
}

static int said(const char *text, const char *also)
{
    return t_file_lines_with(out, 1, text, also, (const char *)NULL) == 1;
}

static void show(void)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "cat %s >&2", out);
    if (system(cmd)) {
    }
}

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            show();                                                                                \
            T_FAILF("expected %s", #cond);                                                         \
        }                                                                                          \
    } while (0)

/* A component whose fault core reflects to a manager, which answers it. */
static int toucher(void *token)
{
    struct fl_env *env = t_env();
    volatile unsigned char *p = t_import_attach(env, token);
    int v = p[4096 + 7]; /* faults: the manager attaches a page there */
    fl_env_close(env);
    return v == 0 ? 0 : 1;
}

static void serves_a_fault(struct t_core *c)
{
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, 4 * 4096, T_MM_HANDLER);
    fl_cap ram;
    T_ERR(fl_ram_alloc(mgr, 4 * 4096, &ram), 0);
    pid_t pid = t_spawn(toucher, (void *)t_mm_export(&mm));
    struct fl_fault f = t_mm_next_fault(&mm);
    T_EQ(f.type, FL_FAULT_READ);
    T_EQ(f.addr & ~(uintptr_t)4095, 4096);
    t_mm_attach(&mm, ram, 4096, 4096, 4096);
    T_EQ(t_wait_within(pid, T_WAIT_MS, "the component whose fault was answered"), 0);
    fl_env_close(mgr);
    T_EQ(t_core_stop(c), 0);
}

static void the_way_is_logged(void)
{
    setup();
    const char *const nowait[] = {"--check", "--uffd-read", "nowait", NULL};
    EXPECT(run_core(0, nowait) == 0);
    EXPECT(said("ok ", "userfaultfd reads: preadv2(RWF_NOWAIT)"));
    const char *const uring[] = {"--check", "--uffd-read", "uring", NULL};
    EXPECT(run_core(0, uring) == 0);
    EXPECT(said("ok ", "io_uring reads of a userfaultfd"));
    EXPECT(said("ok ", "userfaultfd reads: io_uring reads (--uffd-read uring)"));
    cleanup();

    struct t_core *c = t_core_start("--uffd-read", "nowait", NULL);
    T_ASSERT(t_core_log_contains(c, "userfaultfd reads: preadv2(RWF_NOWAIT)"));
    serves_a_fault(c);
    c = t_core_start("--uffd-read", "uring", NULL);
    T_ASSERT(t_core_log_contains(c, "userfaultfd reads: io_uring reads (--uffd-read uring)"));
    serves_a_fault(c);
    /* auto: this kernel reads a uffd with RWF_NOWAIT (else --check says so). */
    c = t_core_start("--uffd-read", "auto", NULL);
    if (!t_core_log_contains(c, "userfaultfd reads: preadv2(RWF_NOWAIT)"))
        T_ASSERT(t_core_log_contains(
            c, "userfaultfd reads: io_uring reads (this kernel cannot read a uffd without "
               "blocking)"));
    serves_a_fault(c);
}

static void without_io_uring(void)
{
    setup();
    const char *const check[] = {"--check", "--uffd-read", "uring", NULL};
    EXPECT(run_core(1, check) == 1);
    EXPECT(said("absent ", "io_uring reads of a userfaultfd"));
    EXPECT(said("MISSING ", "userfaultfd reads: --uffd-read uring, but io_uring reads"));
    char sock[160];
    snprintf(sock, sizeof(sock), "%s/core.sock", dir);
    const char *const start[] = {"--socket", sock, "--uffd-read", "uring", NULL};
    EXPECT(run_core(1, start) == 1);
    EXPECT(said("this kernel lacks features faultline needs", ""));
    struct stat st;
    T_ASSERT(stat(sock, &st) < 0 && errno == ENOENT);
    /* auto: RWF_NOWAIT here, and an epoll loop. */
    const char *const check_auto[] = {"--check", "--uffd-read", "auto", NULL};
    int st_auto = run_core(1, check_auto);
    if (said("absent ", "preadv2(RWF_NOWAIT)")) {
        EXPECT(st_auto == 1); /* Linux 6.1: no way left */
        EXPECT(said("MISSING ", "neither preadv2(RWF_NOWAIT) nor io_uring reads work"));
    } else {
        EXPECT(st_auto == 0);
        EXPECT(said("ok ", "userfaultfd reads: preadv2(RWF_NOWAIT)"));
        EXPECT(said("absent ", "io_uring: core falls back to epoll"));
    }
    cleanup();
}

T_CASES(the_way_is_logged, without_io_uring)
