/* faultline-core: sessions a parent creates and funds, and their upgrades (pd.c). */
#ifndef FL_CORE_PD_H
#define FL_CORE_PD_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "../common/protocol.h"

struct fl_session;

void core_pd_create(struct fl_session *parent, const struct fl_req_pd_create *m);
void core_pd_claim(struct fl_session *fresh, const struct fl_req_pd_claim *m);
int core_pd_upgrade(struct fl_session *s, const struct fl_req_pd_upgrade *m, uint64_t v[4]);
void core_pd_session_gone(struct fl_session *s);

#endif
