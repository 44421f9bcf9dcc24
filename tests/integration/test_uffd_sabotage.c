/*
 * Peers that abuse the userfaultfd they share with core.
 *  (a) A thief: a client thread reads the client's own uffd, racing core for
 *      every message, while another thread keeps faulting on a managed
 *      dataspace whose manager never answers and a third wakes the faulter
 *      again and again. Core's poll says "readable", the thief takes the
 *      message first: core's read must not block (preadv2 RWF_NOWAIT), and
 *      the thief demonstrably steals messages while core carries on.
 *      Then the same with O_NONBLOCK cleared on the uffd (the file description
 *      core reads too) and blocking reads: the kernel reports POLLERR for a
 *      blocking uffd, and core ends that session ("its userfaultfd reports an
 *      error"); the client learns it (exit 70) and nobody else notices.
 *  (b) A client registers a range outside its window with its uffd and
 *      touches it: core logs "outside its window, ignored", only that thread
 *      waits (the client resolves it itself with UFFDIO_ZEROPAGE).
 *  (c) HELLO with a uffd on which UFFDIO_API was never called: HELLO is
 *      answered, but the uffd's poll reports POLLERR, and core closes that
 *      session ("its userfaultfd reports an error").
 *  (d) HELLO with a uffd that has each event feature (FORK, REMAP, REMOVE,
 *      UNMAP) in turn, and with a pipe where the uffd belongs: refused, closed,
 *      logged (test_protocol_violation covers EVENT_FORK, a regular file and
 *      an eventfd).
 * A healthy component in another process keeps completing rounds of
 * alloc/attach/touch/detach/free throughout (asserted after each part).
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ---- */

static struct t_core *core;

static int log_line_has(const char *a, const char *b)
{
    FILE *f = fopen(core->log, "r");
    if (!f) return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) found = strstr(line, a) && strstr(line, b);
    fclose(f);
    return found;
}

/* The library's uffd in this process. */
static int own_uffd(void)
{
    DIR *d = opendir("/proc/self/fd");
    T_ASSERT(d);
    int fd = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], link[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t l = readlink(path, link, sizeof(link) - 1);
        if (l <= 0) continue;
        link[l] = 0;
        if (!strcmp(link, "anon_inode:[userfaultfd]")) fd = atoi(e->d_name);
    }
    closedir(d);
    T_ASSERT(fd >= 0);
    return fd;
}

static int raw_connect(void)
{
    int s = t_raw_connect();
    struct timeval tv = {T_WAIT_MS / 1000, 0};
    T_ASSERT(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    return s;
}

/* HELLO with fd as its uffd; core must refuse or close the session, never
 * serve it (a first successful answer is allowed with may_answer: the
 * descriptor's fault shows only when core polls it). */
static void hello_refused(int fd, const char *what, int may_answer)
{
    int s = raw_connect();
    struct fl_req_hello h;
    fl_msg_init(&h, FL_REQ_HELLO, 1);
    h.version = FL_PROTO_VERSION;
    h.flags = FL_HELLO_UFFD;
    h.window_base = 0x100000000000ull;
    h.window_size = 1ull << 20;
    int r = fl_wire_send(s, &h, sizeof(h), fd, 0);
    T_ASSERT(r == 0 || r == -EPIPE || r == -ECONNRESET);
    for (;;) {
        _Alignas(8) uint8_t buf[FL_MSG_MAX + 8];
        ssize_t n = recv(s, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (n < 0 && errno == ECONNRESET)) break;
        if (n < 0) {
            fprintf(stderr, "%s: core neither answered nor closed (%s)\n", what, strerror(errno));
            exit(T_FAIL);
        }
        struct fl_msg_reply rep;
        T_EQ(n, sizeof(rep));
        memcpy(&rep, buf, sizeof(rep));
        if (rep.status >= 0 && !may_answer--) {
            fprintf(stderr, "%s: core accepted it (status %d)\n", what, rep.status);
            exit(T_FAIL);
        }
    }
    close(s);
}

/* ---- (a) the thief ---- */

struct shared {
    atomic_ulong stolen, touches;
    atomic_int stop;
};
static struct shared *sh;
static volatile unsigned char *thief_view;
static int thief_uffd, thief_blocking;
static uintptr_t thief_page;

static void *thief(void *arg)
{
    (void)arg;
    while (!atomic_load(&sh->stop)) {
        struct uffd_msg m;
        if (!thief_blocking) {
            struct pollfd pf = {.fd = thief_uffd, .events = POLLIN};
            poll(&pf, 1, -1);
        }
        ssize_t n = read(thief_uffd, &m, sizeof(m));
        if (n == sizeof(m)) atomic_fetch_add(&sh->stolen, 1);
    }
    return NULL;
}

static void *waker(void *arg)
{
    (void)arg;
    while (!atomic_load(&sh->stop)) {
        struct uffdio_range r = {.start = thief_page, .len = 4096};
        ioctl(thief_uffd, UFFDIO_WAKE, &r);
        usleep(200);
    }
    return NULL;
}

static void *faulter(void *arg)
{
    (void)arg;
    for (;;) {
        (void)thief_view[0]; /* never served: only the waker lets it retry */
        atomic_fetch_add(&sh->touches, 1);
    }
    return NULL;
}

static int thief_main(void *arg)
{
    const char *token = arg;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan when the test fails */
    struct fl_env *env = t_env();
    thief_view = t_import_attach(env, token);
    thief_page = (uintptr_t)thief_view;
    thief_uffd = own_uffd();
    if (thief_blocking) {
        int fl = fcntl(thief_uffd, F_GETFL);
        T_ASSERT(fl >= 0 && fcntl(thief_uffd, F_SETFL, fl & ~O_NONBLOCK) == 0);
    }
    pthread_t t[3];
    T_EQ(pthread_create(&t[0], NULL, thief, NULL), 0);
    T_EQ(pthread_create(&t[1], NULL, waker, NULL), 0);
    T_EQ(pthread_create(&t[2], NULL, faulter, NULL), 0);
    for (;;) pause(); /* killed by the test */
}

static void part_a(int blocking)
{
    if (!sh)
        sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    T_ASSERT(sh != MAP_FAILED);
    memset(sh, 0, sizeof(*sh));
    struct fl_env *mgr = t_env();
    fl_cap rm, mds, sigh;
    T_ERR(fl_rm_create(mgr, 4096, &rm), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    T_ERR(fl_signal_context_create(mgr, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(mgr, rm, sigh), 0); /* never served */
    static char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    thief_blocking = blocking;
    pid_t pid = t_spawn(thief_main, token);
    if (!blocking) {
        /* The thief steals, and core saw the fault too (reflected it). */
        T_WAIT_UNTIL(atomic_load(&sh->stolen) >= 200);
        T_WAIT_UNTIL(t_core_log_contains(core, "reflect READ fault"));
        for (int i = 0; i < 5; i++) {
            unsigned long stolen = atomic_load(&sh->stolen);
            t_healthy_advances("a thief racing core for its uffd");
            T_WAIT_UNTIL(atomic_load(&sh->stolen) > stolen); /* it goes on */
        }
        kill(pid, SIGKILL);
        T_EQ(t_wait(pid), 128 + SIGKILL);
    } else {
        /* Core ends its session; the library ends the process. */
        T_EQ(t_wait(pid), 70);
        char want[80];
        snprintf(want, sizeof(want), "(pid %d (", (int)pid);
        T_WAIT_UNTIL(
            log_line_has(want, "closed: protocol violation: its userfaultfd reports an error"));
    }
    t_healthy_advances("the thief's end");
    /* Core still answers the manager, whose map the thief's faults hit. */
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_ERR(fl_rm_destroy(mgr, rm), 0);
    fl_env_close(mgr);
}

/* ---- (b) a fault outside the window ---- */

static volatile unsigned char *outside;
static atomic_int outside_read;

static void *outside_toucher(void *arg)
{
    (void)arg;
    atomic_store(&outside_read, 1 + outside[100]);
    return NULL;
}

static int outside_main(void *arg)
{
    (void)arg;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct fl_env *env = t_env();
    int uffd = own_uffd();
    outside = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    T_ASSERT(outside != MAP_FAILED);
    struct uffdio_register reg = {.range = {.start = (uintptr_t)outside, .len = 4096},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    T_EQ(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
    pthread_t t;
    T_EQ(pthread_create(&t, NULL, outside_toucher, NULL), 0);
    /* Core ignores it: the thread waits until this component resolves it. */
    T_WAIT_UNTIL(t_core_log_contains(core, "outside its window, ignored"));
    T_EQ(atomic_load(&outside_read), 0);
    struct uffdio_zeropage z = {.range = {.start = (uintptr_t)outside, .len = 4096}};
    T_EQ(ioctl(uffd, UFFDIO_ZEROPAGE, &z), 0);
    pthread_join(t, NULL);
    T_EQ(atomic_load(&outside_read), 1);
    /* Its session is fine. */
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4096, &ds), 0);
    T_ERR(fl_ram_free(env, ds), 0);
    fl_env_close(env);
    return 0;
}

/* ---- (c), (d) descriptors of the wrong kind ---- */

static int new_uffd(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev >= 0) {
            fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
            close(dev);
        }
    }
    return fd;
}

static void part_cd(void)
{
    int uffd = new_uffd();
    T_ASSERT(uffd >= 0);
    int errs = t_core_log_count(core, "its userfaultfd reports an error");
    hello_refused(uffd, "a uffd without UFFDIO_API", 1);
    close(uffd);
    T_WAIT_UNTIL(t_core_log_count(core, "its userfaultfd reports an error") > errs);
    t_healthy_advances("a uffd without UFFDIO_API");

    static const struct {
        uint64_t feature;
        const char *name;
    } ev[] = {
        {UFFD_FEATURE_EVENT_FORK, "EVENT_FORK"},
        {UFFD_FEATURE_EVENT_REMAP, "EVENT_REMAP"},
        {UFFD_FEATURE_EVENT_REMOVE, "EVENT_REMOVE"},
        {UFFD_FEATURE_EVENT_UNMAP, "EVENT_UNMAP"},
    };
    for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++) {
        uffd = new_uffd();
        T_ASSERT(uffd >= 0);
        struct uffdio_api api = {.api = UFFD_API, .features = ev[i].feature};
        T_EQ(ioctl(uffd, UFFDIO_API, &api), 0);
        int before = t_core_log_count(core, "event features enabled");
        hello_refused(uffd, ev[i].name, 0);
        close(uffd);
        T_WAIT_FOR(t_core_log_count(core, "event features enabled") > before, ev[i].name);
        t_healthy_advances(ev[i].name);
    }

    int p[2];
    T_ASSERT(pipe2(p, O_CLOEXEC) == 0);
    hello_refused(p[0], "a pipe as uffd", 0);
    T_WAIT_UNTIL(t_core_log_count(core, "is not a userfaultfd") >= 1);
    /* Core did not keep it: the pipe's read end still works for us. */
    T_EQ(write(p[1], "x", 1), 1);
    char ch;
    T_EQ(read(p[0], &ch, 1), 1);
    close(p[0]);
    close(p[1]);
    t_healthy_advances("a pipe as uffd");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);
    int fd_base = t_core_fd_count(core);
    t_healthy_start(T_HEALTHY_ALLOCATES);
    t_healthy_advances("the healthy component's first rounds");

    part_a(0);
    part_a(1);
    pid_t pid = t_spawn(outside_main, NULL);
    T_EQ(t_wait(pid), 0);
    t_healthy_advances("a fault outside the window");
    part_cd();

    t_healthy_stop();
    T_WAIT_FOR(t_core_fd_count(core) == fd_base, "core's descriptors back at their baseline");
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
