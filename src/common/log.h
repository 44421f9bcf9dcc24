/* Logging to stderr with levels; one line per message. */
#ifndef FL_LOG_H
#define FL_LOG_H

enum fl_log_level { FL_LOG_ERROR = 0, FL_LOG_WARN = 1, FL_LOG_INFO = 2, FL_LOG_DEBUG = 3 };

extern int fl_log_level;
extern const char *fl_log_prefix;

void fl_log(enum fl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define fl_error(...) fl_log(FL_LOG_ERROR, __VA_ARGS__)
#define fl_warn(...)  fl_log(FL_LOG_WARN, __VA_ARGS__)
#define fl_info(...)  fl_log(FL_LOG_INFO, __VA_ARGS__)
#define fl_debug(...)                                                                              \
    do {                                                                                           \
        if (fl_log_level >= FL_LOG_DEBUG) fl_log(FL_LOG_DEBUG, __VA_ARGS__);                       \
    } while (0)

#endif
