/*
 * Unit tests of the wire protocol checks (src/common/protocol.c): message
 * sizes, descriptor counts, and fl_msg_check's rejection of every kind of
 * malformed datagram.
 */
#include "check_main.h"
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <faultline/error.h>
#include "protocol.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct type_size {
    unsigned type;
    size_t size;      /* sizeof the struct */
    size_t wire_size; /* the layout's size in bytes, written out */
    unsigned max_fds;
};

/* Every known type; the wire sizes are fixed by the layouts (no padding). */
static const struct type_size known[] = {
    {FL_REQ_HELLO, sizeof(struct fl_req_hello), 40, 1},
    {FL_REQ_RAM_ALLOC, sizeof(struct fl_req_ram_alloc), 24, 0},
    {FL_REQ_RAM_FREE, sizeof(struct fl_req_cap), 24, 0},
    {FL_REQ_DS_SIZE, sizeof(struct fl_req_cap), 24, 0},
    {FL_REQ_RM_ATTACH, sizeof(struct fl_req_rm_attach), 64, 0},
    {FL_REQ_RM_DETACH, sizeof(struct fl_req_rm_detach), 32, 0},
    {FL_REQ_RM_CREATE, sizeof(struct fl_req_rm_create), 32, 0},
    {FL_REQ_RM_DESTROY, sizeof(struct fl_req_rm_destroy), 32, 0},
    {FL_REQ_RM_DATASPACE, sizeof(struct fl_req_cap), 24, 0},
    {FL_REQ_RM_FAULT_HANDLER, sizeof(struct fl_req_rm_fault_handler), 32, 0},
    {FL_REQ_RM_FAULT, sizeof(struct fl_req_cap), 24, 0},
    {FL_REQ_SIG_ALLOC, sizeof(struct fl_req_sig_alloc), 16, 1},
    {FL_REQ_SIG_FREE, sizeof(struct fl_req_cap), 24, 0},
    {FL_REQ_SIG_SUBMIT, sizeof(struct fl_req_cap), 24, 0},
    {FL_REQ_CAP_EXPORT, sizeof(struct fl_req_cap), 24, 0},
    {FL_REQ_CAP_IMPORT, sizeof(struct fl_req_cap_import), 32, 0},
    {FL_REQ_CAP_RELEASE, sizeof(struct fl_req_cap), 24, 0},
    {FL_REQ_SESSION_INFO, sizeof(struct fl_req_session_info), 16, 0},
    {FL_REQ_PD_CREATE, sizeof(struct fl_req_pd_create), 48, 0},
    {FL_REQ_PD_CLAIM, sizeof(struct fl_req_pd_claim), 32, 0},
    {FL_REQ_PD_UPGRADE, sizeof(struct fl_req_pd_upgrade), 40, 0},
    {FL_REQ_CTL_DUMP, sizeof(struct fl_req_ctl_dump), 24, 0},
    {FL_REQ_RM_SESSION_OPEN, sizeof(struct fl_req_rm_session_open), 32, 0},
    {FL_REQ_RM_SESSION_CLOSE, sizeof(struct fl_req_cap), 24, 0},
    {FL_REQ_RM_SESSION_UPGRADE, sizeof(struct fl_req_rm_session_upgrade), 40, 0},
    {FL_REQ_ROM_OPEN, sizeof(struct fl_req_rom_open), 112, 0},
    {FL_REQ_SYNC_OFFER, sizeof(struct fl_req_sync_offer), 24, 0},
    {FL_REQ_SYNC_CONNECT, sizeof(struct fl_req_sync_connect), 24, 0},
    {FL_REQ_SYNC_MEMFD, sizeof(struct fl_req_sync_memfd), 32, 0},
    {FL_REQ_SYNC_VERIFY, sizeof(struct fl_req_sync_verify), 40, 0},
    {FL_MSG_AGENT_SYNC_FD, sizeof(struct fl_msg_agent_sync_fd), 56, 1},
    {FL_MSG_CTL_LINE, sizeof(struct fl_msg_ctl_line), 128, 0},
    {FL_MSG_AGENT_FAULT_PAGE, sizeof(struct fl_msg_agent_fault_page), 16, 1},
    {FL_MSG_AGENT_ACK, sizeof(struct fl_msg_agent_ack), 24, 0},
    {FL_MSG_EXEC_FAULT, sizeof(struct fl_msg_exec_fault), 32, 0},
    {FL_MSG_REPLY, sizeof(struct fl_msg_reply), 72, 0},
    {FL_MSG_AGENT_MAP, sizeof(struct fl_msg_agent_map), 56, 1},
    {FL_MSG_AGENT_REVOKE, sizeof(struct fl_msg_agent_revoke), 32, 0},
    {FL_MSG_AGENT_FORGET, sizeof(struct fl_msg_agent_forget), 24, 0},
    {FL_MSG_AGENT_SIGBUS, sizeof(struct fl_msg_agent_sigbus), 32, 0},
    {FL_MSG_AGENT_RESUME, sizeof(struct fl_msg_agent_resume), 40, 0},
    {FL_MSG_AGENT_ACK_NOW, sizeof(struct fl_msg_agent_ack_now), 16, 0},
};

static int is_known(unsigned type)
{
    for (size_t i = 0; i < ARRAY_LEN(known); i++)
        if (known[i].type == type) return 1;
    return 0;
}

/* A receive buffer as large as a receiver's, suitably aligned. */
struct msgbuf {
    alignas(max_align_t) unsigned char b[FL_MSG_MAX + 1];
};

/* The scalar fields of a well-formed message with plausible nonzero payload,
 * by type: where, how wide, what value (stored in the field's width). */
struct payload {
    unsigned type;
    size_t off, width;
    uint64_t v;
};
#define PAYLOAD(T, type, f, v)                                                                     \
    {                                                                                              \
        type, offsetof(struct T, f), sizeof(((struct T *)0)->f), (uint64_t)(v)                     \
    }
static const struct payload payloads[] = {
    PAYLOAD(fl_req_hello, FL_REQ_HELLO, version, FL_PROTO_VERSION),
    PAYLOAD(fl_req_hello, FL_REQ_HELLO, flags, FL_HELLO_UFFD),
    PAYLOAD(fl_req_hello, FL_REQ_HELLO, window_base, 0x7f0000000000ull),
    PAYLOAD(fl_req_hello, FL_REQ_HELLO, window_size, 1ull << 30),
    PAYLOAD(fl_req_rm_create, FL_REQ_RM_CREATE, rms, 5),
    PAYLOAD(fl_req_rm_create, FL_REQ_RM_CREATE, size, 0x100000),
    PAYLOAD(fl_req_rm_destroy, FL_REQ_RM_DESTROY, rms, 5),
    PAYLOAD(fl_req_rm_destroy, FL_REQ_RM_DESTROY, rm, 3),
    PAYLOAD(fl_req_rm_session_open, FL_REQ_RM_SESSION_OPEN, ram_quota, 64 << 10),
    PAYLOAD(fl_req_rm_session_open, FL_REQ_RM_SESSION_OPEN, cap_quota, 2),
    PAYLOAD(fl_req_rm_session_upgrade, FL_REQ_RM_SESSION_UPGRADE, rms, 5),
    PAYLOAD(fl_req_rm_session_upgrade, FL_REQ_RM_SESSION_UPGRADE, ram_quota, 8 << 10),
    PAYLOAD(fl_req_rm_session_upgrade, FL_REQ_RM_SESSION_UPGRADE, cap_quota, 2),
    PAYLOAD(fl_req_rm_attach, FL_REQ_RM_ATTACH, rm, 3),
    PAYLOAD(fl_req_rm_attach, FL_REQ_RM_ATTACH, ds, 4),
    PAYLOAD(fl_req_rm_attach, FL_REQ_RM_ATTACH, size, 0x4000),
    PAYLOAD(fl_req_rm_attach, FL_REQ_RM_ATTACH, offset, 0x1000),
    PAYLOAD(fl_req_rm_attach, FL_REQ_RM_ATTACH, at, 0x10000),
    PAYLOAD(fl_req_rm_attach, FL_REQ_RM_ATTACH, flags, FL_ATTACH_USE_AT | FL_ATTACH_WRITEABLE),
    PAYLOAD(fl_req_rm_detach, FL_REQ_RM_DETACH, rm, 3),
    PAYLOAD(fl_req_rm_detach, FL_REQ_RM_DETACH, at, 0x10000),
    PAYLOAD(fl_req_rm_fault_handler, FL_REQ_RM_FAULT_HANDLER, rm, 3),
    PAYLOAD(fl_req_rm_fault_handler, FL_REQ_RM_FAULT_HANDLER, sigh, 9),
    PAYLOAD(fl_msg_reply, FL_MSG_REPLY, status, -FL_E_REGION_CONFLICT),
    PAYLOAD(fl_msg_agent_map, FL_MSG_AGENT_MAP, va, 0x7f0000010000ull),
    PAYLOAD(fl_msg_agent_map, FL_MSG_AGENT_MAP, len, 0x4000),
    PAYLOAD(fl_msg_agent_map, FL_MSG_AGENT_MAP, memfd_id, 7),
    PAYLOAD(fl_msg_agent_map, FL_MSG_AGENT_MAP, offset, 0x2000),
    PAYLOAD(fl_msg_agent_map, FL_MSG_AGENT_MAP, flags, FL_MAP_WRITE | FL_MAP_FD_ATTACHED),
    PAYLOAD(fl_msg_agent_revoke, FL_MSG_AGENT_REVOKE, va, 0x7f0000010000ull),
    PAYLOAD(fl_msg_agent_revoke, FL_MSG_AGENT_REVOKE, len, 0x4000),
    PAYLOAD(fl_msg_exec_fault, FL_MSG_EXEC_FAULT, tid, 1234),
    PAYLOAD(fl_msg_exec_fault, FL_MSG_EXEC_FAULT, addr, 0x7f0000012345ull),
    PAYLOAD(fl_msg_agent_resume, FL_MSG_AGENT_RESUME, va, 0x7f0000012000ull),
    PAYLOAD(fl_msg_agent_resume, FL_MSG_AGENT_RESUME, len, 0x1000),
    PAYLOAD(fl_req_pd_create, FL_REQ_PD_CREATE, ram_quota, 1 << 20),
    PAYLOAD(fl_req_pd_create, FL_REQ_PD_CREATE, cap_quota, 16),
    PAYLOAD(fl_req_pd_create, FL_REQ_PD_CREATE, window_base, 0x200000000000ull),
    PAYLOAD(fl_req_pd_create, FL_REQ_PD_CREATE, window_size, 1 << 30),
    PAYLOAD(fl_req_pd_upgrade, FL_REQ_PD_UPGRADE, pd, 5),
    PAYLOAD(fl_req_pd_upgrade, FL_REQ_PD_UPGRADE, ram_quota, 1 << 20),
    PAYLOAD(fl_req_pd_upgrade, FL_REQ_PD_UPGRADE, cap_quota, 8),
    PAYLOAD(fl_req_sync_memfd, FL_REQ_SYNC_MEMFD, ds, 42),
    PAYLOAD(fl_req_sync_memfd, FL_REQ_SYNC_MEMFD, flags, FL_SYNC_TOKEN_WRITEABLE),
    PAYLOAD(fl_req_sync_verify, FL_REQ_SYNC_VERIFY, channel, 3),
    PAYLOAD(fl_msg_agent_sync_fd, FL_MSG_AGENT_SYNC_FD, kind, FL_SYNC_FD_PEER),
    PAYLOAD(fl_msg_agent_sync_fd, FL_MSG_AGENT_SYNC_FD, handle, 3),
    PAYLOAD(fl_msg_agent_sync_fd, FL_MSG_AGENT_SYNC_FD, offer, 1),
    PAYLOAD(fl_msg_agent_sync_fd, FL_MSG_AGENT_SYNC_FD, peer_session, 2),
    PAYLOAD(fl_msg_agent_sync_fd, FL_MSG_AGENT_SYNC_FD, peer_pid, 1234),
    PAYLOAD(fl_req_ram_alloc, FL_REQ_RAM_ALLOC, size, 0x10000),
    PAYLOAD(fl_msg_agent_ack, FL_MSG_AGENT_ACK, result, -12),
    PAYLOAD(fl_msg_agent_forget, FL_MSG_AGENT_FORGET, memfd_id, 7),
    PAYLOAD(fl_msg_agent_sigbus, FL_MSG_AGENT_SIGBUS, tid, 1234),
    PAYLOAD(fl_req_ctl_dump, FL_REQ_CTL_DUMP, what, FL_CTL_WHAT_ALL),
};

static void set_field(unsigned char *p, size_t width, uint64_t v)
{
    uint8_t v8 = (uint8_t)v;
    uint16_t v16 = (uint16_t)v;
    uint32_t v32 = (uint32_t)v;
    const void *src = width == 1   ? (const void *)&v8
                      : width == 2 ? (const void *)&v16
                      : width == 4 ? (const void *)&v32
                                   : (const void *)&v;
    ck_assert(width == 1 || width == 2 || width == 4 || width == 8);
    memcpy(p, src, width);
}

/* A well-formed message of the given type with plausible nonzero payload. */
static size_t build(struct msgbuf *m, unsigned type)
{
    memset(m, 0, sizeof(*m));
    size_t len = fl_msg_size(type);
    ck_assert_uint_ne(len, 0);
    struct fl_msg_hdr h = {.magic = FL_PROTO_MAGIC, .type = (uint16_t)type, .id = 0x1234567890ull};
    memcpy(m->b, &h, sizeof(h));
    bool set = false;
    for (size_t i = 0; i < ARRAY_LEN(payloads); i++)
        if (payloads[i].type == type) {
            ck_assert_uint_le(payloads[i].off + payloads[i].width, len);
            set_field(m->b + payloads[i].off, payloads[i].width, payloads[i].v);
            set = true;
        }
    /* Arrays and strings. */
    switch (type) {
    case FL_REQ_CAP_IMPORT: {
        struct fl_req_cap_import *r = (void *)m->b;
        for (int i = 0; i < FL_TOKEN_BYTES; i++) r->token[i] = (uint8_t)(0xa0 + i);
        break;
    }
    case FL_MSG_REPLY: {
        struct fl_msg_reply *r = (void *)m->b;
        for (int i = 0; i < 4; i++) r->val[i] = UINT64_MAX - (uint64_t)i;
        memset(r->token, 0xff, sizeof(r->token));
        break;
    }
    case FL_REQ_SYNC_VERIFY:
        memset(((struct fl_req_sync_verify *)(void *)m->b)->token, 0xcd, FL_TOKEN_BYTES);
        break;
    case FL_MSG_CTL_LINE: strcpy(((struct fl_msg_ctl_line *)(void *)m->b)->text, "a line"); break;
    case FL_REQ_ROM_OPEN: strcpy(((struct fl_req_rom_open *)(void *)m->b)->name, "config"); break;
    case FL_REQ_PD_CLAIM: memset(((struct fl_req_pd_claim *)(void *)m->b)->token, 0xab, 16); break;
    case FL_REQ_SIG_ALLOC:
    case FL_MSG_AGENT_FAULT_PAGE:
    case FL_MSG_AGENT_ACK_NOW:
    case FL_REQ_SESSION_INFO: break;
    default:
        if (set) break;
        /* the one-capability requests */
        ck_assert_uint_eq(len, sizeof(struct fl_req_cap));
        ((struct fl_req_cap *)(void *)m->b)->cap = 42;
        break;
    }
    return len;
}

static void set_type(struct msgbuf *m, unsigned type)
{
    uint16_t t = (uint16_t)type;
    memcpy(m->b + offsetof(struct fl_msg_hdr, type), &t, sizeof(t));
}

/* fl_msg_check must reject with -FL_E_PROTOCOL and a why containing word. */
static void expect_reject(const void *buf, size_t len, const char *word, const char *what)
{
    const char *why = NULL;
    int rc = fl_msg_check(buf, len, &why);
    ck_assert_msg(rc == -FL_E_PROTOCOL, "%s (len %zu): rc %d, want %d", what, len, rc,
                  -FL_E_PROTOCOL);
    ck_assert_msg(why != NULL, "%s (len %zu): no why", what, len);
    ck_assert_msg(strstr(why, word) != NULL, "%s (len %zu): why \"%s\" lacks \"%s\"", what, len,
                  why, word);
}

static void expect_accept(const void *buf, size_t len, const char *what)
{
    const char *why = "not set";
    int rc = fl_msg_check(buf, len, &why);
    ck_assert_msg(rc == 0, "%s (len %zu): rc %d (%s)", what, len, rc, why ? why : "null");
    ck_assert_msg(why == NULL, "%s: why not cleared on success", what);
}

/* ----------------------------------------------------------- sizes, fds */

START_TEST(test_constants)
{
    ck_assert_int_eq(FL_E_PROTOCOL, 8);
    ck_assert_uint_eq(FL_PROTO_MAGIC, 0x464c5431u);
    ck_assert_uint_eq(sizeof(struct fl_msg_hdr), 16);
    ck_assert_uint_eq(offsetof(struct fl_msg_hdr, magic), 0);
    ck_assert_uint_eq(offsetof(struct fl_msg_hdr, type), 4);
    ck_assert_uint_eq(offsetof(struct fl_msg_hdr, reserved), 6);
    ck_assert_uint_eq(offsetof(struct fl_msg_hdr, id), 8);
    ck_assert_uint_eq(ARRAY_LEN(known), 42);
    ck_assert_uint_eq(FL_HELLO_FLAGS_ALL, FL_HELLO_UFFD | FL_HELLO_USER_MODE_UFFD);
    ck_assert_uint_eq(FL_ATTACH_FLAGS_ALL,
                      FL_ATTACH_USE_AT | FL_ATTACH_EXECUTABLE | FL_ATTACH_WRITEABLE);
    ck_assert_uint_eq(FL_MAP_FLAGS_ALL, FL_MAP_WRITE | FL_MAP_EXEC | FL_MAP_FD_ATTACHED);
}
END_TEST

START_TEST(test_size_of_every_known_type)
{
    const struct type_size *k = &known[_i];
    ck_assert_msg(fl_msg_size(k->type) == k->size, "type %u: size %zu, want %zu", k->type,
                  fl_msg_size(k->type), k->size);
    ck_assert_msg(k->size == k->wire_size, "type %u: struct is %zu bytes, layout says %zu", k->type,
                  k->size, k->wire_size);
    ck_assert_uint_ge(k->size, sizeof(struct fl_msg_hdr));
    ck_assert_uint_le(k->size, FL_MSG_MAX);
}
END_TEST

START_TEST(test_size_of_unknown_types)
{
    for (unsigned t = 0; t <= 0x10001; t++) {
        if (is_known(t)) continue;
        if (fl_msg_size(t) != 0) ck_abort_msg("type %u: size %zu, want 0", t, fl_msg_size(t));
    }
    ck_assert_uint_eq(fl_msg_size(FL_MSG_NONE), 0);
    ck_assert_uint_eq(fl_msg_size(FL_MSG_TYPE_MAX), 0);
    ck_assert_uint_eq(fl_msg_size(26), 0);
    ck_assert_uint_eq(fl_msg_size(41), 0);
    ck_assert_uint_eq(fl_msg_size(34), 0);
    ck_assert_uint_eq(fl_msg_size(63), 0);
    ck_assert_uint_eq(fl_msg_size(200), 0);
    ck_assert_uint_eq(fl_msg_size(UINT32_MAX), 0);
    ck_assert_uint_eq(fl_msg_size(0x10000u + FL_REQ_HELLO), 0);
}
END_TEST

START_TEST(test_max_fds)
{
    for (size_t i = 0; i < ARRAY_LEN(known); i++)
        ck_assert_msg(fl_msg_max_fds(known[i].type) == known[i].max_fds,
                      "type %u: max fds %u, want %u", known[i].type, fl_msg_max_fds(known[i].type),
                      known[i].max_fds);
    ck_assert_uint_eq(fl_msg_max_fds(FL_REQ_HELLO), 1);
    ck_assert_uint_eq(fl_msg_max_fds(FL_REQ_SIG_ALLOC), 1);
    ck_assert_uint_eq(fl_msg_max_fds(FL_MSG_AGENT_MAP), 1);
    ck_assert_uint_eq(fl_msg_max_fds(FL_MSG_REPLY), 0);
    ck_assert_uint_eq(fl_msg_max_fds(0), 0);
    ck_assert_uint_eq(fl_msg_max_fds(200), 0);
    ck_assert_uint_eq(fl_msg_max_fds(UINT32_MAX), 0);
}
END_TEST

/* ----------------------------------------------------------- valid messages */

START_TEST(test_valid_message_accepted)
{
    unsigned type = known[_i].type;
    struct msgbuf m;
    size_t len = build(&m, type);
    ck_assert_uint_eq(len, known[_i].size);
    expect_accept(m.b, len, "well-formed message");

    /* A heap copy of exactly len bytes: the check reads nothing beyond it
     * (AddressSanitizer builds catch an overread). */
    unsigned char *heap = malloc(len);
    ck_assert_ptr_nonnull(heap);
    memcpy(heap, m.b, len);
    expect_accept(heap, len, "exact-size heap message");
    free(heap);

    /* The request id is not checked: any value passes. */
    uint64_t id = UINT64_MAX;
    memcpy(m.b + offsetof(struct fl_msg_hdr, id), &id, sizeof(id));
    expect_accept(m.b, len, "id all ones");
    id = 0;
    memcpy(m.b + offsetof(struct fl_msg_hdr, id), &id, sizeof(id));
    expect_accept(m.b, len, "id zero");
}
END_TEST

START_TEST(test_valid_payload_values_not_checked)
{
    struct msgbuf m;
    /* A HELLO of another version passes the check: version negotiation
     * answers it with FL_E_VERSION instead of a protocol violation. */
    size_t len = build(&m, FL_REQ_HELLO);
    ((struct fl_req_hello *)(void *)m.b)->version = FL_PROTO_VERSION + 1;
    expect_accept(m.b, len, "hello of version 2");
    ((struct fl_req_hello *)(void *)m.b)->version = 0;
    expect_accept(m.b, len, "hello of version 0");

    /* Reply status and values are the request's business. */
    len = build(&m, FL_MSG_REPLY);
    ((struct fl_msg_reply *)(void *)m.b)->status = INT32_MIN;
    expect_accept(m.b, len, "reply status INT32_MIN");

    /* An acknowledgement's result is the agent's business. */
    len = build(&m, FL_MSG_AGENT_ACK);
    ((struct fl_msg_agent_ack *)(void *)m.b)->result = INT32_MIN;
    expect_accept(m.b, len, "ack result INT32_MIN");

    /* Payload all ones in a message without reserved fields or flags. */
    len = build(&m, FL_MSG_AGENT_REVOKE);
    memset(m.b + sizeof(struct fl_msg_hdr), 0xff, len - sizeof(struct fl_msg_hdr));
    expect_accept(m.b, len, "revoke all ones");
    len = build(&m, FL_REQ_CAP_IMPORT);
    memset(m.b + sizeof(struct fl_msg_hdr), 0xff, len - sizeof(struct fl_msg_hdr));
    expect_accept(m.b, len, "cap import all ones");
}
END_TEST

/* A ROM module's name ends in the field, and nothing follows it there. */
START_TEST(test_rom_name_checked)
{
    struct msgbuf m;
    size_t len = build(&m, FL_REQ_ROM_OPEN);
    struct fl_req_rom_open *r = (void *)m.b;
    memset(r->name, 'x', sizeof(r->name) - 1);
    expect_accept(m.b, len, "a name of the longest length");
    memset(r->name, 0, sizeof(r->name));
    expect_accept(m.b, len, "an empty name (core's business)");
    memset(r->name, 'x', sizeof(r->name));
    expect_reject(m.b, len, "terminated", "a name without its NUL");
    memset(r->name, 0, sizeof(r->name));
    strcpy(r->name, "config");
    r->name[sizeof(r->name) - 1] = 'x';
    expect_reject(m.b, len, "after the name", "a byte after the name");
    r->name[sizeof(r->name) - 1] = 0;
    r->name[7] = 'y';
    expect_reject(m.b, len, "after the name", "a byte right after the NUL");
}
END_TEST

/* -------------------------------------------------------------- length */

START_TEST(test_truncated_rejected)
{
    unsigned type = known[_i].type;
    struct msgbuf m;
    size_t len = build(&m, type);
    if (len > sizeof(struct fl_msg_hdr)) {
        expect_reject(m.b, len - 1, "truncated", "len - 1");
        expect_reject(m.b, sizeof(struct fl_msg_hdr), "truncated", "header only");
        expect_reject(m.b, sizeof(struct fl_msg_hdr) + 1, "truncated", "header + 1");
    } else {
        /* A header-only message: one byte less is not even a header. */
        expect_reject(m.b, len - 1, "shorter", "len - 1");
    }
    expect_reject(m.b, sizeof(struct fl_msg_hdr) - 1, "shorter", "header - 1");
    expect_reject(m.b, 3, "shorter", "3 bytes");
    expect_reject(m.b, 1, "shorter", "1 byte");
    expect_reject(m.b, 0, "shorter", "0 bytes");
}
END_TEST

START_TEST(test_oversized_rejected)
{
    unsigned type = known[_i].type;
    struct msgbuf m;
    size_t len = build(&m, type);
    expect_reject(m.b, len + 1, "oversized", "len + 1");
    expect_reject(m.b, len + 8, "oversized", "len + 8");
    expect_reject(m.b, FL_MSG_MAX + 1, "oversized", "FL_MSG_MAX + 1");
    if (len < FL_MSG_MAX) expect_reject(m.b, FL_MSG_MAX, "oversized", "FL_MSG_MAX");
}
END_TEST

START_TEST(test_only_exact_length_accepted)
{
    unsigned type = known[_i].type;
    struct msgbuf m;
    size_t want = build(&m, type);
    for (size_t len = 0; len <= FL_MSG_MAX + 1; len++) {
        const char *why = NULL;
        int rc = fl_msg_check(m.b, len, &why);
        int expect = len == want ? 0 : -FL_E_PROTOCOL;
        if (rc != expect)
            ck_abort_msg("type %u len %zu: rc %d, want %d (%s)", type, len, rc, expect,
                         why ? why : "null");
        if (rc != 0 && why == NULL) ck_abort_msg("type %u len %zu: no why", type, len);
    }
}
END_TEST

/* ---------------------------------------------------------------- header */

START_TEST(test_unknown_type_rejected)
{
    static const unsigned bad[] = {0,  26,  36,  37,  41,  34,  40,     63,
                                   74, 100, 128, 200, 255, 256, 0x4001, 0xffff};
    struct msgbuf m;
    build(&m, FL_REQ_SESSION_INFO);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        set_type(&m, bad[i]);
        /* Whatever the length, the type is unknown. */
        expect_reject(m.b, sizeof(struct fl_msg_hdr), "unknown", "unknown type, header size");
        expect_reject(m.b, 24, "unknown", "unknown type, 24 bytes");
        expect_reject(m.b, FL_MSG_MAX, "unknown", "unknown type, FL_MSG_MAX");
    }
    /* Every unknown 16-bit type, with a few lengths. */
    for (unsigned t = 0; t <= 0xffff; t++) {
        if (is_known(t)) continue;
        set_type(&m, t);
        const char *why = NULL;
        if (fl_msg_check(m.b, 16, &why) != -FL_E_PROTOCOL ||
            fl_msg_check(m.b, 24, &why) != -FL_E_PROTOCOL ||
            fl_msg_check(m.b, 72, &why) != -FL_E_PROTOCOL)
            ck_abort_msg("unknown type %u accepted", t);
    }
}
END_TEST

/* Each of the n values (of size bytes) at off of a well-formed message of
 * the type is rejected, naming word; the message's length. */
static size_t reject_each(struct msgbuf *m, unsigned type, size_t off, const void *bad, size_t n,
                          size_t size, const char *word, const char *what)
{
    size_t len = build(m, type);
    for (size_t i = 0; i < n; i++) {
        memcpy(m->b + off, (const char *)bad + i * size, size);
        expect_reject(m->b, len, word, what);
    }
    return len;
}

START_TEST(test_bad_magic_rejected)
{
    static const uint32_t bad[] = {0, 0x31544c46u /* byte-swapped */, FL_PROTO_MAGIC + 1,
                                   FL_PROTO_MAGIC ^ 0x80000000u, UINT32_MAX};
    struct msgbuf m;
    reject_each(&m, known[_i].type, offsetof(struct fl_msg_hdr, magic), bad, ARRAY_LEN(bad),
                sizeof(bad[0]), "magic", "bad magic");
}
END_TEST

START_TEST(test_header_reserved_rejected)
{
    static const uint16_t bad[] = {1, 0x80, 0x100, 0x8000, 0xffff};
    struct msgbuf m;
    size_t len = reject_each(&m, known[_i].type, offsetof(struct fl_msg_hdr, reserved), bad,
                             ARRAY_LEN(bad), sizeof(bad[0]), "reserved", "header reserved");
    uint16_t zero = 0;
    memcpy(m.b + offsetof(struct fl_msg_hdr, reserved), &zero, sizeof(zero));
    expect_accept(m.b, len, "header reserved back to zero");
}
END_TEST

/* ------------------------------------------------------ flags, reserved */

/*
 * The uint32_t fields fl_msg_check restricts, one row each: a flags field
 * (every value within its known bits passes, the values in bad fail with
 * "flags") or a reserved field (0 passes, the values in bad fail with
 * "reserved").
 */
struct field {
    const char *what;
    unsigned type;
    size_t off, size;
    uint32_t known; /* a flags field's known bits; 0 for a reserved field */
    const char *word;
    uint32_t bad[7]; /* 0-terminated */
};
#define FIELD(t, s, m, all, w, ...)                                                                \
    {                                                                                              \
        .what = #s "." #m, .type = t, .off = offsetof(struct s, m),                                \
        .size = sizeof(((struct s *)0)->m), .known = all, .word = w, .bad = {                      \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    }
#define FLAGS(t, s, m, all, ...) FIELD(t, s, m, all, "flags", __VA_ARGS__)
#define RESERVED(t, s, m)        FIELD(t, s, m, 0, "reserved", 1, 0x100, 0x80000000u, UINT32_MAX)

static const struct field fields[] = {
    FLAGS(FL_REQ_HELLO, fl_req_hello, flags, FL_HELLO_FLAGS_ALL, 0x4, 0x5, 0x8, 0x100, 0x80000000u,
          UINT32_MAX),
    FLAGS(FL_REQ_RM_ATTACH, fl_req_rm_attach, flags, FL_ATTACH_FLAGS_ALL, 0x8, 0xf, 0x10, 0x10000,
          0x80000000u, UINT32_MAX),
    RESERVED(FL_REQ_RM_ATTACH, fl_req_rm_attach, reserved),
    FLAGS(FL_REQ_CTL_DUMP, fl_req_ctl_dump, what, FL_CTL_WHAT_ALL, 0x8, 0xf, 0x100, 0x80000000u,
          UINT32_MAX),
    RESERVED(FL_REQ_CTL_DUMP, fl_req_ctl_dump, reserved),
    RESERVED(FL_MSG_AGENT_ACK, fl_msg_agent_ack, reserved),
    RESERVED(FL_MSG_EXEC_FAULT, fl_msg_exec_fault, reserved),
    FLAGS(FL_MSG_AGENT_MAP, fl_msg_agent_map, flags, FL_MAP_FLAGS_ALL, 0x8, 0xf, 0x40, 0x80000000u,
          UINT32_MAX),
    RESERVED(FL_MSG_AGENT_MAP, fl_msg_agent_map, reserved),
    RESERVED(FL_MSG_AGENT_SIGBUS, fl_msg_agent_sigbus, reserved),
    RESERVED(FL_MSG_REPLY, fl_msg_reply, reserved),
};

START_TEST(test_field_checked)
{
    const struct field *f = &fields[_i];
    ck_assert_uint_eq(f->size, sizeof(uint32_t));
    struct msgbuf m;
    size_t len = build(&m, f->type);
    for (uint32_t v = 0; v <= f->known; v++) {
        if (v & ~f->known) continue;
        memcpy(m.b + f->off, &v, sizeof(v));
        expect_accept(m.b, len, f->what);
    }
    for (size_t i = 0; i < ARRAY_LEN(f->bad) && f->bad[i]; i++) {
        memcpy(m.b + f->off, &f->bad[i], sizeof(f->bad[i]));
        expect_reject(m.b, len, f->word, f->what);
    }
}
END_TEST

START_TEST(test_combined_faults_still_rejected)
{
    struct msgbuf m;
    const char *why = NULL;
    /* Several faults at once: rejected whatever the order of the checks. */
    size_t len = build(&m, FL_REQ_RM_ATTACH);
    ((struct fl_req_rm_attach *)(void *)m.b)->flags = UINT32_MAX;
    ((struct fl_req_rm_attach *)(void *)m.b)->reserved = 1;
    ck_assert_int_eq(fl_msg_check(m.b, len, &why), -FL_E_PROTOCOL);
    ck_assert_int_eq(fl_msg_check(m.b, len - 1, &why), -FL_E_PROTOCOL);
    uint32_t magic = 0;
    memcpy(m.b, &magic, sizeof(magic));
    ck_assert_int_eq(fl_msg_check(m.b, len + 1, &why), -FL_E_PROTOCOL);
    set_type(&m, 200);
    ck_assert_int_eq(fl_msg_check(m.b, len, &why), -FL_E_PROTOCOL);
    ck_assert_ptr_nonnull(why);
}
END_TEST

/* -------------------------------------------------------------------- main */

static Suite *protocol_suite(void)
{
    Suite *s = suite_create("protocol");
    const int n = (int)ARRAY_LEN(known);

    TCase *tc = tcase_create("sizes");
    tcase_add_test(tc, test_constants);
    tcase_add_loop_test(tc, test_size_of_every_known_type, 0, n);
    tcase_add_test(tc, test_size_of_unknown_types);
    tcase_add_test(tc, test_max_fds);
    suite_add_tcase(s, tc);

    tc = tcase_create("valid");
    tcase_add_loop_test(tc, test_valid_message_accepted, 0, n);
    tcase_add_test(tc, test_valid_payload_values_not_checked);
    tcase_add_test(tc, test_rom_name_checked);
    suite_add_tcase(s, tc);

    tc = tcase_create("length");
    tcase_add_loop_test(tc, test_truncated_rejected, 0, n);
    tcase_add_loop_test(tc, test_oversized_rejected, 0, n);
    tcase_add_loop_test(tc, test_only_exact_length_accepted, 0, n);
    suite_add_tcase(s, tc);

    tc = tcase_create("header");
    tcase_add_test(tc, test_unknown_type_rejected);
    tcase_add_loop_test(tc, test_bad_magic_rejected, 0, n);
    tcase_add_loop_test(tc, test_header_reserved_rejected, 0, n);
    suite_add_tcase(s, tc);

    tc = tcase_create("fields");
    tcase_add_loop_test(tc, test_field_checked, 0, (int)ARRAY_LEN(fields));
    tcase_add_test(tc, test_combined_faults_still_rejected);
    suite_add_tcase(s, tc);

    return s;
}

CHECK_MAIN(protocol_suite)
