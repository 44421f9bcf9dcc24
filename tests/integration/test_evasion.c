/*
 * A client that tries to keep memory past its revocation, with its own
 * runtime's help withheld: it forks, mremaps its window beyond its
 * attachment, and pins the page with an io_uring fixed buffer, before its
 * manager detaches and then frees the dataspace behind it. Core must carry on
 * (the detach returns, the free returns, a healthy component in another
 * process keeps completing rounds of alloc/attach/touch/detach/free), and
 * what the client achieves is what README's trust model says it can:
 *
 *  - fork: nothing. The child inherits neither the window (MADV_DONTFORK)
 *    nor any memfd (the fork handler closes them): it has no memfd
 *    descriptor, and its touch of the window is a SIGSEGV.
 *  - mremap of its 1-page attachment (a slice of a 4-page dataspace, through
 *    a managed dataspace) to 4 pages, MREMAP_MAYMOVE: the moved mapping shows
 *    all four pages of the dataspace, also the three it was never given
 *    ("can read all of a dataspace of which it was given a slice"). The
 *    agent's revocation at detach cannot reach a mapping that left the
 *    window: after the detach returned, the moved mapping still shares the
 *    dataspace (it sees the manager's later write) -- "can keep memory it was
 *    once given until that memory is freed". Freeing punches the memfd: the
 *    moved mapping then reads zeros, and nothing it writes reaches anyone.
 *  - io_uring fixed buffer over the attached page (pinned): after the detach
 *    the pinned page is still the dataspace's page (the manager's later write
 *    shows through IORING_OP_WRITE_FIXED); after the free the page is
 *    orphaned: the client keeps a copy of the contents it had when the memfd
 *    was punched, and nothing anybody writes later reaches it.
 * If io_uring is not available, that part is skipped (said on stderr).
 */
#include "harness.h"

#include <linux/io_uring.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a minimal io_uring: one fixed buffer, WRITE_FIXED into a pipe ---- */

struct ring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static int ring_init(struct ring *r, void *buf, size_t len)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    r->fd = (int)syscall(__NR_io_uring_setup, 4, &p);
    if (r->fd < 0) return -1;
    size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) sqsz = cqsz = sqsz > cqsz ? sqsz : cqsz;
    char *sq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                    IORING_OFF_SQ_RING);
    T_ASSERT(sq != MAP_FAILED);
    char *cq = sq;
    if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
        cq = mmap(NULL, cqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                  IORING_OFF_CQ_RING);
        T_ASSERT(cq != MAP_FAILED);
    }
    r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    T_ASSERT(r->sqes != MAP_FAILED);
    r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p.sq_off.array);
    r->cq_head = (unsigned *)(cq + p.cq_off.head);
    r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    struct iovec iov = {buf, len};
    if (syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0) {
        close(r->fd);
        return -2;
    }
    return 0;
}

/* The first byte of the fixed buffer, as the kernel reads it now. */
static int ring_peek(struct ring *r, void *buf)
{
    int p[2];
    T_ASSERT(pipe(p) == 0);
    unsigned tail = *r->sq_tail, idx = tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[idx];
    memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_WRITE_FIXED;
    sqe->fd = p[1];
    sqe->addr = (uintptr_t)buf;
    sqe->len = 1;
    sqe->off = (uint64_t)-1;
    sqe->buf_index = 0;
    r->sq_array[idx] = idx;
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    T_EQ(syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0), 1);
    unsigned head = *r->cq_head;
    T_ASSERT(head != __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE));
    int res = r->cqes[head & *r->cq_mask].res;
    __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
    T_EQ(res, 1);
    unsigned char ch;
    T_EQ(read(p[0], &ch, 1), 1);
    close(p[0]);
    close(p[1]);
    return ch;
}

/* ---- the evader ---- */

static int memfd_count(void)
{
    return t_proc_fds_with(0, "memfd:faultline-ds", NULL, 0);
}

static void wait_word(struct t_child *c, const char *word)
{
    char line[32];
    t_child_command(c, line, sizeof(line));
    T_ASSERT(!strcmp(line, word));
}

static int evader_main(struct t_child *c)
{
    char token[64];
    t_child_command(c, token, sizeof(token));
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan when the test fails */
    struct fl_env *env = t_env();
    volatile unsigned char *v = t_import_attach(env, token);
    T_EQ(v[0], 'A');
    T_EQ(memfd_count(), 1);

    /* fork: the child has neither the window nor the memfd. */
    fflush(NULL);
    pid_t child = fork();
    T_ASSERT(child >= 0);
    if (child == 0) {
        if (memfd_count() != 0) _exit(3);
        signal(SIGSEGV, SIG_DFL);
        (void)v[0];
        _exit(4); /* it could read the window */
    }
    int st;
    T_EQ(waitpid(child, &st, 0), child);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV))
        T_FAILF("forked child: status %#x (3: it had a memfd, 4: it read the window)", st);

    /* io_uring: pin the attached page. */
    struct ring ring;
    int ring_ok = ring_init(&ring, (void *)v, 4096) == 0;
    if (!ring_ok) fprintf(stderr, "io_uring not available here: that part is skipped\n");
    if (ring_ok) T_EQ(ring_peek(&ring, (void *)v), 'A');

    /* mremap: one page attached, four mapped. */
    volatile unsigned char *q = mremap((void *)v, 4096, 4 * 4096, MREMAP_MAYMOVE);
    T_ASSERT(q != MAP_FAILED);
    for (int k = 0; k < 4; k++) T_EQ(q[k * 4096 + 1], 'A' + k);
    t_child_say(c, ring_ok ? "ready io_uring" : "ready");

    wait_word(c, "detached"); /* the manager detached, then wrote 'X' */
    T_EQ(q[0], 'X');
    if (ring_ok) T_EQ(ring_peek(&ring, (void *)v), 'X');
    t_child_say(c, "kept");

    wait_word(c, "freed"); /* the manager freed the dataspace */
    for (int k = 0; k < 4; k++) T_EQ(q[k * 4096 + 1], 0);
    q[0] = 'E'; /* reaches nobody */
    if (ring_ok) T_EQ(ring_peek(&ring, (void *)v), 'X');
    /* Its session is fine. */
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4096, &ds), 0);
    T_ERR(fl_ram_free(env, ds), 0);
    t_child_say(c, "done");
    wait_word(c, "exit");
    fl_env_close(env);
    return 0;
}

static void evader_keeps_what_the_trust_model_says(void)
{
    struct t_core *core = t_core_start(NULL);
    t_baseline_begin(core, T_HEALTHY_ALLOCATES);

    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, 4 * 4096, 0);
    fl_cap d;
    volatile unsigned char *dp = t_ram(mgr, 4 * 4096, &d);
    for (int k = 0; k < 4; k++) memset((void *)(dp + k * 4096), 'A' + k, 4096);
    t_mm_attach(&mm, d, 0, 4096, 0);

    struct t_child ev;
    t_child_spawn(&ev, "evader", evader_main);
    t_child_send(&ev, "%s", t_mm_export(&mm));
    char line[32];
    t_child_line(&ev, line, sizeof(line));
    T_ASSERT(!strncmp(line, "ready", 5));
    t_healthy_advances("the evader's fork, mremap and pin");

    /* Detach: returns, whatever the evader did to its window. */
    T_ERR(fl_region_map_detach(mgr, mm.rm, 0), 0);
    t_healthy_advances("the detach");
    dp[0] = 'X';
    t_child_send(&ev, "detached");
    t_child_expect(&ev, "kept");

    /* Free: the memfd is punched; what the evader kept is gone or orphaned. */
    T_ERR(fl_detach(mgr, (const void *)dp), 0);
    T_ERR(fl_ram_free(mgr, d), 0);
    t_healthy_advances("the free");
    t_child_send(&ev, "freed");
    t_child_expect(&ev, "done");
    t_child_send(&ev, "exit");
    T_EQ(t_wait(ev.pid), 0);

    T_ERR(fl_rm_destroy(mgr, mm.rms, mm.rm), 0);
    fl_env_close(mgr);
    t_baseline_end(core);
}

T_CASES(evader_keeps_what_the_trust_model_says)
