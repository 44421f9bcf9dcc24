/* faultline-core: RM sessions (rm_session.c) -- Genode's Rm_connection: a
 * session of its own, funded from the PD session that opened it, from whose
 * quota that PD session's managed region maps are paid. */
#ifndef FL_CORE_RM_SESSION_H
#define FL_CORE_RM_SESSION_H

#include "object.h"

struct fl_region_map;

struct core_rm_session {
    struct fl_object obj;    /* FL_OBJ_RM_SESSION; owner: the PD session that opened it */
    struct core_quota quota; /* moved from the owner; returned when it closes */
    struct fl_list maps;     /* fl_region_map.rms_link: the maps created from it */
};

/* Close (object.c, from core_object_destroy): destroy its maps -- revocation,
 * reserved regions in parent maps, faulters never woken, as a destroy of each
 * -- and return its quota to the owner. */
void core_rm_session_destroy(struct core_rm_session *rms);
/* A map created from an RM session died (region_map.c): its charge returns
 * to the session. */
void core_rm_session_map_gone(struct fl_region_map *rm);

#endif
