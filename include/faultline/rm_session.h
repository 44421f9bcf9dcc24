/* faultline: RM sessions (Genode's Rm_connection) — creating managed region maps. */
#ifndef FAULTLINE_RM_SESSION_H
#define FAULTLINE_RM_SESSION_H

#include <faultline/env.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * An RM session is a session of its own, funded from this component's PD
 * session (the env), as Genode's Rm_connection is: opening one moves
 * FL_RM_SESSION_RAM_QUOTA and FL_RM_SESSION_CAP_QUOTA of the env's quota to
 * it, of which the session itself takes 4 KiB and both capabilities. Every
 * managed region map is created from an RM session and paid from its quota
 * (12 KiB and one capability each, Genode's numbers; doc/limits.md). When
 * that runs out, fl_rm_create moves FL_RM_SESSION_UPGRADE_RAM or
 * FL_RM_SESSION_UPGRADE_CAPS more to it and tries again, as
 * Rm_connection::create does. Closing the session destroys every map created
 * from it and returns all its quota to the env. Only the env that opened an
 * RM session can use it; another that imported its capability gets
 * -FL_E_DENIED.
 */
#define FL_RM_SESSION_RAM_QUOTA    (64u * 1024) /* moved to it at open */
#define FL_RM_SESSION_CAP_QUOTA    2u
#define FL_RM_SESSION_UPGRADE_RAM  (8u * 1024) /* each upgrade fl_rm_create makes */
#define FL_RM_SESSION_UPGRADE_CAPS 2u

/* Open an RM session; *rms is its capability. Errors: -FL_E_OUT_OF_RAM,
 * -FL_E_OUT_OF_CAPS (the env's quota; nothing moves). */
int fl_rm_session_open(struct fl_env *env, fl_cap *rms);

/* Close an RM session: every region map created from it is destroyed, as
 * by fl_rm_destroy (returns once no component can touch what they showed),
 * and its quota returns to the env. Errors: -FL_E_INVALID_CAP, -FL_E_DENIED. */
int fl_rm_session_close(struct fl_env *env, fl_cap rms);

/* Move more quota from the env to an RM session it opened (Genode's session
 * upgrade); it returns to the env when the session closes. Errors:
 * -FL_E_OUT_OF_RAM / -FL_E_OUT_OF_CAPS (the env's quota; nothing moves),
 * -FL_E_INVALID_CAP, -FL_E_DENIED. */
int fl_rm_session_upgrade(struct fl_env *env, fl_cap rms, size_t ram_quota, size_t cap_quota);

/* Create a managed region map of size bytes (rounded up to 4 KiB), paid from
 * the RM session's quota. Size 0 makes an empty map, as on Genode: every
 * attach into it is -FL_E_REGION_CONFLICT (core's log warns). When the RM
 * session's quota does not suffice, this upgrades the session from the env
 * (FL_RM_SESSION_UPGRADE_RAM or _CAPS, whichever ran out) and tries again,
 * as Rm_connection::create does -- at most 4 upgrades, enough for any map.
 * Errors: -FL_E_OUT_OF_RAM, -FL_E_OUT_OF_CAPS (an upgrade the env's quota
 * cannot pay), -FL_E_INVALID_CAP, -FL_E_DENIED (an RM session another env
 * opened). */
int fl_rm_create(struct fl_env *env, fl_cap rms, size_t size, fl_cap *rm);

/* Destroy a managed region map created from this RM session; the
 * capability rm (and the map's dataspace capability of this env) dies with
 * it, and its charge returns to the RM session. Returns once no component
 * can touch what the map showed. Errors: -FL_E_INVALID_CAP (rm is not a map
 * of this RM session), -FL_E_DENIED. */
int fl_rm_destroy(struct fl_env *env, fl_cap rms, fl_cap rm);

#ifdef __cplusplus
}
#endif
#endif
