/*
 * The main of a unit-test program built on check, and its suite from a table:
 * CHECK_MAIN(suite_fn) runs the suite suite_fn() makes (CK_RUN_SUITE / CK_RUN_CASE select parts, as
 * check documents) and exits 0 if every test passed.
 */
#ifndef FL_TEST_CHECK_MAIN_H
#define FL_TEST_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>
#include <string.h>

/*
 * A suite from a table: each row one test of a test case (the rows of a case
 * consecutive), added with tcase_add_loop_test for _i from 0 to loops - 1, or
 * once with loops 0. Every case gets the checked fixture setup and teardown
 * (both may be NULL).
 */
struct check_test {
    const char *tcase;
    const TTest *test;
    int loops;
};
static inline Suite *check_suite(const char *name, const struct check_test *t, size_t n, SFun setup,
                                 SFun teardown)
{
    Suite *s = suite_create(name);
    TCase *tc = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!tc || strcmp(t[i].tcase, t[i - 1].tcase)) {
            tc = tcase_create(t[i].tcase);
            if (setup || teardown) tcase_add_checked_fixture(tc, setup, teardown);
            suite_add_tcase(s, tc);
        }
        if (t[i].loops)
            tcase_add_loop_test(tc, t[i].test, 0, t[i].loops);
        else
            tcase_add_test(tc, t[i].test);
    }
    return s;
}
#define CHECK_SUITE(name, table, setup, teardown)                                                  \
    check_suite(name, table, sizeof(table) / sizeof((table)[0]), setup, teardown)

/* Run the suite (each test in a process of its own with CK_FORK, as check's
 * default is unless $CK_FORK says no; CK_NOFORK: in this one): 0 if every test
 * passed. */
static inline int check_run_mode(Suite *s, int fork_mode)
{
    SRunner *sr = srunner_create(s);
    if (fork_mode >= 0) srunner_set_fork_status(sr, (enum fork_status)fork_mode);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static inline int check_run(Suite *s)
{
    return check_run_mode(s, -1);
}

#define CHECK_MAIN(suite_fn)                                                                       \
    int main(void)                                                                                 \
    {                                                                                              \
        return check_run(suite_fn());                                                              \
    }
/* The same with the fork mode forced (CK_FORK: tests must not share state). */
#define CHECK_MAIN_FORK(suite_fn, mode)                                                            \
    int main(void)                                                                                 \
    {                                                                                              \
        return check_run_mode(suite_fn(), mode);                                                   \
    }

#endif
