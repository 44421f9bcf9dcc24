/*
 * Fault-ahead: once a reflected fault is resolved and its thread resumed, the
 * client's agent fills the page tables of the rest of that window, up to
 * 2 MiB past the faulting page, so that a thread going on through the window
 * does not fault page by page. Seen from the client: after one read at the
 * start of a 3 MiB window, the pages up to 2 MiB become present without being
 * touched (read off /proc/self/pagemap), hold the manager's bytes, and the
 * page past 2 MiB stays absent.
 */
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#define MIB    (1024u * 1024u)
#define WINDOW (3 * MIB)
#define AHEAD  (2 * MIB)

static int manager(struct t_child *c)
{
    struct fl_env *env = t_env();
    struct t_mm mm;
    t_mm_create(&mm, env, 4 * MIB, T_MM_HANDLER);
    fl_cap ram;
    unsigned char *p = t_ram(env, WINDOW, &ram);
    for (size_t off = 0; off < WINDOW; off += 4096) p[off + 7] = (unsigned char)(off >> 12);
    t_child_say(c, "%s", t_mm_export(&mm));
    for (bool attached = false;;) {
        struct fl_fault f = t_mm_next_fault(&mm);
        if (f.type != FL_FAULT_NONE && f.addr < WINDOW && !attached) {
            attached = true;
            t_mm_attach(&mm, ram, 0, WINDOW, 0);
        }
    }
    return 0;
}

/* Whether the page at p has a page-table entry (bit 63 of its pagemap entry). */
static int present(const volatile void *p)
{
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    T_ASSERT(fd >= 0);
    uint64_t e = 0;
    off_t at = (off_t)((uintptr_t)p / 4096 * sizeof(e));
    T_EQ(pread(fd, &e, sizeof(e), at), (ssize_t)sizeof(e));
    close(fd);
    return (int)(e >> 63);
}

static void pages_ahead_filled(void)
{
    struct t_core *core = t_core_start(NULL);
    struct t_child mgr;
    t_child_spawn(&mgr, "manager", manager);
    char token[64];
    t_child_line(&mgr, token, sizeof(token));
    struct fl_env *env = t_env();
    volatile unsigned char *p = t_import_attach(env, token);
    T_ASSERT(p);

    T_ASSERT(!present(p + AHEAD - 4096));
    T_EQ(p[7], 0); /* reflected: the manager attaches the whole window */
    /* The agent fills the page tables after the wake: wait for the last page
     * of the 2 MiB, untouched by this thread. */
    T_WAIT_FOR(present(p + AHEAD - 4096), "the agent to fill the page tables 2 MiB ahead");
    T_ASSERT(present(p + MIB));
    T_ASSERT(!present(p + AHEAD + 4096));
    T_EQ(p[AHEAD - 4096 + 7], (unsigned char)((AHEAD - 4096) >> 12));
    T_EQ(p[WINDOW - 4096 + 7], (unsigned char)((WINDOW - 4096) >> 12));

    kill(mgr.pid, SIGKILL);
    t_wait(mgr.pid);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(pages_ahead_filled)
