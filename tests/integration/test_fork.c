/*
 * A child forked after any number of attaches inherits neither the window,
 * nor any dataspace mapped in it, nor a descriptor of one (the window and every
 * mapping are MADV_DONTFORK; the fork handler closes the descriptors).
 */
#include "harness.h"

#include <dirent.h>
#include <stdint.h>
#include <unistd.h>

struct span {
    uintptr_t lo, hi;
};

static int count_fds(const char *what)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        char path[300], link[256];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, link, sizeof(link) - 1);
        if (k <= 0) continue;
        link[k] = 0;
        n += strstr(link, what) != NULL;
    }
    closedir(d);
    return n;
}

static int child(void *arg)
{
    struct span *w = arg;
    /* No mapping of the parent's window may exist here. */
    FILE *f = fopen("/proc/self/maps", "r");
    T_ASSERT(f);
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) != 2) continue;
        if (lo < w->hi && hi > w->lo) {
            fprintf(stderr, "child still maps %s", line);
            return 1;
        }
    }
    fclose(f);
    /* No descriptor of a dataspace (or of the session). */
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], link[256];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n <= 0) continue;
        link[n] = 0;
        if (strstr(link, "faultline-ds") || strstr(link, "userfaultfd")) {
            fprintf(stderr, "child inherited fd %s -> %s\n", e->d_name, link);
            return 1;
        }
    }
    closedir(d);
    return 0;
}

int main(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *env = t_env();
    for (int i = 0; i < 20; i++) {
        fl_cap ds;
        T_ERR(fl_ram_alloc(env, 8192, &ds), 0);
        char *p = fl_attach(env, ds, NULL);
        T_ASSERT(p);
        memset(p, 0x5a, 8192);
        if (i % 3 == 0) T_ERR(fl_detach(env, p), 0);
    }
    /* The parent does hold them, so the child's check below can fail. */
    T_ASSERT(count_fds("faultline-ds") > 0);
    T_ASSERT(count_fds("userfaultfd") > 0);
    struct span w = {(uintptr_t)fl_env_window_base(env),
                     (uintptr_t)fl_env_window_base(env) + fl_env_window_size(env)};
    T_EQ(t_wait(t_spawn(child, &w)), 0);
    /* And the parent is unaffected. */
    fl_cap ds;
    T_ERR(fl_ram_alloc(env, 4096, &ds), 0);
    char *p = fl_attach(env, ds, NULL);
    T_ASSERT(p);
    p[0] = 7;
    T_EQ(p[0], 7);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
