/*
 * USDT probes (provider "faultline") for perf, bpftrace and systemtap.
 * Without sys/sdt.h they compile to nothing; with it each probe is a single
 * nop in the code until a tracer attaches to it.
 *
 *   perf buildid-cache --add build/faultline-core
 *   perf probe -x build/faultline-core sdt_faultline:fault_entry
 */
#ifndef FL_PROBE_H
#define FL_PROBE_H

#ifdef FL_HAVE_SDT
#include <sys/sdt.h>
#define FL_PROBE0(name)          DTRACE_PROBE(faultline, name)
#define FL_PROBE1(name, a)       DTRACE_PROBE1(faultline, name, a)
#define FL_PROBE2(name, a, b)    DTRACE_PROBE2(faultline, name, a, b)
#define FL_PROBE3(name, a, b, c) DTRACE_PROBE3(faultline, name, a, b, c)
#else
#define FL_PROBE0(name)          ((void)0)
#define FL_PROBE1(name, a)       ((void)(a))
#define FL_PROBE2(name, a, b)    ((void)(a), (void)(b))
#define FL_PROBE3(name, a, b, c) ((void)(a), (void)(b), (void)(c))
#endif

#endif
