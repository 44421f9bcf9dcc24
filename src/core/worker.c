/*
 * The worker: memfd work that a peer could stall or that is slow (fallocate,
 * punch, closing descriptors peers share) runs here, never on the loop.
 * Long jobs run in slices and go back to the tail of the queue between them,
 * so one session's 16 GiB allocation does not hold up another's 4 KiB one.
 */
#include "core.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define NWORKERS 2

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct fl_list queue = FL_LIST_INIT(queue);
static struct fl_list done = FL_LIST_INIT(done);
static pthread_t threads[NWORKERS];
static int nthreads;
static bool stop;
static int done_efd = -1;
static struct fl_watch *done_watch;
static void (*saved_discard)(int fd);

static void *worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (fl_list_empty(&queue) && !stop) pthread_cond_wait(&cond, &lock);
        if (fl_list_empty(&queue)) break;
        struct fl_job *job = fl_list_entry(queue.next, struct fl_job, link);
        fl_list_del(&job->link);
        pthread_mutex_unlock(&lock);
        job->run(job);
        pthread_mutex_lock(&lock);
        if (job->result == 0 && job->pos < job->size) {
            fl_list_add_tail(&queue, &job->link); /* next slice later */
        } else {
            fl_list_add_tail(&done, &job->link);
            uint64_t one = 1;
            ssize_t w = write(done_efd, &one, sizeof(one)); /* core's own eventfd */
            (void)w;
        }
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void drain(void *arg, uint32_t events)
{
    (void)arg;
    (void)events;
    uint64_t n;
    ssize_t r = read(done_efd, &n, sizeof(n));
    (void)r;
    pthread_mutex_lock(&lock);
    struct fl_list batch = FL_LIST_INIT(batch);
    if (!fl_list_empty(&done)) {
        batch.next = done.next;
        batch.prev = done.prev;
        batch.next->prev = &batch;
        batch.prev->next = &batch;
        fl_list_init(&done);
    }
    pthread_mutex_unlock(&lock);
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &batch)
    {
        struct fl_job *job = fl_list_entry(pos, struct fl_job, link);
        fl_list_del(pos);
        if (job->done)
            job->done(job);
        else
            free(job);
    }
}

int fl_worker_start(void)
{
    done_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (done_efd < 0) return -1;
    done_watch = fl_loop_watch(done_efd, FL_EV_IN, drain, NULL);
    if (!done_watch) return -1;
    for (nthreads = 0; nthreads < NWORKERS; nthreads++)
        if (pthread_create(&threads[nthreads], NULL, worker, NULL)) return -1;
    /* Descriptors a peer sends that nobody takes are closed off the loop too. */
    saved_discard = fl_wire_discard;
    fl_wire_discard = fl_worker_close;
    return 0;
}

void fl_worker_submit(struct fl_job *job)
{
    pthread_mutex_lock(&lock);
    fl_list_add_tail(&queue, &job->link);
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
}

static void close_run(struct fl_job *job)
{
    close(job->fd);
}

void fl_worker_close(int fd)
{
    if (fd < 0) return;
    struct fl_job *job = calloc(1, sizeof(*job));
    if (!job) {
        close(fd);
        return;
    }
    job->run = close_run;
    job->fd = fd;
    fl_worker_submit(job);
}

/* Runs every queued job to its end (shutdown), then stops the threads. */
void fl_worker_stop(void)
{
    if (saved_discard) fl_wire_discard = saved_discard;
    saved_discard = NULL;
    pthread_mutex_lock(&lock);
    stop = true;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < nthreads; i++) pthread_join(threads[i], NULL);
    nthreads = 0;
    drain(NULL, 0);
    if (done_watch) fl_loop_unwatch(done_watch);
    done_watch = NULL;
    close(done_efd);
    done_efd = -1;
}
