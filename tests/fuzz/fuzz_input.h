/*
 * The input format of fuzz_session, shared with gen_corpus.c so that the seed
 * corpus is written by the same definitions the harness reads.
 *
 * An input is a sequence of records; each record becomes one datagram on one
 * of two client connections to an in-process core:
 *
 *   u8 ctl                     FZ_* bits below
 *   structured (no FZ_RAW):    u8 type, then fl_msg_size(type) bytes (16 for an
 *                              unknown type): the whole message; the harness
 *                              sets magic, type and the reserved header field,
 *                              and substitutes learned values (see below)
 *   raw (FZ_RAW):              u8 len, then len bytes sent exactly as they are
 *
 * A short input is padded with zeros. Structured records exist so that most
 * mutations still reach dispatch instead of dying in fl_msg_check; raw ones
 * keep every malformed datagram reachable.
 *
 * Substitutions (structured records only), because capabilities, tokens and
 * addresses are chosen by core or the harness, not by the input:
 *   - HELLO with window_base 0 gets the connection's window (see FZ_TOUCH),
 *     PD_CREATE with window_base 0 the other connection's;
 *   - a capability field 1..FZ_LEARNED names the n-th capability this
 *     connection got in a reply (HELLO's address space, RAM_ALLOC, RM_CREATE,
 *     RM_DATASPACE, SIG_ALLOC, CAP_IMPORT, PD_CREATE), else it is sent as is
 *     (PD_UPGRADE's pd too);
 *   - RM_DETACH's at 1..FZ_LEARNED names the n-th address an attach returned;
 *   - EXEC_FAULT's addr below FZ_WINDOW_PAGES names that page of the window;
 *   - an all-zero token in CAP_IMPORT or PD_CLAIM becomes the last token any
 *     reply carried (CAP_EXPORT, PD_CREATE);
 *   - AGENT_ACK with id 0 acknowledges the last instruction core sent.
 */
#ifndef FL_FUZZ_INPUT_H
#define FL_FUZZ_INPUT_H

enum {
    FZ_FD_MASK = 0x07,  /* the descriptor to attach, enum fz_fd */
    FZ_RAW = 0x08,      /* a raw datagram */
    FZ_CONN1 = 0x10,    /* the second connection (a child claiming its PD session) */
    FZ_NO_DRAIN = 0x20, /* leave what core sends unread, as a peer that stopped reading */
    FZ_EXTRA_FD = 0x40, /* attach one more descriptor, an eventfd */
    FZ_CLOSE = 0x80,    /* close the connection afterwards; the next record on it reconnects */
};

enum fz_fd {
    FZ_FD_NONE = 0,
    FZ_FD_EVENTFD = 1,
    FZ_FD_PIPE = 2,
    FZ_FD_FILE = 3, /* a regular file */
    FZ_FD_MEMFD = 4,
    FZ_FD_UFFD = 5,        /* a real userfaultfd, no features */
    FZ_FD_SOCKET = 6,      /* a Unix stream socket */
    FZ_FD_UFFD_EVENTS = 7, /* a userfaultfd with UNMAP and REMOVE events enabled */
};

#define FZ_LEARNED 32

/*
 * Harness commands: structured records whose type byte is one of these send
 * nothing; they act in the component instead.
 *
 * FZ_TOUCH, u8 arg: a new thread touches page (arg & 7) of the connection's
 * window, writing if arg & 8. The window is real memory registered with the
 * connection's userfaultfd: a HELLO with window_base 0 and a uffd attached is
 * sent with the harness's window instead, so core sees real page faults.
 * The thread stays in its fault until core's wake or the end of the input.
 */
#define FZ_TOUCH        0xf0
#define FZ_WINDOW_PAGES 8

#endif
