/* faultline-run: the results of a run, as text, TAP and JUnit XML. */
#ifndef FL_RUN_REPORT_H
#define FL_RUN_REPORT_H

#include <stdbool.h>
#include <stddef.h>

struct result {
    const char *name, *path;
    int code;     /* enum run_result */
    char *reason; /* why it failed, was broken or skipped */
    double seconds;
    char *output; /* everything it printed */
    size_t output_len;
};

/* One TAP result line, numbered n. */
void report_tap_line(int n, const struct result *res);

/* Write the JUnit XML of all results to path; 0 or -1 with errno. */
int report_junit(const char *path, const struct result *res, int n);

#endif
