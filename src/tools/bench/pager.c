/*
 * pager: a warm file read one byte per 4 KiB page, sequentially
 * and in a fixed random order, at 64 KiB and 4 KiB chunks, three ways in one
 * run, the sides alternating:
 *
 *   faultline   a manager with ONE RAM dataspace for the whole file, attached
 *               into the manager itself; on each fault it preads the chunk
 *               into that dataspace and attaches the slice [chunk] of it
 *               read-only into the managed map the client reads (attach with
 *               offset and size; never a dataspace per chunk);
 *   uffd-pager  an in-process userfaultfd pager of LLNL umap's design: a
 *               thread reading the uffd, a filler thread that preads the
 *               chunk into a buffer and UFFDIO_COPYs it;
 *   mmap        the kernel's own: mmap of the file, read faults on the page
 *               cache (with its fault-around).
 *
 * Each side runs in fresh processes per round; a round walks one half of the
 * order, so each case alternates the sides twice. The latency of a chunk is
 * that of the touch that first reaches it in a round (the fault that brings
 * it in); the throughput is the file's bytes covered by the walk per second
 * of walking, every touch included. Every side sums what it read, checked
 * against the file's contents.
 */
#include "reflect.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* ---- the file ---- */

static char pager_dir[64], pager_file[96];
static size_t pager_size;

void pager_cleanup(void)
{
    if (pager_file[0]) unlink(pager_file);
    if (pager_dir[0]) rmdir(pager_dir);
}

/* Every byte of page p of the file. */
static uint8_t page_byte(size_t p)
{
    return (uint8_t)(((uint64_t)p * 2654435761u) >> 13);
}

/* Make the file (once per bench process), clean in the page cache, and read
 * it once so that it is warm. */
static int pager_file_make(size_t size, double *make_s)
{
    if (pager_size == size) {
        *make_s = 0;
        return 0;
    }
    pager_cleanup();
    pager_file[0] = 0;
    uint64_t t0 = now_ns();
    snprintf(pager_dir, sizeof(pager_dir), "/tmp/flbench-pager-XXXXXX");
    if (!mkdtemp(pager_dir)) {
        pager_dir[0] = 0;
        die("mkdtemp");
    }
    snprintf(pager_file, sizeof(pager_file), "%s/file", pager_dir);
    int fd = open(pager_file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) die("pager file");
    if (fallocate(fd, 0, 0, (off_t)size) < 0) die("fallocate pager file");
    size_t blk = 1ul << 20;
    char *buf = malloc(blk);
    if (!buf) die("malloc");
    for (size_t off = 0; off < size; off += blk) {
        for (size_t p = 0; p < blk / PAGE; p++)
            memset(buf + p * PAGE, page_byte(off / PAGE + p), PAGE);
        if (pwrite(fd, buf, blk, (off_t)off) != (ssize_t)blk) die("write pager file");
        progress_tick();
    }
    if (fdatasync(fd) < 0) die("fdatasync pager file");
    /* Warm: read it once. */
    for (size_t off = 0; off < size; off += blk) {
        if (pread(fd, buf, blk, (off_t)off) != (ssize_t)blk) die("read pager file");
        progress_tick();
    }
    free(buf);
    close(fd);
    pager_size = size;
    *make_s = (double)(now_ns() - t0) / 1e9;
    return 0;
}

/* ---- what the sides share ---- */

struct pg_shm {
    size_t size, pages, chunk; /* the file's bytes and pages; bytes per chunk */
    size_t from, to;           /* the positions of the order this round walks */
    const uint32_t *order;     /* shared memory: the page at each position */
    uint64_t *lat;             /* shared memory: ns per position */
    uint64_t sum, start, finish;
    double cpu_us; /* the walking process over the walk, all its threads: CPU time */
    double ctxsw;  /* and context switches */
    char tok[FL_TOKEN_LEN + 1];
    volatile int stop;
    uint64_t pread_ns, preads; /* faultline's manager: its preads */
    bool populated;            /* faultline's manager populated its view of the file */
    struct chan mready, ready, go, done, exit;
};

static double process_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void walk(struct pg_shm *sh, const volatile char *base)
{
    uint64_t sum = 0;
    double cpu0 = process_cpu_us(), cs0 = pid_ctxsw(getpid());
    sh->start = now_ns();
    for (size_t k = sh->from; k < sh->to; k++) {
        uint64_t t0 = now_ns();
        sum += (uint8_t)base[(size_t)sh->order[k] * PAGE];
        sh->lat[k] = now_ns() - t0;
    }
    sh->finish = now_ns();
    sh->cpu_us = process_cpu_us() - cpu0;
    sh->ctxsw = pid_ctxsw(getpid()) - cs0;
    sh->sum = sum;
}

static void pread_full(int fd, char *buf, size_t len, size_t off)
{
    while (len) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("pread");
        buf += n;
        len -= (size_t)n;
        off += (size_t)n;
    }
}

/* ---- (b) the kernel: mmap of the file ---- */

static int kernel_side(void *arg)
{
    worker_name("pg-mmap");
    struct pg_shm *sh = arg;
    int fd = open(pager_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open pager file");
    const char *p = mmap(NULL, sh->size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap pager file");
    walk(sh, p);
    return 0;
}

/* ---- (c) the in-process userfaultfd pager (LLNL umap's design) ---- */

#define UQ 4096 /* more than the faults outstanding (one: one walker) */

struct upager {
    struct pg_shm *sh;
    int uffd, fd;
    char *base;
    pthread_mutex_t lock;
    pthread_cond_t more;
    size_t q[UQ], head, tail; /* chunks to fill */
    uint8_t *queued;          /* per chunk */
};

static void *upager_reader(void *arg)
{
    struct upager *u = arg;
    for (;;) {
        struct uffd_msg m[16];
        ssize_t k = read(u->uffd, m, sizeof(m));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) die("uffd read");
        pthread_mutex_lock(&u->lock);
        for (ssize_t j = 0; j < k / (ssize_t)sizeof(m[0]); j++) {
            if (m[j].event != UFFD_EVENT_PAGEFAULT) continue;
            size_t c = (size_t)(m[j].arg.pagefault.address - (uintptr_t)u->base) / u->sh->chunk;
            if (u->queued[c]) continue; /* filled or being filled: its copy wakes all */
            u->queued[c] = 1;
            if (u->tail - u->head == UQ) die("uffd pager queue full");
            u->q[u->tail++ % UQ] = c;
        }
        pthread_cond_signal(&u->more);
        pthread_mutex_unlock(&u->lock);
    }
    return NULL;
}

static void *upager_filler(void *arg)
{
    struct upager *u = arg;
    size_t chunk = u->sh->chunk;
    char *buf = aligned_alloc(PAGE, chunk);
    if (!buf) die("aligned_alloc");
    for (;;) {
        pthread_mutex_lock(&u->lock);
        while (u->head == u->tail) pthread_cond_wait(&u->more, &u->lock);
        size_t c = u->q[u->head++ % UQ];
        pthread_mutex_unlock(&u->lock);
        pread_full(u->fd, buf, chunk, c * chunk);
        struct uffdio_copy cp = {
            .dst = (uintptr_t)u->base + c * chunk, .src = (uintptr_t)buf, .len = chunk};
        while (ioctl(u->uffd, UFFDIO_COPY, &cp) < 0) {
            if (errno == EAGAIN && cp.copy > 0) { /* partial: the rest */
                cp.dst += (uint64_t)cp.copy;
                cp.src += (uint64_t)cp.copy;
                cp.len -= (uint64_t)cp.copy;
                cp.copy = 0;
                continue;
            }
            if (errno == EAGAIN) continue;
            if (errno == EEXIST) break; /* cannot happen: each chunk is filled once */
            die("UFFDIO_COPY");
        }
    }
    return NULL;
}

static int uffd_side(void *arg)
{
    worker_name("pg-uffd-pager");
    struct pg_shm *sh = arg;
    static struct upager u;
    u.sh = sh;
    u.fd = open(pager_file, O_RDONLY | O_CLOEXEC);
    if (u.fd < 0) die("open pager file");
    u.uffd = uffd_open();
    if (u.uffd < 0) die("userfaultfd");
    u.base = mmap(NULL, sh->size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (u.base == MAP_FAILED) die("mmap");
    struct uffdio_register reg = {.range = {.start = (uintptr_t)u.base, .len = sh->size},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(u.uffd, UFFDIO_REGISTER, &reg) < 0) die("UFFDIO_REGISTER");
    u.queued = calloc(sh->size / sh->chunk, 1);
    if (!u.queued) die("calloc");
    pthread_mutex_init(&u.lock, NULL);
    pthread_cond_init(&u.more, NULL);
    pthread_t r, f;
    if (pthread_create(&r, NULL, upager_reader, &u) || pthread_create(&f, NULL, upager_filler, &u))
        die("pthread_create");
    walk(sh, u.base);
    return 0; /* the threads end with the process */
}

/* ---- (a) faultline: one RAM dataspace, a slice attached per fault ---- */

static int fl_manager(void *arg)
{
    worker_name("pg-manager");
    struct pg_shm *sh = arg;
    int fd = open(pager_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open pager file");
    struct fl_env *env = env_open(sh->size + (64ul << 20));
    fl_cap ram, rms, rm, sigh, mds;
    FL_CHECK(fl_ram_alloc(env, sh->size, &ram));
    int err;
    char *view = fl_attach(env, ram, &err);
    if (!view) die_fl("fl_attach", err);
    /* Its own view of the file's dataspace, populated once at start like a
     * warm buffer: the preads then take no page faults in the manager. */
    sh->populated = madvise(view, sh->size, MADV_POPULATE_WRITE) == 0;
    FL_CHECK(fl_rm_session_open(env, &rms));
    FL_CHECK(fl_rm_create(env, rms, sh->size, &rm));
    FL_CHECK(fl_signal_context_create(env, &sigh));
    FL_CHECK(fl_region_map_fault_handler(env, rm, sigh));
    FL_CHECK(fl_region_map_dataspace(env, rm, &mds));
    FL_CHECK(fl_cap_export(env, mds, sh->tok));
    size_t chunk = sh->chunk;
    uint8_t *loaded = calloc(sh->size / chunk, 1);
    if (!loaded) die("calloc");
    chan_post(&sh->mready, 1);
    while (!sh->stop) {
        long n = fl_signal_wait(env, sigh, 20);
        if (n < 0) die_fl("fl_signal_wait", (int)n);
        if (n == 0) continue;
        for (;;) {
            struct fl_fault f;
            FL_CHECK(fl_region_map_fault(env, rm, &f));
            if (f.type == FL_FAULT_NONE) break;
            size_t c = f.addr / chunk;
            if (c >= sh->size / chunk || loaded[c]) {
                fprintf(stderr, "faultline-bench: pager: %s fault at %#lx, chunk %s\n",
                        fl_fault_type_name(f.type), (unsigned long)f.addr,
                        c >= sh->size / chunk ? "beyond the file" : "attached already");
                _exit(1);
            }
            uint64_t t = now_ns();
            pread_full(fd, view + c * chunk, chunk, c * chunk);
            sh->pread_ns += now_ns() - t;
            sh->preads++;
            struct fl_attr a = {.size = chunk,
                                .offset = c * chunk,
                                .use_at = true,
                                .at = c * chunk,
                                .writeable = false};
            FL_CHECK(fl_region_map_attach(env, rm, ram, &a, NULL));
            loaded[c] = 1;
        }
    }
    fl_env_close(env);
    return 0;
}

static int fl_client(void *arg)
{
    worker_name("pg-client");
    struct pg_shm *sh = arg;
    struct fl_env *env = env_open(sh->size + (16ul << 20));
    fl_cap mds;
    FL_CHECK(fl_cap_import(env, sh->tok, &mds));
    struct fl_attr a = {.writeable = false};
    struct fl_range range;
    FL_CHECK(fl_region_map_attach(env, fl_env_address_space(env), mds, &a, &range));
    chan_post(&sh->ready, 1);
    if (chan_wait(&sh->go, 1, -1) < 0) return 1;
    walk(sh, (const volatile char *)range.start);
    return worker_hold(&sh->done, &sh->exit);
}

/* ---- the workload ---- */

enum { S_FL, S_UFFD, S_MMAP, NPSIDES };

struct side_acc {
    double *lat; /* us per chunk, its first touch in a round */
    size_t n;
    double busy_s, bytes;
    double cpu_us; /* every process of the side, over the walks */
    double ctxsw;  /* and context switches */
    size_t chunks; /* chunks brought in */
};

static int run_faultline(struct pg_shm *sh, struct side_acc *sa)
{
    sh->stop = 0;
    sh->pread_ns = sh->preads = 0;
    pid_t m = spawn(fl_manager, sh), c = 0;
    int rc = -1;
    /* core and the manager; the client measures its own walk */
    struct proc_count pc[2] = {{0}};
    if (chan_wait(&sh->mready, 1, 120000) < 0) {
        fprintf(stderr, "faultline-bench: pager manager did not start\n");
        goto out;
    }
    c = spawn(fl_client, sh);
    if (chan_wait(&sh->ready, 1, 60000) < 0) {
        fprintf(stderr, "faultline-bench: pager client did not start\n");
        goto out;
    }
    count_start(&pc[0], core.pid, false);
    count_start(&pc[1], m, false);
    chan_post(&sh->go, 1);
    if (chan_wait(&sh->done, 1, 900000) < 0) {
        fprintf(stderr, "faultline-bench: pager client did not finish\n");
        goto out;
    }
    struct counts used = {0};
    for (int k = 0; k < 2; k++) count_add(&used, &pc[k]);
    sa->cpu_us += used.cpu_us;
    sa->ctxsw += used.ctxsw;
    sh->stop = 1;
    chan_post(&sh->exit, 1);
    rc = reap(c) == 0 && reap(m) == 0 ? 0 : -1;
    c = m = 0;
out:
    for (int k = 0; k < 2; k++) count_stop(&pc[k]);
    kill_worker(c);
    kill_worker(m);
    return rc;
}

/* A side's round; the walker adds its own CPU and switches to sh, the
 * faultline side core's and its manager's to sa. */
static int run_side(int side, struct pg_shm *sh, struct side_acc *sa)
{
    if (side == S_FL) return run_faultline(sh, sa);
    return reap(spawn(side == S_UFFD ? uffd_side : kernel_side, sh)) == 0 ? 0 : -1;
}

static const char *const pside_name[NPSIDES] = {"faultline", "uffd-pager", "mmap"};

static void fisher_yates(uint32_t *a, size_t n)
{
    uint64_t s = 0x2545f4914f6cdd1dull; /* fixed: every run walks the same order */
    for (size_t i = 0; i < n; i++) a[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        size_t j = s % (i + 1);
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

int wl_pager(void)
{
    size_t size = opts.quick ? 64ul << 20 : 1ul << 30, pages = size / PAGE, rounds = 2;
    double make_s;
    if (pager_file_make(size, &make_s) < 0) return -1;
    struct pg_shm *sh = shm_alloc(sizeof(*sh));
    uint32_t *order = shm_alloc(pages * sizeof(uint32_t));
    uint64_t *lat = shm_alloc(pages * sizeof(uint64_t));
    uint8_t *seen = malloc(pages);
    if (!seen) die("malloc");
    sh->size = size;
    sh->pages = pages;
    sh->order = order;
    sh->lat = lat;
    CHANS_OPEN(&sh->mready, &sh->ready, &sh->go, &sh->done, &sh->exit);
    int rc = 0;
    double pread_us = 0, npread = 0;
    bool populated = true;
    static const size_t chunks[] = {64ul << 10, 4ul << 10};
    for (int random = 0; random < 2 && rc == 0; random++) {
        if (random)
            fisher_yates(order, pages);
        else
            for (size_t i = 0; i < pages; i++) order[i] = (uint32_t)i;
        for (size_t ci = 0; ci < 2 && rc == 0; ci++) {
            size_t chunk = chunks[ci], ppc = chunk / PAGE;
            struct side_acc sa[NPSIDES] = {{0}};
            sh->chunk = chunk;
            for (size_t r = 0; r < rounds && rc == 0; r++) {
                sh->from = pages * r / rounds;
                sh->to = pages * (r + 1) / rounds;
                uint64_t want = 0;
                for (size_t k = sh->from; k < sh->to; k++) want += page_byte(order[k]);
                /* The sides in turn, the kernel's first. */
                for (int s = NPSIDES - 1; s >= 0 && rc == 0; s--) {
                    memset(lat + sh->from, 0, (sh->to - sh->from) * sizeof(*lat));
                    sh->sum = 0;
                    if (run_side(s, sh, &sa[s]) < 0) {
                        fprintf(stderr, "faultline-bench: pager: %s side failed\n", pside_name[s]);
                        rc = -1;
                        break;
                    }
                    if (sh->sum != want) {
                        fprintf(stderr,
                                "faultline-bench: pager: %s read sum %llu, the file's is %llu\n",
                                pside_name[s], (unsigned long long)sh->sum,
                                (unsigned long long)want);
                        rc = -1;
                        break;
                    }
                    memset(seen, 0, pages / ppc);
                    for (size_t k = sh->from; k < sh->to; k++) {
                        size_t c = order[k] / ppc;
                        if (seen[c]) continue;
                        seen[c] = 1;
                        push(&sa[s].lat, &sa[s].n, (double)lat[k] / 1e3);
                        sa[s].chunks++;
                    }
                    sa[s].busy_s += (double)(sh->finish - sh->start) / 1e9;
                    sa[s].cpu_us += sh->cpu_us;
                    sa[s].ctxsw += sh->ctxsw;
                    sa[s].bytes += (double)(sh->to - sh->from) * PAGE;
                    if (s == S_FL) {
                        pread_us += (double)sh->pread_ns / 1e3;
                        npread += (double)sh->preads;
                        populated = populated && sh->populated;
                    }
                }
            }
            if (rc == 0) {
                struct stats st[NPSIDES];
                double thr[NPSIDES];
                for (int s = 0; s < NPSIDES; s++) {
                    stats_of(sa[s].lat, sa[s].n, &st[s]);
                    thr[s] = sa[s].bytes / (1 << 20) / sa[s].busy_s;
                }
                char cas[64], key[128];
                snprintf(cas, sizeof(cas), "%s, %zu KiB chunks", random ? "random" : "sequential",
                         chunk >> 10);
                report_named("pager", cas, &st[S_FL], thr[S_FL], "uffd-pager", &st[S_UFFD],
                             thr[S_UFFD], "MiB/s");
                snprintf(cas, sizeof(cas), "%s, %zu KiB, vs mmap", random ? "random" : "sequential",
                         chunk >> 10);
                report_named("pager", cas, &st[S_FL], thr[S_FL], "mmap", &st[S_MMAP], thr[S_MMAP],
                             "MiB/s");
                /* Time per page of the walk (1 / throughput): a chunk's
                 * first touch under mmap is often mapped already by the
                 * kernel's fault-around, so latency ratios against it say
                 * little. */
                const char *o = random ? "random" : "sequential";
                snprintf(key, sizeof(key), "%s, %zu KiB: faultline / uffd-pager, time per page", o,
                         chunk >> 10);
                report_ratio("pager", key, thr[S_UFFD] / thr[S_FL]);
                snprintf(key, sizeof(key), "%s, %zu KiB: uffd-pager / mmap, time per page", o,
                         chunk >> 10);
                report_ratio("pager", key, thr[S_MMAP] / thr[S_UFFD]);
                for (int s = 0; s < NPSIDES; s++) {
                    snprintf(key, sizeof(key), "%s, %zu KiB: %s CPU per chunk%s", o, chunk >> 10,
                             pside_name[s], s == S_FL ? " (core, manager, client)" : "");
                    report_extra("pager", key, sa[s].cpu_us / (double)sa[s].chunks, "us");
                }
                for (int s = 0; s < NPSIDES; s++) {
                    snprintf(key, sizeof(key), "%s, %zu KiB: %s context switches per chunk%s", o,
                             chunk >> 10, pside_name[s],
                             s == S_FL ? " (core, manager, client)" : "");
                    report_extra("pager", key, sa[s].ctxsw / (double)sa[s].chunks, "");
                }
            }
            for (int s = 0; s < NPSIDES; s++) free(sa[s].lat);
        }
    }
    if (rc == 0) {
        report_extra("pager", "faultline manager: pread per chunk, mean over all cases",
                     npread ? pread_us / npread : NAN, "us");
        char note[400];
        snprintf(note, sizeof(note),
                 "a warm %zu MiB file%s (made and read once in %.1f s%s), 1 byte read per 4 KiB "
                 "page; latency: the touch that first reaches a chunk; throughput: the file's "
                 "bytes walked per second; %zu alternating rounds of half the order each "
                 "(mmap, uffd-pager, faultline)",
                 size >> 20, opts.quick ? " (--quick: 64 MiB, not the issue's 1 GiB)" : "", make_s,
                 make_s == 0 ? ": made by an earlier run" : "", rounds);
        report_note("pager", note);
        report_note("pager", populated
                                 ? "faultline: one RAM dataspace for the file, its manager's view "
                                   "populated at start; each fault: pread into it, attach the "
                                   "chunk's slice read-only"
                                 : "faultline: one RAM dataspace for the file (its manager's view "
                                   "could NOT be populated: MADV_POPULATE_WRITE failed); each "
                                   "fault: pread into it, attach the chunk's slice read-only");
        report_note("pager", "uffd-pager: LLNL umap's design in one process: a thread reads the "
                             "uffd, a filler thread preads the chunk into a buffer and "
                             "UFFDIO_COPYs it; mmap: MAP_SHARED PROT_READ of the file");
    }
    CHANS_CLOSE(&sh->mready, &sh->ready, &sh->go, &sh->done, &sh->exit);
    free(seen);
    shm_free(lat, pages * sizeof(uint64_t));
    shm_free(order, pages * sizeof(uint32_t));
    shm_free(sh, sizeof(*sh));
    return rc;
}
