/*
 * backend.c - the wrappers every backend call goes through: they count and
 * time calls per kind (per backend and per arena) and keep the counts of live
 * reservations, handles, mappings and events that leak checks read.
 */
#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

static const char *const call_names[CUA_CALL_COUNT] = {
    [CUA_CALL_RESERVE] = "reserve",         [CUA_CALL_UNRESERVE] = "unreserve",
    [CUA_CALL_CREATE] = "create",           [CUA_CALL_RELEASE] = "release",
    [CUA_CALL_MAP] = "map",                 [CUA_CALL_UNMAP] = "unmap",
    [CUA_CALL_SET_ACCESS] = "set_access",   [CUA_CALL_MEM_INFO] = "mem_info",
    [CUA_CALL_EVENT_CREATE] = "event_create", [CUA_CALL_EVENT_DESTROY] = "event_destroy",
    [CUA_CALL_EVENT_RECORD] = "event_record", [CUA_CALL_EVENT_QUERY] = "event_query",
    [CUA_CALL_EVENT_SYNC] = "event_sync",   [CUA_CALL_STREAM_SYNC] = "stream_sync",
    [CUA_CALL_ALLOC] = "alloc",             [CUA_CALL_FREE] = "free",
    [CUA_CALL_HOST_ALLOC] = "host_alloc",   [CUA_CALL_HOST_FREE] = "host_free",
    [CUA_CALL_STREAM_CREATE] = "stream_create", [CUA_CALL_STREAM_DESTROY] = "stream_destroy",
    [CUA_CALL_COPY_TO_HOST] = "copy_to_host", [CUA_CALL_COPY_TO_DEVICE] = "copy_to_device",
    [CUA_CALL_FILL] = "fill",
};

const char *cua_call_name(cua_call call)
{
    if ((unsigned)call >= CUA_CALL_COUNT) return NULL;
    return call_names[call];
}

void _cua_backend_init(cua_backend *b, const cua_backend_ops *ops, const char *name,
                       cua_bk_type kind, size_t granularity, size_t total_bytes)
{
    memset(b, 0, sizeof *b);
    b->ops = ops;
    b->name = name;
    b->kind = kind;
    b->granularity = granularity;
    b->total_bytes = total_bytes;
    b->vmm = true;
    _cua_lock_init(&b->stage_lock, CUA_LOCK_RANK_STAGE);
    /* A forwarding backend's retries reach the inner one's graves (lockrank.h). */
    _cua_lock_init(&b->grave_lock,
                   kind == CUA_BK_FAULT || kind == CUA_BK_SUPPLIER ? CUA_LOCK_RANK_GRAVE_FWD
                                                                  : CUA_LOCK_RANK_GRAVE);
}

/* ---- graves: releases retried after their owner is gone --------------------------- */

cua_status _cua_bk_bury(cua_backend *b, cua_grave g, cua_status st)
{
    _cua_lock(&b->grave_lock);
    size_t n = atomic_load(&b->ngraves);
    if (n == b->ngraves_cap) {
        size_t ncap = n ? 2 * n : 8;
        cua_grave *ng = realloc(b->graves, ncap * sizeof *ng);
        if (ng) {
            b->graves = ng;
            b->ngraves_cap = ncap;
        }
    }
    if (n < b->ngraves_cap) { /* (without host memory for it, it is lost) */
        b->graves[n] = g;
        atomic_store(&b->ngraves, n + 1);
    }
    _cua_unlock(&b->grave_lock);
    return st;
}

static cua_status retry_grave(cua_backend *b, cua_grave *g)
{
    cua_status st;
    switch (g->kind) {
    case CUA_CALL_UNMAP:
        st = _cua_bk_unmap(b, NULL, g->addr, g->size, 1);
        if (st != CUA_OK || g->unmap_only) return st;
        g->kind = CUA_CALL_RELEASE; /* unmapped: the handle is next */
        return _cua_bk_release(b, NULL, g->h, g->size);
    case CUA_CALL_RELEASE: return _cua_bk_release(b, NULL, g->h, g->size);
    case CUA_CALL_UNRESERVE: return _cua_bk_unreserve(b, NULL, g->addr, g->size);
    case CUA_CALL_FREE: return _cua_bk_free(b, NULL, g->addr, g->size);
    case CUA_CALL_EVENT_DESTROY: return _cua_bk_event_destroy(b, NULL, g->ev);
    default: return CUA_OK; /* nothing else is buried */
    }
}

cua_status _cua_bk_retry_graves(cua_backend *b)
{
    if (CUA_LIKELY(atomic_load_explicit(&b->ngraves, memory_order_relaxed) == 0)) return CUA_OK;
    _cua_lock(&b->grave_lock);
    size_t n = atomic_load(&b->ngraves), kept = 0;
    cua_status first = CUA_OK;
    for (size_t i = 0; i < n; i++) { /* in the order buried: mappings before their range */
        cua_grave *g = &b->graves[i];
        /* A range is given back only once no mapping buried before it remains in it. */
        bool blocked = false;
        for (size_t j = 0; g->kind == CUA_CALL_UNRESERVE && j < kept && !blocked; j++)
            blocked = b->graves[j].kind == CUA_CALL_UNMAP && b->graves[j].addr - g->addr < g->size;
        cua_status st = blocked ? CUA_ERR_BUSY : retry_grave(b, g);
        if (st == CUA_OK) continue;
        if (first == CUA_OK) first = st;
        b->graves[kept++] = b->graves[i];
    }
    atomic_store(&b->ngraves, kept);
    if (!kept) {
        free(b->graves);
        b->graves = NULL;
        b->ngraves_cap = 0;
    }
    _cua_unlock(&b->grave_lock);
    return first;
}

/* The backend's live count of what a call of `kind` makes or ends (NULL for
 * the kinds that make nothing), and in *bytes the count of their bytes (NULL
 * where they have none). */
static _Atomic int64_t *live_count(cua_backend *b, cua_call kind, _Atomic int64_t **bytes)
{
    *bytes = NULL;
    switch (kind) {
    case CUA_CALL_RESERVE:
    case CUA_CALL_UNRESERVE: return &b->reservations;
    case CUA_CALL_CREATE:
    case CUA_CALL_RELEASE:
    case CUA_CALL_ALLOC: /* a whole segment counts as a handle */
    case CUA_CALL_FREE: *bytes = &b->handle_bytes; return &b->handles;
    case CUA_CALL_MAP:
    case CUA_CALL_UNMAP: return &b->mappings;
    case CUA_CALL_EVENT_CREATE:
    case CUA_CALL_EVENT_DESTROY: return &b->events;
    case CUA_CALL_HOST_ALLOC:
    case CUA_CALL_HOST_FREE: *bytes = &b->host_bytes; return &b->host_buffers;
    case CUA_CALL_STREAM_CREATE:
    case CUA_CALL_STREAM_DESTROY: return &b->streams;
    default: return NULL;
    }
}

cua_status _cua_bk_account(cua_backend *b, cua_callstats *cs, cua_call kind, uint64_t t0,
                           cua_status st, int64_t n, int64_t bytes)
{
    uint64_t dt = _cua_now_ns() - t0;
    atomic_fetch_add_explicit(&b->calls[kind], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->call_ns[kind], dt, memory_order_relaxed);
#if CUA_LOCK_WITNESS
    if (_cua_lock_witness_holds(CUA_LOCK_RANK_ARENA) ||
        _cua_lock_witness_holds(CUA_LOCK_RANK_ARENA_SUPPLIED))
        atomic_fetch_add_explicit(&b->calls_locked[kind], 1, memory_order_relaxed);
#endif
    /* (BUSY: an event not yet complete, or a stream capturing a graph: no failure) */
    if (st != CUA_OK && st != CUA_ERR_BUSY)
        atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed);
    if (cs) {
        cs->calls[kind]++;
        cs->call_ns[kind] += dt;
    }
    _Atomic int64_t *live_bytes, *live = st == CUA_OK ? live_count(b, kind, &live_bytes) : NULL;
    if (live) atomic_fetch_add_explicit(live, n, memory_order_relaxed);
    if (live && live_bytes) atomic_fetch_add_explicit(live_bytes, bytes, memory_order_relaxed);
    return st;
}

/* The body of every wrapper: call hook `hook` of b with the arguments after
 * it, timed, and account it as a call of `kind` that, when it succeeds, makes
 * (n > 0) or ends (n < 0) n objects of `bytes` bytes in all. */
#define TIMED_HOOK(kind, n, bytes, hook, ...)                                              \
    uint64_t t0 = _cua_now_ns();                                                           \
    cua_status st = b->ops->hook(b, __VA_ARGS__);                                          \
    return _cua_bk_account(b, cs, kind, t0, st, n, bytes)

cua_status _cua_bk_reserve(cua_backend *b, cua_callstats *cs, size_t size, size_t align,
                           uintptr_t *addr)
{
    _cua_bk_retry_graves(b); /* what an arena's destroy could not give back, first */
    TIMED_HOOK(CUA_CALL_RESERVE, 1, 0, reserve, size, align, addr);
}

cua_status _cua_bk_unreserve(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t size)
{
    TIMED_HOOK(CUA_CALL_UNRESERVE, -1, 0, unreserve, addr, size);
}

cua_status _cua_bk_create(cua_backend *b, cua_callstats *cs, size_t size, cua_handle *out)
{
    _cua_bk_retry_graves(b);
    TIMED_HOOK(CUA_CALL_CREATE, 1, (int64_t)size, create, size, out);
}

cua_status _cua_bk_release(cua_backend *b, cua_callstats *cs, cua_handle h, size_t size)
{
    TIMED_HOOK(CUA_CALL_RELEASE, -1, -(int64_t)size, release, h);
}

cua_status _cua_bk_map(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t size,
                       cua_handle h)
{
    TIMED_HOOK(CUA_CALL_MAP, 1, 0, map, addr, size, 0, h);
}

cua_status _cua_bk_unmap(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t size,
                         size_t nmaps)
{
    TIMED_HOOK(CUA_CALL_UNMAP, -(int64_t)nmaps, 0, unmap, addr, size);
}

cua_status _cua_bk_alloc(cua_backend *b, cua_callstats *cs, size_t size, uintptr_t *addr)
{
    _cua_bk_retry_graves(b);
    TIMED_HOOK(CUA_CALL_ALLOC, 1, (int64_t)size, alloc, size, addr);
}

cua_status _cua_bk_free(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t size)
{
    TIMED_HOOK(CUA_CALL_FREE, -1, -(int64_t)size, free, addr, size);
}

cua_status _cua_bk_set_access(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t size,
                              const int *devices, int n)
{
    TIMED_HOOK(CUA_CALL_SET_ACCESS, 0, 0, set_access, addr, size, devices, n);
}

cua_status _cua_bk_peer_check(cua_backend *b, int peer)
{
    return b->ops->peer_check(b, peer);
}

cua_status _cua_bk_peer_enable(cua_backend *b, cua_callstats *cs, int peer)
{
    TIMED_HOOK(CUA_CALL_SET_ACCESS, 0, 0, peer_enable, peer);
}

cua_status _cua_bk_mem_info(cua_backend *b, cua_callstats *cs, size_t *free_bytes,
                            size_t *total_bytes)
{
    TIMED_HOOK(CUA_CALL_MEM_INFO, 0, 0, mem_info, free_bytes, total_bytes);
}

cua_status _cua_bk_event_create(cua_backend *b, cua_callstats *cs, cua_event *out)
{
    TIMED_HOOK(CUA_CALL_EVENT_CREATE, 1, 0, event_create, out);
}

cua_status _cua_bk_event_destroy(cua_backend *b, cua_callstats *cs, cua_event ev)
{
    TIMED_HOOK(CUA_CALL_EVENT_DESTROY, -1, 0, event_destroy, ev);
}

cua_status _cua_bk_event_record(cua_backend *b, cua_callstats *cs, cua_event ev,
                                cua_stream stream)
{
    TIMED_HOOK(CUA_CALL_EVENT_RECORD, 0, 0, event_record, ev, stream);
}

cua_status _cua_bk_event_query(cua_backend *b, cua_callstats *cs, cua_event ev)
{
    TIMED_HOOK(CUA_CALL_EVENT_QUERY, 0, 0, event_query, ev);
}

cua_status _cua_bk_fill(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t n, unsigned char v,
                        cua_stream s)
{
    TIMED_HOOK(CUA_CALL_FILL, 0, 0, fill, addr, n, v, s);
}

cua_status _cua_bk_event_sync(cua_backend *b, cua_callstats *cs, cua_event ev)
{
    TIMED_HOOK(CUA_CALL_EVENT_SYNC, 0, 0, event_sync, ev);
}

cua_status _cua_bk_stream_sync(cua_backend *b, cua_callstats *cs, cua_stream stream)
{
    TIMED_HOOK(CUA_CALL_STREAM_SYNC, 0, 0, stream_sync, stream);
}

cua_status _cua_bk_host_alloc(cua_backend *b, cua_callstats *cs, size_t size, void **out)
{
    TIMED_HOOK(CUA_CALL_HOST_ALLOC, 1, (int64_t)size, host_alloc, size, out);
}

cua_status _cua_bk_host_free(cua_backend *b, cua_callstats *cs, void *p, size_t size)
{
    TIMED_HOOK(CUA_CALL_HOST_FREE, -1, -(int64_t)size, host_free, p, size);
}

cua_status _cua_bk_stream_create(cua_backend *b, cua_callstats *cs, cua_stream *out)
{
    TIMED_HOOK(CUA_CALL_STREAM_CREATE, 1, 0, stream_create, out);
}

cua_status _cua_bk_stream_destroy(cua_backend *b, cua_callstats *cs, cua_stream s)
{
    TIMED_HOOK(CUA_CALL_STREAM_DESTROY, -1, 0, stream_destroy, s);
}

cua_status _cua_bk_copy_to_host(cua_backend *b, cua_callstats *cs, void *dst, uintptr_t src,
                                size_t n, cua_stream s)
{
    TIMED_HOOK(CUA_CALL_COPY_TO_HOST, 0, 0, copy_to_host, dst, src, n, s);
}

cua_status _cua_bk_copy_to_device(cua_backend *b, cua_callstats *cs, uintptr_t dst,
                                  const void *src, size_t n, cua_stream s)
{
    TIMED_HOOK(CUA_CALL_COPY_TO_DEVICE, 0, 0, copy_to_device, dst, src, n, s);
}

cua_status _cua_backend_destroy(cua_backend *b)
{
    _cua_bk_retry_graves(b);
    if (atomic_load(&b->users) == 0) {
        cua_status st = _cua_stage_free(b); /* the backend's own: not a leak */
        if (st != CUA_OK) return st;
    }
    int users = atomic_load(&b->users);
    int64_t res = atomic_load(&b->reservations), hs = atomic_load(&b->handles);
    int64_t evs = atomic_load(&b->events), hb = atomic_load(&b->host_buffers);
    int64_t sts = atomic_load(&b->streams);
    if (users || res || hs || evs || hb || sts)
        return _cua_error(CUA_ERR_BUSY,
                          "backend '%s' is still in use: %d arena(s), %lld reservation(s), "
                          "%lld handle(s), %lld event(s), %lld host buffer(s), %lld stream(s) alive",
                          b->name, users, (long long)res, (long long)hs, (long long)evs,
                          (long long)hb, (long long)sts);
    free(b->graves); /* none left: the counts above would include it */
    b->ops->destroy(b);
    return CUA_OK;
}
