/*
 * Components of other uids, by core's allow-list (--allow-uid, --allow-group).
 *
 *  - Without an allow-list the socket's directory stays 0700 and the socket
 *    0600, with no ACL; a bad --allow-uid / --allow-group stops core at
 *    start-up with a message naming it.
 *  - --allow-uid nobody: a process of uid 65534 reaches the socket through
 *    the file system by core's own permissions alone (the test opens
 *    nothing up), opens a session, allocates, attaches and touches memory.
 *    uid 65533 cannot even connect (EACCES); with the socket opened up for
 *    the test, core refuses it (SO_PEERCRED) and its log names the
 *    allow-list.
 *  - --allow-group 4242: uid 65533 is served when 4242 is its primary group,
 *    and when it is one of its supplementary groups (SO_PEERGROUPS); without
 *    the group it is kept out by the file system, then by core.
 *  - A core that is not root (uid 65534) serves an allowed uid 65533 through
 *    its own ACLs too; uid 65532 stays locked out.
 * Needs root (to act as other uids); skipped otherwise.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define NOBODY   65534
#define STRANGER 65533
#define GROUP    4242

struct who {
    uid_t uid;
    gid_t gid;
    int ngroups;
    gid_t groups[2];
    struct t_pipe p;
};

/* As w's uid and groups: connect through the file system, then open a
 * session and use it. Says "connect ERRNO open RESULT" (0: success). */
static int as_other(void *arg)
{
    struct who *w = arg;
    t_become(w->uid, w->gid, w->ngroups, w->groups);
    const char *path = getenv("FAULTLINE_SOCKET");
    T_ASSERT(path);
    int s = t_socket_connect(path);
    int conn = s < 0 ? -s : 0;
    if (s >= 0) close(s);

    struct fl_env *env = NULL;
    int r = fl_env_open(&env, NULL);
    if (r == 0) {
        t_session_works(env, 4, (unsigned char)w->uid);
        fl_env_close(env);
    }
    char line[64];
    snprintf(line, sizeof(line), "connect %d open %d", conn, r);
    t_pipe_send(&w->p, line);
    return 0;
}

/* Run as_other for w; returns its line. */
static void try(struct who *w, char *line, size_t len, pid_t *pid)
{
    t_pipe_open(&w->p);
    pid_t child = t_spawn(as_other, w);
    close(w->p.w);
    int got = t_pipe_recv(&w->p, line, len);
    T_EQ(t_wait(child), 0);
    T_EQ(got, 0);
    close(w->p.r);
    if (pid) *pid = child;
    fprintf(stderr, "uid %u gid %u (%d supplementary): %s\n", (unsigned)w->uid, (unsigned)w->gid,
            w->ngroups, line);
}

static void served(struct who *w)
{
    char line[64];
    try(w, line, sizeof(line), NULL);
    if (strcmp(line, "connect 0 open 0"))
        T_FAILF("uid %u was not served: %s (want connect 0 open 0)", (unsigned)w->uid, line);
}

/* Kept out by the file system: its connect fails with EACCES. */
static void locked_out(struct who *w)
{
    char line[64], want[64];
    try(w, line, sizeof(line), NULL);
    snprintf(want, sizeof(want), "connect %d open %d", EACCES, -FL_E_PERMISSION);
    if (strcmp(line, want))
        T_FAILF("uid %u reached the socket: %s (want %s)", (unsigned)w->uid, line, want);
}

/* With the file system opened up: core itself refuses it. */
static void refused(struct t_core *core, struct who *w, const char *list)
{
    char line[64], want[160];
    pid_t pid;
    try(w, line, sizeof(line), &pid);
    snprintf(want, sizeof(want), "connect 0 open %d", -FL_E_PERMISSION);
    if (strcmp(line, want))
        T_FAILF("core did not refuse uid %u: %s (want %s)", (unsigned)w->uid, line, want);
    snprintf(want, sizeof(want), "refusing connection from pid %d: uid %u (gid %u)", (int)pid,
             (unsigned)w->uid, (unsigned)w->gid);
    T_ASSERT(t_core_log_contains(core, want));
    snprintf(want, sizeof(want), "nor on the allow-list (%s", list);
    T_ASSERT(t_core_log_contains(core, want));
}

static void open_up(struct t_core *core)
{
    T_ASSERT(chmod(core->dir, 0755) == 0);
    T_ASSERT(chmod(core->socket, 0666) == 0);
}

static bool has_acl(const char *path)
{
    return getxattr(path, "system.posix_acl_access", NULL, 0) > 0;
}

/* Core's own permissions with an allow-list: no bits for others, unless the
 * file system has no ACLs (then core says so and uses 0711 and 0666). */
static void check_modes(struct t_core *core)
{
    struct stat d, s;
    T_ASSERT(stat(core->dir, &d) == 0 && stat(core->socket, &s) == 0);
    if (t_core_log_contains(core, "has no POSIX ACLs")) {
        T_EQ(d.st_mode & 07777, 0711);
        T_EQ(s.st_mode & 0777, 0666);
        return;
    }
    T_EQ(d.st_mode & 0007, 0);
    T_EQ(s.st_mode & 0007, 0);
    T_ASSERT(has_acl(core->dir) && has_acl(core->socket));
}

/* faultline-core with args must exit 2 naming what is wrong. */
static void bad_option(const char *opt, const char *arg, const char *want)
{
    char out[512];
    const char *more[] = {"--socket", "/nonexistent/x.sock", opt, arg, NULL};
    int st = t_core_run(more, out, sizeof(out));
    fprintf(stderr, "%s %s: exit %d: %s", opt, arg, st, out);
    T_EQ(st, 2);
    T_ASSERT(strstr(out, want));
}

static void bad_options(void)
{
    t_need_root("to act as other uids");
    bad_option("--allow-uid", "no-such-user-faultline", "--allow-uid no-such-user-faultline");
    bad_option("--allow-group", "no-such-group-faultline", "no such group");
    bad_option("--allow-uid", "4294967295", "not a valid user id");
}

/* No allow-list: nothing changes. */
static void no_allow_list(void)
{
    t_need_root("to act as other uids");
    struct t_core *core = t_core_start(NULL);
    struct stat st;
    T_ASSERT(stat(core->dir, &st) == 0);
    T_EQ(st.st_mode & 07777, 0700);
    T_ASSERT(stat(core->socket, &st) == 0);
    T_EQ(st.st_mode & 0777, 0600);
    T_ASSERT(!has_acl(core->dir) && !has_acl(core->socket));
    T_EQ(t_core_stop(core), 0);
}

/* --allow-uid, by name where the name exists. */
static void allow_uid(void)
{
    t_need_root("to act as other uids");
    signal(SIGPIPE, SIG_IGN);
    struct passwd *pw = getpwnam("nobody");
    const char *nobody = pw && pw->pw_uid == NOBODY ? "nobody" : "65534";
    struct t_core *core = t_core_start("--allow-uid", nobody, NULL);
    T_ASSERT(t_core_log_contains(core, "serving the allow-list (uids 65534"));
    check_modes(core);
    struct who w = {.uid = NOBODY, .gid = NOBODY};
    served(&w);
    struct fl_env *root = t_env();
    t_session_works(root, 4, 1);
    w = (struct who){.uid = STRANGER, .gid = STRANGER};
    locked_out(&w);
    open_up(core);
    refused(core, &w, "uids 65534");
    w = (struct who){.uid = NOBODY, .gid = NOBODY};
    served(&w); /* still, after a refusal */
    t_session_works(root, 4, 2);
    fl_env_close(root);
    T_EQ(t_core_stop(core), 0);
}

/* --allow-group: the primary group, or a supplementary one. */
static void allow_group(void)
{
    t_need_root("to act as other uids");
    signal(SIGPIPE, SIG_IGN);
    char gid[16];
    snprintf(gid, sizeof(gid), "%d", GROUP);
    struct t_core *core = t_core_start("--allow-group", gid, NULL);
    T_ASSERT(t_core_log_contains(core, "serving the allow-list (groups 4242"));
    check_modes(core);
    struct who w = {.uid = STRANGER, .gid = GROUP};
    served(&w);
    w = (struct who){.uid = STRANGER, .gid = STRANGER, .ngroups = 2, .groups = {7, GROUP}};
    served(&w);
    w = (struct who){.uid = STRANGER, .gid = STRANGER, .ngroups = 1, .groups = {7}};
    locked_out(&w);
    open_up(core);
    refused(core, &w, "groups 4242");
    T_EQ(t_core_stop(core), 0);
}

/* A core that is not root (uid 65534, owning its directory) opens its socket
 * to uid 65533 just as well, and says what it cannot do. */
static void non_root_core(void)
{
    t_need_root("to act as other uids");
    signal(SIGPIPE, SIG_IGN);
    setenv("FL_TEST_CORE_UID", "65534", 1);
    struct t_core *core = t_core_start("--allow-uid", "65533", NULL);
    unsetenv("FL_TEST_CORE_UID");
    T_ASSERT(t_core_log_contains(core, "besides core's uid 65534 and root"));
    T_ASSERT(t_core_log_contains(core, "core is not root"));
    check_modes(core);
    struct who w = {.uid = STRANGER, .gid = STRANGER};
    served(&w);
    struct fl_env *root = t_env();
    t_session_works(root, 4, 3);
    fl_env_close(root);
    w = (struct who){.uid = STRANGER - 1, .gid = STRANGER - 1};
    locked_out(&w);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(bad_options, no_allow_list, allow_uid, allow_group, non_root_core)
