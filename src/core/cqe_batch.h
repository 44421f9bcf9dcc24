/*
 * Taking completions off an io_uring in one go, for the loop's ring
 * (loop_uring.c) and the uffd reads' ring (uffd.c): callbacks may submit and
 * must not see the completion ring move under them, so what is there is
 * copied out and the ring advanced first.
 */
#ifndef FL_CORE_CQE_BATCH_H
#define FL_CORE_CQE_BATCH_H

#include <liburing.h>

#define CORE_CQE_BATCH 64

struct core_cqe {
    void *data;
    int res;
    unsigned flags;
};

/* Up to CORE_CQE_BATCH completions into out; returns how many. */
static inline unsigned core_cqe_batch(struct io_uring *ring, struct core_cqe *out)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(ring, head, cqe)
    {
        if (n == CORE_CQE_BATCH) break;
        out[n++] = (struct core_cqe){io_uring_cqe_get_data(cqe), cqe->res, cqe->flags};
    }
    io_uring_cq_advance(ring, n);
    return n;
}

#endif
