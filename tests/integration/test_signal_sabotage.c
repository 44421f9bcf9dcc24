/*
 * Signal delivery never blocks core. A receiver shares its eventfd's file
 * description with core, so it can clear O_NONBLOCK and fill the counter;
 * core's next write to it would then block. Core must not: when another
 * session submits to the sabotaged context, core ends the saboteur's session
 * (its log says so), answers the submitter, and a third, healthy session's
 * RPCs keep completing throughout. A receiver that merely never picks up (a
 * full counter, O_NONBLOCK kept) is ended the same way. And delivery
 * coalesces: 5 submits before pickup are picked up once, as 5.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#define DEADLINE_MS 10000

static struct t_core *core;

/* ---- a receiver that sabotages (or just never reads) its eventfd ---- */

static int clear_nonblock; /* set before spawning a receiver */

static int receiver_main(struct t_child *c)
{
    struct fl_env *env = t_env();
    fl_cap sigh;
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    int fd = fl_signal_fd(env, sigh);
    T_ASSERT(fd >= 0);
    if (clear_nonblock) {
        int fl = fcntl(fd, F_GETFL);
        T_ASSERT(fl >= 0);
        T_ASSERT(fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0);
    }
    /* The largest count an eventfd holds: one more would block (or EAGAIN). */
    uint64_t v = 0xfffffffffffffffeull;
    T_EQ(write(fd, &v, sizeof(v)), sizeof(v));
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, sigh, token), 0);
    t_child_say(c, "%s", token);
    /* Wait to be told to go; core ending the session ends this process. */
    char line[16];
    if (t_pipe_recv(&c->to, line, sizeof(line)) == 0) fl_env_close(env);
    return 0;
}

/* ---- submitting with a deadline ---- */

struct submit_job {
    struct fl_env *env;
    fl_cap sigh;
    int result;
    int done_efd[2];
};

static void *submit_thread(void *arg)
{
    struct submit_job *j = arg;
    j->result = fl_signal_submit(j->env, j->sigh);
    T_EQ(write(j->done_efd[1], "x", 1), 1);
    return NULL;
}

/* Submit from another thread; core must answer within the deadline. */
static int submit_bounded(struct fl_env *env, fl_cap sigh)
{
    struct submit_job j = {.env = env, .sigh = sigh, .result = 1};
    T_ASSERT(pipe2(j.done_efd, O_CLOEXEC) == 0);
    pthread_t t;
    T_ASSERT(pthread_create(&t, NULL, submit_thread, &j) == 0);
    struct pollfd pf = {.fd = j.done_efd[0], .events = POLLIN};
    int r;
    do r = poll(&pf, 1, DEADLINE_MS);
    while (r < 0 && errno == EINTR);
    if (r != 1)
        T_FAILF("fl_signal_submit to a sabotaged context got no answer within %d ms: core is "
                "blocked",
                DEADLINE_MS);
    pthread_join(t, NULL);
    close(j.done_efd[0]);
    close(j.done_efd[1]);
    return j.result;
}

/* A receiver with a full counter; a submitter submits to it after core has
 * had no signal to write for idle_ms. Core answers the submitter and ends
 * the receiver's session ("why"); a healthy component's RPCs keep completing
 * throughout, and the submitter was never harmed. */
static void sabotage(int clear, int idle_ms, const char *why)
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);
    t_healthy_start(T_HEALTHY_ALLOCATES);
    struct fl_env *submitter = t_env();

    clear_nonblock = clear;
    struct t_child rc;
    t_child_spawn(&rc, "receiver", receiver_main);
    char token[64];
    t_child_line(&rc, token, sizeof(token));
    T_EQ(strlen(token), FL_TOKEN_LEN);
    fl_cap sigh;
    T_ERR(fl_cap_import(submitter, token, &sigh), 0);

    t_healthy_advances("a receiver with a full counter");
    t_sleep_ms(idle_ms);
    /* Core answers the submitter, and ends the receiver's session. */
    T_ERR(submit_bounded(submitter, sigh), 0);
    T_WAIT_FOR(t_core_log_names(core, rc.pid, why),
               "core's log line ending the receiver's session");
    T_ASSERT(t_core_log_names(core, rc.pid, "eventfd"));
    t_healthy_advances("the receiver's end");

    /* Its session is gone: the library ends the receiver, which was waiting
     * on its pipe, not exiting by itself. */
    int st = t_wait_within(rc.pid, DEADLINE_MS, "the receiver's end (core closing its session)");
    T_ASSERT(st != 0);

    /* The context died with its session: submitting more returns at once. */
    int again = submit_bounded(submitter, sigh);
    T_ASSERT(again == 0 || again == -FL_E_INVALID_CAP);
    t_healthy_advances("submits to a dead context");

    /* The submitter was never harmed. */
    fl_cap ds;
    T_ERR(fl_ram_alloc(submitter, 4096, &ds), 0);
    T_ERR(fl_ram_free(submitter, ds), 0);
    fl_env_close(submitter);
    t_healthy_stop();
    T_EQ(t_core_stop(core), 0);
}

/* O_NONBLOCK cleared: core's next write would block. */
static void sabotaged_receiver(void)
{
    sabotage(1, 0, "sabotaged");
}

/* Again once core's watchdog has gone to sleep (200 ms without a signal
 * write): the blocked write itself must wake it. */
static void sabotaged_receiver_after_idle(void)
{
    sabotage(1, 500, "sabotaged");
}

/* Not sabotage, just a receiver that never picks up. */
static void receiver_never_picks_up(void)
{
    sabotage(0, 0, "full");
}

/* Coalescing: 5 submits before pickup are one delivery of 5. */
static void submits_coalesce(void)
{
    core = t_core_start(NULL);
    struct fl_env *rx = t_env(), *tx = t_env();
    fl_cap sigh, imported;
    T_ERR(fl_signal_context_create(rx, &sigh), 0);
    T_EQ(fl_signal_wait(rx, sigh, 0), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(rx, sigh, token), 0);
    T_ERR(fl_cap_import(tx, token, &imported), 0);
    for (int i = 0; i < 5; i++) T_ERR(fl_signal_submit(tx, imported), 0);
    T_EQ(fl_signal_wait(rx, sigh, DEADLINE_MS), 5);
    T_EQ(fl_signal_wait(rx, sigh, 0), 0);
    /* Again, mixing the receiver's own submits in. */
    T_ERR(fl_signal_submit(tx, imported), 0);
    T_ERR(fl_signal_submit(rx, sigh), 0);
    T_ERR(fl_signal_submit(tx, imported), 0);
    T_EQ(fl_signal_wait(rx, sigh, DEADLINE_MS), 3);
    T_EQ(fl_signal_wait(rx, sigh, 0), 0);
    /* One at a time: picked up one at a time. */
    T_ERR(fl_signal_submit(tx, imported), 0);
    T_EQ(fl_signal_wait(rx, sigh, DEADLINE_MS), 1);
    fl_env_close(tx);
    fl_env_close(rx);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(submits_coalesce, sabotaged_receiver, sabotaged_receiver_after_idle,
        receiver_never_picks_up)
