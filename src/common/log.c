#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int fl_log_level = FL_LOG_INFO;
const char *fl_log_prefix = "faultline";

void fl_log(enum fl_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    if ((int)level > fl_log_level) return;
    char line[1024];
    int n = snprintf(line, sizeof(line), "%s: %s: ", fl_log_prefix, names[level]);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof(line)) vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strnlen(line, sizeof(line) - 2);
    line[len++] = '\n';
    /* One write per line so that lines of several threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
