/*
 * Objects core keeps for sessions (dataspaces, region maps, signal contexts,
 * RM sessions):
 * counted references from capabilities, regions and jobs; destroying one
 * ends every capability to it and every export token for it.
 */
#include "dataspace.h"
#include "object.h"
#include "region_map.h"
#include "rm_session.h"
#include "signal_context.h"

#include <stdlib.h>

void core_object_ref(struct fl_object *obj)
{
    obj->refs++;
}

void core_object_unref(struct fl_object *obj)
{
    if (--obj->refs > 0) return;
    switch (obj->kind) {
    case FL_OBJ_DATASPACE: {
        struct fl_dataspace *ds = (void *)obj;
        if (ds->gone)
            ds->gone(ds); /* a ROM module: rom.c lets it go */
        else
            free(ds);
        break;
    }
    case FL_OBJ_REGION_MAP: {
        struct fl_region_map *rm = (void *)obj;
        fl_placement_fini(&rm->placement);
        free(rm);
        break;
    }
    case FL_OBJ_SIGNAL:
    case FL_OBJ_RM_SESSION: free(obj); break;
    }
}

void core_object_destroy(struct fl_object *obj)
{
    if (obj->dead) return;
    obj->dead = true;
    core_tokens_forget_object(obj);
    switch (obj->kind) {
    case FL_OBJ_DATASPACE: core_dataspace_destroy((void *)obj); break;
    case FL_OBJ_REGION_MAP: core_region_map_destroy((void *)obj); break;
    case FL_OBJ_SIGNAL: core_signal_destroy((void *)obj); break;
    case FL_OBJ_RM_SESSION: core_rm_session_destroy((void *)obj); break;
    }
    if (obj->owner) {
        fl_list_del(&obj->owner_link);
        obj->owner = NULL;
    }
    core_object_unref(obj); /* the owner's reference */
}
