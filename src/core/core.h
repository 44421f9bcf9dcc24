/* faultline-core: every concept's header, for the files that wire them together
 * (main.c, ctl.c). Every other file includes the headers it uses. */
#ifndef FL_CORE_H
#define FL_CORE_H

#include <faultline/error.h>
#include <faultline/region_map.h>

#include "../common/log.h"
#include "../common/probe.h"
#include "agent.h"
#include "kernel_features.h"
#include "ctl.h"
#include "dataspace.h"
#include "fault.h"
#include "loop.h"
#include "mapping.h"
#include "object.h"
#include "pd.h"
#include "peer.h"
#include "region_map.h"
#include "revoke.h"
#include "rom.h"
#include "rm_session.h"
#include "rpc.h"
#include "session.h"
#include "signal_context.h"
#include "uffd.h"
#include "worker.h"

#endif
