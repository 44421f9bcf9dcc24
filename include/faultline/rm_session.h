/* faultline: RM sessions — creating managed region maps. */
#ifndef FAULTLINE_RM_SESSION_H
#define FAULTLINE_RM_SESSION_H

#include <faultline/env.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Create a managed region map of size bytes (rounded up to 4 KiB), paid from
 * this session's quota. Size 0 makes an empty map, as on Genode: every attach
 * into it is -FL_E_REGION_CONFLICT (core's log warns). Errors:
 * -FL_E_OUT_OF_RAM, -FL_E_OUT_OF_CAPS. */
int fl_rm_create(struct fl_env *env, size_t size, fl_cap *rm);

/* Destroy a managed region map this session created; the capability rm dies
 * with it. Returns once no component can touch what the map showed. */
int fl_rm_destroy(struct fl_env *env, fl_cap rm);

#ifdef __cplusplus
}
#endif
#endif
