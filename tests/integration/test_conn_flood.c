/*
 * Thousands of connections up to core's descriptor limit. Core runs under
 * RLIMIT_NOFILE 6000 (budget 5936; a session costs 3: its socket, uffd slot
 * and pidfd). One process opens connection after connection (each sends
 * HELLO and reads the answer) until core refuses one: the refusal is a REPLY
 * with id 0 and -FL_E_BUSY, then EOF, and core's log says "descriptor budget".
 * Core does not crash, does not hit EMFILE on its own descriptors, and a
 * healthy component opened before the flood keeps completing rounds of
 * attach/touch/detach and session info on memory it allocated before (it
 * needs no new descriptor of core's: the budget is core-wide, so a new
 * allocation of anybody's would get OUT_OF_CAPS now; there is no per-uid or
 * per-process connection limit, see doc/limits.md). When the connections go,
 * core's descriptors return to their baseline and new sessions work again.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#define CORE_NOFILE 6000
#define MAX_CONN    (CORE_NOFILE / 3 + 16)

/* ---- the flood ---- */

/* Connect and HELLO: 1 if served, 0 if refused (BUSY, then EOF). */
static int connect_one(int *out)
{
    int s = t_raw_connect();
    int sr = t_raw_hello(s, 0, -1);
    T_ASSERT(sr == 0 || sr == -EPIPE || sr == -ECONNRESET);
    struct fl_msg_reply r;
    ssize_t n;
    /* A reset can be reported before the refusal still queued: read on once. */
    int resets = 0;
    do n = t_raw_recv(s, &r, sizeof(r), "a connection of the flood");
    while (n == -ECONNRESET && resets++ == 0);
    T_EQ(n, sizeof(r));
    T_EQ(r.hdr.type, FL_MSG_REPLY);
    if (r.status == 0) {
        T_EQ(r.hdr.id, 1);
        *out = s;
        return 1;
    }
    T_EQ(r.hdr.id, 0);
    T_ERR(r.status, -FL_E_BUSY);
    char more[8];
    n = t_raw_recv(s, more, sizeof(more), "a refused connection");
    T_ASSERT(n == 0 || n == -ECONNRESET);
    close(s);
    return 0;
}

/* BUSY only until core has torn the flood down. */
static int opens(struct fl_env **env)
{
    int r = fl_env_open(env, NULL);
    if (r != 0) T_ERR(r, -FL_E_BUSY);
    return r == 0;
}

static void flood_refused_and_recovered(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    T_ASSERT(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_max < MAX_CONN + 64)
        t_skip("RLIMIT_NOFILE hard limit %lu is too low", (unsigned long)rl.rlim_max);
    rl.rlim_cur = rl.rlim_max;
    T_ASSERT(setrlimit(RLIMIT_NOFILE, &rl) == 0);

    char nofile[16];
    snprintf(nofile, sizeof(nofile), "%d", CORE_NOFILE);
    setenv("FL_TEST_CORE_NOFILE", nofile, 1);
    struct t_core *core = t_core_start(NULL);
    unsetenv("FL_TEST_CORE_NOFILE");
    t_baseline_begin(core, T_HEALTHY_KEEPS_ITS_DATASPACE);

    static int conns[MAX_CONN];
    int n = 0;
    while (n < MAX_CONN && connect_one(&conns[n])) {
        n++;
        if (n % 500 == 0) t_healthy_advances("connections piling up");
    }
    fprintf(stderr, "core served %d connections, then refused one\n", n);
    T_ASSERT(n > 1000 && n < MAX_CONN);
    T_WAIT_UNTIL(t_core_log_contains(core, "descriptor budget"));
    /* Core's own descriptors never ran out: it never had to say so. */
    T_ASSERT(!t_core_log_contains(core, "out of descriptors"));
    t_healthy_advances("core refusing connections");
    /* Refused again, and again: no state piles up for refused peers. */
    for (int i = 0; i < 50; i++) {
        int s;
        T_EQ(connect_one(&s), 0);
    }
    t_healthy_advances("refused connections");
    struct fl_env *none = NULL;
    T_ERR(fl_env_open(&none, NULL), -FL_E_BUSY);

    /* The flood goes away: core recovers. */
    for (int i = 0; i < n; i++) close(conns[i]);
    t_healthy_advances("the flood's end");
    T_WAIT_FOR(t_core_fd_count(core) <= core->fd_base + 16,
               "core's descriptors back near baseline");
    struct fl_env *later = NULL;
    T_WAIT_FOR(opens(&later), "a new session after the flood");
    fl_cap ds;
    T_ERR(fl_ram_alloc(later, 4096, &ds), 0);
    T_ERR(fl_ram_free(later, ds), 0);
    fl_env_close(later);
    t_baseline_end(core);
}

T_CASES(flood_refused_and_recovered)
