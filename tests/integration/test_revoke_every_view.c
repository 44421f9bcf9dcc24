/*
 * A revocation reaches every attachment of a managed dataspace, not only the
 * first: one client attaches the managed dataspace twice, another once, and
 * all three views show the RAM inside it. Once the manager's detach of that
 * RAM returns, a read through any of the three views faults and is reflected
 * (three faulters queued, three signals), none reads the old bytes; after
 * the manager attaches fresh RAM, all three read that.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#define MAP_SIZE 0x10000u

/* ---- a client: views of the managed dataspace, reads in threads ---- */

static volatile unsigned char *views[2];
static struct t_child *self;

struct read_job {
    int view;
    size_t off;
};

static pthread_mutex_t say_lock = PTHREAD_MUTEX_INITIALIZER;

static void *reader(void *arg)
{
    struct read_job *j = arg;
    unsigned v = views[j->view][j->off];
    pthread_mutex_lock(&say_lock); /* one line at a time on the pipe */
    t_child_say(self, "view %d read %#x", j->view, v);
    pthread_mutex_unlock(&say_lock);
    free(j);
    return NULL;
}

static int client_main(struct t_child *c)
{
    self = c;
    struct fl_env *env = t_env();
    char line[256];
    t_child_command(c, line, sizeof(line)); /* "TOKEN N": attach it N times */
    char token[FL_TOKEN_LEN + 1];
    int n;
    T_ASSERT(sscanf(line, "%32s %d", token, &n) == 2 && n >= 1 && n <= 2);
    fl_cap ds;
    T_ERR(fl_cap_import(env, token, &ds), 0);
    for (int i = 0; i < n; i++) {
        int err = 0;
        views[i] = fl_attach(env, ds, &err);
        T_ERR(err, 0);
    }
    t_child_say(c, "attached");
    for (;;) {
        t_child_command(c, line, sizeof(line));
        struct read_job *j = calloc(1, sizeof(*j));
        T_ASSERT(j);
        if (sscanf(line, "read %d %zi", &j->view, &j->off) != 2) {
            free(j);
            break;
        }
        /* A read that faults waits; the next command may come meanwhile. */
        pthread_t t;
        T_EQ(pthread_create(&t, NULL, reader, j), 0);
        pthread_detach(t);
    }
    fl_env_close(env);
    return 0;
}

/* ---- the manager (this process) ---- */

static struct t_mm mm;

/* The view's read must fault: a signal comes, and no client says anything. */
static void expect_fault(struct t_child *c, int view, struct t_child *all[2])
{
    t_child_send(c, "read %d 0x5", view);
    char after[96];
    snprintf(after, sizeof(after), "the detach (%s view %d was to fault)", c->name, view);
    t_expect_signal_first(mm.env, mm.sigh, all, 2, after);
    T_EQ(fl_signal_wait(mm.env, mm.sigh, 0), 1);
}

static void every_view_revoked(void)
{
    struct t_core *core = t_core_start(NULL);
    t_mm_create(&mm, t_env(), MAP_SIZE, T_MM_HANDLER);
    struct fl_env *mgr = mm.env;
    fl_cap old, fresh;
    unsigned char *o = t_ram(mgr, 4096, &old), *n = t_ram(mgr, 4096, &fresh);
    memset(o, 0x11, 4096);
    memset(n, 0x22, 4096);
    struct fl_attr at0 = {.use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(mgr, mm.rm, old, &at0, NULL), 0);

    /* A attaches it twice, B once. */
    struct t_child clients[2], *a = &clients[0], *b = &clients[1];
    struct t_child *all[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        t_child_spawn(all[i], i ? "client B" : "client A", client_main);
        t_child_send(all[i], "%s %d", t_mm_export(&mm), 2 - i);
        t_child_expect(all[i], "attached");
    }

    /* All three views show the old RAM. */
    t_child_send(a, "read 0 0x5");
    t_child_expect(a, "view 0 read 0x11");
    t_child_send(a, "read 1 0x5");
    t_child_expect(a, "view 1 read 0x11");
    t_child_send(b, "read 0 0x5");
    t_child_expect(b, "view 0 read 0x11");

    /* Detached: every view faults, each one a faulter of its own. */
    T_ERR(fl_region_map_detach(mgr, mm.rm, 0), 0);
    expect_fault(a, 0, all);
    expect_fault(a, 1, all);
    expect_fault(b, 0, all);
    struct fl_fault f;
    T_ERR(fl_region_map_fault(mgr, mm.rm, &f), 0);
    T_EQ(f.type, FL_FAULT_READ);
    T_EQ(f.addr & ~0xfffu, 0);
    t_child_silent(a);
    t_child_silent(b);

    /* Fresh RAM there: all three read it. */
    T_ERR(fl_region_map_attach(mgr, mm.rm, fresh, &at0, NULL), 0);
    char l1[64], l2[64];
    t_child_line(a, l1, sizeof(l1));
    t_child_line(a, l2, sizeof(l2));
    if ((strcmp(l1, "view 0 read 0x22") && strcmp(l2, "view 0 read 0x22")) ||
        (strcmp(l1, "view 1 read 0x22") && strcmp(l2, "view 1 read 0x22")))
        T_FAILF("client A said \"%s\" and \"%s\"", l1, l2);
    t_child_expect(b, "view 0 read 0x22");
    t_mm_expect_fault(&mm, FL_FAULT_NONE, 0);
    T_EQ(o[5], 0x11); /* the old RAM was never written */

    t_child_exit(a);
    t_child_exit(b);
    fl_env_close(mgr);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(every_view_revoked)
