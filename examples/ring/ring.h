/*
 * The layout of the ring buffer that examples/ring's producer and consumer
 * share through one managed dataspace. Each index has a cache line of its
 * own, so that producer and consumer do not fight over one line.
 */
#ifndef FL_EXAMPLE_RING_H
#define FL_EXAMPLE_RING_H

#include <stdatomic.h>
#include <stdint.h>

#define RING_SIZE  (64 * 1024)
#define RING_SLOTS 512

struct ring_slot {
    uint64_t seq;
    uint64_t sum; /* of text, so a torn or stale slot shows */
    char text[48];
};

struct ring {
    _Atomic uint64_t head; /* messages written; only the producer stores */
    char pad0[56];
    _Atomic uint64_t tail; /* messages read; only the consumer stores */
    char pad1[56];
    struct ring_slot slot[RING_SLOTS];
};

_Static_assert(sizeof(struct ring) <= RING_SIZE, "the ring fits its dataspace");

static inline uint64_t ring_sum(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

#endif
