/*
 * faultline-ctl against a live core: it names each session's component,
 * quota and process state (running, stopped, gone), shows each region map by
 * its id as a tree (a RAM attachment with its rights, a nested managed map
 * and what is attached inside it) with its fault handler's signal (pending,
 * then taken), and lists a fault that waits for a manager that does not
 * answer, under the same map id, with the faulting session and thread and its
 * age. Sizes are human (KiB, MiB); --json gives the same as JSON, --watch
 * repeats, --help goes to stdout, and faultline-ctl never lists its own
 * session. Skipped when the tools are not built.
 */
#include "harness.h"

#include "../../src/common/protocol.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
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

/* faultline-ctl's stdout for args, in buf; returns its exit code. */
static int ctl_run(const char *args, char *buf, size_t len)
{
    char cmd[512];
    const char *sock = getenv("FAULTLINE_SOCKET");
    snprintf(cmd, sizeof(cmd), "%s %s%s %s 2>/dev/null", getenv("FAULTLINE_CTL"),
             sock ? "--socket " : "", sock ? sock : "", args);
    FILE *f = popen(cmd, "r");
    T_ASSERT(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void ctl(const char *args, char *buf, size_t len)
{
    T_EQ(ctl_run(args, buf, len), 0);
}

/* The client, killed on any exit: a stopped one would outlive the test. */
static pid_t client_pid;

static void kill_client(void)
{
    if (client_pid > 0 && getpid() != client_pid) kill(client_pid, SIGKILL);
}

static void expect(const char *out, const char *want)
{
    if (!strstr(out, want)) {
        fprintf(stderr, "faultline-ctl said:\n%s\n", out);
        T_FAILF("faultline-ctl's output (above) lacks \"%s\"", want);
    }
}

static void expect_not(const char *out, const char *unwanted)
{
    if (strstr(out, unwanted)) {
        fprintf(stderr, "faultline-ctl said:\n%s\n", out);
        T_FAILF("faultline-ctl's output (above) has \"%s\"", unwanted);
    }
}

/* Every line of out is a JSON document, if python3 is there to say so. */
static void expect_json(const char *out)
{
    if (system("python3 -c '' 2>/dev/null") != 0) return;
    FILE *f = popen("python3 -c 'import json, sys\n"
                    "for l in sys.stdin: json.loads(l)' ",
                    "w");
    T_ASSERT(f);
    fputs(out, f);
    int st = pclose(f);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "not JSON:\n%s\n", out);
        T_FAILF("faultline-ctl's --json output (above) is not JSON lines");
    }
}

static char proc_state(pid_t pid)
{
    char buf[512];
    if (t_proc_line(buf, sizeof(buf), "/proc/%d/stat", (int)pid) < 0) return 0;
    const char *p = strrchr(buf, ')');
    return p && p[1] ? p[2] : 0;
}

/* A session whose process is gone: a child connects a socket this process
 * shares and says HELLO (core takes the child for the peer), then exits.
 * Returns the socket; the child's pid in *pid. */
static int gone_session(pid_t *child)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    T_ASSERT(fd >= 0);
    pid_t pid = fork();
    T_ASSERT(pid >= 0);
    if (pid == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", getenv("FAULTLINE_SOCKET"));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) _exit(1);
        struct fl_req_hello h = {.version = FL_PROTO_VERSION,
                                 .window_base = 0x100000000000ull,
                                 .window_size = 1ull << 30};
        t_raw_send(fd, &h, FL_REQ_HELLO);
        struct fl_msg_reply r;
        t_raw_reply(fd, &r);
        _exit(r.status == 0 ? 0 : 1);
    }
    T_EQ(t_wait(pid), 0);
    *child = pid;
    return fd;
}

static void need_ctl(void)
{
    if (!getenv("FAULTLINE_CTL")) t_skip("faultline-ctl is not built (-Dtools=false)");
}

/* --help: on stdout, exit 0; a wrong argument: exit 2. */
static void usage(void)
{
    need_ctl();
    static char out[65536];
    T_EQ(ctl_run("--help", out, sizeof(out)), 0);
    expect(out, "usage: faultline-ctl");
    expect(out, "--watch SECONDS");
    T_EQ(ctl_run("--no-such-option", out, sizeof(out)), 2);
    T_EQ(out[0], 0);
}

static void live_core(void)
{
    need_ctl();
    static char out[65536], want[512];
    struct t_core *core = t_core_start(NULL);
    struct fl_env *m = t_env();
    fl_cap rms, rm, inner, sigh, mds, ids, ram;
    T_ERR(fl_rm_session_open(m, &rms), 0);
    T_ERR(fl_rm_create(m, rms, 1 << 20, &rm), 0);
    T_ERR(fl_rm_create(m, rms, 0x10000, &inner), 0);
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
    /* A map's id: its owner's session and the slot of the owner's
     * capability table (the low half of the fl_cap it holds). */
    char rm_id[32], inner_id[32], sig_id[32];
    snprintf(rm_id, sizeof(rm_id), "1.%u", (unsigned)(rm & 0xffffffffu));
    snprintf(inner_id, sizeof(inner_id), "1.%u", (unsigned)(inner & 0xffffffffu));
    snprintf(sig_id, sizeof(sig_id), "1.%u", (unsigned)(sigh & 0xffffffffu));

    struct t_child c;
    t_child_spawn(&c, "client", client_main);
    client_pid = c.pid;
    atexit(kill_client);
    t_child_send(&c, "%s", token);
    t_child_expect(&c, "attached");
    T_WAIT_UNTIL(t_core_log_contains(core, "reflect READ fault"));

    ctl("", out, sizeof(out));
    snprintf(want, sizeof(want), "session 1 pid %d (test_ctl): running, RAM ", (int)getpid());
    expect(out, want);
    snprintf(want, sizeof(want), "session 2 pid %d (test_ctl): running, RAM ", (int)c.pid);
    expect(out, want);
    expect_not(out, "(faultline-ctl)"); /* not itself */
    expect_not(out, "session 3");
    snprintf(want, sizeof(want),
             "map %s (session 1): managed map of 1 MiB, 2 regions, fault handler signal %s "
             "pending (1 submit not picked up), 1 fault waiting",
             rm_id, sig_id);
    expect(out, want);
    expect(out, "  [0, +0x1000) r-- RAM 8 KiB @0 (memfd 1)");
    snprintf(want, sizeof(want),
             "  [0x40000, +0x10000) rw- map %s, managed map of 64 KiB @0:", inner_id);
    expect(out, want);
    expect(out, "    [0x3000, +0x1000) rw- RAM 8 KiB @0x1000 (memfd 1)");
    snprintf(want, sizeof(want), "map %s (session 1): managed map of 64 KiB, 1 region, no fault",
             inner_id);
    expect(out, want);
    snprintf(want, sizeof(want), "  fault 0 on map %s: READ at 0x5000 by session 2 thread %d, ",
             rm_id, (int)c.pid);
    expect(out, want);
    /* Human sizes: the core line says KiB or more, never "0 MiB". */
    expect(out, "core: RAM ");
    expect(out, ", 2 sessions\n");
    expect_not(out, " 0 MiB");
    expect_not(out, " 0 KiB");

    /* The manager picks the signal up but does not answer: taken. */
    T_EQ(fl_signal_wait(m, sigh, 1000), 1);
    ctl("maps", out, sizeof(out));
    snprintf(want, sizeof(want), "fault handler signal %s taken", sig_id);
    expect(out, want);
    expect_not(out, "session 1 pid"); /* only the maps */

    /* The client stopped. */
    T_EQ(kill(c.pid, SIGSTOP), 0);
    T_WAIT_UNTIL(proc_state(c.pid) == 'T');
    ctl("sessions faults", out, sizeof(out));
    snprintf(want, sizeof(want), "session 2 pid %d (test_ctl): stopped, RAM ", (int)c.pid);
    expect(out, want);
    snprintf(want, sizeof(want),
             "map %s of session 1 (pid %d (test_ctl), running): 1 fault waiting, fault handler "
             "signal %s taken",
             rm_id, (int)getpid(), sig_id);
    expect(out, want);
    snprintf(want, sizeof(want), "  fault 0 on map %s: READ at 0x5000 by session 2 thread %d, ",
             rm_id, (int)c.pid);
    expect(out, want);
    expect_not(out, "  [0, +0x1000)"); /* no trees */

    /* A session whose process is gone. */
    pid_t gone_pid;
    int gone = gone_session(&gone_pid);
    ctl("sessions", out, sizeof(out));
    snprintf(want, sizeof(want), " pid %d (test_ctl): its process is gone, RAM ", (int)gone_pid);
    expect(out, want);
    expect_not(out, "(faultline-ctl)");

    /* JSON: the same, for scripts. */
    ctl("--json", out, sizeof(out));
    expect_json(out);
    T_ASSERT(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
    expect(out, "{\"schema\":\"faultline-ctl/1\",\"time\":");
    snprintf(want, sizeof(want),
             "{\"id\":2,\"label\":\"pid %d (test_ctl)\",\"pid\":%d,\"uid\":%u,"
             "\"process\":\"stopped\",\"proc_state\":\"T\",\"parent\":null,\"uffd\":true,",
             (int)c.pid, (int)c.pid, (unsigned)getuid());
    expect(out, want);
    expect(out, "\"process\":\"gone\"");
    snprintf(want, sizeof(want),
             "{\"id\":\"%s\",\"session\":1,\"kind\":\"managed\",\"size\":1048576,"
             "\"region_count\":2,\"fault_handler\":{\"signal\":\"%s\",\"state\":\"taken\","
             "\"pending\":0},\"faults_waiting\":1,\"regions\":[{\"start\":0,\"size\":4096,"
             "\"rights\":\"r--\",\"kind\":\"ram\",\"dataspace_size\":8192,\"offset\":0,"
             "\"memfd\":1,\"moving\":false},{\"start\":262144,\"size\":65536,\"rights\":\"rw-\","
             "\"kind\":\"managed\",\"dataspace_size\":65536,\"offset\":0,\"map\":\"%s\"}]}",
             rm_id, sig_id, inner_id);
    expect(out, want);
    snprintf(want, sizeof(want),
             "\"faults\":[{\"map\":\"%s\",\"index\":0,\"type\":\"READ\",\"addr\":20480,"
             "\"session\":2,\"thread\":%d,\"segv\":false,\"age_ms\":",
             rm_id, (int)c.pid);
    expect(out, want);
    expect(out, "\"core\":{\"ram_used\":");
    expect(out, "\"sessions\":3}");
    expect(out, "\"left_out\":0}");
    expect_not(out, "faultline-ctl)");

    /* --watch: a snapshot per interval; --count ends it. */
    ctl("--json --watch 0.05 --count 3 faults", out, sizeof(out));
    expect_json(out);
    int lines = 0;
    for (const char *p = out; (p = strstr(p, "{\"schema\":\"faultline-ctl/1\"")); p++) lines++;
    T_EQ(lines, 3);
    expect_not(out, "\"sessions\":[");
    snprintf(want, sizeof(want), "\"maps\":[{\"id\":\"%s\",", rm_id);
    expect(out, want);
    ctl("--watch 0.05 --count 2 sessions", out, sizeof(out));
    lines = 0;
    for (const char *p = out; (p = strstr(p, "--- faultline-ctl ")); p++) lines++;
    T_EQ(lines, 2);

    close(gone);
    kill(c.pid, SIGKILL);
    T_EQ(t_wait(c.pid), 128 + SIGKILL);
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(usage, live_core)
