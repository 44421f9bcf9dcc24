/* fl_version(): the version and commit of this build (fl_version.h). */
#include <faultline/manager.h>

#include "fl_version.h"

const char *fl_version(void)
{
    return FL_VERSION_STRING;
}
