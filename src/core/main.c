/* faultline-core: the daemon. Options, the socket, the event loop, shutdown. */
#include "core.h"
#include "activation.h"
#include "config.h"
#include "fl_version.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <unistd.h>

struct fl_core fl_core;
static int inherited = -1; /* socket activation: the listening socket passed to core */

void core_signal_watchdog_stop(void);
int fl_socket_path(char *buf, size_t len);

static void usage(FILE *f)
{
    fprintf(
        f, "usage: faultline-core [OPTIONS]\n"
           "Genode's core for paging on Linux: owns RAM dataspaces and region maps, catches\n"
           "page faults of components with userfaultfd and reflects them to their managers.\n"
           "\n"
           "  --socket PATH      listen here (default: $FAULTLINE_SOCKET, else\n"
           "                     $XDG_RUNTIME_DIR/faultline/core.sock, else\n"
           "                     /tmp/faultline-$UID/core.sock)\n"
           "  --backend B        event loop: auto (default), io_uring or epoll\n"
           "  --uffd-read R      how to read components' userfaultfds: auto (default:\n"
           "                     nowait where the kernel allows it, else uring), nowait\n"
           "                     (preadv2 RWF_NOWAIT) or uring (io_uring reads)\n"
           "  --ram-budget SIZE  RAM all sessions together may allocate (default: 3/4 of RAM)\n"
           "  --ram-quota SIZE   RAM quota of each session (default: 4G)\n"
           "  --cap-quota N      capability quota of each session (default: 4096)\n"
           "  --revoke-deadline MS  an agent that has not revoked a detached range by then\n"
           "                     has its component terminated, and one that acknowledges\n"
           "                     none of its descriptor credit loses its session (default: 2000)\n"
           "  --unresolvable halt|sigbus  a fault that can never be resolved (no handler,\n"
           "                     too deep or cyclic, its map destroyed): leave the thread\n"
           "                     halted as Genode does (default), or raise SIGBUS in it\n"
           "  --strict           for untrusted clients: a detach of RAM that lives on moves\n"
           "                     the dataspace to a fresh memfd and punches the old one,\n"
           "                     so a client that kept its descriptor or pinned its pages\n"
           "                     loses it too (costs a copy: about 0.2 s per GiB)\n"
           "  --rom-dir DIR      serve the files of DIR as ROM modules (fl_rom_open)\n"
           "  --allow-uid UID    also serve components of this uid (a number or a user name;\n"
           "                     repeatable); the socket and its directory are opened to it\n"
           "  --allow-group GID  also serve components in this group (primary or\n"
           "                     supplementary; a number or a name; repeatable)\n"
           "  --check            report the kernel features faultline needs; exit 1 if any\n"
           "                     is missing\n"
           "  -v, --verbose      more log (repeat for debug)\n"
           "  -q, --quiet        errors only\n"
           "  -h, --help         this text\n"
           "  --version          print the version and commit, and exit\n"
           "With LISTEN_FDS=1 (socket activation) core listens on descriptor 3.\n"
           "SIZE takes a K, M or G suffix. Logs go to stderr. SIGINT/SIGTERM stop core cleanly.\n");
}

static int make_parent_dir(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = 0;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) return -errno;
    return 0;
}

static int listen_socket(const char *path)
{
    if (inherited >= 0) return inherited; /* the unit made it */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fl_error("socket path %s is too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int r = make_parent_dir(path);
    if (r < 0) {
        fl_error("cannot create the directory of socket %s: %s", path, strerror(-r));
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        fl_error("%s exists and is not a socket; refusing to remove it", path);
        return -1;
    }
    /* Another core on this socket? A live one accepts (or is merely busy). */
    int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe >= 0) {
        int c = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
        int err = errno;
        close(probe);
        if (c == 0 || err == EAGAIN) {
            fl_error("another faultline-core already serves %s; refusing to start", path);
            return -1;
        }
        if (err == ECONNREFUSED) {
            fl_info("removing stale socket %s left by a core that is gone", path);
            unlink(path);
        }
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    mode_t old = umask(0177);
    r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0 || chmod(path, 0600) < 0 || listen(fd, 128) < 0) {
        fl_error("cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (core_peer_open_socket(path) < 0) { /* with --allow-uid/--allow-group */
        unlink(path);
        close(fd);
        return -1;
    }
    return fd;
}

static void on_listen(void *arg, uint32_t events)
{
    (void)arg;
    (void)events;
    core_session_accept();
}

static void on_signal(void *arg, uint32_t events)
{
    (void)events;
    int sfd = *(int *)arg;
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
        fl_info("%s: shutting down", strsignal((int)si.ssi_signo));
        fl_core.stopping = true;
    }
}

/* The options that take one of a few words, in the order of their enums
 * (enum fl_backend, enum core_uffd_read; halt is 0). */
static const struct {
    int opt;
    const char *name, *words[4];
} word_opts[] = {{'b', "--backend", {"auto", "io_uring", "epoll"}},
                 {'u', "--uffd-read", {"auto", "nowait", "uring"}},
                 {'U', "--unresolvable", {"halt", "sigbus"}}};

/* The index of arg among option opt's words, or -1 after saying which words
 * it takes. */
static int choice(int opt, const char *arg)
{
    size_t o = 0;
    while (word_opts[o].opt != opt) o++;
    const char *const *w = word_opts[o].words;
    for (int i = 0; w[i]; i++)
        if (!strcmp(arg, w[i])) return i;
    fprintf(stderr, "faultline-core: %s takes", word_opts[o].name);
    for (int i = 0; w[i]; i++) fprintf(stderr, "%s %s", !i ? "" : w[i + 1] ? "," : " or", w[i]);
    fputc('\n', stderr);
    return -1;
}

int main(int argc, char **argv)
{
    fl_log_prefix = "faultline-core";
    /* Non-dumpable, or any process of core's uid could re-open core's memfds
     * through /proc/CORE/fd/N, take its descriptors with pidfd_getfd, and read
     * or write its memory with process_vm_readv/writev or ptrace. Root with
     * CAP_SYS_PTRACE keeps that access (gdb as root works). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        fl_error("cannot make core non-dumpable: %s", strerror(errno));
        return 1;
    }
    struct sysinfo si;
    sysinfo(&si);
    fl_core.cfg = (struct fl_core_config){
#ifdef FL_DEFAULT_BACKEND_EPOLL
        .backend = FL_BACKEND_EPOLL,
#else
        .backend = FL_BACKEND_AUTO,
#endif
        .ram_budget = (uint64_t)si.totalram * si.mem_unit / 4 * 3,
        .ram_quota = 4ull << 30,
        .cap_quota = 4096,
        .max_out_queue = 4096,
        .revoke_deadline_ms = 2000,
    };
    static const struct option opts[] = {
        {"socket", required_argument, 0, 's'},
        {"backend", required_argument, 0, 'b'},
        {"uffd-read", required_argument, 0, 'u'},
        {"ram-budget", required_argument, 0, 'B'},
        {"ram-quota", required_argument, 0, 'R'},
        {"cap-quota", required_argument, 0, 'C'},
        {"revoke-deadline", required_argument, 0, 'D'},
        {"unresolvable", required_argument, 0, 'U'},
        {"strict", no_argument, 0, 'S'},
        {"rom-dir", required_argument, 0, 'r'},
        {"allow-uid", required_argument, 0, 'a'},
        {"allow-group", required_argument, 0, 'g'},
        {"check", no_argument, 0, 'c'},
        {"verbose", no_argument, 0, 'v'},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    bool check_only = false;
    const char *rom_dir = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "vqh", opts, NULL)) != -1) {
        switch (c) {
        case 's': fl_core.cfg.socket_path = optarg; break;
        case 'b':
        case 'u':
        case 'U': { /* one of a few words: its index is the enum's value */
            int k = choice(c, optarg);
            if (k < 0) return 2;
            if (c == 'b') fl_core.cfg.backend = (enum fl_backend)k;
            if (c == 'u') core_uffd_want((enum core_uffd_read)k);
            if (c == 'U') fl_core.cfg.unresolvable_sigbus = k == 1;
            break;
        }
        case 'B':
        case 'R':
        case 'C':
        case 'D': { /* sizes and counts: one parser (src/common/config.c) */
            const char *opt = c == 'B'   ? "--ram-budget"
                              : c == 'R' ? "--ram-quota"
                              : c == 'C' ? "--cap-quota"
                                         : "--revoke-deadline";
            uint64_t v;
            if (fl_config_value("faultline-core", opt, optarg,
                                c == 'B' || c == 'R' ? FL_CONFIG_SIZE : FL_CONFIG_COUNT, 1,
                                c == 'D' ? 3600000 : UINT64_MAX, &v) < 0)
                return 2;
            if (c == 'B') fl_core.cfg.ram_budget = v;
            if (c == 'R') fl_core.cfg.ram_quota = v;
            if (c == 'C') fl_core.cfg.cap_quota = v;
            if (c == 'D') fl_core.cfg.revoke_deadline_ms = (unsigned)v;
            break;
        }
        case 'S': fl_core.cfg.strict = true; break;
        case 'r': rom_dir = optarg; break;
        case 'a':
            if (core_peer_allow_uid(optarg) < 0) return 2;
            break;
        case 'g':
            if (core_peer_allow_group(optarg) < 0) return 2;
            break;
        case 'c': check_only = true; break;
        case 'v': fl_log_level++; break;
        case 'q': fl_log_level = FL_LOG_ERROR; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("faultline-core %s\n", FL_VERSION_STRING); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (check_only) return core_check_kernel(true) ? 1 : 0;
    if (core_check_kernel(false)) {
        fl_error("this kernel lacks features faultline needs (listed above); "
                 "run faultline-core --check");
        return 1;
    }

    char path[108], passed[108];
    if ((inherited = core_activation_socket(passed, sizeof(passed))) == -2) return 1;
    if (inherited >= 0 && fl_core.cfg.socket_path && strcmp(fl_core.cfg.socket_path, passed)) {
        fl_error("--socket %s, but the service manager passed the socket %s",
                 fl_core.cfg.socket_path, passed);
        return 1;
    }
    if (inherited >= 0) fl_core.cfg.socket_path = passed;
    if (!fl_core.cfg.socket_path) {
        if (fl_socket_path(path, sizeof(path)) < 0) {
            fl_error("cannot work out the socket path");
            return 1;
        }
        fl_core.cfg.socket_path = path;
    }

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    fl_core.fd_budget = (long)rl.rlim_cur - 64; /* headroom for core's own descriptors */

    signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, NULL); /* inherited by the worker threads */

    if (rom_dir && core_rom_init(rom_dir) < 0) return 1;
    fl_list_init(&fl_core.sessions);
    if (core_loop_init(fl_core.cfg.backend) < 0) return 1;
    fl_core.listen_fd = listen_socket(fl_core.cfg.socket_path);
    if (fl_core.listen_fd < 0) return 1;
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0 || !core_loop_watch(sfd, FL_EV_IN, on_signal, &sfd) ||
        !core_loop_watch(fl_core.listen_fd, FL_EV_IN, on_listen, NULL) || core_worker_start() < 0 ||
        core_signal_watchdog_start() < 0) {
        fl_error("start-up failed: %s", strerror(errno));
        if (inherited < 0) unlink(fl_core.cfg.socket_path);
        return 1;
    }
    if (core_uffd_init() < 0) {
        if (inherited < 0) unlink(fl_core.cfg.socket_path);
        return 1;
    }
    fl_info("listening on %s (RAM budget %llu MiB, per session %llu MiB and %llu caps)",
            fl_core.cfg.socket_path, (unsigned long long)(fl_core.cfg.ram_budget >> 20),
            (unsigned long long)(fl_core.cfg.ram_quota >> 20),
            (unsigned long long)fl_core.cfg.cap_quota);

    while (!fl_core.stopping) {
        /* Tear down what the last round closed before computing how long to
         * sleep: a teardown can start revocations with deadlines. */
        core_session_reap();
        int t = core_revoke_check_deadlines(), h = core_session_check_handshakes();
        core_session_flush();
        int r = core_loop_run_once(t < 0 || (h >= 0 && h < t) ? h : t);
        if (r < 0) {
            fl_error("event loop failed: %s", strerror(-r));
            break;
        }
    }

    if (inherited < 0) unlink(fl_core.cfg.socket_path); /* an inherited one is the unit's */
    close(fl_core.listen_fd);
    core_session_close_all();
    core_session_reap();
    core_uffd_fini();   /* the reads still in flight end before the workers */
    core_worker_stop(); /* every memfd punched and closed */
    core_signal_watchdog_stop();
    core_loop_fini();
    close(sfd);
    fl_info("stopped");
    return 0;
}
