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

#include "../integration/capture.h"
#include "check_main.h"

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

/* fl_config_value's result, value and line on stderr for each input. */
static const struct {
    const char *prog, *name, *value;
    enum fl_config_kind kind;
    uint64_t min, max;
    int r;
    uint64_t v;
    const char *said; /* "" for nothing */
} messages[] = {
    {"prog", "--ram-quota", "12X", FL_CONFIG_SIZE, 1, UINT64_MAX, -FL_E_INVALID_ARG, 7,
     "prog: --ram-quota: '12X' is not a size"},
    {"prog", "--ram-quota", "0", FL_CONFIG_SIZE, 1, UINT64_MAX, -FL_E_INVALID_ARG, 7,
     "prog: --ram-quota: '0' is out of range (at least 1)"},
    {"x", "$V", "2M", FL_CONFIG_SIZE, 4096, 1 << 20, -FL_E_INVALID_ARG, 7,
     "x: $V: '2M' is out of range (4K to 1M)"},
    {"x", "--cap-quota", "many", FL_CONFIG_COUNT, 1, 100, -FL_E_INVALID_ARG, 7,
     "x: --cap-quota: 'many' is not a number"},
    {"x", "--cap-quota", "100", FL_CONFIG_COUNT, 1, 100, 0, 100, ""},
};

static struct t_capture cap;

START_TEST(test_value_messages)
{
    uint64_t v = 7;
    ck_assert_int_eq(t_capture_begin(&cap, 2), 0);
    int r = fl_config_value(messages[_i].prog, messages[_i].name, messages[_i].value,
                            messages[_i].kind, messages[_i].min, messages[_i].max, &v);
    const char *err = t_capture_end(&cap);
    ck_assert_int_eq(r, messages[_i].r);
    ck_assert_uint_eq(v, messages[_i].v);
    /* The one line naming option and value, or nothing. */
    const char *want = messages[_i].said;
    ck_assert_msg(want[0] ? strstr(err, want) != NULL : !err[0], "said: %s", err);
    ck_assert_msg(!want[0] || strchr(err, '\n') == err + strlen(err) - 1, "not one line: %s", err);
}
END_TEST

START_TEST(test_env)
{
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
        ck_assert_int_eq(t_capture_begin(&cap, 2), 0);
        int r = fl_config_env("t", "FL_TEST_SIZE", FL_CONFIG_SIZE, 1, UINT64_MAX, &v);
        const char *err = t_capture_end(&cap);
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
    const struct check_test tests[] = {
        {"parse", test_good_size, ARRAY_LEN(good_sizes)},
        {"parse", test_bad_size, ARRAY_LEN(bad_sizes)},
        {"parse", test_null_size, 0},
        {"parse", test_count, 0},
        {"report", test_value_messages, ARRAY_LEN(messages)},
        {"report", test_env, 0},
        {"report", test_socket_path, 0},
    };
    return CHECK_SUITE("config", tests, NULL, NULL);
}

CHECK_MAIN(config_suite)
