/*
 * stream.c - stream-ordered reuse.
 *
 * A block freed on stream S is tagged S: S may take it again at once (its
 * later work is ordered after the free). Other streams may not until S's work
 * queued before the free has completed. Rather than an event per free (a
 * driver call on the fast path), each stream has at most one "reclaim" event,
 * recorded lazily when the arena misses (needs new pages) and queried at the
 * next miss: when it has completed, every block freed on S before it was
 * recorded becomes tag 0 ("any stream") and merges with its free neighbours,
 * so free space is never stranded on one stream.
 *
 * A block used on more streams (cua_record_stream) gets an event on each of
 * them at its free and waits on the pending list until they all completed.
 *
 * Trim uses the same knowledge: a chunk that went idle at free sequence F may
 * be unmapped only when every stream has completed its frees up to F.
 */
#include "arena/stream.h"

#include <stdlib.h>
#include <string.h>

/* ---- stream slots ---------------------------------------------------------- */

/* A new stream in retired slot i (no free block has its tag any more). */
static void slot_reuse(cua_arena *a, uint32_t i, cua_stream stream)
{
    cua_streamslot *s = &a->streams.slot[i];
    memset(s, 0, sizeof *s);
    s->stream = stream;
    /* what was freed before it came is not its to wait for */
    s->done_seq = s->last_free_seq = s->shared_seq = a->seq;
}

cua_status _cua_stream_slot_find(cua_arena *a, cua_stream stream, uint32_t *tag)
{
    cua_streams *ss = &a->streams;
    uint32_t reusable = 0;
    for (uint32_t i = 1; i < ss->n; i++) {
        if (ss->slot[i].retired) {
            if (!reusable && !a->heap.idx[i]->count) reusable = i;
        } else if (ss->slot[i].stream == stream) {
            ss->last = i;
            *tag = i;
            return CUA_OK;
        }
    }
    if (reusable) {
        slot_reuse(a, reusable, stream);
        ss->last = reusable;
        *tag = reusable;
        return CUA_OK;
    }
    if (ss->n + 1 > ss->cap) {
        uint32_t ncap = ss->cap ? 2 * ss->cap : 8;
        cua_streamslot *ns = realloc(ss->slot, ncap * sizeof *ns);
        if (!ns) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a stream slot");
        ss->slot = ns;
        ss->cap = ncap;
    }
    if (ss->n == 0) { /* slot 0 stands for tag 0 ("any stream") */
        memset(&ss->slot[0], 0, sizeof ss->slot[0]);
        ss->n = 1;
    }
    cua_status st = _cua_heap_ensure_tag(&a->heap, ss->n);
    /* A second stream: free blocks stop merging across tags, and the space no
     * block ever used is given to every stream. */
    if (st == CUA_OK && ss->n == 2) st = _cua_heap_share_above(&a->heap, a->top_used);
    if (st != CUA_OK) return st;
    memset(&ss->slot[ss->n], 0, sizeof ss->slot[ss->n]);
    ss->slot[ss->n].stream = stream;
    ss->last = ss->n;
    *tag = ss->n++;
    return CUA_OK;
}

/* ---- the event pool ------------------------------------------------------- */

static cua_status event_get(cua_arena *a, cua_event *ev)
{
    cua_streams *ss = &a->streams;
    if (ss->npool) {
        *ev = ss->pool[--ss->npool];
        return CUA_OK;
    }
    return _cua_bk_event_create(a->bk, &a->cs, ev);
}

static void event_put(cua_arena *a, cua_event ev)
{
    cua_streams *ss = &a->streams;
    if (ss->npool == ss->cap_pool) {
        uint32_t ncap = ss->cap_pool ? 2 * ss->cap_pool : 8;
        cua_event *np = realloc(ss->pool, ncap * sizeof *np);
        if (!np) { /* cannot keep it: give it back to the driver */
            _cua_bk_event_destroy(a->bk, &a->cs, ev);
            return;
        }
        ss->pool = np;
        ss->cap_pool = ncap;
    }
    ss->pool[ss->npool++] = ev;
}

/* ---- blocks that leave the live set --------------------------------------------- */

void _cua_stream_put_free(cua_arena *a, cua_block *b, uint32_t tag)
{
    uint64_t seq = ++a->seq;
    _cua_seg_release(&a->seg, b->off, b->size, seq);
    tag = _cua_stream_free_tag(a, tag);
    if (tag) a->streams.slot[tag].last_free_seq = seq;
    _cua_heap_put(&a->heap, b, tag, seq, _cua_arena_one_stream(a));
}

/* ---- reclaim: tag-S blocks become tag 0 ---------------------------------------- */

/* Retag every free block of `tag` freed at or before `upto`. */
static uint64_t retag_upto(cua_arena *a, uint32_t tag, uint64_t upto)
{
    cua_freeidx *fi = a->heap.idx[tag];
    if (!fi->count) return 0;
    cua_block **list = malloc(fi->count * sizeof *list);
    if (!list) return 0; /* they stay tagged: correct, only less shared */
    size_t n = 0;
    for (unsigned bin = 0; bin < CUA_SC_COUNT; bin++)
        for (cua_block *b = fi->bins[bin]; b; b = b->fnext)
            if (b->seq <= upto) list[n++] = b;
    /* Blocks of one tag are never neighbours (they would have merged), so
     * retagging one never deletes another of the list. */
    for (size_t i = 0; i < n; i++) _cua_heap_retag_any(&a->heap, list[i]);
    free(list);
    return n;
}

static bool constraining(const cua_streamslot *s) { return s->last_free_seq > s->done_seq; }

static void reclaim_blocking(cua_arena *a, cua_streamslot *s, cua_status *st)
{
    cua_status r = _cua_bk_stream_sync(a->bk, &a->cs, s->stream);
    if (r != CUA_OK) {
        *st = r;
        return;
    }
    if (s->has_ev) {
        event_put(a, s->ev);
        s->has_ev = false;
    }
    s->done_seq = a->seq;
}

/* The reclaim event completed: the frees before it are done. */
static void event_done(cua_arena *a, cua_streamslot *s)
{
    s->done_seq = s->ev_seq;
    event_put(a, s->ev);
    s->has_ev = false;
}

static void reclaim_async(cua_arena *a, cua_streamslot *s, cua_status *st)
{
    if (s->has_ev) {
        cua_status q = _cua_bk_event_query(a->bk, &a->cs, s->ev);
        if (q == CUA_OK) {
            event_done(a, s);
        } else if (q != CUA_ERR_BUSY) {
            *st = q;
            return;
        }
    }
    if (s->has_ev || !constraining(s)) return;
    cua_status r = event_get(a, &s->ev);
    if (r == CUA_OK) {
        r = _cua_bk_event_record(a->bk, &a->cs, s->ev, s->stream);
        if (r != CUA_OK) event_put(a, s->ev);
    }
    if (r != CUA_OK) {
        *st = r;
        return;
    }
    s->has_ev = true;
    s->ev_seq = a->seq;
    /* An idle stream completes at once: ask now rather than at the next miss. */
    if (_cua_bk_event_query(a->bk, &a->cs, s->ev) == CUA_OK) event_done(a, s);
}

/* Every free block of `tag` to tag 0, one bin head at a time: no host memory
 * needed (a retired tag must not keep any, whatever malloc says). */
static uint64_t retag_all(cua_arena *a, uint32_t tag)
{
    cua_freeidx *fi = a->heap.idx[tag];
    uint64_t n = 0;
    for (unsigned bin = 0; bin < CUA_SC_COUNT; bin++)
        while (fi->bins[bin]) {
            _cua_heap_retag_any(&a->heap, fi->bins[bin]);
            n++;
        }
    return n;
}

/* Hand the blocks of `tag` that are known complete to every stream. With one
 * stream there is nobody to hand them to, and keeping their tag lets them
 * merge with that stream's later frees: the layout stays that of one heap. */
static uint64_t share(cua_arena *a, cua_streamslot *s, uint32_t tag)
{
    if (s->retired) return retag_all(a, tag); /* (its stream takes none) */
    if (a->streams.n <= 2 || s->shared_seq >= s->done_seq) return 0;
    s->shared_seq = s->done_seq;
    return retag_upto(a, tag, s->done_seq);
}

uint64_t _cua_stream_reclaim(cua_arena *a, bool blocking, cua_status *st)
{
    uint64_t n = 0;
    *st = CUA_OK;
    for (uint32_t tag = 1; tag < a->streams.n; tag++) {
        cua_streamslot *s = &a->streams.slot[tag];
        if (constraining(s)) {
            if (blocking) reclaim_blocking(a, s, st);
            else reclaim_async(a, s, st);
            if (*st != CUA_OK) break;
        }
        n += share(a, s, tag);
    }
    return n;
}

uint64_t _cua_stream_safe_seq(const cua_arena *a)
{
    uint64_t safe = UINT64_MAX;
    for (uint32_t tag = 1; tag < a->streams.n; tag++) {
        const cua_streamslot *s = &a->streams.slot[tag];
        if (constraining(s) && s->done_seq < safe) safe = s->done_seq;
    }
    return safe;
}

/* ---- blocks used on several streams --------------------------------------------- */

cua_status _cua_stream_add_use(cua_arena *a, cua_block *b, cua_stream stream)
{
    const cua_streamslot *own = &a->streams.slot[b->tag];
    if (own->stream == stream && !own->retired) return CUA_OK;
    cua_uses *u = b->uses;
    for (uint32_t i = 0; u && i < u->n; i++)
        if (u->use[i].stream == stream) return CUA_OK;
    if (!u || u->n == u->cap) {
        uint32_t ncap = u ? 2 * u->cap : 2;
        cua_uses *nu = realloc(u, sizeof *nu + ncap * sizeof nu->use[0]);
        if (!nu) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory to record a stream use");
        if (!u) nu->n = 0;
        nu->cap = ncap;
        b->uses = u = nu;
    }
    u->use[u->n].stream = stream;
    u->use[u->n].ev = 0;
    u->use[u->n].unsynced = false;
    u->n++;
    return CUA_OK;
}

/* Cover a use of a freed block by its stream: an event recorded on it now (in
 * `*ev`; at the free, or later for a use whose stream could be neither
 * recorded nor synchronised then: an event recorded later orders after the
 * same work); blocking, the stream synchronised if even that fails (the first
 * failure in *st). True when the use is covered. */
static bool catch_up(cua_arena *a, cua_event *ev, cua_stream stream, bool blocking, cua_status *st)
{
    cua_event e = 0;
    if (event_get(a, &e) == CUA_OK) {
        if (_cua_bk_event_record(a->bk, &a->cs, e, stream) == CUA_OK) {
            *ev = e;
            return true;
        }
        event_put(a, e);
    }
    if (!blocking) return false;
    cua_status q = _cua_bk_stream_sync(a->bk, &a->cs, stream);
    if (q != CUA_OK && *st == CUA_OK) *st = q;
    return q == CUA_OK;
}

cua_status _cua_stream_defer(cua_arena *a, cua_block *b)
{
    cua_uses *u = b->uses;
    cua_status first = CUA_OK;
    /* An event per other stream, else a wait for it now, which is always safe.
     * When even that fails, the block is pending all the same: a later poll
     * records the event (it is never handed out before). */
    for (uint32_t i = 0; i < u->n; i++)
        u->use[i].unsynced = !catch_up(a, &u->use[i].ev, u->use[i].stream, true, &first);
    b->state = CUA_BLOCK_PENDING;
    b->fnext = a->streams.pending;
    b->fprev = NULL;
    if (a->streams.pending) a->streams.pending->fprev = b;
    a->streams.pending = b;
    a->streams.pending_bytes += b->size;
    a->streams.pending_blocks++;
    return first;
}

/* True when every event of the block has completed (each completed one is recycled). */
static bool uses_done(cua_arena *a, cua_block *b, bool blocking, cua_status *st)
{
    cua_uses *u = b->uses;
    bool done = true;
    for (uint32_t i = 0; i < u->n; i++) {
        if (u->use[i].unsynced && !catch_up(a, &u->use[i].ev, u->use[i].stream, blocking, st)) {
            done = false;
            continue;
        }
        u->use[i].unsynced = false;
        if (!u->use[i].ev) continue;
        cua_status q = blocking ? _cua_bk_event_sync(a->bk, &a->cs, u->use[i].ev)
                                : _cua_bk_event_query(a->bk, &a->cs, u->use[i].ev);
        if (q == CUA_OK) {
            event_put(a, u->use[i].ev);
            u->use[i].ev = 0;
        } else {
            if (q != CUA_ERR_BUSY) *st = q;
            done = false;
        }
    }
    return done;
}

uint64_t _cua_stream_poll_pending(cua_arena *a, bool blocking, cua_status *st)
{
    uint64_t n = 0;
    *st = CUA_OK;
    cua_block *b = a->streams.pending;
    while (b) {
        cua_block *next = b->fnext;
        if (uses_done(a, b, blocking, st)) {
            if (b->fprev) b->fprev->fnext = b->fnext;
            else a->streams.pending = b->fnext;
            if (b->fnext) b->fnext->fprev = b->fprev;
            a->streams.pending_bytes -= b->size;
            a->streams.pending_blocks--;
            free(b->uses);
            b->uses = NULL;
            _cua_stream_put_free(a, b, b->tag);
            n++;
        }
        b = next;
    }
    return n;
}

/* ---- streams that go away ------------------------------------------------------- */

/* Drop the uses of `stream` from block b's list (its work there is done). */
static void uses_forget(cua_block *b, cua_stream stream, cua_arena *a)
{
    cua_uses *u = b->uses;
    for (uint32_t i = 0; u && i < u->n;) {
        if (u->use[i].stream != stream) {
            i++;
            continue;
        }
        if (u->use[i].ev) event_put(a, u->use[i].ev); /* (complete: the stream was waited for) */
        u->use[i] = u->use[--u->n];
    }
}

/* The live slot of `stream`, or 0. */
static uint32_t live_slot(const cua_arena *a, cua_stream stream)
{
    const cua_streams *ss = &a->streams;
    for (uint32_t i = 1; i < ss->n; i++)
        if (ss->slot[i].stream == stream && !ss->slot[i].retired) return i;
    return 0;
}

bool _cua_stream_known(const cua_arena *a, cua_stream stream)
{
    if (live_slot(a, stream)) return true;
    for (const cua_block *b = a->heap.first; b; b = b->next)
        for (uint32_t i = 0; b->uses && i < b->uses->n; i++)
            if (b->uses->use[i].stream == stream) return true;
    return false;
}

cua_status _cua_stream_retire_locked(cua_arena *a, cua_stream stream)
{
    cua_streams *ss = &a->streams;
    uint32_t tag = live_slot(a, stream);
    /* Its work is waited for now, while it still exists: after that the arena
     * never needs it, for the frees before and the frees to come. */
    cua_status st = _cua_bk_stream_sync(a->bk, &a->cs, stream);
    if (st != CUA_OK)
        return _cua_error_wrap(st, "arena '%s': cannot wait for stream %#lx before it goes; "
                               "the arena still counts on it", a->name, (unsigned long)stream);
    for (cua_block *b = a->heap.first; b; b = b->next)
        if (b->uses) uses_forget(b, stream, a);
    cua_status ignored; /* (a pending block whose other streams fail to answer waits on) */
    _cua_stream_poll_pending(a, false, &ignored);
    if (!tag) return CUA_OK;
    cua_streamslot *s = &ss->slot[tag];
    if (s->has_ev) {
        event_put(a, s->ev);
        s->has_ev = false;
    }
    s->retired = true;
    s->done_seq = UINT64_MAX;
    if (ss->last == tag) ss->last = 0; /* (the inline look-up must not find it) */
    share(a, s, tag);
    return CUA_OK;
}

/* At destroy a failed event destroy gets one more try, then the backend
 * retries it later. */
static void event_destroy(cua_arena *a, cua_event ev)
{
    if (_cua_bk_event_destroy(a->bk, &a->cs, ev) != CUA_OK &&
        _cua_bk_event_destroy(a->bk, &a->cs, ev) != CUA_OK)
        _cua_bk_bury(a->bk, (cua_grave){.kind = CUA_CALL_EVENT_DESTROY, .ev = ev}, CUA_ERR_BACKEND);
}

void _cua_stream_fini(cua_arena *a)
{
    cua_streams *ss = &a->streams;
    for (cua_block *b = ss->pending; b; b = b->fnext) {
        for (uint32_t i = 0; b->uses && i < b->uses->n; i++)
            if (b->uses->use[i].ev) event_destroy(a, b->uses->use[i].ev);
        free(b->uses);
        b->uses = NULL;
    }
    for (uint32_t t = 1; t < ss->n; t++)
        if (ss->slot[t].has_ev) event_destroy(a, ss->slot[t].ev);
    for (uint32_t i = 0; i < ss->npool; i++) event_destroy(a, ss->pool[i]);
    free(ss->pool);
    free(ss->slot);
    memset(ss, 0, sizeof *ss);
}
