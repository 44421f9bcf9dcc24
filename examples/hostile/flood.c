/*
 * hostile-flood: a component that floods core. Its threads submit signals
 * to its own context and issue RPCs (session info, dataspace size, fault
 * queries, capability churn) as fast as core answers, until SIGTERM. Core
 * serves every session in turn from one loop, so others must still get
 * their faults resolved meanwhile.
 *
 * usage: hostile-flood [--threads N]
 */
#include <faultline/faultline.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct fl_env *env;
static fl_cap rms, rm, flooded;
static atomic_bool stop;
static atomic_long rpcs, submits, errors;

static void *flood(void *arg)
{
    long kind = (long)arg;
    while (!atomic_load(&stop)) {
        int r;
        if (kind % 2 == 0) {
            r = fl_signal_submit(env, flooded);
            atomic_fetch_add(&submits, 1);
        } else {
            struct fl_session_info info;
            struct fl_fault f;
            fl_cap ds, sigh;
            size_t size;
            r = fl_env_session_info(env, &info);
            if (!r) r = fl_region_map_fault(env, rm, &f);
            if (!r) r = fl_region_map_dataspace(env, rm, &ds);
            if (!r) r = fl_dataspace_size(env, ds, &size);
            if (!r) r = fl_signal_context_create(env, &sigh);
            if (!r) r = fl_signal_context_destroy(env, sigh);
            if (!r) r = fl_cap_release(env, ds);
            atomic_fetch_add(&rpcs, 7);
        }
        if (r < 0 && atomic_fetch_add(&errors, 1) < 3)
            printf("hostile-flood: %s\n", fl_error_name(r));
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc == 3 && !strcmp(argv[1], "--threads") ? atoi(argv[2]) : 4;
    if (threads < 1 || threads > 64) threads = 4;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fl_manager_catch_stop() < 0) return 1;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0 || (r = fl_rm_session_open(env, &rms)) < 0 ||
        (r = fl_rm_create(env, rms, 1 << 20, &rm)) < 0 ||
        (r = fl_signal_context_create(env, &flooded)) < 0)
        return fl_perror("set-up", r);
    pthread_t t[64];
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, flood, (void *)i);
    printf("hostile-flood: flooding core from %d threads\n", threads);
    /* No signal context: this returns when we are told to stop. */
    long n = fl_manager_wait(env, FL_CAP_INVALID, -1);
    atomic_store(&stop, true);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    printf("hostile-flood: stopped after %ld RPCs and %ld signal submits, %ld errors\n",
           atomic_load(&rpcs), atomic_load(&submits), atomic_load(&errors));
    fl_env_close(env);
    return n < 0 || atomic_load(&errors) ? 1 : 0;
}
