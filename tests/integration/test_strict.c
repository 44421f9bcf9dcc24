/*
 * --strict: a client that kept the memfd of memory it was once given (a
 * component that subverts its own runtime can: its agent holds it) loses it
 * when the memory is detached, although the dataspace lives on. Core moves
 * the dataspace to a fresh memfd and punches the old one before detach
 * returns; every legitimate holder -- the manager's own attachment, the
 * client's window once the memory is attached again -- sees the moved
 * content, and later writes, through the fresh memfd.
 *
 * The same steps without --strict show what the option is for: the kept
 * mapping then still shows the manager's later writes.
 */
#include "harness.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

static int client_main(struct t_child *c)
{
    struct fl_env *env = t_env();
    char line[256];
    volatile char *p = NULL, *kept = NULL;
    for (;;) {
        t_child_command(c, line, sizeof(line));
        if (!strncmp(line, "import ", 7)) {
            p = t_import_attach(env, line + 7);
            t_child_say(c, "read %s", (const char *)p);
        } else if (!strcmp(line, "read")) {
            t_child_say(c, "read %s", (const char *)p);
        } else if (!strcmp(line, "keep")) {
            /* What a subverted runtime can do: keep the agent's memfd. */
            int fd = -1;
            T_ASSERT(t_proc_fds_with(0, "memfd:faultline-ds", &fd, 1) >= 1);
            T_ASSERT((fd = dup(fd)) >= 0);
            kept = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
            T_ASSERT(kept != MAP_FAILED);
            t_child_say(c, "kept %s", (const char *)kept);
        } else if (!strcmp(line, "peek")) {
            t_child_say(c, "peek %s", (const char *)kept);
        } else if (!strcmp(line, "exit")) {
            break;
        }
    }
    fl_env_close(env);
    return 0;
}

static void run(bool strict)
{
    struct t_core *core = strict ? t_core_start("--strict", NULL) : t_core_start(NULL);
    struct fl_env *m = t_env();
    struct t_mm mm;
    t_mm_create(&mm, m, 1 << 20, 0);
    fl_cap ds;
    char *local = t_ram(m, 2 * 4096, &ds);
    strcpy(local, "before");
    t_mm_attach(&mm, ds, 0, 0, 0);

    struct t_child c;
    t_child_spawn(&c, "client", client_main);
    t_child_send(&c, "import %s", t_mm_export(&mm));
    t_child_expect(&c, "read before");
    t_child_send(&c, "keep");
    t_child_expect(&c, "kept before");

    /* The detach; the dataspace lives on, and the manager writes on. */
    T_ERR(fl_region_map_detach(m, mm.rm, 0), 0);
    T_ASSERT(!strcmp(local, "before")); /* moved, not lost, for its owner */
    strcpy(local, "after");
    t_child_send(&c, "peek");
    t_child_expect(&c, strict ? "peek " : "peek after");

    /* Attached again: the client's window shows the dataspace as it is now. */
    t_mm_attach(&mm, ds, 0, 0, 0);
    t_child_send(&c, "read");
    t_child_expect(&c, "read after");

    t_child_send(&c, "exit");
    T_EQ(t_wait(c.pid), 0);
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
}

static void kept_memfd_without_strict(void)
{
    run(false);
}

static void kept_memfd_with_strict(void)
{
    run(true);
}

T_CASES(kept_memfd_without_strict, kept_memfd_with_strict)
