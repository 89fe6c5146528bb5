/*
 * staging.c - a backend's staging area: two pinned host buffers, a copy
 * stream and an event per buffer, made the first time an arena offloads or
 * restores and reused after (pinning memory is slow: 2.5 s for 4 GiB on the
 * H100 machine), so that an offload of any size pins only 2 x CUA_STAGE_BYTES.
 * Copies alternate between the buffers: the device fills one while the CPU
 * empties the other.
 */
#include "backend/backend.h"

#ifndef CUA_STAGE_BYTES
#define CUA_STAGE_BYTES ((size_t)64 << 20)
#endif

/* Make the pieces the area lacks (all of them the first time; after a make
 * that failed half way and a free that could not release everything, the
 * ones that went). It is `staged` - used by offloads - only when whole. */
static cua_status stage_make(cua_backend *b, cua_callstats *cs)
{
    cua_status st = CUA_OK;
    if (!b->stage_bytes) b->stage_bytes = CUA_STAGE_BYTES;
    for (int i = 0; i < 2 && st == CUA_OK; i++)
        if (!b->stage[i]) st = _cua_bk_host_alloc(b, cs, b->stage_bytes, &b->stage[i]);
    if (st == CUA_OK && !b->copy_stream) st = _cua_bk_stream_create(b, cs, &b->copy_stream);
    for (int i = 0; i < 2 && st == CUA_OK; i++)
        if (!b->stage_ev[i]) st = _cua_bk_event_create(b, cs, &b->stage_ev[i]);
    b->staged = st == CUA_OK;
    if (st != CUA_OK) { /* what was made goes back (what cannot, stays for the next try) */
        char keep[CUA_MSG_CAP];
        _cua_error_stash(keep, sizeof keep);
        _cua_stage_free(b);
        _cua_error_restore(keep);
    }
    return st;
}

cua_status _cua_stage_get(cua_backend *b, cua_callstats *cs, cua_stage *out)
{
    _cua_lock(&b->stage_lock);
    cua_status st = b->staged ? CUA_OK : stage_make(b, cs);
    if (st != CUA_OK) {
        _cua_unlock(&b->stage_lock);
        return st;
    }
    *out = (cua_stage){.buf = {b->stage[0], b->stage[1]}, .bytes = b->stage_bytes,
                       .stream = b->copy_stream, .ev = {b->stage_ev[0], b->stage_ev[1]}};
    return CUA_OK;
}

void _cua_stage_put(cua_backend *b)
{
    _cua_unlock(&b->stage_lock);
}

cua_status _cua_stage_free(cua_backend *b)
{
    cua_status first = CUA_OK, st;
    /* Each piece given back is cleared; one that fails stays for a later call
     * (this one again, or a make, which then builds only what is missing). */
    for (int i = 0; i < 2; i++) {
        if (!b->stage_ev[i]) continue;
        st = _cua_bk_event_destroy(b, NULL, b->stage_ev[i]);
        if (st == CUA_OK) b->stage_ev[i] = 0;
        else if (first == CUA_OK) first = st;
    }
    if (b->copy_stream) {
        st = _cua_bk_stream_destroy(b, NULL, b->copy_stream);
        if (st == CUA_OK) b->copy_stream = 0;
        else if (first == CUA_OK) first = st;
    }
    for (int i = 0; i < 2; i++) {
        if (!b->stage[i]) continue;
        st = _cua_bk_host_free(b, NULL, b->stage[i], b->stage_bytes);
        if (st == CUA_OK) b->stage[i] = NULL;
        else if (first == CUA_OK) first = st;
    }
    b->staged = false; /* whole again only through stage_make */
    return first;
}
