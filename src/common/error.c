#include <faultline/error.h>
#include <faultline/region_map.h>

static const struct {
    const char *name, *text;
} errors[FL_E_MAX] = {
    [FL_OK] = {"OK", "success"},
    [FL_E_DENIED] = {"DENIED", "request denied (e.g. a size of 0, or no such ROM module)"},
    [FL_E_OUT_OF_RAM] = {"OUT_OF_RAM", "RAM quota of the session, or core's RAM budget, exhausted"},
    [FL_E_OUT_OF_CAPS] =
        {"OUT_OF_CAPS", "capability quota of the session, or core's descriptor budget, exhausted"},
    [FL_E_INVALID_DATASPACE] = {"INVALID_DATASPACE",
                                "not a valid dataspace capability of this session"},
    [FL_E_REGION_CONFLICT] = {"REGION_CONFLICT",
                              "offset or size out of range, or the range is already taken"},
    [FL_E_INVALID_CAP] = {"INVALID_CAP", "capability invalid, destroyed, or of the wrong kind"},
    [FL_E_INVALID_ARG] = {"INVALID_ARG", "argument out of range"},
    [FL_E_PROTOCOL] = {"PROTOCOL", "malformed message; core closed the session"},
    [FL_E_VERSION] = {"VERSION", "libfaultline and faultline-core speak different protocol "
                                 "versions; use a matching pair"},
    [FL_E_NO_CORE] = {"NO_CORE", "no faultline-core serves the socket (start faultline-core, or "
                                 "set FAULTLINE_SOCKET)"},
    [FL_E_SESSION_CLOSED] = {"SESSION_CLOSED", "core closed or refused the session, or died "
                                               "(core's log says why)"},
    [FL_E_TOKEN] = {"TOKEN", "export token unknown, already imported, or its object is gone"},
    [FL_E_PERMISSION] = {"PERMISSION", "core refused this peer (different uid)"},
    [FL_E_NOT_SUPPORTED] = {"NOT_SUPPORTED",
                            "the kernel lacks a feature faultline needs (see faultline-core "
                            "--check)"},
    [FL_E_SYSTEM] = {"SYSTEM", "a system call failed (see the log)"},
    [FL_E_BUSY] = {"BUSY", "core is at its connection limit, or a peer has not yet acknowledged "
                           "the descriptors core sent it; try again later"},
    [FL_E_TIMEOUT] = {"TIMEOUT", "the time to wait ran out first"},
};

const char *fl_strerror(int err)
{
    if (err < 0) err = -err;
    if (err >= FL_E_MAX) return "unknown faultline error";
    return errors[err].text;
}

const char *fl_error_name(int err)
{
    if (err < 0) err = -err;
    if (err >= FL_E_MAX) return "UNKNOWN";
    return errors[err].name;
}

const char *fl_fault_type_name(enum fl_fault_type type)
{
    switch (type) {
    case FL_FAULT_NONE: return "NONE";
    case FL_FAULT_READ: return "READ";
    case FL_FAULT_WRITE: return "WRITE";
    case FL_FAULT_EXEC: return "EXEC";
    }
    return "?";
}
