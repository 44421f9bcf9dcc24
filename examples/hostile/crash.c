/*
 * hostile-crash: a manager that dies in the middle of the fault protocol:
 * after fault() told it what faulted and it allocated the memory to answer
 * with, but before the attach. Core releases everything the manager's
 * session owned, including the managed region map its client faulted in;
 * that fault can never be resolved now, so with core's --unresolvable sigbus
 * the client gets a SIGBUS instead of hanging.
 *
 * usage: hostile-crash --serve NAME
 */
#include <faultline/faultline.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--serve")) {
        fprintf(stderr, "usage: hostile-crash --serve NAME\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct fl_env *env;
    fl_cap rms, rm, sigh, mds, ds;
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
    long n = fl_signal_wait(env, sigh, -1);
    if (n < 0) return fl_perror("signal wait", (int)n);
    struct fl_fault f;
    if ((r = fl_region_map_fault(env, rm, &f)) < 0) return fl_perror("fault()", r);
    if ((r = fl_ram_alloc(env, 4096, &ds)) < 0) return fl_perror("alloc", r);
    printf("hostile-crash: %s fault at %#lx, memory allocated; crashing before the attach\n",
           fl_fault_type_name(f.type), (unsigned long)f.addr);
    abort();
}
