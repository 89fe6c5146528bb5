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

/* A call of an eviction callback in flight: a record on its caller's stack,
 * listed (ev_lock) so that cua_remove_evict_callback can wait for the calls
 * of other threads before its caller frees `user`. */
typedef struct flight {
    cua_evict_fn fn;
    void *user;
    pthread_t thread;
    struct flight *next;
} flight;
static flight *flights;
static pthread_cond_t flight_done = PTHREAD_COND_INITIALIZER;

/* Calls of fn with user by threads other than this one (ev_lock held). */
static bool flying_elsewhere(cua_evict_fn fn, void *user)
{
    for (const flight *f = flights; f; f = f->next)
        if (f->fn == fn && f->user == user && !pthread_equal(f->thread, pthread_self()))
            return true;
    return false;
}

static bool registered(cua_evict_fn fn, void *user)
{
    for (size_t i = 0; i < nevictors; i++)
        if (evictors[i].fn == fn && evictors[i].user == user) return true;
    return false;
}

/* Call e if it is still registered (it may have been removed since the list
 * was copied: its `user` may be gone); false when not called. *freed gets its
 * answer. */
static bool evict_call(const evictor *e, int device, size_t want, size_t *freed)
{
    flight me = {e->fn, e->user, pthread_self(), NULL};
    _cua_mutex_lock(&ev_lock);
    bool still = registered(e->fn, e->user);
    if (still) {
        me.next = flights;
        flights = &me;
    }
    _cua_mutex_unlock(&ev_lock);
    if (!still) return false;
    char keep[CUA_MSG_CAP];
    _cua_error_stash(keep, sizeof keep);
    _cua_in_callback++;
    *freed = e->fn(device, want, e->user);
    _cua_in_callback--;
    _cua_error_restore(keep);
    _cua_mutex_lock(&ev_lock);
    for (flight **at = &flights; *at; at = &(*at)->next)
        if (*at == &me) {
            *at = me.next;
            break;
        }
    pthread_cond_broadcast(&flight_done);
    _cua_mutex_unlock(&ev_lock);
    return true;
}

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
    /* Its calls on other threads finish before `user` may go; not from inside
     * a callback (two threads could wait for each other's). */
    while (st == CUA_OK && !_cua_in_callback && flying_elsewhere(fn, user))
        pthread_cond_wait(&flight_done, &ev_lock.m);
    _cua_mutex_unlock(&ev_lock);
    return st;
}

/* The physical pool of the arena that ran short, read under its lock once:
 * nothing of it is read without that lock later (another thread, or a
 * callback, may destroy the arena meanwhile: its backend goes with it). `bk`
 * only names the pool; it is never called through. */
typedef struct pool {
    int device;
    const cua_backend *bk;
    bool cuda;      /* every CUDA backend of the device shares its memory */
    uint64_t gran;
    uint32_t gen;   /* the asker's generation: _cua_arena_same after each callback */
} pool;

/* a's pool into *p; false when a was destroyed. */
static bool pool_of(cua_arena *a, uint32_t gen, pool *p)
{
    /* (the asker's generation, as its caller saw it: its memory may hold
     * another arena since a callback destroyed it) */
    if (!_cua_arena_lock_same(a, gen)) return false;
    *p = (pool){a->device, a->bk, a->bk->kind == CUA_BK_CUDA, a->bk->granularity, gen};
    _cua_unlock(&a->lock);
    return true;
}

/* Does arena b (locked, alive) take its memory from pool p? */
static bool in_pool(const pool *p, const cua_arena *b)
{
    if (b->device != p->device) return false;
    return b->bk == p->bk || (p->cuda && b->bk->kind == CUA_BK_CUDA);
}

/* Bytes the driver has free, asked through a (locked in here); 0 if a is
 * gone (destroyed, or another arena since: not of generation `gen`). */
static size_t driver_free(cua_arena *a, uint32_t gen)
{
    size_t fr = 0, tot = 0;
    if (_cua_arena_lock_same(a, gen)) {
        _cua_bk_mem_info(a->bk, &a->cs, &fr, &tot);
        _cua_arena_unlock(a);
    }
    return fr;
}

/* What the request still lacks: its size in whole pages, less what the driver
 * has free. */
static uint64_t missing(cua_arena *a, const pool *p, size_t size)
{
    uint64_t need = ((uint64_t)size + p->gran - 1) & ~(p->gran - 1);
    size_t fr = driver_free(a, p->gen);
    return need > fr ? need - fr : 0;
}

/* Take up to `want` bytes of cache from the other arenas of pool p. (Their
 * unlocks deliver events: the callback may destroy any arena, a too.) */
static uint64_t trim_others(cua_arena *a, const pool *p, uint64_t want)
{
    cua_arena **v;
    size_t n;
    if (_cua_registry_by_priority(p->device, &v, &n) != CUA_OK) return 0;
    uint64_t got = 0;
    for (size_t i = 0; i < n && got < want && _cua_arena_same(a, p->gen); i++) {
        cua_arena *b = v[i];
        uint64_t released = 0;
        if (b == a || !_cua_arena_lock_alive(b)) continue;
        if (in_pool(p, b)) _cua_arena_trim_for_pressure_locked(b, want - got, &released);
        _cua_arena_unlock(b);
        got += released;
    }
    free(v);
    return got;
}

bool _cua_pressure_relieve(cua_arena *a, uint32_t gen, size_t size)
{
    pool p;
    if (!pool_of(a, gen, &p)) return false; /* destroyed meanwhile: the caller finds out */
    uint64_t want = missing(a, &p, size);
    if (want == 0) return false; /* the driver has room now (another thread freed some) */
    bool any = trim_others(a, &p, want) > 0;
    if (!_cua_arena_same(a, p.gen)) return any;
    if ((want = missing(a, &p, size)) == 0) return true;
    evictor evs[CUA_EVICT_MAX];
    _cua_mutex_lock(&ev_lock);
    size_t n = nevictors;
    memcpy(evs, evictors, n * sizeof *evs);
    _cua_mutex_unlock(&ev_lock);
    for (size_t i = 0; i < n && want; i++) {
        size_t freed = 0;
        if (!evict_call(&evs[i], p.device, (size_t)want, &freed)) continue; /* removed meanwhile */
        if (freed) any = true;
        /* The callback may have destroyed the arena that asked: then it is done. */
        if (!_cua_arena_same(a, p.gen)) return any;
        want = missing(a, &p, size);
    }
    return any || want == 0;
}

/* One arena's line of the report, when it is alive and of pool p (locked
 * here: its figures and its backend are read under its lock). */
static bool report_line(const pool *p, cua_arena *b, char *text, size_t cap, size_t *len,
                        uint64_t *free_inside)
{
    if (!_cua_arena_lock_alive(b)) return false;
    cua_stats s;
    char name[CUA_NAME_CAP]; /* (copied under the lock: the memory may hold another arena after) */
    bool ours = in_pool(p, b);
    if (ours) {
        _cua_stats_read(b, &s);
        memcpy(name, b->name, sizeof name);
    }
    _cua_arena_unlock(b);
    if (!ours) return false;
    char live[32], mapped[32], trim[32], largest[32];
    *free_inside += s.free_bytes;
    _cua_put(text, cap, len, "%s'%s' %s live / %s mapped / %s trimmable / %s largest free",
             *len ? "; " : "", name, _cua_fmt_bytes(live, sizeof live, s.live_bytes),
             _cua_fmt_bytes(mapped, sizeof mapped, s.mapped_bytes),
             _cua_fmt_bytes(trim, sizeof trim, s.cached_bytes),
             _cua_fmt_bytes(largest, sizeof largest, s.largest_free_bytes));
    return true;
}

void _cua_pressure_report(cua_arena *a, uint32_t gen, size_t size)
{
    char keep[CUA_MSG_CAP];
    _cua_error_stash(keep, sizeof keep);
    cua_arena **v = NULL;
    size_t n = 0, cap = 1024, len = 0;
    pool p;
    char *text = NULL;
    /* (an arena a callback destroyed meanwhile keeps its own message) */
    if (!pool_of(a, gen, &p) || _cua_registry_snapshot(p.device, &v, &n) != CUA_OK ||
        !(text = malloc(cap))) {
        free(v);
        _cua_error_restore(keep);
        return;
    }
    size_t fr = driver_free(a, gen);
    uint64_t free_inside = 0;
    text[0] = 0;
    for (size_t i = 0; i < n; i++) report_line(&p, v[i], text, cap, &len, &free_inside);
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
               p.device, drv, asked, text);
    free(text);
}
