#include <faultline/env.h>
#include <faultline/error.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The one rule for where core listens, shared by core and libfaultline. */
int fl_socket_path(char *buf, size_t len)
{
    const char *env = getenv("FAULTLINE_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (env && *env)
        n = snprintf(buf, len, "%s", env);
    else if (xdg && *xdg)
        n = snprintf(buf, len, "%s/faultline/core.sock", xdg);
    else
        n = snprintf(buf, len, "/tmp/faultline-%u/core.sock", (unsigned)getuid());
    return n < 0 || (size_t)n >= len ? -FL_E_INVALID_ARG : 0;
}
