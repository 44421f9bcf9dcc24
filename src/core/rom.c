/*
 * ROM dataspaces: Genode's ROM service, whose modules are core's boot
 * modules. With --rom-dir DIR, each plain file of DIR is a named, read-only
 * dataspace. A module is one memfd, sealed against every write
 * (F_SEAL_WRITE|SHRINK|GROW|SEAL: not core, not a peer holding the
 * descriptor, can change it), shared by every session that opens it. Its
 * content is a snapshot of the file taken when it is opened while no session
 * holds it; it lives as long as a capability, an attachment or an export
 * token refers to it, and the next open after that takes a new snapshot.
 *
 * Costs (doc/limits.md): the module's memory is core's, as a boot module is
 * on Genode -- charged once to core's RAM budget (and one descriptor) while
 * it is loaded; each open costs the opening session what a ROM session costs
 * on Genode (FL_COST_ROM_*), held by the capability it gets, until that is
 * released or the session ends.
 *
 * The file is looked up, opened and copied on a worker (the loop never waits
 * for a file system): the open's reply is deferred, and opens of a module
 * that is loading wait for the same load. A name must be a plain file name
 * (no '/', not "." or "..", no control character); the file is looked up
 * beneath DIR's descriptor without following a symbolic link, and must be a
 * regular, non-empty file -- anything else is DENIED, with a log line saying
 * why.
 *
 * A ROM dataspace is never mapped writable (dataspace.h's read_only): the
 * fault path and the mapping database narrow write there, so an attachment
 * asked writeable is mapped read-only and a write to it is a WRITE fault
 * reflected to the map, as Genode's rm_fault test expects. The agent maps a
 * sealed memfd privately (it cannot be mapped shared and writable at all).
 */
#include "../common/log.h"
#include "../common/placement.h"
#include "agent.h"
#include "dataspace.h"
#include "object.h"
#include "rom.h"
#include "rpc.h"
#include "session.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK        (64ull << 20) /* worker slices, as ram.c's */
#define COPY_BUF     (1u << 20)
#define SIZE_MAX_ROM (1ull << 46)

struct waiter {
    uint64_t session_id, req_id;
};

struct module {
    struct fl_dataspace ds; /* first: the object is the module */
    struct fl_list link;    /* in modules */
    char name[FL_ROM_NAME_BYTES];
    bool loading;
    struct waiter *waiters; /* opens waiting for the load */
    size_t nwaiters, waiters_cap;
    uint64_t charged_ram; /* of core's budgets, while loaded */
    long charged_fds;
};

/* A load: look the file up (phase 1), then copy it into a memfd in slices. */
struct load_job {
    struct fl_job job; /* obj: the module; size/pos: bytes to copy, copied */
    char name[FL_ROM_NAME_BYTES];
    uint64_t file_size;
    int file_fd, memfd;
    const char *why; /* phase 1: why the file is not a module */
};

static int rom_dir = -1;
static const char *rom_dir_path;
static struct fl_list modules = FL_LIST_INIT(modules);

int core_rom_init(const char *dir)
{
    rom_dir = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rom_dir < 0) {
        fl_error("--rom-dir %s: %s", dir, strerror(errno));
        return -1;
    }
    rom_dir_path = dir;
    fl_info("ROM modules: the files of %s", dir);
    return 0;
}

/* Why name is not a plain file name, or NULL. */
static const char *bad_name(const char *name)
{
    if (!*name) return "an empty name";
    if (!strcmp(name, ".") || !strcmp(name, "..")) return "not a file name";
    for (const char *p = name; *p; p++) {
        if (*p == '/') return "a name with a slash";
        if ((unsigned char)*p < 0x20 || *p == 0x7f) return "a name with a control character";
    }
    return NULL;
}

static struct module *find(const char *name)
{
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &modules)
    {
        struct module *m = fl_list_entry(pos, struct module, link);
        if (!strcmp(m->name, name)) return m;
    }
    return NULL;
}

/* The last reference went: no session holds or shows it any more. */
static void module_gone(struct fl_dataspace *ds)
{
    struct module *m = (struct module *)ds;
    fl_list_del(&m->link);
    if (ds->memfd >= 0) {
        fl_debug("ROM module '%s' released: no session holds it", m->name);
        core_agent_forget_memfd(ds);
        core_worker_close(ds->memfd);
    }
    core_quota_release(NULL, m->charged_ram, 0, m->charged_fds);
    free(m->waiters);
    free(m);
}

/* A capability of s to the module: a ROM session's quota, held by the slot. */
static int hand_out(struct fl_session *s, struct module *m, uint64_t v[4])
{
    int r = core_cap_insert_paid(s, &m->ds.obj, FL_COST_ROM_RAM, FL_COST_ROM_CAPS, &v[0]);
    if (r == 0) v[1] = m->ds.size;
    return r;
}

/* The load is over: answer every open that waited, then drop the load's hold
 * (the module goes at once if nobody took it). */
static void load_over(struct module *m, int err, const char *why)
{
    m->loading = false;
    bool logged = false;
    for (size_t i = 0; i < m->nwaiters; i++) {
        struct fl_session *s = core_session_by_id(m->waiters[i].session_id);
        if (!s || s->closing) continue;
        uint64_t v[4] = {0};
        int r = err;
        if (r == 0) {
            r = hand_out(s, m, v);
        } else if (!logged) {
            logged = true;
            core_session_log(s, FL_LOG_WARN, "session %llu (%s): ROM module '%s' %s: %s",
                             (unsigned long long)s->id, s->label, m->name,
                             r == -EPERM ? "denied" : "not loaded", why);
        }
        core_session_reply(s, m->waiters[i].req_id, r, v, 2);
    }
    m->nwaiters = 0;
    if (err < 0) fl_list_del(&m->link); /* the next open tries again */
    core_object_unref(&m->ds.obj);
}

/* ---- phase 2: the copy, on a worker ---- */

static void copy_run(struct fl_job *job)
{
    struct load_job *l = (struct load_job *)job;
    struct module *m = job->obj;
    if (l->memfd < 0) {
        char name[FL_ROM_NAME_BYTES + 16];
        snprintf(name, sizeof(name), "faultline-rom:%s", l->name);
        l->memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (l->memfd < 0 || ftruncate(l->memfd, (off_t)m->ds.size) < 0) {
            job->result = -errno;
            return;
        }
    }
    char *buf = malloc(COPY_BUF);
    if (!buf) {
        job->result = -ENOMEM;
        return;
    }
    uint64_t end = job->size - job->pos < CHUNK ? job->size : job->pos + CHUNK;
    while (job->pos < end) {
        size_t want = end - job->pos < COPY_BUF ? (size_t)(end - job->pos) : COPY_BUF;
        ssize_t n = pread(l->file_fd, buf, want, (off_t)job->pos);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            job->result = -errno;
            break;
        }
        if (n == 0) { /* the file shrank since: the rest stays zero */
            job->pos = job->size;
            break;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = pwrite(l->memfd, buf + done, (size_t)(n - done), (off_t)(job->pos + done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                job->result = w < 0 ? -errno : -EIO;
                break;
            }
            done += w;
        }
        if (job->result < 0) break;
        job->pos += (uint64_t)n;
    }
    free(buf);
    if (job->result < 0 || job->pos < job->size) return;
    /* Complete: nothing can ever write it now. */
    if (fcntl(l->memfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) <
            0 ||
        fchmod(l->memfd, 0400) < 0)
        job->result = -errno;
}

static void copy_done(struct fl_job *job)
{
    struct load_job *l = (struct load_job *)job;
    struct module *m = job->obj;
    core_worker_close(l->file_fd);
    core_quota_release(NULL, 0, 0, 1); /* the file's descriptor */
    m->charged_fds--;
    if (job->result < 0) {
        fl_warn("ROM module '%s': copying %s/%s failed: %s", m->name, rom_dir_path, m->name,
                strerror(-job->result));
        if (l->memfd >= 0) core_worker_close(l->memfd);
        load_over(m, job->result == -ENOMEM ? -ENOMEM : -EIO, "the copy failed");
    } else {
        m->ds.memfd = l->memfd;
        m->ds.memfd_id = ++fl_core.next_memfd_id;
        m->ds.ready = true;
        fl_info("ROM module '%s': %llu bytes, a snapshot of %s/%s", m->name,
                (unsigned long long)l->file_size, rom_dir_path, m->name);
        load_over(m, 0, NULL);
    }
    free(l);
}

/* ---- phase 1: the look-up, on a worker ---- */

static void probe_run(struct fl_job *job)
{
    struct load_job *l = (struct load_job *)job;
    struct stat st, st2;
    /* Beneath the directory, its name only, never through a symbolic link:
     * lstat first, so that opening a device or a FIFO is never tried. */
    if (fstatat(rom_dir, l->name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        job->result = -errno;
        l->why = errno == ENOENT ? "no such file" : NULL; /* else: the loop says strerror */
        return;
    }
    l->why = S_ISLNK(st.st_mode)    ? "a symbolic link (not followed)"
             : S_ISDIR(st.st_mode)  ? "a directory"
             : !S_ISREG(st.st_mode) ? "not a regular file"
             : st.st_size == 0      ? "an empty file (a dataspace has at least a page)"
                                    : NULL;
    if (l->why) {
        job->result = -EPERM;
        return;
    }
    int fd = openat(rom_dir, l->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        job->result = -errno;
        return;
    }
    if (fstat(fd, &st2) < 0 || !S_ISREG(st2.st_mode) || st2.st_dev != st.st_dev ||
        st2.st_ino != st.st_ino || st2.st_size == 0) {
        close(fd);
        job->result = -EPERM;
        l->why = "it changed while it was opened";
        return;
    }
    l->file_fd = fd;
    l->file_size = (uint64_t)st2.st_size;
}

static void probe_done(struct fl_job *job)
{
    struct load_job *l = (struct load_job *)job;
    struct module *m = job->obj;
    if (job->result < 0) {
        core_quota_release(NULL, 0, 0, m->charged_fds);
        m->charged_fds = 0;
        /* Whatever the file system said: not a module there. */
        load_over(m, -EPERM, l->why ? l->why : strerror(-job->result));
        free(l);
        return;
    }
    uint64_t size = (l->file_size + FL_PAGE_SIZE - 1) & ~(uint64_t)(FL_PAGE_SIZE - 1);
    int r =
        size > SIZE_MAX_ROM || size < l->file_size ? -ENOMEM : core_quota_charge(NULL, size, 0, 0);
    if (r < 0 || fl_core.stopping) { /* stopping: the workers take no more jobs */
        char why[96];
        snprintf(why, sizeof(why), "%llu bytes do not fit core's RAM budget",
                 (unsigned long long)l->file_size);
        if (r == 0) core_quota_release(NULL, size, 0, 0);
        core_worker_close(l->file_fd);
        core_quota_release(NULL, 0, 0, m->charged_fds);
        m->charged_fds = 0;
        load_over(m, -ENOMEM, why);
        free(l);
        return;
    }
    m->charged_ram = size;
    m->ds.size = size;
    job->run = copy_run;
    job->done = copy_done;
    job->size = l->file_size;
    job->pos = 0;
    job->result = 0;
    core_worker_submit(job);
}

/* ---- requests ---- */

int core_rom_rpc_open(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_rom_open *q = msg;
    const char *why = bad_name(q->name);
    if (why) {
        core_session_log(s, FL_LOG_WARN, "session %llu (%s): ROM module name refused: %s",
                         (unsigned long long)s->id, s->label, why);
        return -EINVAL;
    }
    if (rom_dir < 0) {
        core_session_log(s, FL_LOG_WARN,
                         "session %llu (%s): ROM module '%s' denied: core serves no ROM modules "
                         "(start it with --rom-dir DIR)",
                         (unsigned long long)s->id, s->label, q->name);
        return -EPERM;
    }
    struct module *m = find(q->name);
    if (m && !m->loading) return hand_out(s, m, v);
    if (!m) {
        /* A descriptor for the file and one for the memfd, from the start. */
        int r = core_quota_charge(NULL, 0, 0, 2);
        if (r < 0) return r;
        m = calloc(1, sizeof(*m));
        struct load_job *l = calloc(1, sizeof(*l));
        if (!m || !l) {
            free(m);
            free(l);
            core_quota_release(NULL, 0, 0, 2);
            return -ENOMEM;
        }
        m->charged_fds = 2;
        m->ds.obj.kind = FL_OBJ_DATASPACE;
        m->ds.obj.refs = 1; /* the load's, until it is over */
        fl_list_init(&m->ds.obj.owner_link);
        fl_list_init(&m->ds.regions);
        m->ds.memfd = -1;
        m->ds.read_only = true;
        m->ds.gone = module_gone;
        snprintf(m->name, sizeof(m->name), "%s", q->name);
        m->loading = true;
        fl_list_add_tail(&modules, &m->link);
        snprintf(l->name, sizeof(l->name), "%s", q->name);
        l->file_fd = l->memfd = -1;
        l->job.run = probe_run;
        l->job.done = probe_done;
        l->job.obj = m;
        core_worker_submit(&l->job);
    }
    if (m->nwaiters == m->waiters_cap) {
        size_t n = m->waiters_cap ? m->waiters_cap * 2 : 4;
        struct waiter *w = realloc(m->waiters, n * sizeof(*w));
        if (!w) return -ENOMEM;
        m->waiters = w;
        m->waiters_cap = n;
    }
    m->waiters[m->nwaiters++] = (struct waiter){s->id, q->hdr.id};
    return CORE_RPC_DEFERRED; /* answered when the load is over */
}
