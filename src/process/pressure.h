/*
 * pressure.h - between "no device memory" and the failure (pressure.c):
 * other arenas' caches, the eviction callbacks, and the verdict.
 */
#ifndef CUA_PROCESS_PRESSURE_H
#define CUA_PROCESS_PRESSURE_H

#include "arena/arena.h"

/* Before an allocation of `size` fails for want of device memory, take cached
 * memory from the device's other arenas (lowest priority first, only as much
 * as needed) and call the eviction callbacks; true when that freed anything.
 * Called with no lock held; `gen` is a's generation when the caller held its
 * lock (nothing is done for an arena destroyed since, whose memory may hold
 * another arena). */
bool _cua_pressure_relieve(cua_arena *a, uint32_t gen, size_t size);
/* After the final failure: add the device's arenas and the verdict
 * (fragmentation or exhaustion) to the thread's message. */
void _cua_pressure_report(cua_arena *a, uint32_t gen, size_t size);

#endif /* CUA_PROCESS_PRESSURE_H */
