/*
 * The faultline wire protocol: every message that crosses a session socket.
 *
 * Transport: one Unix SOCK_SEQPACKET connection per session (Genode's PD).
 * Every datagram is exactly one message: a struct fl_msg_hdr followed by the
 * fixed-layout body of its type. Integers are host-endian (both ends share the
 * machine). Descriptors travel as SCM_RIGHTS on the messages that say so.
 *
 * Versioning: FL_PROTO_VERSION changes whenever a layout or a meaning changes.
 * The first message a component sends is HELLO; core answers a version it does
 * not speak with a HELLO reply carrying FL_E_VERSION and both versions, then
 * closes the session, so a mismatched library fails with a clear error.
 *
 * Direction component -> core: requests (FL_REQ_*) with a request id chosen by
 * the component, answered by exactly one FL_MSG_REPLY with the same id, and
 * agent acknowledgements (FL_MSG_AGENT_ACK, not answered).
 * Direction core -> component: replies and agent instructions (FL_MSG_AGENT_*),
 * which the component's agent thread executes in order and acknowledges.
 *
 * Core checks every message: the datagram length must equal
 * fl_msg_size(type); unknown types, reserved fields that are not zero, flags it
 * does not know, and descriptors on messages that carry none are protocol
 * violations. Core answers a violation by closing that session only.
 */
#ifndef FL_PROTOCOL_H
#define FL_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#define FL_PROTO_MAGIC 0x464c5431u /* "FLT1" */
/* 2: rights (WP, EXEC_FAULT), agent RESUME, PD_UPGRADE, CTL_DUMP; 3: RM sessions, ROM_OPEN */
#define FL_PROTO_VERSION 4u

#define FL_TOKEN_BYTES 16 /* an export token is 128 random bits */

/* What core charges a session (doc/limits.md). A capability pays for its
 * slot in the holder's table and core's record of the object it names, up
 * to FL_COST_CAP_COVERS bytes of core's memory (measured: 39-168 bytes a
 * kind); RAM quota pays for the rest. */
#define FL_COST_CAP_COVERS 256u
/* An attachment, to its map owner's RAM quota: the region and its share of
 * the map's placement arrays (124 bytes measured, 216 just after they doubled). */
#define FL_COST_REGION 256u
/*
 * RM sessions (Genode's Rm_connection) with Genode's numbers. Opening one
 * moves quota from the PD session to it (the library donates 64 KiB and two
 * capabilities, include/faultline/rm_session.h, as Rm_connection does); the
 * session object itself takes a page of that (Genode's core allocates it from
 * its sliced heap, page-granular: Genode's Local_service::budget_adjusted_args)
 * and both capabilities (that page's
 * dataspace and the session capability: Rm_session::CAP_QUOTA, and
 * Session_object's withdrawal). A donation smaller than that is refused. The
 * quota returns to the PD session when the RM session closes.
 */
#define FL_COST_RM_SESSION_RAM  4096u
#define FL_COST_RM_SESSION_CAPS 2u
/* A region map created from an RM session, paid from that session's quota:
 * Genode allocates each Region_map_component from the session's sliced heap
 * (Genode's Rm_session_component): its size (which embeds the
 * region allocator's first 8128-byte metadata block) plus the slice header,
 * rounded up to pages -- three pages -- and one capability for the slice's
 * dataspace (Ram::Accounted_allocator). That covers core's record of the
 * map, its dataspace and its creator's two slots (the map's and the
 * dataspace's, which dataspace() returns again and again). */
#define FL_COST_RM_RAM  12288u
#define FL_COST_RM_CAPS 1u

/* Largest message of either direction; receivers use a buffer this large
 * plus one byte so that an oversized datagram is detected, not truncated. */
#define FL_MSG_MAX 128

enum fl_msg_type {
    FL_MSG_NONE = 0,
    /* component -> core, requests */
    FL_REQ_HELLO = 1, /* + uffd, optional */
    FL_REQ_RAM_ALLOC = 2,
    FL_REQ_RAM_FREE = 3,
    FL_REQ_DS_SIZE = 4,
    FL_REQ_RM_ATTACH = 5,
    FL_REQ_RM_DETACH = 6,
    FL_REQ_RM_CREATE = 7,
    FL_REQ_RM_DESTROY = 8,
    FL_REQ_RM_DATASPACE = 9,
    FL_REQ_RM_FAULT_HANDLER = 10,
    FL_REQ_RM_FAULT = 11,
    FL_REQ_SIG_ALLOC = 12, /* + eventfd */
    FL_REQ_SIG_FREE = 13,
    FL_REQ_SIG_SUBMIT = 14,
    FL_REQ_CAP_EXPORT = 15,
    FL_REQ_CAP_IMPORT = 16,
    FL_REQ_CAP_RELEASE = 17,
    FL_REQ_SESSION_INFO = 18,
    FL_REQ_PD_CREATE = 19,          /* a session for a child, funded by this one */
    FL_REQ_PD_CLAIM = 20,           /* before HELLO: this connection takes over that session */
    FL_REQ_PD_UPGRADE = 21,         /* the creator of a PD session moves quota to it */
    FL_REQ_CTL_DUMP = 22,           /* faultline-ctl: FL_MSG_CTL_LINEs, then the reply */
    FL_REQ_RM_SESSION_OPEN = 23,    /* an RM session, funded from this PD session */
    FL_REQ_RM_SESSION_CLOSE = 24,   /* destroys its region maps, returns its quota */
    FL_REQ_RM_SESSION_UPGRADE = 25, /* moves more quota from this PD session to it */
    FL_REQ_ROM_OPEN = 30,           /* a ROM module's dataspace (Genode's ROM session) */
    /* the synchronous "local region mapper" mode (doc/async-vs-sync.md) */
    FL_REQ_SYNC_OFFER = 27,   /* a manager serves its region map synchronously */
    FL_REQ_SYNC_CONNECT = 28, /* a client's direct channel to that manager */
    FL_REQ_SYNC_MEMFD = 29,   /* a manager's RAM dataspace: memfd and token for map items */
    FL_REQ_SYNC_VERIFY = 31,  /* a client checks a map item's token with core */
    /* component -> core, not answered */
    FL_MSG_AGENT_ACK = 32,
    FL_MSG_EXEC_FAULT = 33, /* from libfaultline's SIGSEGV handler: uffd cannot see fetches */
    /* core -> component */
    FL_MSG_REPLY = 64,
    FL_MSG_AGENT_MAP = 65, /* + memfd when FL_MAP_FD_ATTACHED */
    FL_MSG_AGENT_REVOKE = 66,
    FL_MSG_AGENT_FORGET = 67,
    FL_MSG_AGENT_SIGBUS = 68,     /* --unresolvable=sigbus: raise SIGBUS in a halted thread */
    FL_MSG_AGENT_RESUME = 69,     /* let threads waiting on a fault in [va, va+len) retry */
    FL_MSG_CTL_LINE = 70,         /* one line of a CTL_DUMP (id = the request's) */
    FL_MSG_AGENT_FAULT_PAGE = 71, /* + memfd: the session's fault-state page, read-only */
    FL_MSG_AGENT_SYNC_FD = 72,    /* + a descriptor of the synchronous mode (sync channel) */
    FL_MSG_AGENT_ACK_NOW = 73,    /* acknowledge everything carried out, now */
    FL_MSG_TYPE_MAX = 74,
};

struct fl_msg_hdr {
    uint32_t magic;
    uint16_t type;
    uint16_t reserved; /* must be 0 */
    uint64_t id;       /* request id, echoed in the reply; agent sequence */
};

/* Capability handles are per session: a handle names an entry in the
 * session's own table and means nothing in any other session. 0 is invalid. */
typedef uint64_t fl_wire_cap;

struct fl_req_hello {
    struct fl_msg_hdr hdr;
    uint32_t version;
    uint32_t flags; /* FL_HELLO_* */
    uint64_t window_base;
    uint64_t window_size;
};
#define FL_HELLO_UFFD           0x1u /* a uffd registered over the window is attached */
#define FL_HELLO_USER_MODE_UFFD 0x2u /* the uffd was opened UFFD_USER_MODE_ONLY */
#define FL_HELLO_FLAGS_ALL      0x3u

struct fl_req_ram_alloc {
    struct fl_msg_hdr hdr;
    uint64_t size;
};

/* RAM_FREE, DS_SIZE, RM_DATASPACE, RM_FAULT, SIG_FREE, SIG_SUBMIT,
 * CAP_EXPORT, CAP_RELEASE, RM_SESSION_CLOSE: one capability argument. */
struct fl_req_cap {
    struct fl_msg_hdr hdr;
    fl_wire_cap cap;
};

struct fl_req_rm_attach {
    struct fl_msg_hdr hdr;
    fl_wire_cap rm;
    fl_wire_cap ds;
    uint64_t size;
    uint64_t offset;
    uint64_t at;
    uint32_t flags; /* FL_ATTACH_* */
    uint32_t reserved;
};
#define FL_ATTACH_USE_AT     0x1u
#define FL_ATTACH_EXECUTABLE 0x2u
#define FL_ATTACH_WRITEABLE  0x4u
#define FL_ATTACH_FLAGS_ALL  0x7u

struct fl_req_rm_detach {
    struct fl_msg_hdr hdr;
    fl_wire_cap rm;
    uint64_t at;
};

/* A region map from an RM session this PD session opened. */
struct fl_req_rm_create {
    struct fl_msg_hdr hdr;
    fl_wire_cap rms;
    uint64_t size;
};

/* Destroy a region map created from this RM session. */
struct fl_req_rm_destroy {
    struct fl_msg_hdr hdr;
    fl_wire_cap rms;
    fl_wire_cap rm;
};

/* The quota this PD session moves to the new RM session (Genode's session
 * arguments); it must cover FL_COST_RM_SESSION_*. */
struct fl_req_rm_session_open {
    struct fl_msg_hdr hdr;
    uint64_t ram_quota;
    uint64_t cap_quota;
};

/* More quota from this PD session to an RM session it opened. */
struct fl_req_rm_session_upgrade {
    struct fl_msg_hdr hdr;
    fl_wire_cap rms;
    uint64_t ram_quota;
    uint64_t cap_quota;
};

struct fl_req_rm_fault_handler {
    struct fl_msg_hdr hdr;
    fl_wire_cap rm;
    fl_wire_cap sigh; /* 0 or invalid: reflection disabled */
};

struct fl_req_sig_alloc {
    struct fl_msg_hdr hdr;
};

struct fl_req_cap_import {
    struct fl_msg_hdr hdr;
    uint8_t token[FL_TOKEN_BYTES];
};

struct fl_req_session_info {
    struct fl_msg_hdr hdr;
};

struct fl_req_pd_create {
    struct fl_msg_hdr hdr;
    uint64_t ram_quota;
    uint64_t cap_quota;
    uint64_t window_base;
    uint64_t window_size;
};

/* A ROM module by name: a plain file name in core's --rom-dir, NUL-terminated
 * (the rest of the field zero). What opening one costs: Genode's ROM session
 * quota (Rom_session::RAM_QUOTA and CAP_QUOTA: the session object, its
 * dataspace capability and the session capability), charged to the opening
 * session for as long as it holds the capability; the module's memory is
 * core's (as boot modules are), charged once to core's RAM budget. */
#define FL_ROM_NAME_BYTES 96
#define FL_COST_ROM_RAM   6144u
#define FL_COST_ROM_CAPS  3u
struct fl_req_rom_open {
    struct fl_msg_hdr hdr;
    char name[FL_ROM_NAME_BYTES];
};

struct fl_req_pd_claim {
    struct fl_msg_hdr hdr;
    uint8_t token[FL_TOKEN_BYTES];
};

struct fl_req_pd_upgrade {
    struct fl_msg_hdr hdr;
    fl_wire_cap pd; /* the child's address space, as PD_CREATE returned it */
    uint64_t ram_quota;
    uint64_t cap_quota;
};

struct fl_req_ctl_dump {
    struct fl_msg_hdr hdr;
    uint32_t what; /* FL_CTL_* */
    uint32_t reserved;
};
#define FL_CTL_SESSIONS  0x1u
#define FL_CTL_MAPS      0x2u
#define FL_CTL_FAULTS    0x4u
#define FL_CTL_WHAT_ALL  0x7u
#define FL_CTL_MAX_LINES 2000 /* then one line saying how many were left out */

struct fl_msg_ctl_line {
    struct fl_msg_hdr hdr;
    char text[FL_MSG_MAX - sizeof(struct fl_msg_hdr)]; /* NUL-terminated */
};

/*
 * An acknowledgement of instruction N acknowledges every instruction up to
 * N: each one is carried out, in order. The agent acknowledges at once when
 * what it received in one go holds a REVOKE, a descriptor, an ACK_NOW or an
 * instruction that failed (result < 0: one acknowledgement each). A MAP or a
 * RESUME that succeeded it may acknowledge later, with the next of those or
 * once it owes FL_ACK_LAZY_MAX: nothing waits for them but core's records
 * of resumes on their way, and acknowledging each one woke core once more
 * per fault. Core sends ACK_NOW when it does wait for one (a fault on a page
 * whose resume is not acknowledged yet).
 */
#define FL_ACK_LAZY_MAX 32
struct fl_msg_agent_ack {
    struct fl_msg_hdr hdr; /* id = the instruction's sequence number */
    int32_t result;        /* 0 or -errno of the agent's mmap/madvise */
    uint32_t reserved;
};

/* An instruction fetch from a non-executable page of the window, reported by
 * the faulting thread itself from libfaultline's SIGSEGV handler; it waits
 * there until core's FL_MSG_AGENT_RESUME for its address, then retries. */
struct fl_msg_exec_fault {
    struct fl_msg_hdr hdr; /* id unused (0): not answered */
    uint32_t tid;          /* in the component's pid namespace */
    uint32_t reserved;
    uint64_t addr;
};

/*
 * The one reply layout. status is 0 or a negative FL_E_* code. The values, per
 * request (unlisted ones are 0):
 *   HELLO          val[0] session id, val[1] address-space capability, val[2] protocol version
 *   RAM_ALLOC      val[0] dataspace capability, val[1] its size
 *   DS_SIZE        val[0] size, val[1] 1 for a managed dataspace
 *   RM_ATTACH      val[0] start, val[1] size of the new region
 *   RM_CREATE      val[0] region-map capability
 *   RM_SESSION_OPEN  val[0] RM-session capability
 *   RM_SESSION_UPGRADE  val[0..3] the RM session's RAM quota, RAM used, cap quota, caps used
 *   RM_DATASPACE   val[0] dataspace capability (the same on every call by the map's creator)
 *   RM_FAULT_HANDLER val[0] the map's slot in the fault page, or 0
 *   RM_FAULT       val[0] enum fl_fault_type, val[1] the address in the map
 *   SIG_ALLOC      val[0] signal-context capability
 *   CAP_EXPORT     token: the export token
 *   CAP_IMPORT     val[0] capability, val[1] its kind (enum fl_cap_kind)
 *   SESSION_INFO, PD_UPGRADE  val[0..3] RAM quota, RAM used, cap quota, caps used
 *                  (PD_UPGRADE: of the child)
 *   PD_CREATE      val[0] the child's address-space capability, token: its claim token
 *   PD_CLAIM       val[0] window base, val[1] window size
 *   CTL_DUMP       none (the lines came before)
 *   ROM_OPEN       val[0] dataspace capability (a new one on every open), val[1] its size
 */
struct fl_msg_reply {
    struct fl_msg_hdr hdr;
    int32_t status;
    uint32_t reserved;
    uint64_t val[4];
    uint8_t token[FL_TOKEN_BYTES];
};

struct fl_msg_agent_map {
    struct fl_msg_hdr hdr; /* id = sequence number to acknowledge */
    uint64_t va;
    uint64_t len;
    uint64_t memfd_id; /* core's id of the dataspace's memfd */
    uint64_t offset;   /* into the memfd */
    uint32_t flags;    /* FL_MAP_* */
    uint32_t reserved;
};
#define FL_MAP_WRITE       0x1u
#define FL_MAP_EXEC        0x2u
#define FL_MAP_FD_ATTACHED 0x4u /* first use of memfd_id in this session */
#define FL_MAP_FLAGS_ALL   0x7u

struct fl_msg_agent_revoke {
    struct fl_msg_hdr hdr;
    uint64_t va;
    uint64_t len;
};

struct fl_msg_agent_forget {
    struct fl_msg_hdr hdr;
    uint64_t memfd_id;
};

struct fl_msg_agent_sigbus {
    struct fl_msg_hdr hdr;
    uint32_t tid; /* in the component's pid namespace */
    uint32_t reserved;
    uint64_t addr; /* the fault that can never be resolved, for the log */
};

/* Sent right after the mapping that resolves a fault, so the agent carries it
 * out once the mapping is in place: it prefaults the faulting page (so the
 * thread does not fault once more on its retry), then wakes the threads
 * waiting in the uffd (UFFDIO_WAKE) and in the SIGSEGV handler on [va,
 * va+len), and acknowledges. */
struct fl_msg_agent_resume {
    struct fl_msg_hdr hdr;
    uint64_t va;
    uint64_t len;
    uint64_t populate; /* the faulting page, or 0 */
};

/* The fault-state page: the head of a map's faulter queue, per slot (the
 * reply to RM_FAULT_HANDLER names the map's slot in val[0], 0 for none). A
 * sequence lock: seq is odd while core writes; read seq, the fields, seq again. */
#define FL_FAULT_PAGE_SIZE 4096
#define FL_FAULT_SLOT_GONE 0xffffffffu /* the map is no longer shown here: ask core */
struct fl_fault_slot {
    _Atomic uint32_t seq;
    _Atomic uint32_t type; /* enum fl_fault_type, or FL_FAULT_SLOT_GONE */
    _Atomic uint64_t addr;
};

struct fl_msg_agent_fault_page {
    struct fl_msg_hdr hdr; /* the memfd attached */
};

struct fl_msg_agent_ack_now {
    struct fl_msg_hdr hdr;
};

/*
 * The synchronous mode (doc/async-vs-sync.md; core's side is
 * src/core/sync_channel.c). SYNC_OFFER: rm, a managed map of the requester,
 * is served synchronously; reply val[0] the offer id. SYNC_CONNECT: the
 * requester attached ds, the dataspace of an offered map, into its own
 * address space; core makes a socketpair and sends one end to each party as
 * an FL_MSG_AGENT_SYNC_FD (counted against the descriptor credit); reply
 * val[0] channel id, val[1] the manager's session id, val[2] its pid
 * (DENIED: ds is not attached into the requester's address space; BUSY:
 * either party's descriptor credit is spent, ask again).
 * SYNC_MEMFD: ds, a RAM dataspace of the requester, as an AGENT_SYNC_FD
 * (kind MEMFD) with the same handle; reply val[0] handle, val[1] size,
 * val[2..3] the dataspace's token (16 bytes, the same on every call; BUSY
 * as for SYNC_CONNECT).
 * SYNC_VERIFY: whether the manager at the other end of channel was issued
 * token; reply val[0] size, val[1] FL_SYNC_TOKEN_WRITEABLE or 0, val[2]
 * inode, val[3] device of the memfd (DENIED: not that manager's).
 */
struct fl_req_sync_offer {
    struct fl_msg_hdr hdr;
    fl_wire_cap rm;
};
struct fl_req_sync_connect {
    struct fl_msg_hdr hdr;
    fl_wire_cap ds;
};
struct fl_req_sync_memfd {
    struct fl_msg_hdr hdr;
    fl_wire_cap ds;
    uint32_t flags; /* FL_SYNC_TOKEN_WRITEABLE: the right the token vouches for */
    uint32_t reserved;
};
#define FL_SYNC_TOKEN_WRITEABLE 0x1u
struct fl_req_sync_verify {
    struct fl_msg_hdr hdr;
    uint64_t channel;
    uint8_t token[FL_TOKEN_BYTES];
};
struct fl_msg_agent_sync_fd {
    struct fl_msg_hdr hdr; /* sequence number to acknowledge */
    uint32_t kind;         /* FL_SYNC_FD_* */
    uint32_t reserved;
    uint64_t handle;       /* the channel id, or SYNC_MEMFD's handle */
    uint64_t offer;        /* PEER: the offer the client connected to */
    uint64_t peer_session; /* CHANNEL: the manager's, PEER: the client's session id */
    uint64_t peer_pid;
};
#define FL_SYNC_FD_CHANNEL 1u /* to a client: its end of a channel */
#define FL_SYNC_FD_PEER    2u /* to a manager: a new client's channel */
#define FL_SYNC_FD_MEMFD   3u /* to a manager: the memfd SYNC_MEMFD asked for */

/*
 * What the wire knows of each message type, in one table: the codec's size and
 * descriptor checks, the validity checks of flags and reserved fields, and the
 * fuzzer's knowledge of which fields are capabilities all come from it.
 */
enum fl_cap_kind {
    FL_CAP_KIND_ANY = 0,
    FL_CAP_KIND_DATASPACE = 1,
    FL_CAP_KIND_REGION_MAP = 2,
    FL_CAP_KIND_SIGNAL = 3,
    FL_CAP_KIND_RM_SESSION = 4
};
struct fl_msg_info {
    const char *name; /* NULL: no such type */
    uint16_t size;    /* exact */
    uint8_t max_fds;  /* descriptors it may carry */
    uint8_t ncaps;    /* capability arguments: offsets and expected kinds */
    uint8_t cap_off[2];
    uint8_t cap_kind[2];
    uint8_t flags_off;    /* 0: none; else a uint32_t whose bits lie within flags_all */
    uint8_t reserved_off; /* 0: none; else a uint32_t that must be 0 */
    uint32_t flags_all;
    uint8_t reply_cap; /* a request whose reply's val[i] is a new capability: 1 + i, else 0 */
};
extern const struct fl_msg_info fl_msg_table[FL_MSG_TYPE_MAX];

/* Zero a message of this type and fill in its header. */
void fl_msg_init(void *msg, unsigned type, uint64_t id);

/* The exact size of a message of this type, or 0 for an unknown type. */
size_t fl_msg_size(unsigned type);

/* Whether a message of this type may carry descriptors, and how many. */
unsigned fl_msg_max_fds(unsigned type);

/* Check a received datagram: magic, known type, exact length, reserved fields
 * and flags. Returns 0 or a negative FL_E_PROTOCOL; *why gets a static
 * explanation for the log. */
int fl_msg_check(const void *buf, size_t len, const char **why);

/* Send one datagram, with descriptor fd attached if fd >= 0 (flags: e.g.
 * MSG_DONTWAIT; MSG_NOSIGNAL is implied). Returns 0 or -errno. */
#define FL_WIRE_MAX_FDS 4
int fl_wire_send(int sock, const void *msg, size_t len, int fd, int flags);

/* Receive one datagram and up to FL_WIRE_MAX_FDS descriptors (close-on-exec;
 * more are closed). *truncated is set when the datagram or its descriptors
 * did not fit. Returns its length, 0 at EOF, or -errno. */
#include <sys/socket.h>
#include <sys/types.h>
ssize_t fl_wire_recv(int sock, void *buf, size_t cap, int fds[FL_WIRE_MAX_FDS], int *nfds,
                     int flags, int *truncated);
/* Up to FL_WIRE_BATCH datagrams in one system call (recvmmsg, sendmmsg),
 * so that a peer's queue is emptied without a last call that only says
 * EAGAIN: fewer than asked means none was left at that moment. */
#define FL_WIRE_BATCH 16
/* Room for SCM_MAX_FD descriptors: the kernel drops none unseen (core hands
 * the last close of each to a worker, see fl_wire_discard). */
union fl_wire_cmsg {
    struct cmsghdr h;
    char buf[CMSG_SPACE(253 * sizeof(int))];
};
struct fl_wire_rx {
    _Alignas(8) uint8_t buf[FL_MSG_MAX + 8];
    ssize_t len; /* 0 at EOF */
    int fds[FL_WIRE_MAX_FDS], nfds, truncated;
    union fl_wire_cmsg cmsg;
};
/* Returns how many (1..n; e.g. flags MSG_DONTWAIT, or MSG_WAITFORONE to wait
 * for the first only), or -errno when none could be read. */
int fl_wire_recv_many(int sock, struct fl_wire_rx *rx, unsigned n, int flags);
struct fl_wire_tx {
    const void *msg;
    size_t len;
};
/* Datagrams without descriptors, in order: returns how many went out (a
 * short count: the socket's buffer is full), or -errno when none did. */
int fl_wire_send_many(int sock, const struct fl_wire_tx *tx, unsigned n, int flags);
/* How fl_wire_recv disposes of descriptors nobody gets (beyond
 * FL_WIRE_MAX_FDS, or on a zero-length datagram): close(2) by default; core
 * hands them to a worker, since the last close of a peer's uffd takes the
 * peer's mmap lock. */
extern void (*fl_wire_discard)(int fd);

#endif
