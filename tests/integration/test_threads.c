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

static struct t_pipe tokens, done;

/* A lazy manager in its own process: 4 KiB chunks, filled with their offset. */
static int manager(void *arg)
{
    (void)arg;
    struct fl_env *env = t_env();
    fl_cap rm, sigh, mds;
    T_ERR(fl_rm_create(env, SIZE, &rm), 0);
    T_ERR(fl_signal_context_create(env, &sigh), 0);
    T_ERR(fl_region_map_fault_handler(env, rm, sigh), 0);
    T_ERR(fl_region_map_dataspace(env, rm, &mds), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, mds, token), 0);
    t_pipe_send(&tokens, token);
    fl_cap backing;
    T_ERR(fl_ram_alloc(env, SIZE, &backing), 0);
    uint32_t *b = fl_attach(env, backing, NULL);
    T_ASSERT(b);
    for (size_t i = 0; i < SIZE / 4; i++) b[i] = (uint32_t)(i * 4);
    for (;;) {
        long n = fl_signal_wait(env, sigh, -1);
        T_ASSERT(n > 0);
        struct fl_fault f;
        for (;;) {
            T_ERR(fl_region_map_fault(env, rm, &f), 0);
            if (f.type == FL_FAULT_NONE) break;
            uintptr_t at = f.addr & ~(uintptr_t)4095;
            struct fl_attr a = {
                .size = 4096, .offset = at, .use_at = true, .at = at, .writeable = true};
            T_ERR(fl_region_map_attach(env, rm, backing, &a, NULL), 0);
        }
    }
    return 0;
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

int main(void)
{
    struct t_core *core = t_core_start(NULL);
    t_pipe_open(&tokens);
    t_pipe_open(&done);
    pid_t mgr = t_spawn(manager, NULL);
    char token[64];
    T_EQ(t_pipe_recv(&tokens, token, sizeof(token)), 0);

    struct fl_env *env = t_env();
    fl_cap mds;
    T_ERR(fl_cap_import(env, token, &mds), 0);
    struct fl_attr a = {.writeable = true};
    struct fl_range r;
    T_ERR(fl_region_map_attach(env, fl_env_address_space(env), mds, &a, &r), 0);
    T_EQ(r.num_bytes, SIZE);

    /* A syscall into unbacked managed memory: the kernel's copy faults. */
    int p[2];
    T_ASSERT(pipe(p) == 0);
    const char msg[] = "through the kernel";
    T_ASSERT(write(p[1], msg, sizeof(msg)) == (ssize_t)sizeof(msg));
    char *last = (char *)r.start + SIZE - 4096;
    T_EQ(read(p[0], last + 100, sizeof(msg)), sizeof(msg));
    T_ASSERT(!strcmp(last + 100, msg));
    T_EQ(((uint32_t *)last)[0], SIZE - 4096); /* the rest of the page is the manager's */
    /* And the other way: write(2) from an unbacked managed page. */
    char *src = (char *)r.start + SIZE - 2 * 4096;
    T_EQ(write(p[1], src, 8), 8);
    uint32_t got[2];
    T_EQ(read(p[0], got, sizeof(got)), sizeof(got));
    T_EQ(got[0], SIZE - 2 * 4096);
    T_EQ(got[1], SIZE - 2 * 4096 + 4);

    buf = (uint32_t *)r.start;
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        T_ASSERT(pthread_create(&t[i], NULL, toucher, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++) {
        void *res;
        pthread_join(t[i], &res);
        T_ASSERT(res == NULL);
    }
    fl_env_close(env);
    kill(mgr, SIGKILL);
    t_wait(mgr);
    T_EQ(t_core_stop(core), 0);
    return T_PASS;
}
