/*
 * The main of a unit-test program built on check: CHECK_MAIN(suite_fn) runs
 * the suite suite_fn() makes (CK_RUN_SUITE / CK_RUN_CASE select parts, as
 * check documents) and exits 0 if every test passed.
 */
#ifndef FL_TEST_CHECK_MAIN_H
#define FL_TEST_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

static inline int check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#define CHECK_MAIN(suite_fn)                                                                       \
    int main(void)                                                                                 \
    {                                                                                              \
        return check_run(suite_fn());                                                              \
    }

#endif
