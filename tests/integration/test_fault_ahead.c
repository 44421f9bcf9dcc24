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

static struct t_pipe tokens;

static int manager(void *arg)
{
    (void)arg;
    struct fl_env *env = t_env();
    fl_cap rm, sigh, mds, ram;
    T_ERR(fl_rm_create(env, 4 * MIB, &rm), 0);
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(env, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(env, rm, &mds), 0);
    T_ERR(fl_ram_alloc(env, WINDOW, &ram), 0);
    unsigned char *p = fl_attach(env, ram, NULL);
    T_ASSERT(p);
    for (size_t off = 0; off < WINDOW; off += 4096) p[off + 7] = (unsigned char)(off >> 12);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, mds, token), 0);
    t_pipe_send(&tokens, token);
    for (bool attached = false;;) {
        T_ASSERT(fl_signal_wait(env, sigh, -1) > 0);
        struct fl_fault f;
        T_ERR(fl_region_map_fault(env, rm, &f), 0);
        if (f.type != FL_FAULT_NONE && f.addr < WINDOW && !attached) {
            attached = true;
            struct fl_attr a = {.use_at = true, .at = 0, .size = WINDOW, .writeable = true};
            T_ERR(fl_region_map_attach(env, rm, ram, &a, NULL), 0);
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

int main(void)
{
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&tokens);
    pid_t mgr = t_spawn(manager, NULL);
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);
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

    kill(mgr, SIGKILL);
    t_wait(mgr);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
