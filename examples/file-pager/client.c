/*
 * The client of file-pager: attaches the file's managed dataspace read-only
 * and checks every byte against what read(2) returns for the same file.
 *
 * usage: file-pager-client TOKEN FILE [--backwards]
 *   --backwards compares from the end of the file to its start, so that two
 *   clients touch the chunks in different orders.
 */
#include <faultline/faultline.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: file-pager-client TOKEN FILE [--backwards]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    bool backwards = argc > 3 && !strcmp(argv[3], "--backwards");
    int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        fprintf(stderr, "file-pager-client: %s: %s\n", argv[2], strerror(errno));
        return 1;
    }

    struct fl_env *env;
    fl_cap ds;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_cap_import(env, argv[1], &ds)) < 0) return fl_perror("import", r);
    /* Read-only, as a file's pages should be. */
    struct fl_attr a = {.writeable = false};
    struct fl_range range;
    if ((r = fl_region_map_attach(env, fl_env_address_space(env), ds, &a, &range)) < 0)
        return fl_perror("attach", r);
    const unsigned char *map = (const unsigned char *)range.start;

    size_t size = (size_t)st.st_size, blocks = (size + 4095) / 4096, wrong = 0;
    for (size_t k = 0; k < blocks; k++) {
        size_t b = backwards ? blocks - 1 - k : k;
        unsigned char buf[4096];
        ssize_t n = pread(fd, buf, sizeof(buf), (off_t)(b * 4096));
        if (n < 0) {
            fprintf(stderr, "file-pager-client: read: %s\n", strerror(errno));
            return 1;
        }
        if (memcmp(buf, map + b * 4096, (size_t)n)) {
            if (wrong++ < 5)
                printf("file-pager-client: bytes at %#zx differ from read(2)\n", b * 4096);
        }
    }
    printf("file-pager-client: %zu bytes compared %s, %zu blocks differ from read(2)\n", size,
           backwards ? "backwards" : "forwards", wrong);
    fl_env_close(env);
    return wrong ? 1 : 0;
}
