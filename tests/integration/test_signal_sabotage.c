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
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 10000

static struct t_core *core;

static int log_line_has(const char *a, const char *b)
{
    FILE *f = fopen(core->log, "r");
    if (!f) return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) found = strstr(line, a) && strstr(line, b);
    fclose(f);
    return found;
}

/* Shared with the children. */
struct shared {
    atomic_ulong rounds; /* healthy session's completed alloc/free rounds */
    atomic_int stop;
    atomic_int healthy_err;
};
static struct shared *sh;

/* ---- the healthy session: alloc/free until told to stop ---- */

static int healthy_main(void *arg)
{
    struct t_pipe *ready = arg;
    struct fl_env *env = t_env();
    t_pipe_send(ready, "ready");
    while (!atomic_load(&sh->stop)) {
        fl_cap ds;
        int r = fl_ram_alloc(env, 4096, &ds);
        if (r == 0) r = fl_ram_free(env, ds);
        if (r < 0) {
            atomic_store(&sh->healthy_err, r);
            return 1;
        }
        atomic_fetch_add(&sh->rounds, 1);
    }
    fl_env_close(env);
    return 0;
}

/* ---- a receiver that sabotages (or just never reads) its eventfd ---- */

struct receiver {
    struct t_pipe to, from;
    int clear_nonblock;
    pid_t pid;
};

static int receiver_main(void *arg)
{
    struct receiver *rc = arg;
    close(rc->to.w);
    close(rc->from.r);
    struct fl_env *env = t_env();
    fl_cap sigh;
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    int fd = fl_signal_fd(env, sigh);
    T_ASSERT(fd >= 0);
    if (rc->clear_nonblock) {
        int fl = fcntl(fd, F_GETFL);
        T_ASSERT(fl >= 0);
        T_ASSERT(fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0);
    }
    /* The largest count an eventfd holds: one more would block (or EAGAIN). */
    uint64_t v = 0xfffffffffffffffeull;
    T_EQ(write(fd, &v, sizeof(v)), sizeof(v));
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, sigh, token), 0);
    t_pipe_send(&rc->from, token);
    /* Wait to be told to go; core ending the session ends this process. */
    char line[16];
    if (t_pipe_recv(&rc->to, line, sizeof(line)) == 0) fl_env_close(env);
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
    if (r != 1) {
        fprintf(stderr,
                "fl_signal_submit to a sabotaged context got no answer within %d ms: core "
                "is blocked\n",
                DEADLINE_MS);
        exit(T_FAIL);
    }
    pthread_join(t, NULL);
    close(j.done_efd[0]);
    close(j.done_efd[1]);
    return j.result;
}

static void healthy_progresses(void)
{
    unsigned long base = atomic_load(&sh->rounds);
    T_WAIT_FOR(atomic_load(&sh->rounds) >= base + 20 || atomic_load(&sh->healthy_err),
               "the healthy session's RPCs");
    T_EQ(atomic_load(&sh->healthy_err), 0);
}

/* A receiver with a full counter; the submitter submits to it after core
 * has had no signal to write for idle_ms. */
static void sabotage(struct fl_env *submitter, int clear_nonblock, int idle_ms, const char *why)
{
    struct receiver rc = {.clear_nonblock = clear_nonblock};
    t_pipe_open(&rc.to);
    t_pipe_open(&rc.from);
    rc.pid = t_spawn(receiver_main, &rc);
    close(rc.to.r);
    close(rc.from.w);
    char token[64];
    T_EQ(t_pipe_recv(&rc.from, token, sizeof(token)), 0);
    T_EQ(strlen(token), FL_TOKEN_LEN);
    fl_cap sigh;
    T_ERR(fl_cap_import(submitter, token, &sigh), 0);

    healthy_progresses();
    t_sleep_ms(idle_ms);
    /* Core answers the submitter, and ends the receiver's session. */
    T_ERR(submit_bounded(submitter, sigh), 0);
    char label[48];
    snprintf(label, sizeof(label), "(pid %d (", (int)rc.pid);
    T_WAIT_FOR(log_line_has(label, why), "core's log line ending the receiver's session");
    T_ASSERT(log_line_has(label, "eventfd"));
    healthy_progresses();

    /* Its session is gone: the library ends the receiver, which was waiting
     * on its pipe, not exiting by itself. */
    long end = t_now_ms() + DEADLINE_MS;
    int st, r;
    while ((r = waitpid(rc.pid, &st, WNOHANG)) == 0) {
        if (t_now_ms() > end) {
            fprintf(stderr, "the receiver lives on: core did not close its session\n");
            kill(rc.pid, SIGKILL);
            exit(T_FAIL);
        }
        t_sleep_ms(5);
    }
    T_EQ(r, rc.pid);
    T_ASSERT(!(WIFEXITED(st) && WEXITSTATUS(st) == 0));

    /* The context died with its session: submitting more returns at once. */
    int again = submit_bounded(submitter, sigh);
    T_ASSERT(again == 0 || again == -FL_E_INVALID_CAP);
    close(rc.to.w);
    close(rc.from.r);
    healthy_progresses();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    T_ASSERT(sh != MAP_FAILED);
    core = t_core_start(NULL);

    /* Coalescing: 5 submits before pickup are one delivery of 5. */
    {
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
    }

    /* The healthy session. */
    struct t_pipe ready;
    t_pipe_open(&ready);
    pid_t healthy = t_spawn(healthy_main, &ready);
    char line[16];
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);

    struct fl_env *submitter = t_env();
    sabotage(submitter, 1, 0, "sabotaged");
    /* Again once core's watchdog has gone to sleep (200 ms without a signal
     * write): the blocked write itself must wake it. */
    sabotage(submitter, 1, 500, "sabotaged");
    /* Not sabotage, just a receiver that never picks up. */
    sabotage(submitter, 0, 0, "full");

    /* The submitter was never harmed. */
    fl_cap ds;
    T_ERR(fl_ram_alloc(submitter, 4096, &ds), 0);
    T_ERR(fl_ram_free(submitter, ds), 0);
    fl_env_close(submitter);

    atomic_store(&sh->stop, 1);
    T_EQ(t_wait(healthy), 0);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
