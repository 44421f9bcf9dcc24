/* faultline: region maps — address spaces and managed dataspaces. */
#ifndef FAULTLINE_REGION_MAP_H
#define FAULTLINE_REGION_MAP_H

#include <stdbool.h>
#include <faultline/env.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Genode's Region_map::Attr. */
struct fl_attr {
    size_t size;   /* 0: the dataspace's size minus offset */
    size_t offset; /* into the dataspace, page-aligned */
    bool use_at;   /* place at `at` instead of choosing a place */
    uintptr_t at;  /* with use_at: the start within the region map */
    bool executable;
    bool writeable;
};

/* Genode's Range: where the attachment landed. For a component's own address
 * space, start is a virtual address in this process. */
struct fl_range {
    uintptr_t start;
    size_t num_bytes;
};

/*
 * Attach dataspace ds into region map rm. Checked in Genode's order:
 * offset not page-aligned -> REGION_CONFLICT; ds invalid -> INVALID_DATASPACE;
 * offset >= size, or offset + size beyond the dataspace -> REGION_CONFLICT;
 * with use_at: outside the map or overlapping -> REGION_CONFLICT; without:
 * best fit, no room -> REGION_CONFLICT; metadata beyond quota -> OUT_OF_RAM /
 * OUT_OF_CAPS. Attaching into the own address space maps the memory before
 * this returns; a RAM dataspace is mapped shared.
 */
int fl_region_map_attach(struct fl_env *env, fl_cap rm, fl_cap ds, const struct fl_attr *attr,
                         struct fl_range *range);

/* Detach the region containing `at` (any address inside it). An address with
 * no region is ignored. Returns 0 or -FL_E_INVALID_CAP. */
int fl_region_map_detach(struct fl_env *env, fl_cap rm, uintptr_t at);

/* Convenience for the own address space: attach writeable, anywhere. */
void *fl_attach(struct fl_env *env, fl_cap ds, int *err);
int fl_detach(struct fl_env *env, const void *addr);

enum fl_fault_type { FL_FAULT_NONE = 0, FL_FAULT_READ = 1, FL_FAULT_WRITE = 2, FL_FAULT_EXEC = 3 };

struct fl_fault {
    enum fl_fault_type type;
    /* The byte that faulted, relative to the region map that reflected it
     * (the attachment's offset included), as on Genode. On a kernel without
     * UFFD_FEATURE_EXACT_ADDRESS, READ and WRITE faults name their page's
     * first byte (README, Differences from Genode). */
    uintptr_t addr;
};

/* Install sigh as rm's fault handler; FL_CAP_INVALID disables reflection. */
int fl_region_map_fault_handler(struct fl_env *env, fl_cap rm, fl_cap sigh);

/* The fault at the head of rm's faulter queue, or {FL_FAULT_NONE, 0}. */
int fl_region_map_fault(struct fl_env *env, fl_cap rm, struct fl_fault *fault);

/* The managed dataspace of a region map (attachable elsewhere). */
int fl_region_map_dataspace(struct fl_env *env, fl_cap rm, fl_cap *ds);

const char *fl_fault_type_name(enum fl_fault_type type);

#ifdef __cplusplus
}
#endif
#endif
