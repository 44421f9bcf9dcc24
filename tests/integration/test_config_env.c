/*
 * Configuration is parsed once, the same way everywhere:
 *
 * - $FAULTLINE_WINDOW_SIZE takes sizes with K, M, G: 4G gives a 4 GiB window
 *   (not 4 bytes); garbage, 0 or a sign fail fl_env_open with INVALID_ARG and
 *   one line naming the variable and the value, before anything is set up
 *   (no thread, no connection).
 * - $FAULTLINE_VMA_BUDGET is a number: garbage, 0 or K-suffixed values fail
 *   the same way.
 * - NO_CORE comes with a line naming the socket tried and where the path came
 *   from; a socket path too long for a Unix socket says so.
 * - A malformed $FAULTLINE_PD_TOKEN is named too.
 * - Core's options share the parser: suffixes work (--ram-quota 1M limits a
 *   session to 1 MiB), garbage and 0 are refused naming option and value.
 */
#include "harness.h"

#include "capture.h"

#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

/* What fl_env_open said on stderr, and its result. */
static const char *said;
static int open_env(struct fl_env **env, const struct fl_env_config *cfg)
{
    static struct t_capture cap;
    T_EQ(t_capture_begin(&cap, 2), 0);
    int r = fl_env_open(env, cfg);
    said = t_capture_end(&cap);
    return r;
}

/* A core (with --ram-quota ram_quota, unless NULL), and none of the
 * variables set. */
static struct t_core *start(const char *ram_quota)
{
    unsetenv("FAULTLINE_WINDOW_SIZE");
    unsetenv("FAULTLINE_VMA_BUDGET");
    unsetenv("FAULTLINE_PD_TOKEN");
    return t_core_start(ram_quota ? "--ram-quota" : NULL, ram_quota, NULL);
}

static int threads(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    T_ASSERT(d);
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* One line, containing want. */
static void said_line(const char *want)
{
    if (!strstr(said, want)) T_FAILF("stderr: want a line with \"%s\", got \"%s\"", want, said);
    if (strchr(said, '\n') != said + strlen(said) - 1)
        T_FAILF("stderr: not one line: \"%s\"", said);
}

static void window_sizes(void)
{
    struct t_core *c = start(NULL);
    static const struct {
        const char *value;
        size_t size;
    } good[] = {
        {"4G", 4ull << 30}, {"64K", 64 << 10},     {"1m", 1 << 20},
        {"8192", 8192},     {"0x100000", 1 << 20}, {"5000", 8192}, /* rounded up */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        setenv("FAULTLINE_WINDOW_SIZE", good[i].value, 1);
        struct fl_env *env = NULL;
        T_ERR(open_env(&env, NULL), 0);
        if (fl_env_window_size(env) != good[i].size)
            T_FAILF("$FAULTLINE_WINDOW_SIZE=%s gave a window of %zu bytes, want %zu", good[i].value,
                    fl_env_window_size(env), good[i].size);
        fl_env_close(env);
    }
    const char *bad[] = {"abc", "0", "4X", "-1", "1.5G", " 4G", "4G ", "4GiB", "0x"};
    int before = threads();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("FAULTLINE_WINDOW_SIZE", bad[i], 1);
        struct fl_env *env = NULL;
        T_ERR(open_env(&env, NULL), -FL_E_INVALID_ARG);
        T_ASSERT(env == NULL);
        char want[128];
        snprintf(want, sizeof(want), "$FAULTLINE_WINDOW_SIZE: '%s' is ", bad[i]);
        said_line(want);
    }
    T_EQ(threads(), before); /* no agent was started */
    /* The configuration's own size wins: the variable is not read. */
    setenv("FAULTLINE_WINDOW_SIZE", "abc", 1);
    struct fl_env_config cfg = {.window_size = 1 << 20};
    struct fl_env *env = NULL;
    T_ERR(open_env(&env, &cfg), 0);
    T_EQ(fl_env_window_size(env), 1 << 20);
    fl_env_close(env);
    /* Empty is unset: the default 1 GiB. */
    setenv("FAULTLINE_WINDOW_SIZE", "", 1);
    T_ERR(open_env(&env, NULL), 0);
    T_EQ(fl_env_window_size(env), 1ull << 30);
    fl_env_close(env);
    T_EQ(t_core_stop(c), 0);
}

static void vma_budget(void)
{
    struct t_core *c = start(NULL);
    const char *bad[] = {"abc", "0", "3", "4K", "-5", "16384x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("FAULTLINE_VMA_BUDGET", bad[i], 1);
        struct fl_env *env = NULL;
        T_ERR(open_env(&env, NULL), -FL_E_INVALID_ARG);
        char want[128];
        snprintf(want, sizeof(want), "$FAULTLINE_VMA_BUDGET: '%s' is ", bad[i]);
        said_line(want);
    }
    setenv("FAULTLINE_VMA_BUDGET", "64", 1);
    struct fl_env *env = NULL;
    T_ERR(open_env(&env, NULL), 0);
    fl_env_close(env);
    T_EQ(t_core_stop(c), 0);
}

static void socket_paths(void)
{
    struct t_core *c = start(NULL);
    const char *real = c->socket;
    char dir[] = "/tmp/fltest-cfg-XXXXXX", path[256];
    T_ASSERT(mkdtemp(dir));
    struct fl_env *env = NULL;

    /* $FAULTLINE_SOCKET names a socket nobody serves. */
    snprintf(path, sizeof(path), "%s/none.sock", dir);
    setenv("FAULTLINE_SOCKET", path, 1);
    T_ERR(open_env(&env, NULL), -FL_E_NO_CORE);
    char want[512];
    snprintf(want, sizeof(want), "no faultline-core serves %s ($FAULTLINE_SOCKET): ", path);
    said_line(want);

    /* The default under $XDG_RUNTIME_DIR. */
    unsetenv("FAULTLINE_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    char *xdg_saved = xdg ? strdup(xdg) : NULL;
    setenv("XDG_RUNTIME_DIR", dir, 1);
    T_ERR(open_env(&env, NULL), -FL_E_NO_CORE);
    snprintf(
        want, sizeof(want),
        "no faultline-core serves %s/faultline/core.sock ($XDG_RUNTIME_DIR/faultline/core.sock)",
        dir);
    said_line(want);
    if (xdg_saved)
        setenv("XDG_RUNTIME_DIR", xdg_saved, 1);
    else
        unsetenv("XDG_RUNTIME_DIR");
    free(xdg_saved);

    /* Too long for a Unix socket address: said so, with its length. */
    char longer[200];
    memset(longer, 'a', sizeof(longer) - 1);
    memcpy(longer, "/tmp/", 5);
    longer[150] = 0;
    setenv("FAULTLINE_SOCKET", longer, 1);
    T_ERR(open_env(&env, NULL), -FL_E_INVALID_ARG);
    said_line("($FAULTLINE_SOCKET) is 150 bytes long; a Unix socket path has at most 107");
    struct fl_env_config cfg = {.socket_path = longer};
    setenv("FAULTLINE_SOCKET", real, 1);
    T_ERR(open_env(&env, &cfg), -FL_E_INVALID_ARG);
    said_line("(fl_env_config.socket_path) is 150 bytes long");
    rmdir(dir);
    T_EQ(t_core_stop(c), 0);
}

static void pd_token(void)
{
    struct t_core *c = start(NULL);
    setenv("FAULTLINE_PD_TOKEN", "not-a-token", 1);
    struct fl_env *env = NULL;
    T_ERR(open_env(&env, NULL), -FL_E_TOKEN);
    said_line("$FAULTLINE_PD_TOKEN: 'not-a-token' is not a token of 32 hex digits");
    T_EQ(t_core_stop(c), 0);
}

/* Core's options: exit 2 and one line naming option and value. */
static void core_rejects(const char *opt, const char *value, const char *want)
{
    char buf[1024], line[256];
    const char *more[] = {"--socket", "/tmp/fltest-unused.sock", opt, value, NULL};
    int code = t_core_run(more, buf, sizeof(buf));
    if (code != 2) T_FAILF("core %s %s exited with %d, want 2: %s", opt, value, code, buf);
    snprintf(line, sizeof(line), "faultline-core: %s: '%s' is %s", opt, value, want);
    if (!strstr(buf, line)) T_FAILF("core %s %s said \"%s\", want \"%s\"", opt, value, buf, line);
}

static void core_options(void)
{
    core_rejects("--ram-quota", "12X", "not a size");
    core_rejects("--ram-quota", "0", "out of range");
    core_rejects("--ram-budget", "lots", "not a size");
    core_rejects("--cap-quota", "many", "not a number");
    core_rejects("--cap-quota", "4K", "not a number");
    core_rejects("--revoke-deadline", "0", "out of range");
    core_rejects("--revoke-deadline", "2s", "not a number");

    /* A suffixed quota is that many bytes: 1M allows 512K, not 2M. */
    struct t_core *c = start("1M");
    struct fl_env *env = t_env();
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 2 << 20, &ds), -FL_E_OUT_OF_RAM);
    T_ERR(fl_ram_alloc(env, 512 << 10, &ds), 0);
    fl_env_close(env);
    T_EQ(t_core_stop(c), 0);
}

T_CASES(window_sizes, vma_budget, pd_token, socket_paths, core_options)
