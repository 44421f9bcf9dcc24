/* faultline-core: what core knows of each component's agent, and every instruction to it (agent.c).
 */
#ifndef FL_CORE_AGENT_H
#define FL_CORE_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct fl_session;
struct fl_dataspace;

/* Resumes one session's agent may leave unacknowledged (32 bytes each). */
#define FL_WAKES_MAX 8192u
struct core_agent;
struct core_agent *core_agent_new(void);
void core_agent_free(struct core_agent *a);
void core_agent_session_gone(struct fl_session *s);
/* Map a window; returns the instruction's sequence number, or 0 (not sent:
 * closing, moving, or the descriptor credit is spent). */
uint64_t core_agent_map(struct fl_session *s, uint64_t va, uint64_t len, struct fl_dataspace *ds,
                        uint64_t off, bool write, bool exec);
/* An instruction that carries a descriptor of the synchronous mode
 * (FL_MSG_AGENT_SYNC_FD; sync_channel.c), counted against the descriptor
 * credit; returns its sequence number, or 0 (closing, or the credit is spent). */
uint64_t core_agent_send_fd(struct fl_session *s, void *msg, size_t len, int fd);
/* Whether a descriptor can be sent now. If the credit is spent, the agent's
 * deadline starts (core_agent_check_credit): the shortage is transient, an
 * agent that keeps it loses its session. */
bool core_agent_fd_credit(struct fl_session *s);
/* Revoke a range; returns the instruction's sequence number, or 0. */
uint64_t core_agent_revoke(struct fl_session *s, uint64_t va, uint64_t len);
/* --unresolvable=sigbus: the agent raises SIGBUS in a halted thread. */
void core_agent_sigbus(struct fl_session *s, uint32_t tid, uint64_t va);
/* The session's fault page (a read-only memfd); 0 or -1. */
int core_agent_send_fault_page(struct fl_session *s, int memfd);
/* Every agent that holds ds's memfd drops it. */
void core_agent_forget_memfd(struct fl_dataspace *ds);
/* Let the threads of s waiting on a fault in [va, va+len) -- in the uffd or in
 * libfaultline's SIGSEGV handler -- retry, once s's agent carried out the
 * instructions sent before; it prefaults page populate first (0: none). Core
 * itself makes no uffd call on a client: the agent wakes. */
void core_agent_resume(struct fl_session *s, uint64_t va, uint64_t len, uint64_t populate);
/* A fault on a page whose resume is on its way: remembered (true), and the
 * page woken again once the agent acknowledged that resume. from_uffd: the
 * fault was read from the uffd (not an EXEC fault), which may be stale a
 * little longer with io_uring reads (agent.c's agent_ack). */
bool core_agent_resume_pending(struct fl_session *s, uint64_t va, bool from_uffd);
/* uffd.c: every read of s's uffd that may have returned a message from before
 * an acknowledgement has been handled; the resumes it held back retire. */
void core_agent_uffd_settled(struct fl_session *s);
/* A fault whose mapping needs a descriptor while the session's credit is
 * spent: the page is woken again after the agent's next acknowledgement
 * (true), or it is not a matter of credit (false). */
bool core_agent_wait_credit(struct fl_session *s, uint64_t va);
/* Close s if its agent acknowledged none of a full credit for the deadline;
 * returns when that is due (UINT64_MAX: not pending; now: closed). */
uint64_t core_agent_check_credit(struct fl_session *s, uint64_t now);

#endif
