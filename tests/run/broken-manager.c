/*
 * A deliberately broken dataspace manager for faultline-run's own tests: it
 * serves faults like examples/lazy-alloc, but labels every page one page too
 * far on. Its client notices, says where, and fails; the runner's report has
 * to lead from the scenario's line to that cause. With --stall it picks up
 * its fault signal but never answers: its client stalls.
 *
 * usage: broken-manager --serve NAME | --stall NAME
 */
#include <faultline/faultline.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (64 * 1024)

static int fail(const char *what, int err)
{
    fprintf(stderr, "broken-manager: %s: %s\n", what, fl_strerror(err));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "--serve") && strcmp(argv[1], "--stall"))) {
        fprintf(stderr, "usage: broken-manager --serve NAME | --stall NAME\n");
        return 2;
    }
    bool stall = !strcmp(argv[1], "--stall");
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *export_fd = getenv("FAULTLINE_EXPORT_FD");
    if (!export_fd) {
        fprintf(stderr, "broken-manager: run me under faultline-run\n");
        return 2;
    }
    struct fl_env *env;
    fl_cap rms, rm, sigh, mds;
    char token[FL_TOKEN_LEN + 1];
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0 || (r = fl_rm_session_open(env, &rms)) < 0 ||
        (r = fl_rm_create(env, rms, 1 << 20, &rm)) < 0 ||
        (r = fl_signal_context_create(env, &sigh)) < 0 ||
        (r = fl_region_map_fault_handler(env, rm, sigh)) < 0 ||
        (r = fl_region_map_dataspace(env, rm, &mds)) < 0 ||
        (r = fl_cap_export(env, mds, token)) < 0)
        return fail("set-up", r);
    dprintf(atoi(export_fd), "%s %s\n", argv[2], token);
    /* Serves until the runner's SIGTERM ends it. */
    long n;
    while ((n = fl_signal_wait(env, sigh, -1)) > 0) {
        if (stall) {
            printf("broken-manager: took a fault signal, not answering\n");
            continue;
        }
        struct fl_fault f;
        while ((r = fl_region_map_fault(env, rm, &f)) == 0 && f.type != FL_FAULT_NONE) {
            uintptr_t at = f.addr & ~(uintptr_t)(CHUNK - 1);
            fl_cap ds;
            if ((r = fl_ram_alloc(env, CHUNK, &ds)) < 0) return fail("alloc", r);
            char *p = fl_attach(env, ds, &r);
            if (!p) return fail("attach locally", r);
            /* The bug: + 4096. */
            for (size_t i = 0; i < CHUNK; i += 4096)
                snprintf(p + i, 64, "page %#lx", (unsigned long)(at + i + 4096));
            fl_detach(env, p);
            struct fl_attr a = {.use_at = true, .at = at, .writeable = true};
            if ((r = fl_region_map_attach(env, rm, ds, &a, NULL)) < 0) return fail("attach", r);
        }
        if (r < 0) return fail("fault()", r);
    }
    fl_env_close(env);
    return n < 0 ? 1 : 0;
}
