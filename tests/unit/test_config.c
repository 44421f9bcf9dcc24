/*
 * Unit tests of configuration parsing (src/common/config.c, socket_path.c),
 * the one parser behind the library's environment variables, core's options
 * and the tools' options: sizes with K/M/G, plain counts, garbage and ranges
 * rejected with a line naming the variable and the value.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <faultline/faultline.h>
#include "config.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
    const char *s;
    uint64_t v;
} good_sizes[] = {
    {"0", 0},
    {"1", 1},
    {"4096", 4096},
    {"4k", 4096},
    {"4K", 4096},
    {"64K", 65536},
    {"1m", 1 << 20},
    {"64M", 64ull << 20},
    {"1g", 1ull << 30},
    {"4G", 4ull << 30},
    {"0x1000", 4096},
    {"0X10k", 16384},
    {"0xfG", 15ull << 30},
    {"010", 10}, /* decimal, not octal */
    {"18446744073709551615", UINT64_MAX},
    {"17179869183G", 17179869183ull << 30},
};

static const char *bad_sizes[] = {
    "",
    "abc",
    "4X",
    "4KB",
    "4Ki",
    "4 K",
    " 4",
    "4 ",
    "-1",
    "+1",
    "0x",
    "0xK",
    "1.5G",
    "1e9",
    "K",
    "18446744073709551616", /* 2^64 */
    "17179869184G",         /* 2^64 after the shift */
    "0x10000000000000000",
};

START_TEST(test_good_size)
{
    uint64_t v = 12345;
    ck_assert_int_eq(fl_parse_size(good_sizes[_i].s, &v), 0);
    ck_assert_msg(v == good_sizes[_i].v, "'%s' gave %llu, want %llu", good_sizes[_i].s,
                  (unsigned long long)v, (unsigned long long)good_sizes[_i].v);
}
END_TEST

START_TEST(test_bad_size)
{
    uint64_t v = 12345;
    ck_assert_msg(fl_parse_size(bad_sizes[_i], &v) == -FL_E_INVALID_ARG, "'%s' was accepted",
                  bad_sizes[_i]);
    ck_assert_msg(v == 12345, "'%s' changed the result", bad_sizes[_i]);
}
END_TEST

START_TEST(test_null_size)
{
    uint64_t v;
    ck_assert_int_eq(fl_parse_size(NULL, &v), -FL_E_INVALID_ARG);
}
END_TEST

START_TEST(test_count)
{
    uint64_t v = 0;
    ck_assert_int_eq(fl_config_parse_count("16384", &v), 0);
    ck_assert_uint_eq(v, 16384);
    ck_assert_int_eq(fl_config_parse_count("0x40", &v), 0);
    ck_assert_uint_eq(v, 64);
    ck_assert_int_eq(fl_config_parse_count("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    const char *bad[] = {"", "4K", "1G", "abc", "12abc", "-3", " 7", "7 ", "0x"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        v = 99;
        ck_assert_msg(fl_config_parse_count(bad[i], &v) == -FL_E_INVALID_ARG,
                      "count '%s' was accepted", bad[i]);
        ck_assert_uint_eq(v, 99);
    }
}
END_TEST

/* What fn prints on stderr, as one string. */
static char captured[4096];
static void capture_begin(int *saved, FILE **tmp)
{
    fflush(stderr);
    *tmp = tmpfile();
    ck_assert_ptr_nonnull(*tmp);
    *saved = dup(2);
    dup2(fileno(*tmp), 2);
}
static const char *capture_end(int saved, FILE *tmp)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(captured, 1, sizeof(captured) - 1, tmp);
    captured[n] = 0;
    fclose(tmp);
    return captured;
}

START_TEST(test_value_messages)
{
    int saved;
    FILE *tmp;
    uint64_t v = 7;

    capture_begin(&saved, &tmp);
    int r = fl_config_value("prog", "--ram-quota", "12X", FL_CONFIG_SIZE, 1, UINT64_MAX, &v);
    const char *err = capture_end(saved, tmp);
    ck_assert_int_eq(r, -FL_E_INVALID_ARG);
    ck_assert_uint_eq(v, 7);
    ck_assert_msg(strstr(err, "prog: --ram-quota: '12X' is not a size"), "said: %s", err);
    ck_assert_msg(strchr(err, '\n') == err + strlen(err) - 1, "not one line: %s", err);

    capture_begin(&saved, &tmp);
    r = fl_config_value("prog", "--ram-quota", "0", FL_CONFIG_SIZE, 1, UINT64_MAX, &v);
    err = capture_end(saved, tmp);
    ck_assert_int_eq(r, -FL_E_INVALID_ARG);
    ck_assert_msg(strstr(err, "prog: --ram-quota: '0' is out of range (at least 1)"), "said: %s",
                  err);

    capture_begin(&saved, &tmp);
    r = fl_config_value("x", "$V", "2M", FL_CONFIG_SIZE, 4096, 1 << 20, &v);
    err = capture_end(saved, tmp);
    ck_assert_int_eq(r, -FL_E_INVALID_ARG);
    ck_assert_msg(strstr(err, "x: $V: '2M' is out of range (4K to 1M)"), "said: %s", err);

    capture_begin(&saved, &tmp);
    r = fl_config_value("x", "--cap-quota", "many", FL_CONFIG_COUNT, 1, 100, &v);
    err = capture_end(saved, tmp);
    ck_assert_int_eq(r, -FL_E_INVALID_ARG);
    ck_assert_msg(strstr(err, "x: --cap-quota: 'many' is not a number"), "said: %s", err);

    capture_begin(&saved, &tmp);
    r = fl_config_value("x", "--cap-quota", "100", FL_CONFIG_COUNT, 1, 100, &v);
    err = capture_end(saved, tmp);
    ck_assert_int_eq(r, 0);
    ck_assert_uint_eq(v, 100);
    ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(test_env)
{
    int saved;
    FILE *tmp;
    uint64_t v = 5;
    unsetenv("FL_TEST_SIZE");
    ck_assert_int_eq(fl_config_env("t", "FL_TEST_SIZE", FL_CONFIG_SIZE, 1, UINT64_MAX, &v), 0);
    ck_assert_uint_eq(v, 5);
    setenv("FL_TEST_SIZE", "", 1); /* empty: as if unset */
    ck_assert_int_eq(fl_config_env("t", "FL_TEST_SIZE", FL_CONFIG_SIZE, 1, UINT64_MAX, &v), 0);
    ck_assert_uint_eq(v, 5);
    setenv("FL_TEST_SIZE", "4G", 1);
    ck_assert_int_eq(fl_config_env("t", "FL_TEST_SIZE", FL_CONFIG_SIZE, 1, UINT64_MAX, &v), 1);
    ck_assert_uint_eq(v, 4ull << 30);

    const char *bad[] = {"abc", "0", "4X"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        setenv("FL_TEST_SIZE", bad[i], 1);
        v = 5;
        capture_begin(&saved, &tmp);
        int r = fl_config_env("t", "FL_TEST_SIZE", FL_CONFIG_SIZE, 1, UINT64_MAX, &v);
        const char *err = capture_end(saved, tmp);
        ck_assert_int_eq(r, -FL_E_INVALID_ARG);
        ck_assert_uint_eq(v, 5);
        char want[64];
        snprintf(want, sizeof(want), "t: $FL_TEST_SIZE: '%s' is ", bad[i]);
        ck_assert_msg(strstr(err, want), "'%s' said: %s", bad[i], err);
    }
}
END_TEST

START_TEST(test_socket_path)
{
    char buf[108];
    const char *from;
    unsetenv("FAULTLINE_SOCKET");
    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    ck_assert_int_eq(fl_socket_path(buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "/run/user/1000/faultline/core.sock");
    fl_config_socket_path(buf, sizeof(buf), &from);
    ck_assert_str_eq(from, "$XDG_RUNTIME_DIR/faultline/core.sock");

    unsetenv("XDG_RUNTIME_DIR");
    ck_assert_int_eq(fl_socket_path(buf, sizeof(buf)), 0);
    char want[64];
    snprintf(want, sizeof(want), "/tmp/faultline-%u/core.sock", (unsigned)getuid());
    ck_assert_str_eq(buf, want);

    setenv("FAULTLINE_SOCKET", "/x/core.sock", 1);
    ck_assert_int_eq(fl_socket_path(buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "/x/core.sock");
    fl_config_socket_path(buf, sizeof(buf), &from);
    ck_assert_str_eq(from, "$FAULTLINE_SOCKET");

    /* 107 bytes fit a Unix socket address, 108 do not, whatever buf holds. */
    char longer[200], big[256];
    memset(longer, 'a', 107);
    longer[0] = '/';
    longer[107] = 0;
    setenv("FAULTLINE_SOCKET", longer, 1);
    ck_assert_int_eq(fl_socket_path(buf, sizeof(buf)), 0);
    longer[107] = 'a';
    longer[108] = 0;
    setenv("FAULTLINE_SOCKET", longer, 1);
    ck_assert_int_eq(fl_socket_path(buf, sizeof(buf)), -FL_E_INVALID_ARG);
    ck_assert_int_eq(fl_socket_path(big, sizeof(big)), -FL_E_INVALID_ARG);
    ck_assert_int_eq(fl_config_socket_path(big, sizeof(big), &from), 108);
    unsetenv("FAULTLINE_SOCKET");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("parse");
    tcase_add_loop_test(tc, test_good_size, 0, ARRAY_LEN(good_sizes));
    tcase_add_loop_test(tc, test_bad_size, 0, ARRAY_LEN(bad_sizes));
    tcase_add_test(tc, test_null_size);
    tcase_add_test(tc, test_count);
    suite_add_tcase(s, tc);

    tc = tcase_create("report");
    tcase_add_test(tc, test_value_messages);
    tcase_add_test(tc, test_env);
    tcase_add_test(tc, test_socket_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
