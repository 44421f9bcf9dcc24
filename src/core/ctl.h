/* faultline-core: introspection for faultline-ctl (ctl.c). */
#ifndef FL_CORE_CTL_H
#define FL_CORE_CTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct fl_session;
struct fl_region_map;
struct fl_req_ctl_dump;

/* faultline-ctl (ctl.c): one line of a dump; the faults queued on rm. */
struct fl_ctl_out;
void core_ctl_line(struct fl_ctl_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void core_fault_ctl_dump(struct fl_ctl_out *o, struct fl_region_map *rm, struct fl_session *owner,
                         uint64_t now);
void core_ctl_dump(struct fl_session *s, const struct fl_req_ctl_dump *m);

#endif
