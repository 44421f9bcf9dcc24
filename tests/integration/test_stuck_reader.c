/*
 * A peer that stops reading its socket while core has things to send it.
 * Core never blocks on it (every send is MSG_DONTWAIT), queues at most
 * max_out_queue (4096) messages for it, and then ends that session only, with
 * the log line "it stopped reading: its outgoing queue is full". Here: map
 * instructions. A raw peer has a managed dataspace attached and never reads,
 * while its manager attaches slice after slice into the managed map (each
 * attach sends it an AGENT_MAP; the memfd travels once, so the descriptor
 * credit is not what ends it: that is test_fd_credit). Replies a peer never
 * reads are test_burst's reply flooder.
 * Meanwhile a healthy component in another process keeps completing rounds of
 * alloc/attach/touch/detach/free (asserted to advance after each hostile
 * action), the manager's attaches all succeed, a well-behaved client of the
 * same managed dataspace reads every slice, and core's descriptors return to
 * their baseline once the stuck peers are gone.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the stuck peers ---- */

static struct t_core *core;

static int log_has_pid(pid_t pid, const char *text)
{
    char want[64];
    snprintf(want, sizeof(want), "(pid %d (", (int)pid);
    FILE *f = fopen(core->log, "r");
    if (!f) return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) found = strstr(line, want) && strstr(line, text);
    fclose(f);
    return found;
}

#define QUEUE_FULL "it stopped reading: its outgoing queue is full"

/* (b) Attached to the managed dataspace, never reads again. */
static struct t_pipe tokens, ready;
static int map_sink(void *arg)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* no orphan when the test fails */
    (void)arg;
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
    t_raw_attached_peer(token);
    t_pipe_send(&ready, "attached");
    for (;;) pause();
}

#define SLICES 8192

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);
    int fd_base = t_core_fd_count(core);
    t_healthy_start(T_HEALTHY_ALLOCATES);
    t_healthy_advances("the healthy component's first rounds");

    char line[32];
    struct fl_env *mgr = t_env();
    fl_cap rm, mds, backing;
    T_ERR(fl_rm_create(mgr, (size_t)SLICES * 4096, &rm), 0);
    T_ERR(fl_region_map_dataspace(mgr, rm, &mds), 0);
    T_ERR(fl_ram_alloc(mgr, 16 * 4096, &backing), 0);
    unsigned char *b = fl_attach(mgr, backing, NULL);
    T_ASSERT(b);
    for (int i = 0; i < 16; i++) memset(b + i * 4096, 'a' + i, 4096);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    t_pipe_open(&tokens);
    t_pipe_open(&ready);
    pid_t sink = t_spawn(map_sink, NULL);
    t_pipe_send(&tokens, token);
    T_EQ(t_pipe_recv(&ready, line, sizeof(line)), 0);

    struct fl_env *client = t_env();
    T_ERR(fl_cap_export(mgr, mds, token), 0);
    volatile unsigned char *view = t_import_attach(client, token);

    int i = 0;
    for (; i < SLICES && (i % 256 || !log_has_pid(sink, QUEUE_FULL)); i++) {
        struct fl_attr a = {.size = 4096,
                            .offset = (uint64_t)(i % 16) * 4096,
                            .use_at = true,
                            .at = (uintptr_t)i * 4096,
                            .writeable = true};
        T_ERR(fl_region_map_attach(mgr, rm, backing, &a, NULL), 0);
        if (i % 512 == 0) t_healthy_advances("attaches the stuck peer does not read");
    }
    T_WAIT_FOR(log_has_pid(sink, QUEUE_FULL), "core ending the map sink's session");
    T_ASSERT(i > 4096);
    t_healthy_advances("the map sink's end");
    for (int k = 0; k < i; k++) T_EQ(view[(size_t)k * 4096 + 7], 'a' + k % 16);
    /* Core goes on mapping into the managed map. */
    for (int k = i; k < i + 64 && k < SLICES; k++) {
        struct fl_attr a = {.size = 4096, .use_at = true, .at = (uintptr_t)k * 4096};
        T_ERR(fl_region_map_attach(mgr, rm, backing, &a, NULL), 0);
        T_EQ(view[(size_t)k * 4096], 'a');
    }
    kill(sink, SIGKILL);
    t_wait(sink);

    fl_env_close(client);
    T_ERR(fl_detach(mgr, b), 0);
    T_ERR(fl_rm_destroy(mgr, rm), 0);
    T_ERR(fl_ram_free(mgr, backing), 0);
    fl_env_close(mgr);
    t_healthy_advances("the manager's teardown");
    t_healthy_stop();
    /* Everything the stuck peers held is released. */
    T_WAIT_FOR(t_core_fd_count(core) == fd_base, "core's descriptors back at their baseline");
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
