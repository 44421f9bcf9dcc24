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

#include <dirent.h>
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
            DIR *d = opendir("/proc/self/fd");
            struct dirent *e;
            int fd = -1;
            while (fd < 0 && (e = readdir(d))) {
                char path[300], target[256];
                snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
                ssize_t n = readlink(path, target, sizeof(target) - 1);
                if (n < 0) continue;
                target[n] = 0;
                if (strstr(target, "memfd:faultline-ds")) fd = dup(atoi(e->d_name));
            }
            closedir(d);
            T_ASSERT(fd >= 0);
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
    fl_cap rm, mds, ds;
    T_ERR(fl_rm_create(m, 1 << 20, &rm), 0);
    T_ERR(fl_region_map_dataspace(m, rm, &mds), 0);
    T_ERR(fl_ram_alloc(m, 2 * 4096, &ds), 0);
    char *local = fl_attach(m, ds, NULL);
    T_ASSERT(local);
    strcpy(local, "before");
    struct fl_attr a = {.use_at = true, .at = 0, .writeable = true};
    T_ERR(fl_region_map_attach(m, rm, ds, &a, NULL), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(m, mds, token), 0);

    struct t_child c;
    t_child_spawn(&c, "client", client_main);
    t_child_send(&c, "import %s", token);
    t_child_expect(&c, "read before");
    t_child_send(&c, "keep");
    t_child_expect(&c, "kept before");

    /* The detach; the dataspace lives on, and the manager writes on. */
    T_ERR(fl_region_map_detach(m, rm, 0), 0);
    T_ASSERT(!strcmp(local, "before")); /* moved, not lost, for its owner */
    strcpy(local, "after");
    t_child_send(&c, "peek");
    t_child_expect(&c, strict ? "peek " : "peek after");

    /* Attached again: the client's window shows the dataspace as it is now. */
    T_ERR(fl_region_map_attach(m, rm, ds, &a, NULL), 0);
    t_child_send(&c, "read");
    t_child_expect(&c, "read after");

    t_child_send(&c, "exit");
    T_EQ(t_wait(c.pid), 0);
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
}

int main(void)
{
    run(false);
    run(true);
    return T_PASS;
}
