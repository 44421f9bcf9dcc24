/*
 * The manager helpers of faultline/manager.h, with a real core:
 *
 * - A manager written with nothing but the library (fl_publish,
 *   fl_manager_wait, fl_perror) serves a client's faults, and SIGTERM or
 *   SIGINT ends its wait with 0 so that it exits cleanly with 0.
 * - The signal-mask rule is the library's business: the manager may arm
 *   fl_manager_catch_stop before or after fl_env_open; every thread of it,
 *   the agent included, blocks SIGTERM and SIGINT, so the kernel cannot pick
 *   the agent to die of one.
 * - fl_publish writes "NAME TOKEN" to $FAULTLINE_EXPORT_FD as faultline-run
 *   reads it.
 * - fl_manager_wait's timeout and its errors with a session.
 * - A component that does not catch stop requests still dies of SIGTERM as
 *   usual: the agent blocking it takes nothing away.
 */
#include "harness.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#define SIZE  (1 << 20)
#define CHUNK (64 << 10)

struct manager_arg {
    bool catch_first; /* fl_manager_catch_stop before fl_env_open */
    struct t_pipe exports, ready;
};

/* The manager: the README's walkthrough, helpers from the library only. */
static int manager(void *p)
{
    struct manager_arg *a = p;
    struct fl_env *env;
    fl_cap rms, rm, sigh, mds;
    int r;
    if (a->catch_first && fl_manager_catch_stop() < 0) return 10;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if (!a->catch_first && fl_manager_catch_stop() < 0) return 10;
    if ((r = fl_rm_session_open(env, &rms)) < 0 || (r = fl_rm_create(env, rms, SIZE, &rm)) < 0 ||
        (r = fl_signal_context_create(env, &sigh)) < 0 ||
        (r = fl_region_map_fault_handler(env, rm, sigh)) < 0 ||
        (r = fl_region_map_dataspace(env, rm, &mds)) < 0)
        return fl_perror("set-up", r);
    /* Nothing faulted yet: the wait times out; a foreign capability is refused. */
    if ((r = (int)fl_manager_wait(env, sigh, 30)) != -FL_E_TIMEOUT) return fl_perror("timeout", r);
    if ((r = (int)fl_manager_wait(env, sigh + 1000, 0)) != -FL_E_INVALID_CAP) return 11;
    char token[FL_TOKEN_LEN + 1], fd[16];
    if ((r = fl_cap_export(env, mds, token)) < 0) return fl_perror("export", r);
    snprintf(fd, sizeof(fd), "%d", a->exports.w);
    setenv("FAULTLINE_EXPORT_FD", fd, 1);
    if (fl_publish("MDS", token) < 0) return 12;
    long n;
    while ((n = fl_manager_wait(env, sigh, -1)) > 0) {
        struct fl_fault f;
        while ((r = fl_region_map_fault(env, rm, &f)) == 0 && f.type != FL_FAULT_NONE) {
            uintptr_t at = f.addr & ~(uintptr_t)(CHUNK - 1);
            fl_cap ds;
            if ((r = fl_ram_alloc(env, CHUNK, &ds)) < 0) return fl_perror("alloc", r);
            char *m = fl_attach(env, ds, &r);
            if (!m) return fl_perror("attach locally", r);
            for (size_t i = 0; i < CHUNK; i += 4096)
                snprintf(m + i, 64, "page %#lx", (unsigned long)(at + i));
            fl_detach(env, m);
            struct fl_attr attr = {.use_at = true, .at = at, .writeable = true};
            if ((r = fl_region_map_attach(env, rm, ds, &attr, NULL)) < 0)
                return fl_perror("attach", r);
        }
        if (r < 0) return fl_perror("fault()", r);
        t_pipe_send(&a->ready, "served");
    }
    if (n < 0) return fl_perror("wait", (int)n);
    /* Asked to stop: the wait says so again, at once. */
    if (fl_manager_wait(env, sigh, -1) != 0) return 13;
    fl_env_close(env);
    return 0;
}

/* Whether every thread of pid blocks sig (SigBlk of each task). */
static int threads_blocking(pid_t pid, int sig, int *nthreads)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    T_ASSERT(d);
    int all = 1;
    *nthreads = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[384], line[256];
        snprintf(path, sizeof(path), "%s/%s/status", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue; /* gone meanwhile */
        unsigned long long blk = 0;
        while (fgets(line, sizeof(line), f))
            if (!strncmp(line, "SigBlk:", 7)) blk = strtoull(line + 7, NULL, 16);
        fclose(f);
        all &= (int)(blk >> (sig - 1)) & 1;
        (*nthreads)++;
    }
    closedir(d);
    return all;
}

static void serve_and_stop(bool catch_first, int sig)
{
    struct t_core *core = t_core_start(NULL);
    struct manager_arg a = {.catch_first = catch_first};
    t_pipe_open(&a.exports);
    t_pipe_open(&a.ready);
    pid_t pid = t_spawn(manager, &a);

    char line[128], name[16], token[48];
    T_ASSERT(t_pipe_recv(&a.exports, line, sizeof(line)) == 0);
    if (sscanf(line, "%15s %40s", name, token) != 2 || strcmp(name, "MDS") ||
        strlen(token) != FL_TOKEN_LEN)
        T_FAILF("the manager published '%s', want 'MDS <%d hex digits>'", line, FL_TOKEN_LEN);

    struct fl_env *env = t_env();
    char *p = t_import_attach(env, token);
    for (size_t off = 0; off < SIZE; off += 16 * 4096) {
        char want[64];
        snprintf(want, sizeof(want), "page %#lx", (unsigned long)off);
        if (strcmp(p + off, want))
            T_FAILF("at %#zx read \"%.20s\", want \"%s\"", off, p + off, want);
    }
    T_ASSERT(t_pipe_recv(&a.ready, line, sizeof(line)) == 0);

    /* Main thread and agent (at least) all block the stop signals. */
    int n;
    if (!threads_blocking(pid, SIGTERM, &n) || !threads_blocking(pid, SIGINT, &n))
        T_FAILF("a thread of the manager (of %d) does not block SIGTERM and SIGINT", n);
    T_ASSERT(n >= 2);

    T_ASSERT(kill(pid, sig) == 0);
    int code = t_wait(pid);
    if (code != 0)
        T_FAILF("manager (catch_stop %s fl_env_open) ended with %d after %s, want a clean 0",
                catch_first ? "before" : "after", code, strsignal(sig));
    fl_env_close(env);
    close(a.exports.r);
    close(a.exports.w);
    close(a.ready.r);
    close(a.ready.w);
    T_EQ(t_core_stop(core), 0);
}

/* A plain component: opens a session, says so, waits. */
static int plain(void *p)
{
    struct t_pipe *ready = p;
    struct fl_env *env;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect", r);
    t_pipe_send(ready, "open");
    for (;;) pause();
}

static void plain_dies_of_sigterm(void)
{
    struct t_core *core = t_core_start(NULL);
    struct t_pipe ready;
    t_pipe_open(&ready);
    pid_t pid = t_spawn(plain, &ready);
    char line[16];
    T_ASSERT(t_pipe_recv(&ready, line, sizeof(line)) == 0);
    int n;
    T_ASSERT(!threads_blocking(pid, SIGTERM, &n)); /* its main thread does not */
    T_ASSERT(kill(pid, SIGTERM) == 0);
    T_EQ(t_wait(pid), 128 + SIGTERM);
    close(ready.r);
    close(ready.w);
    T_EQ(t_core_stop(core), 0);
}

/* Served, and stopped cleanly by SIGTERM or SIGINT, with the stop requests
 * caught before or after fl_env_open. */
static void catch_first_sigterm(void)
{
    serve_and_stop(true, SIGTERM);
}

static void catch_after_sigterm(void)
{
    serve_and_stop(false, SIGTERM);
}

static void catch_after_sigint(void)
{
    serve_and_stop(false, SIGINT);
}

T_CASES(catch_first_sigterm, catch_after_sigterm, catch_after_sigint, plain_dies_of_sigterm)
