/*
 * ring: a manager and two clients sharing one managed buffer. The manager
 * backs the whole buffer with a single RAM dataspace at the first touch, so
 * the producer, the consumer and the manager itself all see the same memory.
 * At the end the manager reads the ring's counters through its own view.
 *
 * usage: ring --serve NAME --serve NAME
 *   publishes one token per client (fl_publish) and
 *   serves until SIGTERM.
 */
#include <faultline/faultline.h>

#include "ring.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *serve[2];
    int nserve = 0;
    for (int i = 1; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], "--serve") && nserve < 2) serve[nserve++] = argv[i + 1];
    if (nserve != 2) {
        fprintf(stderr, "usage: ring --serve NAME --serve NAME\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fl_manager_catch_stop() < 0) return 1;

    struct fl_env *env;
    fl_cap rms, rm, sigh, mds, ram = FL_CAP_INVALID;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_rm_session_open(env, &rms)) < 0) return fl_perror("RM session", r);
    if ((r = fl_rm_create(env, rms, RING_SIZE, &rm)) < 0) return fl_perror("rm create", r);
    if ((r = fl_signal_context_create(env, &sigh)) < 0) return fl_perror("signal context", r);
    if ((r = fl_region_map_fault_handler(env, rm, sigh)) < 0) return fl_perror("fault handler", r);
    if ((r = fl_region_map_dataspace(env, rm, &mds)) < 0) return fl_perror("dataspace()", r);
    for (int i = 0; i < 2; i++) {
        char token[FL_TOKEN_LEN + 1];
        if ((r = fl_cap_export(env, mds, token)) < 0) return fl_perror("export", r);
        if (fl_publish(serve[i], token) < 0) return 1;
    }
    printf("ring: a managed buffer of %d KiB for two clients\n", RING_SIZE / 1024);

    long n;
    while ((n = fl_manager_wait(env, sigh, -1)) > 0) {
        struct fl_fault f;
        while ((r = fl_region_map_fault(env, rm, &f)) == 0 && f.type != FL_FAULT_NONE) {
            if (ram) {
                printf("ring: another fault at %#lx after the buffer was backed\n",
                       (unsigned long)f.addr);
                return 1;
            }
            /* Both clients may have faulted by now; one attach wakes both. */
            if ((r = fl_ram_alloc(env, RING_SIZE, &ram)) < 0) return fl_perror("ram alloc", r);
            struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
            if ((r = fl_region_map_attach(env, rm, ram, &a, NULL)) < 0)
                return fl_perror("attach", r);
            printf("ring: %s fault at %#lx: backed the whole buffer with one RAM dataspace\n",
                   fl_fault_type_name(f.type), (unsigned long)f.addr);
        }
        if (r < 0) return fl_perror("fault()", r);
    }
    if (n < 0) return fl_perror("signal wait", (int)n);
    if (ram) {
        /* The same memory once more, seen from here. */
        struct ring *ring = fl_attach(env, ram, &r);
        if (!ring) return fl_perror("attach locally", r);
        printf("ring: stopped; the buffer says %llu messages written, %llu read\n",
               (unsigned long long)atomic_load(&ring->head),
               (unsigned long long)atomic_load(&ring->tail));
    }
    fl_env_close(env);
    return 0;
}
