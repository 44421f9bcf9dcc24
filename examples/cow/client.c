/*
 * A client of the copy-on-write manager: it reads the template through its
 * view, writes to some pages (each first write is copied for it behind its
 * back), and checks that it reads its own writes there and the template
 * everywhere else. Clients write different pages, and all write page 0.
 *
 * usage: cow-client TOKEN ID
 */
#include <faultline/faultline.h>

#include "cow.h"

#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: cow-client TOKEN ID\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsigned id = (unsigned)strtoul(argv[2], NULL, 0);
    struct fl_env *env;
    fl_cap ds;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_cap_import(env, argv[1], &ds)) < 0) return fl_perror("import", r);
    char *v = fl_attach(env, ds, &r);
    if (!v) return fl_perror("attach", r);
    unsigned bad = 0, written = 0;
    for (unsigned i = 0; i < COW_PAGES; i++) bad += !cow_is_template_page(v + i * COW_PAGE, i);
    /* Pages i with i % 4 == id % 4, and page 0. */
    for (unsigned i = 0; i < COW_PAGES; i++) {
        if (i && i % 4 != id % 4) continue;
        snprintf(v + i * COW_PAGE, 64, "client %u wrote page %u", id, i);
        written++;
    }
    for (unsigned i = 0; i < COW_PAGES; i++) {
        char want[64];
        if (i == 0 || i % 4 == id % 4) {
            snprintf(want, sizeof(want), "client %u wrote page %u", id, i);
            bad += !!strcmp(v + i * COW_PAGE, want);
        } else {
            bad += !cow_is_template_page(v + i * COW_PAGE, i);
        }
    }
    printf("cow-client %u: wrote %u pages, read back %u pages, %u wrong\n", id, written, COW_PAGES,
           bad);
    fl_env_close(env);
    return bad ? 1 : 0;
}
