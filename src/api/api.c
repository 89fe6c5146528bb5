/*
 * api.c - the public entry points: argument checks, handle validation, the
 * arena lock, and the default and current arenas. Everything else is in the
 * layers below.
 */
#include "api/config.h"
#include "arena/arena.h"
#include "backend/cuda.h"
#include "backend/fault.h"
#include "backend/supplier.h"
#include "backend/host.h"
#include "arena/check.h"
#include "arena/combine.h"
#include "arena/events.h"
#include "arena/offload.h"
#include "arena/stats.h"
#include "arena/stream.h"
#include "arena/tcache.h"
#include "arena/walk.h"
#include "base/addrmap.h"
#include "process/pressure.h"
#include "process/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CUA_PROJECT_VERSION* come from meson.build (project's version). */
#if !defined(CUA_PROJECT_VERSION) || !defined(CUA_PROJECT_VERSION_MAJOR) || \
    !defined(CUA_PROJECT_VERSION_MINOR) || !defined(CUA_PROJECT_VERSION_PATCH)
#error "build with meson: CUA_PROJECT_VERSION* are defined by meson.build"
#endif
_Static_assert(CUA_VERSION_MAJOR == CUA_PROJECT_VERSION_MAJOR &&
                   CUA_VERSION_MINOR == CUA_PROJECT_VERSION_MINOR &&
                   CUA_VERSION_PATCH == CUA_PROJECT_VERSION_PATCH,
               "CUA_VERSION_MAJOR/MINOR/PATCH in include/cuarena.h differ from meson.build's version");

const char *cua_version(void) { return CUA_PROJECT_VERSION; }

/* ---- handles ---------------------------------------------------------------------- */

/* Validate the handle in *pa and take its arena's lock; *pa becomes the
 * arena (registry.c). On failure nothing is held. */
static inline cua_status enter(cua_arena **pa) { return _cua_arena_enter(pa); }

/* As enter, for a call that let the lock go (callbacks ran meanwhile): the
 * arena must still be the one of generation `gen`. */
static cua_status enter_again(cua_arena *a, uint32_t gen)
{
    /* (no name in the message: the memory may hold another arena by now) */
    if (_cua_arena_lock_same(a, gen)) return CUA_OK;
    return _cua_error(CUA_ERR_DESTROYED, "the arena was destroyed during the call (by a "
                      "callback or another thread)");
}

static inline cua_status leave(cua_arena *a, cua_status st)
{
#if CUA_DEBUG >= 2
    /* The full debug tier: every invariant after every call on an arena. */
    cua_status chk = atomic_load(&a->alive) ? _cua_check_arena_locked(a) : CUA_OK;
    if (chk != CUA_OK && chk != CUA_ERR_OUT_OF_MEMORY) { /* (no host memory to check: not checked) */
        char why[CUA_MSG_CAP];
        snprintf(why, sizeof why, "%s", cua_last_error());
        _cua_assert_fail(why, __FILE__, __LINE__);
    }
#endif
    _cua_arena_unlock(a);
    return st;
}

/* The body of an entry point that is one call under the arena's lock: enter
 * (a bad or destroyed handle's status is returned), `call`, leave with its
 * status. */
#define LOCKED_CALL(a, call)                                                               \
    cua_status st = enter(&a);                                                             \
    if (st != CUA_OK) return st;                                                           \
    return leave(a, call)

/* Lock a, the arena the address map gave for ptr (NULL: none owns it). */
static cua_status enter_owner(const void *ptr, cua_arena *a)
{
    if (!a)
        return _cua_error(CUA_ERR_INVALID_POINTER,
                          "%p is not a pointer cuarena handed out: no arena owns that address",
                          ptr);
    if (!_cua_arena_lock_alive(a)) /* (its name may be another arena's by now: none) */
        return _cua_error(CUA_ERR_DESTROYED, "%p belongs to an arena that was destroyed", ptr);
    return CUA_OK;
}

/* The arena that owns ptr, locked. */
static cua_status enter_ptr(const void *ptr, cua_arena **out)
{
    cua_arena *a = _cua_addrmap_find((uintptr_t)ptr);
    cua_status st = enter_owner(ptr, a);
    if (st == CUA_OK) *out = a;
    return st;
}

/* ---- backends ------------------------------------------------------------------------ */

cua_status cua_backend_host_create(const cua_host_config *cfg, cua_backend **out)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    return _cua_backend_host_create(cfg, out);
}

cua_status cua_backend_cuda_create(int device, cua_backend **out)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (device < 0) return _cua_error(CUA_ERR_INVALID_ARG, "device %d < 0", device);
#if CUA_HAVE_CUDA
    return _cua_backend_cuda_create(device, out);
#else
    return _cua_error(CUA_ERR_NOT_SUPPORTED, "this build of cuarena has no CUDA backend "
                      "(cuda.h was not found when it was built)");
#endif
}

cua_status cua_host_stream_complete(cua_backend *host, cua_stream stream)
{
    if (!host || host->kind != CUA_BK_HOST)
        return _cua_error(CUA_ERR_INVALID_ARG, "not a host backend");
    return _cua_host_stream_complete(host, stream);
}

cua_status cua_host_stream_destroy(cua_backend *host, cua_stream stream)
{
    return _cua_host_stream_destroy(host, stream);
}

cua_status cua_host_stream_capture(cua_backend *host, cua_stream stream, int on)
{
    return _cua_host_stream_capture(host, stream, on);
}

cua_status cua_backend_fault_create(cua_backend *inner, cua_backend **out)
{
    if (!inner || !out) return _cua_error(CUA_ERR_INVALID_ARG, "inner or out is NULL");
    *out = NULL;
    return _cua_backend_fault_create(inner, out);
}

cua_status cua_backend_supplier_create(cua_backend *inner, cua_supplier_alloc_fn alloc_fn,
                                       cua_supplier_free_fn free_fn, void *ctx, cua_backend **out)
{
    if (out) *out = NULL;
    return _cua_backend_supplier_create(inner, alloc_fn, free_fn, ctx, out);
}

static cua_status fault_only(cua_backend *b)
{
    if (!b || b->kind != CUA_BK_FAULT)
        return _cua_error(CUA_ERR_INVALID_ARG, "not a fault backend");
    return CUA_OK;
}

cua_status cua_fault_fail_nth(cua_backend *fault, cua_call call, uint64_t nth, cua_status fail)
{
    cua_status st = fault_only(fault);
    return st != CUA_OK ? st : _cua_fault_fail_calls(fault, call, nth, 1, fail);
}

cua_status cua_fault_fail_calls(cua_backend *fault, cua_call call, uint64_t nth, uint64_t count,
                                cua_status fail)
{
    cua_status st = fault_only(fault);
    if (st == CUA_OK && nth && !count) st = _cua_error(CUA_ERR_INVALID_ARG, "fault_fail_calls: count is 0");
    return st != CUA_OK ? st : _cua_fault_fail_calls(fault, call, nth, count, fail);
}

cua_status cua_fault_fail_random(cua_backend *fault, double p, uint64_t seed)
{
    cua_status st = fault_only(fault);
    return st != CUA_OK ? st : _cua_fault_fail_random(fault, p, seed);
}

cua_status cua_fault_injected(cua_backend *fault, uint64_t *count)
{
    cua_status st = fault_only(fault);
    if (st == CUA_OK && !count) st = _cua_error(CUA_ERR_INVALID_ARG, "count is NULL");
    return st != CUA_OK ? st : _cua_fault_injected(fault, count);
}

/* Copy a struct the library filled into the caller's, of `size` bytes
 * (checked by the caller to be at least the first release's): an older
 * caller gets its prefix, a newer one zeros after it. */
static void copy_out(void *out, size_t size, const void *mine, size_t mine_size)
{
    memcpy(out, mine, _cua_min(size, mine_size));
    if (size > mine_size) memset((char *)out + mine_size, 0, size - mine_size);
}

static cua_status backend_stats(cua_backend *b, cua_backend_stats *out);

cua_status cua_backend_get_stats_sized(cua_backend *b, cua_backend_stats *out, size_t size)
{
    if (!b || !out) return _cua_error(CUA_ERR_INVALID_ARG, "backend or out is NULL");
    if (size < sizeof(cua_backend_stats))
        return _cua_error(CUA_ERR_INVALID_ARG, "cua_backend_stats of %zu bytes: at least %zu",
                          size, sizeof(cua_backend_stats));
    cua_backend_stats mine;
    cua_status st = backend_stats(b, &mine);
    copy_out(out, size, &mine, sizeof mine);
    return st;
}

static cua_status backend_stats(cua_backend *b, cua_backend_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int k = 0; k < CUA_CALL_COUNT; k++) {
        out->calls[k] = atomic_load(&b->calls[k]);
        out->call_ns[k] = atomic_load(&b->call_ns[k]);
    }
    out->failures = atomic_load(&b->failures);
    out->reservations = (uint64_t)atomic_load(&b->reservations);
    out->handles = (uint64_t)atomic_load(&b->handles);
    out->mappings = (uint64_t)atomic_load(&b->mappings);
    out->events = (uint64_t)atomic_load(&b->events);
    out->handle_bytes = (uint64_t)atomic_load(&b->handle_bytes);
    out->host_buffers = (uint64_t)atomic_load(&b->host_buffers);
    out->host_bytes = (uint64_t)atomic_load(&b->host_bytes);
    out->streams = (uint64_t)atomic_load(&b->streams);
    out->pending_releases = (uint64_t)atomic_load(&b->ngraves);
    /* Straight to the hook: reading the statistics is not allocator work and
     * must not change the call counts it reports (or the next read's). */
    size_t fr = 0, tot = 0;
    cua_status st = b->ops->mem_info(b, &fr, &tot);
    out->free_bytes = fr;
    out->total_bytes = tot ? tot : b->total_bytes;
    return st;
}

cua_status cua_backend_granularity(cua_backend *b, size_t *out)
{
    if (!b || !out) return _cua_error(CUA_ERR_INVALID_ARG, "backend or out is NULL");
    *out = b->granularity;
    return CUA_OK;
}

cua_status cua_backend_destroy(cua_backend *b)
{
    if (!b) return _cua_error(CUA_ERR_INVALID_ARG, "backend is NULL");
    if (b->shared)
        return _cua_error(CUA_ERR_BUSY, "backend '%s' is device %d's shared backend: it lives "
                          "until the process ends", b->name, b->device);
    return _cua_backend_destroy(b);
}

/* ---- arenas ---------------------------------------------------------------------------- */

cua_status cua_arena_create(const cua_arena_config *cfg, cua_arena **out)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    cua_arena_config mine;
    cua_status st = CUA_OK;
    if (cfg)
        st = _cua_config_import(cfg, &mine);
    else
        cua_arena_config_init(&mine);
    if (st != CUA_OK) return st;
    cua_arena *a = NULL, *h = NULL;
    uint32_t gen = 0;
    st = _cua_registry_create(&mine, &a, &h, &gen);
    if (st != CUA_OK) return st;
    /* (the callback of its CREATED event, or another thread, may have
     * destroyed it already: then no handle is given) */
    if (!_cua_arena_same(a, gen))
        return _cua_error(CUA_ERR_DESTROYED, "the new arena (handle %p) was destroyed by the "
                          "event callback of its creation", (void *)h);
    *out = h;
    return CUA_OK;
}

cua_status cua_arena_destroy(cua_arena *a, unsigned flags)
{
    if (flags & ~CUA_DESTROY_FORCE) return _cua_error(CUA_ERR_INVALID_ARG, "unknown flags %#x", flags);
    cua_status st = enter(&a);
    if (st != CUA_OK) return st;
    uintptr_t base = a->seg.base;
    size_t size = a->seg.size;
    bool vmm = !a->seg.novmm;
    st = _cua_arena_destroy_locked(a, flags);
    if (st == CUA_ERR_BUSY) return leave(a, st);
    /* Its pointers answer DESTROYED from now on, not through its memory,
     * which the next arena gets (after the callback of its last event). */
    _cua_registry_remove(a, vmm ? base : 0, size);
    _cua_event_queue(a, CUA_ARENA_DESTROYED, "", 0);
    st = leave(a, st);
    _cua_registry_recycle(a);
    return st;
}

/* The events of an allocation went to the callback, which may have destroyed
 * or offloaded the arena (cuarena.h, "Callbacks"): a block handed out is then
 * gone with the arena (DESTROYED), or freed again (OFFLOADED: it would hold
 * no memory). */
static cua_status after_callbacks(cua_arena *a, uint32_t gen, cua_status st, void **out)
{
    /* (an allocation that had failed keeps its own answer) */
    if (st != CUA_OK)
        return _cua_arena_same(a, gen) || st == CUA_ERR_OUT_OF_MEMORY || st == CUA_ERR_LIMIT
                   ? st
                   : _cua_error(CUA_ERR_DESTROYED, "the arena was destroyed by a callback "
                                "during the allocation");
    cua_status again = enter_again(a, gen);
    if (again != CUA_OK) {
        *out = NULL;
        return _cua_error(CUA_ERR_DESTROYED, "the arena was destroyed by a callback during the "
                          "allocation (the block went with it)");
    }
    if (!a->offloaded) return leave(a, CUA_OK);
    (void)_cua_arena_free_locked(a, *out);
    *out = NULL;
    return leave(a, _cua_error(CUA_ERR_OFFLOADED, "arena '%s' was offloaded by a callback during "
                               "the allocation (the block was freed again)", a->name));
}

/* A call the lock's holder did for this thread failed: its status, with
 * the words the holder's call left (combine.c). */
static cua_status posted_failure(cua_req *r)
{
    cua_status st = r->msg ? _cua_error(r->st, "%s", r->msg)
                           : _cua_error(r->st, "the call failed (no host memory was left for "
                                        "its message)");
    free(r->msg);
    r->msg = NULL;
    return st;
}

/* An allocation whose placement planned event jobs (its status BUSY, the
 * plan in run): run them without the lock (Note [events asked outside the
 * lock], stream.c), take the lock again (the arena of generation gen) and
 * place with what they said. *held: whether the lock is held on return (not
 * when the arena was destroyed meanwhile). */
static cua_status jobs_then_alloc(cua_arena *a, uint32_t gen, size_t size, cua_stream stream,
                                  bool final, void **out, cua_block **b, cua_placerun *run,
                                  bool *held)
{
    _cua_stream_run(&run->ev);
    if (!(*held = _cua_arena_lock_same(a, gen)))
        return _cua_error(CUA_ERR_DESTROYED, "the arena was destroyed during the allocation");
    _cua_stream_ran(a, &run->ev);
    run->ran = true;
    return _cua_arena_alloc_locked(a, size, stream, final, out, b, run);
}

/* The end of an allocation under the lock: the block to the thread's cache,
 * the calls other threads posted done (combine.c), the lock let go, the
 * events to the callback, the block noted in the cache. */
static cua_status alloc_end(cua_arena *a, cua_tcache *tc, size_t size, cua_stream stream,
                            void **out, cua_block *b, cua_status st)
{
    uint64_t word = tc && st == CUA_OK ? _cua_tc_grant_locked(tc, b, size) : 0;
    _cua_combine_serve(a);
    /* Events go to the callback in leave: it may destroy or offload the arena. */
    bool events = a->nevents != 0;
    uint32_t gen = atomic_load_explicit(&a->gen, memory_order_relaxed);
    st = leave(a, st);
    if (CUA_UNLIKELY(events) && (st = after_callbacks(a, gen, st, out)) != CUA_OK) return st;
    if (word) _cua_tc_note(tc, *out, b, word, stream);
    return st;
}

/* An allocation through the lock, its block then noted in the thread's cache. */
static cua_status alloc_noted(cua_arena *a, cua_tcache *tc, size_t size, cua_stream stream,
                              bool final, void **out)
{
    cua_block *b = NULL;
    cua_placerun run, *unlocked = &run; /* (not cleared whole: ~500 bytes, every call) */
    run.ev.n = 0;
    run.ran = false;
#ifdef CUA_EVENTS_UNDER_LOCK /* (for measuring: every event call under the lock, as before) */
    unlocked = NULL;
#endif
    cua_status st = _cua_arena_alloc_locked(a, size, stream, final, out, tc ? &b : NULL, unlocked);
    if (CUA_UNLIKELY(_cua_place_planned(st, &run))) {
        /* A plain unlock: the events a callback gets go with the call's end,
         * and nothing here may wait for this thread's jobs. The arena's
         * memory outlives a destroy, which waits for the jobs, so the lock
         * is always there to take. */
        uint32_t g = atomic_load_explicit(&a->gen, memory_order_relaxed);
        bool held;
        _cua_unlock(&a->lock);
        st = jobs_then_alloc(a, g, size, stream, final, out, tc ? &b : NULL, &run, &held);
        if (!held) return st;
    }
    return alloc_end(a, tc, size, stream, out, b, st);
}

/* An allocation the lock's holder did for this thread (combine.c): its
 * results, or the rest of it when its placement planned event jobs. */
static cua_status alloc_posted(cua_arena *a, cua_tcache *tc, cua_req *r, void **out)
{
    if (_cua_place_planned(r->st, &r->run)) {
        cua_block *b = NULL;
        bool held;
        cua_status st = jobs_then_alloc(a, r->gen, r->size, r->stream, false, out,
                                        tc ? &b : NULL, &r->run, &held);
        return held ? alloc_end(a, tc, r->size, r->stream, out, b, st) : st;
    }
    if (r->st != CUA_OK) return posted_failure(r);
    *out = r->ptr;
    if (r->word) _cua_tc_note(tc, *out, r->b, r->word, r->stream);
    return CUA_OK;
}

cua_status cua_arena_alloc(cua_arena *a, size_t size, cua_stream stream, void **out)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    /* The fast path: a block of this size class that the thread freed on this
     * stream, from its cache, with no arena lock (tcache.c). */
    cua_tcache *tc = NULL;
    uint32_t g = 0;
    cua_arena *fast = a ? _cua_arena_of(a, &g) : NULL;
    if (fast && _cua_arena_same(fast, g) && atomic_load_explicit(&fast->tc_on, memory_order_relaxed)) {
        tc = _cua_tc_get(fast);
        if (tc && _cua_tc_pop(tc, size, stream, out)) {
            if (CUA_LIKELY(_cua_arena_same(fast, g))) return CUA_OK;
            /* destroyed meanwhile, its memory another arena's: not for this handle */
            cua_free(*out);
            *out = NULL;
            return _cua_error(CUA_ERR_DESTROYED, "the arena of handle %p was destroyed", (void *)a);
        }
    }
    /* The lock, or, held by another thread, that thread does the call
     * (Note [calls the lock holder does], combine.c). */
    cua_status st;
    int how = CUA_COMBINE_NONE;
    cua_req r;
    if (fast && _cua_arena_same(fast, g)) {
        r.op = CUA_REQ_ALLOC;
        r.size = size;
        r.stream = stream;
        r.tc = tc;
        how = _cua_combine_enter(fast, g, &r);
    }
    if (how == CUA_COMBINE_DONE) {
        a = fast;
        st = alloc_posted(a, tc, &r, out);
    } else {
        if (how == CUA_COMBINE_LOCKED) a = fast;
        else if ((st = enter(&a)) != CUA_OK) return st;
        st = alloc_noted(a, tc, size, stream, false, out);
    }
    if (CUA_LIKELY(st != CUA_ERR_OUT_OF_MEMORY)) return st;
    /* The device is full: other arenas and the eviction callbacks first
     * (without this arena's lock: they take their own), then once more. A
     * callback may destroy the arena meanwhile: the second look says so (g:
     * the handle's generation, which the arena had when the lock was taken). */
    _cua_pressure_relieve(a, g, size); /* retried either way: streams may have completed meanwhile */
    if ((st = enter_again(a, g)) != CUA_OK) return st;
    st = alloc_noted(a, tc, size, stream, true, out);
    if (st == CUA_ERR_OUT_OF_MEMORY) _cua_pressure_report(a, g, size);
    return st;
}

cua_status cua_arena_alloc_at(cua_arena *a, void *ptr, size_t size, cua_stream stream)
{
    if (!ptr) return _cua_error(CUA_ERR_INVALID_ARG, "ptr is NULL");
    cua_status st = enter(&a);
    if (st != CUA_OK) return st;
    uint32_t gen = atomic_load_explicit(&a->gen, memory_order_relaxed);
    void *out = NULL;
    st = _cua_arena_alloc_at_locked(a, ptr, size, stream, &out);
    bool events = a->nevents != 0; /* (to the callback in leave: see alloc_noted) */
    st = leave(a, st);
    if (CUA_UNLIKELY(events)) st = after_callbacks(a, gen, st, &out);
    return st;
}

cua_status cua_free(void *ptr)
{
    if (!ptr) return CUA_OK;
    cua_arena *a = _cua_addrmap_find((uintptr_t)ptr);
    /* The fast path: a block this thread handed out goes to its cache. */
    if (a && atomic_load_explicit(&a->tc_on, memory_order_relaxed)) {
        cua_tcache *tc = _cua_tc_find(a);
        if (tc && _cua_tc_push(tc, ptr)) return CUA_OK;
    }
    /* One look-up serves both paths: a live block's range keeps its owner
     * until that arena is destroyed, which the lock below finds out; a look-up
     * again could instead find a newer arena at the same addresses. */
    int how = CUA_COMBINE_NONE;
    cua_req r;
    if (a) { /* (Note [calls the lock holder does], combine.c) */
        r.op = CUA_REQ_FREE;
        r.ptr = ptr;
        how = _cua_combine_enter(a, atomic_load_explicit(&a->gen, memory_order_relaxed), &r);
        if (how == CUA_COMBINE_DONE) return r.st == CUA_OK ? CUA_OK : posted_failure(&r);
    }
    cua_status st = how == CUA_COMBINE_LOCKED ? CUA_OK : enter_owner(ptr, a);
    if (st != CUA_OK) return st;
    st = _cua_arena_free_locked(a, ptr);
    _cua_combine_serve(a);
    return leave(a, st);
}

cua_status cua_stream_retire(int device, cua_stream stream)
{
    if (device < CUA_ALL_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "device %d is not an ordinal or CUA_ALL_DEVICES",
                          device);
    /* The legacy default stream and the per-thread ones (CU_STREAM_LEGACY,
     * CU_STREAM_PER_THREAD) live as long as the process: retiring one would
     * hand its blocks to every stream while it still runs. */
    if (stream <= 2)
        return _cua_error(CUA_ERR_INVALID_ARG, "stream %#lx is a default stream: it is never "
                          "destroyed, so it is not retired", (unsigned long)stream);
    cua_arena **v = NULL;
    size_t n = 0;
    cua_status first = _cua_registry_snapshot(device, &v, &n);
    char why[CUA_MSG_CAP] = "";
    for (size_t i = 0; i < n; i++) {
        if (!_cua_arena_lock_alive(v[i])) continue; /* destroyed meanwhile: it needs nothing */
        cua_status st = leave(v[i], _cua_arena_retire_stream_locked(v[i], stream));
        if (st != CUA_OK && first == CUA_OK) {
            first = st;
            snprintf(why, sizeof why, "%s", cua_last_error());
        }
    }
    free(v);
    if (first != CUA_OK && why[0]) return _cua_error(first, "%s", why);
    return first;
}

cua_status cua_record_stream(void *ptr, cua_stream stream)
{
    cua_arena *a = NULL;
    cua_status st = enter_ptr(ptr, &a);
    if (st != CUA_OK) return st;
    return leave(a, _cua_arena_record_stream_locked(a, ptr, stream));
}

cua_status cua_ptr_info(const void *ptr, cua_arena **arena, void **base, size_t *size)
{
    cua_arena *a = NULL;
    cua_status st = enter_ptr(ptr, &a);
    if (st != CUA_OK) return st;
    st = _cua_arena_ptr_info_locked(a, ptr, base, size);
    if (st == CUA_OK && arena) *arena = a->self;
    return leave(a, st);
}

cua_status cua_arena_trim(cua_arena *a, size_t keep_bytes, size_t *released)
{
    uint64_t r = 0;
    if (released) *released = 0;
    cua_status st = enter(&a);
    if (st != CUA_OK) return st;
    st = _cua_arena_trim_locked(a, keep_bytes, &r);
    if (released) *released = (size_t)r;
    return leave(a, st);
}

cua_status cua_arena_set_limit(cua_arena *a, size_t limit)
{
    LOCKED_CALL(a, _cua_arena_set_limit_locked(a, limit));
}

cua_status cua_arena_offload(cua_arena *a)
{
    LOCKED_CALL(a, _cua_offload_locked(a, true));
}

cua_status cua_arena_discard(cua_arena *a)
{
    LOCKED_CALL(a, _cua_offload_locked(a, false));
}

cua_status cua_arena_restore(cua_arena *a)
{
    cua_status st = enter(&a);
    if (st != CUA_OK) return st;
    st = _cua_offload_restore_locked(a);
    if (st != CUA_ERR_OUT_OF_MEMORY) return leave(a, st);
    /* The device is full: as for an allocation, other arenas' caches and the
     * eviction callbacks first (without this arena's lock), then once more.
     * What it lacks is counted in pages (the fuzzer found a restore that asked
     * for its blocks' bytes and stayed short by their partial pages). */
    size_t need = (size_t)_cua_offload_restore_need(a);
    uint32_t gen = atomic_load_explicit(&a->gen, memory_order_relaxed);
    leave(a, st);
    _cua_pressure_relieve(a, gen, need);
    if ((st = enter_again(a, gen)) != CUA_OK) return st; /* a callback destroyed it */
    return leave(a, a->offloaded ? _cua_offload_restore_locked(a) : CUA_OK);
}

cua_status cua_arena_set_floor(cua_arena *a, size_t floor)
{
    LOCKED_CALL(a, _cua_arena_set_floor_locked(a, floor));
}

cua_status cua_arena_grant_peer(cua_arena *a, int device)
{
    if (device < 0 || device >= CUA_MAX_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "peer device %d is out of range 0..%d", device,
                          CUA_MAX_DEVICES - 1);
    LOCKED_CALL(a, _cua_arena_grant_peer_locked(a, device));
}

cua_status cua_arena_set_release_threshold(cua_arena *a, size_t bytes)
{
    LOCKED_CALL(a, _cua_arena_set_release_locked(a, bytes));
}

cua_status cua_arena_name(cua_arena *a, const char **name)
{
    if (!name) return _cua_error(CUA_ERR_INVALID_ARG, "name is NULL");
    cua_status st = enter(&a);
    if (st != CUA_OK) return st;
    *name = a->name;
    return leave(a, CUA_OK);
}

cua_status cua_arena_check(cua_arena *a)
{
    LOCKED_CALL(a, _cua_check_arena_locked(a));
}

/* ---- statistics ---------------------------------------------------------------------------- */

cua_status cua_arena_get_stats_sized(cua_arena *a, cua_stats *out, size_t size)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL");
    if (size < sizeof(cua_stats))
        return _cua_error(CUA_ERR_INVALID_ARG, "cua_stats of %zu bytes: at least %zu", size,
                          sizeof(cua_stats));
    cua_status st = enter(&a);
    if (st != CUA_OK) return st;
    cua_stats mine;
    _cua_stats_read(a, &mine);
    copy_out(out, size, &mine, sizeof mine);
    return leave(a, CUA_OK);
}

cua_status cua_arena_walk(cua_arena *a, cua_region_fn fn, void *user)
{
    if (!a || !fn) return _cua_error(CUA_ERR_INVALID_ARG, "arena or fn is NULL");
    cua_status st = enter(&a);
    if (st != CUA_OK) return st;
    cua_region *v = NULL;
    size_t n = 0;
    st = leave(a, _cua_walk_snapshot_locked(a, &v, &n));
    if (st != CUA_OK) return st;
    for (size_t i = 0; i < n; i++) fn(&v[i], user); /* (no lock held: fn may call cuarena) */
    free(v);
    return CUA_OK;
}

cua_status cua_arena_reset_peaks(cua_arena *a)
{
    cua_status st = enter(&a);
    if (st != CUA_OK) return st;
    _cua_arena_reset_peaks_locked(a);
    return leave(a, CUA_OK);
}

cua_status cua_arena_stats_json(cua_arena *a, char *buf, size_t cap, size_t *len)
{
    if (!len || (!buf && cap)) return _cua_error(CUA_ERR_INVALID_ARG, "len is NULL or buf is NULL");
    cua_status st = enter(&a);
    if (st != CUA_OK) return st;
    cua_stats s;
    _cua_stats_read(a, &s);
    *len = _cua_stats_json(&s, a->name, a->device, a->bk->name, buf, cap);
    return leave(a, CUA_OK);
}

cua_status cua_arena_create_conf(const char *name, const char *conf, cua_arena **out)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend_kind = CUA_BACKEND_AUTO;
    cua_status st = cua_config_from_env(&cfg);
    if (st == CUA_OK && conf) st = cua_config_parse(conf, &cfg);
    if (st != CUA_OK) return st;
    cfg.name = name;
    return cua_arena_create(&cfg, out);
}

/* ---- default and current arenas --------------------------------------------------------------- */

cua_status cua_arena_default(int device, cua_arena **out)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL");
    if (device < 0 || device >= CUA_MAX_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "device %d is out of range 0..%d", device,
                          CUA_MAX_DEVICES - 1);
    cua_arena *a = _cua_registry_default(device, NULL);
    if (a) {
        *out = a;
        return CUA_OK;
    }
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend_kind = CUA_BACKEND_AUTO; /* CUARENA_CONF's backend: may say otherwise */
    cua_status st = cua_config_from_env(&cfg);
    if (st != CUA_OK) return st;
    cfg.device = device;
    cfg.name = "default";
    st = cua_arena_create(&cfg, &a);
    if (st != CUA_OK) return st;
    cua_arena *winner = _cua_registry_default(device, a);
    if (winner != a) cua_arena_destroy(a, 0); /* another thread won the race */
    if (!winner)
        return _cua_error(CUA_ERR_DESTROYED, "device %d's new default arena was destroyed by "
                          "another thread before it became the default", device);
    *out = winner;
    return CUA_OK;
}

#define CUA_PUSH_MAX 64
static _Thread_local cua_arena *tl_stack[CUA_PUSH_MAX];
static _Thread_local int tl_depth;

cua_status cua_arena_push(cua_arena *h)
{
    cua_arena *a = h;
    cua_status st = enter(&a);
    if (st != CUA_OK) return st;
    leave(a, CUA_OK);
    if (tl_depth == CUA_PUSH_MAX)
        return _cua_error(CUA_ERR_INVALID_ARG, "arena pushes nest deeper than %d", CUA_PUSH_MAX);
    tl_stack[tl_depth++] = h;
    return CUA_OK;
}

cua_status cua_arena_pop(void)
{
    if (tl_depth == 0) return _cua_error(CUA_ERR_INVALID_ARG, "no arena was pushed on this thread");
    tl_stack[--tl_depth] = NULL;
    return CUA_OK;
}

cua_status cua_arena_current(cua_arena **out)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL");
    *out = tl_depth ? tl_stack[tl_depth - 1] : NULL;
    return CUA_OK;
}

cua_status cua_malloc(size_t size, cua_stream stream, void **out)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    cua_arena *a = tl_depth ? tl_stack[tl_depth - 1] : NULL;
    if (!a) {
        cua_status st = cua_arena_default(0, &a);
        if (st != CUA_OK) return st;
    }
    return cua_arena_alloc(a, size, stream, out);
}
