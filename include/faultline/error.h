/* faultline: errors are values. */
#ifndef FAULTLINE_ERROR_H
#define FAULTLINE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every fl_ function that can fail returns 0 (or a non-negative result) on
 * success and the negative of one of these codes on failure. The first group
 * are Genode's own error names; the rest are faultline's.
 */
enum fl_error {
    FL_OK = 0,
    FL_E_DENIED = 1,            /* not permitted (e.g. size 0, no such ROM module) */
    FL_E_OUT_OF_RAM = 2,        /* RAM quota or core's RAM budget exhausted */
    FL_E_OUT_OF_CAPS = 3,       /* capability quota or core's descriptor budget exhausted */
    FL_E_INVALID_DATASPACE = 4, /* not a dataspace capability of this session */
    FL_E_REGION_CONFLICT = 5,   /* bad offset/size, or the range is taken */
    FL_E_INVALID_CAP = 6,       /* the capability names nothing (of that kind) here */
    FL_E_INVALID_ARG = 7,       /* an argument is out of range */
    FL_E_PROTOCOL = 8,          /* malformed message; core closed the session */
    FL_E_VERSION = 9,           /* library and core speak different protocol versions */
    FL_E_NO_CORE = 10,          /* no core serves the socket */
    FL_E_SESSION_CLOSED = 11,   /* core closed the session or died */
    FL_E_TOKEN = 12,            /* export token unknown, already used, or its object gone */
    FL_E_PERMISSION = 13,       /* core refused the peer (other uid) */
    FL_E_NOT_SUPPORTED = 14,    /* the kernel lacks a needed feature */
    FL_E_SYSTEM = 15,           /* a system call failed; errno-level detail is in the log */
    FL_E_BUSY = 16,             /* a wait, not a limit: core's connections, a peer's credit */
    FL_E_TIMEOUT = 17,          /* the wait's time ran out first (fl_manager_wait) */
    FL_E_MAX
};

/* A sentence a person can act on, for FL_E_* given positive or negative. */
const char *fl_strerror(int err);

/* The enum name ("REGION_CONFLICT"), for logs and tests. */
const char *fl_error_name(int err);

#ifdef __cplusplus
}
#endif
#endif
