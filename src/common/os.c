#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

int fl_uffd_new(int flags, bool *user_mode, const char **how)
{
    flags |= O_CLOEXEC;
    const char *way = "/dev/userfaultfd";
    int fd = -1, dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
        close(dev);
    }
    if (fd < 0) {
        way = "userfaultfd(2) (no access to /dev/userfaultfd)";
        fd = (int)syscall(SYS_userfaultfd, flags);
    }
    if (user_mode) *user_mode = false;
    if (fd < 0 && user_mode) {
        way = "userfaultfd(2) with UFFD_USER_MODE_ONLY (vm.unprivileged_userfaultfd=0 and no "
              "/dev/userfaultfd access): syscalls into unbacked managed memory fail with EFAULT";
        fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
        *user_mode = fd >= 0;
    }
    if (how) *how = way;
    return fd < 0 ? -errno : fd;
}

long fl_proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    if (pid)
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    else
        snprintf(path, sizeof(path), "/proc/self/status");
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, field, fl) && line[fl] == ':') v = strtol(line + fl + 1, NULL, 10);
    fclose(f);
    return v;
}
