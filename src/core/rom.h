/* faultline-core: ROM dataspaces, the files of --rom-dir (rom.c). */
#ifndef FL_CORE_ROM_H
#define FL_CORE_ROM_H

#include <stdint.h>

struct fl_session;

/* Serve the plain files of dir as ROM modules (--rom-dir): 0, or -1 with a
 * log line (dir cannot be opened as a directory). Without it every open is
 * DENIED. */
int core_rom_init(const char *dir);
/* ROM_OPEN (rpc.c's table). */
int core_rom_rpc_open(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);

#endif
