/*
 * Crashes cost only the crashed: a manager killed with faults pending, a
 * client killed with faults pending, and a client killed while core waits for
 * its revocation acknowledgement. Core survives, releases what the dead
 * owned (its descriptors come back to their baseline), and everyone else
 * carries on: a detach waiting for the dead client returns at once.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static int touch(struct t_child *c)
{
    char token[64];
    t_child_command(c, token, sizeof(token));
    volatile char *p = t_import_attach(t_env(), token);
    t_child_say(c, "touching");
    return p[0x2000]; /* waits for a manager */
}

static int manager(struct t_child *c)
{
    struct t_mm mm;
    t_mm_create(&mm, t_env(), 64 * 1024, T_MM_HANDLER);
    t_child_say(c, "%s", t_mm_export(&mm));
    t_expect_signal(mm.env, mm.sigh); /* the fault arrived... */
    t_child_say(c, "fault pending");
    for (;;) pause(); /* ...and is never answered */
    return 0;
}

struct detach_call {
    struct fl_env *env;
    fl_cap rm;
    int result;
};

static void *detach_thread(void *arg)
{
    struct detach_call *d = arg;
    __atomic_store_n(&d->result, fl_region_map_detach(d->env, d->rm, 0), __ATOMIC_SEQ_CST);
    return NULL;
}

/* A core whose revocation deadline never passes here; its descriptors before
 * any session (a closed session's descriptors are closed on core's worker, so
 * a count taken right after one could still include them). */
static struct t_core *start(void)
{
    struct t_core *core = t_core_start("--revoke-deadline", "600000", NULL);
    core->fd_base = t_core_fd_count(core);
    return core;
}

static void done(struct t_core *core)
{
    T_WAIT_UNTIL(t_core_fd_count(core) == core->fd_base);
    T_EQ(t_core_stop(core), 0);
}

/* A manager killed with a fault pending. */
static void manager_killed_with_a_fault_pending(void)
{
    struct t_core *core = start();
    struct t_child m, c;
    t_child_spawn(&m, "manager", manager);
    char token[64];
    t_child_line(&m, token, sizeof(token));
    t_child_spawn(&c, "client", touch);
    t_child_send(&c, "%s", token);
    t_child_expect(&c, "touching");
    t_child_expect(&m, "fault pending");
    kill(m.pid, SIGKILL);
    t_wait(m.pid);
    kill(c.pid, SIGKILL); /* its map is gone: halted for good */
    t_wait(c.pid);
    done(core);
}

/* This process as a manager of a managed dataspace. */
static struct fl_env *manage(struct t_mm *mm)
{
    struct fl_env *mgr = t_env();
    t_mm_create(mm, mgr, 64 * 1024, T_MM_HANDLER);
    return mgr;
}

/* A client killed with a fault pending: its faulter leaves the queue. */
static void client_killed_with_a_fault_pending(void)
{
    struct t_core *core = start();
    struct t_mm mm;
    struct fl_env *mgr = manage(&mm);
    struct t_child c;
    t_child_spawn(&c, "client", touch);
    t_child_send(&c, "%s", t_mm_export(&mm));
    T_EQ(t_mm_next_fault(&mm).type, FL_FAULT_READ);
    kill(c.pid, SIGKILL);
    t_wait(c.pid);
    struct fl_fault f;
    do T_ERR(fl_region_map_fault(mgr, mm.rm, &f), 0);
    while (f.type != FL_FAULT_NONE);
    fl_env_close(mgr);
    done(core);
}

/* A client killed while core waits for its revocation acknowledgement: the
 * detach waiting for it returns at once. */
static void client_killed_during_a_revocation(void)
{
    struct t_core *core = start();
    struct t_mm mm;
    struct fl_env *mgr = manage(&mm);
    pid_t peer = t_stuck_peer(t_mm_export(&mm), 0);
    fl_cap ram;
    T_ERR(fl_ram_alloc(mgr, 4096, &ram), 0);
    t_mm_attach(&mm, ram, 0, 0, 0);
    struct detach_call d = {mgr, mm.rm, 1};
    pthread_t t;
    T_ASSERT(pthread_create(&t, NULL, detach_thread, &d) == 0);
    T_WAIT_UNTIL(t_core_log_contains(core, "revoke [0"));
    t_sleep_ms(50); /* give a wrong, early reply the chance to show */
    T_EQ(__atomic_load_n(&d.result, __ATOMIC_SEQ_CST), 1); /* still waiting for the peer */
    kill(peer, SIGKILL);                                   /* long before the 600 s deadline */
    t_wait(peer);
    pthread_join(t, NULL);
    T_EQ(d.result, 0);
    fl_env_close(mgr);
    done(core);
}

T_CASES(manager_killed_with_a_fault_pending, client_killed_with_a_fault_pending,
        client_killed_during_a_revocation)
