/*
 * The same fault delivered twice from the kernel: a thread waiting in the
 * uffd is interrupted by a signal, its handler returns, and the thread
 * re-executes the access -- the uffd reports the same fault (same thread,
 * address and type) again. Core must take it for the duplicate it is: the
 * manager's faulter queue and its signal count stay as they were. Another
 * thread's fault queued behind it stays behind it (a repeat taken for a new
 * fault would queue anew, at the tail), and no second signal comes.
 * test_forged_faults covers the EXEC_FAULT message; this is the uffd's own
 * repeat.
 *
 * Deterministic: the client sees its thread wait in the uffd again
 * (wchan handle_userfault) after the handler ran, so the repeat is queued in
 * the uffd; then a third thread faults on another managed map with a signal
 * context of its own. Core reads a uffd in order, so when that map's signal
 * arrives, the repeat has been handled: a signal it caused would be pending
 * on the first context by then.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAP_SIZE 0x10000u
#define NTHREADS 3
/* Thread 0 faults on map 0, thread 1 behind it on the same map, thread 2 on
 * map 1; each on a page of its own. */
static const uintptr_t page_of[NTHREADS] = {0x3000, 0x7000, 0x5000};
static const int map_of[NTHREADS] = {0, 0, 1};

/* ---- the client ---- */

static volatile char *views[2];
static atomic_int handled;
static atomic_int tids[NTHREADS];
static int results[NTHREADS];

static void on_usr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&handled, 1); /* and return: the access runs again */
}

static void *reader(void *arg)
{
    int which = (int)(intptr_t)arg;
    atomic_store(&tids[which], (int)syscall(SYS_gettid));
    results[which] = views[map_of[which]][page_of[which] + 5];
    return NULL;
}

static int client_main(struct t_child *c)
{
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    struct fl_env *env = t_env();
    char line[256], tok[FL_TOKEN_LEN + 1];
    pthread_t t[NTHREADS];
    for (int i = 0; i < 2; i++) {
        t_child_command(c, line, sizeof(line));
        T_ASSERT(sscanf(line, "attach %32s", tok) == 1);
        views[i] = t_import_attach(env, tok);
    }
    t_child_say(c, "attached");
    for (;;) {
        t_child_command(c, line, sizeof(line));
        if (!strncmp(line, "fault ", 6)) {
            int which = atoi(line + 6);
            T_ASSERT(which >= 0 && which < NTHREADS);
            T_EQ(pthread_create(&t[which], NULL, reader, (void *)(intptr_t)which), 0);
            T_WAIT_UNTIL(atomic_load(&tids[which]) != 0);
            if (t_thread_waits_in_uffd(atomic_load(&tids[which])) < 0) {
                t_child_say(c, "no wchan");
                return T_SKIP;
            }
            t_child_say(c, "faulting %d", atomic_load(&tids[which]));
        } else if (!strcmp(line, "interrupt")) {
            /* The handler runs, returns, and the thread faults at the same
             * address again: it waits in the uffd anew. Once the handler ran,
             * a wait in the uffd is the new one: the repeat is queued. */
            int tid = atomic_load(&tids[0]);
            T_EQ(syscall(SYS_tgkill, getpid(), tid, SIGUSR1), 0);
            T_WAIT_UNTIL(atomic_load(&handled) == 1);
            T_EQ(t_thread_waits_in_uffd(tid), 0);
            t_child_say(c, "waits again");
        } else if (!strcmp(line, "join")) {
            for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], NULL);
            t_child_say(c, "read %d %d %d", results[0], results[1], results[2]);
        } else {
            break;
        }
    }
    fl_env_close(env);
    return atomic_load(&handled) == 1 ? 0 : 1;
}

/* ---- the manager (this process) ---- */

static struct fl_env *mgr;

static void expect_head(fl_cap rm, uintptr_t page)
{
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.type, FL_FAULT_READ);
    T_EQ(f.addr & ~0xfffu, page);
}

static void repeat_is_no_new_fault(void)
{
    struct t_core *core = t_core_start(NULL);
    mgr = t_env();
    fl_cap rms, rm[2], sigh[2], ds[2];
    char token[FL_TOKEN_LEN + 1];
    struct t_child c;
    t_child_spawn(&c, "client", client_main);
    T_ERR(fl_rm_session_open(mgr, &rms), 0);
    for (int i = 0; i < 2; i++) {
        T_ERR(fl_rm_create(mgr, rms, MAP_SIZE, &rm[i]), 0);
        T_ERR(fl_signal_context_create(mgr, &sigh[i]), 0);
        T_ERR(fl_region_map_fault_handler(mgr, rm[i], sigh[i]), 0);
        T_ERR(fl_region_map_dataspace(mgr, rm[i], &ds[i]), 0);
        T_ERR(fl_cap_export(mgr, ds[i], token), 0);
        t_child_send(&c, "attach %s", token);
    }
    t_child_expect(&c, "attached");

    /* Thread 0's fault, then thread 1's on the same map behind it: each
     * queued and signalled once, thread 0's at the head. */
    char line[128];
    for (int i = 0; i < 2; i++) {
        t_child_send(&c, "fault %d", i);
        t_child_line(&c, line, sizeof(line));
        if (!strcmp(line, "no wchan")) {
            T_EQ(t_wait(c.pid), T_SKIP);
            t_skip("the kernel does not show where a thread waits");
        }
        T_ASSERT(!strncmp(line, "faulting ", 9));
        T_EQ(fl_signal_wait(mgr, sigh[0], T_WAIT_MS), 1);
        expect_head(rm[0], page_of[0]);
    }

    /* Thread 0 interrupted and back: the kernel reports its fault again. */
    t_child_send(&c, "interrupt");
    t_child_expect(&c, "waits again");

    /* A later fault on the other map: when its signal is here, core has
     * handled the repeat, which came before it in the uffd. */
    t_child_send(&c, "fault 2");
    t_child_line(&c, line, sizeof(line));
    T_ASSERT(!strncmp(line, "faulting ", 9));
    T_EQ(fl_signal_wait(mgr, sigh[1], T_WAIT_MS), 1);
    expect_head(rm[1], page_of[2]);

    /* The repeat changed nothing: no second signal, and thread 0 is still at
     * the head, not queued anew behind thread 1. */
    long again = fl_signal_wait(mgr, sigh[0], 0);
    if (again != 0) T_FAILF("a fault delivered twice was signalled twice (%ld more)", again);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, rm[0], &f), 0);
    if ((f.addr & ~0xfffu) != page_of[0])
        T_FAILF("a fault delivered twice was queued anew: the head is %#lx, not %#lx",
                (unsigned long)f.addr, (unsigned long)page_of[0]);

    /* Resolve them in queue order: the head moves on to thread 1, and each
     * thread reads what was attached for it. */
    for (int i = 0; i < NTHREADS; i++) {
        t_ram_at(mgr, rm[map_of[i]], page_of[i], 4096, 31 + i);
        if (i == 0) expect_head(rm[0], page_of[1]);
    }
    t_child_send(&c, "join");
    t_child_expect(&c, "read 31 32 33");
    for (int i = 0; i < 2; i++) {
        T_ERR(fl_region_map_fault(mgr, rm[i], &f), 0);
        T_EQ(f.type, FL_FAULT_NONE);
        T_EQ(fl_signal_wait(mgr, sigh[i], 0), 0);
    }
    t_child_exit(&c);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(repeat_is_no_new_fault)
