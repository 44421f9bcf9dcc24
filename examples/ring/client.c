/*
 * A client of ring: the producer writes COUNT numbered messages into the
 * shared ring, the consumer reads and checks each. Neither knows the buffer
 * is managed; the only channel between them is the memory they share.
 *
 * usage: ring-client producer|consumer TOKEN COUNT
 */
#include <faultline/faultline.h>

#include "ring.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Waiting for the other side: yield first, then sleep a little, so that a
 * slow peer (ASan, a busy CI machine) does not cost a core. */
static void backoff(unsigned *spins)
{
    if (++*spins < 1000)
        sched_yield();
    else
        nanosleep(&(struct timespec){.tv_nsec = 50000}, NULL);
}

static void message(uint64_t seq, char text[48])
{
    snprintf(text, 48, "message %llu", (unsigned long long)seq);
}

static int produce(struct ring *ring, uint64_t count)
{
    for (uint64_t i = 0; i < count; i++) {
        unsigned spins = 0;
        while (i - atomic_load_explicit(&ring->tail, memory_order_acquire) >= RING_SLOTS)
            backoff(&spins);
        struct ring_slot *s = &ring->slot[i % RING_SLOTS];
        s->seq = i;
        message(i, s->text);
        s->sum = ring_sum(s->text);
        atomic_store_explicit(&ring->head, i + 1, memory_order_release);
    }
    printf("producer: wrote %llu messages\n", (unsigned long long)count);
    return 0;
}

static int consume(struct ring *ring, uint64_t count)
{
    uint64_t bad = 0;
    for (uint64_t i = 0; i < count; i++) {
        unsigned spins = 0;
        while (atomic_load_explicit(&ring->head, memory_order_acquire) == i) backoff(&spins);
        const struct ring_slot *s = &ring->slot[i % RING_SLOTS];
        char want[48];
        message(i, want);
        if (s->seq != i || strcmp(s->text, want) || s->sum != ring_sum(want)) {
            if (bad++ < 5)
                printf("consumer: slot %llu holds seq %llu \"%.47s\", want \"%s\"\n",
                       (unsigned long long)(i % RING_SLOTS), (unsigned long long)s->seq, s->text,
                       want);
        }
        atomic_store_explicit(&ring->tail, i + 1, memory_order_release);
    }
    printf("consumer: read %llu messages, %llu wrong\n", (unsigned long long)count,
           (unsigned long long)bad);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "producer") && strcmp(argv[1], "consumer"))) {
        fprintf(stderr, "usage: ring-client producer|consumer TOKEN COUNT\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    uint64_t count = strtoull(argv[3], NULL, 0);
    struct fl_env *env;
    fl_cap ds;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_cap_import(env, argv[2], &ds)) < 0) return fl_perror("import", r);
    struct ring *ring = fl_attach(env, ds, &r);
    if (!ring) return fl_perror("attach", r);
    int status = argv[1][0] == 'p' ? produce(ring, count) : consume(ring, count);
    fl_env_close(env);
    return status;
}
