/*
 * What every manager needs besides the API (faultline/manager.h): stop
 * requests, publishing tokens, reporting errors.
 */
#include "internal.h"

#include "../common/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* The signalfd of SIGTERM and SIGINT, once armed; stays open for good. */
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int stop_fd = -1;
static atomic_bool stop_requested;

int fl_manager_catch_stop(void)
{
    pthread_mutex_lock(&stop_lock);
    int r = 0;
    if (atomic_load(&stop_fd) < 0) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        int fd = -1;
        if ((errno = pthread_sigmask(SIG_BLOCK, &set, NULL)) == 0)
            fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        if (fd < 0) {
            fprintf(stderr, "faultline: cannot catch SIGTERM and SIGINT: %s\n", strerror(errno));
            r = -FL_E_SYSTEM;
        } else {
            atomic_store(&stop_fd, fd);
        }
    }
    pthread_mutex_unlock(&stop_lock);
    return r;
}

/* Whether a stop was requested; a request read once is remembered. */
static bool stopping(int fd)
{
    struct signalfd_siginfo si;
    if (!atomic_load(&stop_requested) && read(fd, &si, sizeof(si)) == sizeof(si))
        atomic_store(&stop_requested, true);
    return atomic_load(&stop_requested);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long fl_manager_wait(struct fl_env *env, fl_cap sigh, int timeout_ms)
{
    int r = fl_manager_catch_stop();
    if (r < 0) return r;
    int stop = atomic_load(&stop_fd), fd = -1;
    if (sigh != FL_CAP_INVALID && (fd = fl_signal_fd(env, sigh)) < 0) return fd;
    long deadline = timeout_ms < 0 ? 0 : now_ms() + timeout_ms;
    for (;;) {
        if (stopping(stop)) return 0;
        if (fd >= 0) {
            long n = fl_signal_wait(env, sigh, 0);
            if (n != 0) return n;
        }
        int left = -1;
        if (timeout_ms >= 0) {
            long l = deadline - now_ms();
            if (l <= 0) return -FL_E_TIMEOUT;
            left = l > INT_MAX ? INT_MAX : (int)l;
        }
        /* A delivery another thread picks up first makes this poll return
         * and the read above find nothing: then wait on. */
        struct pollfd p[2] = {{.fd = stop, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
        if (poll(p, fd >= 0 ? 2 : 1, left) < 0 && errno != EINTR) return -FL_E_SYSTEM;
    }
}

static bool valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 63) return false;
    for (const char *s = name; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_') return false;
    return true;
}

static bool valid_token(const char *token)
{
    if (!token || strlen(token) != FL_TOKEN_LEN) return false;
    for (const char *s = token; *s; s++)
        if (!isxdigit((unsigned char)*s)) return false;
    return true;
}

int fl_publish(const char *name, const char token[FL_TOKEN_LEN + 1])
{
    if (!valid_name(name)) {
        fprintf(stderr,
                "faultline: cannot publish under the name '%s': want 1 to 63 letters, "
                "digits or '_'\n",
                name ? name : "(null)");
        return -FL_E_INVALID_ARG;
    }
    if (!valid_token(token)) {
        fprintf(stderr, "faultline: cannot publish %s: '%s' is not a token of %d hex digits\n",
                name, token ? token : "(null)", FL_TOKEN_LEN);
        return -FL_E_INVALID_ARG;
    }
    char line[128];
    int n = snprintf(line, sizeof(line), "%s %s\n", name, token);
    uint64_t fd;
    int r = fl_config_env("faultline", "FAULTLINE_EXPORT_FD", FL_CONFIG_COUNT, 0, INT_MAX, &fd);
    if (r < 0) return r;
    if (r == 0) {
        /* Run by hand: the line goes where the person looks. */
        if (fputs(line, stdout) < 0 || fflush(stdout) != 0) {
            fprintf(stderr, "faultline: publishing %s on stdout: %s\n", name, strerror(errno));
            return -FL_E_SYSTEM;
        }
        return 0;
    }
    /* One write per line: the runner reads the lines of several exports. */
    ssize_t w;
    do w = write((int)fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
    if (w != n) {
        fprintf(stderr, "faultline: publishing %s on $FAULTLINE_EXPORT_FD=%d: %s\n", name, (int)fd,
                w < 0 ? strerror(errno) : "short write");
        return -FL_E_SYSTEM;
    }
    return 0;
}

int fl_perror(const char *what, int err)
{
    char line[512];
    int n;
    if (what)
        n = snprintf(line, sizeof(line), "%s: %s: %s (%s)\n", program_invocation_short_name, what,
                     fl_error_name(err), fl_strerror(err));
    else
        n = snprintf(line, sizeof(line), "%s: %s (%s)\n", program_invocation_short_name,
                     fl_error_name(err), fl_strerror(err));
    if (n < 0) return 1;
    if ((size_t)n >= sizeof(line)) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    /* One write, so that lines of several threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
    return 1;
}
