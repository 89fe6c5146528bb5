/*
 * history.h - a device's allocation history (cua_history_enable): the last N
 * allocations, frees, mappings, unmappings and out-of-memory answers, with
 * their addresses, sizes, streams and times, for snapshots (the
 * device_traces of torch.cuda.memory._snapshot()). Off by default; when off,
 * a note costs one relaxed load.
 */
#ifndef CUA_HISTORY_H
#define CUA_HISTORY_H

#include "base/internal.h"

extern _Atomic int _cua_history_on[CUA_MAX_DEVICES];

void _cua_history_add(int device, int action, uintptr_t address, uint64_t size,
                      cua_stream stream, const char *arena);

/* Note one event when the device's history is on. */
static inline void _cua_history_note(int device, int action, uintptr_t address, uint64_t size,
                                     cua_stream stream, const char *arena)
{
    if (CUA_UNLIKELY((unsigned)device < CUA_MAX_DEVICES &&
                     atomic_load_explicit(&_cua_history_on[device], memory_order_relaxed)))
        _cua_history_add(device, action, address, size, stream, arena);
}

#endif /* CUA_HISTORY_H */
