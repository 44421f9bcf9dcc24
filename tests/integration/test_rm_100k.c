/*
 * A region map filled with 100,000 attachments. A manager attaches 4 KiB
 * slices of a 16-page backing dataspace at every page of a 100,000-page
 * managed region map (use_at, ascending). Every attach succeeds and is
 * charged (FL_COST_REGION bytes of the manager's RAM quota each, session info says so),
 * faults and lookups in the full map are answered, detaches in the middle
 * work, and destroying the map releases all of it (quota back to where it
 * was). A healthy component in another process keeps completing rounds of
 * alloc/attach/touch/detach/free throughout (asserted every 20,000
 * attachments). With CLIENT set (test_rm_100k_client), a client also
 * attaches the full map's dataspace and reads it.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define N       100000
#define BACKING 16

#ifdef CLIENT
static int client_main(void *token)
{
    struct fl_env *env = t_env();
    volatile unsigned char *v = t_import_attach(env, token);
    for (size_t i = 0; i < N; i += 97) T_EQ(v[i * 4096 + 3], 'a' + i % BACKING);
    fl_env_close(env);
    return 0;
}
#endif

static void full_map(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct t_core *core = t_core_start(NULL);
    t_healthy_start(T_HEALTHY_ALLOCATES);
    t_healthy_advances("the healthy component's first rounds");

    struct fl_env *mgr = t_env();
    fl_cap backing;
    unsigned char *b = t_ram_pages(mgr, BACKING, 'a', &backing);
    T_ERR(fl_detach(mgr, b), 0);
    struct t_mm mm;
    t_mm_create(&mm, mgr, (size_t)N * 4096, 0);
    fl_cap rm = mm.rm;
    struct fl_session_info before;
    T_ERR(fl_env_session_info(mgr, &before), 0);

    for (size_t i = 0; i < N; i++) {
        struct fl_attr a = {.size = 4096,
                            .offset = (i % BACKING) * 4096,
                            .use_at = true,
                            .at = i * 4096,
                            .writeable = true};
        struct fl_range r;
        T_ERR(fl_region_map_attach(mgr, rm, backing, &a, &r), 0);
        T_EQ(r.start, i * 4096);
        if (i % 20000 == 19999) t_healthy_advances("attachments piling up");
    }
    struct fl_session_info full;
    T_ERR(fl_env_session_info(mgr, &full), 0);
    T_EQ(full.ram_used, before.ram_used + (uint64_t)N * FL_COST_REGION);
    T_EQ(full.cap_used, before.cap_used);

    /* Full: no room anywhere, and every page is taken. */
    struct fl_attr any = {.size = 4096};
    T_ERR(fl_region_map_attach(mgr, rm, backing, &any, NULL), -FL_E_REGION_CONFLICT);
    struct fl_attr last = {.size = 4096, .use_at = true, .at = (uintptr_t)(N - 1) * 4096};
    T_ERR(fl_region_map_attach(mgr, rm, backing, &last, NULL), -FL_E_REGION_CONFLICT);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, rm, &f), 0);
    T_EQ(f.type, FL_FAULT_NONE);
    t_healthy_advances("a full region map");

#ifdef CLIENT
    T_EQ(t_wait(t_spawn(client_main, (void *)t_mm_export(&mm))), 0);
    t_healthy_advances("a client of the full map");
#endif

    /* Detaches in the middle, and attaching there again. */
    for (size_t i = N / 2; i < N / 2 + 100; i++)
        T_ERR(fl_region_map_detach(mgr, rm, i * 4096 + 100), 0);
    T_ERR(fl_region_map_attach(mgr, rm, backing, &any, NULL), 0);
    struct fl_session_info mid;
    T_ERR(fl_env_session_info(mgr, &mid), 0);
    T_EQ(mid.ram_used, full.ram_used - 99 * FL_COST_REGION);

    T_ERR(fl_rm_destroy(mgr, mm.rms, rm), 0);
    struct fl_session_info after;
    T_ERR(fl_env_session_info(mgr, &after), 0);
    T_EQ(after.ram_used, before.ram_used); /* the map's own charge is its RM session's */
    t_healthy_advances("destroying the full map");
    /* The RM session's quota goes back to the PD session at its close. */
    T_ERR(fl_rm_session_close(mgr, mm.rms), 0);
    T_ERR(fl_env_session_info(mgr, &after), 0);
    T_EQ(after.ram_used, before.ram_used - FL_RM_SESSION_RAM_QUOTA);
    T_EQ(after.cap_used, before.cap_used - FL_RM_SESSION_CAP_QUOTA - FL_RM_SESSION_UPGRADE_CAPS);
    T_ERR(fl_ram_free(mgr, backing), 0);
    fl_env_close(mgr);
    t_healthy_stop();
    T_EQ(t_core_stop(core), 0);
}

static const struct t_case cases[] = {
#ifdef CLIENT
    {"full_map_with_a_client", full_map},
#else
    T_CASE(full_map),
#endif
};
T_MAIN(cases)
