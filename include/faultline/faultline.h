/* faultline: Genode's paging architecture on Linux — the whole public API. */
#ifndef FAULTLINE_H
#define FAULTLINE_H

#include <faultline/error.h>
#include <faultline/env.h>
#include <faultline/manager.h>
#include <faultline/ram.h>
#include <faultline/region_map.h>
#include <faultline/rm_session.h>
#include <faultline/rom.h>
#include <faultline/signal.h>
#include <faultline/sync.h>

#define FAULTLINE_VERSION_MAJOR 0
#define FAULTLINE_VERSION_MINOR 1

#endif
