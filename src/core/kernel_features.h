/* faultline-core: the kernel features core needs (check.c). */
#ifndef FL_CORE_KERNEL_FEATURES_H
#define FL_CORE_KERNEL_FEATURES_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

int core_check_kernel(bool verbose);

#endif
