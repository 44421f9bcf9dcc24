/* faultline-core: a listening socket passed by a service manager (activation.c). */
#ifndef FL_CORE_ACTIVATION_H
#define FL_CORE_ACTIVATION_H

#include <stddef.h>

/* systemd's socket activation (sd_listen_fds, without libsystemd): the
 * listening socket passed as fd 3 (close-on-exec and non-blocking now, its
 * address in path); -1 when none was passed to this process; -2 after saying
 * why the one passed cannot be used. Removes LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES from the environment either way. */
int core_activation_socket(char *path, size_t len);

#endif
