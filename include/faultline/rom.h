/* faultline: ROM dataspaces (Genode's ROM session: core's boot modules). */
#ifndef FAULTLINE_ROM_H
#define FAULTLINE_ROM_H

#include <faultline/env.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The longest module name fl_rom_open takes, in bytes. */
#define FL_ROM_NAME_MAX 95

/*
 * Open ROM module `name` and get a capability to its dataspace in *ds
 * (Genode's Rom_connection and its dataspace()). Core serves the regular
 * files of the directory it was started with (`faultline-core --rom-dir
 * DIR`); name is a file name in it, not a path. The dataspace is read-only
 * and the same memory for every session that opens the module: its content
 * is a snapshot of the file, taken when the module is opened while no
 * session holds it, and nothing -- neither core nor a process holding its
 * descriptor -- can ever write it. Attached with writeable set it is still
 * mapped read-only (the rights of an attachment are what it asks and what the
 * dataspace allows), and a write to it, by the program or by the kernel in a
 * system call, is a WRITE fault reflected to the region map.
 *
 * Each open costs this session Genode's ROM-session quota, 6 KiB of RAM and
 * 3 capabilities, whatever the module's size (its memory is core's, charged
 * to core's RAM budget once), until the capability is released
 * (fl_cap_release) or the session ends. Every open returns a new capability.
 *
 * Errors: -FL_E_INVALID_ARG (name empty, longer than FL_ROM_NAME_MAX, with a
 * '/', "." or "..", or a control character); -FL_E_DENIED (no such module:
 * missing, a symbolic link, a directory or other non-regular file, an empty
 * file, or core serves no ROM modules; core's log says which);
 * -FL_E_OUT_OF_RAM (this session's quota, or the module does not fit core's
 * RAM budget), -FL_E_OUT_OF_CAPS.
 */
int fl_rom_open(struct fl_env *env, const char *name, fl_cap *ds);

#ifdef __cplusplus
}
#endif
#endif
