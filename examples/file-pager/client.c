/*
 * The client of file-pager: attaches the file's managed dataspace read-only,
 * touches one byte of every page (timed: that is where the faults are), then
 * checks every byte against what read(2) returns for the same file, and says
 * how many mappings the file takes in its address space.
 *
 * usage: file-pager-client TOKEN FILE [--backwards]
 *   --backwards touches and compares from the end of the file to its start,
 *   so that two clients touch the chunks in different orders.
 */
#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The kernel's mappings (VMAs) in [lo, hi): of a file (the dataspace's memfd)
 * and the rest (the window's placeholders). */
static void count_vmas(uintptr_t lo, uintptr_t hi, size_t *files, size_t *file_bytes, size_t *other)
{
    *files = *file_bytes = *other = 0;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        unsigned long a, b, inode;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &a, &b, &inode) != 3) continue;
        if (b <= lo || a >= hi) continue;
        if (inode) {
            (*files)++;
            *file_bytes += (b < hi ? b : hi) - (a > lo ? a : lo);
        } else {
            (*other)++;
        }
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: file-pager-client TOKEN FILE [--backwards]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    bool backwards = argc > 3 && !strcmp(argv[3], "--backwards");
    const char *dir = backwards ? "backwards" : "forwards";
    int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        fprintf(stderr, "file-pager-client: %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    size_t size = (size_t)st.st_size, blocks = (size + 4095) / 4096, wrong = 0;

    /* The window must hold the whole file (the pager's map is the file's
     * size rounded up to its chunk, at most 64 KiB). */
    size_t need = (size + 65535) & ~(size_t)65535;
    struct fl_env_config cfg = {0};
    if (need + (64u << 20) > (1u << 30)) cfg.window_size = need + (64u << 20);
    struct fl_env *env;
    fl_cap ds;
    int r;
    if ((r = fl_env_open(&env, &cfg)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_cap_import(env, argv[1], &ds)) < 0) return fl_perror("import", r);
    /* Read-only, as a file's pages should be. */
    struct fl_attr a = {.writeable = false};
    struct fl_range range;
    if ((r = fl_region_map_attach(env, fl_env_address_space(env), ds, &a, &range)) < 0)
        return fl_perror("attach", r);
    const volatile unsigned char *map = (const volatile unsigned char *)range.start;

    /* Touch every page once: the faults, and the pager's reads. */
    double t0 = now_s();
    for (size_t k = 0; k < blocks; k++) (void)map[(backwards ? blocks - 1 - k : k) * 4096];
    double touch = now_s() - t0;
    printf("file-pager-client: touched %zu pages %s in %.3f s (%.2f us a page)\n", blocks, dir,
           touch, blocks ? touch * 1e6 / (double)blocks : 0.0);

    t0 = now_s();
    for (size_t k = 0; k < blocks; k++) {
        size_t b = backwards ? blocks - 1 - k : k;
        unsigned char buf[4096];
        ssize_t n = pread(fd, buf, sizeof(buf), (off_t)(b * 4096));
        if (n < 0) {
            fprintf(stderr, "file-pager-client: read: %s\n", strerror(errno));
            return 1;
        }
        if (memcmp(buf, (const void *)(map + b * 4096), (size_t)n)) {
            if (wrong++ < 5)
                printf("file-pager-client: bytes at %#zx differ from read(2)\n", b * 4096);
        }
    }
    printf("file-pager-client: %zu bytes compared %s, %zu blocks differ from read(2) (%.3f s)\n",
           size, dir, wrong, now_s() - t0);
    size_t files, file_bytes, other;
    count_vmas(range.start, range.start + range.num_bytes, &files, &file_bytes, &other);
    printf("file-pager-client: the file's %zu KiB here: %zu mappings of its dataspace (%zu KiB), "
           "%zu unmapped ranges\n",
           range.num_bytes / 1024, files, file_bytes / 1024, other);
    fl_env_close(env);
    return wrong ? 1 : 0;
}
