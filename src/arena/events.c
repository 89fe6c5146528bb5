/*
 * events.c - arena events for the user's callback (cuarena.h). An event
 * raised while the arena's lock is held is queued in the arena and handed
 * over once the lock is released (api.c's leave), so that the callback may
 * call cuarena itself, on this arena too. The library never prints; this is
 * how an engine learns what its memory did.
 */
#include "arena/events.h"

#include <string.h>

static cua_mutex cb_lock = CUA_MUTEX_INIT(EVENT_CB);
static cua_arena_event_fn cb_fn;
static void *cb_user;
static _Atomic bool cb_set; /* lets arenas skip queueing when nobody listens */

cua_status cua_set_event_callback(cua_arena_event_fn fn, void *user)
{
    _cua_mutex_lock(&cb_lock);
    cb_fn = fn;
    cb_user = user;
    atomic_store(&cb_set, fn != NULL);
    _cua_mutex_unlock(&cb_lock);
    return CUA_OK;
}

static void fill(cua_arena_event *ev, cua_arena *a, cua_arena_event_kind kind,
                 const char *reason, uint64_t bytes)
{
    *ev = (cua_arena_event){
        .kind = kind,
        .arena = a,
        .name = a->name,
        .device = a->device,
        .bytes = bytes,
        .reason = reason ? reason : "",
        .mapped_bytes = a->seg.mapped_bytes,
        .live_bytes = a->live_bytes,
    };
}

void _cua_event_queue(cua_arena *a, cua_arena_event_kind kind, const char *reason,
                      uint64_t bytes)
{
    if (!atomic_load_explicit(&cb_set, memory_order_relaxed)) return;
    cua_arena_event *last = a->nevents ? &a->events[a->nevents - 1] : NULL;
    if (last && last->kind == kind && kind == CUA_ARENA_TRIMMED && !strcmp(last->reason, reason)) {
        last->bytes += bytes; /* one trim of that reason, with the sum */
        last->mapped_bytes = a->seg.mapped_bytes;
        last->live_bytes = a->live_bytes;
        return;
    }
    if (a->nevents == CUA_ARENA_EVENTS) a->nevents--; /* full: the newest replaces the last */
    fill(&a->events[a->nevents++], a, kind, reason, bytes);
}

static void call(const cua_arena_event *evs, unsigned n)
{
    _cua_mutex_lock(&cb_lock);
    cua_arena_event_fn fn = cb_fn;
    void *user = cb_user;
    _cua_mutex_unlock(&cb_lock);
    if (!fn) return;
    char keep[CUA_MSG_CAP];
    _cua_error_stash(keep, sizeof keep); /* the caller's message survives the callback */
    for (unsigned i = 0; i < n; i++) fn(&evs[i], user);
    _cua_error_restore(keep);
}

void _cua_event_deliver(cua_arena *a)
{
    cua_arena_event evs[CUA_ARENA_EVENTS];
    unsigned n = a->nevents;
    memcpy(evs, a->events, n * sizeof *evs);
    a->nevents = 0;
    _cua_unlock(&a->lock);
    call(evs, n);
}

void _cua_event_now(cua_arena *a, cua_arena_event_kind kind)
{
    if (!atomic_load_explicit(&cb_set, memory_order_relaxed)) return;
    cua_arena_event ev;
    fill(&ev, a, kind, "", 0);
    call(&ev, 1);
}
