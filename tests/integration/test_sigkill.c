/*
 * A component killed with SIGKILL in the middle of things: core notices the
 * dead peer and releases everything its session held (dataspaces and their
 * memfds, signal contexts and their eventfds, region maps, its uffd, socket
 * and pidfd). Core's descriptor count returns to its baseline, its shared
 * memory too, and a session opened before the kill keeps working; what that
 * session imported from the dead one is gone.
 */
#include "harness.h"

#include <signal.h>
#include <sys/mman.h>
#include <stdint.h>
#include <unistd.h>

#define MIB   (1024ul * 1024)
#define NDS   8
#define NSIGS 4

static struct t_core *core;
static long deadline;

/* Polled by T_WAIT_UNTIL: the core's descriptor count is want (fails the
 * test with the numbers once the deadline passed). */
static int fds_are(int want, const char *what)
{
    int n = t_core_fd_count(core);
    if (n == want) return 1;
    if (t_now_ms() > deadline) T_FAILF("%s: core has %d descriptors, expected %d", what, n, want);
    return 0;
}

static int shmem_near(long base, long tolerance_kb)
{
    long v = t_core_status_kb(core, "RssShmem");
    if (v >= 0 && v <= base + tolerance_kb) return 1;
    if (t_now_ms() > deadline) T_FAILF("core's RssShmem is %ld kB, baseline %ld kB", v, base);
    return 0;
}

/* How many pages of [addr, addr+len) are in the page cache of the file the
 * range maps: for a memfd, whether its memory still exists at all. */
static int resident_pages(uintptr_t addr, size_t len)
{
    static unsigned char vec[MIB / 4096 * 16];
    T_ASSERT(len / 4096 <= sizeof(vec));
    T_EQ(mincore((void *)addr, len, vec), 0);
    int n = 0;
    for (size_t i = 0; i < len / 4096; i++) n += vec[i] & 1;
    return n;
}

static int punched(uintptr_t addr, size_t len)
{
    int n = resident_pages(addr, len);
    if (n == 0) return 1;
    if (t_now_ms() > deadline) T_FAILF("%d pages of the dead component's dataspace still exist", n);
    return 0;
}

static int victim(struct t_child *c)
{
    struct fl_env *env = t_env();
    fl_cap ds[NDS], sig[NSIGS], rms, rm, rm_ds;
    uint8_t *p[NDS];
    int err;
    for (int i = 0; i < NDS; i++) {
        p[i] = t_ram(env, MIB, &ds[i]);
        memset(p[i], 0x30 + i, MIB); /* touch every page */
    }
    for (int i = 0; i < NSIGS; i++) T_ERR(fl_signal_context_create(env, &sig[i]), 0);
    /* A managed map with two of the dataspaces in it, attached itself; and a
     * fault handler on it. */
    T_ERR(fl_rm_session_open(env, &rms), 0);
    T_ERR(fl_rm_create(env, rms, 4 * MIB, &rm), 0);
    struct fl_attr a = {.writeable = true};
    T_ERR(fl_region_map_attach(env, rm, ds[0], &a, NULL), 0);
    T_ERR(fl_region_map_attach(env, rm, ds[1], &a, NULL), 0);
    T_ERR(fl_region_map_fault_handler(env, rm, sig[0]), 0);
    T_ERR(fl_region_map_dataspace(env, rm, &rm_ds), 0);
    uint8_t *m = fl_attach(env, rm_ds, &err);
    T_ERR(err, 0);
    T_EQ(m[0], 0x30);
    T_EQ(m[MIB], 0x31);
    /* Pending signals, an unused export, and one for the survivor. */
    T_ERR(fl_signal_submit(env, sig[1]), 0);
    T_ERR(fl_signal_submit(env, sig[1]), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, ds[7], token), 0);
    T_ERR(fl_cap_export(env, ds[2], token), 0);
    t_child_say(c, "%s", token);
    t_child_say(c, "ready");
    /* Wait to be killed: a read that never completes (no sleeping). */
    char line[8];
    t_child_command(c, line, sizeof(line));
    return 0;
}

static void everything_released(void)
{
    signal(SIGPIPE, SIG_IGN);
    core = t_core_start(NULL);

    /* Warm-up: one session opened and closed. It costs core four descriptors
     * (socket, uffd, pidfd, and the memfd of its dataspace), all returned
     * after the close (uffd and memfd asynchronously, by the worker). */
    struct fl_env *warm = t_env();
    fl_cap wds;
    T_ERR(fl_ram_alloc(warm, 4096, &wds), 0);
    int with_warm = t_core_fd_count(core);
    T_ASSERT(with_warm > 4);
    fl_env_close(warm);
    deadline = t_now_ms() + 10000;
    T_WAIT_UNTIL(fds_are(with_warm - 4, "after the warm-up session"));
    const int baseline = with_warm - 4;
    const long shmem_base = t_core_status_kb(core, "RssShmem");
    T_ASSERT(shmem_base >= 0);

    /* A session that lives through the kill. */
    struct fl_env *survivor = t_env();
    fl_cap sds;
    T_ERR(fl_ram_alloc(survivor, 64 * 1024, &sds), 0);
    uint8_t *sp = fl_attach(survivor, sds, NULL);
    T_ASSERT(sp != NULL);
    memset(sp, 0x99, 64 * 1024);
    const int with_survivor = t_core_fd_count(core);
    T_EQ(with_survivor, baseline + 4);

    struct t_child vc;
    t_child_spawn(&vc, "victim", victim);
    pid_t pid = vc.pid;
    char token[64];
    t_child_line(&vc, token, sizeof(token));
    T_EQ(strlen(token), FL_TOKEN_LEN);
    t_child_expect(&vc, "ready");

    /* The survivor holds one of the victim's dataspaces, attached. */
    fl_cap borrowed;
    T_ERR(fl_cap_import(survivor, token, &borrowed), 0);
    struct fl_range br;
    struct fl_attr ra = {.writeable = false};
    T_ERR(fl_region_map_attach(survivor, fl_env_address_space(survivor), borrowed, &ra, &br), 0);
    T_EQ(br.num_bytes, MIB);
    T_EQ(((volatile uint8_t *)br.start)[0], 0x32);
    T_EQ(((volatile uint8_t *)br.start)[MIB - 1], 0x32);

    /* The victim touched all of it: all of it exists. */
    T_EQ(resident_pages(br.start, MIB), MIB / 4096);

    /* The victim's session: 3 descriptors, 8 memfds, 4 eventfds at least. */
    const int with_victim = t_core_fd_count(core);
    T_ASSERT(with_victim >= with_survivor + 3 + NDS + NSIGS);

    T_EQ(kill(pid, SIGKILL), 0);
    T_EQ(t_wait(pid), 128 + SIGKILL);

    /* Core releases everything: back to the descriptors before the victim. */
    deadline = t_now_ms() + 10000;
    T_WAIT_UNTIL(fds_are(with_survivor, "after the victim was killed"));
    deadline = t_now_ms() + 10000;
    T_WAIT_UNTIL(shmem_near(shmem_base, 256));
    /* Core maps no dataspace itself, so its RssShmem says little; the memory
     * of the victim's dataspace is punched even though the survivor still has
     * it attached (the region is reserved, its mapping revoked). */
    deadline = t_now_ms() + 10000;
    T_WAIT_UNTIL(punched(br.start, MIB));
    /* and said so, naming the victim */
    char comm[32], text[96];
    T_EQ(t_proc_line(comm, sizeof(comm), "/proc/self/comm"), 0);
    snprintf(text, sizeof(text), "(pid %d (%s)) closed", (int)pid, comm);
    T_ASSERT(t_core_log_contains(core, text));

    /* The survivor: what it imported died with its owner, its own things did not. */
    size_t sz;
    T_ERR(fl_dataspace_size(survivor, borrowed, &sz), -FL_E_INVALID_DATASPACE);
    T_ERR(fl_region_map_detach(survivor, fl_env_address_space(survivor), br.start), 0);
    T_EQ(sp[0], 0x99);
    T_EQ(sp[64 * 1024 - 1], 0x99);
    T_ERR(fl_dataspace_size(survivor, sds, &sz), 0);
    T_EQ(sz, 64 * 1024);
    fl_cap nds;
    T_ERR(fl_ram_alloc(survivor, 8 * MIB, &nds), 0);
    int err;
    uint8_t *np = fl_attach(survivor, nds, &err);
    T_ERR(err, 0);
    for (size_t i = 0; i < 8 * MIB; i += 4096) T_EQ(np[i], 0); /* fresh, zeroed memory */
    memset(np, 0x42, 8 * MIB);
    T_EQ(np[8 * MIB - 1], 0x42);
    T_ERR(fl_detach(survivor, np), 0);
    T_ERR(fl_ram_free(survivor, nds), 0);
    struct fl_session_info info;
    T_ERR(fl_env_session_info(survivor, &info), 0);
    T_ASSERT(info.ram_used >= 64 * 1024 && info.ram_used < 64 * 1024 + 4096);
    /* Its own dataspace, and the slot of the dead import until it lets go. */
    T_EQ(info.cap_used, 2);
    T_ERR(fl_cap_release(survivor, borrowed), 0);
    T_ERR(fl_env_session_info(survivor, &info), 0);
    T_EQ(info.cap_used, 1);

    /* A new session after the kill works as well. */
    struct fl_env *late = t_env();
    t_session_works(late, 1, 1);
    fl_env_close(late);

    T_ERR(fl_detach(survivor, sp), 0);
    T_ERR(fl_ram_free(survivor, sds), 0);
    fl_env_close(survivor);
    deadline = t_now_ms() + 10000;
    T_WAIT_UNTIL(fds_are(baseline, "after every session closed"));
    T_EQ(t_core_stop(core), 0);
}

T_CASES(everything_released)
