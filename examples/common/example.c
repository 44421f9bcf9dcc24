#include "example.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

int example_publish(const char *name, const char token[FL_TOKEN_LEN + 1])
{
    const char *fd_str = getenv("FAULTLINE_EXPORT_FD");
    if (!fd_str) {
        printf("%s %s\n", name, token);
        fflush(stdout);
        return 0;
    }
    /* One write per line: the runner may read lines of several exports. */
    char line[128];
    int n = snprintf(line, sizeof(line), "%s %s\n", name, token);
    if (write(atoi(fd_str), line, (size_t)n) != n) {
        fprintf(stderr, "publishing %s on $FAULTLINE_EXPORT_FD=%s: %s\n", name, fd_str,
                strerror(errno));
        return -1;
    }
    return 0;
}

static int stop_fd = -1;

void example_catch_stop(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    stop_fd = signalfd(-1, &set, SFD_CLOEXEC);
}

long example_wait(struct fl_env *env, fl_cap sigh)
{
    if (stop_fd < 0) return -FL_E_SYSTEM;
    int fd = fl_signal_fd(env, sigh);
    if (fd < 0) return fd;
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = stop_fd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return -FL_E_SYSTEM;
        }
        if (p[1].revents) return 0;
        long n = fl_signal_wait(env, sigh, 0);
        if (n != 0) return n;
    }
}

int example_fail(const char *prog, const char *what, int err)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", prog, what, fl_error_name(err), fl_strerror(err));
    return 1;
}
