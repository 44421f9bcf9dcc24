/*
 * The worker: memfd work that a peer could stall or that is slow (fallocate,
 * punch, closing descriptors peers share) runs here, never on the loop.
 * Long jobs run in slices and go back to the tail of the queue between them,
 * so one session's 16 GiB allocation does not hold up another's 4 KiB one.
 *
 * A peer can hold a worker for as long as it likes: a write(2) into a memfd
 * from its own unserved memory keeps the memfd's inode lock while it waits in
 * the uffd, and the punch of that memfd waits for the lock in an
 * uninterruptible sleep that nothing in core can cut short. So the pool is
 * elastic: a supervisor thread counts the workers that are idle or on a job
 * younger than STALL_MS, and when fewer than NWORKERS are and jobs wait, it
 * starts another thread (at most WORKERS_MAX). A stalled worker that comes
 * back finds the others and leaves. Each stalled thread costs core one small
 * stack, and the peer a blocked thread of its own.
 */
#include "../common/protocol.h"
#include "../common/log.h"
#include "loop.h"
#include "worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define NWORKERS     2
#define WORKERS_MAX  64
#define STALL_MS     250
#define STACK_SIZE   (256 * 1024)
#define SUPERVISE_MS 50
#define GIVE_UP_MS   5000

struct worker {
    bool alive;
    uint64_t busy_since; /* core_now_ms() when its job started, 0 while idle */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;    /* work or stop */
static pthread_cond_t exited = PTHREAD_COND_INITIALIZER;  /* a worker left */
static pthread_cond_t wake_sv = PTHREAD_COND_INITIALIZER; /* supervisor's tick */
static struct fl_list queue = FL_LIST_INIT(queue);
static struct fl_list done = FL_LIST_INIT(done);
static struct worker workers[WORKERS_MAX];
static int nthreads;
static unsigned stalled_logged; /* threads started for stalls, for the log */
static uint64_t completed;      /* jobs (or slices) run, for core_worker_stop */
static bool stop;
static pthread_t supervisor_thread;
static bool supervising;
static int done_efd = -1;
static struct fl_watch *done_watch;
static void (*saved_discard)(int fd);

/* Workers that are idle or on a job that has not yet run for STALL_MS. */
static int fresh_workers(uint64_t now)
{
    int n = 0;
    for (int i = 0; i < WORKERS_MAX; i++)
        if (workers[i].alive && (!workers[i].busy_since || now - workers[i].busy_since < STALL_MS))
            n++;
    return n;
}

static void *worker(void *arg)
{
    struct worker *self = arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (fl_list_empty(&queue) && !stop) {
            /* Threads started for a stall go once others can take the work. */
            if (fresh_workers(core_now_ms()) > NWORKERS) goto leave;
            pthread_cond_wait(&cond, &lock);
        }
        if (fl_list_empty(&queue)) break;
        struct fl_job *job = fl_list_entry(queue.next, struct fl_job, link);
        fl_list_del(&job->link);
        self->busy_since = core_now_ms();
        pthread_mutex_unlock(&lock);
        job->run(job);
        pthread_mutex_lock(&lock);
        self->busy_since = 0;
        completed++;
        if (job->result == 0 && job->pos < job->size) {
            fl_list_add_tail(&queue, &job->link); /* next slice later */
        } else {
            fl_list_add_tail(&done, &job->link);
            uint64_t one = 1;
            /* Core's own eventfd; gone when a stalled job outlived shutdown. */
            if (done_efd >= 0) {
                ssize_t w = write(done_efd, &one, sizeof(one));
                (void)w;
            }
        }
    }
leave:
    self->alive = false;
    nthreads--;
    pthread_cond_broadcast(&exited);
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* With the lock held. */
static int spawn(void)
{
    int i = 0;
    while (i < WORKERS_MAX && workers[i].alive) i++;
    if (i == WORKERS_MAX) return -1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, STACK_SIZE);
    pthread_t t;
    workers[i] = (struct worker){.alive = true};
    int r = pthread_create(&t, &attr, worker, &workers[i]);
    pthread_attr_destroy(&attr);
    if (r) {
        workers[i].alive = false;
        return -1;
    }
    nthreads++;
    return 0;
}

/* Waits on c (the lock held) for at most SUPERVISE_MS. */
static void tick(pthread_cond_t *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += SUPERVISE_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(c, &lock, &ts);
}

static void *supervisor(void *arg)
{
    (void)arg;
    bool full_logged = false;
    pthread_mutex_lock(&lock);
    while (!stop) {
        /* Idle core does not wake up: a submit starts the ticking. */
        if (fl_list_empty(&queue))
            pthread_cond_wait(&wake_sv, &lock);
        else
            tick(&wake_sv);
        if (stop || fl_list_empty(&queue) || fresh_workers(core_now_ms()) >= NWORKERS) continue;
        if (spawn() == 0) {
            full_logged = false;
            /* Rate of this line: one per stalled thread. */
            if (++stalled_logged <= 16)
                fl_warn("worker: a job has run for more than %d ms (a peer's write(2) holding a "
                        "memfd's inode lock stalls a punch); %d worker threads now",
                        STALL_MS, nthreads);
        } else if (!full_logged) {
            full_logged = true;
            fl_error("worker: all %d worker threads are stalled by peers; memfd work waits "
                     "until one comes back",
                     nthreads);
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

int core_worker_start(void)
{
    done_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (done_efd < 0) return -1;
    done_watch = core_loop_watch(done_efd, FL_EV_IN, drain, NULL);
    if (!done_watch) return -1;
    stop = false;
    pthread_mutex_lock(&lock);
    int r = 0;
    for (int i = 0; i < NWORKERS && r == 0; i++) r = spawn();
    pthread_mutex_unlock(&lock);
    if (r < 0 || pthread_create(&supervisor_thread, NULL, supervisor, NULL)) return -1;
    supervising = true;
    /* Descriptors a peer sends that nobody takes are closed off the loop too. */
    saved_discard = fl_wire_discard;
    fl_wire_discard = core_worker_close;
    return 0;
}

void core_worker_submit(struct fl_job *job)
{
    pthread_mutex_lock(&lock);
    /* A job an idle worker will take needs no supervisor; one that waits for
     * a busy (maybe stalled) worker does, which then ticks until the queue is
     * empty. Idle workers not yet woken count once per job already queued. */
    int idle = 0;
    for (int i = 0; i < WORKERS_MAX; i++) idle += workers[i].alive && !workers[i].busy_since;
    for (struct fl_list *q = queue.next; q != &queue && idle > 0; q = q->next) idle--;
    if (idle == 0) pthread_cond_signal(&wake_sv);
    fl_list_add_tail(&queue, &job->link);
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
}

static void close_run(struct fl_job *job)
{
    close(job->fd);
}

void core_worker_close(int fd)
{
    if (fd < 0) return;
    struct fl_job *job = calloc(1, sizeof(*job));
    if (!job) {
        close(fd);
        return;
    }
    job->run = close_run;
    job->fd = fd;
    core_worker_submit(job);
}

/* Runs every queued job to its end (shutdown) and waits for the workers. A
 * peer may stall some of them for good (and wait for core's exit to notice
 * it is gone): once nothing has completed for GIVE_UP_MS and only stalled
 * threads are left, they and their jobs are left behind. */
void core_worker_stop(void)
{
    if (saved_discard) fl_wire_discard = saved_discard;
    saved_discard = NULL;
    pthread_mutex_lock(&lock);
    stop = true;
    pthread_cond_broadcast(&cond);
    pthread_cond_broadcast(&wake_sv);
    pthread_mutex_unlock(&lock);
    if (supervising) pthread_join(supervisor_thread, NULL);
    supervising = false;
    pthread_mutex_lock(&lock);
    uint64_t seen = completed, progress_ms = core_now_ms();
    while (nthreads > 0) {
        uint64_t now = core_now_ms();
        if (completed != seen) seen = completed, progress_ms = now;
        int fresh = fresh_workers(now);
        if (!fl_list_empty(&queue) && fresh < NWORKERS) spawn(); /* the supervisor's job now */
        if (fresh == 0 && now - progress_ms >= GIVE_UP_MS) break;
        tick(&exited);
    }
    if (nthreads > 0)
        fl_warn("worker: leaving %d worker threads that peers stall; %s", nthreads,
                fl_list_empty(&queue) ? "their jobs are dropped"
                                      : "they and the queued jobs are dropped");
    pthread_mutex_unlock(&lock);
    drain(NULL, 0);
    if (done_watch) core_loop_unwatch(done_watch);
    done_watch = NULL;
    pthread_mutex_lock(&lock);
    close(done_efd);
    done_efd = -1;
    pthread_mutex_unlock(&lock);
}
