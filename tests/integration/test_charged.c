/*
 * Every byte core keeps for a session is paid from that session's quota.
 * One session grows each kind of object core keeps for it by 10,000, and
 * core's resident memory may grow by no more than what the session was
 * charged for them: RAM quota for the metadata core keeps, and for each
 * capability FL_COST_CAP_COVERS bytes (the slot and the object's header: what a
 * capability stands for; doc/limits.md). A dataspace's own memory lives in
 * its memfd, not in core's heap, so it does not count here.
 *
 * Before, imported capabilities and dataspace() slots cost nothing, and an
 * attachment's charge (128 bytes) was a fraction of what core kept for it.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <unistd.h>

#define N      10000
#define K      1024ll
#define COVERS FL_COST_CAP_COVERS

static struct t_core *core;
static struct fl_env *env;
static struct fl_session_info last;
static long rss_last;

static long rss_bytes(void)
{
    return t_core_status_kb(core, "VmRSS") * 1024;
}

static void start(void)
{
    T_ERR(fl_env_session_info(env, &last), 0);
    rss_last = rss_bytes();
}

/* Core's growth since start() against the charges (less content_ram, which
 * lives in memfds). */
static void check(const char *kind, long long content_ram)
{
    struct fl_session_info now;
    T_ERR(fl_env_session_info(env, &now), 0);
    long grew = rss_bytes() - rss_last;
    long long ram = (long long)(now.ram_used - last.ram_used) - content_ram;
    long long caps = (long long)(now.cap_used - last.cap_used);
    long long paid = ram + caps * COVERS;
    printf("%-28s core grew %8ld bytes (%5.0f per object); charged %8lld RAM + %6lld caps = "
           "%8lld (%5.0f per object)\n",
           kind, grew, (double)grew / N, ram, caps, paid, (double)paid / N);
    /* The allocator's own slack: 64 KiB over 10,000 objects. */
    if (grew > paid + 64 * K)
        T_FAILF("%s: core grew by %ld bytes, %lld more than was charged", kind, grew, grew - paid);
}

/* Each kind in a core of its own (a case of its own): memory another kind
 * freed would be reused and hide the growth. */
static fl_cap w, rms;
static void fresh_core(void)
{
#if defined(__SANITIZE_ADDRESS__)
    /* Under ASan core's memory is ASan's too (redzones, quarantine, shadow):
     * its growth says nothing about what core keeps. */
    t_skip("core is built with AddressSanitizer");
#endif
    core = t_core_start("--cap-quota", "100000", NULL);
    env = t_env();
    /* Warm up each path once, so first-use allocations are not counted. */
    fl_cap wrms, wrm, wsig, wds;
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_ram_alloc(env, 4096, &w), 0);
    T_ERR(fl_rm_session_open(env, &rms), 0);
    T_ERR(fl_rm_session_open(env, &wrms), 0);
    T_ERR(fl_rm_create(env, wrms, 4096, &wrm), 0);
    T_ERR(fl_region_map_dataspace(env, wrm, &wds), 0);
    T_ERR(fl_signal_context_create(env, &wsig), 0);
    T_ERR(fl_cap_export(env, w, token), 0);
    T_ERR(fl_cap_import(env, token, &wds), 0);
    start();
}

static void finish(void)
{
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

static fl_cap caps[N];

static void ram_dataspaces(void)
{
    fresh_core();
    for (int i = 0; i < N; i++) T_ERR(fl_ram_alloc(env, 4096, &caps[i]), 0);
    check("RAM dataspaces (4 KiB)", (long long)N * 4096);
    finish();
}

/* Attachments into a managed map nobody has attached: metadata only. */
static void attachments(void)
{
    fresh_core();
    fl_cap rm;
    T_ERR(fl_rm_create(env, rms, (size_t)N * 4096, &rm), 0);
    start();
    for (int i = 0; i < N; i++) {
        struct fl_attr a = {.size = 4096, .use_at = true, .at = (uintptr_t)i * 4096};
        struct fl_range r;
        T_ERR(fl_region_map_attach(env, rm, w, &a, &r), 0);
    }
    check("attachments (managed map)", 0);
    finish();
}

/* Backed mappings: a dataspace each, attached to the own address space
 * (mapped by its agent), and touched. */
static void backed_mappings(void)
{
    fresh_core();
    for (int i = 0; i < N; i++) {
        volatile char *p = t_ram(env, 4096, &caps[i]);
        p[0] = 1;
    }
    check("backed 4 KiB mappings", (long long)N * 4096);
    finish();
}

/* Maps with their dataspace capabilities, from one RM session: what the
 * session's upgrades took from the PD session pays for them. */
static void region_maps(void)
{
    fresh_core();
    for (int i = 0; i < N; i++) {
        fl_cap ds;
        T_ERR(fl_rm_create(env, rms, 4096, &caps[i]), 0);
        T_ERR(fl_region_map_dataspace(env, caps[i], &ds), 0);
    }
    check("region maps", 0);
    finish();
}

static void rm_sessions(void)
{
    fresh_core();
    for (int i = 0; i < N; i++) T_ERR(fl_rm_session_open(env, &caps[i]), 0);
    check("RM sessions", 0);
    finish();
}

static void signal_contexts(void)
{
    fresh_core();
    for (int i = 0; i < N; i++) T_ERR(fl_signal_context_create(env, &caps[i]), 0);
    check("signal contexts", 0);
    finish();
}

static char tokens[N][FL_TOKEN_LEN + 1];

static void export_tokens(void)
{
    fresh_core();
    for (int i = 0; i < N; i++) T_ERR(fl_cap_export(env, w, tokens[i]), 0);
    check("export tokens", 0);
    finish();
}

/* The tokens' imports by another session. */
static void imported_capabilities(void)
{
    fresh_core();
    for (int i = 0; i < N; i++) T_ERR(fl_cap_export(env, w, tokens[i]), 0);
    struct fl_env *exporter = env;
    env = t_env();
    start();
    for (int i = 0; i < N; i++) T_ERR(fl_cap_import(env, tokens[i], &caps[i]), 0);
    check("imported capabilities", 0);
    fl_env_close(exporter);
    finish();
}

T_CASES(ram_dataspaces, attachments, backed_mappings, region_maps, rm_sessions, signal_contexts,
        export_tokens, imported_capabilities)
