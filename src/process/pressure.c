/*
 * pressure.c - what happens between "this arena found no device memory" and
 * the failure: the device's other arenas give cached memory (lowest priority
 * first, only as much as the request lacks), the user's eviction callbacks
 * run (lowest priority first, until enough is free), and after the final
 * failure the message gains every arena of the device and a verdict.
 *
 * No lock is held across arenas: each is locked in turn (two arenas short of
 * memory at once must not wait for each other's locks), and the callbacks run
 * with none held, so they may free, destroy or offload.
 */
#include "process/pressure.h"
#include "arena/events.h"
#include "arena/stats.h"
#include "process/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUA_EVICT_MAX 16

typedef struct evictor {
    cua_evict_fn fn;
    void *user;
    int priority;
    uint64_t order;
} evictor;

static cua_mutex ev_lock = CUA_MUTEX_INIT(EVICT);
static evictor evictors[CUA_EVICT_MAX];
static size_t nevictors;
static uint64_t next_order;

static int by_priority(const void *x, const void *y)
{
    const evictor *p = x, *q = y;
    if (p->priority != q->priority) return p->priority < q->priority ? -1 : 1;
    return (p->order > q->order) - (p->order < q->order);
}

cua_status cua_add_evict_callback(cua_evict_fn fn, void *user, int priority)
{
    if (!fn) return _cua_error(CUA_ERR_INVALID_ARG, "the eviction callback is NULL");
    cua_status st = CUA_OK;
    _cua_mutex_lock(&ev_lock);
    for (size_t i = 0; i < nevictors && st == CUA_OK; i++)
        if (evictors[i].fn == fn && evictors[i].user == user)
            st = _cua_error(CUA_ERR_INVALID_ARG, "this eviction callback is registered already");
    if (st == CUA_OK && nevictors == CUA_EVICT_MAX)
        st = _cua_error(CUA_ERR_BUSY, "%d eviction callbacks are registered already", CUA_EVICT_MAX);
    if (st == CUA_OK) {
        evictors[nevictors++] = (evictor){fn, user, priority, next_order++};
        qsort(evictors, nevictors, sizeof *evictors, by_priority);
    }
    _cua_mutex_unlock(&ev_lock);
    return st;
}

cua_status cua_remove_evict_callback(cua_evict_fn fn, void *user)
{
    cua_status st = _cua_error(CUA_ERR_NOT_FOUND, "no such eviction callback is registered");
    _cua_mutex_lock(&ev_lock);
    for (size_t i = 0; i < nevictors; i++) {
        if (evictors[i].fn != fn || evictors[i].user != user) continue;
        memmove(&evictors[i], &evictors[i + 1], (nevictors - i - 1) * sizeof *evictors);
        nevictors--;
        st = CUA_OK;
        break;
    }
    _cua_mutex_unlock(&ev_lock);
    return st;
}

/* Does arena b's memory come from the same physical pool as a's? */
static bool same_pool(const cua_arena *a, const cua_arena *b)
{
    if (a->device != b->device) return false;
    return a->bk == b->bk || (a->bk->kind == CUA_BK_CUDA && b->bk->kind == CUA_BK_CUDA);
}

/* Bytes the driver has free, asked through a (locked in here); 0 if a is gone. */
static size_t driver_free(cua_arena *a)
{
    size_t fr = 0, tot = 0;
    if (_cua_arena_lock_alive(a)) {
        _cua_bk_mem_info(a->bk, &a->cs, &fr, &tot);
        _cua_arena_unlock(a);
    }
    return fr;
}

/* What the request still lacks: its size in whole pages, less what the driver
 * has free. */
static uint64_t missing(cua_arena *a, size_t size)
{
    uint64_t need = ((uint64_t)size + a->bk->granularity - 1) & ~((uint64_t)a->bk->granularity - 1);
    size_t fr = driver_free(a);
    return need > fr ? need - fr : 0;
}

/* Take up to `want` bytes of cache from the other arenas of a's pool. */
static uint64_t trim_others(cua_arena *a, uint64_t want)
{
    cua_arena **v;
    size_t n;
    if (_cua_registry_by_priority(a->device, &v, &n) != CUA_OK) return 0;
    uint64_t got = 0;
    for (size_t i = 0; i < n && got < want; i++) {
        cua_arena *b = v[i];
        if (b == a || !same_pool(a, b)) continue;
        uint64_t released = 0;
        if (!_cua_arena_lock_alive(b)) continue;
        _cua_arena_trim_for_pressure_locked(b, want - got, &released);
        _cua_arena_unlock(b);
        got += released;
    }
    free(v);
    return got;
}

bool _cua_pressure_relieve(cua_arena *a, size_t size)
{
    uint64_t want = missing(a, size);
    if (want == 0) return false; /* the driver has room now (another thread freed some) */
    bool any = trim_others(a, want) > 0;
    if ((want = missing(a, size)) == 0) return true;
    evictor evs[CUA_EVICT_MAX];
    _cua_mutex_lock(&ev_lock);
    size_t n = nevictors;
    memcpy(evs, evictors, n * sizeof *evs);
    _cua_mutex_unlock(&ev_lock);
    for (size_t i = 0; i < n && want; i++) {
        char keep[CUA_MSG_CAP];
        _cua_error_stash(keep, sizeof keep);
        if (evs[i].fn(a->device, (size_t)want, evs[i].user)) any = true;
        _cua_error_restore(keep);
        want = missing(a, size);
    }
    return any || want == 0;
}

void _cua_pressure_report(cua_arena *a, size_t size)
{
    char keep[CUA_MSG_CAP], *text = NULL;
    _cua_error_stash(keep, sizeof keep);
    cua_arena **v;
    size_t n;
    if (_cua_registry_snapshot(a->device, &v, &n) != CUA_OK) return;
    size_t fr = driver_free(a), cap = 1024, len = 0;
    uint64_t free_inside = 0;
    text = malloc(cap);
    if (!text) {
        free(v);
        return;
    }
    text[0] = 0;
    for (size_t i = 0; i < n; i++) {
        cua_stats s;
        if (!same_pool(a, v[i]) || !_cua_arena_lock_alive(v[i])) continue;
        _cua_stats_read(v[i], &s);
        _cua_arena_unlock(v[i]);
        char live[32], mapped[32], trim[32], largest[32];
        free_inside += s.free_bytes;
        _cua_put(text, cap, &len, "%s'%s' %s live / %s mapped / %s trimmable / %s largest free",
                 len ? "; " : "", v[i]->name, _cua_fmt_bytes(live, sizeof live, s.live_bytes),
                 _cua_fmt_bytes(mapped, sizeof mapped, s.mapped_bytes),
                 _cua_fmt_bytes(trim, sizeof trim, s.cached_bytes),
                 _cua_fmt_bytes(largest, sizeof largest, s.largest_free_bytes));
    }
    free(v);
    char asked[32], drv[32], total[32];
    _cua_fmt_bytes(asked, sizeof asked, size);
    _cua_fmt_bytes(drv, sizeof drv, fr);
    _cua_fmt_bytes(total, sizeof total, fr + free_inside);
    bool fragmented = fr + free_inside >= size;
    _cua_error(CUA_ERR_OUT_OF_MEMORY,
               "%s. Verdict: %s (%s): %s free in total on device %d (%s at the driver, the "
               "rest inside the arenas' mapped memory) for %s asked. Arenas: %s",
               keep, fragmented ? "fragmentation" : "exhaustion",
               fragmented ? "enough, but not in one place" : "not enough anywhere", total,
               a->device, drv, asked, text);
    free(text);
}
