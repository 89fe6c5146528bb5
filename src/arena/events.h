/*
 * events.h - arena events for the user's callback (cuarena.h,
 * cua_set_event_callback). An event raised under the arena's lock is queued
 * in the arena and handed over once the lock is released, so that the
 * callback may call cuarena, on this arena too.
 */
#ifndef CUA_ARENA_EVENTS_H
#define CUA_ARENA_EVENTS_H

#include "arena/types.h"

/* Queue an event of this call (lock held); a full queue merges it into the
 * last one. Delivered by _cua_event_deliver once the lock is released. */
void _cua_event_queue(cua_arena *a, cua_arena_event_kind kind, const char *reason,
                      uint64_t bytes);
/* Whether an event callback is set (calls then queue their events). */
bool _cua_event_listening(void);
/* Unlock the arena and hand its queued events to the callback. */
void _cua_event_deliver(cua_arena *a);

/* Release the arena's lock; events the call queued go to the callback after it. */
static inline void _cua_arena_unlock(cua_arena *a)
{
    if (CUA_UNLIKELY(a->nevents != 0))
        _cua_event_deliver(a);
    else
        _cua_unlock(&a->lock);
}

#endif /* CUA_ARENA_EVENTS_H */
