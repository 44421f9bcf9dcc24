#include "protocol.h"

#include <faultline/error.h>
#include <string.h>

void fl_msg_init(void *msg, unsigned type, uint64_t id)
{
    struct fl_msg_hdr *h = msg;
    memset(msg, 0, fl_msg_size(type));
    h->magic = FL_PROTO_MAGIC;
    h->type = (uint16_t)type;
    h->id = id;
}

size_t fl_msg_size(unsigned type)
{
    switch (type) {
    case FL_REQ_HELLO: return sizeof(struct fl_req_hello);
    case FL_REQ_RAM_ALLOC: return sizeof(struct fl_req_ram_alloc);
    case FL_REQ_RAM_FREE:
    case FL_REQ_DS_SIZE:
    case FL_REQ_RM_DESTROY:
    case FL_REQ_RM_DATASPACE:
    case FL_REQ_RM_FAULT:
    case FL_REQ_SIG_FREE:
    case FL_REQ_SIG_SUBMIT:
    case FL_REQ_CAP_EXPORT:
    case FL_REQ_CAP_RELEASE: return sizeof(struct fl_req_cap);
    case FL_REQ_RM_ATTACH: return sizeof(struct fl_req_rm_attach);
    case FL_REQ_RM_DETACH: return sizeof(struct fl_req_rm_detach);
    case FL_REQ_RM_CREATE: return sizeof(struct fl_req_rm_create);
    case FL_REQ_RM_FAULT_HANDLER: return sizeof(struct fl_req_rm_fault_handler);
    case FL_REQ_SIG_ALLOC: return sizeof(struct fl_req_sig_alloc);
    case FL_REQ_CAP_IMPORT: return sizeof(struct fl_req_cap_import);
    case FL_REQ_SESSION_INFO: return sizeof(struct fl_req_session_info);
    case FL_REQ_PD_CREATE: return sizeof(struct fl_req_pd_create);
    case FL_REQ_PD_CLAIM: return sizeof(struct fl_req_pd_claim);
    case FL_REQ_PD_UPGRADE: return sizeof(struct fl_req_pd_upgrade);
    case FL_REQ_CTL_DUMP: return sizeof(struct fl_req_ctl_dump);
    case FL_MSG_CTL_LINE: return sizeof(struct fl_msg_ctl_line);
    case FL_MSG_AGENT_FAULT_PAGE: return sizeof(struct fl_msg_agent_fault_page);
    case FL_MSG_AGENT_ACK: return sizeof(struct fl_msg_agent_ack);
    case FL_MSG_EXEC_FAULT: return sizeof(struct fl_msg_exec_fault);
    case FL_MSG_REPLY: return sizeof(struct fl_msg_reply);
    case FL_MSG_AGENT_MAP: return sizeof(struct fl_msg_agent_map);
    case FL_MSG_AGENT_REVOKE: return sizeof(struct fl_msg_agent_revoke);
    case FL_MSG_AGENT_FORGET: return sizeof(struct fl_msg_agent_forget);
    case FL_MSG_AGENT_SIGBUS: return sizeof(struct fl_msg_agent_sigbus);
    case FL_MSG_AGENT_RESUME: return sizeof(struct fl_msg_agent_resume);
    default: return 0;
    }
}

unsigned fl_msg_max_fds(unsigned type)
{
    switch (type) {
    case FL_REQ_HELLO:
    case FL_REQ_SIG_ALLOC:
    case FL_MSG_AGENT_MAP:
    case FL_MSG_AGENT_FAULT_PAGE: return 1;
    default: return 0;
    }
}

int fl_msg_check(const void *buf, size_t len, const char **why)
{
    struct fl_msg_hdr h;
    if (len < sizeof(h)) {
        *why = "message shorter than its header";
        return -FL_E_PROTOCOL;
    }
    memcpy(&h, buf, sizeof(h));
    if (h.magic != FL_PROTO_MAGIC) {
        *why = "bad magic";
        return -FL_E_PROTOCOL;
    }
    size_t want = fl_msg_size(h.type);
    if (want == 0) {
        *why = "unknown message type";
        return -FL_E_PROTOCOL;
    }
    if (len != want) {
        *why = len < want ? "message truncated" : "message oversized";
        return -FL_E_PROTOCOL;
    }
    if (h.reserved != 0) {
        *why = "reserved header field not zero";
        return -FL_E_PROTOCOL;
    }
    switch (h.type) {
    case FL_REQ_HELLO: {
        const struct fl_req_hello *m = buf;
        if (m->flags & ~FL_HELLO_FLAGS_ALL) goto bad_flags;
        break;
    }
    case FL_REQ_RM_ATTACH: {
        const struct fl_req_rm_attach *m = buf;
        if (m->flags & ~FL_ATTACH_FLAGS_ALL) goto bad_flags;
        if (m->reserved) goto bad_reserved;
        break;
    }
    case FL_MSG_AGENT_ACK: {
        const struct fl_msg_agent_ack *m = buf;
        if (m->reserved) goto bad_reserved;
        break;
    }
    case FL_MSG_AGENT_MAP: {
        const struct fl_msg_agent_map *m = buf;
        if (m->flags & ~FL_MAP_FLAGS_ALL) goto bad_flags;
        if (m->reserved) goto bad_reserved;
        break;
    }
    case FL_MSG_REPLY: {
        const struct fl_msg_reply *m = buf;
        if (m->reserved) goto bad_reserved;
        break;
    }
    case FL_MSG_AGENT_SIGBUS: {
        const struct fl_msg_agent_sigbus *m = buf;
        if (m->reserved) goto bad_reserved;
        break;
    }
    case FL_REQ_CTL_DUMP: {
        const struct fl_req_ctl_dump *m = buf;
        if (m->what & ~FL_CTL_WHAT_ALL) goto bad_flags;
        if (m->reserved) goto bad_reserved;
        break;
    }
    case FL_MSG_CTL_LINE: {
        const struct fl_msg_ctl_line *m = buf;
        if (!memchr(m->text, 0, sizeof(m->text))) {
            *why = "text not terminated";
            return -FL_E_PROTOCOL;
        }
        break;
    }
    case FL_MSG_EXEC_FAULT: {
        const struct fl_msg_exec_fault *m = buf;
        if (m->reserved) goto bad_reserved;
        break;
    }
    default: break;
    }
    *why = NULL;
    return 0;
bad_flags:
    *why = "unknown flags";
    return -FL_E_PROTOCOL;
bad_reserved:
    *why = "reserved field not zero";
    return -FL_E_PROTOCOL;
}
