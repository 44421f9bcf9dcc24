/* faultline-core: worker threads for memfd work a peer could stall (worker.c). */
#ifndef FL_CORE_WORKER_H
#define FL_CORE_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "../common/list.h"

struct fl_job;
typedef void (*fl_job_fn)(struct fl_job *job);
struct fl_job {
    fl_job_fn run;  /* on a worker thread */
    fl_job_fn done; /* on the loop thread */
    int result;
    int fd;
    uint64_t size, pos;
    uint64_t session_id, req_id;
    void *obj;
    struct fl_list link;
};
int core_worker_start(void);
void core_worker_submit(struct fl_job *job);
void core_worker_stop(void);
/* Close a descriptor a peer sent (or shares) off the loop. */
void core_worker_close(int fd);

#endif
