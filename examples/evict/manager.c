/*
 * evict: a managed dataspace larger than the RAM behind it. The manager owns
 * a bounded pool of RAM chunks ("frames"). A fault on a chunk without a frame
 * takes a free frame or, under pressure, a victim: the victim's chunk is
 * detached (core revokes it from every client before detach returns, so no
 * client can write to it any more), its contents go to a swap file, and the
 * frame is reused. A later fault on the evicted chunk reads it back.
 *
 * usage: evict --size SIZE --chunk SIZE --pool N --swap FILE --serve NAME
 *   publishes a token as NAME (fl_publish) and serves
 *   until SIGTERM.
 */
#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct frame {
    fl_cap ds;
    unsigned char *mem; /* our own view of it, attached once */
    long chunk;         /* the chunk it backs, or -1 */
};

struct evict {
    struct fl_env *env;
    fl_cap rm;
    size_t chunk_size, nchunks;
    int swap_fd;
    struct frame *frames;
    int nframes, hand; /* the next victim, round robin */
    int *frame_of;     /* per chunk: its frame or -1 */
    char *swapped;     /* per chunk: its contents are in the swap file */
    long evictions, restores;
};

/* Take the frame at the hand back from its chunk: detach (revocation), then
 * save what the client wrote. */
static int evict_frame(struct evict *e, struct frame *f)
{
    long v = f->chunk;
    int r;
    if ((r = fl_region_map_detach(e->env, e->rm, (uintptr_t)v * e->chunk_size)) < 0)
        return fl_perror("detach", r);
    /* detach returned: no client maps the chunk any more, so this copy is
     * the last word. */
    off_t off = (off_t)v * (off_t)e->chunk_size;
    if (pwrite(e->swap_fd, f->mem, e->chunk_size, off) != (ssize_t)e->chunk_size) {
        fprintf(stderr, "evict: write swap at %#llx: %s\n", (long long)off, strerror(errno));
        return 1;
    }
    e->swapped[v] = 1;
    e->frame_of[v] = -1;
    f->chunk = -1;
    e->evictions++;
    printf("evict: chunk %ld evicted to swap\n", v);
    return 0;
}

static int serve_chunk(struct evict *e, size_t c)
{
    if (e->frame_of[c] >= 0) {
        printf("evict: fault on chunk %zu, which is attached: not ours to fix\n", c);
        return 1;
    }
    struct frame *f = NULL;
    for (int i = 0; i < e->nframes && !f; i++)
        if (e->frames[i].chunk < 0) f = &e->frames[i];
    if (!f) {
        f = &e->frames[e->hand];
        e->hand = (e->hand + 1) % e->nframes;
        if (evict_frame(e, f)) return 1;
    }
    off_t off = (off_t)c * (off_t)e->chunk_size;
    if (e->swapped[c]) {
        if (pread(e->swap_fd, f->mem, e->chunk_size, off) != (ssize_t)e->chunk_size) {
            fprintf(stderr, "evict: read swap at %#llx: %s\n", (long long)off, strerror(errno));
            return 1;
        }
        e->restores++;
        printf("evict: chunk %zu restored from swap into frame %d\n", c, (int)(f - e->frames));
    } else {
        memset(f->mem, 0, e->chunk_size);
        printf("evict: chunk %zu zero-filled in frame %d\n", c, (int)(f - e->frames));
    }
    struct fl_attr a = {.use_at = true, .at = (uintptr_t)off, .writeable = true};
    int r;
    if ((r = fl_region_map_attach(e->env, e->rm, f->ds, &a, NULL)) < 0)
        return fl_perror("attach", r);
    f->chunk = (long)c;
    e->frame_of[c] = (int)(f - e->frames);
    return 0;
}

static int serve_faults(struct evict *e)
{
    for (;;) {
        struct fl_fault f;
        int r;
        if ((r = fl_region_map_fault(e->env, e->rm, &f)) < 0) return fl_perror("fault()", r);
        if (f.type == FL_FAULT_NONE) return 0;
        if (serve_chunk(e, f.addr / e->chunk_size)) return 1;
    }
}

int main(int argc, char **argv)
{
    size_t size = 0;
    const char *swap = NULL, *serve = NULL;
    struct evict e = {.chunk_size = 64 * 1024, .nframes = 4};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size") || !strcmp(argv[i], "--chunk")) {
            /* Sizes as every faultline program takes them: 65536, 64K. */
            uint64_t v;
            if (fl_parse_size(argv[i + 1], &v) < 0) {
                fprintf(stderr, "evict: %s: '%s' is not a size (bytes, or with K, M or G)\n",
                        argv[i], argv[i + 1]);
                return 2;
            }
            if (!strcmp(argv[i], "--size"))
                size = v;
            else
                e.chunk_size = v;
        } else if (!strcmp(argv[i], "--pool")) {
            e.nframes = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--swap")) {
            swap = argv[i + 1];
        } else if (!strcmp(argv[i], "--serve")) {
            serve = argv[i + 1];
        }
    }
    if (!size || !swap || !serve || e.nframes < 1 || !e.chunk_size || e.chunk_size % 4096 ||
        size % e.chunk_size) {
        fprintf(stderr, "usage: evict --size SIZE --chunk SIZE --pool N --swap FILE --serve "
                        "NAME (size a multiple of chunk, chunk of 4096)\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fl_manager_catch_stop() < 0) return 1;
    if ((e.swap_fd = open(swap, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
        fprintf(stderr, "evict: swap file %s: %s\n", swap, strerror(errno));
        return 1;
    }
    unlink(swap); /* ours alone, and gone when we are */
    e.nchunks = size / e.chunk_size;
    e.frame_of = malloc(e.nchunks * sizeof(int));
    e.swapped = calloc(e.nchunks, 1);
    e.frames = calloc((size_t)e.nframes, sizeof(struct frame));
    for (size_t c = 0; c < e.nchunks; c++) e.frame_of[c] = -1;

    fl_cap rms, sigh, mds;
    int r;
    if ((r = fl_env_open(&e.env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    for (int i = 0; i < e.nframes; i++) {
        if ((r = fl_ram_alloc(e.env, e.chunk_size, &e.frames[i].ds)) < 0)
            return fl_perror("ram alloc", r);
        if (!(e.frames[i].mem = fl_attach(e.env, e.frames[i].ds, &r)))
            return fl_perror("attach frame", r);
        e.frames[i].chunk = -1;
    }
    if ((r = fl_rm_session_open(e.env, &rms)) < 0) return fl_perror("RM session", r);
    if ((r = fl_rm_create(e.env, rms, size, &e.rm)) < 0) return fl_perror("rm create", r);
    if ((r = fl_signal_context_create(e.env, &sigh)) < 0) return fl_perror("signal context", r);
    if ((r = fl_region_map_fault_handler(e.env, e.rm, sigh)) < 0)
        return fl_perror("fault handler", r);
    if ((r = fl_region_map_dataspace(e.env, e.rm, &mds)) < 0) return fl_perror("dataspace()", r);
    char token[FL_TOKEN_LEN + 1];
    if ((r = fl_cap_export(e.env, mds, token)) < 0) return fl_perror("export", r);
    if (fl_publish(serve, token) < 0) return 1;
    printf("evict: %zu KiB managed, backed by a pool of %d frames of %zu KiB\n", size / 1024,
           e.nframes, e.chunk_size / 1024);

    long n;
    while ((n = fl_manager_wait(e.env, sigh, -1)) > 0)
        if (serve_faults(&e)) return 1;
    if (n < 0) return fl_perror("signal wait", (int)n);
    printf("evict: stopped after %ld evictions and %ld restores\n", e.evictions, e.restores);
    fl_env_close(e.env);
    free(e.frame_of);
    free(e.swapped);
    free(e.frames);
    close(e.swap_fd);
    return 0;
}
