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

#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* ---- the index: stream -> slot ---------------------------------------------------- */

static uint32_t stream_hash(cua_stream stream, uint32_t mask)
{
    uint64_t h = (uint64_t)stream * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32) & mask;
}

/* The slot of a stream that is not retired, or 0. */
static uint32_t index_find(const cua_streams *ss, cua_stream stream)
{
    if (!ss->index_mask) return 0;
    for (uint32_t i = stream_hash(stream, ss->index_mask);; i = (i + 1) & ss->index_mask) {
        uint32_t t = ss->index[i];
        if (!t || ss->slot[t].stream == stream) return t;
    }
}

static void index_put(cua_streams *ss, uint32_t tag)
{
    uint32_t i = stream_hash(ss->slot[tag].stream, ss->index_mask);
    while (ss->index[i]) i = (i + 1) & ss->index_mask;
    ss->index[i] = tag;
}

/* Room for one more entry (at most half full); false without host memory. */
static bool index_room(cua_streams *ss, uint32_t entries)
{
    if (ss->index_mask && 2 * (entries + 1) <= ss->index_mask + 1) return true;
    uint32_t cap = ss->index_mask ? 2 * (ss->index_mask + 1) : 16;
    uint32_t *nix = calloc(cap, sizeof *nix);
    if (!nix) return false;
    free(ss->index);
    ss->index = nix;
    ss->index_mask = cap - 1;
    for (uint32_t t = 1; t < ss->n; t++)
        if (!ss->slot[t].retired) index_put(ss, t);
    return true;
}

/* Take a retired stream's entry out (backward shift: no markers left). */
static void index_drop(cua_streams *ss, uint32_t tag)
{
    if (!ss->index_mask) return;
    uint32_t i = stream_hash(ss->slot[tag].stream, ss->index_mask);
    while (ss->index[i] && ss->index[i] != tag) i = (i + 1) & ss->index_mask;
    if (!ss->index[i]) return;
    for (uint32_t j = (i + 1) & ss->index_mask; ss->index[j]; j = (j + 1) & ss->index_mask) {
        uint32_t home = stream_hash(ss->slot[ss->index[j]].stream, ss->index_mask);
        /* entry j may move to the hole at i unless its home lies in (i, j] */
        if (((j - home) & ss->index_mask) >= ((j - i) & ss->index_mask)) {
            ss->index[i] = ss->index[j];
            i = j;
        }
    }
    ss->index[i] = 0;
}

/* ---- stream slots ---------------------------------------------------------- */

/* A new stream in retired slot i (no free block has its tag any more). */
static void slot_reuse(cua_arena *a, uint32_t i, cua_stream stream)
{
    cua_streamslot *s = &a->streams.slot[i];
    bool listed = s->active; /* (it may still be on the active list) */
    memset(s, 0, sizeof *s);
    s->active = listed;
    s->stream = stream;
    /* what was freed before it came is not its to wait for */
    s->done_seq = s->last_free_seq = s->shared_seq = a->seq;
}

/* A retired slot whose tag no free block carries, off the stack (a few of
 * the newest are looked at), or 0. */
static uint32_t take_retired(cua_arena *a)
{
    cua_streams *ss = &a->streams;
    for (uint32_t k = ss->nretired; k > 0 && ss->nretired - k < 4; k--) {
        uint32_t t = ss->retired[k - 1];
        if (a->heap.idx[t]->count) continue;
        ss->retired[k - 1] = ss->retired[--ss->nretired];
        return t;
    }
    return 0;
}

/* Slot `tag` is retired: out of the index, onto the stack for a new stream
 * (without host memory for the stack it is only not reused). */
static void slot_retired(cua_streams *ss, uint32_t tag)
{
    index_drop(ss, tag);
    ss->slot[tag].retired = true;
    if (!ss->slot[tag].active) { /* (a reclaim hands its blocks to every stream) */
        ss->slot[tag].active = true;
        ss->active[ss->nactive++] = tag;
    }
    if (ss->nretired == ss->cap_retired) {
        uint32_t ncap = ss->cap_retired ? 2 * ss->cap_retired : 8;
        uint32_t *nr = realloc(ss->retired, ncap * sizeof *nr);
        if (!nr) return;
        ss->retired = nr;
        ss->cap_retired = ncap;
    }
    ss->retired[ss->nretired++] = tag;
}

cua_status _cua_stream_slot_find(cua_arena *a, cua_stream stream, uint32_t *tag)
{
    cua_streams *ss = &a->streams;
    uint32_t found = index_find(ss, stream);
    if (found) {
        ss->last = found;
        *tag = found;
        return CUA_OK;
    }
    if (!index_room(ss, ss->n))
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for the stream index");
    uint32_t reusable = take_retired(a);
    if (reusable) {
        slot_reuse(a, reusable, stream);
        index_put(ss, reusable);
        ss->last = reusable;
        *tag = reusable;
        return CUA_OK;
    }
    if (ss->n + 1 > ss->cap) {
        uint32_t ncap = ss->cap ? 2 * ss->cap : 8;
        uint32_t *na = realloc(ss->active, ncap * sizeof *na);
        if (na) ss->active = na; /* (room for every slot: a free never fails to list it) */
        cua_streamslot *ns = na ? realloc(ss->slot, ncap * sizeof *ns) : NULL;
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
    index_put(ss, ss->n);
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
    if (tag) _cua_stream_freed(a, tag, seq);
    _cua_heap_put(&a->heap, b, tag, seq, _cua_arena_one_stream(a));
}

/* ---- reclaim: tag-S blocks become tag 0 ---------------------------------------- */

/* The first bin at or after `bin` that holds a block (the bitmap says), or
 * CUA_SC_COUNT: a tag's walk costs its blocks, not its 152 bins. */
static unsigned next_bin(const cua_freeidx *fi, unsigned bin)
{
    for (unsigned w = bin / 64; w < CUA_BITMAP_WORDS; w++) {
        uint64_t bits = fi->bitmap[w] & (w == bin / 64 ? ~0ull << (bin % 64) : ~0ull);
        if (bits) return w * 64 + (unsigned)__builtin_ctzll(bits);
    }
    return CUA_SC_COUNT;
}

/* Retag every free block of `tag` freed at or before `upto`. */
static uint64_t retag_upto(cua_arena *a, uint32_t tag, uint64_t upto)
{
    cua_freeidx *fi = a->heap.idx[tag];
    if (!fi->count) return 0;
    cua_block **list = malloc(fi->count * sizeof *list);
    if (!list) return 0; /* they stay tagged: correct, only less shared */
    size_t n = 0;
    for (unsigned bin = next_bin(fi, 0); bin < CUA_SC_COUNT; bin = next_bin(fi, bin + 1))
        for (cua_block *b = fi->bins[bin]; b; b = b->fnext)
            if (b->seq <= upto) list[n++] = b;
    /* Blocks of one tag are never neighbours (they would have merged), so
     * retagging one never deletes another of the list. */
    for (size_t i = 0; i < n; i++) _cua_heap_retag_any(&a->heap, list[i]);
    free(list);
    return n;
}

static bool constraining(const cua_streamslot *s) { return s->last_free_seq > s->done_seq; }

static uint64_t share(cua_arena *a, cua_streamslot *s, uint32_t tag);
static void wait_jobs(cua_arena *a);
static void wait_jobs_and_share(cua_arena *a);

/* Slot `tag`'s stream can be neither recorded on nor waited for: it is gone
 * (destroyed without cua_stream_retire - CuPy's streams die at garbage
 * collection, engines destroy theirs). Its work, wherever it went, is done
 * once the whole device is: wait for that, and retire the slot, so that the
 * stream is never touched again and its blocks go to every stream (a new
 * stream of the same handle gets a slot of its own). The caller shares its
 * blocks (share): inside a reclaim, whose count tells place() that blocks
 * moved - a block it holds may have merged away. */
static cua_status slot_gone(cua_arena *a, uint32_t tag)
{
    cua_status st = _cua_bk_stream_sync(a->bk, &a->cs, CUA_STREAM_DEVICE);
    if (st != CUA_OK)
        return _cua_error_wrap(st, "arena '%s': stream %#lx answers no more, and the device "
                               "cannot be waited for instead", a->name,
                               (unsigned long)a->streams.slot[tag].stream);
    cua_streams *ss = &a->streams;
    cua_streamslot *s = &ss->slot[tag];
    if (s->has_ev) { /* (complete: the device was waited for) */
        event_put(a, s->ev);
        s->has_ev = false;
    }
    slot_retired(ss, tag);
    s->done_seq = UINT64_MAX;
    if (ss->last == tag) ss->last = 0;
    return CUA_OK;
}

cua_status _cua_stream_wait_slot(cua_arena *a, uint32_t tag)
{
    wait_jobs_and_share(a);
    if (a->streams.slot[tag].retired) return CUA_OK; /* (waited for when it was retired) */
    cua_status st = _cua_bk_stream_sync(a->bk, &a->cs, a->streams.slot[tag].stream);
    if (st == CUA_OK) return CUA_OK;
    if (st == CUA_ERR_BUSY) /* (Note [streams that capture a CUDA graph], backend/cuda.c) */
        return _cua_error(st, "arena '%s': stream %#lx is capturing a CUDA graph: its work "
                          "cannot be waited for until the capture ends", a->name,
                          (unsigned long)a->streams.slot[tag].stream);
    if ((st = slot_gone(a, tag)) == CUA_OK) share(a, &a->streams.slot[tag], tag);
    return st;
}

static void reclaim_blocking(cua_arena *a, cua_streamslot *s, cua_status *st)
{
    uint32_t tag = (uint32_t)(s - a->streams.slot);
    cua_status r = _cua_bk_stream_sync(a->bk, &a->cs, s->stream);
    if (r == CUA_ERR_BUSY) return; /* capturing: its blocks stay its own until the capture ends */
    if (r != CUA_OK) {
        r = slot_gone(a, tag);
        if (r != CUA_OK) *st = r;
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
    if (r != CUA_OK) {
        *st = r;
        return;
    }
    r = _cua_bk_event_record(a->bk, &a->cs, s->ev, s->stream);
    if (r != CUA_OK) { /* no event on it: wait for it (or, gone, for the device) */
        event_put(a, s->ev);
        if (r != CUA_ERR_BUSY) reclaim_blocking(a, s, st); /* (BUSY: capturing; later) */
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
    for (unsigned bin = next_bin(fi, 0); bin < CUA_SC_COUNT; bin = next_bin(fi, bin))
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

/* Nothing left to learn of slot `tag` until its next free: it leaves the
 * active list. */
static bool settled(const cua_arena *a, const cua_streamslot *s, uint32_t tag)
{
    if (s->busy) return false; /* (a job answers for it later) */
    if (s->retired) return a->heap.idx[tag]->count == 0;
    return !constraining(s) && s->shared_seq >= s->done_seq;
}

/* What the active slots can learn: by waiting for their streams (WAIT), by
 * asking their events (ASK), or only what jobs already said (KNOWN); the
 * blocks known complete go to every stream. */
enum { RECLAIM_KNOWN, RECLAIM_ASK, RECLAIM_WAIT };

static uint64_t reclaim(cua_arena *a, int how, cua_status *st)
{
    cua_streams *ss = &a->streams;
    uint64_t n = 0;
    *st = CUA_OK;
    for (uint32_t k = 0; k < ss->nactive;) {
        uint32_t tag = ss->active[k];
        cua_streamslot *s = &ss->slot[tag];
        if (how != RECLAIM_KNOWN && constraining(s)) {
            if (how == RECLAIM_WAIT) reclaim_blocking(a, s, st);
            else reclaim_async(a, s, st);
            if (*st != CUA_OK) break;
        }
        n += share(a, s, tag);
        if (!settled(a, s, tag)) {
            k++;
            continue;
        }
        s->active = false;
        ss->active[k] = ss->active[--ss->nactive];
    }
    return n;
}

uint64_t _cua_stream_reclaim(cua_arena *a, bool blocking, cua_status *st)
{
    wait_jobs(a);
    return reclaim(a, blocking ? RECLAIM_WAIT : RECLAIM_ASK, st);
}

uint64_t _cua_stream_safe_seq(const cua_arena *a)
{
    uint64_t safe = UINT64_MAX;
    /* (a constraining slot is on the active list: only its free made it so) */
    for (uint32_t k = 0; k < a->streams.nactive; k++) {
        const cua_streamslot *s = &a->streams.slot[a->streams.active[k]];
        if (constraining(s) && s->done_seq < safe) safe = s->done_seq;
    }
    return safe;
}

/* ---- jobs: reclaim events asked without the lock ------------------------------- */

/* Note [events asked outside the lock]: with many streams, an allocation that
 * best fit cannot serve from mapped free space first learns which streams
 * finished their frees: it asks each constraining stream's reclaim event and
 * records one on a stream that has none. Each is a driver call (about 0.2 us
 * on an H100, event records and queries were 40 of the 57 ms of driver time
 * of cuarena-mt's 16 threads) and, made under the arena lock, every other
 * thread waited for them. So the allocating thread plans the calls under the
 * lock (a job per slot, the slot marked busy with the job's token), releases
 * the lock, makes them, takes the lock again and learns from the answers
 * before it places its block; the blocks it learns of are then every
 * stream's as before. Other threads' plans skip busy slots. Paths that must
 * know everything now - a blocking or inline reclaim, a stream's wait or
 * retire, the destroy - first wait for the running jobs (their calls never
 * wait for the GPU) and learn from them. An answer applies only to the slot
 * it was planned for (the token): a slot retired or reused meanwhile ignores
 * it, and an event recorded for it goes back to the pool. The events never
 * leave the arena: a job's event is in the job until learnt, and the destroy
 * learns every job before it destroys the events. */

/* The answer of job j (lock held): into its slot when the slot is still the
 * one it was planned for, the event back to the slot or the pool. */
static void learn_job(cua_arena *a, cua_evjob *j)
{
    cua_streams *ss = &a->streams;
    cua_streamslot *s = j->tag < ss->n ? &ss->slot[j->tag] : NULL;
    bool mine = s && s->busy == j->token;
    if (mine) s->busy = 0;
    if (j->record && j->ev) {
        if (mine && j->st == CUA_OK && !s->has_ev) {
            s->ev = j->ev;
            s->has_ev = true;
            s->ev_seq = j->seq;
            if (j->done) event_done(a, s);
        } else {
            event_put(a, j->ev); /* (recorded or not, an event can be recorded again) */
        }
    } else if (!j->record && mine && j->done && s->has_ev && s->ev == j->ev) {
        event_done(a, s);
    }
    /* A record that failed: the stream may be gone; wait for it as the
     * inline reclaim does (an error path: the call is made under the lock).
     * Not one refused because the stream captures a graph (BUSY): later. */
    if (j->record && mine && j->st != CUA_OK && j->st != CUA_ERR_BUSY && !s->has_ev &&
        !s->retired) {
        cua_status ignored;
        reclaim_blocking(a, s, &ignored);
    }
    j->ev = 0;
    atomic_store_explicit(&j->state, CUA_JOB_FREE, memory_order_relaxed);
    ss->jobs_out--;
}

static void learn_done(cua_arena *a)
{
    cua_streams *ss = &a->streams;
    for (unsigned i = 0; ss->jobs_out && i < CUA_JOBS; i++)
        if (atomic_load_explicit(&ss->job[i].state, memory_order_acquire) == CUA_JOB_DONE)
            learn_job(a, &ss->job[i]);
}

/* Every job answered and learnt (lock held; the runners need no lock). */
static void wait_jobs(cua_arena *a)
{
    cua_streams *ss = &a->streams;
    if (!ss->jobs_out) return;
    for (unsigned i = 0; i < CUA_JOBS; i++)
        while (atomic_load_explicit(&ss->job[i].state, memory_order_acquire) == CUA_JOB_RUNNING)
            sched_yield();
    learn_done(a);
}

/* wait_jobs, then hand out the blocks of a slot that a job's answer retired
 * (learn_job: a record failed on a stream that is gone). For callers that
 * hold no block: the blocks shared may merge with their neighbours. Without
 * it a retire of another stream or an offload's wait left the gone stream's
 * free blocks with the tag of a retired slot (the checker's "keeps the tag
 * of a retired stream"). */
static void wait_jobs_and_share(cua_arena *a)
{
    cua_status ignored; /* (no call is made: nothing fails) */
    if (!a->streams.jobs_out) return;
    wait_jobs(a);
    reclaim(a, RECLAIM_KNOWN, &ignored);
}

uint64_t _cua_stream_learn(cua_arena *a)
{
    cua_status ignored; /* (no call is made: nothing fails) */
    learn_done(a);
    return reclaim(a, RECLAIM_KNOWN, &ignored);
}

bool _cua_stream_plan(cua_arena *a, cua_evrun *run)
{
    cua_streams *ss = &a->streams;
    run->n = 0;
    run->bk = a->bk;
    run->job = ss->job;
    memset(&run->cs, 0, sizeof run->cs);
    unsigned at = 0;
    for (uint32_t k = 0; k < ss->nactive; k++) {
        cua_streamslot *s = &ss->slot[ss->active[k]];
        if (s->busy || s->retired || !constraining(s)) continue;
        while (at < CUA_JOBS &&
               atomic_load_explicit(&ss->job[at].state, memory_order_relaxed) != CUA_JOB_FREE)
            at++;
        if (at == CUA_JOBS) break;
        cua_evjob *j = &ss->job[at];
        j->tag = ss->active[k];
        j->token = ++ss->token;
        j->stream = s->stream;
        j->st = CUA_OK;
        j->done = false;
        j->record = !s->has_ev;
        j->seq = a->seq;
        j->ev = s->has_ev ? s->ev : ss->npool ? ss->pool[--ss->npool] : 0;
        s->busy = j->token;
        atomic_store_explicit(&j->state, CUA_JOB_RUNNING, memory_order_relaxed);
        ss->jobs_out++;
        run->idx[run->n++] = at;
    }
    return run->n != 0;
}

void _cua_stream_run(cua_evrun *run)
{
    for (uint32_t i = 0; i < run->n; i++) {
        cua_evjob *j = &run->job[run->idx[i]];
        cua_status st = CUA_OK;
        if (j->record) {
            if (!j->ev) {
                cua_event ev = 0;
                st = _cua_bk_event_create(run->bk, &run->cs, &ev);
                j->ev = st == CUA_OK ? ev : 0;
            }
            if (st == CUA_OK) st = _cua_bk_event_record(run->bk, &run->cs, j->ev, j->stream);
            /* (an idle stream completes at once: ask now rather than at the next miss) */
            j->done = st == CUA_OK && _cua_bk_event_query(run->bk, &run->cs, j->ev) == CUA_OK;
        } else {
            st = _cua_bk_event_query(run->bk, &run->cs, j->ev);
            j->done = st == CUA_OK;
            if (st == CUA_ERR_BUSY) st = CUA_OK;
        }
        j->st = st;
        atomic_store_explicit(&j->state, CUA_JOB_DONE, memory_order_release);
    }
}

void _cua_stream_ran(cua_arena *a, const cua_evrun *run)
{
    for (int k = 0; k < CUA_CALL_COUNT; k++) {
        a->cs.calls[k] += run->cs.calls[k];
        a->cs.call_ns[k] += run->cs.call_ns[k];
    }
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
 * failure in *st). True when the use is covered. A stream that captures a CUDA
 * graph is neither recorded on nor waited for (the backend answers BUSY): the
 * use stays uncovered, its block pending, until a later poll finds the
 * capture over - as torch defers such events until no capture is underway. */
static bool catch_up(cua_arena *a, cua_event *ev, cua_stream stream, bool blocking, cua_status *st)
{
    cua_event e = 0;
    if (event_get(a, &e) == CUA_OK) {
        cua_status r = _cua_bk_event_record(a->bk, &a->cs, e, stream);
        if (r == CUA_OK) {
            *ev = e;
            return true;
        }
        event_put(a, e);
        if (r == CUA_ERR_BUSY) return false; /* capturing a graph: covered after it ends */
    }
    if (!blocking) return false;
    cua_status q = _cua_bk_stream_sync(a->bk, &a->cs, stream);
    if (q == CUA_ERR_BUSY) return false; /* (not an error: the free or wait goes on) */
    /* Neither: it is gone (destroyed behind cuarena's back): its work is done
     * once the device's is, and the use needs nothing more of it. */
    if (q != CUA_OK) q = _cua_bk_stream_sync(a->bk, &a->cs, CUA_STREAM_DEVICE);
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

/* The live slot of `stream`, or 0 (the index holds the slots not retired). */
static uint32_t live_slot(const cua_arena *a, cua_stream stream)
{
    return index_find(&a->streams, stream);
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
    wait_jobs_and_share(a);
    uint32_t tag = live_slot(a, stream);
    /* Its work is waited for now, while it still exists: after that the arena
     * never needs it, for the frees before and the frees to come. (Gone
     * already: the device is waited for instead.) */
    cua_status st = _cua_bk_stream_sync(a->bk, &a->cs, stream);
    if (st != CUA_OK) st = _cua_bk_stream_sync(a->bk, &a->cs, CUA_STREAM_DEVICE);
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
    slot_retired(ss, tag);
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
    wait_jobs(a); /* (their events back in slots or the pool, destroyed below) */
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
    free(ss->index);
    free(ss->retired);
    free(ss->active);
    memset(ss, 0, sizeof *ss);
}
