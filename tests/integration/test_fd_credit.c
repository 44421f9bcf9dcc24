/*
 * Descriptors in flight: core sends each memfd to a session once, and a
 * session may hold at most a credit of them unacknowledged. Mappings that
 * need more wait for the agent's acknowledgements (their faults are served
 * after them); a peer that stops reading while core keeps mapping new
 * dataspaces into it loses its session once it has acknowledged none for the
 * revocation deadline; the manager's attaches and a healthy client of the
 * same memory carry on, and an honest client whose one attach needs more
 * descriptors than the credit keeps its session.
 *
 * Root would hide the kernel's own limit on descriptors in flight (it counts
 * against the sending user, and root is exempt), so core and the stuck peer
 * run as another uid.
 */
#include "harness.h"

#include <signal.h>
#include <unistd.h>

#define UID   65534
#define PAGES 100
#define MSIZE (PAGES * 4096)

static void stuck_peer_loses_its_session(void)
{
    t_need_root("to run core and the stuck peer as another uid");
    setenv("FL_TEST_CORE_UID", "65534", 1);
    struct t_core *core = t_core_start(NULL);
    unsetenv("FL_TEST_CORE_UID");

    struct fl_env *mgr = t_env();
    struct t_mm mm;
    t_mm_create(&mm, mgr, MSIZE, 0);
    /* A peer that attaches the managed dataspace and then never reads again. */
    pid_t peer = t_stuck_peer(t_mm_export(&mm), UID);

    /* A healthy client of the same managed dataspace. */
    struct fl_env *client = t_env();
    unsigned char *view = t_import_attach(client, t_mm_export(&mm));

    /* Every attach makes a new memfd visible in both clients. */
    for (int i = 0; i < PAGES; i++) {
        fl_cap ds;
        unsigned char *p = t_ram(mgr, 4096, &ds);
        memset(p, i + 1, 4096);
        T_ERR(fl_detach(mgr, p), 0);
        t_mm_attach(&mm, ds, 0, 0, (uintptr_t)i * 4096);
    }
    T_WAIT_UNTIL(t_core_log_contains(core, "too many descriptors in flight"));
    for (int i = 0; i < PAGES; i++) T_EQ(view[i * 4096 + 17], i + 1);

    /* An honest client that attaches the whole map at once: its attach makes
     * PAGES memfds visible in one burst, more than the credit. The windows
     * beyond it are mapped as their faults come, after acknowledgements; the
     * session stays. */
    struct fl_env *late = t_env();
    unsigned char *lview = t_import_attach(late, t_mm_export(&mm));
    for (int i = 0; i < PAGES; i++) T_EQ(lview[i * 4096 + 17], i + 1);
    fl_cap more;
    T_ERR(fl_ram_alloc(late, 4096, &more), 0);
    T_EQ(t_core_log_count(core, "has acknowledged none"), 1); /* the stuck peer only */
    fl_env_close(late);

    kill(peer, SIGKILL);
    t_wait(peer);
    fl_env_close(client);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(stuck_peer_loses_its_session)
