/*
 * Requests: one table from message type to handler. Each handler lives in the
 * file of the concept it belongs to (as each RPC is a method of its object on
 * Genode) and has one shape: it returns the reply's status (0 or -errno) with
 * up to four values, and core replies; or CORE_RPC_DEFERRED when it replied
 * itself, will reply later (a worker, a revocation barrier), or the message is
 * not answered at all. What each reply carries is documented with struct
 * fl_msg_reply in src/common/protocol.h.
 */
#include "../common/probe.h"
#include <faultline/error.h>
#include "ctl.h"
#include "mapping.h"
#include "pd.h"
#include "rom.h"
#include "rpc.h"
#include "session.h"
#include "sync_channel.h"
#include "worker.h"

#include <errno.h>

/*
 * Inside core errors are -errno; they become Genode's names here, at the
 * boundary, when a reply carries them. The one table.
 */
static const struct {
    int err, fl;
} errors[] = {
    {EPERM, FL_E_DENIED},            /* not permitted (not its child, its RM session, a module) */
    {ENOMEM, FL_E_OUT_OF_RAM},       /* RAM quota or core's RAM budget */
    {EMFILE, FL_E_OUT_OF_CAPS},      /* capability quota, table, or core's descriptors */
    {ENXIO, FL_E_INVALID_DATASPACE}, /* not a (ready) dataspace of this session */
    {EEXIST, FL_E_REGION_CONFLICT},  /* bad offset or size, or the range is taken */
    {EBADF, FL_E_INVALID_CAP},       /* names nothing (of that kind) here */
    {EINVAL, FL_E_INVALID_ARG},      /* an argument out of range */
    {EPROTO, FL_E_PROTOCOL},         /* a malformed message */
    {EPROTONOSUPPORT, FL_E_VERSION}, /* another protocol version */
    {ENOKEY, FL_E_TOKEN},            /* export token unknown, used, or its object gone */
    {EACCES, FL_E_PERMISSION},       /* a peer core does not serve */
    {EBUSY, FL_E_BUSY},              /* a wait: a new connection, an agent's credit */
};

int core_rpc_status(int err)
{
    if (err >= 0) return err;
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
        if (errors[i].err == -err) return -errors[i].fl;
    return -FL_E_SYSTEM; /* the log says which */
}

static int rpc_hello_again(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)msg, (void)fd, (void)v;
    core_session_close(s, "protocol violation: second HELLO");
    return CORE_RPC_DEFERRED;
}

static int rpc_ctl_dump(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd, (void)v;
    core_ctl_dump(s, msg); /* lines, then the reply */
    return CORE_RPC_DEFERRED;
}

static const core_rpc_fn handlers[FL_MSG_TYPE_MAX] = {
    [FL_REQ_HELLO] = rpc_hello_again,
    [FL_REQ_RAM_ALLOC] = core_ram_rpc_alloc,
    [FL_REQ_RAM_FREE] = core_ram_rpc_free,
    [FL_REQ_DS_SIZE] = core_ds_rpc_size,
    [FL_REQ_RM_ATTACH] = core_rm_rpc_attach,
    [FL_REQ_RM_DETACH] = core_rm_rpc_detach,
    [FL_REQ_RM_CREATE] = core_rm_rpc_create,
    [FL_REQ_RM_DESTROY] = core_rm_rpc_destroy,
    [FL_REQ_RM_DATASPACE] = core_rm_rpc_dataspace,
    [FL_REQ_RM_FAULT_HANDLER] = core_rm_rpc_fault_handler,
    [FL_REQ_RM_FAULT] = core_rm_rpc_fault,
    [FL_REQ_SIG_ALLOC] = core_signal_rpc_alloc,
    [FL_REQ_SIG_FREE] = core_signal_rpc_free,
    [FL_REQ_SIG_SUBMIT] = core_signal_rpc_submit,
    [FL_REQ_CAP_EXPORT] = core_cap_rpc_export,
    [FL_REQ_CAP_IMPORT] = core_cap_rpc_import,
    [FL_REQ_CAP_RELEASE] = core_cap_rpc_release,
    [FL_REQ_SESSION_INFO] = core_pd_rpc_session_info,
    [FL_REQ_PD_CREATE] = core_pd_rpc_create,
    [FL_REQ_PD_UPGRADE] = core_pd_rpc_upgrade,
    [FL_REQ_CTL_DUMP] = rpc_ctl_dump,
    [FL_REQ_ROM_OPEN] = core_rom_rpc_open,
    [FL_REQ_RM_SESSION_OPEN] = core_rm_session_rpc_open,
    [FL_REQ_RM_SESSION_CLOSE] = core_rm_session_rpc_close,
    [FL_REQ_RM_SESSION_UPGRADE] = core_rm_session_rpc_upgrade,
    [FL_REQ_SYNC_OFFER] = core_sync_rpc_offer,
    [FL_REQ_SYNC_CONNECT] = core_sync_rpc_connect,
    [FL_REQ_SYNC_MEMFD] = core_sync_rpc_memfd,
    [FL_REQ_SYNC_VERIFY] = core_sync_rpc_verify,
    [FL_MSG_AGENT_ACK] = core_agent_rpc_ack,
    [FL_MSG_EXEC_FAULT] = core_fault_rpc_exec,
};

void core_rpc_dispatch(struct fl_session *s, const void *buf, int fd)
{
    const struct fl_msg_hdr *h = buf;
    FL_PROBE3(rpc_begin, s->id, h->type, h->id);
    core_mapping_eager_budget();

    /* Before HELLO a connection can only say hello, or claim a session its
     * parent created (Genode's PD session). */
    if (!s->hello_done) {
        if (h->type == FL_REQ_PD_CLAIM && !s->parent_id) {
            if (fd >= 0) core_worker_close(fd);
            core_pd_claim(s, buf);
        } else if (h->type == FL_REQ_HELLO) {
            core_session_hello(s, buf, fd);
        } else {
            if (fd >= 0) core_worker_close(fd);
            core_session_close(s, "protocol violation: request before HELLO");
        }
        return;
    }
    core_rpc_fn fn = h->type < FL_MSG_TYPE_MAX ? handlers[h->type] : NULL;
    if (!fn) {
        if (fd >= 0) core_worker_close(fd);
        core_session_close(s, "protocol violation: a message core does not accept");
        return;
    }
    uint64_t v[4] = {0};
    int r = fn(s, buf, &fd, v);
    if (fd >= 0) core_worker_close(fd); /* the handler did not take it */
    if (r != CORE_RPC_DEFERRED && !s->closing) core_session_reply(s, h->id, r, v, 4);
}
