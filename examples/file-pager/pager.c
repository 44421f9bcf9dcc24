/*
 * file-pager: serves a file as a read-only managed dataspace, one 64 KiB
 * chunk per fault, read from the file when a client first touches it (what
 * Genode's iso9660 server does). Each chunk is read once: after it is
 * attached, core resolves every later touch by any client itself.
 *
 * usage: file-pager FILE --serve NAME [--serve NAME...]
 *   publishes one token per NAME (fl_publish) and serves
 *   until SIGTERM.
 */
#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK       (64 * 1024)
#define MAX_CLIENTS 8

struct pager {
    struct fl_env *env;
    fl_cap rm;
    int fd;
    const char *path;
    size_t nchunks;
    fl_cap *chunk; /* the RAM dataspace backing each chunk, once read */
};

/* Read chunk i of the file into a fresh RAM dataspace and attach it
 * read-only: clients may look, not touch. */
static int page_in(struct pager *pg, size_t i)
{
    fl_cap ds;
    int r;
    if ((r = fl_ram_alloc(pg->env, CHUNK, &ds)) < 0) return fl_perror("ram alloc", r);
    char *p = fl_attach(pg->env, ds, &r);
    if (!p) return fl_perror("attach locally", r);
    /* Past the end of the file the chunk stays zero, like a page cache's. */
    ssize_t n = pread(pg->fd, p, CHUNK, (off_t)(i * CHUNK));
    fl_detach(pg->env, p);
    if (n < 0) {
        fprintf(stderr, "file-pager: read %s at %#zx: %s\n", pg->path, i * CHUNK, strerror(errno));
        return 1;
    }
    struct fl_attr a = {.use_at = true, .at = i * CHUNK, .writeable = false};
    if ((r = fl_region_map_attach(pg->env, pg->rm, ds, &a, NULL)) < 0)
        return fl_perror("attach", r);
    pg->chunk[i] = ds;
    printf("file-pager: chunk %zu (offset %#zx): %zd bytes from the file, attached read-only\n", i,
           i * CHUNK, n);
    return 0;
}

static int serve_faults(struct pager *pg)
{
    for (;;) {
        struct fl_fault f;
        int r;
        if ((r = fl_region_map_fault(pg->env, pg->rm, &f)) < 0) return fl_perror("fault()", r);
        if (f.type == FL_FAULT_NONE) return 0;
        size_t i = f.addr / CHUNK;
        if (pg->chunk[i]) {
            /* Backed already, so this is a write to a read-only chunk. A
             * pager of a read-only file has no answer: the faulter stays
             * queued (halted), as in Genode. Serving others would need
             * fault() to look past it, which it does not. */
            printf("file-pager: %s at %#lx: the file is read-only; leaving the client halted\n",
                   fl_fault_type_name(f.type), (unsigned long)f.addr);
            return 0;
        }
        if (page_in(pg, i)) return 1;
    }
}

int main(int argc, char **argv)
{
    const char *serve[MAX_CLIENTS];
    int nserve = 0;
    struct pager pg = {.path = argc > 1 ? argv[1] : NULL};
    for (int i = 2; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], "--serve") && nserve < MAX_CLIENTS) serve[nserve++] = argv[i + 1];
    if (!pg.path || !nserve) {
        fprintf(stderr, "usage: file-pager FILE --serve NAME [--serve NAME...]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fl_manager_catch_stop() < 0) return 1;

    struct stat st;
    if ((pg.fd = open(pg.path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(pg.fd, &st)) {
        fprintf(stderr, "file-pager: %s: %s\n", pg.path, strerror(errno));
        return 1;
    }
    pg.nchunks = st.st_size ? ((size_t)st.st_size + CHUNK - 1) / CHUNK : 1;
    pg.chunk = calloc(pg.nchunks, sizeof(fl_cap));

    fl_cap rms, sigh, mds;
    int r;
    if ((r = fl_env_open(&pg.env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_rm_session_open(pg.env, &rms)) < 0) return fl_perror("RM session", r);
    if ((r = fl_rm_create(pg.env, rms, pg.nchunks * CHUNK, &pg.rm)) < 0)
        return fl_perror("rm create", r);
    if ((r = fl_signal_context_create(pg.env, &sigh)) < 0) return fl_perror("signal context", r);
    if ((r = fl_region_map_fault_handler(pg.env, pg.rm, sigh)) < 0)
        return fl_perror("fault handler", r);
    if ((r = fl_region_map_dataspace(pg.env, pg.rm, &mds)) < 0) return fl_perror("dataspace()", r);
    printf("file-pager: %s, %lld bytes, %zu chunks of 64 KiB\n", pg.path, (long long)st.st_size,
           pg.nchunks);
    for (int i = 0; i < nserve; i++) {
        char token[FL_TOKEN_LEN + 1];
        if ((r = fl_cap_export(pg.env, mds, token)) < 0) return fl_perror("export", r);
        if (fl_publish(serve[i], token) < 0) return 1;
    }

    long n;
    while ((n = fl_manager_wait(pg.env, sigh, -1)) > 0)
        if (serve_faults(&pg)) return 1;
    if (n < 0) return fl_perror("signal wait", (int)n);
    size_t read_in = 0;
    for (size_t i = 0; i < pg.nchunks; i++) read_in += pg.chunk[i] != 0;
    printf("file-pager: stopped; read %zu of %zu chunks, each once\n", read_in, pg.nchunks);
    fl_env_close(pg.env);
    free(pg.chunk);
    close(pg.fd);
    return 0;
}
