/*
 * Core's descriptor budget: with a low RLIMIT_NOFILE, allocation answers
 * OUT_OF_CAPS once core's descriptors are spent (not a crash, not EMFILE
 * surprises later), new connections are refused with a log line, and freeing
 * brings both back.
 */
#include "harness.h"

static void budget_spent_and_returned(void)
{
    setenv("FL_TEST_CORE_NOFILE", "100", 1);
    struct t_core *core = t_core_start(NULL);
    unsetenv("FL_TEST_CORE_NOFILE");

    struct fl_env *env = t_env();
    fl_cap ds[100];
    int n = 0, r = 0;
    while (n < 100 && (r = fl_ram_alloc(env, 4096, &ds[n])) == 0) n++;
    T_EQ(r, -FL_E_OUT_OF_CAPS);
    T_ASSERT(n > 10 && n < 100);

    /* A new session needs descriptors too: refused, and core says why. */
    struct fl_env *other = NULL;
    T_ERR(fl_env_open(&other, NULL), -FL_E_BUSY);
    T_WAIT_UNTIL(t_core_log_contains(core, "descriptor budget"));

    /* Freeing returns the budget (the punch and close run on the worker). */
    for (int i = 0; i < n; i++) T_ERR(fl_ram_free(env, ds[i]), 0);
    fl_cap again;
    for (;;) {
        r = fl_ram_alloc(env, 4096, &again);
        if (r == 0) break;
        T_EQ(r, -FL_E_OUT_OF_CAPS);
        t_sleep_ms(5);
    }
    T_ERR(fl_env_open(&other, NULL), 0);
    fl_env_close(other);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(budget_spent_and_returned)
