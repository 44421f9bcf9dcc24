/*
 * Integration test harness: every test starts its own faultline-core on a
 * private socket in a fresh temporary directory, with real component
 * processes. Exit codes follow liburing: 0 pass, 1 fail, 77 skip.
 *
 * The core binary comes from $FAULTLINE_CORE (set by meson); the backend
 * from $FL_TEST_BACKEND (epoll or io_uring, default auto).
 */
#ifndef FL_TEST_HARNESS_H
#define FL_TEST_HARNESS_H

#include <faultline/faultline.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define T_PASS 0
#define T_FAIL 1
#define T_SKIP 77

/* Assertions print both operands and the line, then exit 1 (the core is
 * stopped by the atexit handler). */
#define T_ASSERT(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            exit(T_FAIL);                                                                          \
        }                                                                                          \
    } while (0)
#define T_EQ(a, b)                                                                                 \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b) {                                                                            \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    _a, _b);                                                                       \
            exit(T_FAIL);                                                                          \
        }                                                                                          \
    } while (0)
/* An fl_ call's result against an expected FL_E_* (0 for success). */
#define T_ERR(call, expect)                                                                        \
    do {                                                                                           \
        int _r = (call), _e = (expect);                                                            \
        if (_r != _e) {                                                                            \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s)\n", __FILE__, __LINE__,  \
                    #call, _r, fl_error_name(_r), _e, fl_error_name(_e));                          \
            exit(T_FAIL);                                                                          \
        }                                                                                          \
    } while (0)

struct t_core {
    pid_t pid;
    char dir[64];
    char socket[128];
    char log[128];
};

/* Start a core with extra options (with $FL_TEST_CORE_NOFILE set, under that
 * RLIMIT_NOFILE; with $FL_TEST_CORE_UID, as that uid) (NULL-terminated list, may be empty);
 * sets FAULTLINE_SOCKET for this process and its children. Waits until the
 * core accepts connections. */
struct t_core *t_core_start(const char *opt, ...);
/* SIGTERM the core and wait; returns its exit status. Checks the socket is
 * gone. Frees c. */
int t_core_stop(struct t_core *c);
/* Number of open descriptors of the core process. */
int t_core_fd_count(struct t_core *c);
/* A field of /proc/<core>/status in kB (e.g. "RssShmem"). */
long t_core_status_kb(struct t_core *c, const char *field);
/* Whether the core's log contains the text (so far). */
int t_core_log_contains(struct t_core *c, const char *text);
/* How many lines of core's log contain the text. */
int t_core_log_count(struct t_core *c, const char *text);
/* Poll cond every 5 ms; after T_WAIT_MS fail with a line naming what was
 * awaited, so a hang reads as a reason, not as meson's timeout. */
#define T_WAIT_MS 20000
#define T_WAIT_FOR(cond, what)                                                                     \
    do {                                                                                           \
        long _end = t_now_ms() + T_WAIT_MS;                                                        \
        while (!(cond)) {                                                                          \
            if (t_now_ms() > _end) {                                                               \
                fprintf(stderr, "%s:%d: timed out waiting for %s\n", __FILE__, __LINE__, what);    \
                exit(T_FAIL);                                                                      \
            }                                                                                      \
            t_sleep_ms(5);                                                                         \
        }                                                                                          \
    } while (0)
#define T_WAIT_UNTIL(cond) T_WAIT_FOR(cond, #cond)
long t_now_ms(void);
void t_sleep_ms(int ms);

/* Open a session with the test core (asserts success). */
struct fl_env *t_env(void);
/* Import a dataspace token and attach it writeable into env's address space
 * (asserts success). */
void *t_import_attach(struct fl_env *env, const char *token);

/* Fork a child running fn(arg); returns its pid. The child exits with fn's
 * return value. */
pid_t t_spawn(int (*fn)(void *), void *arg);
/* Wait for a child; returns its exit code, or 128+signal. */
int t_wait(pid_t pid);

/* A pipe for synchronising with children: write/read one line. */
struct t_pipe {
    int r, w;
};
void t_pipe_open(struct t_pipe *p);
void t_pipe_send(struct t_pipe *p, const char *line);
/* Blocks until a line arrives; returns 0, or -1 on EOF. */
int t_pipe_recv(struct t_pipe *p, char *buf, size_t len);

/* A child process obeying line commands: the parent sends with
 * t_child_send, the child reads them with t_child_command and answers with
 * t_child_say; the parent expects answers within T_WAIT_MS. */
struct t_child {
    pid_t pid;
    struct t_pipe to, from; /* parent -> child, child -> parent */
    const char *name;
    int (*fn)(struct t_child *);
};
void t_child_spawn(struct t_child *c, const char *name, int (*fn)(struct t_child *));
void t_child_send(struct t_child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* In the child: the next command (asserts the parent is still there). */
void t_child_command(struct t_child *c, char *buf, size_t len);
void t_child_say(struct t_child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* In the parent: the child's next line must be exactly want. */
void t_child_expect(struct t_child *c, const char *want);
/* In the parent: the child said nothing and is alive (halted on a fault). */
void t_child_silent(struct t_child *c);

/*
 * A healthy component in a process of its own, for tests of hostile peers:
 * it completes round after round of RPCs and memory touches, and a test
 * asserts that it keeps advancing after each hostile action (bounded by
 * T_WAIT_MS, never timed). Each round allocates a RAM dataspace, attaches,
 * touches and checks two pages, detaches and frees it -- or, when the test
 * exhausts core's descriptors, keeps one dataspace and only attaches,
 * touches, detaches and asks for its session info.
 */
enum t_healthy_kind { T_HEALTHY_ALLOCATES, T_HEALTHY_KEEPS_ITS_DATASPACE };
void t_healthy_start(enum t_healthy_kind kind);
/* Wait for three more rounds; fail naming after (and the component's error,
 * if it ended). */
void t_healthy_advances(const char *after);
unsigned long t_healthy_rounds(void);
void t_healthy_stop(void);

/* A raw protocol peer (no libfaultline): connect to the test core, send a
 * message of a type (header filled in, ids counting up), wait for the next
 * REPLY (skipping agent instructions; asserts the connection stays up). */
int t_raw_connect(void);
void t_raw_send(int fd, void *msg, unsigned type);
struct fl_msg_reply;
void t_raw_reply(int fd, struct fl_msg_reply *reply);
/* HELLO without a uffd, then import token and attach it into the raw
 * peer's address space: a peer that holds a mapping core must revoke. */
int t_raw_attached_peer(const char *token);

#endif
