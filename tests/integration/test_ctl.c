/*
 * faultline-ctl against a live core: it names each session's component and
 * quota, shows a region map as a tree (a RAM attachment with its rights, a
 * nested managed map and what is attached inside it), and lists a fault that
 * waits for a manager that does not answer, with the faulting session and
 * thread and its age. Skipped when the tools are not built.
 */
#include "harness.h"

#include <sys/wait.h>
#include <unistd.h>

static int client_main(struct t_child *c)
{
    struct fl_env *env = t_env();
    char line[256];
    t_child_command(c, line, sizeof(line));
    volatile char *p = t_import_attach(env, line);
    t_child_say(c, "attached");
    return p[0x5000]; /* unbacked: waits for a manager that never answers */
}

/* faultline-ctl's output, in buf. */
static void ctl(char *buf, size_t len)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s --socket %s", getenv("FAULTLINE_CTL"),
             getenv("FAULTLINE_SOCKET"));
    FILE *f = popen(cmd, "r");
    T_ASSERT(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = 0;
    T_EQ(pclose(f), 0);
}

static void expect(const char *out, const char *want)
{
    if (!strstr(out, want)) {
        fprintf(stderr, "faultline-ctl said:\n%s\nwhich lacks \"%s\"\n", out, want);
        exit(T_FAIL);
    }
}

int main(void)
{
    if (!getenv("FAULTLINE_CTL")) return T_SKIP;
    struct t_core *core = t_core_start(NULL);
    struct fl_env *m = t_env();
    fl_cap rm, inner, sigh, mds, ids, ram;
    T_ERR(fl_rm_create(m, 1 << 20, &rm), 0);
    T_ERR(fl_rm_create(m, 0x10000, &inner), 0);
    T_ERR(fl_signal_context_create(m, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(m, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(m, rm, &mds), 0);
    T_ERR(fl_region_map_dataspace(m, inner, &ids), 0);
    T_ERR(fl_ram_alloc(m, 0x2000, &ram), 0);
    struct fl_attr a = {.size = 0x1000, .use_at = true, .at = 0, .writeable = false};
    T_ERR(fl_region_map_attach(m, rm, ram, &a, NULL), 0);
    a = (struct fl_attr){.use_at = true, .at = 0x40000, .writeable = true};
    T_ERR(fl_region_map_attach(m, rm, ids, &a, NULL), 0);
    a = (struct fl_attr){
        .size = 0x1000, .offset = 0x1000, .use_at = true, .at = 0x3000, .writeable = true};
    T_ERR(fl_region_map_attach(m, inner, ram, &a, NULL), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(m, mds, token), 0);

    struct t_child c;
    t_child_spawn(&c, "client", client_main);
    t_child_send(&c, "%s", token);
    t_child_expect(&c, "attached");
    T_WAIT_UNTIL(t_core_log_contains(core, "reflect READ fault"));

    static char out[65536];
    ctl(out, sizeof(out));
    char want[128];
    snprintf(want, sizeof(want), "pid %d (test_ctl)", (int)getpid());
    expect(out, want);
    expect(out, "RAM ");
    expect(out, "map of session 1: managed map of 1024 KiB, 2 regions, fault handler set");
    expect(out, "  [0, +0x1000) r-- RAM 8 KiB @0 (memfd 1)");
    expect(out, "  [0x40000, +0x10000) rw- managed map of 64 KiB @0:");
    expect(out, "    [0x3000, +0x1000) rw- RAM 8 KiB @0x1000 (memfd 1)");
    snprintf(want, sizeof(want),
             "fault 0 on a map of session 1: READ at 0x5000 by session 2 thread %d, ", (int)c.pid);
    expect(out, want);
    snprintf(want, sizeof(want), "session 2 pid %d (test_ctl)", (int)c.pid);
    expect(out, want);

    kill(c.pid, SIGKILL);
    T_EQ(t_wait(c.pid), 128 + SIGKILL);
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
