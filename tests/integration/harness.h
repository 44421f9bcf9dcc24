/*
 * Integration test harness: every test starts its own faultline-core on a
 * private socket in a fresh temporary directory, with real component
 * processes. Exit codes follow liburing: 0 pass, 1 fail, 77 skip.
 *
 * A test program is a table of named cases (libuv's test-list.h):
 *
 *     static void quota_refused(void) { ... }
 *     static const struct t_case cases[] = {T_CASE(quota_refused), ...};
 *     T_MAIN(cases)
 *
 * or, where the case's name is its function's, T_CASES(quota_refused, ...).
 *
 * `-l` lists the cases, `-f NAME` (or just NAME) runs one. Each case runs in
 * a process of its own and ends with a line "PASS name", "FAIL name: reason"
 * or "SKIP name: reason" on stdout; the program exits 1 if a case failed, 77
 * if every case it ran was skipped, else 0. A case passes by returning; the
 * assertions below, t_skip and T_FAILF end it with their reason.
 *
 * The core binary comes from $FAULTLINE_CORE (set by meson); the backend
 * from $FL_TEST_BACKEND (epoll or io_uring, default auto); how core reads
 * userfaultfds from $FL_TEST_UFFD_READ (--uffd-read: nowait or uring,
 * default auto).
 */
#ifndef FL_TEST_HARNESS_H
#define FL_TEST_HARNESS_H

#include <faultline/faultline.h>

#include "proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define T_PASS 0
#define T_FAIL 1
#define T_SKIP 77

/* ---- cases ---- */

struct t_case {
    const char *name;
    void (*fn)(void);
};
#define T_CASE(f)                                                                                  \
    {                                                                                              \
        .name = #f, .fn = f                                                                        \
    }
int t_main(int argc, char **argv, const struct t_case *cases, size_t n);
#define T_MAIN(cases)                                                                              \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return t_main(argc, argv, cases, sizeof(cases) / sizeof((cases)[0]));                      \
    }
/* The table of T_CASE(fn) for each fn (up to 16), and main. */
#define T_CASES(...)                                                                               \
    static const struct t_case t_cases_[] = {T_EACH_(T_CASE, __VA_ARGS__)};                        \
    T_MAIN(t_cases_)
/* T_EACH_(m, a1, ..., an) is m(a1), ..., m(an). */
#define T_EACH_(m, ...)          T_EACH_N_(T_NARGS_(__VA_ARGS__), m, __VA_ARGS__)
#define T_EACH_N_(n, m, ...)     T_EACH_PASTE_(n, m, __VA_ARGS__)
#define T_EACH_PASTE_(n, m, ...) T_EACH_##n(m, __VA_ARGS__)

#define T_NARGS_(...)                                                                              \
    T_NARGS_N_(__VA_ARGS__, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define T_NARGS_N_(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, n, ...) n

#define T_EACH_1(m, a)       m(a)
#define T_EACH_2(m, a, ...)  m(a), T_EACH_1(m, __VA_ARGS__)
#define T_EACH_3(m, a, ...)  m(a), T_EACH_2(m, __VA_ARGS__)
#define T_EACH_4(m, a, ...)  m(a), T_EACH_3(m, __VA_ARGS__)
#define T_EACH_5(m, a, ...)  m(a), T_EACH_4(m, __VA_ARGS__)
#define T_EACH_6(m, a, ...)  m(a), T_EACH_5(m, __VA_ARGS__)
#define T_EACH_7(m, a, ...)  m(a), T_EACH_6(m, __VA_ARGS__)
#define T_EACH_8(m, a, ...)  m(a), T_EACH_7(m, __VA_ARGS__)
#define T_EACH_9(m, a, ...)  m(a), T_EACH_8(m, __VA_ARGS__)
#define T_EACH_10(m, a, ...) m(a), T_EACH_9(m, __VA_ARGS__)
#define T_EACH_11(m, a, ...) m(a), T_EACH_10(m, __VA_ARGS__)
#define T_EACH_12(m, a, ...) m(a), T_EACH_11(m, __VA_ARGS__)
#define T_EACH_13(m, a, ...) m(a), T_EACH_12(m, __VA_ARGS__)
#define T_EACH_14(m, a, ...) m(a), T_EACH_13(m, __VA_ARGS__)
#define T_EACH_15(m, a, ...) m(a), T_EACH_14(m, __VA_ARGS__)
#define T_EACH_16(m, a, ...) m(a), T_EACH_15(m, __VA_ARGS__)

/* Fail: print "file:line: reason" on stderr and end the process with
 * T_FAIL. In a case's own process the reason is the case's FAIL line; the
 * first reason of a process it spawned is added to it. The core is stopped by
 * the exit handler. */
_Noreturn void t_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define T_FAILF(...) t_fail_at(__FILE__, __LINE__, __VA_ARGS__)
/* Skip the case, saying why. */
_Noreturn void t_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Skip unless root; why says what for. */
void t_need_root(const char *why);

/* Assertions print both operands and the line, and fail. */
#define T_ASSERT(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) T_FAILF("assertion failed: %s", #cond);                                       \
    } while (0)
#define T_EQ(a, b)                                                                                 \
    do {                                                                                           \
        long long _a = (long long)(a), _b = (long long)(b);                                        \
        if (_a != _b) T_FAILF("%s == %s failed: %lld != %lld", #a, #b, _a, _b);                    \
    } while (0)
/* An fl_ call's result against an expected FL_E_* (0 for success). */
#define T_ERR(call, expect)                                                                        \
    do {                                                                                           \
        int _r = (call), _e = (expect);                                                            \
        if (_r != _e)                                                                              \
            T_FAILF("%s returned %d (%s), expected %d (%s)", #call, _r, fl_error_name(_r), _e,     \
                    fl_error_name(_e));                                                            \
    } while (0)

/* Poll cond every 5 ms; after T_WAIT_MS fail with a line naming what was
 * awaited, so a hang reads as a reason, not as meson's timeout. */
#define T_WAIT_MS 20000
#define T_WAIT_FOR(cond, what)                                                                     \
    do {                                                                                           \
        long _end = t_now_ms() + T_WAIT_MS;                                                        \
        while (!(cond)) {                                                                          \
            if (t_now_ms() > _end) T_FAILF("timed out waiting for %s", what);                      \
            t_sleep_ms(5);                                                                         \
        }                                                                                          \
    } while (0)
#define T_WAIT_UNTIL(cond) T_WAIT_FOR(cond, #cond)
long t_now_ms(void);
void t_sleep_ms(int ms);
/* Poll the n descriptors until one is ready (returns how many are); at the
 * time end (of t_now_ms) fail: "no WHAT within T_WAIT_MS ms". */
struct pollfd;
int t_poll_until(struct pollfd *pf, int n, long end, const char *what);

/* ---- the core ---- */

struct t_core {
    pid_t pid;
    char dir[64];
    char socket[128];
    char log[128];
    int fd_base; /* its descriptors at t_baseline_begin */
};

/* Start a core with extra options (with $FL_TEST_CORE_NOFILE set, under that
 * RLIMIT_NOFILE; with $FL_TEST_CORE_UID, as that uid) (NULL-terminated list, may be empty);
 * sets FAULTLINE_SOCKET for this process and its children. Waits until the
 * core accepts connections. */
struct t_core *t_core_start(const char *opt, ...);
/* The command line every test core starts with: the binary, "-v -v", the
 * backend and --uffd-read. Fills argv (room for max, at least 8) and returns
 * how many it filled. */
int t_core_argv(const char **argv, int max);
/* Exec such a core with more options (NULL-terminated, may be NULL), its
 * stdout and stderr to out, killed when this process dies; prep(arg) (unless
 * NULL) runs in the child before the exec. Returns its pid. No socket is set
 * up: more names one, or the core is expected to refuse. */
pid_t t_core_exec(int out, const char *const more[], void (*prep)(void *), void *arg);
/* Run one to its end (within T_WAIT_MS): its exit status, what it printed in
 * said. */
int t_core_run(const char *const more[], char *said, size_t len);
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
/* Whether one line of core's log contains every text of the list. */
int t_core_log_line_has(struct t_core *c, const char *text, ...) __attribute__((sentinel));
/* Whether a line of core's log names the process ("(pid N (") and contains text. */
int t_core_log_names(struct t_core *c, pid_t pid, const char *text);

/* ---- sessions and memory ---- */

/* Open a session with the test core (asserts success). */
struct fl_env *t_env(void);
/* Import a dataspace token and attach it writeable into env's address space
 * (asserts success). */
void *t_import_attach(struct fl_env *env, const char *token);
/* Allocate a RAM dataspace and attach it writeable into env's own address
 * space (asserts success); its capability in *ds. */
void *t_ram(struct fl_env *env, size_t size, fl_cap *ds);
/* The same for pages pages, page i filled with the byte first + i. */
unsigned char *t_ram_pages(struct fl_env *env, size_t pages, unsigned char first, fl_cap *ds);
/* The session does real work: a dataspace of pages pages is allocated,
 * attached, zero, written with a pattern of seed and read back, detached and
 * freed; session info answers. */
void t_session_works(struct fl_env *env, size_t pages, unsigned char seed);
/* Memory shared with every process forked afterwards (asserts success). */
void *t_shared(size_t size);

/* Rights of an attachment. */
enum { T_RO = 0, T_W = 1, T_X = 2 };
/* Attach [off, off + size) of ds at `at` of rm (size 0: the rest of ds) with
 * the rights; asserts that it lands exactly there. */
void t_attach_at(struct fl_env *env, fl_cap rm, fl_cap ds, size_t off, size_t size, uintptr_t at,
                 int rights);
/* A RAM dataspace of size bytes filled with the byte fill, attached writeable
 * at `at` of rm (asserts success); returns it. */
fl_cap t_ram_at(struct fl_env *env, fl_cap rm, uintptr_t at, size_t size, int fill);

/* The session's info (asserts success). */
struct fl_session_info t_info(struct fl_env *env);
/* Its RAM and capability use are exactly these, else fail naming the line. */
#define T_INFO_IS(env, ram_used, cap_used) t_info_is_at(__FILE__, __LINE__, env, ram_used, cap_used)
void t_info_is_at(const char *file, int line, struct fl_env *env, uint64_t ram_used,
                  uint64_t cap_used);
/* Claim a child's PD session with its token (asserts success); its info in
 * *info. */
struct fl_env *t_pd_claim(const char *token, struct fl_session_info *info);

/*
 * A managed dataspace of a manager: an RM session of its own, the region map
 * created from it, its dataspace and, with T_MM_HANDLER, a signal context
 * installed as its fault handler; t_mm_export hands out single-use tokens of
 * the dataspace.
 */
struct t_mm {
    struct fl_env *env;
    fl_cap rms, rm, ds, sigh;     /* sigh FL_CAP_INVALID without a handler */
    char token[FL_TOKEN_LEN + 1]; /* the last export */
};
enum { T_MM_HANDLER = 1 };
void t_mm_create(struct t_mm *m, struct fl_env *env, size_t size, int flags);
/* A fresh token of its dataspace (also in m->token). */
const char *t_mm_export(struct t_mm *m);
/* t_attach_at into the map, writeable. */
void t_mm_attach(struct t_mm *m, fl_cap ds, size_t off, size_t size, uintptr_t at);
/* Answer every fault queued now: attach 4 KiB of backing at the faulting
 * page, from offset page (or offset_of(page)), writeable. Returns how many. */
int t_mm_serve(struct t_mm *m, fl_cap backing, uintptr_t (*offset_of)(uintptr_t page));
/* Serve them so (offset page) as they come while more() says so; fail naming
 * what if that takes longer than T_WAIT_MS. Returns how many it served. */
int t_mm_serve_while(struct t_mm *m, fl_cap backing, int (*more)(void), const char *what);

/* ---- fault and signal expectations ---- */

struct t_child;

/* A signal of the context arrives within T_WAIT_MS. */
void t_expect_signal(struct fl_env *env, fl_cap sigh);
/* None is pending. */
void t_expect_no_signal(struct fl_env *env, fl_cap sigh);
/* fault() of rm reports exactly this (FL_FAULT_NONE with addr 0: nothing queued). */
void t_expect_fault(struct fl_env *env, fl_cap rm, enum fl_fault_type type, uintptr_t addr);
/* The same for a managed dataspace; and its next fault once its signal came. */
void t_mm_expect_fault(struct t_mm *m, enum fl_fault_type type, uintptr_t addr);
struct fl_fault t_mm_next_fault(struct t_mm *m);
/* A signal of the context arrives (within T_WAIT_MS) before any of the n
 * children says a word; fail naming after and what a child said. The signal
 * stays pending. */
void t_expect_signal_first(struct fl_env *env, fl_cap sigh, struct t_child *const *quiet, int n,
                           const char *after);

/* ---- processes ---- */

/* Fork a child running fn(arg); returns its pid. The child exits with fn's
 * return value. */
pid_t t_spawn(int (*fn)(void *), void *arg);
/* Wait for a child; returns its exit code, or 128+signal. */
int t_wait(pid_t pid);
/* The same within ms milliseconds, else fail naming what was awaited. */
int t_wait_within(pid_t pid, int ms, const char *what);
/* If the child has ended, its exit code (or 128+signal); else kill it, reap
 * it and return -1. */
int t_reap_or_kill(pid_t pid);
/* A new userfaultfd (O_NONBLOCK, no UFFDIO_API yet): by the system call,
 * else through /dev/userfaultfd; -1 if neither works. */
int t_new_uffd(void);
/* Wait until the thread tid of this process waits in a userfaultfd (its
 * wchan is handle_userfault): 0; -1 if the kernel never says where a thread
 * waits (then no test can rely on it); fail if it waits elsewhere for
 * T_WAIT_MS. */
int t_thread_waits_in_uffd(int tid);
/* Become uid and gid, with these supplementary groups (asserts success). */
void t_become(uid_t uid, gid_t gid, int ngroups, const gid_t *groups);

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
/* In the parent: the child's next line (within T_WAIT_MS; fails if it dies). */
void t_child_line(struct t_child *c, char *buf, size_t len);
/* In the parent: the child's next line must be exactly want. */
void t_child_expect(struct t_child *c, const char *want);
/* In the parent: the child said nothing and is alive (halted on a fault). */
void t_child_silent(struct t_child *c);
/* In the parent: send "exit"; the child ends with 0. */
void t_child_exit(struct t_child *c);

/*
 * A client obeying line commands (run it with t_child_spawn): "import TOKEN"
 * attaches the dataspace into its own address space, writeable and
 * executable (the manager's rights decide), and says "attached"; "read OFF"
 * says "read " and the string at OFF; "write OFF TEXT" writes TEXT there
 * and says "wrote"; "sysread OFF TEXT" has the kernel write TEXT there,
 * read(2) from a pipe, and says "sysread " and read's result; "exec OFF"
 * calls the code there and says "exec " and what it returned; "exit" ends
 * it. Other commands go to t_client_extra
 * (set before the spawn) with the attachment, and fail without one.
 */
int t_client_main(struct t_child *c);
extern void (*t_client_extra)(struct t_child *c, volatile char *p, const char *line);

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
/* The frame of a hostile-peer test: ignore SIGPIPE, note core's descriptors,
 * start the healthy component and see its first rounds; at the end stop it, wait for
 * core's descriptors to return to the baseline and stop core (exit 0). */
void t_baseline_begin(struct t_core *c, enum t_healthy_kind kind);
void t_baseline_end(struct t_core *c);

/* ---- raw protocol peers (no libfaultline) ---- */

/* Connect to the test core; every receive gives up after T_WAIT_MS. */
int t_raw_connect(void);
/* Connect a SOCK_SEQPACKET socket to path: the socket, or -errno. */
int t_socket_connect(const char *path);
/* Send a message of a type (header filled in, ids counting up), wait for
 * the next REPLY (skipping agent instructions; asserts the connection stays
 * up). */
void t_raw_send(int fd, void *msg, unsigned type);
struct fl_msg_reply;
void t_raw_reply(int fd, struct fl_msg_reply *reply);
/* Read a raw peer's socket until the REPLY to request id (failing after
 * T_WAIT_MS): every other message goes to seen(msg, nfds), if not NULL;
 * the descriptors messages carry are closed. */
struct fl_msg_reply t_raw_until_reply(int fd, uint64_t id, void (*seen)(const void *msg, int nfds));
/* Send a HELLO of this protocol version, id 1, with flags and uffd (or -1)
 * and a 1 GiB window at 0x100000000000; returns fl_wire_send's result. */
int t_raw_hello(int fd, uint32_t flags, int uffd);
/* A raw peer's session: connected, HELLO without a uffd answered with 0;
 * its address space's capability in *as (unless NULL). */
int t_raw_session(uint64_t *as);
/* The FL_TOKEN_BYTES bytes of a token's hex digits (asserts they are). */
void t_token_bytes(const char *token, uint8_t *bytes);
/* Receive one datagram: its length, 0 at EOF, -errno; fails naming what if
 * core neither answers nor closes within T_WAIT_MS. */
ssize_t t_raw_recv(int fd, void *buf, size_t len, const char *what);
/* Core closes the connection: EOF (or a reset) after at most a few error
 * replies and any agent instructions. A successful reply fails the test,
 * unless it is one of the first may_succeed. Closes fd. */
void t_raw_expect_closed(int fd, const char *what, int may_succeed);
/* HELLO without a uffd, then import token (if not NULL) and attach it into
 * the raw peer's address space (*at: where); returns the socket. */
int t_raw_peer(const char *token, uint64_t *at);
/* The same without asking where: a peer that holds a mapping core must revoke. */
int t_raw_attached_peer(const char *token);
/* Such a peer in a process of its own (as uid, unless 0) that never reads its
 * socket again: it acknowledges nothing. Returns once it is attached. */
pid_t t_stuck_peer(const char *token, uid_t uid);

#endif
