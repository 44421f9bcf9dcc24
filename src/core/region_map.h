/* faultline-core: region maps and Genode's attach rules (region_map.c). */
#ifndef FL_CORE_REGION_MAP_H
#define FL_CORE_REGION_MAP_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "object.h"
#include "../common/placement.h"

/* How deep a fault's walk and a mapping's way up go: the address space plus
 * at most four nested managed maps (Genode's limit). */
#define CORE_MAX_DEPTH 5

struct fl_signal;
struct fl_dataspace;
struct core_rm_session;
struct fl_req_rm_attach;

struct fl_region {
    struct fl_region_map *rm; /* the map it lies in */
    uint64_t start, size;     /* in rm's coordinates */
    uint64_t offset;          /* into the dataspace */
    struct fl_dataspace *ds;  /* NULL once the dataspace died: the region is reserved */
    bool write, exec;
    struct fl_list ds_link;
};

struct fl_region_map {
    struct fl_object obj;
    struct fl_placement placement;
    struct fl_session *address_space_of; /* set for a component's own address space */
    struct fl_dataspace *ds;             /* managed: its dataspace */
    fl_wire_cap ds_cap;                  /* ds in its creator's table (see RM_DATASPACE) */
    struct fl_signal *fault_handler;
    unsigned slot; /* in the fault page of session slot_session, or 0 */
    uint64_t slot_session;
    struct fl_list faulters; /* fl_faulter.link, FIFO */
    /* rm_session.c's: the RM session a managed map was created from (NULL
     * once it died, and for an address space), its link there, and the map
     * in its creator's table */
    struct core_rm_session *rms;
    struct fl_list rms_link;
    fl_wire_cap cap;
};

struct fl_region_map *core_region_map_create(struct fl_session *owner, uint64_t base, uint64_t size,
                                             bool managed);
int core_rm_attach(struct fl_region_map *rm, struct fl_dataspace *ds,
                   const struct fl_req_rm_attach *req, uint64_t *start, uint64_t *size);
int core_rm_detach(struct fl_region_map *rm, uint64_t at);
void core_region_map_destroy(struct fl_region_map *rm);
/* Install a map's fault handler (NULL: none); the map holds a reference. */
void core_region_map_set_fault_handler(struct fl_region_map *rm, struct fl_signal *sig);
/* The dataspace died: its regions become reserved. */
void core_region_reserve(struct fl_region *r);

#endif
