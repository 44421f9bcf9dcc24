/*
 * Readers of /proc and of log files, shared by the integration harness and
 * the soak (which links no harness: these only return -1 when they cannot
 * read). A pid of 0 is the calling process.
 */
#ifndef FL_TEST_PROC_H
#define FL_TEST_PROC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../../src/common/os.h"

/* How many descriptors the process has open. */
int t_proc_fd_count(pid_t pid);
/* A field of /proc/PID/status in kB (e.g. "VmRSS"): src/common/os.c's, as
 * the bench reads it. */
static inline long t_proc_status_kb(pid_t pid, const char *field)
{
    return fl_proc_status_kb(pid, field);
}
/* How many of its descriptors link to something containing text (e.g.
 * "memfd:faultline-ds"); the first max of them into fds (which may be NULL). */
int t_proc_fds_with(pid_t pid, const char *text, int *fds, int max);
/* How many of its mappings overlap [lo, hi); the first one's line of
 * /proc/PID/maps (without the newline) into line (which may be NULL). */
int t_proc_maps_overlapping(pid_t pid, uintptr_t lo, uintptr_t hi, char *line, size_t len);
/* The first line (without the newline) of the file the format names, e.g.
 * ("/proc/%d/comm", pid); "" and -1 if it cannot be read. */
int t_proc_line(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* How many lines of the file contain every text of the list (counting stops
 * at max); 0 if it cannot be read. */
int t_file_lines_with(const char *path, int max, const char *text, ...) __attribute__((sentinel));
/* The same with the texts in an array, or in a va_list (at most 8 count). */
int t_file_lines_matching(const char *path, int max, const char *const *texts, size_t n);
int t_file_lines_withv(const char *path, int max, const char *text, va_list ap);

#endif
