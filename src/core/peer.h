/* faultline-core: which peers core serves, and the socket's ACLs for them (peer.c). */
#ifndef FL_CORE_PEER_H
#define FL_CORE_PEER_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* Peers of other uids (peer.c): --allow-uid, --allow-group (a number or a
 * name; 0, or -1 after saying why on stderr); whether a peer is core's uid,
 * root or allowed (by uid, gid or a supplementary group); the allow-list as
 * log lines name it; and the socket's ACLs for it (after bind; 0 or -1). */
struct ucred;
int core_peer_allow_uid(const char *arg);
int core_peer_allow_group(const char *arg);
bool core_peer_allowed(int fd, const struct ucred *cred);
const char *core_peer_allow_list(void);
int core_peer_open_socket(const char *path);

#endif
