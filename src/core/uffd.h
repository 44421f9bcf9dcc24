/* faultline-core: how core reads the components' userfaultfds (uffd.c). */
#ifndef FL_CORE_UFFD_H
#define FL_CORE_UFFD_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct fl_session;

/* --uffd-read: preadv2(RWF_NOWAIT), io_uring reads, or whichever this kernel
 * allows (RWF_NOWAIT where it works). */
enum core_uffd_read { CORE_UFFD_READ_AUTO, CORE_UFFD_READ_NOWAIT, CORE_UFFD_READ_URING };
void core_uffd_want(enum core_uffd_read want);

/* check.c: whether io_uring reads of a uffd work here, tried on a uffd of
 * core's own (0, or -errno and why); whether core_uffd_choose needs to know
 * (it does when RWF_NOWAIT reads do not work, or io_uring reads are asked
 * for); and the choice: true, with which way in how, or false, with what is
 * missing in how. */
int core_uffd_probe_uring(char *why, size_t len);
bool core_uffd_needs_uring(bool nowait_ok);
bool core_uffd_choose(bool nowait_ok, bool uring_ok, char *how, size_t len);

/* After core_loop_init: set up the way chosen and log it (0 or -errno);
 * after the last session's teardown: end it. */
int core_uffd_init(void);
void core_uffd_fini(void);

/* A session's uffd: read it from now on (HELLO; 0 or -ENOMEM); stop reading
 * it (its close); release it (teardown: the final close goes to a worker
 * once no read uses it). */
int core_uffd_start(struct fl_session *s, int fd);
void core_uffd_stop(struct fl_session *s);
void core_uffd_release(struct fl_session *s);

/* io_uring reads: whether a message read from s's uffd may still wait to be
 * handled (a completion in the ring); then core_agent_uffd_settled(s) follows
 * once there is none. false with preadv2(RWF_NOWAIT). */
bool core_uffd_unsettled(struct fl_session *s);

#endif
