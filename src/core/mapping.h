/* faultline-core: the mapping database (mapping.c). */
#ifndef FL_CORE_MAPPING_H
#define FL_CORE_MAPPING_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct fl_region;
struct fl_region_map;

/* A new request (or worker completion) may map EAGER_WINDOWS windows eagerly. */
void core_mapping_eager_budget(void);
/* Make the region's memory visible wherever the map is visible. */
void core_mapping_map_region(struct fl_region *r);
/* Remove every mapping of [start, start+size) of rm wherever it is visible. */
void core_mapping_revoke(struct fl_region_map *rm, uint64_t start, uint64_t size);

#endif
