/*
 * Corners where faultline must behave as Genode's core does:
 *
 * - A fault handler whose signal context was destroyed still counts as
 *   installed (Genode tests the capability, not the object): the fault is
 *   queued, the signal goes nowhere, and an attach covering the fault wakes
 *   the thread. Before, core treated it as "no handler": not queued, and the
 *   thread stayed halted for good, even after a covering attach.
 * - The fault address is the exact byte, in the reflecting map's
 *   coordinates with the attachment's offset: here for an EXEC fault, whose
 *   address the SIGSEGV handler reports exactly (READ and WRITE faults are
 *   exact where the kernel has UFFD_FEATURE_EXACT_ADDRESS).
 */
#include "harness.h"

#include <sys/mman.h>
#include <unistd.h>

#define K 1024ull

static struct t_pipe tokens, results;

/* Attach the token's dataspace and read one byte at off; say what was read. */
static int reader(void *arg)
{
    size_t off = (size_t)(uintptr_t)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    struct fl_env *env = t_env();
    volatile unsigned char *p = t_import_attach(env, token);
    char line[32];
    snprintf(line, sizeof(line), "read %u", p[off]);
    t_pipe_send(&results, line);
    fl_env_close(env);
    return 0;
}

/* A core, the pipes to the child, and a managed map of 64 KiB with a fault
 * handler. */
static struct t_core *start(struct t_mm *mm)
{
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&results);
    t_mm_create(mm, t_env(), 64 * K, T_MM_HANDLER);
    return core;
}

static void destroyed_handler(void)
{
    struct t_mm mm;
    struct t_core *core = start(&mm);
    struct fl_env *mgr = mm.env;
    T_ERR(fl_signal_context_destroy(mgr, mm.sigh), 0);
    pid_t c = t_spawn(reader, (void *)(uintptr_t)(3 * 4096 + 0x123));
    t_pipe_send(&tokens, t_mm_export(&mm));

    /* Queued, though nobody is told. */
    struct fl_fault f = {FL_FAULT_NONE, 0};
    T_WAIT_UNTIL(fl_region_map_fault(mgr, mm.rm, &f) == 0 && f.type != FL_FAULT_NONE);
    T_EQ(f.type, FL_FAULT_READ);
    T_EQ(f.addr & ~4095ull, 3 * 4096);

    /* An attach covering it wakes the thread. */
    t_ram_at(mgr, mm.rm, 3 * 4096, 4096, 0x5a);
    char line[32];
    T_EQ(t_pipe_recv(&results, line, sizeof(line)), 0);
    T_ASSERT(!strcmp(line, "read 90"));
    T_EQ(t_wait(c), 0);
    T_ERR(fl_region_map_fault(mgr, mm.rm, &f), 0);
    T_EQ(f.type, FL_FAULT_NONE);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

/* Execute the byte at off of the token's dataspace (attached executable,
 * but its RAM below is attached non-executable). */
static int executor(void *arg)
{
    size_t off = (size_t)(uintptr_t)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    struct fl_env *env = t_env();
    fl_cap ds;
    T_ERR(fl_cap_import(env, token, &ds), 0);
    struct fl_attr a = {.executable = true, .writeable = true};
    struct fl_range r;
    T_ERR(fl_region_map_attach(env, fl_env_address_space(env), ds, &a, &r), 0);
    void (*fn)(void) = (void (*)(void))(r.start + off);
    fn();
    t_pipe_send(&results, "executed");
    fl_env_close(env);
    return 0;
}

static void exact_exec_address(void)
{
    struct t_mm mm;
    struct t_core *core = start(&mm);
    struct fl_env *mgr = mm.env;
    /* A page of RAM holding "ret", at offset 2 pages of the map, from offset
     * one page of the dataspace, not executable. */
    fl_cap ram;
    unsigned char *p = t_ram(mgr, 2 * 4096, &ram);
    memset(p, 0xc3, 2 * 4096);
    struct fl_attr a = {.size = 4096, .offset = 4096, .use_at = true, .at = 2 * 4096};
    T_ERR(fl_region_map_attach(mgr, mm.rm, ram, &a, NULL), 0);
    pid_t c = t_spawn(executor, (void *)(uintptr_t)(2 * 4096 + 0x2d));
    t_pipe_send(&tokens, t_mm_export(&mm));
    struct fl_fault f = t_mm_next_fault(&mm);
    T_EQ(f.type, FL_FAULT_EXEC);
    T_EQ(f.addr, 2 * 4096 + 0x2d); /* the byte, not the page */
    /* Executable now: the thread goes on. */
    T_ERR(fl_region_map_detach(mgr, mm.rm, 2 * 4096), 0);
    a.executable = true;
    T_ERR(fl_region_map_attach(mgr, mm.rm, ram, &a, NULL), 0);
    char line[32];
    T_EQ(t_pipe_recv(&results, line, sizeof(line)), 0);
    T_ASSERT(!strcmp(line, "executed"));
    T_EQ(t_wait(c), 0);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(destroyed_handler, exact_exec_address)
