/*
 * devstat.c - each device's mapped bytes and their peak (devstat.h).
 */
#include "base/devstat.h"

static cua_devstat devstats[CUA_MAX_DEVICES];

cua_devstat *_cua_devstat_of(int device)
{
    return device >= 0 && device < CUA_MAX_DEVICES ? &devstats[device] : NULL;
}

int _cua_devstat_device(const cua_devstat *d) { return (int)(d - devstats); }

void _cua_devstat_add(cua_devstat *d, int64_t delta)
{
    uint64_t now = atomic_fetch_add(&d->mapped, (uint64_t)delta) + (uint64_t)delta;
    uint64_t peak = atomic_load(&d->peak);
    while (now > peak && !atomic_compare_exchange_weak(&d->peak, &peak, now)) {
    }
}

cua_status cua_device_peak(int device, size_t *peak_mapped, size_t *mapped_now)
{
    cua_devstat *d = _cua_devstat_of(device);
    if (!d || (!peak_mapped && !mapped_now))
        return _cua_error(CUA_ERR_INVALID_ARG, "device %d is out of range 0..%d, or both outputs "
                          "are NULL", device, CUA_MAX_DEVICES - 1);
    if (peak_mapped) *peak_mapped = (size_t)atomic_load(&d->peak);
    if (mapped_now) *mapped_now = (size_t)atomic_load(&d->mapped);
    return CUA_OK;
}

cua_status cua_device_reset_peak(int device)
{
    cua_devstat *d = _cua_devstat_of(device);
    if (!d) return _cua_error(CUA_ERR_INVALID_ARG, "device %d is out of range 0..%d", device,
                              CUA_MAX_DEVICES - 1);
    atomic_store(&d->peak, atomic_load(&d->mapped));
    return CUA_OK;
}
