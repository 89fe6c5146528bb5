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
static uint64_t cb_epoch; /* +1 per cua_set_event_callback */
static _Atomic bool cb_set; /* lets arenas skip queueing when nobody listens */

_Thread_local unsigned _cua_in_callback;

/* A delivery in flight: a record on its caller's stack, listed (cb_lock) so
 * that setting another callback can wait for the calls of the old one. */
typedef struct flight {
    uint64_t epoch; /* the callback's: cb_epoch when the delivery took it */
    pthread_t thread;
    struct flight *next;
} flight;
static flight *flights;
static pthread_cond_t flight_done = PTHREAD_COND_INITIALIZER;

/* A call of a callback set before `epoch` runs on another thread (cb_lock held). */
static bool older_flying_elsewhere(uint64_t epoch)
{
    for (const flight *f = flights; f; f = f->next)
        if (f->epoch < epoch && !pthread_equal(f->thread, pthread_self())) return true;
    return false;
}

cua_status cua_set_event_callback(cua_arena_event_fn fn, void *user)
{
    _cua_mutex_lock(&cb_lock);
    cb_fn = fn;
    cb_user = user;
    uint64_t epoch = ++cb_epoch;
    atomic_store(&cb_set, fn != NULL);
    /* The old callback's calls on other threads end before this returns, so
     * that its `user` may be freed next; not from inside a callback (two
     * threads could wait for each other's), nor for this thread's own. */
    while (!_cua_in_callback && older_flying_elsewhere(epoch))
        pthread_cond_wait(&flight_done, &cb_lock.m);
    _cua_mutex_unlock(&cb_lock);
    return CUA_OK;
}

static void fill(cua_arena_event *ev, cua_arena *a, cua_arena_event_kind kind,
                 const char *reason, uint64_t bytes)
{
    *ev = (cua_arena_event){
        .kind = kind,
        .arena = a->self,
        .name = a->name,
        .device = a->device,
        .bytes = bytes,
        .reason = reason ? reason : "",
        .mapped_bytes = a->seg.mapped_bytes,
        .live_bytes = a->live_bytes,
    };
}

bool _cua_event_listening(void) { return atomic_load_explicit(&cb_set, memory_order_relaxed); }

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

/* The callback of `epoch` is still the one set (a callback may unset itself,
 * then free its `user`: the events left are not for it). */
static bool still_set(uint64_t epoch)
{
    _cua_mutex_lock(&cb_lock);
    bool same = cb_epoch == epoch;
    _cua_mutex_unlock(&cb_lock);
    return same;
}

static void call(const cua_arena_event *evs, unsigned n)
{
    flight me = {0, pthread_self(), NULL};
    _cua_mutex_lock(&cb_lock);
    cua_arena_event_fn fn = cb_fn;
    void *user = cb_user;
    if (fn) {
        me.epoch = cb_epoch;
        me.next = flights;
        flights = &me;
    }
    _cua_mutex_unlock(&cb_lock);
    if (!fn) return;
    char keep[CUA_MSG_CAP];
    _cua_error_stash(keep, sizeof keep); /* the caller's message survives the callback */
    _cua_in_callback++;
    for (unsigned i = 0; i < n && (i == 0 || still_set(me.epoch)); i++) fn(&evs[i], user);
    _cua_in_callback--;
    _cua_error_restore(keep);
    _cua_mutex_lock(&cb_lock);
    for (flight **at = &flights; *at; at = &(*at)->next)
        if (*at == &me) {
            *at = me.next;
            break;
        }
    pthread_cond_broadcast(&flight_done);
    _cua_mutex_unlock(&cb_lock);
}

void _cua_event_deliver(cua_arena *a)
{
    cua_arena_event evs[CUA_ARENA_EVENTS];
    /* The name copied too: a callback may destroy the arena, and its memory
     * take another arena's name, before the next event of the batch. */
    char name[CUA_NAME_CAP];
    unsigned n = a->nevents;
    memcpy(evs, a->events, n * sizeof *evs);
    memcpy(name, a->name, sizeof name);
    for (unsigned i = 0; i < n; i++) evs[i].name = name;
    a->nevents = 0;
    _cua_unlock(&a->lock);
    call(evs, n);
}

