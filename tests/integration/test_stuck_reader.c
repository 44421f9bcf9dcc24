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

#include <signal.h>

#define QUEUE_FULL "it stopped reading: its outgoing queue is full"
#define SLICES     8192

static void map_sink_ended(void)
{
    struct t_core *core = t_core_start(NULL);
    t_baseline_begin(core, T_HEALTHY_ALLOCATES);

    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, (size_t)SLICES * 4096, 0);
    fl_cap backing;
    unsigned char *b = t_ram_pages(mgr, 16, 'a', &backing);
    /* Attached to the managed dataspace, never reads again. */
    pid_t sink = t_stuck_peer(t_mm_export(&mm), 0);

    struct fl_env *client = t_env();
    volatile unsigned char *view = t_import_attach(client, t_mm_export(&mm));

    int i = 0;
    for (; i < SLICES && (i % 256 || !t_core_log_names(core, sink, QUEUE_FULL)); i++) {
        t_mm_attach(&mm, backing, (size_t)(i % 16) * 4096, 4096, (uintptr_t)i * 4096);
        if (i % 512 == 0) t_healthy_advances("attaches the stuck peer does not read");
    }
    T_WAIT_FOR(t_core_log_names(core, sink, QUEUE_FULL), "core ending the map sink's session");
    T_ASSERT(i > 4096);
    t_healthy_advances("the map sink's end");
    for (int k = 0; k < i; k++) T_EQ(view[(size_t)k * 4096 + 7], 'a' + k % 16);
    /* Core goes on mapping into the managed map. */
    for (int k = i; k < i + 64 && k < SLICES; k++) {
        struct fl_attr a = {.size = 4096, .use_at = true, .at = (uintptr_t)k * 4096};
        T_ERR(fl_region_map_attach(mgr, mm.rm, backing, &a, NULL), 0);
        T_EQ(view[(size_t)k * 4096], 'a');
    }
    kill(sink, SIGKILL);
    t_wait(sink);

    fl_env_close(client);
    T_ERR(fl_detach(mgr, b), 0);
    T_ERR(fl_rm_destroy(mgr, mm.rms, mm.rm), 0);
    T_ERR(fl_ram_free(mgr, backing), 0);
    fl_env_close(mgr);
    t_healthy_advances("the manager's teardown");
    /* Everything the stuck peers held is released. */
    t_baseline_end(core);
}

T_CASES(map_sink_ended)
