/* faultline-core: revocation barriers and deadlines (revoke.c). */
#ifndef FL_CORE_REVOKE_H
#define FL_CORE_REVOKE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct fl_session;
struct fl_dataspace;

/* Revocations sent between begin and end hold back the reply to req_id of s
 * until every agent concerned acknowledged. end returns whether the reply was
 * deferred (it is then sent with status 0 by the last acknowledgement). With
 * s NULL there is no reply, only the punches of freed memfds wait. */
void core_revoke_begin(struct fl_session *s, uint64_t req_id);
bool core_revoke_end(void);
/* The open barrier waits for s's agent to acknowledge instruction seq (0: none). */
void core_revoke_wait(struct fl_session *s, uint64_t seq);
/* --strict: the open barrier's reply also waits for ds to move. */
void core_revoke_move(struct fl_dataspace *ds);
struct fl_job;
/* Hold a freed memfd's punch until the open barrier's revocations are
 * acknowledged (a client reading it meanwhile must not see zeros); false if
 * no barrier is open (a session's end: punch at once). */
bool core_revoke_punch(struct fl_job *job);
/* s's agent acknowledged everything up to seq. */
void core_revoke_acked(struct fl_session *s, uint64_t seq);
/* s is closing: release what waits for its agent. */
void core_revoke_session_gone(struct fl_session *s);
/* Terminate components whose agents missed the revocation deadline (and end
 * sessions whose agents hold a full credit for as long); returns the
 * milliseconds until the next deadline, or -1 if none is pending. */
int core_revoke_check_deadlines(void);

#endif
