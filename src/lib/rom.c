/* ROM dataspaces: open a module. */
#include "internal.h"

#include <string.h>

_Static_assert(FL_ROM_NAME_MAX + 1 == FL_ROM_NAME_BYTES, "the name field of ROM_OPEN");

int fl_rom_open(struct fl_env *env, const char *name, fl_cap *ds)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > FL_ROM_NAME_MAX) return -FL_E_INVALID_ARG;
    struct fl_req_rom_open q;
    fl__hdr(&q, FL_REQ_ROM_OPEN);
    memcpy(q.name, name, len); /* the rest stays zero */
    return fl__rpc_val(env, &q, sizeof(q), ds);
}
