/*
 * Reproducer for a growth the soak measured: core's VmRSS rises steadily
 * while the workload runs and is not given back when the components are
 * gone. One session allocating and freeing 4 KiB RAM dataspaces is enough:
 * about 150 bytes per pair stay with core, also after the session closed.
 * LeakSanitizer reports nothing at core's exit, so the memory is still
 * reachable from core's structures, or kept by the allocator.
 *
 * The cause (doc/soak.md, bug 6): fl_ram_free destroys the dataspace but
 * leaves the caller's capability in its table, and that entry keeps a
 * reference to the dead dataspace's struct. With the second argument
 * "release" the session also releases each capability after the free
 * (fl_cap_release), and core does not grow.
 *
 * usage: soak-repro-rss-growth [PAIRS [release]]   (default 8000)
 * Exit 0: core grew by less than 256 kB; 1: more (the lines show the trend).
 */
#include "../integration/harness.h"

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int n = argc > 1 ? atoi(argv[1]) : 8000;
    bool release = argc > 2 && !strcmp(argv[2], "release");
    struct t_core *core = t_core_start(NULL);
    long base = t_core_status_kb(core, "VmRSS");
    struct fl_env *e = t_env();
    for (int round = 1; round <= 4; round++) {
        for (int i = 0; i < n / 4; i++) {
            fl_cap ds;
            T_ERR(fl_ram_alloc(e, 4096, &ds), 0);
            T_ERR(fl_ram_free(e, ds), 0);
            if (release) T_ERR(fl_cap_release(e, ds), 0);
        }
        t_sleep_ms(200);
        printf("after %d alloc/free pairs: core VmRSS %ld kB (at start %ld kB)\n", round * n / 4,
               t_core_status_kb(core, "VmRSS"), base);
    }
    fl_env_close(e);
    t_sleep_ms(500);
    long end = t_core_status_kb(core, "VmRSS");
    printf("session closed: core VmRSS %ld kB, %+ld kB against the start\n", end, end - base);
    t_core_stop(core);
    return end - base < 256 ? 0 : 1;
}
