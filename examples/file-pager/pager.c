/*
 * file-pager: serves a file as a read-only managed dataspace, one chunk
 * (64 KiB, or 4 KiB) per fault, read from the file when a client first
 * touches it (what Genode's iso9660 server does). Each chunk is read once:
 * after it is attached, core resolves every later touch by any client itself.
 *
 * The pattern: ONE RAM dataspace for the whole file, attached into the pager
 * itself. On a fault the pager preads the chunk into its view of that
 * dataspace and attaches that slice of it (offset and size) read-only into
 * the managed map, at the same offset. A fault costs a pread and one call to
 * core (the attach), and the pager holds one dataspace however large the
 * file: a dataspace per chunk would cost four calls (alloc, attach locally,
 * detach, attach) plus a capability and one of core's descriptors each, and
 * stop at the capability quota (4096: 256 MiB of 64 KiB chunks) or core's
 * descriptor budget (about 20,000).
 *
 * usage: file-pager FILE [--chunk 4K|64K] [--quiet] --serve NAME [--serve NAME...]
 *   publishes one token per NAME (fl_publish) and serves until SIGTERM.
 *   --chunk: bytes read and attached per fault (default 64K).
 *   --quiet: no line per chunk (a 1 GiB file has 262,144 chunks of 4 KiB).
 */
#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 8

struct pager {
    struct fl_env *env;
    fl_cap rm;   /* the managed map the clients read */
    fl_cap file; /* the RAM dataspace holding the whole file */
    char *view;  /* the pager's own attachment of it */
    int fd;
    const char *path;
    size_t chunk, nchunks, loaded;
    unsigned char *in; /* per chunk: read and attached */
    int quiet;
    uintptr_t halted; /* the write fault reported last (+1), so it is said once */
    uint64_t pread_ns, attach_ns;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Read chunk i of the file into its place in the file's dataspace and attach
 * that slice read-only at the same offset of the managed map: clients may
 * look, not touch. */
static int page_in(struct pager *pg, size_t i)
{
    size_t off = i * pg->chunk, got = 0;
    uint64_t t0 = now_ns();
    /* Past the end of the file the chunk stays zero, like a page cache's. */
    while (got < pg->chunk) {
        ssize_t n = pread(pg->fd, pg->view + off + got, pg->chunk - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            fprintf(stderr, "file-pager: read %s at %#zx: %s\n", pg->path, off + got,
                    strerror(errno));
            return 1;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    uint64_t t1 = now_ns();
    struct fl_attr a = {
        .size = pg->chunk, .offset = off, .use_at = true, .at = off, .writeable = false};
    int r = fl_region_map_attach(pg->env, pg->rm, pg->file, &a, NULL);
    if (r < 0) return fl_perror("attach", r);
    pg->pread_ns += t1 - t0;
    pg->attach_ns += now_ns() - t1;
    pg->in[i] = 1;
    pg->loaded++;
    if (!pg->quiet)
        printf("file-pager: chunk %zu (offset %#zx): %zu bytes from the file, attached read-only\n",
               i, off, got);
    return 0;
}

static int serve_faults(struct pager *pg)
{
    for (;;) {
        struct fl_fault f;
        int r;
        if ((r = fl_region_map_fault(pg->env, pg->rm, &f)) < 0) return fl_perror("fault()", r);
        if (f.type == FL_FAULT_NONE) return 0;
        size_t i = f.addr / pg->chunk;
        if (i >= pg->nchunks) { /* cannot be: the map is as large as the chunks */
            fprintf(stderr, "file-pager: fault at %#lx, beyond the file\n", (unsigned long)f.addr);
            return 1;
        }
        if (pg->in[i]) {
            /* Backed already, so this is a write to a read-only chunk. A
             * pager of a read-only file has no answer: the faulter stays
             * queued (halted), as in Genode. Serving others would need
             * fault() to look past it, which it does not. */
            if (pg->halted != f.addr + 1)
                printf("file-pager: %s at %#lx: the file is read-only; leaving the client "
                       "halted\n",
                       fl_fault_type_name(f.type), (unsigned long)f.addr);
            pg->halted = f.addr + 1;
            return 0;
        }
        if (page_in(pg, i)) return 1;
    }
}

static int usage(void)
{
    fprintf(stderr,
            "usage: file-pager FILE [--chunk 4K|64K] [--quiet] --serve NAME [--serve NAME...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *serve[MAX_CLIENTS];
    int nserve = 0;
    struct pager pg = {.chunk = 64 * 1024};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--serve") && i + 1 < argc) {
            if (nserve == MAX_CLIENTS) return usage();
            serve[nserve++] = argv[++i];
        } else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) {
            uint64_t c;
            if (fl_parse_size(argv[++i], &c) < 0 || (c != 4096 && c != 65536)) {
                fprintf(stderr, "file-pager: --chunk %s: 4K or 64K\n", argv[i]);
                return 2;
            }
            pg.chunk = (size_t)c;
        } else if (!strcmp(argv[i], "--quiet")) {
            pg.quiet = 1;
        } else if (argv[i][0] != '-' && !pg.path) {
            pg.path = argv[i];
        } else {
            return usage();
        }
    }
    if (!pg.path || !nserve) return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fl_manager_catch_stop() < 0) return 1;

    struct stat st;
    if ((pg.fd = open(pg.path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(pg.fd, &st)) {
        fprintf(stderr, "file-pager: %s: %s\n", pg.path, strerror(errno));
        return 1;
    }
    pg.nchunks = st.st_size ? ((size_t)st.st_size + pg.chunk - 1) / pg.chunk : 1;
    size_t size = pg.nchunks * pg.chunk;
    if (!(pg.in = calloc(pg.nchunks, 1))) {
        fprintf(stderr, "file-pager: out of memory\n");
        return 1;
    }

    /* The window must hold the pager's view of the whole file. */
    struct fl_env_config cfg = {0};
    if (size + (64u << 20) > (1u << 30)) cfg.window_size = size + (64u << 20);
    fl_cap rms, sigh, mds;
    int r;
    if ((r = fl_env_open(&pg.env, &cfg)) < 0) return fl_perror("connect to faultline-core", r);
    /* One RAM dataspace for the file (its size plus one capability of the
     * quota), and the pager's own view of it, into which it reads. */
    if ((r = fl_ram_alloc(pg.env, size, &pg.file)) < 0)
        return fl_perror("RAM dataspace for the file", r);
    if (!(pg.view = fl_attach(pg.env, pg.file, &r))) return fl_perror("attach locally", r);
    /* Map the view now, from this thread (the preads then never fault on
     * the window inside a system call), and fill its page tables in one go:
     * a pread of 64 KiB into pages not yet in them takes 16 page faults. */
    *(volatile char *)pg.view = 0;
    uint64_t t0 = now_ns();
    madvise(pg.view, size, MADV_POPULATE_WRITE); /* only a head start: ignore failure */
    double populate_s = (double)(now_ns() - t0) / 1e9;
    if ((r = fl_rm_session_open(pg.env, &rms)) < 0) return fl_perror("RM session", r);
    if ((r = fl_rm_create(pg.env, rms, size, &pg.rm)) < 0) return fl_perror("rm create", r);
    if ((r = fl_signal_context_create(pg.env, &sigh)) < 0) return fl_perror("signal context", r);
    if ((r = fl_region_map_fault_handler(pg.env, pg.rm, sigh)) < 0)
        return fl_perror("fault handler", r);
    if ((r = fl_region_map_dataspace(pg.env, pg.rm, &mds)) < 0) return fl_perror("dataspace()", r);
    printf("file-pager: %s, %lld bytes, %zu chunks of %zu KiB\n", pg.path, (long long)st.st_size,
           pg.nchunks, pg.chunk / 1024);
    printf("file-pager: one RAM dataspace of %zu KiB for the file; each fault attaches a slice of "
           "it (view populated in %.3f s)\n",
           size / 1024, populate_s);
    for (int i = 0; i < nserve; i++) {
        char token[FL_TOKEN_LEN + 1];
        if ((r = fl_cap_export(pg.env, mds, token)) < 0) return fl_perror("export", r);
        if (fl_publish(serve[i], token) < 0) return 1;
    }

    long n;
    while ((n = fl_manager_wait(pg.env, sigh, -1)) > 0)
        if (serve_faults(&pg)) return 1;
    if (n < 0) return fl_perror("signal wait", (int)n);
    printf("file-pager: stopped; read %zu of %zu chunks, each once\n", pg.loaded, pg.nchunks);
    if (pg.loaded)
        printf("file-pager: per chunk: pread %.1f us, attach %.1f us\n",
               (double)pg.pread_ns / 1e3 / (double)pg.loaded,
               (double)pg.attach_ns / 1e3 / (double)pg.loaded);
    fl_env_close(pg.env);
    free(pg.in);
    close(pg.fd);
    return 0;
}
