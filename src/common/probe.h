/*
 * USDT probes (provider "faultline") for perf, bpftrace and systemtap; the
 * list, with their arguments, is in doc/profiling.md. Without sys/sdt.h they
 * compile to nothing; with it each probe is a single nop in the code until a
 * tracer attaches to it.
 *
 * Every operand is passed as a 64-bit value that the compiler cannot know:
 * FL_PROBE_ARG converts it to uint64_t and hides its value behind an empty
 * asm. Without that, a constant operand (a page size, say) is recorded in
 * the ELF note as an immediate, `4@$4096`, which perf (Debian 12's 6.1 among
 * others) cannot fetch: it drops that argument, and a probe with several
 * sites then has sites whose argument lists differ, which the kernel refuses
 * to put under one event ("Failed to write event: File exists"), so `perf
 * probe 'sdt_faultline:*'` fails. One type for all operands also keeps the
 * sites of one probe alike (`8@%reg` or `8@OFF(%reg)`), and bpftrace reads
 * every argument as a u64 anyway. Check with
 *   readelf -n build/faultline-core | grep Arguments
 * that no argument reads `$...`. The cost: an operand is computed even while
 * no tracer is attached (a register move at most; the sites pass values
 * they have at hand).
 */
#ifndef FL_PROBE_H
#define FL_PROBE_H

#ifdef FL_HAVE_SDT
#include <stdint.h>
#include <sys/sdt.h>
#define FL_PROBE_ARG(x)                                                                            \
    __extension__({                                                                                \
        uint64_t fl_probe_v_ = (uint64_t)(x);                                                      \
        __asm__("" : "+r"(fl_probe_v_));                                                           \
        fl_probe_v_;                                                                               \
    })
#define FL_PROBE0(name)       DTRACE_PROBE(faultline, name)
#define FL_PROBE1(name, a)    DTRACE_PROBE1(faultline, name, FL_PROBE_ARG(a))
#define FL_PROBE2(name, a, b) DTRACE_PROBE2(faultline, name, FL_PROBE_ARG(a), FL_PROBE_ARG(b))
#define FL_PROBE3(name, a, b, c)                                                                   \
    DTRACE_PROBE3(faultline, name, FL_PROBE_ARG(a), FL_PROBE_ARG(b), FL_PROBE_ARG(c))
#define FL_PROBE4(name, a, b, c, d)                                                                \
    DTRACE_PROBE4(faultline, name, FL_PROBE_ARG(a), FL_PROBE_ARG(b), FL_PROBE_ARG(c),              \
                  FL_PROBE_ARG(d))
#define FL_PROBE5(name, a, b, c, d, e)                                                             \
    DTRACE_PROBE5(faultline, name, FL_PROBE_ARG(a), FL_PROBE_ARG(b), FL_PROBE_ARG(c),              \
                  FL_PROBE_ARG(d), FL_PROBE_ARG(e))
#else
#define FL_PROBE0(name)                ((void)0)
#define FL_PROBE1(name, a)             ((void)(a))
#define FL_PROBE2(name, a, b)          ((void)(a), (void)(b))
#define FL_PROBE3(name, a, b, c)       ((void)(a), (void)(b), (void)(c))
#define FL_PROBE4(name, a, b, c, d)    ((void)(a), (void)(b), (void)(c), (void)(d))
#define FL_PROBE5(name, a, b, c, d, e) ((void)(a), (void)(b), (void)(c), (void)(d), (void)(e))
#endif

#endif
