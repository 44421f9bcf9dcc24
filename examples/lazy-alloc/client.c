/*
 * The client of lazy-alloc: imports the managed dataspace, attaches it into
 * its own address space like any other dataspace, and touches it. It cannot
 * tell that each first touch is served by a manager.
 */
#include <faultline/faultline.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: lazy-client TOKEN SIZE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    uint64_t size;
    if (fl_parse_size(argv[2], &size) < 0) {
        fprintf(stderr, "lazy-client: SIZE '%s' is not a size (bytes, or with K, M or G)\n",
                argv[2]);
        return 2;
    }
    struct fl_env *env;
    fl_cap ds;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_cap_import(env, argv[1], &ds)) < 0) return fl_perror("import", r);
    char *p = fl_attach(env, ds, &r);
    if (!p) return fl_perror("attach", r);
    int bad = 0;
    for (size_t off = 0; off < size; off += 4096) {
        char want[64];
        snprintf(want, sizeof(want), "page %#lx", (unsigned long)off);
        if (strcmp(p + off, want)) {
            printf("client: at %#zx read \"%.20s\", want \"%s\"\n", off, p + off, want);
            bad++;
        }
        p[off + 100] = 'x'; /* and it is writable */
    }
    printf("client: touched %zu pages, %d wrong\n", size / 4096, bad);
    fl_env_close(env);
    return bad ? 1 : 0;
}
