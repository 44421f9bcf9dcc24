/* faultline: the component's environment — its session with core (Genode's PD). */
#ifndef FAULTLINE_ENV_H
#define FAULTLINE_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A capability: a per-session handle. 0 is the invalid capability. */
typedef uint64_t fl_cap;
#define FL_CAP_INVALID ((fl_cap)0)

struct fl_env;

struct fl_env_config {
    /* Core's socket; NULL: $FAULTLINE_SOCKET, else
     * $XDG_RUNTIME_DIR/faultline/core.sock, else /tmp/faultline-$UID/core.sock. */
    const char *socket_path;
    /* Size of the address-space window core manages, in bytes (rounded up to
     * 4 KiB); 0: $FAULTLINE_WINDOW_SIZE (a size as fl_parse_size reads it:
     * 1073741824, 1G), else 1 GiB. */
    size_t window_size;
    /* Preferred base address of the window; 0: wherever the kernel puts it. */
    uintptr_t window_base;
    /* Take over the session a parent created with fl_pd_create (its window
     * then overrides the two fields above); NULL: $FAULTLINE_PD_TOKEN if set
     * (which fl_env_open then removes from the environment), else a new
     * top-level session. */
    const char *pd_token;
    /* For debugging only: leave the process dumpable. false (the default):
     * fl_env_open makes the process non-dumpable (prctl PR_SET_DUMPABLE 0),
     * unless $FAULTLINE_DUMPABLE is set to anything but "" or "0", so that no
     * other process of this uid can re-open the memfds core hands it through
     * /proc/PID/fd/N, take its descriptors with pidfd_getfd, or read or write
     * its memory with process_vm_readv/writev or ptrace (root with
     * CAP_SYS_PTRACE still can; core dumps are off as well). Either opt-out
     * leaves the process as it is, and says on stderr that it is reachable by
     * any process of its uid. Non-dumpability is process-wide: it outlives
     * fl_env_close, a fork inherits it, an execve resets it. */
    bool dumpable;
};

/*
 * Connect to core and open a session. Reserves the address-space window,
 * registers it with a userfaultfd handed to core, and starts the agent thread
 * that carries out core's mapping instructions (it blocks every asynchronous
 * signal, so a SIGTERM or SIGINT is never delivered to it: see
 * fl_manager_catch_stop). cfg may be NULL.
 *
 * The environment it reads: $FAULTLINE_SOCKET, $FAULTLINE_WINDOW_SIZE (a
 * size: 4096, 64M, 4G), $FAULTLINE_VMA_BUDGET (a number of mapping windows
 * the agent keeps mapped, at least 4; default 16384), $FAULTLINE_PD_TOKEN,
 * $FAULTLINE_DUMPABLE and $FAULTLINE_VERBOSE. A value it cannot use (not a
 * size or number, 0, out of range, a socket path longer than a Unix socket
 * address takes) fails with -FL_E_INVALID_ARG (-FL_E_TOKEN for a malformed
 * $FAULTLINE_PD_TOKEN) and one line on stderr naming the variable and the
 * value; nothing is set up. -FL_E_NO_CORE and -FL_E_PERMISSION come with a
 * line naming the socket it tried and where that path came from.
 * Returns 0 or -FL_E_*; *env is set only on success.
 */
int fl_env_open(struct fl_env **env, const struct fl_env_config *cfg);

/* Close the session: core releases everything the session owned. */
void fl_env_close(struct fl_env *env);

/* The capability of this component's own address-space region map. */
fl_cap fl_env_address_space(const struct fl_env *env);

/* The window of the address space that core manages: [base, base + size). */
void *fl_env_window_base(const struct fl_env *env);
size_t fl_env_window_size(const struct fl_env *env);

/* Core's socket path as resolved by fl_env_open's rules (static storage of
 * the caller's buffer: writes at most len bytes). Returns 0, or
 * -FL_E_INVALID_ARG if it does not fit len or a Unix socket address (107
 * bytes). */
int fl_socket_path(char *buf, size_t len);

/* Quotas and usage of this session. */
struct fl_session_info {
    uint64_t ram_quota, ram_used;
    uint64_t cap_quota, cap_used;
    uint64_t session_id;
};
int fl_env_session_info(struct fl_env *env, struct fl_session_info *info);

/*
 * Capability delegation. Export: core makes an unguessable single-use token
 * (FL_TOKEN_LEN hex characters) for cap; pass it to another component out of
 * band (argv, environment, a pipe). Import: the first session to present the
 * token gets its own capability to the object; a second import fails with
 * -FL_E_TOKEN. Release: drop a capability from this session's table.
 */
#define FL_TOKEN_LEN 32
int fl_cap_export(struct fl_env *env, fl_cap cap, char token[FL_TOKEN_LEN + 1]);
int fl_cap_import(struct fl_env *env, const char *token, fl_cap *cap);
int fl_cap_release(struct fl_env *env, fl_cap cap);

/*
 * Create a session for a child component and fund it from this session's
 * quota (Genode's PD session): ram_quota and cap_quota move to the child (plus
 * one capability for the PD) and come back when the child's session ends; the
 * child's session ends when this one does. *address_space is the capability
 * of the child's address-space region map, valid at once: install a fault
 * handler on it, attach into it (coordinates: the child's virtual addresses,
 * its window at window_base). Hand the token to the child (e.g. in
 * $FAULTLINE_PD_TOKEN); its fl_env_open claims the session, once.
 * Errors: -FL_E_OUT_OF_RAM, -FL_E_OUT_OF_CAPS, -FL_E_INVALID_ARG (window).
 */
#define FL_PD_WINDOW_BASE 0x200000000000ull /* default: 32 TiB, clear of ASLR's usual ranges */
struct fl_pd_config {
    size_t ram_quota;
    size_t cap_quota;
    size_t window_size;    /* 0: 1 GiB */
    uintptr_t window_base; /* 0: FL_PD_WINDOW_BASE */
};
int fl_pd_create(struct fl_env *env, const struct fl_pd_config *cfg, fl_cap *address_space,
                 char token[FL_TOKEN_LEN + 1]);

/*
 * Move more quota from this session to a child's PD session it created
 * (Genode's session upgrade); pd is the address-space capability fl_pd_create
 * returned. The quota returns to this session when the child's session ends.
 * Errors: -FL_E_OUT_OF_RAM / -FL_E_OUT_OF_CAPS (this session's quota; nothing
 * moves), -FL_E_INVALID_CAP (not a PD's address space), -FL_E_DENIED (a PD
 * session this session did not create).
 */
int fl_pd_upgrade(struct fl_env *env, fl_cap pd, size_t ram_quota, size_t cap_quota);

#ifdef __cplusplus
}
#endif
#endif
