/*
 * Core serves its own uid (and root) only. With the socket opened up for the
 * test (directory 0755, socket 0666), a process of another uid can connect,
 * but core refuses it: fl_env_open fails, a raw HELLO gets no answer but the
 * end of the connection, and core's log says "refusing connection ... uid".
 * Root sessions — one opened before, one after — are served throughout.
 * Needs root (to become uid 65534); skipped otherwise.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#define NOBODY 65534

static int nobody_main(struct t_child *c)
{
    t_become(NOBODY, NOBODY, 0, NULL);

    /* The file system lets this uid in: whatever refuses it is core. */
    int s = t_raw_connect();
    int sr = t_raw_hello(s, 0, -1);
    T_ASSERT(sr == 0 || sr == -EPIPE || sr == -ECONNRESET);
    char buf[FL_MSG_MAX + 8];
    ssize_t n = t_raw_recv(s, buf, sizeof(buf), "a foreign uid's HELLO");
    if (n > 0) {
        /* The only answer allowed: the refusal (id 0, PERMISSION), then EOF. */
        struct fl_msg_reply r;
        memset(&r, 0, sizeof(r));
        memcpy(&r, buf, n < (ssize_t)sizeof(r) ? (size_t)n : sizeof(r));
        if (n != (ssize_t)sizeof(r) || r.hdr.type != FL_MSG_REPLY || r.hdr.id != 0 ||
            r.status != -FL_E_PERMISSION)
            T_FAILF("core answered a foreign uid (%zd bytes, id %llu, status %d)", n,
                    (unsigned long long)r.hdr.id, r.status);
        /* EOF, or a reset: core closed without reading our HELLO. */
        n = t_raw_recv(s, buf, sizeof(buf), "a refused foreign uid");
        if (n != 0 && n != -ECONNRESET)
            T_FAILF("core did not close a foreign uid's connection after refusing it");
    }
    close(s);

    /* The library says no as well. */
    struct fl_env *env = NULL;
    int r = fl_env_open(&env, NULL);
    t_child_say(c, "%d", r);
    if (r == 0) fl_env_close(env);
    return 0;
}

static void other_uid_refused(void)
{
    t_need_root("to act as another uid");
    signal(SIGPIPE, SIG_IGN);
    struct t_core *core = t_core_start(NULL);
    struct fl_env *before = t_env();
    t_session_works(before, 2, 1);

    /* Test only: let another uid reach the socket. */
    T_ASSERT(chmod(core->dir, 0755) == 0);
    T_ASSERT(chmod(core->socket, 0666) == 0);

    struct t_child child;
    t_child_spawn(&child, "uid 65534", nobody_main);
    char line[64];
    t_child_line(&child, line, sizeof(line));
    T_EQ(t_wait(child.pid), 0);
    int r = atoi(line);
    if (r == 0) T_FAILF("core served a session of uid %d", NOBODY);
    fprintf(stderr, "fl_env_open as uid %d: %s\n", NOBODY, fl_error_name(r));
    T_EQ(r, -FL_E_PERMISSION);

    char want[96];
    snprintf(want, sizeof(want), "refusing connection from pid %d: uid %d", (int)child.pid, NOBODY);
    T_ASSERT(t_core_log_contains(core, want));

    /* Root is still served: the session from before and a new one. */
    t_session_works(before, 2, 2);
    struct fl_env *after = t_env();
    t_session_works(after, 2, 3);
    fl_env_close(after);
    fl_env_close(before);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(other_uid_refused)
