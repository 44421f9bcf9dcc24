#include "protocol.h"

#include <faultline/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

void fl_msg_init(void *msg, unsigned type, uint64_t id)
{
    struct fl_msg_hdr *h = msg;
    memset(msg, 0, fl_msg_size(type));
    h->magic = FL_PROTO_MAGIC;
    h->type = (uint16_t)type;
    h->id = id;
}

#define CAP1(T, f, k) .ncaps = 1, .cap_off = {offsetof(T, f)}, .cap_kind = {k}
#define CAP2(T, f, k, g, l)                                                                        \
    .ncaps = 2, .cap_off = {offsetof(T, f), offsetof(T, g)}, .cap_kind = {k, l}
#define MSG(t, T, ...)   [t] = {.name = #t, .size = sizeof(T), __VA_ARGS__}
#define FLAGS(T, f, all) .flags_off = offsetof(T, f), .flags_all = all
#define RESERVED(T, f)   .reserved_off = offsetof(T, f)

const struct fl_msg_info fl_msg_table[FL_MSG_TYPE_MAX] = {
    MSG(FL_REQ_HELLO, struct fl_req_hello, .max_fds = 1,
        FLAGS(struct fl_req_hello, flags, FL_HELLO_FLAGS_ALL), .reply_cap = 2),
    MSG(FL_REQ_RAM_ALLOC, struct fl_req_ram_alloc, .reply_cap = 1),
    MSG(FL_REQ_RAM_FREE, struct fl_req_cap, CAP1(struct fl_req_cap, cap, FL_CAP_KIND_DATASPACE)),
    MSG(FL_REQ_DS_SIZE, struct fl_req_cap, CAP1(struct fl_req_cap, cap, FL_CAP_KIND_DATASPACE)),
    MSG(FL_REQ_RM_ATTACH, struct fl_req_rm_attach,
        CAP2(struct fl_req_rm_attach, rm, FL_CAP_KIND_REGION_MAP, ds, FL_CAP_KIND_DATASPACE),
        FLAGS(struct fl_req_rm_attach, flags, FL_ATTACH_FLAGS_ALL),
        RESERVED(struct fl_req_rm_attach, reserved)),
    MSG(FL_REQ_RM_DETACH, struct fl_req_rm_detach,
        CAP1(struct fl_req_rm_detach, rm, FL_CAP_KIND_REGION_MAP)),
    MSG(FL_REQ_RM_CREATE, struct fl_req_rm_create,
        CAP1(struct fl_req_rm_create, rms, FL_CAP_KIND_RM_SESSION), .reply_cap = 1),
    MSG(FL_REQ_RM_DESTROY, struct fl_req_rm_destroy,
        CAP2(struct fl_req_rm_destroy, rms, FL_CAP_KIND_RM_SESSION, rm, FL_CAP_KIND_REGION_MAP)),
    MSG(FL_REQ_RM_DATASPACE, struct fl_req_cap,
        CAP1(struct fl_req_cap, cap, FL_CAP_KIND_REGION_MAP), .reply_cap = 1),
    MSG(FL_REQ_RM_FAULT_HANDLER, struct fl_req_rm_fault_handler,
        CAP2(struct fl_req_rm_fault_handler, rm, FL_CAP_KIND_REGION_MAP, sigh, FL_CAP_KIND_SIGNAL)),
    MSG(FL_REQ_RM_FAULT, struct fl_req_cap, CAP1(struct fl_req_cap, cap, FL_CAP_KIND_REGION_MAP)),
    MSG(FL_REQ_SIG_ALLOC, struct fl_req_sig_alloc, .max_fds = 1, .reply_cap = 1),
    MSG(FL_REQ_SIG_FREE, struct fl_req_cap, CAP1(struct fl_req_cap, cap, FL_CAP_KIND_SIGNAL)),
    MSG(FL_REQ_SIG_SUBMIT, struct fl_req_cap, CAP1(struct fl_req_cap, cap, FL_CAP_KIND_SIGNAL)),
    MSG(FL_REQ_CAP_EXPORT, struct fl_req_cap, CAP1(struct fl_req_cap, cap, FL_CAP_KIND_ANY)),
    MSG(FL_REQ_CAP_IMPORT, struct fl_req_cap_import, .reply_cap = 1),
    MSG(FL_REQ_CAP_RELEASE, struct fl_req_cap, CAP1(struct fl_req_cap, cap, FL_CAP_KIND_ANY)),
    MSG(FL_REQ_SESSION_INFO, struct fl_req_session_info),
    MSG(FL_REQ_PD_CREATE, struct fl_req_pd_create, .reply_cap = 1),
    MSG(FL_REQ_PD_CLAIM, struct fl_req_pd_claim),
    MSG(FL_REQ_PD_UPGRADE, struct fl_req_pd_upgrade,
        CAP1(struct fl_req_pd_upgrade, pd, FL_CAP_KIND_REGION_MAP)),
    MSG(FL_REQ_ROM_OPEN, struct fl_req_rom_open, .reply_cap = 1),
    MSG(FL_REQ_CTL_DUMP, struct fl_req_ctl_dump,
        FLAGS(struct fl_req_ctl_dump, what, FL_CTL_WHAT_ALL),
        RESERVED(struct fl_req_ctl_dump, reserved)),
    MSG(FL_REQ_RM_SESSION_OPEN, struct fl_req_rm_session_open, .reply_cap = 1),
    MSG(FL_REQ_RM_SESSION_CLOSE, struct fl_req_cap,
        CAP1(struct fl_req_cap, cap, FL_CAP_KIND_RM_SESSION)),
    MSG(FL_REQ_RM_SESSION_UPGRADE, struct fl_req_rm_session_upgrade,
        CAP1(struct fl_req_rm_session_upgrade, rms, FL_CAP_KIND_RM_SESSION)),
    MSG(FL_REQ_SYNC_OFFER, struct fl_req_sync_offer,
        CAP1(struct fl_req_sync_offer, rm, FL_CAP_KIND_REGION_MAP)),
    MSG(FL_REQ_SYNC_CONNECT, struct fl_req_sync_connect,
        CAP1(struct fl_req_sync_connect, ds, FL_CAP_KIND_DATASPACE)),
    MSG(FL_REQ_SYNC_MEMFD, struct fl_req_sync_memfd,
        CAP1(struct fl_req_sync_memfd, ds, FL_CAP_KIND_DATASPACE),
        FLAGS(struct fl_req_sync_memfd, flags, FL_SYNC_TOKEN_WRITEABLE),
        RESERVED(struct fl_req_sync_memfd, reserved)),
    MSG(FL_REQ_SYNC_VERIFY, struct fl_req_sync_verify),
    MSG(FL_MSG_AGENT_ACK, struct fl_msg_agent_ack, RESERVED(struct fl_msg_agent_ack, reserved)),
    MSG(FL_MSG_EXEC_FAULT, struct fl_msg_exec_fault, RESERVED(struct fl_msg_exec_fault, reserved)),
    MSG(FL_MSG_REPLY, struct fl_msg_reply, RESERVED(struct fl_msg_reply, reserved)),
    MSG(FL_MSG_AGENT_MAP, struct fl_msg_agent_map, .max_fds = 1,
        FLAGS(struct fl_msg_agent_map, flags, FL_MAP_FLAGS_ALL),
        RESERVED(struct fl_msg_agent_map, reserved)),
    MSG(FL_MSG_AGENT_REVOKE, struct fl_msg_agent_revoke),
    MSG(FL_MSG_AGENT_FORGET, struct fl_msg_agent_forget),
    MSG(FL_MSG_AGENT_SIGBUS, struct fl_msg_agent_sigbus,
        RESERVED(struct fl_msg_agent_sigbus, reserved)),
    MSG(FL_MSG_AGENT_RESUME, struct fl_msg_agent_resume),
    MSG(FL_MSG_CTL_LINE, struct fl_msg_ctl_line),
    MSG(FL_MSG_AGENT_FAULT_PAGE, struct fl_msg_agent_fault_page, .max_fds = 1),
    MSG(FL_MSG_AGENT_SYNC_FD, struct fl_msg_agent_sync_fd, .max_fds = 1,
        RESERVED(struct fl_msg_agent_sync_fd, reserved)),
    MSG(FL_MSG_AGENT_ACK_NOW, struct fl_msg_agent_ack_now),
};

static const struct fl_msg_info *info(unsigned type)
{
    return type < FL_MSG_TYPE_MAX && fl_msg_table[type].name ? &fl_msg_table[type] : NULL;
}

size_t fl_msg_size(unsigned type)
{
    const struct fl_msg_info *i = info(type);
    return i ? i->size : 0;
}

unsigned fl_msg_max_fds(unsigned type)
{
    const struct fl_msg_info *i = info(type);
    return i ? i->max_fds : 0;
}

static uint32_t u32_at(const void *buf, unsigned off)
{
    uint32_t v;
    memcpy(&v, (const uint8_t *)buf + off, sizeof(v));
    return v;
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
    const struct fl_msg_info *i = info(h.type);
    if (i->flags_off && (u32_at(buf, i->flags_off) & ~i->flags_all)) {
        *why = "unknown flags";
        return -FL_E_PROTOCOL;
    }
    if (i->reserved_off && u32_at(buf, i->reserved_off)) {
        *why = "reserved field not zero";
        return -FL_E_PROTOCOL;
    }
    if (h.type == FL_REQ_ROM_OPEN) {
        const struct fl_req_rom_open *m = buf;
        const char *nul = memchr(m->name, 0, sizeof(m->name));
        bool rest_zero = true;
        for (const char *p = nul; p && p < m->name + sizeof(m->name); p++) rest_zero &= !*p;
        if (!nul || !rest_zero) {
            *why = nul ? "bytes after the name not zero" : "name not terminated";
            return -FL_E_PROTOCOL;
        }
    }
    if (h.type == FL_MSG_CTL_LINE) {
        const struct fl_msg_ctl_line *m = buf;
        if (!memchr(m->text, 0, sizeof(m->text))) {
            *why = "text not terminated";
            return -FL_E_PROTOCOL;
        }
    }
    *why = NULL;
    return 0;
}
