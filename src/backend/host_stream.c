/*
 * backend_host_stream.c - the host backend's simulated events and streams. An
 * event records the sequence number of its stream at record time; it is
 * complete once the stream's `done` has reached it. With manual events that
 * happens only when the test completes the stream (cua_host_stream_complete)
 * or someone synchronises; otherwise every event completes at once.
 */
#include "backend/host_impl.h"

static host_stream *stream_find(host_backend *h, cua_stream s)
{
    for (size_t i = 0; i < h->nstreams; i++)
        if (h->streams[i].stream == s) return &h->streams[i];
    return NULL;
}

static host_stream *stream_get(host_backend *h, cua_stream s)
{
    host_stream *hs = stream_find(h, s);
    if (hs) return hs;
    if (h->nstreams == UINT32_MAX ||
        !grow((void **)&h->streams, &h->cap_streams, h->nstreams, sizeof *h->streams))
        return NULL;
    hs = &h->streams[h->nstreams++];
    *hs = (host_stream){.stream = s};
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
    host_stream *hs = stream_find(h, stream);
    bool dead = hs && hs->destroyed;
    if (!dead) complete_stream(h, stream);
    _cua_unlock(&h->lock);
    return dead ? gone(stream, "stream_sync") : CUA_OK;
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

