#include "config.h"

#include <faultline/env.h>
#include <faultline/error.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/un.h>
#include <unistd.h>

/* The one rule for where core listens, shared by core, libfaultline and
 * faultline-ctl. */
int fl_config_socket_path(char *buf, size_t len, const char **from)
{
    const char *env = getenv("FAULTLINE_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (env && *env) {
        *from = "$FAULTLINE_SOCKET";
        return snprintf(buf, len, "%s", env);
    }
    if (xdg && *xdg) {
        *from = "$XDG_RUNTIME_DIR/faultline/core.sock";
        return snprintf(buf, len, "%s/faultline/core.sock", xdg);
    }
    *from = "the default, /tmp/faultline-$UID/core.sock";
    return snprintf(buf, len, "/tmp/faultline-%u/core.sock", (unsigned)getuid());
}

int fl_socket_path(char *buf, size_t len)
{
    const char *from;
    int n = fl_config_socket_path(buf, len, &from);
    return n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)
               ? -FL_E_INVALID_ARG
               : 0;
}
