/* faultline-core: the synchronous mode's offers, channels and map-item tokens (sync_channel.c). */
#ifndef FL_CORE_SYNC_CHANNEL_H
#define FL_CORE_SYNC_CHANNEL_H

#include <stdbool.h>
#include <stdint.h>

struct fl_session;
struct fl_dataspace;
struct fl_ctl_out;

/* Whether ds is the dataspace of a map a live manager offered for
 * synchronous paging (RM_ATTACH's reply says so in val[2]). */
bool core_sync_offered(const struct fl_dataspace *ds);
/* s ends: its offers, channels and tokens go. */
void core_sync_session_gone(struct fl_session *s);
/* faultline-ctl: one line per channel. */
void core_sync_ctl_dump(struct fl_ctl_out *o);

int core_sync_rpc_offer(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_sync_rpc_connect(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_sync_rpc_memfd(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);
int core_sync_rpc_verify(struct fl_session *s, const void *msg, int *fd, uint64_t v[4]);

#endif
