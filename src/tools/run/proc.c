/* Processes, their cleanup and temporary directories. */
#include "run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

pid_t proc_spawn(char *const argv[], char *const envp[], int out_fd, int export_fd, int deathsig,
                 const sigset_t *mask, const struct proc_user *user)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) {
        /* Also here: whichever of parent and child runs first, the group
         * exists before anyone signals it. */
        if (pid > 0) setpgid(pid, pid);
        return pid;
    }
    setpgid(0, 0);
    /* Before prctl: a change of credentials clears the death signal. */
    int cred_err = 0;
    if (user && (setgroups((size_t)user->ngroups, user->groups) < 0 || setgid(user->gid) < 0 ||
                 setuid(user->uid) < 0))
        cred_err = errno;
    prctl(PR_SET_PDEATHSIG, deathsig);
    if (getppid() != parent) _exit(127); /* the runner died before prctl */
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, mask, NULL);
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0) _exit(127);
    if (cred_err) {
        dprintf(2, "faultline-run: cannot become uid %u: %s\n", (unsigned)user->uid,
                strerror(cred_err));
        _exit(127);
    }
    int keep = 3;
    if (export_fd >= 0) {
        if (dup2(export_fd, 3) < 0) _exit(127);
        keep = 4;
    }
    if (close_range((unsigned)keep, ~0U, 0))
        for (int fd = keep; fd < 1024; fd++) close(fd);
    execve(argv[0], argv, envp);
    dprintf(2, "faultline-run: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int proc_capture(char *const argv[], char *out, size_t cap, int timeout_ms)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC)) return -1;
    extern char **environ;
    sigset_t none;
    sigemptyset(&none);
    pid_t pid = proc_spawn(argv, environ, p[1], -1, SIGKILL, &none, NULL);
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    size_t n = 0;
    long long end = now_ms() + timeout_ms;
    for (;;) {
        long long left = end - now_ms();
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            kill(-pid, SIGKILL);
            break;
        }
        char buf[4096];
        ssize_t r = read(p[0], buf, sizeof(buf));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        size_t take = (size_t)r;
        if (n + take >= cap) take = cap - 1 - n;
        memcpy(out + n, buf, take);
        n += take;
    }
    out[n] = 0;
    close(p[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return st;
}

/* Children of this process that no one reaped yet, via /proc. */
static int kill_children_once(void)
{
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int found = 0;
    pid_t self = getpid();
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = 0;
        /* The command name may contain anything: the fields resume after
         * the last ')'. */
        char *rp = strrchr(buf, ')');
        char state;
        long ppid;
        if (!rp || sscanf(rp + 1, " %c %ld", &state, &ppid) != 2) continue;
        if (ppid != self) continue;
        found++;
        if (state != 'Z') kill((pid_t)pid, SIGKILL);
    }
    closedir(d);
    return found;
}

void proc_kill_all_children(void)
{
    /* A killed child's own children reparent to us only after it died, so
     * scan again until a scan finds none and nothing is left to reap. */
    for (;;) {
        int found = kill_children_once();
        int st;
        pid_t r;
        while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
        }
        if (!found && r < 0 && errno == ECHILD) return;
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    }
}

void proc_status_str(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by SIG%s%s", sigabbrev_np(WTERMSIG(status)),
                 WCOREDUMP(status) ? " (core dumped)" : "");
    else
        snprintf(buf, len, "status %#x", status);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void rm_tree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int self_dir(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash) return -1;
    *slash = 0;
    return 0;
}
