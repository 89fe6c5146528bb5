/*
 * devstat.h - each device's mapped bytes over all its arenas, and their peak
 * (cua_device_peak). A leaf of the base layer: arenas add to it as their
 * segments map and unmap.
 */
#ifndef CUA_DEVSTAT_H
#define CUA_DEVSTAT_H

#include "base/internal.h"

typedef struct cua_devstat {
    _Atomic uint64_t mapped, peak;
} cua_devstat;

/* The counters of `device`, or NULL when it is not 0 .. CUA_MAX_DEVICES - 1. */
cua_devstat *_cua_devstat_of(int device);
/* The device ordinal whose counters d are. */
int _cua_devstat_device(const cua_devstat *d);
/* Mapped bytes change by delta; the peak follows. */
void _cua_devstat_add(cua_devstat *d, int64_t delta);

#endif /* CUA_DEVSTAT_H */
