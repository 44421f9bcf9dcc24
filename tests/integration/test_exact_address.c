/*
 * fault() reports the exact byte that faulted, as Genode does, in the
 * coordinates of the map that reflects the fault -- the attachment's offset
 * included -- for READ, WRITE (by the program and by the kernel in read(2))
 * and EXEC faults, through nesting and on a child's address space (Genode's
 * rm_fault). The kernel reports READ and WRITE faults exactly with
 * UFFD_FEATURE_EXACT_ADDRESS (libfaultline asks for it; without it they name
 * their page, and these cases are skipped); EXEC faults come exactly from
 * libfaultline's SIGSEGV handler. Core still resolves by page: the faulter
 * resumes once its page is attached.
 *
 * The nesting: client A attaches the managed dataspace of map M; the
 * dataspace of an inner map N is attached into M at 0x20000, from offset
 * 0x4000 of N, 0x8000 bytes, writable and executable. So M's 0x20000 + x is
 * N's 0x4000 + x, and every fault inside is reflected to N (the deepest map
 * reached), never to M.
 */
#include "harness.h"

#include <linux/userfaultfd.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct t_core *core;
static struct fl_env *m;
static struct t_mm outer, inner;
static fl_cap backing;
static volatile char *local;
static struct t_child a;

#define N_AT     0x20000u /* where N's dataspace lies in M */
#define N_OFFSET 0x4000u  /* from this offset of N */

/* mov eax, 42; ret */
static const unsigned char code42[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3};

/* Skip unless the kernel reports READ and WRITE faults exactly. */
static void need_exact_address(void)
{
    int fd = t_new_uffd();
    if (fd < 0) t_skip("no userfaultfd");
    struct uffdio_api api = {.api = UFFD_API};
    int r = ioctl(fd, UFFDIO_API, &api);
    close(fd);
    if (r < 0 || !(api.features & UFFD_FEATURE_EXACT_ADDRESS))
        t_skip("the kernel lacks UFFD_FEATURE_EXACT_ADDRESS: READ and WRITE faults name their "
               "page (README, Differences from Genode)");
}

static void need_fetch_detection(void)
{
#if !defined(__x86_64__)
    t_skip("fetch detection is verified on x86-64 only");
#endif
}

static void back(uintptr_t page, size_t off, int rights);

/* page (unless 0): backed with backing's off, with the rights, before the
 * client attaches M -- the client's own attach maps it, write-protection
 * included, before it returns, where a mapping made later could still be
 * under way when the client touches it (a kernel write in that instant is
 * EFAULT, a fetch from the page not yet there a READ fault). */
static void setup(uintptr_t page, size_t off, int rights)
{
    core = t_core_start(NULL);
    m = t_env();
    t_mm_create(&outer, m, 1u << 20, T_MM_HANDLER);
    t_mm_create(&inner, m, 0x10000, T_MM_HANDLER);
    local = t_ram(m, 16 * 4096, &backing);
    strcpy((char *)local + 0x123, "at 0x123");
    memcpy((char *)local + 0x2000 + 0x2d, code42, sizeof(code42));
    struct fl_attr at = {.size = 0x8000,
                         .offset = N_OFFSET,
                         .use_at = true,
                         .at = N_AT,
                         .writeable = true,
                         .executable = true};
    T_ERR(fl_region_map_attach(m, outer.rm, inner.ds, &at, NULL), 0);
    if (page) back(page, off, rights);
    t_child_spawn(&a, "client A", t_client_main);
    t_child_send(&a, "import %s", t_mm_export(&outer));
    t_child_expect(&a, "attached");
}

static void teardown(void)
{
    /* Nothing was ever reflected to the outer map. */
    t_mm_expect_fault(&outer, FL_FAULT_NONE, 0);
    t_expect_no_signal(m, outer.sigh);
    t_child_send(&a, "exit");
    T_EQ(t_wait(a.pid), 0);
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
}

/* Attach 4 KiB of backing (from off) at N's page `page`, with the rights. */
static void back(uintptr_t page, size_t off, int rights)
{
    t_attach_at(m, inner.rm, backing, off, 0x1000, page, rights);
}

static void reback(uintptr_t page, size_t off, int rights)
{
    T_ERR(fl_region_map_detach(m, inner.rm, page), 0);
    back(page, off, rights);
}

/* The client's access at M's address n_addr - N_OFFSET + N_AT is the fault
 * at n_addr of N. */
static unsigned long in_outer(uintptr_t n_addr)
{
    return (unsigned long)(n_addr - N_OFFSET + N_AT);
}

static void read_nested(void)
{
    need_exact_address();
    setup(0, 0, 0);
    t_child_send(&a, "read %#lx", in_outer(0x5123));
    t_expect_signal(m, inner.sigh);
    t_mm_expect_fault(&inner, FL_FAULT_READ, 0x5123); /* not 0x5000, not M's 0x21123 */
    t_child_silent(&a);
    /* Resolved by page: the page's attachment lets it read its byte. */
    back(0x5000, 0, T_RO);
    t_child_expect(&a, "read at 0x123");
    t_mm_expect_fault(&inner, FL_FAULT_NONE, 0);
    teardown();
}

static void write_nested(void)
{
    need_exact_address();
    setup(0x6000, 0x1000, T_RO);
    t_child_send(&a, "write %#lx w", in_outer(0x6456));
    t_expect_signal(m, inner.sigh);
    t_mm_expect_fault(&inner, FL_FAULT_WRITE, 0x6456);
    t_child_silent(&a);
    reback(0x6000, 0x1000, T_W);
    t_child_expect(&a, "wrote");
    T_EQ(local[0x1456], 'w');
    t_mm_expect_fault(&inner, FL_FAULT_NONE, 0);
    teardown();
}

/* The kernel's write in read(2): its first byte is the fault address. */
static void syscall_write_nested(void)
{
    need_exact_address();
    setup(0x7000, 0x3000, T_RO);
    t_child_send(&a, "sysread %#lx hi!", in_outer(0x7abc));
    t_expect_signal(m, inner.sigh);
    t_mm_expect_fault(&inner, FL_FAULT_WRITE, 0x7abc);
    t_child_silent(&a);
    reback(0x7000, 0x3000, T_W);
    t_child_expect(&a, "sysread 3");
    T_ASSERT(!memcmp((const char *)local + 0x3abc, "hi!", 3));
    teardown();
}

static void exec_nested(void)
{
    need_fetch_detection();
    /* A fetch from a non-executable page: EXEC at the instruction's byte. */
    setup(0x6000, 0x2000, T_RO);
    t_child_send(&a, "exec %#lx", in_outer(0x602d));
    t_expect_signal(m, inner.sigh);
    t_mm_expect_fault(&inner, FL_FAULT_EXEC, 0x602d);
    t_child_silent(&a);
    reback(0x6000, 0x2000, T_X);
    t_child_expect(&a, "exec 42");
    t_mm_expect_fault(&inner, FL_FAULT_NONE, 0);
    teardown();
}

/* A fetch from a missing page is a READ fault, exactly where it fetched. */
static void exec_missing_nested(void)
{
    need_fetch_detection();
    need_exact_address();
    setup(0, 0, 0);
    t_child_send(&a, "exec %#lx", in_outer(0x802d));
    t_expect_signal(m, inner.sigh);
    t_mm_expect_fault(&inner, FL_FAULT_READ, 0x802d);
    back(0x8000, 0x2000, T_X);
    t_child_expect(&a, "exec 42");
    teardown();
}

/* ---- a child's address space (Genode's rm_fault): its virtual addresses ---- */

#define WIN (16u << 20)
static char pd_token[FL_TOKEN_LEN + 1];

static int pd_child(void *arg)
{
    (void)arg;
    setenv("FAULTLINE_PD_TOKEN", pd_token, 1);
    struct fl_env *env = t_env();
    volatile uint8_t *w = fl_env_window_base(env);
    uint8_t v = w[0x5123];        /* unattached: a READ fault at the byte */
    w[0x6abc] = (uint8_t)(v + 1); /* attached read-only: a WRITE fault at the byte */
    return w[0x6abc];
}

static void child_address_space(void)
{
    need_exact_address();
    core = t_core_start(NULL);
    struct fl_env *env = t_env();
    fl_cap as, sigh, ds;
    struct fl_pd_config cfg = {.ram_quota = 1 << 20, .cap_quota = 16, .window_size = WIN};
    T_ERR(fl_pd_create(env, &cfg, &as, pd_token), 0);
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(env, as, sigh), 0);
    volatile uint8_t *p = t_ram(env, 2 * 4096, &ds);
    p[0x123] = 0x41;
    /* Page 0x6000 of the window shows the dataspace's second page, read-only. */
    t_attach_at(env, as, ds, 0x1000, 0x1000, FL_PD_WINDOW_BASE + 0x6000, T_RO);

    pid_t pid = t_spawn(pd_child, NULL);
    t_expect_signal(env, sigh);
    t_expect_fault(env, as, FL_FAULT_READ, FL_PD_WINDOW_BASE + 0x5123);
    t_attach_at(env, as, ds, 0, 0x1000, FL_PD_WINDOW_BASE + 0x5000, T_RO);
    t_expect_signal(env, sigh);
    t_expect_fault(env, as, FL_FAULT_WRITE, FL_PD_WINDOW_BASE + 0x6abc);
    T_ERR(fl_region_map_detach(env, as, FL_PD_WINDOW_BASE + 0x6000), 0);
    t_attach_at(env, as, ds, 0x1000, 0x1000, FL_PD_WINDOW_BASE + 0x6000, T_W);
    T_EQ(t_wait(pid), 0x42);
    T_EQ(p[0x1abc], 0x42);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(read_nested, write_nested, syscall_write_nested, exec_nested, exec_missing_nested,
        child_address_space)
