/*
 * The kernel features faultline needs, checked by --check and at start-up.
 * Debian 12's own 6.1 kernel lacks RWF_NOWAIT reads of a userfaultfd: core
 * reads through io_uring there (uffd.c).
 */
#include "kernel_features.h"
#include "uffd.h"
#include "../common/log.h"
#include "../common/os.h"

#include <errno.h>
#include <fcntl.h>
#ifdef FL_HAVE_URING
#include <liburing.h>
#endif
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static int report(bool verbose, bool ok, bool required, const char *what, const char *detail)
{
    if (verbose || (!ok && required))
        fprintf(verbose ? stdout : stderr, "%-8s %s%s%s\n",
                ok ? "ok" : (required ? "MISSING" : "absent"), what, detail ? ": " : "",
                detail ? detail : "");
    return ok || !required ? 0 : 1;
}

int core_check_kernel(bool verbose)
{
    int missing = 0;
    char detail[128];
    bool nowait_ok = false;

    const char *how;
    bool user_mode;
    int uffd = fl_uffd_new(O_NONBLOCK, &user_mode, &how);
    snprintf(detail, sizeof(detail), "%s", uffd >= 0 ? how : strerror(-uffd));
    missing += report(verbose, uffd >= 0, true, "userfaultfd", detail);
    if (uffd >= 0) {
        struct uffdio_api api = {.api = UFFD_API, .features = 0};
        int r = ioctl(uffd, UFFDIO_API, &api);
        missing += report(verbose, r == 0, true, "UFFDIO_API", r ? strerror(errno) : NULL);
        uint64_t f = r == 0 ? api.features : 0;
        missing += report(verbose, f & UFFD_FEATURE_THREAD_ID, true, "UFFD_FEATURE_THREAD_ID",
                          "names the faulting thread");
        missing += report(verbose, f & UFFD_FEATURE_MINOR_SHMEM, true, "UFFD_FEATURE_MINOR_SHMEM",
                          "revocation without replacing the VMA");
        missing += report(verbose, f & UFFD_FEATURE_WP_HUGETLBFS_SHMEM, true,
                          "UFFD_FEATURE_WP_HUGETLBFS_SHMEM", "WRITE faults on read-only memory");
        /* Optional: without it READ and WRITE faults name their page. */
        bool exact = f & UFFD_FEATURE_EXACT_ADDRESS;
        report(verbose, exact, false, "UFFD_FEATURE_EXACT_ADDRESS",
               exact ? "fault() names the exact byte"
                     : "fault() names the page of READ and WRITE faults");
        if (!exact && !verbose && r == 0)
            fl_warn("this kernel lacks UFFD_FEATURE_EXACT_ADDRESS (Linux 5.18): fault() reports "
                    "READ and WRITE faults at their page's first byte, EXEC faults exactly");
        close(uffd);
        /* A fresh uffd with the features enabled, to try a non-blocking read. */
        uffd = fl_uffd_new(O_NONBLOCK, &user_mode, NULL);
        if (uffd >= 0) {
            struct uffdio_api a2 = {.api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID};
            ioctl(uffd, UFFDIO_API, &a2);
            /* Clear O_NONBLOCK, as a hostile client could: the read must still not wait. */
            fcntl(uffd, F_SETFL, 0);
            struct uffd_msg m;
            struct iovec iov = {&m, sizeof(m)};
            ssize_t n = preadv2(uffd, &iov, 1, -1, RWF_NOWAIT);
            bool ok = n < 0 && errno == EAGAIN;
            snprintf(detail, sizeof(detail), "%s",
                     ok ? "reads of a shared uffd never block core"
                        : (n < 0 ? strerror(errno) : "unexpected data"));
            report(verbose, ok, false, "preadv2(RWF_NOWAIT) on userfaultfd", detail);
            nowait_ok = ok;
            close(uffd);
        }
    }

    int mfd = memfd_create("faultline-check", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    bool sealing = mfd >= 0 && ftruncate(mfd, 8192) == 0 &&
                   fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0;
    missing += report(verbose, sealing, true, "memfd_create with sealing",
                      sealing ? NULL : strerror(errno));
    bool punch = mfd >= 0 && fallocate(mfd, 0, 0, 8192) == 0 &&
                 fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 8192) == 0;
    missing += report(verbose, punch, true, "fallocate and PUNCH_HOLE on memfd",
                      punch ? NULL : strerror(errno));
    if (mfd >= 0) close(mfd);

    int pfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    missing += report(verbose, pfd >= 0, true, "pidfd_open", pfd < 0 ? strerror(errno) : NULL);
    if (pfd >= 0) close(pfd);

#ifdef FL_HAVE_URING
    struct io_uring ring;
    int r = io_uring_queue_init(8, &ring, 0);
    report(verbose, r == 0, false, "io_uring",
           r == 0 ? "event loop backend" : "core falls back to epoll");
    if (r == 0) io_uring_queue_exit(&ring);
#else
    report(verbose, false, false, "io_uring", "built without liburing: core uses epoll");
#endif

    /* How core reads a client's uffd without ever waiting (uffd.c). */
    bool uring_ok = false;
    if (verbose || core_uffd_needs_uring(nowait_ok)) {
        uring_ok = core_uffd_probe_uring(detail, sizeof(detail)) == 0;
        report(verbose, uring_ok, false, "io_uring reads of a userfaultfd", detail);
    }
    char way[200];
    bool can = core_uffd_choose(nowait_ok, uring_ok, way, sizeof(way));
    missing += report(verbose, can, true, "userfaultfd reads", way);

    if (verbose)
        printf("%s\n", missing ? "faultline cannot run on this kernel: see MISSING above"
                               : "this kernel has everything faultline needs");
    return missing ? -1 : 0;
}
