/*
 * faultline-ctl: core's dump records (src/core/ctl.c describes them), parsed,
 * and shown as text for people or as JSON for scripts (doc/faultline-ctl.md).
 */
#ifndef FL_CTL_VIEW_H
#define FL_CTL_VIEW_H

#include <stdint.h>
#include <stdio.h>

struct dump;

struct dump *dump_new(void);
void dump_free(struct dump *d);
/* One FL_MSG_CTL_LINE's text, in the order they came. */
void dump_line(struct dump *d, const char *text);

/* What to show: FL_CTL_SESSIONS, FL_CTL_MAPS, FL_CTL_FAULTS. self: the
 * session of faultline-ctl itself, which is left out. */
struct view {
    uint32_t what;
    uint64_t self;
    const char *socket;
    double time; /* of the snapshot, seconds since the epoch */
};

void dump_text(const struct dump *d, const struct view *v, FILE *f);
void dump_json(const struct dump *d, const struct view *v, FILE *f);

/* "264 KiB", "1 MiB", "1.5 GiB": never 0 of a unit for a non-zero size. */
void human_size(unsigned long long bytes, char *buf, size_t len);

#endif
