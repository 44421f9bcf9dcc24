/*
 * Configuration values, parsed one way everywhere: the library's environment
 * variables, core's options and the tools' options. A size is bytes, or a
 * number with a K, M or G suffix (binary: 64K is 65536); a count is a plain
 * number. Both are decimal, or hexadecimal with 0x. Anything else, and a
 * value out of range, is an error naming the variable or option and the value.
 */
#ifndef FL_CONFIG_H
#define FL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum fl_config_kind { FL_CONFIG_SIZE, FL_CONFIG_COUNT };

/* A count: digits only (0 or -FL_E_INVALID_ARG). fl_parse_size, the size
 * parser, is public (faultline/manager.h). */
int fl_config_parse_count(const char *s, uint64_t *out);

/*
 * Parse value as a size or count in [min, max] into *out. On error print one
 * line to stderr, "PREFIX: WHAT: 'VALUE' is not a size (...)" or "... is out
 * of range (...)", and return -FL_E_INVALID_ARG; what names the source, e.g.
 * "$FAULTLINE_WINDOW_SIZE" or "--ram-quota".
 */
int fl_config_value(const char *prefix, const char *what, const char *value,
                    enum fl_config_kind kind, uint64_t min, uint64_t max, uint64_t *out);

/* The environment variable var, parsed as above (what: "$VAR"). Returns 0 if
 * it is unset or empty (*out untouched), 1 if parsed, or -FL_E_INVALID_ARG. */
int fl_config_env(const char *prefix, const char *var, enum fl_config_kind kind, uint64_t min,
                  uint64_t max, uint64_t *out);

/* Core's socket path by the one rule (fl_socket_path) into buf, and in *from
 * where it came from ("$FAULTLINE_SOCKET", ...). Returns its length, as
 * snprintf does: len or more means buf holds only its beginning. */
int fl_config_socket_path(char *buf, size_t len, const char **from);

#endif
