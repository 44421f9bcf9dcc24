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

static void destroyed_handler(void)
{
    struct fl_env *mgr = t_env();
    fl_cap rms, rm, sigh, mds, ram;
    T_ERR(fl_rm_session_open(mgr, &rms), 0);
    T_ERR(fl_rm_create(mgr, rms, 64 * K, &rm), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0);
    T_ERR(fl_signal_context_destroy(mgr, sigh), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    pid_t c = t_spawn(reader, (void *)(uintptr_t)(3 * 4096 + 0x123));
    t_pipe_send(&tokens, token);

    /* Queued, though nobody is told. */
    struct fl_fault f = {FL_FAULT_NONE, 0};
    T_WAIT_UNTIL(fl_region_map_fault(mgr, rm, &f) == 0 && f.type != FL_FAULT_NONE);
    T_EQ(f.type, FL_FAULT_READ);
    T_EQ(f.addr & ~4095ull, 3 * 4096);

    /* An attach covering it wakes the thread. */
    T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);
    void *p = fl_attach(mgr, ram, NULL);
    T_ASSERT(p != NULL);
    memset(p, 0x5a, 4096);
    struct fl_attr a = {.size = 4096, .use_at = true, .at = 3 * 4096, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, rm, ram, &a, NULL), 0);
    char line[32];
    T_EQ(t_pipe_recv(&results, line, sizeof(line)), 0);
    T_ASSERT(!strcmp(line, "read 90"));
    T_EQ(t_wait(c), 0);
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.type, FL_FAULT_NONE);
    fl_env_close(mgr);
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
    struct fl_env *mgr = t_env();
    fl_cap rms, rm, sigh, mds, ram;
    T_ERR(fl_rm_session_open(mgr, &rms), 0);
    T_ERR(fl_rm_create(mgr, rms, 64 * K, &rm), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    /* A page of RAM holding "ret", at offset 2 pages of the map, from offset
     * one page of the dataspace, not executable. */
    T_ERR(fl_ram_alloc(mgr, 2 * 4096, &ram), 0);
    unsigned char *p = fl_attach(mgr, ram, NULL);
    T_ASSERT(p != NULL);
    memset(p, 0xc3, 2 * 4096);
    struct fl_attr a = {.size = 4096, .offset = 4096, .use_at = true, .at = 2 * 4096};
    T_ERR(fl_region_map_attach(mgr, rm, ram, &a, NULL), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    pid_t c = t_spawn(executor, (void *)(uintptr_t)(2 * 4096 + 0x2d));
    t_pipe_send(&tokens, token);
    T_ASSERT(fl_signal_wait(mgr, sigh, T_WAIT_MS) > 0);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.type, FL_FAULT_EXEC);
    T_EQ(f.addr, 2 * 4096 + 0x2d); /* the byte, not the page */
    /* Executable now: the thread goes on. */
    T_ERR(fl_region_map_detach(mgr, rm, 2 * 4096), 0);
    a.executable = true;
    T_ERR(fl_region_map_attach(mgr, rm, ram, &a, NULL), 0);
    char line[32];
    T_EQ(t_pipe_recv(&results, line, sizeof(line)), 0);
    T_ASSERT(!strcmp(line, "executed"));
    T_EQ(t_wait(c), 0);
    fl_env_close(mgr);
}

int main(void)
{
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&results);
    destroyed_handler();
    exact_exec_address();
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
