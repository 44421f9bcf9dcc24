/*
 * Writes the seed corpus of both fuzzers: valid exchanges (and the classic
 * violations) built from protocol.h's own structs, so that regenerating after
 * a protocol change keeps the seeds valid. scripts/fuzz.sh runs it before
 * every fuzzing run; commit what changed.
 *
 * usage: gen_corpus DIR   (writes DIR/fuzz_session/ and DIR/fuzz_proto/)
 */
#include "fuzz_input.h"
#include "placement.h"
#include "protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint8_t buf[16384];
static size_t len;
static const char *outdir;
static uint64_t next_id;

static void put(const void *p, size_t n)
{
    if (len + n > sizeof(buf)) {
        fprintf(stderr, "gen_corpus: seed too long\n");
        exit(1);
    }
    memcpy(buf + len, p, n);
    len += n;
}

static void put8(uint8_t v)
{
    put(&v, 1);
}

/* A structured record of fuzz_input.h: the whole message after ctl and type. */
static void rec(uint8_t ctl, const void *msg)
{
    const struct fl_msg_hdr *h = msg;
    put8(ctl & ~FZ_RAW);
    put8((uint8_t)h->type);
    put(msg, fl_msg_size(h->type));
}

static void raw(uint8_t ctl, const void *p, uint8_t n)
{
    put8(ctl | FZ_RAW);
    put8(n);
    put(p, n);
}

static void save(const char *fuzzer, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s/%s", outdir, fuzzer, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
        fprintf(stderr, "gen_corpus: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    len = 0;
    next_id = 0;
}

/* Requests; capability arguments are fuzz_input.h's learned indices. */

/* Record a request of the type, its struct T with the fields given
 * (designated initialisers; the rest zero), and a fresh id. */
#define REQ(ctl, TYPE, T, ...)                                                                     \
    do {                                                                                           \
        T m_ = {__VA_ARGS__};                                                                      \
        m_.hdr = (struct fl_msg_hdr){                                                              \
            .magic = FL_PROTO_MAGIC, .type = (uint16_t)(TYPE), .id = ++next_id};                   \
        rec(ctl, &m_);                                                                             \
    } while (0)

static void hello(uint8_t ctl, uint32_t version, uint64_t base, int uffd)
{
    REQ(ctl | (uffd ? FZ_FD_UFFD : 0), FL_REQ_HELLO, struct fl_req_hello, .version = version,
        .flags = uffd ? FL_HELLO_UFFD : 0, .window_base = base,
        .window_size = base ? 1ull << 30 : 0);
}

static void req_cap(uint8_t ctl, unsigned type, uint64_t cap)
{
    REQ(ctl, type, struct fl_req_cap, .cap = cap);
}

static void req_empty(uint8_t ctl, unsigned type)
{
    _Alignas(8) uint8_t m[FL_MSG_MAX];
    fl_msg_init(m, type, ++next_id);
    rec(ctl, m);
}

static void ram_alloc(uint8_t ctl, uint64_t size)
{
    REQ(ctl, FL_REQ_RAM_ALLOC, struct fl_req_ram_alloc, .size = size);
}

static void attach(uint8_t ctl, uint64_t rm, uint64_t ds, uint32_t flags, uint64_t at)
{
    REQ(ctl, FL_REQ_RM_ATTACH, struct fl_req_rm_attach, .rm = rm, .ds = ds, .flags = flags,
        .at = at);
}

static void detach(uint8_t ctl, uint64_t rm, uint64_t at)
{
    REQ(ctl, FL_REQ_RM_DETACH, struct fl_req_rm_detach, .rm = rm, .at = at);
}

static void rm_create(uint8_t ctl, uint64_t rms, uint64_t size)
{
    REQ(ctl, FL_REQ_RM_CREATE, struct fl_req_rm_create, .rms = rms, .size = size);
}

static void rm_destroy(uint8_t ctl, uint64_t rms, uint64_t rm)
{
    REQ(ctl, FL_REQ_RM_DESTROY, struct fl_req_rm_destroy, .rms = rms, .rm = rm);
}

/* An RM session; with caps 4 (beyond the 2 the session takes itself) two
 * maps fit at once. */
static void rm_session_open(uint8_t ctl, uint64_t ram, uint64_t caps)
{
    REQ(ctl, FL_REQ_RM_SESSION_OPEN, struct fl_req_rm_session_open, .ram_quota = ram,
        .cap_quota = caps);
}

static void rm_session_upgrade(uint8_t ctl, uint64_t rms, uint64_t ram, uint64_t caps)
{
    REQ(ctl, FL_REQ_RM_SESSION_UPGRADE, struct fl_req_rm_session_upgrade, .rms = rms,
        .ram_quota = ram, .cap_quota = caps);
}

static void fault_handler(uint8_t ctl, uint64_t rm, uint64_t sigh)
{
    REQ(ctl, FL_REQ_RM_FAULT_HANDLER, struct fl_req_rm_fault_handler, .rm = rm, .sigh = sigh);
}

static void ack(uint8_t ctl)
{
    struct fl_msg_agent_ack m;
    fl_msg_init(&m, FL_MSG_AGENT_ACK, 0); /* 0: the last instruction received */
    rec(ctl, &m);
}

/* An acknowledgement by number (the harness learns the numbers of mapping
 * instructions only, not of AGENT_SYNC_FD's): a session's nth instruction. */
static void ack_nth(uint8_t ctl, uint64_t n)
{
    struct fl_msg_agent_ack m;
    fl_msg_init(&m, FL_MSG_AGENT_ACK, n);
    rec(ctl, &m);
}

static void token_req(uint8_t ctl, unsigned type)
{
    struct fl_req_cap_import m; /* PD_CLAIM has the same layout */
    fl_msg_init(&m, type, ++next_id);
    rec(ctl, &m); /* an all-zero token: the last one core handed out */
}

static void pd_create(uint8_t ctl, uint64_t ram, uint64_t caps, uint64_t base)
{
    REQ(ctl, FL_REQ_PD_CREATE, struct fl_req_pd_create, .ram_quota = ram, .cap_quota = caps,
        .window_base = base, .window_size = base ? 1ull << 30 : 0);
}

/* The synchronous mode's requests (src/core/sync_channel.c). */
static void sync_memfd(uint8_t ctl, uint64_t ds, uint32_t flags)
{
    REQ(ctl, FL_REQ_SYNC_MEMFD, struct fl_req_sync_memfd, .ds = ds, .flags = flags);
}

static void sync_verify(uint8_t ctl, uint64_t channel)
{
    /* A token core never issued: an all-zero one (DENIED). */
    REQ(ctl, FL_REQ_SYNC_VERIFY, struct fl_req_sync_verify, .channel = channel);
}

static void touch(uint8_t ctl, unsigned page, int write)
{
    put8(ctl & FZ_CONN1);
    put8(FZ_TOUCH);
    put8((uint8_t)(page | (write ? 8 : 0)));
}

/* 0: the harness's window of that connection (fuzz_input.h). */
#define BASE0 0
#define BASE1 0

static void session_seeds(void)
{
    const char *F = "fuzz_session";

    hello(0, FL_PROTO_VERSION, BASE0, 1);
    save(F, "hello");
    hello(0, FL_PROTO_VERSION, BASE0, 0);
    req_empty(0, FL_REQ_SESSION_INFO);
    save(F, "hello_without_uffd");

    /* RAM: alloc, attach (a map instruction with the memfd), ack, detach (a
     * revocation the reply waits for), ack, free. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, 8192);
    req_cap(0, FL_REQ_DS_SIZE, 2);
    attach(0, 1, 2, FL_ATTACH_WRITEABLE, 0);
    ack(0);
    detach(0, 1, 1);
    ack(0);
    req_cap(0, FL_REQ_RAM_FREE, 2);
    req_empty(0, FL_REQ_SESSION_INFO);
    save(F, "ram_attach_detach_free");

    /* A freed dataspace still attached: its region becomes reserved. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, 4096);
    attach(0, 1, 2, FL_ATTACH_WRITEABLE, 0);
    req_cap(0, FL_REQ_RAM_FREE, 2);
    ack(0);
    req_cap(0, FL_REQ_DS_SIZE, 2);
    save(F, "free_while_attached");

    /* A managed dataspace with a fault handler, RAM attached into it. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    req_empty(FZ_FD_EVENTFD, FL_REQ_SIG_ALLOC);
    rm_session_open(0, 64 << 10, 4);
    rm_create(0, 3, 16 << 10);
    req_cap(0, FL_REQ_RM_DATASPACE, 4);
    fault_handler(0, 4, 2);
    attach(0, 1, 5, FL_ATTACH_WRITEABLE, 0);
    ram_alloc(0, 4096);
    attach(0, 4, 6, FL_ATTACH_WRITEABLE | FL_ATTACH_USE_AT, 0);
    ack(0);
    req_cap(0, FL_REQ_RM_FAULT, 4);
    req_cap(0, FL_REQ_SIG_SUBMIT, 2);
    detach(0, 4, 0);
    ack(0);
    rm_destroy(0, 3, 4);
    req_cap(0, FL_REQ_SIG_FREE, 2);
    req_cap(0, FL_REQ_RM_SESSION_CLOSE, 3);
    save(F, "managed_fault_handler");

    /* Real page faults (FZ_TOUCH): reflected to a manager, which attaches. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    req_empty(FZ_FD_EVENTFD, FL_REQ_SIG_ALLOC);
    rm_session_open(0, 64 << 10, 4);
    rm_create(0, 3, FZ_WINDOW_PAGES * FL_PAGE_SIZE);
    req_cap(0, FL_REQ_RM_DATASPACE, 4);
    fault_handler(0, 4, 2);
    attach(0, 1, 5, FL_ATTACH_WRITEABLE, 0);
    touch(0, 2, 0);
    touch(0, 3, 1);
    req_cap(0, FL_REQ_RM_FAULT, 4);
    ram_alloc(0, 2 * FL_PAGE_SIZE);
    attach(0, 4, 6, FL_ATTACH_WRITEABLE | FL_ATTACH_USE_AT, 2 * FL_PAGE_SIZE);
    ack(0);
    ack(0);
    req_cap(0, FL_REQ_RM_FAULT, 4);
    detach(0, 4, 2);
    ack(0);
    touch(0, 2, 1);
    save(F, "fault_reflected");

    /* Faults on RAM core maps itself, and faults nothing resolves. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, 4 * FL_PAGE_SIZE);
    attach(0, 1, 2, FL_ATTACH_WRITEABLE, 0);
    touch(0, 0, 0);
    ack(0);
    touch(0, 1, 1);
    ack(0);
    ack(0);
    touch(0, 7, 0);
    save(F, "fault_on_ram");
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, 4 * FL_PAGE_SIZE);
    attach(0, 1, 2, 0, 0);
    ack(0);
    touch(0, 0, 1);
    req_cap(0, FL_REQ_RAM_FREE, 2);
    ack(0);
    touch(0, 1, 0);
    save(F, "fault_write_read_only_then_free");

    /* A child's faults reflected to its parent, which installed the handler. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    pd_create(0, 256 << 10, 16, BASE1);
    req_empty(FZ_FD_EVENTFD, FL_REQ_SIG_ALLOC);
    fault_handler(0, 2, 3);
    token_req(FZ_CONN1, FL_REQ_PD_CLAIM);
    hello(FZ_CONN1, FL_PROTO_VERSION, BASE1, 1);
    touch(FZ_CONN1, 1, 1);
    req_cap(0, FL_REQ_RM_FAULT, 2);
    ram_alloc(0, FZ_WINDOW_PAGES * FL_PAGE_SIZE);
    attach(0, 2, 4, FL_ATTACH_WRITEABLE, 0);
    ack(FZ_CONN1);
    detach(0, 2, 1);
    ack(FZ_CONN1);
    save(F, "pd_child_fault");

    /* A map attached into itself. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    rm_session_open(0, 64 << 10, 4);
    rm_create(0, 2, 1 << 20);
    req_cap(0, FL_REQ_RM_DATASPACE, 3);
    attach(0, 3, 4, 0, 0);
    attach(0, 1, 4, 0, 0);
    req_cap(0, FL_REQ_CAP_RELEASE, 4);
    save(F, "managed_cycle");

    /* An RM session: maps from it, an upgrade, another session that holds its
     * capability (DENIED), and its close with maps attached and faulted. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    rm_session_open(0, 64 << 10, 2);
    rm_create(0, 2, 16 << 10); /* its two capabilities are the session's own */
    rm_session_upgrade(0, 2, 8 << 10, 2);
    rm_create(0, 2, FZ_WINDOW_PAGES * FL_PAGE_SIZE);
    req_cap(0, FL_REQ_RM_DATASPACE, 3);
    attach(0, 1, 4, FL_ATTACH_WRITEABLE, 0);
    ack(0);
    touch(0, 1, 0);
    req_cap(0, FL_REQ_CAP_EXPORT, 2);
    hello(FZ_CONN1, FL_PROTO_VERSION, BASE1, 1);
    token_req(FZ_CONN1, FL_REQ_CAP_IMPORT);
    rm_create(FZ_CONN1, 2, 4096);
    rm_session_upgrade(FZ_CONN1, 2, 4096, 1);
    req_cap(FZ_CONN1, FL_REQ_RM_SESSION_CLOSE, 2);
    req_cap(0, FL_REQ_RM_SESSION_CLOSE, 2);
    ack(0);
    touch(0, 2, 1);
    req_cap(0, FL_REQ_RM_FAULT, 3);
    rm_destroy(0, 2, 3);
    save(F, "rm_session");

    /* Export on one connection, import on the other. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, 4096);
    req_cap(0, FL_REQ_CAP_EXPORT, 2);
    hello(FZ_CONN1, FL_PROTO_VERSION, BASE1, 1);
    token_req(FZ_CONN1, FL_REQ_CAP_IMPORT);
    req_cap(FZ_CONN1, FL_REQ_DS_SIZE, 2);
    attach(FZ_CONN1, 1, 2, 0, 0);
    ack(FZ_CONN1);
    token_req(FZ_CONN1, FL_REQ_CAP_IMPORT); /* a replayed token */
    req_cap(0, FL_REQ_RAM_FREE, 2);
    ack(FZ_CONN1);
    req_cap(FZ_CONN1, FL_REQ_CAP_RELEASE, 2);
    save(F, "export_import");

    /* A child's PD session, claimed by the second connection. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    pd_create(0, 256 << 10, 16, BASE1);
    token_req(FZ_CONN1, FL_REQ_PD_CLAIM);
    hello(FZ_CONN1, FL_PROTO_VERSION, BASE1, 1);
    ram_alloc(0, 4096);
    attach(0, 2, 3, FL_ATTACH_WRITEABLE, 0);
    ack(FZ_CONN1);
    req_empty(FZ_CONN1, FL_REQ_SESSION_INFO);
    detach(0, 2, 1);
    ack(FZ_CONN1);
    save(F, "pd_create_claim");

    /* The parent goes before the child claims. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    pd_create(FZ_CLOSE, 256 << 10, 16, BASE1);
    token_req(FZ_CONN1, FL_REQ_PD_CLAIM);
    save(F, "pd_parent_gone");

    /* The creator moves quota to its child (Genode's upgrade). */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    pd_create(0, 64 << 10, 8, BASE1);
    {
        struct fl_req_pd_upgrade m;
        fl_msg_init(&m, FL_REQ_PD_UPGRADE, ++next_id);
        m.pd = 2;
        m.ram_quota = 64 << 10;
        m.cap_quota = 4;
        rec(0, &m);
    }
    token_req(FZ_CONN1, FL_REQ_PD_CLAIM);
    hello(FZ_CONN1, FL_PROTO_VERSION, BASE1, 1);
    req_empty(FZ_CONN1, FL_REQ_SESSION_INFO);
    save(F, "pd_upgrade");

    /* faultline-ctl's dump of sessions and maps. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, 4096);
    rm_session_open(0, 64 << 10, 4);
    rm_create(0, 3, 16 << 10);
    req_cap(0, FL_REQ_RM_DATASPACE, 4);
    attach(0, 1, 5, 0, 0);
    attach(0, 4, 2, FL_ATTACH_WRITEABLE, 0);
    ack(0);
    touch(0, 1, 0);
    {
        struct fl_req_ctl_dump m;
        fl_msg_init(&m, FL_REQ_CTL_DUMP, ++next_id);
        m.what = FL_CTL_SESSIONS | FL_CTL_MAPS;
        rec(0, &m);
    }
    save(F, "ctl_dump");

    /* Instruction fetches reported by the component (EXEC_FAULT). */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, 2 * FL_PAGE_SIZE);
    attach(0, 1, 2, FL_ATTACH_WRITEABLE, 0);
    ack(0);
    {
        struct fl_msg_exec_fault m;
        fl_msg_init(&m, FL_MSG_EXEC_FAULT, 0);
        m.addr = 0; /* page 0 of the window: RAM attached without exec */
        rec(0, &m);
        m.addr = 5; /* nothing attached there */
        rec(0, &m);
    }
    req_empty(FZ_FD_EVENTFD, FL_REQ_SIG_ALLOC);
    fault_handler(0, 1, 3);
    {
        struct fl_msg_exec_fault m;
        fl_msg_init(&m, FL_MSG_EXEC_FAULT, 0);
        m.addr = 6; /* reflected to the handler now */
        rec(0, &m);
    }
    req_cap(0, FL_REQ_RM_FAULT, 1);
    save(F, "exec_fault");

    /* The same fault again before its resume is acknowledged: core asks
     * for the acknowledgement (AGENT_ACK_NOW), once, then wakes again. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, 2 * FL_PAGE_SIZE);
    attach(0, 1, 2, FL_ATTACH_WRITEABLE | FL_ATTACH_EXECUTABLE, 0);
    {
        struct fl_msg_exec_fault m;
        fl_msg_init(&m, FL_MSG_EXEC_FAULT, 0);
        m.addr = 0;
        for (int i = 0; i < 4; i++) rec(0, &m);
    }
    ack(0);
    save(F, "fault_again_before_ack");

    /* The synchronous mode: a manager offers its map (SYNC_OFFER, twice: the
     * same offer) and gets a RAM dataspace's memfd and token (SYNC_MEMFD);
     * a client imports the map's dataspace, attaches it and asks for its
     * channel (SYNC_CONNECT: an AGENT_SYNC_FD with a socket to each side),
     * checks a token (SYNC_VERIFY), touches the range; the map dies. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    rm_session_open(0, 64 << 10, 4);
    rm_create(0, 2, FZ_WINDOW_PAGES * FL_PAGE_SIZE);
    req_cap(0, FL_REQ_RM_DATASPACE, 3);
    req_cap(0, FL_REQ_SYNC_OFFER, 3);
    req_cap(0, FL_REQ_SYNC_OFFER, 3);
    ram_alloc(0, 2 * FL_PAGE_SIZE);
    sync_memfd(0, 5, FL_SYNC_TOKEN_WRITEABLE); /* instruction 1: the memfd */
    ack_nth(0, 1);
    sync_memfd(0, 5, 0); /* 2: a read-only token */
    ack_nth(0, 2);
    req_cap(0, FL_REQ_CAP_EXPORT, 4);
    hello(FZ_CONN1, FL_PROTO_VERSION, BASE1, 1);
    token_req(FZ_CONN1, FL_REQ_CAP_IMPORT);
    attach(FZ_CONN1, 1, 2, FL_ATTACH_WRITEABLE, 0);
    req_cap(FZ_CONN1, FL_REQ_SYNC_CONNECT, 2); /* instruction 3 to the manager: its end */
    ack_nth(0, 3);
    req_cap(FZ_CONN1, FL_REQ_SYNC_CONNECT, 2); /* again: the same channel */
    sync_verify(FZ_CONN1, 1);
    sync_verify(0, 1); /* the manager's end */
    touch(FZ_CONN1, 1, 0);
    rm_destroy(0, 2, 3);
    req_empty(FZ_CONN1, FL_REQ_SESSION_INFO);
    save(F, "sync_offer_connect");

    /* The synchronous mode refused: a RAM dataspace offered as a map, a
     * channel to a map nobody offered, a memfd of a managed dataspace, an
     * offer by a session that holds only the dataspace, a channel asked for
     * without an attachment, tokens checked on channels that are not the
     * asker's, an agent instruction sent to core, unknown flags. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, FL_PAGE_SIZE);
    req_cap(0, FL_REQ_SYNC_OFFER, 2);
    rm_session_open(0, 64 << 10, 4);
    rm_create(0, 3, 4 * FL_PAGE_SIZE);
    req_cap(0, FL_REQ_RM_DATASPACE, 4);
    req_cap(0, FL_REQ_SYNC_CONNECT, 5);
    sync_memfd(0, 5, 0);
    req_cap(0, FL_REQ_SYNC_OFFER, 4);
    req_cap(0, FL_REQ_CAP_EXPORT, 5);
    hello(FZ_CONN1, FL_PROTO_VERSION, BASE1, 1);
    token_req(FZ_CONN1, FL_REQ_CAP_IMPORT);
    req_cap(FZ_CONN1, FL_REQ_SYNC_CONNECT, 2); /* without an attachment */
    req_cap(FZ_CONN1, FL_REQ_SYNC_OFFER, 2);
    sync_verify(FZ_CONN1, 0);
    sync_verify(FZ_CONN1, ~0ull);
    {
        struct fl_msg_agent_sync_fd m;
        fl_msg_init(&m, FL_MSG_AGENT_SYNC_FD, ++next_id);
        m.kind = FL_SYNC_FD_PEER;
        m.handle = 1;
        rec(FZ_CONN1 | FZ_FD_SOCKET, &m);
    }
    req_empty(0, FL_REQ_SESSION_INFO);
    sync_memfd(0, 2, 0x80); /* unknown flags */
    save(F, "sync_refused");

    /* Descriptors of the wrong kind where the protocol expects one. */
    static const struct {
        enum fz_fd kind;
        const char *name;
    } wrong[] = {
        {FZ_FD_EVENTFD, "eventfd"}, {FZ_FD_PIPE, "pipe"},     {FZ_FD_FILE, "file"},
        {FZ_FD_MEMFD, "memfd"},     {FZ_FD_SOCKET, "socket"}, {FZ_FD_UFFD_EVENTS, "uffd_events"},
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        char name[64];
        struct fl_req_hello h;
        fl_msg_init(&h, FL_REQ_HELLO, 1);
        h.version = FL_PROTO_VERSION;
        h.flags = FL_HELLO_UFFD;
        h.window_base = BASE0;
        h.window_size = 1ull << 30;
        rec(wrong[i].kind, &h);
        snprintf(name, sizeof(name), "hello_with_%s", wrong[i].name);
        save(F, name);
    }
    static const enum fz_fd not_eventfd[] = {FZ_FD_NONE,  FZ_FD_PIPE,   FZ_FD_FILE,
                                             FZ_FD_MEMFD, FZ_FD_SOCKET, FZ_FD_UFFD};
    static const char *const not_eventfd_name[] = {"nothing", "pipe",   "file",
                                                   "memfd",   "socket", "uffd"};
    for (size_t i = 0; i < sizeof(not_eventfd) / sizeof(not_eventfd[0]); i++) {
        char name[64];
        hello(0, FL_PROTO_VERSION, BASE0, 1);
        req_empty(not_eventfd[i], FL_REQ_SIG_ALLOC);
        snprintf(name, sizeof(name), "sig_alloc_with_%s", not_eventfd_name[i]);
        save(F, name);
    }
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    req_empty(FZ_FD_EVENTFD | FZ_EXTRA_FD, FL_REQ_SIG_ALLOC);
    save(F, "sig_alloc_two_descriptors");
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(FZ_FD_MEMFD, 4096);
    save(F, "descriptor_on_ram_alloc");

    /* Protocol violations. */
    ram_alloc(0, 4096);
    save(F, "request_before_hello");
    hello(0, FL_PROTO_VERSION + 1, BASE0, 1);
    save(F, "wrong_version");
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    save(F, "second_hello");
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ack(0);
    save(F, "ack_never_sent");
    {
        struct fl_req_hello h;
        fl_msg_init(&h, FL_REQ_HELLO, 1);
        h.version = FL_PROTO_VERSION;
        h.window_base = BASE0;
        h.window_size = 1ull << 30;
        raw(0, &h, sizeof(h) - 1);
        save(F, "raw_truncated_hello");
        uint8_t big[sizeof(h) + 8] = {0};
        memcpy(big, &h, sizeof(h));
        raw(0, big, sizeof(big));
        save(F, "raw_oversized_hello");
        raw(FZ_FD_UFFD, &h, 0);
        save(F, "raw_empty_with_descriptor");
        raw(0, &h, sizeof(h));
        req_empty(0, FL_REQ_SESSION_INFO);
        h.hdr.reserved = 1;
        raw(0, &h, sizeof(h));
        save(F, "raw_reserved_not_zero");
    }

    /* A peer that stops reading until core's queue for it is full. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    for (int i = 0; i < 400; i++) req_empty(FZ_NO_DRAIN, FL_REQ_SESSION_INFO);
    save(F, "stops_reading");

    /* Closing with things in flight, then a fresh session on the same slot. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, 4096);
    attach(FZ_CLOSE, 1, 2, FL_ATTACH_WRITEABLE, 0);
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    req_empty(0, FL_REQ_SESSION_INFO);
    save(F, "close_and_reconnect");

    /* Quotas: more RAM and capabilities than a session has. */
    hello(0, FL_PROTO_VERSION, BASE0, 1);
    ram_alloc(0, 2 << 20);
    rm_session_open(0, 64 << 10, 2);
    for (int i = 0; i < 70; i++) {
        rm_create(0, 2, 4096);
        rm_session_upgrade(0, 2, 8 << 10, 2);
    }
    rm_session_open(0, 2 << 20, 2);
    save(F, "quota_exhausted");
}

static void proto_seeds(void)
{
    const char *F = "fuzz_proto";
    for (unsigned t = 1; t < FL_MSG_TYPE_MAX; t++) {
        size_t n = fl_msg_size(t);
        if (!n) continue;
        _Alignas(8) uint8_t m[FL_MSG_MAX];
        fl_msg_init(m, t, t);
        put8((uint8_t)fl_msg_max_fds(t)); /* as many descriptors as the type carries */
        put(m, n);
        char name[32];
        snprintf(name, sizeof(name), "type_%02u", t);
        save(F, name);
        put8(5); /* more descriptors than a receiver takes */
        put(m, n);
        snprintf(name, sizeof(name), "type_%02u_five_fds", t);
        save(F, name);
    }
    struct fl_req_hello h;
    fl_msg_init(&h, FL_REQ_HELLO, 1);
    put8(1 << 3); /* a receiver buffer of exactly FL_MSG_MAX + 1 */
    put(&h, sizeof(h));
    save(F, "small_buffer");
    put8(1);
    save(F, "empty_with_descriptor");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    outdir = argv[1];
    char path[4096];
    const char *subs[] = {"", "/fuzz_session", "/fuzz_proto"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s%s", outdir, subs[i]);
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
            fprintf(stderr, "gen_corpus: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    session_seeds();
    proto_seeds();
    return 0;
}
