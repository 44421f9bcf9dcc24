/*
 * hostile-silent: a manager that never answers. It installs a fault handler,
 * hands out its managed dataspace and, when the fault signal comes, does
 * nothing. Its client stays halted in the fault, as it would in Genode;
 * core, which never waits for a manager, goes on serving everyone else.
 *
 * usage: hostile-silent --serve NAME
 */
#include <faultline/faultline.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--serve")) {
        fprintf(stderr, "usage: hostile-silent --serve NAME\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fl_manager_catch_stop() < 0) return 1;
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
        return fl_perror("set-up", r);
    if (fl_publish(argv[2], token) < 0) return 1;
    long n;
    while ((n = fl_manager_wait(env, sigh, -1)) > 0)
        printf("hostile-silent: fault signal (count %ld), not answering\n", n);
    printf("hostile-silent: stopped\n");
    fl_env_close(env);
    return n < 0 ? 1 : 0;
}
