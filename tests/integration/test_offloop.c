/*
 * Memfd work runs off core's loop: while one session allocates 4 GiB (about
 * half a second of fallocate here), another session's small allocations and
 * frees complete. Asserted on order, not on time: the small loop must be done
 * before the big allocation returns.
 */
#include "harness.h"

#include <stdatomic.h>
#include <pthread.h>

static atomic_int big_done;

static void *big(void *arg)
{
    struct fl_env *env = arg;
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4ull << 30, &ds), 0);
    atomic_store(&big_done, 1);
    T_ERR(fl_ram_free(env, ds), 0);
    return NULL;
}

static void small_requests_overtake_a_big_one(void)
{
    struct t_core *core = t_core_start("--ram-quota", "5G", NULL);
    struct fl_env *a = t_env(), *b = t_env();
    fl_cap warm;
    T_ERR(fl_ram_alloc(b, 4096, &warm), 0);

    pthread_t t;
    T_ASSERT(pthread_create(&t, NULL, big, a) == 0);
    /* The big request is on its way once core has charged it. */
    struct fl_session_info info;
    do T_ERR(fl_env_session_info(a, &info), 0);
    while (info.ram_used < (4ull << 30) && !atomic_load(&big_done));

    int small = 0;
    for (; small < 10; small++) {
        fl_cap ds;
        T_ERR(fl_ram_alloc(b, 65536, &ds), 0);
        T_ERR(fl_ram_free(b, ds), 0);
    }
    int overtaken = !atomic_load(&big_done);
    pthread_join(t, NULL);
    if (!overtaken)
        T_FAILF("the 4 GiB allocation finished before 10 small ones: core's loop waited");
    fl_env_close(a);
    fl_env_close(b);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(small_requests_overtake_a_big_one)
