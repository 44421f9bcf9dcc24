/* faultline-core: dataspaces; RAM dataspaces are memfds (ram.c). */
#ifndef FL_CORE_DATASPACE_H
#define FL_CORE_DATASPACE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "object.h"

struct fl_region_map;
struct fl_session;

/* A fault on a dataspace that is moving to a fresh memfd (--strict). */
struct fl_deferred_fault {
    uint64_t session_id, va;
    uint32_t tid;
    uint8_t type; /* enum fl_fault_type */
    bool segv;
};

struct fl_dataspace {
    struct fl_object obj;
    uint64_t size;
    int memfd;         /* RAM: the one memfd; -1 for a managed dataspace */
    uint64_t memfd_id; /* names the memfd on the wire */
    bool ready;        /* RAM: the worker finished allocating */
    bool moving;       /* --strict: being copied to a fresh memfd; nothing maps it */
    struct fl_deferred_fault *deferred; /* faults that wait for the move */
    size_t ndeferred, deferred_cap;
    struct fl_region_map *rm; /* managed: the region map it shows */
    struct fl_list regions;   /* fl_region.ds_link: everywhere it is attached */
    /* A ROM module (rom.c): its sealed memfd is never mapped writable,
     * whatever an attachment asks (the fault path and the mapping database
     * narrow write there); gone is called instead of free() when the last
     * reference goes. Both NULL/false for RAM and managed dataspaces. */
    bool read_only;
    void (*gone)(struct fl_dataspace *ds);
};

void core_ram_alloc(struct fl_session *s, uint64_t req_id, uint64_t size);
int core_ram_free(struct fl_session *s, struct fl_dataspace *ds);
void core_dataspace_destroy(struct fl_dataspace *ds);
/* --strict: ds (RAM) was revoked everywhere; copy it to a fresh memfd, punch
 * the old one, map it again wherever it is attached, then reply to req_id. */
void core_dataspace_move(struct fl_dataspace *ds, uint64_t session_id, uint64_t req_id);

#endif
