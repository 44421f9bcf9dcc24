/* RAM dataspaces: alloc, free, size. */
#include "internal.h"

int fl_ram_alloc(struct fl_env *env, size_t size, fl_cap *ds)
{
    struct fl_req_ram_alloc q;
    fl__hdr(&q, FL_REQ_RAM_ALLOC);
    q.size = size;
    return fl__rpc_val(env, &q, sizeof(q), ds);
}

int fl_ram_free(struct fl_env *env, fl_cap ds)
{
    return fl__cap_req(env, FL_REQ_RAM_FREE, ds, NULL);
}

int fl_dataspace_size(struct fl_env *env, fl_cap ds, size_t *size)
{
    struct fl_msg_reply rep;
    int r = fl__cap_req(env, FL_REQ_DS_SIZE, ds, &rep);
    if (r == 0) *size = rep.val[0];
    return r;
}
