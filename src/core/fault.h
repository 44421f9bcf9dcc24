/* faultline-core: the fault path and the fault page (fault.c, fault_page.c). */
#ifndef FL_CORE_FAULT_H
#define FL_CORE_FAULT_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <faultline/region_map.h>

struct fl_session;
struct fl_region_map;
struct fl_dataspace;

struct fl_msg_exec_fault;

/* Threads of one session queued on faults at once (each costs core about 80
 * bytes); beyond it the session is closed. Honest components have fewer
 * threads than this waiting. */
#define FL_FAULTERS_MAX 4096u
/* Faults core cannot route (no handler, too deep, outside the window) one
 * session may cause in a second before it is closed. */
#define FL_UNROUTABLE_MAX 1000u
/* An EXEC fault repeated while it is queued counts this many: an honest
 * thread waits in its SIGSEGV handler and cannot repeat it, so a peer gets
 * about 60 a second. */
#define FL_UNROUTABLE_REPEAT 16u
void core_fault_uffd_ready(void *arg, uint32_t events);
/* Handles what one read of its uffd returned (bytes of messages); a partial
 * message or an event core did not ask for closes the session. */
struct uffd_msg;
void core_fault_uffd_msgs(struct fl_session *s, const struct uffd_msg *msgs, size_t bytes);
/* An instruction fetch from a non-executable page, reported by the thread. */
void core_fault_exec(struct fl_session *s, const struct fl_msg_exec_fault *m);
/* A fault remembered while its resume was on its way: handle it now. */
void core_fault_session_gone(struct fl_session *s);
void core_fault_wake_region(struct fl_region_map *rm, uint64_t start, uint64_t size);
void core_fault_map_dying(struct fl_region_map *rm);
int core_fault_state(struct fl_region_map *rm, struct fl_fault *f);
/* The fault page (fault_page.c): the slot s reads rm's fault state from (0:
 * none, fault() stays an RPC); release it; write rm's head there again. */
unsigned core_fault_page_assign(struct fl_session *s, struct fl_region_map *rm);
void core_fault_page_release(struct fl_region_map *rm);
void core_fault_page_publish(struct fl_region_map *rm);
void core_fault_page_session_gone(struct fl_session *s);
/* ds finished moving (or died): handle the faults that waited for it again. */
void core_fault_retry_deferred(struct fl_dataspace *ds);

#endif
