/* Configuration values: one parser for sizes and counts (config.h). */
#include "config.h"

#include <faultline/error.h>
#include <faultline/manager.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* Digits of base 10, or 16 after 0x; no sign, space or empty number. */
static int parse_number(const char *s, uint64_t *out, const char **end)
{
    unsigned base = 10;
    if (!s || !(*s >= '0' && *s <= '9')) return -FL_E_INVALID_ARG;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    uint64_t v = 0;
    const char *p = s;
    for (;; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = (unsigned)(*p - 'a' + 10);
        else if (base == 16 && *p >= 'A' && *p <= 'F')
            d = (unsigned)(*p - 'A' + 10);
        else
            break;
        if (v > (UINT64_MAX - d) / base) return -FL_E_INVALID_ARG;
        v = v * base + d;
    }
    if (p == s) return -FL_E_INVALID_ARG; /* "0x" alone */
    *out = v;
    *end = p;
    return 0;
}

int fl_parse_size(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *end;
    if (parse_number(s, &v, &end) < 0) return -FL_E_INVALID_ARG;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K': shift = 10, end++; break;
    case 'm':
    case 'M': shift = 20, end++; break;
    case 'g':
    case 'G': shift = 30, end++; break;
    default: break;
    }
    if (*end || (shift && v > (UINT64_MAX >> shift))) return -FL_E_INVALID_ARG;
    *out = v << shift;
    return 0;
}

int fl_config_parse_count(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *end;
    if (parse_number(s, &v, &end) < 0 || *end) return -FL_E_INVALID_ARG;
    *out = v;
    return 0;
}

/* A bound as it would be written: 64K rather than 65536. */
static void format_bound(char *buf, size_t len, enum fl_config_kind kind, uint64_t v)
{
    static const char units[] = "KMG";
    int u = -1;
    if (kind == FL_CONFIG_SIZE)
        while (u < 2 && v && v % 1024 == 0) v /= 1024, u++;
    if (u >= 0)
        snprintf(buf, len, "%llu%c", (unsigned long long)v, units[u]);
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
}

int fl_config_value(const char *prefix, const char *what, const char *value,
                    enum fl_config_kind kind, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;
    bool size = kind == FL_CONFIG_SIZE;
    if ((size ? fl_parse_size(value, &v) : fl_config_parse_count(value, &v)) < 0) {
        fprintf(stderr, "%s: %s: '%s' is not %s\n", prefix, what, value ? value : "",
                size ? "a size (bytes, or a number with a K, M or G suffix: 65536, 64K, 1G)"
                     : "a number (decimal, or hexadecimal with 0x)");
        return -FL_E_INVALID_ARG;
    }
    if (v < min || v > max) {
        char lo[32], hi[32];
        format_bound(lo, sizeof(lo), kind, min);
        format_bound(hi, sizeof(hi), kind, max);
        if (max >= UINT64_MAX / 2) /* no upper bound worth naming */
            fprintf(stderr, "%s: %s: '%s' is out of range (at least %s)\n", prefix, what, value,
                    lo);
        else
            fprintf(stderr, "%s: %s: '%s' is out of range (%s to %s)\n", prefix, what, value, lo,
                    hi);
        return -FL_E_INVALID_ARG;
    }
    *out = v;
    return 0;
}

int fl_config_env(const char *prefix, const char *var, enum fl_config_kind kind, uint64_t min,
                  uint64_t max, uint64_t *out)
{
    const char *v = getenv(var);
    if (!v || !*v) return 0;
    char what[128];
    snprintf(what, sizeof(what), "$%s", var);
    return fl_config_value(prefix, what, v, kind, min, max, out) < 0 ? -FL_E_INVALID_ARG : 1;
}
