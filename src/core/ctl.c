/*
 * Introspection for faultline-ctl (and faultline-run's failure report): the
 * sessions with their quotas, every region map as a tree of its attachments,
 * and the faults that wait, with their age. One FL_MSG_CTL_LINE per line,
 * queued like any message to the asking session (bounded: a dump never has
 * more than FL_CTL_MAX_LINES lines), then the reply.
 */
#include "core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct fl_ctl_out {
    struct fl_session *s;
    uint64_t req_id;
    unsigned lines, dropped;
    bool last; /* the line saying what was left out */
};

void fl_ctl_line(struct fl_ctl_out *o, const char *fmt, ...)
{
    if (o->s->closing) return;
    if (o->lines >= FL_CTL_MAX_LINES - 1 && !o->last) {
        o->dropped++;
        return;
    }
    struct fl_msg_ctl_line m;
    fl_msg_init(&m, FL_MSG_CTL_LINE, o->req_id);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m.text, sizeof(m.text), fmt, ap);
    va_end(ap);
    if (fl_session_send(o->s, &m, sizeof(m), -1) == 0) o->lines++;
}

static const char *kind_of(const struct fl_region_map *rm)
{
    return rm->address_space_of ? "address space" : "managed map";
}

static void dump_map(struct fl_ctl_out *o, struct fl_region_map *rm, int depth)
{
    static const char pad[] = "                    ";
    for (const struct fl_span *sp = fl_placement_first(&rm->placement); sp;
         sp = fl_placement_next(&rm->placement, sp)) {
        const struct fl_region *r = sp->owner;
        const char *rights = r->write ? (r->exec ? "rwx" : "rw-") : (r->exec ? "r-x" : "r--");
        if (!r->ds)
            fl_ctl_line(o, "%.*s[%#llx, +%#llx) %s reserved (its dataspace is gone)", 2 * depth,
                        pad, (unsigned long long)r->start, (unsigned long long)r->size, rights);
        else if (r->ds->memfd >= 0 || !r->ds->rm)
            fl_ctl_line(o, "%.*s[%#llx, +%#llx) %s RAM %llu KiB @%#llx (memfd %llu%s)", 2 * depth,
                        pad, (unsigned long long)r->start, (unsigned long long)r->size, rights,
                        (unsigned long long)(r->ds->size >> 10), (unsigned long long)r->offset,
                        (unsigned long long)r->ds->memfd_id, r->ds->moving ? ", moving" : "");
        else {
            fl_ctl_line(o, "%.*s[%#llx, +%#llx) %s managed map of %llu KiB @%#llx%s", 2 * depth,
                        pad, (unsigned long long)r->start, (unsigned long long)r->size, rights,
                        (unsigned long long)(r->ds->size >> 10), (unsigned long long)r->offset,
                        depth >= 4 ? " (deeper levels not shown)" : ":");
            if (depth < 4) dump_map(o, r->ds->rm, depth + 1);
        }
    }
}

static void dump(struct fl_ctl_out *o, uint32_t what)
{
    uint64_t now = fl_now_ms();
    struct fl_list *sp, *st;
    fl_list_for_each_safe(sp, st, &fl_core.sessions)
    {
        struct fl_session *x = fl_list_entry(sp, struct fl_session, link);
        if (x->torn_down) continue;
        if (what & FL_CTL_SESSIONS)
            fl_ctl_line(o, "session %llu %s%s: RAM %llu/%llu KiB, caps %llu/%llu%s%s, queued %zu",
                        (unsigned long long)x->id, x->label, x->closing ? " (closing)" : "",
                        (unsigned long long)(x->ram_used >> 10),
                        (unsigned long long)(x->ram_quota >> 10), (unsigned long long)x->cap_used,
                        (unsigned long long)x->cap_quota, x->parent_id ? ", child" : "",
                        x->uffd >= 0 ? ", uffd" : "", x->out_count);
        struct fl_list *op, *ot;
        fl_list_for_each_safe(op, ot, &x->objects)
        {
            struct fl_object *obj = fl_list_entry(op, struct fl_object, owner_link);
            if (obj->kind != FL_OBJ_REGION_MAP) continue;
            struct fl_region_map *rm = (void *)obj;
            if (what & FL_CTL_MAPS) {
                fl_ctl_line(o, "map of session %llu: %s of %llu KiB, %zu regions, %s",
                            (unsigned long long)x->id, kind_of(rm),
                            (unsigned long long)(rm->placement.size >> 10), rm->placement.count,
                            rm->fault_handler ? "fault handler set" : "no fault handler");
                dump_map(o, rm, 1);
            }
            if (what & FL_CTL_FAULTS) fl_fault_ctl_dump(o, rm, x, now);
        }
    }
    if (what & FL_CTL_FAULTS)
        fl_ctl_line(o,
                    "core: RAM %llu MiB used of %llu MiB, descriptors "
                    "%ld used of %ld",
                    (unsigned long long)(fl_core.ram_used >> 20),
                    (unsigned long long)(fl_core.cfg.ram_budget >> 20), fl_core.fd_used,
                    fl_core.fd_budget);
}

void core_ctl_dump(struct fl_session *s, const struct fl_req_ctl_dump *m)
{
    struct fl_ctl_out o = {.s = s, .req_id = m->hdr.id};
    dump(&o, m->what);
    if (o.dropped) {
        o.last = true;
        fl_ctl_line(&o, "... %u more lines left out", o.dropped);
    }
    uint64_t v[1] = {o.lines};
    if (!s->closing) fl_session_reply(s, m->hdr.id, 0, v, 1);
}
