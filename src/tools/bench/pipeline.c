/*
 * The baseline for reflected faults: the minimal pipeline a user would write
 * by hand instead of using faultline. A client registers an anonymous region
 * with its own userfaultfd and hands the uffd to a handler process; the
 * handler reads fault events and signals a manager process through an
 * eventfd; the manager makes one socket round trip to the handler ("resolve
 * the next fault from backing page X"), during which the handler copies the
 * page in with UFFDIO_COPY, which also wakes the client.
 *
 * It has none of faultline's guarantees (no isolation between clients, a
 * handler that blocks on a client's uffd, no sharing: the page is copied),
 * which is exactly why it is the yardstick for what they cost.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

#define BACKING_PAGES 256
#define MAX_PAIRS     8

struct pl {
    int nclients, nmgr;
    size_t pages;
    int csock[MAX_PAIRS][2]; /* clients -> handler: uffd and region base */
    int msock[MAX_PAIRS][2]; /* manager <-> handler: the round trip */
    int efd[MAX_PAIRS];      /* handler -> manager: "a fault is waiting" */
    int backing;             /* memfd the handler copies from */
    struct fault_times *times;
    struct chan ready, go, done, exit;
};

struct hello {
    uint64_t base;
    uint32_t client;
};

struct req {
    uint64_t backing_off;
};

struct rep {
    uint32_t client;
    uint32_t page;
};

static int open_uffd(void)
{
    int fd = -1, dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
        close(dev);
    }
    if (fd < 0) fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    if (fd < 0) return -1;
    struct uffdio_api api = {.api = UFFD_API};
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_fd(int sock, const void *buf, size_t len, int fd)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &mh, 0) == (ssize_t)len ? 0 : -1;
}

static int recv_fd(int sock, void *buf, size_t len)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t n;
    while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    if (n != (ssize_t)len) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

static int client(void *arg)
{
    worker_name("pl-client");
    struct pl *pl = arg;
    int idx = worker_index, pair = idx % pl->nmgr;
    int uffd = open_uffd();
    if (uffd < 0) die("userfaultfd");
    size_t len = pl->pages * PAGE;
    volatile char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    struct uffdio_register reg = {.range = {.start = (uintptr_t)p, .len = len},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) die("UFFDIO_REGISTER");
    struct hello h = {.base = (uintptr_t)p, .client = (uint32_t)idx};
    if (send_fd(pl->csock[pair][0], &h, sizeof(h), uffd) < 0) die("send uffd");
    close(uffd);
    chan_post(&pl->ready, 1);
    if (chan_wait(&pl->go, 1, -1) < 0) return 1;
    struct fault_times *t = pl->times + (size_t)idx * pl->pages;
    for (size_t i = 0; i < pl->pages; i++) {
        t[i].t0 = now_ns();
        p[i * PAGE] = 1;
        t[i].end = now_ns();
    }
    chan_post(&pl->done, 1);
    chan_wait(&pl->exit, 1, -1);
    return 0;
}

static _Noreturn int handler(void *arg)
{
    worker_name("pl-handler");
    struct pl *pl = arg;
    int pair = worker_index;
    int n = 0;
    for (int c = pair; c < pl->nclients; c += pl->nmgr) n++;
    struct pollfd *pfd = calloc((size_t)n + 1, sizeof(*pfd));
    struct hello *hello = calloc((size_t)n, sizeof(*hello));
    size_t qcap = (size_t)n * 4 + 16, qhead = 0, qtail = 0;
    struct rep *queue = calloc(qcap, sizeof(*queue));
    uint64_t *addr = calloc(qcap, sizeof(*addr));
    int *uffd_of = calloc((size_t)n, sizeof(int));
    if (!pfd || !hello || !queue || !addr || !uffd_of) die("calloc");
    for (int i = 0; i < n; i++) {
        int fd = recv_fd(pl->csock[pair][1], &hello[i], sizeof(hello[i]));
        if (fd < 0) die("receive uffd");
        fcntl(fd, F_SETFL, O_NONBLOCK);
        pfd[i] = (struct pollfd){.fd = fd, .events = POLLIN};
        uffd_of[i] = fd;
    }
    pfd[n] = (struct pollfd){.fd = pl->msock[pair][1], .events = POLLIN};
    char *src = mmap(NULL, BACKING_PAGES * PAGE, PROT_READ, MAP_SHARED, pl->backing, 0);
    if (src == MAP_FAILED) die("mmap backing");
    chan_post(&pl->ready, 1);
    for (;;) {
        if (poll(pfd, (nfds_t)n + 1, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        for (int i = 0; i < n; i++) {
            if (!(pfd[i].revents & POLLIN)) continue;
            struct uffd_msg m[16];
            ssize_t k;
            while ((k = read(pfd[i].fd, m, sizeof(m))) > 0) {
                uint64_t cnt = 0;
                for (ssize_t j = 0; j < k / (ssize_t)sizeof(m[0]); j++) {
                    if (m[j].event != UFFD_EVENT_PAGEFAULT) continue;
                    uint64_t a = m[j].arg.pagefault.address & ~(uint64_t)(PAGE - 1);
                    queue[qtail % qcap] =
                        (struct rep){hello[i].client, (uint32_t)((a - hello[i].base) / PAGE)};
                    addr[qtail % qcap] = (uint64_t)i << 56 | a; /* which uffd, where */
                    qtail++;
                    cnt++;
                }
                if (cnt && write(pl->efd[pair], &cnt, sizeof(cnt)) != sizeof(cnt))
                    die("eventfd write");
            }
        }
        if (pfd[n].revents & POLLIN) {
            struct req q;
            if (recv(pfd[n].fd, &q, sizeof(q), 0) != sizeof(q)) die("handler recv");
            if (qhead == qtail) die("a request without a pending fault");
            struct rep r = queue[qhead % qcap];
            uint64_t a = addr[qhead % qcap] & ((1ull << 56) - 1);
            int u = uffd_of[addr[qhead % qcap] >> 56];
            qhead++;
            struct uffdio_copy cp = {.dst = a,
                                     .src = (uintptr_t)src + q.backing_off % (BACKING_PAGES * PAGE),
                                     .len = PAGE};
            while (ioctl(u, UFFDIO_COPY, &cp) < 0 && errno == EAGAIN) cp.copy = 0;
            if (send(pfd[n].fd, &r, sizeof(r), 0) != sizeof(r)) die("handler send");
        }
    }
}

static _Noreturn int manager(void *arg)
{
    worker_name("pl-manager");
    struct pl *pl = arg;
    int pair = worker_index;
    int sock = pl->msock[pair][0];
    uint64_t next = 0;
    chan_post(&pl->ready, 1);
    for (;;) {
        uint64_t v;
        ssize_t k = read(pl->efd[pair], &v, sizeof(v));
        if (k < 0 && errno == EINTR) continue;
        if (k != sizeof(v)) die("eventfd read");
        uint64_t t1 = now_ns();
        for (uint64_t j = 0; j < v; j++) {
            struct req q = {.backing_off = (next++ % BACKING_PAGES) * PAGE};
            if (send(sock, &q, sizeof(q), 0) != sizeof(q)) die("manager send");
            struct rep r;
            if (recv(sock, &r, sizeof(r), 0) != sizeof(r)) die("manager recv");
            uint64_t t3 = now_ns();
            if (r.client < (uint32_t)pl->nclients && r.page < pl->pages) {
                struct fault_times *t = &pl->times[(size_t)r.client * pl->pages + r.page];
                t->t1 = t->t2 = t1; /* the eventfd carries nothing to ask about */
                t->t3 = t3;
                t->flags = j ? FT_BATCHED : 0; /* no wake of its own */
            }
            t1 = t3;
        }
    }
}

int pipeline_run(int nclients, size_t pages, int nmgr, struct pipe_result *res)
{
    memset(res, 0, sizeof(*res));
    if (nmgr > MAX_PAIRS || nmgr < 1) return -1;
    struct pl *pl = shm_alloc(sizeof(*pl));
    pl->nclients = nclients;
    pl->nmgr = nmgr;
    pl->pages = pages;
    res->n = (size_t)nclients * pages;
    res->times = shm_alloc(res->n * sizeof(*res->times));
    pl->times = res->times;
    chan_open(&pl->ready);
    chan_open(&pl->go);
    chan_open(&pl->done);
    chan_open(&pl->exit);
    pl->backing = memfd_create("flbench-backing", MFD_CLOEXEC);
    if (pl->backing < 0 || ftruncate(pl->backing, BACKING_PAGES * PAGE) < 0 ||
        fallocate(pl->backing, 0, 0, BACKING_PAGES * PAGE) < 0)
        die("backing memfd");
    for (int m = 0; m < nmgr; m++) {
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pl->csock[m]) < 0 ||
            socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pl->msock[m]) < 0)
            die("socketpair");
        pl->efd[m] = eventfd(0, EFD_CLOEXEC);
        if (pl->efd[m] < 0) die("eventfd");
    }
    pid_t *hp = calloc((size_t)nmgr * 2, sizeof(pid_t));
    pid_t *cp = calloc((size_t)nclients, sizeof(pid_t));
    if (!hp || !cp) die("calloc");
    for (int m = 0; m < nmgr; m++) {
        worker_index = m;
        hp[2 * m] = spawn(handler, pl);
        hp[2 * m + 1] = spawn(manager, pl);
    }
    for (int c = 0; c < nclients; c++) {
        cp[c] = spawn_nth(client, pl, c);
    }
    int rc = 0;
    if (chan_wait(&pl->ready, nclients + 2 * nmgr, 30000) < 0) {
        fprintf(stderr, "faultline-bench: pipeline workers did not start\n");
        rc = -1;
    } else {
        double h0 = 0, m0 = 0, c0 = 0, hc0 = 0, mc0 = 0, cc0 = 0;
        for (int m = 0; m < nmgr; m++) {
            h0 += pid_ctxsw(hp[2 * m]);
            m0 += pid_ctxsw(hp[2 * m + 1]);
            hc0 += pid_cpu_us(hp[2 * m]);
            mc0 += pid_cpu_us(hp[2 * m + 1]);
        }
        for (int c = 0; c < nclients; c++) {
            c0 += pid_ctxsw(cp[c]);
            cc0 += pid_cpu_us(cp[c]);
        }
        res->start = now_ns();
        chan_post(&pl->go, nclients);
        if (chan_wait(&pl->done, nclients, 600000) < 0) {
            fprintf(stderr, "faultline-bench: pipeline clients did not finish\n");
            rc = -1;
            goto out;
        }
        for (int c = 0; c < nclients; c++) {
            res->client_ctxsw += pid_ctxsw(cp[c]);
            res->client_cpu_us += pid_cpu_us(cp[c]);
        }
        res->client_ctxsw -= c0;
        res->client_cpu_us -= cc0;
        for (int m = 0; m < nmgr; m++) {
            res->handler_cpu_us += pid_cpu_us(hp[2 * m]);
            res->manager_cpu_us += pid_cpu_us(hp[2 * m + 1]);
        }
        res->handler_cpu_us -= hc0;
        res->manager_cpu_us -= mc0;
        for (int m = 0; m < nmgr; m++) {
            res->handler_ctxsw += pid_ctxsw(hp[2 * m]);
            res->manager_ctxsw += pid_ctxsw(hp[2 * m + 1]);
        }
        res->handler_ctxsw -= h0;
        res->manager_ctxsw -= m0;
        chan_post(&pl->exit, nclients);
        for (int c = 0; c < nclients; c++) {
            if (reap(cp[c]) != 0) rc = -1;
            cp[c] = 0;
        }
        for (size_t i = 0; i < res->n; i++)
            if (res->times[i].end > res->finish) res->finish = res->times[i].end;
    }
out:
    for (int c = 0; c < nclients; c++) kill_worker(cp[c]);
    for (int m = 0; m < 2 * nmgr; m++) kill_worker(hp[m]);
    for (int m = 0; m < nmgr; m++) {
        close(pl->csock[m][0]);
        close(pl->csock[m][1]);
        close(pl->msock[m][0]);
        close(pl->msock[m][1]);
        close(pl->efd[m]);
    }
    close(pl->backing);
    chan_close(&pl->ready);
    chan_close(&pl->go);
    chan_close(&pl->done);
    chan_close(&pl->exit);
    free(hp);
    free(cp);
    shm_free(pl, sizeof(*pl));
    return rc;
}

void pipeline_free(struct pipe_result *res)
{
    shm_free(res->times, res->n * sizeof(*res->times));
    res->times = NULL;
}
