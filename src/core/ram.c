/*
 * RAM dataspaces: one memfd each, mode 0600, sealed against resizing,
 * committed by fallocate at alloc so that a missing page is never discovered
 * later as SIGBUS. Freeing punches the whole file: the kernel zaps the pages
 * under every mapping in every process, whoever holds the descriptor.
 * fallocate and punch run on the worker (slow, and a peer that holds the
 * memfd can stall the inode); the RPC reply waits for them, the loop does not.
 */
#include "../common/log.h"
#include "agent.h"
#include "dataspace.h"
#include "fault.h"
#include "mapping.h"
#include "object.h"
#include "region_map.h"
#include "revoke.h"
#include "rpc.h"
#include "session.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64ull << 20) /* worker slices, so one huge alloc does not hold up others */

static void alloc_run(struct fl_job *job)
{
    if (job->pos == 0) {
        if (ftruncate(job->fd, (off_t)job->size) < 0) {
            job->result = -errno;
            job->pos = job->size;
            return;
        }
    }
    uint64_t n = job->size - job->pos < CHUNK ? job->size - job->pos : CHUNK;
    if (fallocate(job->fd, 0, (off_t)job->pos, (off_t)n) < 0) {
        job->result = -errno;
        job->pos = job->size;
        return;
    }
    job->pos += n;
    if (job->pos == job->size &&
        fcntl(job->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        job->result = -errno;
}

static void alloc_done(struct fl_job *job)
{
    struct fl_dataspace *ds = job->obj;
    struct fl_session *s = core_session_by_id(job->session_id);
    if (job->result < 0 || !s) {
        if (job->result < 0)
            fl_warn("RAM dataspace of %llu bytes: %s", (unsigned long long)job->size,
                    strerror(-job->result));
        core_quota_release(s, ds->size, 1, 1);
        core_worker_close(ds->memfd);
        free(ds);
        if (s)
            core_session_reply(s, job->req_id,
                               job->result == -ENOSPC || job->result == -ENOMEM ? -ENOMEM : -EIO,
                               NULL, 0);
        free(job);
        return;
    }
    ds->ready = true;
    ds->obj.owner = s;
    fl_list_add_tail(&s->objects, &ds->obj.owner_link);
    uint64_t v[2] = {0, ds->size};
    int r = core_cap_insert(s, &ds->obj, &v[0]);
    if (r < 0) core_object_destroy(&ds->obj);
    core_session_reply(s, job->req_id, r, v, 2);
    free(job);
}

void core_ram_alloc(struct fl_session *s, uint64_t req_id, uint64_t size)
{
    uint64_t rounded = (size + FL_PAGE_SIZE - 1) & ~(uint64_t)(FL_PAGE_SIZE - 1);
    if (size == 0 || rounded < size || rounded > (1ull << 46)) {
        core_session_reply(s, req_id, size == 0 ? -EPERM : -ENOMEM, NULL, 0);
        return;
    }
    int r = core_quota_charge(s, rounded, 1, 1);
    if (r < 0) {
        core_session_reply(s, req_id, r, NULL, 0);
        return;
    }
    struct fl_dataspace *ds = calloc(1, sizeof(*ds));
    struct fl_job *job = calloc(1, sizeof(*job));
    int fd = memfd_create("faultline-ds", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (!ds || !job || fd < 0) {
        fl_warn("session %llu: cannot create a memfd: %s", (unsigned long long)s->id,
                fd < 0 ? strerror(errno) : "out of memory");
        if (fd >= 0) close(fd);
        free(ds);
        free(job);
        core_quota_release(s, rounded, 1, 1);
        core_session_reply(
            s, req_id, fd < 0 && (errno == EMFILE || errno == ENFILE) ? -EMFILE : -ENOMEM, NULL, 0);
        return;
    }
    fchmod(fd, 0600);
    ds->obj.kind = FL_OBJ_DATASPACE;
    ds->obj.refs = 1;
    fl_list_init(&ds->obj.owner_link);
    fl_list_init(&ds->regions);
    ds->size = rounded;
    ds->memfd = fd;
    ds->memfd_id = ++fl_core.next_memfd_id;
    job->run = alloc_run;
    job->done = alloc_done;
    job->fd = fd;
    job->size = rounded;
    job->obj = ds;
    job->session_id = s->id;
    job->req_id = req_id;
    core_worker_submit(job);
}

int core_ram_free(struct fl_session *s, struct fl_dataspace *ds)
{
    if (ds->obj.owner != s) return -ENXIO;
    core_object_destroy(&ds->obj);
    return 0;
}

static void punch_run(struct fl_job *job)
{
    uint64_t n = job->size - job->pos < CHUNK ? job->size - job->pos : CHUNK;
    if (fallocate(job->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)job->pos, (off_t)n) <
        0)
        job->result = -errno;
    job->pos += n;
    if (job->pos >= job->size || job->result < 0) { /* a failed slice ends the job */
        close(job->fd);
        job->fd = -1;
    }
}

static void punch_done(struct fl_job *job)
{
    if (job->result < 0) fl_warn("punching a freed dataspace: %s", strerror(-job->result));
    core_quota_release(NULL, 0, 0, 1);
    free(job);
}

/*
 * --strict: the move. Every agent has revoked the dataspace and dropped its
 * descriptor; whoever still holds the old memfd (a client that subverted its
 * runtime) or pinned its pages (io_uring fixed buffers, vmsplice) holds only
 * the old file, which is punched once its content is copied. On the worker:
 * a peer holding the old memfd can stall its inode.
 */
struct move_job {
    struct fl_job job; /* fd: a dup of the old memfd */
    int newfd;
};

static void move_run(struct fl_job *job)
{
    struct move_job *m = (struct move_job *)job;
    if (job->pos == 0) {
        m->newfd = memfd_create("faultline-ds", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (m->newfd < 0 || fchmod(m->newfd, 0600) < 0 ||
            ftruncate(m->newfd, (off_t)job->size) < 0 ||
            fallocate(m->newfd, 0, 0, (off_t)job->size) < 0) {
            job->result = -errno;
            return;
        }
    }
    /* In the kernel, no buffer: several moves run on several workers. */
    uint64_t end = job->size - job->pos < CHUNK ? job->size : job->pos + CHUNK;
    while (job->pos < end) {
        off_t in = (off_t)job->pos, out = (off_t)job->pos;
        ssize_t r = copy_file_range(job->fd, &in, m->newfd, &out, end - job->pos, 0);
        if (r <= 0) {
            job->result = r < 0 ? -errno : -EIO;
            return;
        }
        job->pos += (uint64_t)r;
    }
    if (job->pos < job->size) return;
    if (fcntl(m->newfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0 ||
        fallocate(job->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)job->size) < 0)
        job->result = -errno;
}

/* The move is over (or could not start): map it again wherever it is
 * attached, serve the faults that waited, and let the detach return. */
static void move_finish(struct fl_dataspace *ds, uint64_t session_id, uint64_t req_id)
{
    ds->moving = false;
    core_mapping_eager_budget();
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &ds->regions)
    {
        core_mapping_map_region(fl_list_entry(pos, struct fl_region, ds_link));
    }
    core_fault_retry_deferred(ds);
    struct fl_session *s = core_session_by_id(session_id);
    if (s) core_session_reply(s, req_id, 0, NULL, 0);
}

static void move_done(struct fl_job *job)
{
    struct move_job *m = (struct move_job *)job;
    struct fl_dataspace *ds = job->obj;
    close(job->fd); /* the dup; the worker already punched the file */
    if (job->result < 0) {
        /* The old memfd stays (nothing was lost); the detach still revoked. */
        fl_warn("--strict: moving a dataspace of %llu KiB failed: %s; it keeps its memfd",
                (unsigned long long)(ds->size >> 10), strerror(-job->result));
        if (m->newfd >= 0) close(m->newfd);
    } else if (ds->memfd < 0) {
        close(m->newfd); /* freed meanwhile */
    } else {
        core_worker_close(ds->memfd);
        ds->memfd = m->newfd;
        ds->memfd_id = ++fl_core.next_memfd_id;
        fl_debug("--strict: moved a dataspace of %llu KiB to a fresh memfd (id %llu)",
                 (unsigned long long)(ds->size >> 10), (unsigned long long)ds->memfd_id);
    }
    move_finish(ds, job->session_id, job->req_id);
    core_object_unref(&ds->obj);
    free(m);
}

void core_dataspace_move(struct fl_dataspace *ds, uint64_t session_id, uint64_t req_id)
{
    struct move_job *m = calloc(1, sizeof(*m));
    int old = m && ds->memfd >= 0 ? fcntl(ds->memfd, F_DUPFD_CLOEXEC, 0) : -1;
    if (old < 0) {
        free(m);
        if (ds->memfd >= 0)
            fl_warn("--strict: cannot move a dataspace (out of memory or "
                    "descriptors); it keeps its memfd");
        move_finish(ds, session_id, req_id);
        return;
    }
    core_object_ref(&ds->obj);
    m->newfd = -1;
    m->job.run = move_run;
    m->job.done = move_done;
    m->job.fd = old;
    m->job.size = ds->size;
    m->job.obj = ds;
    m->job.session_id = session_id;
    m->job.req_id = req_id;
    core_worker_submit(&m->job);
}

void core_dataspace_destroy(struct fl_dataspace *ds)
{
    if (ds->rm) {
        /* A managed dataspace dies with its region map. */
        ds->rm = NULL;
    }
    while (!fl_list_empty(&ds->regions))
        core_region_reserve(fl_list_entry(ds->regions.next, struct fl_region, ds_link));
    /* Faults that waited for a move find reserved regions now. */
    ds->moving = false;
    core_fault_retry_deferred(ds);
    if (ds->memfd < 0) return;
    core_agent_forget_memfd(ds);
    /* Quota returns now; the descriptor when the punch is done. */
    core_quota_release(ds->obj.owner, ds->size, ds->obj.owner ? 1 : 0, 0);
    struct fl_job *job = calloc(1, sizeof(*job));
    if (!job) {
        close(ds->memfd); /* rather a slow close on the loop than a leak */
        core_quota_release(NULL, 0, 0, 1);
    } else {
        job->run = punch_run;
        job->done = punch_done;
        job->fd = ds->memfd;
        job->size = ds->size;
        if (!core_revoke_punch(job)) core_worker_submit(job);
    }
    ds->memfd = -1;
    ds->memfd_id = 0;
}

/* ---- requests ---- */

int core_ram_rpc_alloc(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    const struct fl_req_ram_alloc *m = msg;
    core_ram_alloc(s, m->hdr.id, m->size); /* replies when the worker is done */
    return CORE_RPC_DEFERRED;
}

int core_ram_rpc_free(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    const struct fl_req_cap *m = msg;
    struct fl_dataspace *ds = (void *)core_cap_lookup(s, m->cap, FL_OBJ_DATASPACE);
    if (!ds || ds->memfd < 0) return -ENXIO;
    core_revoke_begin(s, m->hdr.id);
    int r = core_ram_free(s, ds);
    /* Genode: the capability dies with the object. Kept, a freed dataspace's
     * entry would hold its metadata until the session ends. */
    if (r == 0) core_cap_drop(s, m->cap);
    if (core_revoke_end()) return CORE_RPC_DEFERRED; /* replied when every agent revoked */
    return r;
}

int core_ds_rpc_size(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_cap *m = msg;
    struct fl_dataspace *ds = (void *)core_cap_lookup(s, m->cap, FL_OBJ_DATASPACE);
    if (!ds) return -ENXIO;
    v[0] = ds->size, v[1] = ds->memfd < 0 ? 1 : 0;
    return 0;
}
