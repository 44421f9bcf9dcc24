/*
 * What every part of faultline opens or reads of the kernel the same way:
 * core, libfaultline, faultline-bench and the tests (which compile os.c
 * into their harness).
 */
#ifndef FL_COMMON_OS_H
#define FL_COMMON_OS_H

#include <stdbool.h>
#include <sys/types.h>

/*
 * A new userfaultfd, close-on-exec (flags: O_NONBLOCK or 0), API not yet
 * negotiated: /dev/userfaultfd, else userfaultfd(2), else -- only when
 * user_mode is not NULL -- userfaultfd(2) with UFFD_USER_MODE_ONLY, which
 * sets *user_mode (a system call into unbacked memory then fails with
 * EFAULT instead of faulting). *how (may be NULL) says which way it was
 * opened. Returns the descriptor, or -errno of the last way tried.
 */
int fl_uffd_new(int flags, bool *user_mode, const char **how);

/* A field of /proc/PID/status in kB (e.g. "VmRSS"; pid 0: this process),
 * or -1 if it cannot be read. */
long fl_proc_status_kb(pid_t pid, const char *field);

#endif
