/* faultline: RAM dataspaces (Genode's Ram_allocator of the PD session). */
#ifndef FAULTLINE_RAM_H
#define FAULTLINE_RAM_H

#include <faultline/env.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Allocate a zero-filled RAM dataspace of size bytes, rounded up to 4 KiB.
 * The memory is committed here (never discovered missing later) and charged
 * to the session's RAM quota, plus one capability.
 * Errors: -FL_E_DENIED (size 0), -FL_E_OUT_OF_RAM, -FL_E_OUT_OF_CAPS.
 */
int fl_ram_alloc(struct fl_env *env, size_t size, fl_cap *ds);

/*
 * Free a dataspace this session allocated. Its memory is revoked everywhere
 * at once (the kernel zaps every mapping of it); regions it was attached as
 * stay reserved until detached. The capability ds dies with it (other
 * capabilities of the dataspace, e.g. imported ones, name a dead dataspace
 * until released). Errors: -FL_E_INVALID_DATASPACE.
 */
int fl_ram_free(struct fl_env *env, fl_cap ds);

/* Size of a dataspace (RAM or managed). Errors: -FL_E_INVALID_DATASPACE. */
int fl_dataspace_size(struct fl_env *env, fl_cap ds, size_t *size);

#ifdef __cplusplus
}
#endif
#endif
