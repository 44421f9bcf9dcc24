/*
 * Threads and the kernel: many client threads faulting on distinct pages and
 * on the same page of a managed dataspace are all resolved (duplicate fault
 * messages for one page are dropped, every queued faulter is woken by the
 * attach that covers it); and a read(2) whose buffer lies in unbacked managed
 * memory faults inside the kernel, is reflected like any other touch, and
 * completes once the manager attached memory; so does a write(2) from it.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#define SIZE    (1u << 20)
#define THREADS 8

/* A lazy manager in its own process: 4 KiB chunks, filled with their offset. */
static int manager(struct t_child *c)
{
    struct fl_env *env = t_env();
    struct t_mm mm;
    t_mm_create(&mm, env, SIZE, T_MM_HANDLER);
    t_child_say(c, "%s", t_mm_export(&mm));
    fl_cap backing;
    uint32_t *b = t_ram(env, SIZE, &backing);
    for (size_t i = 0; i < SIZE / 4; i++) b[i] = (uint32_t)(i * 4);
    for (;;) {
        long n = fl_signal_wait(env, mm.sigh, -1);
        T_ASSERT(n > 0);
        t_mm_serve(&mm, backing, NULL);
    }
    return 0;
}

struct fixture {
    struct t_core *core;
    struct t_child mgr;
    struct fl_env *env;
    char *start; /* the managed dataspace, attached */
};

static void setup(struct fixture *x)
{
    x->core = t_core_start(NULL);
    t_child_spawn(&x->mgr, "manager", manager);
    char token[64];
    t_child_line(&x->mgr, token, sizeof(token));
    x->env = t_env();
    fl_cap mds;
    T_ERR(fl_cap_import(x->env, token, &mds), 0);
    struct fl_attr a = {.writeable = true};
    struct fl_range r;
    T_ERR(fl_region_map_attach(x->env, fl_env_address_space(x->env), mds, &a, &r), 0);
    T_EQ(r.num_bytes, SIZE);
    x->start = (char *)r.start;
}

static void teardown(struct fixture *x)
{
    fl_env_close(x->env);
    kill(x->mgr.pid, SIGKILL);
    t_wait(x->mgr.pid);
    T_EQ(t_core_stop(x->core), 0);
}

/* A syscall into unbacked managed memory: the kernel's copy faults. */
static void syscalls_into_unbacked_memory(void)
{
    struct fixture x;
    setup(&x);
    int p[2];
    T_ASSERT(pipe(p) == 0);
    const char msg[] = "through the kernel";
    T_ASSERT(write(p[1], msg, sizeof(msg)) == (ssize_t)sizeof(msg));
    char *last = x.start + SIZE - 4096;
    T_EQ(read(p[0], last + 100, sizeof(msg)), sizeof(msg));
    T_ASSERT(!strcmp(last + 100, msg));
    T_EQ(((uint32_t *)last)[0], SIZE - 4096); /* the rest of the page is the manager's */
    /* And the other way: write(2) from an unbacked managed page. */
    char *src = x.start + SIZE - 2 * 4096;
    T_EQ(write(p[1], src, 8), 8);
    uint32_t got[2];
    T_EQ(read(p[0], got, sizeof(got)), sizeof(got));
    T_EQ(got[0], SIZE - 2 * 4096);
    T_EQ(got[1], SIZE - 2 * 4096 + 4);
    teardown(&x);
}

static uint32_t *buf;

static void *toucher(void *arg)
{
    long id = (long)arg;
    /* Every thread touches page 0 (the same page) and its own pages. */
    if (buf[0] != 0) return (void *)1;
    for (size_t page = 1 + (size_t)id; page < SIZE / 4096; page += THREADS)
        if (buf[page * 1024 + 7] != page * 4096 + 28) return (void *)1;
    return NULL;
}

static void threads_on_same_and_distinct_pages(void)
{
    struct fixture x;
    setup(&x);
    buf = (uint32_t *)x.start;
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        T_ASSERT(pthread_create(&t[i], NULL, toucher, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++) {
        void *res;
        pthread_join(t[i], &res);
        T_ASSERT(res == NULL);
    }
    teardown(&x);
}

T_CASES(syscalls_into_unbacked_memory, threads_on_same_and_distinct_pages)
