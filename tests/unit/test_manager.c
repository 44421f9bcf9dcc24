/*
 * Unit tests of the manager helpers (faultline/manager.h) that need no core:
 * fl_publish's line and its errors, fl_perror's line, fl_manager_wait's stop
 * requests and timeout, fl_parse_size and fl_version. Built against
 * libfaultline.so and the public headers only, as a program outside the
 * tree is: every function used here must be exported.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <faultline/faultline.h>

#include "../integration/capture.h"
#include "check_main.h"

static const char token[] = "0123456789abcdef0123456789ABCDEF";

/* stdout or stderr into a string while a function runs. */
static struct t_capture cap;
static void capture_begin(int fd)
{
    ck_assert_int_eq(t_capture_begin(&cap, fd), 0);
}

START_TEST(test_publish_stdout)
{
    unsetenv("FAULTLINE_EXPORT_FD");
    capture_begin(1);
    int r = fl_publish("MDS", token);
    const char *out = t_capture_end(&cap);
    ck_assert_int_eq(r, 0);
    ck_assert_str_eq(out, "MDS 0123456789abcdef0123456789ABCDEF\n");
}
END_TEST

START_TEST(test_publish_fd)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    char fd[16];
    snprintf(fd, sizeof(fd), "%d", p[1]);
    setenv("FAULTLINE_EXPORT_FD", fd, 1);
    capture_begin(1);
    ck_assert_int_eq(fl_publish("A_1", token), 0);
    ck_assert_int_eq(fl_publish("B", token), 0);
    const char *out = t_capture_end(&cap);
    ck_assert_str_eq(out, ""); /* nothing on stdout */
    close(p[1]);
    char buf[256] = "";
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    ck_assert_int_gt(n, 0);
    buf[n] = 0;
    ck_assert_str_eq(buf, "A_1 0123456789abcdef0123456789ABCDEF\n"
                          "B 0123456789abcdef0123456789ABCDEF\n");
    close(p[0]);
}
END_TEST

START_TEST(test_publish_errors)
{
    /* Not a descriptor number: an error naming the variable and the value. */
    setenv("FAULTLINE_EXPORT_FD", "three", 1);
    capture_begin(2);
    int r = fl_publish("MDS", token);
    const char *err = t_capture_end(&cap);
    ck_assert_int_eq(r, -FL_E_INVALID_ARG);
    ck_assert_msg(strstr(err, "$FAULTLINE_EXPORT_FD: 'three' is not a number"), "said: %s", err);

    /* A descriptor that is not open. */
    setenv("FAULTLINE_EXPORT_FD", "999", 1);
    capture_begin(2);
    r = fl_publish("MDS", token);
    err = t_capture_end(&cap);
    ck_assert_int_eq(r, -FL_E_SYSTEM);
    ck_assert_msg(strstr(err, "publishing MDS on $FAULTLINE_EXPORT_FD=999: Bad file descriptor"),
                  "said: %s", err);

    /* Names the runner could not match, and tokens it would refuse. */
    unsetenv("FAULTLINE_EXPORT_FD");
    const char *names[] = {
        "",    "A B",  "A\nB",
        "a-b", "${X}", "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        capture_begin(2);
        r = fl_publish(names[i], token);
        err = t_capture_end(&cap);
        ck_assert_msg(r == -FL_E_INVALID_ARG, "name '%s' gave %d", names[i], r);
        ck_assert_msg(strstr(err, "cannot publish under the name"), "said: %s", err);
    }
    ck_assert_int_eq(fl_publish(NULL, token), -FL_E_INVALID_ARG);
    const char *tokens[] = {"", "abc", "0123456789abcdef0123456789abcdeg",
                            "0123456789abcdef0123456789abcdef0"};
    for (size_t i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++) {
        capture_begin(2);
        r = fl_publish("MDS", tokens[i]);
        err = t_capture_end(&cap);
        ck_assert_msg(r == -FL_E_INVALID_ARG, "token '%s' gave %d", tokens[i], r);
        ck_assert_msg(strstr(err, "is not a token of 32 hex digits"), "said: %s", err);
    }
}
END_TEST

START_TEST(test_perror)
{
    capture_begin(2);
    int r = fl_perror("attach", -FL_E_REGION_CONFLICT);
    const char *err = t_capture_end(&cap);
    ck_assert_int_eq(r, 1);
    char want[256];
    snprintf(want, sizeof(want), "%s: attach: REGION_CONFLICT (%s)\n",
             program_invocation_short_name, fl_strerror(FL_E_REGION_CONFLICT));
    ck_assert_str_eq(err, want);

    capture_begin(2);
    fl_perror(NULL, FL_E_NO_CORE); /* positive works too */
    err = t_capture_end(&cap);
    snprintf(want, sizeof(want), "%s: NO_CORE (%s)\n", program_invocation_short_name,
             fl_strerror(FL_E_NO_CORE));
    ck_assert_str_eq(err, want);
    ck_assert_str_eq(fl_error_name(-FL_E_TIMEOUT), "TIMEOUT");
}
END_TEST

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(test_wait_timeout)
{
    ck_assert_int_eq(fl_manager_catch_stop(), 0);
    ck_assert_int_eq(fl_manager_catch_stop(), 0); /* again: nothing happens */
    long t0 = now_ms();
    ck_assert_int_eq(fl_manager_wait(NULL, FL_CAP_INVALID, 100), -FL_E_TIMEOUT);
    long took = now_ms() - t0;
    ck_assert_msg(took >= 100 && took < 5000, "a 100 ms wait took %ld ms", took);
    ck_assert_int_eq(fl_manager_wait(NULL, FL_CAP_INVALID, 0), -FL_E_TIMEOUT);
}
END_TEST

/* SIGTERM or SIGINT: a stop request, not death; and it stays requested. */
START_TEST(test_wait_stop)
{
    int sig = _i ? SIGINT : SIGTERM;
    ck_assert_int_eq(fl_manager_catch_stop(), 0);
    ck_assert_int_eq(kill(getpid(), sig), 0); /* the process, not the thread */
    ck_assert_int_eq(fl_manager_wait(NULL, FL_CAP_INVALID, -1), 0);
    ck_assert_int_eq(fl_manager_wait(NULL, FL_CAP_INVALID, -1), 0);
    ck_assert_int_eq(fl_manager_wait(NULL, FL_CAP_INVALID, 0), 0);
}
END_TEST

/* A stop request that arrives while waiting ends the wait. */
START_TEST(test_wait_stop_later)
{
    ck_assert_int_eq(fl_manager_catch_stop(), 0);
    pid_t self = getpid(), child = fork();
    if (child == 0) {
        usleep(100 * 1000);
        kill(self, SIGTERM);
        _exit(0);
    }
    long t0 = now_ms();
    ck_assert_int_eq(fl_manager_wait(NULL, FL_CAP_INVALID, 20000), 0);
    ck_assert_int_lt(now_ms() - t0, 15000);
}
END_TEST

/* Without fl_manager_catch_stop, the first wait arms it itself. */
START_TEST(test_wait_arms_itself)
{
    ck_assert_int_eq(fl_manager_wait(NULL, FL_CAP_INVALID, 0), -FL_E_TIMEOUT);
    raise(SIGTERM);
    ck_assert_int_eq(fl_manager_wait(NULL, FL_CAP_INVALID, 0), 0);
}
END_TEST

START_TEST(test_parse_size)
{
    uint64_t v;
    ck_assert_int_eq(fl_parse_size("4G", &v), 0);
    ck_assert_uint_eq(v, 4ull << 30);
    ck_assert_int_eq(fl_parse_size("64k", &v), 0);
    ck_assert_uint_eq(v, 65536);
    ck_assert_int_eq(fl_parse_size("4096", &v), 0);
    ck_assert_uint_eq(v, 4096);
    ck_assert_int_eq(fl_parse_size("4 G", &v), -FL_E_INVALID_ARG);
    ck_assert_int_eq(fl_parse_size("abc", &v), -FL_E_INVALID_ARG);
}
END_TEST

START_TEST(test_version)
{
    const char *v = fl_version();
    ck_assert_ptr_nonnull(v);
    /* "0.1.0 (commit 6f2fb48-dirty)": the project's version, then the commit. */
    ck_assert_msg(
        !strncmp(v, FL_TEST_PROJECT_VERSION " (commit ", strlen(FL_TEST_PROJECT_VERSION) + 9),
        "fl_version() is '%s'", v);
    ck_assert_msg(strlen(v) > strlen(FL_TEST_PROJECT_VERSION) + 10 && v[strlen(v) - 1] == ')',
                  "fl_version() is '%s'", v);
    char major[16];
    snprintf(major, sizeof(major), "%d.%d.", FAULTLINE_VERSION_MAJOR, FAULTLINE_VERSION_MINOR);
    ck_assert_msg(!strncmp(v, major, strlen(major)), "fl_version() '%s' is not %s*", v, major);
}
END_TEST

static Suite *manager_suite(void)
{
    const struct check_test tests[] = {
        {"publish", test_publish_stdout, 0}, {"publish", test_publish_fd, 0},
        {"publish", test_publish_errors, 0}, {"publish", test_perror, 0},
        {"wait", test_wait_timeout, 0},      {"wait", test_wait_stop, 2},
        {"wait", test_wait_stop_later, 0},   {"wait", test_wait_arms_itself, 0},
        {"misc", test_parse_size, 0},        {"misc", test_version, 0},
    };
    return CHECK_SUITE("manager", tests, NULL, NULL);
}

/* Each test in a process of its own (check's default, made explicit): the
 * stop requests and signal masks must not carry over. */
CHECK_MAIN_FORK(manager_suite, CK_FORK)
