/* RM sessions: managed region maps. */
#include "internal.h"

int fl_rm_create(struct fl_env *env, size_t size, fl_cap *rm)
{
    struct fl_req_rm_create q;
    fl__hdr(&q, FL_REQ_RM_CREATE);
    q.size = size;
    struct fl_msg_reply rep;
    int r = fl__rpc(env, &q, sizeof(q), -1, &rep);
    if (r == 0) *rm = rep.val[0];
    return r;
}

int fl_rm_destroy(struct fl_env *env, fl_cap rm)
{
    return fl__cap_req(env, FL_REQ_RM_DESTROY, rm, NULL);
}
