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
 *      error"); the client learns it (exit 70) and nobody else notices. With
 *      io_uring reads ($FL_TEST_UFFD_READ=uring) core finds O_NONBLOCK
 *      cleared when a read of it completes ("O_NONBLOCK cleared").
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
 *  (e) HELLO with a uffd made blocking before: with preadv2 reads, POLLERR
 *      ends the session at once; with io_uring reads, core's read of it waits
 *      in the kernel while core's loop serves everyone else, until a fault
 *      (or an interruption) completes it and core ends the session
 *      ("O_NONBLOCK cleared").
 * A healthy component in another process keeps completing rounds of
 * alloc/attach/touch/detach/free throughout (asserted after each part).
 */
#include "harness.h"
#include "../../src/common/protocol.h"

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

/* The library's uffd in this process. */
static int own_uffd(void)
{
    int fd = -1;
    T_ASSERT(t_proc_fds_with(0, "anon_inode:[userfaultfd]", &fd, 1) >= 1);
    return fd;
}

/* HELLO with fd as its uffd; core must refuse or close the session, never
 * serve it (a first successful answer is allowed with may_answer: the
 * descriptor's fault shows only when core polls it). */
static void hello_refused(int fd, const char *what, int may_answer)
{
    int s = t_raw_connect();
    int r = t_raw_hello(s, FL_HELLO_UFFD, fd);
    T_ASSERT(r == 0 || r == -EPIPE || r == -ECONNRESET);
    t_raw_expect_closed(s, what, may_answer);
}

/* Whether core reads uffds through io_uring (--uffd-read uring). */
static int uring_reads(void)
{
    const char *r = getenv("FL_TEST_UFFD_READ");
    return r && !strcmp(r, "uring");
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

static struct t_core *start(void)
{
    struct t_core *c = t_core_start(NULL);
    t_baseline_begin(c, T_HEALTHY_ALLOCATES);
    return c;
}

static void part_a(int blocking)
{
    core = start();
    sh = t_shared(sizeof(*sh));
    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, 4096, T_MM_HANDLER); /* never served */
    thief_blocking = blocking;
    pid_t pid = t_spawn(thief_main, (void *)t_mm_export(&mm));
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
        if (uring_reads())
            T_WAIT_UNTIL(t_core_log_names(core, pid, "closed: protocol violation:") &&
                         t_core_log_names(core, pid, "(O_NONBLOCK cleared)"));
        else
            T_WAIT_UNTIL(t_core_log_names(
                core, pid, "closed: protocol violation: its userfaultfd reports an error"));
    }
    t_healthy_advances("the thief's end");
    /* Core still answers the manager, whose map the thief's faults hit. */
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, mm.rm, &f), 0);
    T_ERR(fl_rm_destroy(mgr, mm.rms, mm.rm), 0);
    fl_env_close(mgr);
    t_baseline_end(core);
}

static void thief_racing_core(void)
{
    part_a(0);
}

static void thief_with_a_blocking_uffd(void)
{
    part_a(1);
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

static void fault_outside_the_window(void)
{
    core = start();
    pid_t pid = t_spawn(outside_main, NULL);
    T_EQ(t_wait(pid), 0);
    t_healthy_advances("a fault outside the window");
    t_baseline_end(core);
}

/* ---- (c), (d) descriptors of the wrong kind ---- */

static void wrong_uffds(void)
{
    core = start();
    int uffd = t_new_uffd();
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
        uffd = t_new_uffd();
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
    t_baseline_end(core);
}

/* ---- (e) a uffd made blocking before core reads it ---- */

static void *blocked_touch(void *page)
{
    return (void *)(uintptr_t) * (volatile unsigned char *)page; /* never served */
}

static void blocking_uffd_before_hello(void)
{
    core = start();
    int uffd = t_new_uffd();
    T_ASSERT(uffd >= 0);
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID};
    T_EQ(ioctl(uffd, UFFDIO_API, &api), 0);
    size_t size = 1ul << 30;
    void *w = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    T_ASSERT(w != MAP_FAILED);
    struct uffdio_register reg = {.range = {.start = (uintptr_t)w, .len = size},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    T_EQ(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
    int fl = fcntl(uffd, F_GETFL);
    T_ASSERT(fl >= 0 && fcntl(uffd, F_SETFL, fl & ~O_NONBLOCK) == 0);
    int s = t_raw_connect();
    struct fl_req_hello h;
    fl_msg_init(&h, FL_REQ_HELLO, 1);
    h.version = FL_PROTO_VERSION;
    h.flags = FL_HELLO_UFFD;
    h.window_base = (uintptr_t)w;
    h.window_size = size;
    T_EQ(fl_wire_send(s, &h, sizeof(h), uffd, 0), 0);
    if (!uring_reads()) {
        t_raw_expect_closed(s, "a uffd made blocking before HELLO", 1);
        T_WAIT_UNTIL(t_core_log_contains(core, "its userfaultfd reports an error"));
    } else {
        struct fl_msg_reply r;
        t_raw_reply(s, &r);
        T_EQ(r.status, 0);
        /* Core's read waits in the kernel, and core's loop serves everyone
         * else meanwhile: the healthy peer advances. (Whether the read waits
         * in an io-wq worker or as an armed poll is the kernel's choice, and
         * workers belong to the thread, not to one ring: not asserted.) */
        for (int i = 0; i < 3; i++) t_healthy_advances("core's read of a blocking uffd waiting");
        /* The read ends at a fault, or earlier when it completes for another
         * reason (EINTR: the watchdog, io_uring's task work; uffd.c): core
         * checks O_NONBLOCK at every completion and ends the session then. */
        struct pollfd pf = {.fd = s, .events = POLLIN | POLLRDHUP};
        bool early = poll(&pf, 1, 0) == 1;
        pthread_t t;
        if (!early) T_EQ(pthread_create(&t, NULL, blocked_touch, w), 0);
        t_raw_expect_closed(s, "a uffd made blocking before HELLO", 0);
        T_WAIT_UNTIL(
            t_core_log_line_has(core, "closed: protocol violation", "O_NONBLOCK cleared", NULL));
        if (!early) {
            struct uffdio_zeropage z = {.range = {.start = (uintptr_t)w, .len = 4096}};
            T_EQ(ioctl(uffd, UFFDIO_ZEROPAGE, &z), 0);
            pthread_join(t, NULL);
        }
    }
    close(uffd);
    munmap(w, size);
    t_healthy_advances("a uffd made blocking before HELLO");
    t_baseline_end(core);
}

T_CASES(thief_racing_core, thief_with_a_blocking_uffd, fault_outside_the_window, wrong_uffds,
        blocking_uffd_before_hello)
