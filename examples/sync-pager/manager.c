/*
 * sync-pager: one manager, served both ways (doc/async-vs-sync.md). It backs
 * a managed dataspace from one RAM dataspace whose page at offset O reads
 * "page O", and its whole paging logic is resolve(): a fault at an address
 * of the map becomes a map item, the 4 KiB slice of the backing there,
 * writeable.
 *
 *   --mode async (the default): core reflects each fault as a signal; the
 *     manager asks core for the fault state and attaches the map item into
 *     the region map (Genode's way: core never waits for the manager).
 *   --mode sync: the manager offers the map for synchronous paging; each
 *     client's local region mapper asks it directly over a channel core
 *     made, and maps the item itself (the "local region mapper" Genode
 *     rejected). Core is not on that fault path.
 *
 * The client is lazy-client, unchanged: it cannot tell the modes apart.
 *
 * usage: sync-pager [--mode async|sync] [--size SIZE] --serve NAME [--serve NAME...]
 *        publishes one token per NAME and serves until SIGTERM.
 */
#include <faultline/faultline.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CLIENTS 8

struct pager {
    fl_cap backing;
    size_t size;
    unsigned long faults;
};

/* The paging logic, the same in both modes. */
static int resolve(void *arg, const struct fl_sync_fault *f, struct fl_sync_item *item)
{
    struct pager *pg = arg;
    uintptr_t page = f->addr & ~(uintptr_t)4095;
    if (page >= pg->size) return -FL_E_INVALID_ARG;
    *item = (struct fl_sync_item){
        .ds = pg->backing, .ds_offset = page, .addr = page, .size = 4096, .writeable = true};
    pg->faults++;
    printf("manager: fault %s at %#lx -> slice at %#lx\n", fl_fault_type_name(f->type),
           (unsigned long)f->addr, (unsigned long)page);
    return 0;
}

/* Asynchronous: fault() from core, the map item attached into the map. */
static int serve_async(struct fl_env *env, fl_cap rm, struct pager *pg)
{
    for (;;) {
        struct fl_fault f;
        int r;
        if ((r = fl_region_map_fault(env, rm, &f)) < 0) return fl_perror("fault()", r);
        if (f.type == FL_FAULT_NONE) return 0;
        struct fl_sync_fault sf = {.addr = f.addr, .type = f.type};
        struct fl_sync_item item;
        if ((r = resolve(pg, &sf, &item)) < 0) return fl_perror("resolve", r);
        struct fl_attr a = {.size = item.size,
                            .offset = item.ds_offset,
                            .use_at = true,
                            .at = item.addr,
                            .writeable = item.writeable};
        if ((r = fl_region_map_attach(env, rm, item.ds, &a, NULL)) < 0)
            return fl_perror("attach", r);
    }
}

int main(int argc, char **argv)
{
    size_t size = 256 * 1024;
    bool sync = false;
    const char *serve[MAX_CLIENTS];
    int nserve = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--size")) {
            uint64_t v;
            if (fl_parse_size(argv[i + 1], &v) < 0 || !v || v % 4096) {
                fprintf(stderr, "sync-pager: --size: '%s' is not a multiple of 4096\n",
                        argv[i + 1]);
                return 2;
            }
            size = v;
        } else if (!strcmp(argv[i], "--mode")) {
            if (strcmp(argv[i + 1], "sync") && strcmp(argv[i + 1], "async")) {
                fprintf(stderr, "sync-pager: --mode: 'async' or 'sync', not '%s'\n", argv[i + 1]);
                return 2;
            }
            sync = !strcmp(argv[i + 1], "sync");
        } else if (!strcmp(argv[i], "--serve") && nserve < MAX_CLIENTS) {
            serve[nserve++] = argv[i + 1];
        }
    }
    if (!nserve) {
        fprintf(stderr, "usage: sync-pager [--mode async|sync] [--size SIZE] --serve NAME...\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fl_manager_catch_stop() < 0) return 1;

    struct fl_env *env;
    fl_cap rms, rm, sigh = FL_CAP_INVALID, mds;
    struct pager pg = {.size = size};
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_ram_alloc(env, size, &pg.backing)) < 0) return fl_perror("ram alloc", r);
    char *p = fl_attach(env, pg.backing, &r);
    if (!p) return fl_perror("attach locally", r);
    for (size_t off = 0; off < size; off += 4096)
        snprintf(p + off, 64, "page %#lx", (unsigned long)off);
    if ((r = fl_rm_session_open(env, &rms)) < 0) return fl_perror("RM session", r);
    if ((r = fl_rm_create(env, rms, size, &rm)) < 0) return fl_perror("rm create", r);
    if ((r = fl_region_map_dataspace(env, rm, &mds)) < 0) return fl_perror("dataspace()", r);
    struct fl_sync_manager *mgr = NULL;
    if (sync) {
        if ((r = fl_sync_offer(env, rm, resolve, &pg, &mgr)) < 0) return fl_perror("offer", r);
    } else {
        if ((r = fl_signal_context_create(env, &sigh)) < 0) return fl_perror("signal context", r);
        if ((r = fl_region_map_fault_handler(env, rm, sigh)) < 0)
            return fl_perror("fault handler", r);
    }
    printf("manager: mode %s, managed dataspace of %zu KiB\n", sync ? "sync" : "async",
           size / 1024);
    char token[FL_TOKEN_LEN + 1];
    for (int i = 0; i < nserve; i++) {
        if ((r = fl_cap_export(env, mds, token)) < 0) return fl_perror("export", r);
        if (fl_publish(serve[i], token) < 0) return 1;
    }
    long n;
    if (sync) {
        /* Serve the channels; look for a stop request between rounds. */
        while ((n = fl_manager_wait(env, FL_CAP_INVALID, 0)) == -FL_E_TIMEOUT)
            if ((r = fl_sync_serve(mgr, 100)) < 0) return fl_perror("serve", r);
    } else {
        while ((n = fl_manager_wait(env, sigh, -1)) > 0)
            if (serve_async(env, rm, &pg)) return 1;
    }
    if (n < 0) return fl_perror("wait", (int)n);
    printf("manager: stopped after %lu faults\n", pg.faults);
    fl_sync_close(mgr);
    fl_env_close(env);
    return 0;
}
