/* What the copy-on-write manager and its clients agree on. */
#ifndef COW_H
#define COW_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define COW_PAGE  4096
#define COW_PAGES 64
#define COW_SIZE  (COW_PAGES * COW_PAGE)

static inline void cow_template_page(char *page, unsigned i)
{
    memset(page, 0, COW_PAGE);
    snprintf(page, 64, "template page %u", i);
}

static inline bool cow_is_template_page(const char *page, unsigned i)
{
    char want[64];
    snprintf(want, sizeof(want), "template page %u", i);
    return !strcmp(page, want);
}

#endif
