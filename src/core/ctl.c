/*
 * Introspection for faultline-ctl (and faultline-run's failure report): the
 * sessions with their quotas and their processes' state, every region map
 * with its id, its attachments and its fault handler's signal, and the
 * faults that wait, with their age.
 *
 * A dump is a sequence of records, then the reply. A record is one line of
 * words: its kind, then KEY=VALUE pairs. Values are escaped: '%', '=', '\',
 * blanks, control characters and bytes >= 0x7f are %XX. One FL_MSG_CTL_LINE
 * carries at most its text's size less one; a longer record goes on in the
 * next FL_MSG_CTL_LINE, the one before ending with '\'. The records:
 *
 *   session id= pid= uid= ram= ramq= caps= capq= queued= parent= uffd=
 *           closing= proc= pst= label=
 *   map     id= session= kind=space|managed size= regions= handler= sig=
 *           sigpend= faults=
 *   region  map= start= size= rights= kind=ram|managed|reserved dsize=
 *           off= memfd= moving= inner=
 *   fault   map= n= type= addr= session= tid= segv= age_ms=
 *   text    msg=                   (a line core could not put in a record)
 *   core    ram= ramb= fds= fdb= sessions=
 *
 * Sizes and addresses are hexadecimal with 0x, counts decimal. A map's id is
 * SESSION.SLOT: its owner's session id and the slot of the owner's
 * capability table that names it (the low 32 bits of the fl_cap its creator
 * holds), stable while the owner holds that capability; a map its owner
 * holds no capability to is SESSION.oK, K counting the session's objects (not
 * stable). A signal's id is formed the same way. proc is running, stopped,
 * gone, none (no process: a PD session not claimed yet) or unknown; pst is
 * the state letter of /proc/PID/stat. sig is the handler's state: pending
 * (sigpend submits not picked up: its eventfd's counter), taken (picked up
 * while faults still wait on the map), idle (nothing pending, no fault
 * waiting), dead (the signal was freed) or none (no handler).
 *
 * Bounded: a dump never sends more than FL_CTL_MAX_LINES lines; what does not
 * fit is left out in whole records, and the last line says how many:
 * "... N more lines left out".
 */
#include "core.h"
#include "sync_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* list.h has the _safe walk only; nothing here changes a list. */
#define EACH(pos, head) for (pos = (head)->next; pos != (head); pos = pos->next)

/* A record's text, before it is cut into lines. */
#define RECORD_MAX 1024

/* Where each region map and signal is named in its owner's table. */
struct slot_ix {
    const struct fl_object *obj;
    uint32_t slot;
};

struct fl_ctl_out {
    struct fl_session *s;
    uint64_t req_id;
    unsigned lines, dropped;
    bool last; /* the line saying what was left out */
    /* While fault.c lists a map's faults: that map's id. */
    const char *fault_map;
    struct slot_ix *ix;
    size_t nix;
};

static void send_line(struct fl_ctl_out *o, const char *text, size_t len)
{
    struct fl_msg_ctl_line m;
    fl_msg_init(&m, FL_MSG_CTL_LINE, o->req_id);
    memcpy(m.text, text, len);
    m.text[len] = 0;
    if (core_session_send(o->s, &m, sizeof(m), -1) == 0) o->lines++;
}

/* One record: cut into lines, all of them or none. */
static void record(struct fl_ctl_out *o, const char *text)
{
    if (o->s->closing) return;
    const size_t per = sizeof(((struct fl_msg_ctl_line *)0)->text) - 2; /* '\' and NUL */
    size_t len = strlen(text), need = len ? (len + per - 1) / per : 1;
    if (len <= per + 1) need = 1; /* fits without a continuation mark */
    if (!o->last && o->lines + need > FL_CTL_MAX_LINES - 1) {
        o->dropped++;
        return;
    }
    if (need == 1) {
        send_line(o, text, len);
        return;
    }
    char chunk[sizeof(((struct fl_msg_ctl_line *)0)->text)];
    for (size_t at = 0; at < len && !o->s->closing; at += per) {
        size_t n = len - at < per ? len - at : per;
        memcpy(chunk, text + at, n);
        if (at + n < len) chunk[n++] = '\\';
        send_line(o, chunk, n);
    }
}

/* Append KEY=VALUE to a record, VALUE escaped. */
static void put_str(char *rec, const char *key, const char *val)
{
    size_t n = strlen(rec);
    if (n + strlen(key) + 3 >= RECORD_MAX) return;
    n += (size_t)snprintf(rec + n, RECORD_MAX - n, " %s=", key);
    for (const unsigned char *c = (const unsigned char *)val; *c && n + 4 < RECORD_MAX; c++) {
        if (*c <= ' ' || *c >= 0x7f || *c == '%' || *c == '=' || *c == '\\')
            n += (size_t)snprintf(rec + n, RECORD_MAX - n, "%%%02X", *c);
        else
            rec[n++] = (char)*c;
    }
    rec[n] = 0;
}

static void put(char *rec, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put(char *rec, const char *key, const char *fmt, ...)
{
    char val[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    put_str(rec, key, val);
}

static void put_u(char *rec, const char *key, unsigned long long v)
{
    put(rec, key, "%llu", v);
}

static void put_x(char *rec, const char *key, unsigned long long v)
{
    put(rec, key, "%#llx", v);
}

/* ---- names ---- */

static int cmp_ix(const void *a, const void *b)
{
    const struct slot_ix *x = a, *y = b;
    if (x->obj != y->obj) return (uintptr_t)x->obj < (uintptr_t)y->obj ? -1 : 1;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* Index every slot that names a map or signal in its owner's own table. */
static void build_ix(struct fl_ctl_out *o)
{
    size_t n = 0, cap = 0;
    struct fl_list *p;
    EACH(p, &fl_core.sessions)
    {
        struct fl_session *x = fl_list_entry(p, struct fl_session, link);
        if (x->torn_down) continue;
        for (size_t i = 0; i < x->ncaps; i++) {
            const struct fl_object *obj = x->caps[i].obj;
            if (!obj || obj->owner != x ||
                (obj->kind != FL_OBJ_REGION_MAP && obj->kind != FL_OBJ_SIGNAL))
                continue;
            if (n == cap) {
                size_t c = cap ? cap * 2 : 64;
                struct slot_ix *ix = realloc(o->ix, c * sizeof(*ix));
                if (!ix) goto out;
                o->ix = ix;
                cap = c;
            }
            o->ix[n++] = (struct slot_ix){obj, (uint32_t)(i + 1)};
        }
    }
out:
    o->nix = n;
    if (n) qsort(o->ix, n, sizeof(*o->ix), cmp_ix);
}

/* SESSION.SLOT, or SESSION.oK when its owner holds no capability to it. */
static void obj_id(const struct fl_ctl_out *o, const struct fl_object *obj, char *buf, size_t len)
{
    const struct fl_session *owner = obj->owner;
    if (!owner) {
        snprintf(buf, len, "dead");
        return;
    }
    size_t lo = 0, hi = o->nix;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)o->ix[mid].obj < (uintptr_t)obj)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < o->nix && o->ix[lo].obj == obj) {
        snprintf(buf, len, "%llu.%u", (unsigned long long)owner->id, o->ix[lo].slot);
        return;
    }
    unsigned k = 0;
    const struct fl_list *p;
    EACH(p, &owner->objects)
    {
        k++;
        if (fl_list_entry(p, struct fl_object, owner_link) == obj) break;
    }
    snprintf(buf, len, "%llu.o%u", (unsigned long long)owner->id, k);
}

/* ---- what the kernel knows ---- */

/*
 * The state of a session's process: its pidfd says whether it exited (a
 * recycled pid cannot fool it), /proc/PID/stat whether it is stopped. Reading
 * that file takes no lock of the process's memory, so a peer cannot make it
 * block.
 */
static const char *proc_state(const struct fl_session *x, char *letter)
{
    *letter = '-';
    if (x->pid <= 0) return "none";
    if (x->pidfd >= 0) {
        struct pollfd p = {.fd = x->pidfd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0) return "gone";
    }
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)x->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? "gone" : "unknown";
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return "gone";
    buf[n] = 0;
    const char *paren = strrchr(buf, ')');
    if (!paren || paren[1] != ' ' || !paren[2]) return "unknown";
    *letter = paren[2];
    switch (paren[2]) {
    case 'T':
    case 't': return "stopped";
    case 'Z':
    case 'X':
    case 'x': return "gone";
    default: return "running";
    }
}

/* Submits of sig nobody picked up yet: its eventfd's counter, which core
 * shares with the receiver (core keeps no count of its own), or -1. */
static long long signal_pending(const struct fl_signal *sig)
{
    if (sig->efd < 0) return -1;
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", sig->efd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *c = strstr(buf, "eventfd-count:");
    return c ? (long long)strtoull(c + 14, NULL, 16) : -1;
}

static size_t count_faulters(const struct fl_region_map *rm)
{
    size_t n = 0;
    const struct fl_list *p;
    EACH(p, &rm->faulters) n++;
    return n;
}

/* ---- records ---- */

static void session_record(struct fl_ctl_out *o, const struct fl_session *x)
{
    char rec[RECORD_MAX] = "session", letter, pst[2] = {0};
    const char *st = proc_state(x, &letter);
    pst[0] = letter;
    put_u(rec, "id", x->id);
    put(rec, "pid", "%d", (int)x->pid);
    put_u(rec, "uid", x->uid);
    put_x(rec, "ram", x->ram_used);
    put_x(rec, "ramq", x->ram_quota);
    put_u(rec, "caps", x->cap_used);
    put_u(rec, "capq", x->cap_quota);
    put_u(rec, "queued", x->out_count);
    put_u(rec, "parent", x->parent_id);
    put_u(rec, "uffd", x->uffd >= 0);
    put_u(rec, "closing", x->closing);
    put_str(rec, "proc", st);
    put_str(rec, "pst", pst);
    put_str(rec, "label", x->label);
    record(o, rec);
}

static void map_record(struct fl_ctl_out *o, const struct fl_session *x,
                       const struct fl_region_map *rm, const char *id, size_t faults)
{
    char rec[RECORD_MAX] = "map", sid[48];
    put_str(rec, "id", id);
    put_u(rec, "session", x->id);
    put_str(rec, "kind", rm->address_space_of ? "space" : "managed");
    put_x(rec, "size", rm->placement.size);
    put_u(rec, "regions", rm->placement.count);
    const struct fl_signal *sig = rm->fault_handler;
    if (!sig) {
        put_str(rec, "handler", "none");
        put_str(rec, "sig", "none");
    } else {
        obj_id(o, &sig->obj, sid, sizeof(sid));
        put_str(rec, "handler", sid);
        long long pend = sig->obj.dead ? -1 : signal_pending(sig);
        put_str(rec, "sig",
                sig->obj.dead ? "dead"
                : pend > 0    ? "pending"
                : pend < 0    ? "unknown"
                : faults      ? "taken"
                              : "idle");
        put(rec, "sigpend", "%lld", pend);
    }
    put_u(rec, "faults", faults);
    record(o, rec);
}

static void region_records(struct fl_ctl_out *o, const struct fl_region_map *rm, const char *id)
{
    for (const struct fl_span *sp = fl_placement_first(&rm->placement); sp;
         sp = fl_placement_next(&rm->placement, sp)) {
        const struct fl_region *r = sp->owner;
        char rec[RECORD_MAX] = "region", inner[48];
        put_str(rec, "map", id);
        put_x(rec, "start", r->start);
        put_x(rec, "size", r->size);
        put_str(rec, "rights", r->write ? (r->exec ? "rwx" : "rw-") : (r->exec ? "r-x" : "r--"));
        if (!r->ds) {
            put_str(rec, "kind", "reserved");
        } else if (r->ds->memfd >= 0 || !r->ds->rm) {
            put_str(rec, "kind", "ram");
            put_x(rec, "dsize", r->ds->size);
            put_x(rec, "off", r->offset);
            put_u(rec, "memfd", r->ds->memfd_id);
            put_u(rec, "moving", r->ds->moving);
        } else {
            put_str(rec, "kind", "managed");
            put_x(rec, "dsize", r->ds->size);
            put_x(rec, "off", r->offset);
            obj_id(o, &r->ds->rm->obj, inner, sizeof(inner));
            put_str(rec, "inner", inner);
        }
        record(o, rec);
    }
}

/* fault.c's lines, as records: "fault %u on a map of session %llu: TYPE at
 * ADDR by session %llu thread %u[ (SIGSEGV)], %llu ms". A line of another
 * shape is passed on as a text record. */
static void fault_line(struct fl_ctl_out *o, const char *text)
{
    unsigned pos, tid;
    unsigned long long owner, addr, sid, age;
    char type[32];
    int n = -1;
    if (sscanf(text, "fault %u on a map of session %llu: %31s at %llx by session %llu thread %u%n",
               &pos, &owner, type, &addr, &sid, &tid, &n) == 6 &&
        n > 0) {
        const char *rest = text + n;
        bool segv = !strncmp(rest, " (SIGSEGV)", 10);
        if (segv) rest += 10;
        if (sscanf(rest, ", %llu ms", &age) == 1) {
            char rec[RECORD_MAX] = "fault";
            put_str(rec, "map", o->fault_map);
            put_u(rec, "n", pos);
            put_str(rec, "type", type);
            put_x(rec, "addr", addr);
            put_u(rec, "session", sid);
            put_u(rec, "tid", tid);
            put_u(rec, "segv", segv);
            put_u(rec, "age_ms", age);
            record(o, rec);
            return;
        }
    }
    /* The map record says whether it has a handler. */
    if (strstr(text, "has no fault handler")) return;
    char rec[RECORD_MAX] = "text";
    put_str(rec, "msg", text);
    record(o, rec);
}

void core_ctl_line(struct fl_ctl_out *o, const char *fmt, ...)
{
    char text[RECORD_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (o->fault_map) {
        fault_line(o, text);
        return;
    }
    char rec[RECORD_MAX] = "text";
    put_str(rec, "msg", text);
    record(o, rec);
}

static void dump(struct fl_ctl_out *o, uint32_t what)
{
    uint64_t now = core_now_ms();
    unsigned nsessions = 0;
    build_ix(o);
    struct fl_list *sp, *st;
    fl_list_for_each_safe(sp, st, &fl_core.sessions)
    {
        struct fl_session *x = fl_list_entry(sp, struct fl_session, link);
        if (x->torn_down) continue;
        nsessions++;
        if (what & FL_CTL_SESSIONS) session_record(o, x);
        struct fl_list *op, *ot;
        fl_list_for_each_safe(op, ot, &x->objects)
        {
            struct fl_object *obj = fl_list_entry(op, struct fl_object, owner_link);
            if (obj->kind != FL_OBJ_REGION_MAP) continue;
            struct fl_region_map *rm = (void *)obj;
            size_t faults = count_faulters(rm);
            if (!(what & FL_CTL_MAPS) && !((what & FL_CTL_FAULTS) && faults)) continue;
            char id[48];
            obj_id(o, obj, id, sizeof(id));
            map_record(o, x, rm, id, faults);
            if (what & FL_CTL_MAPS) region_records(o, rm, id);
            if ((what & FL_CTL_FAULTS) && faults) {
                o->fault_map = id;
                core_fault_ctl_dump(o, rm, x, now);
                o->fault_map = NULL;
            }
        }
    }
    if (what & FL_CTL_MAPS) core_sync_ctl_dump(o);
    if (what & (FL_CTL_SESSIONS | FL_CTL_FAULTS)) {
        char rec[RECORD_MAX] = "core";
        put_x(rec, "ram", fl_core.ram_used);
        put_x(rec, "ramb", fl_core.cfg.ram_budget);
        put(rec, "fds", "%ld", fl_core.fd_used);
        put(rec, "fdb", "%ld", fl_core.fd_budget);
        put_u(rec, "sessions", nsessions);
        record(o, rec);
    }
    free(o->ix);
    o->ix = NULL;
}

void core_ctl_dump(struct fl_session *s, const struct fl_req_ctl_dump *m)
{
    struct fl_ctl_out o = {.s = s, .req_id = m->hdr.id};
    dump(&o, m->what);
    if (o.dropped) {
        o.last = true;
        char text[64];
        snprintf(text, sizeof(text), "... %u more lines left out", o.dropped);
        record(&o, text);
    }
    uint64_t v[1] = {o.lines};
    if (!s->closing) core_session_reply(s, m->hdr.id, 0, v, 1);
}
