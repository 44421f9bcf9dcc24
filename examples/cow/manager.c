/*
 * cow: a copy-on-write manager. Every client gets a managed dataspace of its
 * own whose pages all show one shared template, attached read-only. The
 * first write of a client to a page is a WRITE fault; the manager copies that
 * template page into a private page of a pool and attaches the copy, writable,
 * in place of the template page -- in that client's map only. The writer then
 * completes its write on its copy; the template and every other client are
 * untouched. (This is how fork() works, done by a dataspace manager.)
 *
 * usage: cow --serve NAME [--serve NAME]...
 *   publishes one token per client (fl_publish) and
 *   serves until SIGTERM; then checks that the template is intact.
 */
#include <faultline/faultline.h>

#include "cow.h"

#include <stdio.h>
#include <string.h>

#define MAX_CLIENTS 8

struct view {
    fl_cap rm; /* the client's managed map */
    unsigned copies;
};

int main(int argc, char **argv)
{
    const char *serve[MAX_CLIENTS];
    int nclients = 0;
    for (int i = 1; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], "--serve") && nclients < MAX_CLIENTS) serve[nclients++] = argv[i + 1];
    if (nclients == 0) {
        fprintf(stderr, "usage: cow --serve NAME [--serve NAME]...\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fl_manager_catch_stop() < 0) return 1;

    struct fl_env *env;
    fl_cap template, pool, sigh, rms;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    /* The template, filled through the manager's own attachment. */
    if ((r = fl_ram_alloc(env, COW_SIZE, &template)) < 0) return fl_perror("template alloc", r);
    char *t = fl_attach(env, template, &r);
    if (!t) return fl_perror("attach the template", r);
    for (unsigned i = 0; i < COW_PAGES; i++) cow_template_page(t + i * COW_PAGE, i);
    /* One pool for every private copy: slices of one dataspace, not one
     * dataspace per page (each dataspace costs core a descriptor). */
    if ((r = fl_ram_alloc(env, (size_t)nclients * COW_SIZE, &pool)) < 0)
        return fl_perror("pool alloc", r);
    char *p = fl_attach(env, pool, &r);
    if (!p) return fl_perror("attach the pool", r);
    if ((r = fl_signal_context_create(env, &sigh)) < 0) return fl_perror("signal context", r);
    /* One RM session for every client's view. */
    if ((r = fl_rm_session_open(env, &rms)) < 0) return fl_perror("RM session", r);

    struct view views[MAX_CLIENTS];
    for (int c = 0; c < nclients; c++) {
        fl_cap mds;
        if ((r = fl_rm_create(env, rms, COW_SIZE, &views[c].rm)) < 0)
            return fl_perror("rm create", r);
        if ((r = fl_region_map_fault_handler(env, views[c].rm, sigh)) < 0)
            return fl_perror("fault handler", r);
        /* Page by page, so that one page can be replaced by its copy. */
        for (unsigned i = 0; i < COW_PAGES; i++) {
            struct fl_attr a = {.size = COW_PAGE,
                                .offset = i * COW_PAGE,
                                .use_at = true,
                                .at = i * COW_PAGE,
                                .writeable = false};
            if ((r = fl_region_map_attach(env, views[c].rm, template, &a, NULL)) < 0)
                return fl_perror("attach the template read-only", r);
        }
        views[c].copies = 0;
        char token[FL_TOKEN_LEN + 1];
        if ((r = fl_region_map_dataspace(env, views[c].rm, &mds)) < 0 ||
            (r = fl_cap_export(env, mds, token)) < 0)
            return fl_perror("export", r);
        if (fl_publish(serve[c], token) < 0) return 1;
    }
    printf("cow: %d clients share a template of %d pages\n", nclients, COW_PAGES);

    long n;
    while ((n = fl_manager_wait(env, sigh, -1)) > 0) {
        /* One signal context for every view: ask each for its faults. */
        for (int c = 0; c < nclients; c++) {
            struct fl_fault f;
            while ((r = fl_region_map_fault(env, views[c].rm, &f)) == 0 &&
                   f.type != FL_FAULT_NONE) {
                uintptr_t page = f.addr & ~(uintptr_t)(COW_PAGE - 1);
                if (f.type != FL_FAULT_WRITE) {
                    printf("cow: unexpected %s fault at %#lx in view %d\n",
                           fl_fault_type_name(f.type), (unsigned long)f.addr, c);
                    return 1;
                }
                size_t copy = (size_t)c * COW_SIZE + page;
                memcpy(p + copy, t + page, COW_PAGE);
                /* Detach revokes the template page in this view (and only
                 * there); the copy's attach wakes the writer. */
                if ((r = fl_region_map_detach(env, views[c].rm, page)) < 0)
                    return fl_perror("detach the template page", r);
                struct fl_attr a = {.size = COW_PAGE,
                                    .offset = copy,
                                    .use_at = true,
                                    .at = page,
                                    .writeable = true};
                if ((r = fl_region_map_attach(env, views[c].rm, pool, &a, NULL)) < 0)
                    return fl_perror("attach the copy", r);
                views[c].copies++;
                printf("cow: view %d: WRITE fault at %#lx: private copy of page %lu\n", c,
                       (unsigned long)f.addr, (unsigned long)(page / COW_PAGE));
            }
            if (r < 0) return fl_perror("fault()", r);
        }
    }
    if (n < 0) return fl_perror("signal wait", (int)n);

    unsigned bad = 0, copies = 0;
    for (unsigned i = 0; i < COW_PAGES; i++) bad += !cow_is_template_page(t + i * COW_PAGE, i);
    for (int c = 0; c < nclients; c++) copies += views[c].copies;
    printf("cow: stopped after %u copies; template pages changed: %u\n", copies, bad);
    fl_env_close(env);
    return bad ? 1 : 0;
}
