/*
 * backend_host_stream.c - the host backend's simulated events and streams. An
 * event records the sequence number of its stream at record time; it is
 * complete once the stream's `done` has reached it. With manual events that
 * happens only when the test completes the stream (cua_host_stream_complete)
 * or someone synchronises; otherwise every event completes at once.
 */
#include "backend/host_impl.h"

static size_t stream_hash(cua_stream s, size_t mask)
{
    return (size_t)(((uint64_t)s * 0x9e3779b97f4a7c15ull) >> 32) & mask;
}

static host_stream *stream_find(host_backend *h, cua_stream s)
{
    if (!h->sindex_mask) return NULL;
    for (size_t i = stream_hash(s, h->sindex_mask);; i = (i + 1) & h->sindex_mask) {
        uint32_t k = h->sindex[i];
        if (!k) return NULL;
        if (h->streams[k - 1].stream == s) return &h->streams[k - 1];
    }
}

static void sindex_put(host_backend *h, size_t k)
{
    size_t i = stream_hash(h->streams[k].stream, h->sindex_mask);
    while (h->sindex[i]) i = (i + 1) & h->sindex_mask;
    h->sindex[i] = (uint32_t)k + 1;
}

/* Room in the index for one more stream (at most half full). */
static bool sindex_room(host_backend *h)
{
    if (h->sindex_mask && 2 * (h->nstreams + 1) <= h->sindex_mask + 1) return true;
    size_t cap = h->sindex_mask ? 2 * (h->sindex_mask + 1) : 64;
    uint32_t *nix = calloc(cap, sizeof *nix);
    if (!nix) return false;
    free(h->sindex);
    h->sindex = nix;
    h->sindex_mask = cap - 1;
    for (size_t k = 0; k < h->nstreams; k++) sindex_put(h, k);
    return true;
}

static host_stream *stream_get(host_backend *h, cua_stream s)
{
    host_stream *hs = stream_find(h, s);
    if (hs) return hs;
    if (h->nstreams >= UINT32_MAX - 1 || !sindex_room(h) ||
        !grow((void **)&h->streams, &h->cap_streams, h->nstreams, sizeof *h->streams))
        return NULL;
    hs = &h->streams[h->nstreams];
    *hs = (host_stream){.stream = s};
    sindex_put(h, h->nstreams++);
    return hs;
}

static host_event *event_lookup(host_backend *h, cua_event ev, const char *what)
{
    host_event *e = (host_event *)slot_lookup(&h->events, ev, NULL);
    if (!e)
        _cua_error(CUA_ERR_INVALID_ARG, "host backend: %s: no such event %#llx (never created, "
                   "or destroyed)", what, (unsigned long long)ev);
    return e;
}

/* Take the lock and find event ev (NULL, with a message, when there is none);
 * the caller unlocks. */
static host_event *lock_event(host_backend *h, cua_event ev, const char *what)
{
    _cua_lock(&h->lock);
    return event_lookup(h, ev, what);
}

static bool event_complete(const host_backend *h, const host_event *e)
{
    return !h->manual_events || !e->recorded || h->streams[e->stream_idx].done >= e->seq;
}

cua_status _cua_host_event_create(cua_backend *b, cua_event *out)
{
    host_backend *h = host_of(b);
    _cua_lock(&h->lock);
    uint32_t idx = 0;
    cua_status st = CUA_OK;
    if (slot_alloc(&h->events, &idx))
        *out = slot_value(&h->events, idx);
    else
        st = _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: no host memory for an event");
    _cua_unlock(&h->lock);
    return st;
}

cua_status _cua_host_event_destroy(cua_backend *b, cua_event ev)
{
    host_backend *h = host_of(b);
    _cua_lock(&h->lock);
    uint32_t idx = 0;
    cua_status st = CUA_OK;
    if (slot_lookup(&h->events, ev, &idx))
        slot_free(&h->events, idx);
    else
        st = _cua_error(CUA_ERR_INVALID_ARG, "host backend: cannot destroy event %#llx: no such "
                        "event", (unsigned long long)ev);
    _cua_unlock(&h->lock);
    return st;
}

/* What the driver would say of a destroyed stream (it may also crash). */
static cua_status gone(cua_stream stream, const char *what)
{
    return _cua_error(CUA_ERR_BACKEND, "host backend: %s on stream %#lx, which was destroyed",
                      what, (unsigned long)stream);
}

cua_status _cua_host_event_record(cua_backend *b, cua_event ev, cua_stream stream)
{
    host_backend *h = host_of(b);
    host_event *e = lock_event(h, ev, "event_record");
    cua_status st = CUA_ERR_INVALID_ARG;
    if (e) {
        host_stream *hs = stream_get(h, stream);
        if (hs && hs->destroyed) {
            st = gone(stream, "event_record");
        } else if (hs && hs->capturing) {
            st = CUA_ERR_BUSY; /* (as the CUDA backend: nothing recorded into a capture) */
        } else if (hs) {
            e->recorded = true;
            e->stream_idx = (uint32_t)(hs - h->streams);
            e->seq = ++hs->issued;
            st = CUA_OK;
        } else {
            st = _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: no host memory to track "
                            "stream %#lx", (unsigned long)stream);
        }
    }
    _cua_unlock(&h->lock);
    return st;
}

cua_status _cua_host_event_query(cua_backend *b, cua_event ev)
{
    host_backend *h = host_of(b);
    host_event *e = lock_event(h, ev, "event_query");
    cua_status st = !e ? CUA_ERR_INVALID_ARG : event_complete(h, e) ? CUA_OK : CUA_ERR_BUSY;
    _cua_unlock(&h->lock);
    return st;
}

cua_status _cua_host_event_sync(cua_backend *b, cua_event ev)
{
    host_backend *h = host_of(b);
    host_event *e = lock_event(h, ev, "event_sync");
    if (e && e->recorded) {
        /* Waiting for the event: the stream's work up to it is done. */
        host_stream *hs = &h->streams[e->stream_idx];
        if (hs->done < e->seq) hs->done = e->seq;
    }
    _cua_unlock(&h->lock);
    return e ? CUA_OK : CUA_ERR_INVALID_ARG;
}

static void complete_stream(host_backend *h, cua_stream stream)
{
    host_stream *hs = stream_find(h, stream);
    if (hs) hs->done = hs->issued;
}

cua_status _cua_host_stream_sync(cua_backend *b, cua_stream stream)
{
    host_backend *h = host_of(b);
    _cua_lock(&h->lock);
    if (stream == CUA_STREAM_DEVICE) { /* the whole device: every stream's work, gone ones too */
        bool broke = false;
        for (size_t i = 0; i < h->nstreams; i++) {
            h->streams[i].done = h->streams[i].issued;
            if (h->streams[i].capturing) broke = h->streams[i].invalidated = true;
        }
        _cua_unlock(&h->lock);
        return broke ? _cua_error(CUA_ERR_BACKEND, "host backend: the device waited for while a "
                                  "stream captures a graph: the capture is invalidated")
                     : CUA_OK;
    }
    host_stream *hs = stream_find(h, stream);
    bool dead = hs && hs->destroyed, capturing = hs && hs->capturing;
    if (!dead && !capturing) complete_stream(h, stream);
    _cua_unlock(&h->lock);
    if (capturing) return CUA_ERR_BUSY; /* (as the CUDA backend: not waited for) */
    return dead ? gone(stream, "stream_sync") : CUA_OK;
}

cua_status _cua_host_stream_capture(cua_backend *b, cua_stream stream, int on)
{
    if (!b || b->kind != CUA_BK_HOST)
        return _cua_error(CUA_ERR_INVALID_ARG, "stream_capture: not a host backend");
    host_backend *h = host_of(b);
    _cua_lock(&h->lock);
    host_stream *hs = stream_get(h, stream);
    cua_status st = CUA_OK;
    if (!hs) {
        st = _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: no host memory");
    } else if (hs->destroyed || hs->capturing == (on != 0)) {
        st = _cua_error(CUA_ERR_INVALID_ARG, "stream_capture: stream %#lx %s", (unsigned long)stream,
                        hs->destroyed ? "was destroyed" : on ? "already captures" : "does not capture");
    } else {
        hs->capturing = on != 0;
        if (!on && hs->invalidated)
            st = _cua_error(CUA_ERR_BACKEND, "stream_capture: the capture on stream %#lx was "
                            "invalidated by a wait during it", (unsigned long)stream);
        hs->invalidated = false;
    }
    _cua_unlock(&h->lock);
    return st;
}

cua_status _cua_host_stream_destroy(cua_backend *b, cua_stream stream)
{
    if (!b || b->kind != CUA_BK_HOST)
        return _cua_error(CUA_ERR_INVALID_ARG, "stream_destroy: not a host backend");
    host_backend *h = host_of(b);
    _cua_lock(&h->lock);
    host_stream *hs = stream_get(h, stream);
    if (hs) { /* its queued work completes, as a destroyed CUDA stream's does */
        hs->done = hs->issued;
        hs->destroyed = true;
    }
    _cua_unlock(&h->lock);
    return hs ? CUA_OK : _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: no host memory");
}

cua_status _cua_host_stream_complete(cua_backend *b, cua_stream stream)
{
    if (!b || b->kind != CUA_BK_HOST)
        return _cua_error(CUA_ERR_INVALID_ARG, "stream_complete: not a host backend");
    return _cua_host_stream_sync(b, stream);
}

