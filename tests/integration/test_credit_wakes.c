/*
 * While a session's descriptor credit is exhausted, a fault that needs a new
 * memfd waits for the agent's acknowledgement, and core remembers one wake
 * per page and acknowledgement -- however many threads fault there and
 * however often (bounded state): when the acknowledgement comes, each such
 * page gets exactly one AGENT_RESUME.
 *
 * This process is the component, as a raw protocol peer with a real uffd
 * over its window, so that it sees every instruction core sends: it attaches
 * a managed dataspace of more single-page RAM dataspaces than the credit,
 * acknowledges nothing, and has real threads fault on two pages beyond the
 * credit (they wait in the uffd) and sends EXEC_FAULTs for those pages, many
 * times, in those threads' names. Then it acknowledges the oldest descriptor:
 * one wake each. A second round does the same after the credit ran out again.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGES   96u /* more than the credit: README says 64 */
#define WINDOW  (16u << 20)
#define THREADS 6
#define REPEATS 50

static int sock, uffd;
static uint64_t next_id = 1000;

/* What core sent the component so far. */
static uint64_t fd_maps[PAGES]; /* ids of MAPs that carried a memfd, in order */
static unsigned nfd_maps;
static bool mapped[PAGES];
static unsigned resumes[PAGES], resumes_elsewhere;
static uintptr_t at; /* where the managed dataspace landed in the window */

static void send_msg(void *msg, unsigned type, uint64_t id, int fd)
{
    struct fl_msg_hdr *h = msg;
    h->magic = FL_PROTO_MAGIC;
    h->type = (uint16_t)type;
    h->reserved = 0;
    h->id = id;
    T_EQ(fl_wire_send(sock, msg, fl_msg_size(type), fd, 0), 0);
}

/* An instruction core sent the component, noted. */
static void seen(const void *msg, int nfds)
{
    const struct fl_msg_hdr *h = msg;
    if (h->type == FL_MSG_AGENT_MAP) {
        const struct fl_msg_agent_map *m = msg;
        if (m->flags & FL_MAP_FD_ATTACHED) {
            T_EQ(nfds, 1);
            T_ASSERT(nfd_maps < PAGES);
            fd_maps[nfd_maps++] = m->hdr.id;
        }
        for (uint64_t va = m->va; va < m->va + m->len; va += 4096)
            if (va - at < PAGES * 4096ull) mapped[(va - at) / 4096] = true;
    } else if (h->type == FL_MSG_AGENT_RESUME) {
        const struct fl_msg_agent_resume *m = msg;
        if (m->va - at < PAGES * 4096ull && m->len == 4096)
            resumes[(m->va - at) / 4096]++;
        else
            resumes_elsewhere++;
    }
}

static struct fl_msg_reply rpc(void *msg, unsigned type, int fd)
{
    uint64_t id = next_id++;
    send_msg(msg, type, id, fd);
    struct fl_msg_reply r = t_raw_until_reply(sock, id, seen);
    T_EQ(r.status, 0);
    return r;
}

/* A round trip: every message sent before it has been handled. */
static void sync_core(void)
{
    struct fl_req_session_info si = {0};
    rpc(&si, FL_REQ_SESSION_INFO, -1);
}

static void ack(uint64_t seq)
{
    struct fl_msg_agent_ack a = {0};
    send_msg(&a, FL_MSG_AGENT_ACK, seq, -1);
}

static void exec_faults(uint32_t tid, unsigned page, int times)
{
    for (int i = 0; i < times; i++) {
        struct fl_msg_exec_fault m = {.tid = tid, .addr = at + page * 4096ull + 16};
        send_msg(&m, FL_MSG_EXEC_FAULT, 0, -1);
    }
}

/* ---- faulting threads ---- */

struct faulter {
    pthread_t t;
    unsigned page;
    atomic_int tid;
};

static void *faulter_main(void *arg)
{
    struct faulter *f = arg;
    atomic_store(&f->tid, (int)syscall(SYS_gettid));
    return (void *)(uintptr_t)((volatile uint8_t *)at)[f->page * 4096ull + 8];
}

/* Core has read every fault in the uffd (and handled it: it handles what it
 * reads before it looks at anything else). */
static bool uffd_drained(void)
{
    struct pollfd pf = {.fd = uffd, .events = POLLIN};
    return poll(&pf, 1, 0) == 0;
}

static void expect_one_wake(unsigned page, const char *when)
{
    if (resumes[page] != 1)
        T_FAILF("%s: page %u got %u wakes, expected one", when, page, resumes[page]);
}

static void one_wake_per_ack(void)
{
    /* A session that acknowledges nothing must not be ended meanwhile. */
    struct t_core *core = t_core_start("--revoke-deadline", "600000", NULL);
    struct fl_env *mgr = t_env();
    fl_cap rms, rm, mds;
    T_ERR(fl_rm_session_open(mgr, &rms), 0);
    T_ERR(fl_rm_create(mgr, rms, PAGES * 4096, &rm), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    for (unsigned i = 0; i < PAGES; i++) {
        fl_cap ds;
        T_ERR(fl_ram_alloc(mgr, 4096, &ds), 0);
        struct fl_attr a = {
            .use_at = true, .at = i * 4096ul, .writeable = true, .executable = true};
        T_ERR(fl_region_map_attach(mgr, rm, ds, &a, NULL), 0);
    }
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);

    /* The component: a window registered with a uffd, a session with it. */
    void *window = mmap(NULL, WINDOW, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    T_ASSERT(window != MAP_FAILED);
    uint32_t hflags = FL_HELLO_UFFD;
    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) {
        uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
        hflags |= FL_HELLO_USER_MODE_UFFD;
    }
    T_ASSERT(uffd >= 0);
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID};
    T_ASSERT(ioctl(uffd, UFFDIO_API, &api) == 0);
    struct uffdio_register reg = {.range = {.start = (uintptr_t)window, .len = WINDOW},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    T_ASSERT(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0);
    sock = t_raw_connect();
    struct fl_req_hello h = {.version = FL_PROTO_VERSION,
                             .flags = hflags,
                             .window_base = (uintptr_t)window,
                             .window_size = WINDOW};
    fl_wire_cap as = rpc(&h, FL_REQ_HELLO, uffd).val[1];
    struct fl_req_cap_import imp = {0};
    t_token_bytes(token, imp.token);
    fl_wire_cap ds = rpc(&imp, FL_REQ_CAP_IMPORT, -1).val[0];
    /* The attach maps every page eagerly, each a memfd of its own: beyond
     * the credit they are not mapped. Nothing is ever acknowledged here. */
    at = (uintptr_t)window; /* mapped[] is filled relative to it: place it there */
    struct fl_req_rm_attach ra = {.rm = as,
                                  .ds = ds,
                                  .at = at,
                                  .flags = FL_ATTACH_USE_AT | FL_ATTACH_WRITEABLE |
                                           FL_ATTACH_EXECUTABLE};
    T_EQ(rpc(&ra, FL_REQ_RM_ATTACH, -1).val[0], at);
    T_ASSERT(nfd_maps > 0);
    unsigned beyond[4], nb = 0;
    for (unsigned i = 0; i < PAGES && nb < 4; i++)
        if (!mapped[i]) beyond[nb++] = i;
    if (nb < 4) T_FAILF("the credit (%u descriptors) covers all %u pages", nfd_maps, PAGES);

    /* Round 1: threads wait on two pages beyond the credit, and EXEC faults
     * are sent for them again and again in those threads' names. */
    struct faulter f[THREADS];
    for (int i = 0; i < THREADS; i++) {
        f[i].page = beyond[i % 2];
        atomic_store(&f[i].tid, 0);
        T_EQ(pthread_create(&f[i].t, NULL, faulter_main, &f[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        T_WAIT_UNTIL(atomic_load(&f[i].tid) != 0);
        if (t_thread_waits_in_uffd(atomic_load(&f[i].tid)) < 0)
            t_skip("the kernel does not show where a thread waits");
    }
    T_WAIT_FOR(uffd_drained(), "core to read the threads' faults");
    for (int i = 0; i < THREADS; i++)
        exec_faults((uint32_t)atomic_load(&f[i].tid), f[i].page, REPEATS);
    sync_core();
    T_EQ(resumes[beyond[0]] + resumes[beyond[1]], 0); /* nobody woken before the ack */

    /* The oldest descriptor acknowledged: one wake per page. */
    ack(fd_maps[0]);
    sync_core();
    expect_one_wake(beyond[0], "round 1");
    expect_one_wake(beyond[1], "round 1");

    /* Round 2: the freed credit goes to a fault on a third page (mapped and
     * woken as usual), then many faults on a fourth wait for the next
     * acknowledgement. */
    unsigned before_maps = nfd_maps;
    exec_faults((uint32_t)gettid(), beyond[2], 1);
    exec_faults((uint32_t)gettid(), beyond[3], THREADS * REPEATS);
    for (int i = 0; i < THREADS; i++)
        exec_faults((uint32_t)atomic_load(&f[i].tid), beyond[3], REPEATS);
    sync_core();
    T_EQ(nfd_maps, before_maps + 1);
    T_ASSERT(mapped[beyond[2]] && !mapped[beyond[3]]);
    expect_one_wake(beyond[2], "a fault within the credit");
    T_EQ(resumes[beyond[3]], 0);
    ack(fd_maps[1]);
    sync_core();
    expect_one_wake(beyond[3], "round 2");
    expect_one_wake(beyond[0], "round 2 (no more for round 1's pages)");
    expect_one_wake(beyond[1], "round 2 (no more for round 1's pages)");
    T_EQ(resumes_elsewhere, 0);
    T_ASSERT(!t_core_log_contains(core, "too many descriptors in flight"));

    /* Let the threads go: zeros of our own under their pages. */
    for (int i = 0; i < 2; i++) {
        void *p = (void *)(at + beyond[i] * 4096ull);
        T_ASSERT(mmap(p, 4096, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1,
                      0) == p);
        struct uffdio_range wake = {.start = (uintptr_t)p, .len = 4096};
        T_ASSERT(ioctl(uffd, UFFDIO_WAKE, &wake) == 0);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(f[i].t, NULL);
    close(sock);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(one_wake_per_ack)
