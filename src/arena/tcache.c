/*
 * tcache.c - per-thread caches of freed small blocks (tcache.h says how they
 * work and what guards them).
 */
#include "arena/tcache.h"
#include "arena/events.h"
#include "arena/stream.h"
#include "base/history.h"

#include <pthread.h>
#include <stdlib.h>

#define CUA_TC_DEFAULT_BYTES ((uint64_t)8 << 20)
#define CUA_TC_DEFAULT_MAX ((uint64_t)1 << 20)

/* ---- the thread's caches ---------------------------------------------------- */

static _Thread_local cua_tcache *tl_caches; /* this thread's, one per arena */
static _Thread_local cua_tcache *tl_last;   /* the one found last */
static pthread_key_t tc_key;                /* its destructor empties them at thread exit */
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;
static bool tc_key_ok;

static inline int64_t ld(_Atomic int64_t *x) { return atomic_load_explicit(x, memory_order_relaxed); }
static inline uint64_t ldu(_Atomic uint64_t *x) { return atomic_load_explicit(x, memory_order_relaxed); }
/* Counters have one writer at a time (the cache's lock): no read-modify-write needed. */
static inline void add(_Atomic int64_t *x, int64_t d)
{
    atomic_store_explicit(x, ld(x) + d, memory_order_relaxed);
}
static inline void addu(_Atomic uint64_t *x, uint64_t d)
{
    atomic_store_explicit(x, ldu(x) + d, memory_order_relaxed);
}
static inline void subu(_Atomic uint64_t *x, uint64_t d)
{
    atomic_store_explicit(x, ldu(x) - d, memory_order_relaxed);
}

static inline cua_tc_slot *bin_of(cua_tcache *tc, unsigned c)
{
    return tc->bin[c];
}

static bool eligible(const cua_arena *a)
{
    return a->cfg.thread_cache != CUA_THREAD_CACHE_OFF && !a->nvtx_on &&
           !(a->cfg.flags & (CUA_ARENA_POISON | CUA_ARENA_CHECK_ALWAYS | CUA_ARENA_NVTX));
}

void _cua_tc_arena_init(cua_arena *a)
{
    a->tcs = NULL;
    a->tc_fix = 0;
    a->tc_granted = false;
    /* Decided once: the flags and the NVTX heap are not read again without the lock. */
    bool ok = eligible(a);
    /* (stores, not atomic_init: the memory may be a destroyed arena's whose
     * stale lock takers still count their waits) */
    atomic_store_explicit(&a->tc_auto, ok && a->cfg.thread_cache == CUA_THREAD_CACHE_AUTO,
                          memory_order_relaxed);
    atomic_store_explicit(&a->lock_waits, 0, memory_order_relaxed);
    atomic_store_explicit(&a->tc_on, ok && a->cfg.thread_cache == CUA_THREAD_CACHE_ON,
                          memory_order_relaxed);
}

/* ---- the own map: blocks this thread handed out ------------------------------- */

static inline unsigned own_hash(uintptr_t ptr)
{
    return (unsigned)(((uint64_t)ptr >> 9) * 0x9e3779b97f4a7c15ull >> 55) & (CUA_TC_OWN - 1);
}

static void own_insert(cua_tcache *tc, uintptr_t ptr, cua_block *b, uint64_t word,
                       cua_stream stream)
{
    unsigned h = own_hash(ptr), at = h;
    for (unsigned i = 0; i < CUA_TC_PROBES; i++) {
        cua_tc_own *o = &tc->own[(h + i) & (CUA_TC_OWN - 1)];
        if (o->ptr == ptr || !o->ptr) {
            at = (h + i) & (CUA_TC_OWN - 1);
            break;
        }
    }
    /* No room: the note in the first slot is forgotten; that block's free
     * then takes the arena's lock, which handles it like any other. */
    tc->own[at] = (cua_tc_own){ptr, b, word, stream};
}

static cua_tc_own *own_find(cua_tcache *tc, uintptr_t ptr)
{
    unsigned h = own_hash(ptr);
    for (unsigned i = 0; i < CUA_TC_PROBES; i++) {
        cua_tc_own *o = &tc->own[(h + i) & (CUA_TC_OWN - 1)];
        if (o->ptr == ptr) return o;
    }
    return NULL;
}

/* ---- making, finding and ending a thread's cache ----------------------------------- */

static void tc_thread_exit(void *head);

static void make_key(void) { tc_key_ok = pthread_key_create(&tc_key, tc_thread_exit) == 0; }

static void tc_free(cua_tcache *tc)
{
    free(tc->nbin);
    free(tc->bin);
    free(tc);
}

/* Unlink tc from the arena's list (arena lock held). */
static void arena_unlink(cua_arena *a, cua_tcache *tc)
{
    if (tc->aprev) tc->aprev->anext = tc->anext;
    else a->tcs = tc->anext;
    if (tc->anext) tc->anext->aprev = tc->aprev;
    tc->anext = tc->aprev = NULL;
}

static void flush_one(cua_arena *a, cua_tcache *tc);

/* The thread is done with tc: its cached blocks go back to the arena, the
 * corrections of the blocks it handed out stay with the arena. The arena's
 * lock is taken even when the cache is dead: a destroy touches its caches
 * under that lock, so the free here comes after the destroy's last touch.
 * (The arena's shell outlives it: taking its lock is always safe.) */
static void tc_release(cua_tcache *tc)
{
    cua_arena *a = tc->arena;
    _cua_lock(&a->lock);
    if (atomic_load_explicit(&tc->gate, memory_order_relaxed) != CUA_TC_DEAD) {
        flush_one(a, tc);
        a->tc_fix += ld(&tc->adj_live);
        a->alloc_count += ldu(&tc->allocs);
        a->free_count += ldu(&tc->frees);
        a->tc_gone_allocs += ldu(&tc->allocs);
        a->tc_gone_frees += ldu(&tc->frees);
        arena_unlink(a, tc);
        /* (the release threshold applies to the flushed pages at the
         * arena's next free or trim: tcache.h) */
    }
    _cua_arena_unlock(a);
    tc_free(tc);
}

/* A dead cache (its arena destroyed), found by its thread: freed once the
 * destroy that killed it is done with it (it held the arena's lock). */
static void tc_free_dead(cua_tcache *tc)
{
    _cua_lock(&tc->arena->lock);
    _cua_unlock(&tc->arena->lock);
    tc_free(tc);
}

static void tc_thread_exit(void *head)
{
    for (cua_tcache *tc = head, *next; tc; tc = next) {
        next = tc->tnext;
        tc_release(tc);
    }
    tl_caches = tl_last = NULL;
}



cua_tcache *_cua_tc_find(cua_arena *a)
{
    cua_tcache *tc = tl_last;
    if (CUA_LIKELY(tc && tc->arena == a &&
                   atomic_load_explicit(&tc->gate, memory_order_relaxed) != CUA_TC_DEAD))
        return tc;
    /* The slow way, freeing on the way every cache whose arena was destroyed
     * (a thread that makes and destroys arenas would pile them up). */
    cua_tcache *found = NULL, **at = &tl_caches;
    bool dropped = false;
    tl_last = NULL;
    while ((tc = *at) != NULL) {
        if (atomic_load_explicit(&tc->gate, memory_order_acquire) == CUA_TC_DEAD) {
            *at = tc->tnext;
            tc_free_dead(tc);
            dropped = true;
            continue;
        }
        if (tc->arena == a) found = tc;
        at = &tc->tnext;
    }
    if (dropped && tc_key_ok) pthread_setspecific(tc_key, tl_caches);
    return tl_last = found;
}

static cua_tcache *tc_new(cua_arena *a, size_t max_size, size_t cap_bytes)
{
    cua_tcache *tc = calloc(1, sizeof *tc);
    if (!tc) return NULL;
    tc->max_size = max_size ? max_size : CUA_TC_DEFAULT_MAX;
    tc->cap_bytes = cap_bytes ? cap_bytes : CUA_TC_DEFAULT_BYTES;
    if (tc->max_size > CUA_SC_MAX_SIZE) tc->max_size = CUA_SC_MAX_SIZE;
    tc->nbins = _cua_sc_floor(tc->max_size < CUA_ALIGNMENT ? CUA_ALIGNMENT : tc->max_size) + 1;
    tc->nbin = calloc(tc->nbins, 1);
    tc->bin = calloc(tc->nbins, sizeof(cua_tc_slot) * CUA_TC_BIN_CAP);
    if (!tc->nbin || !tc->bin) {
        tc_free(tc);
        return NULL;
    }
    _cua_lock_init(&tc->lock, CUA_LOCK_RANK_TCACHE);
    atomic_init(&tc->gate, CUA_TC_OPEN);
    tc->arena = a;
    return tc;
}

cua_tcache *_cua_tc_get(cua_arena *a)
{
    cua_tcache *tc = _cua_tc_find(a);
    if (CUA_LIKELY(tc != NULL)) return tc;
    pthread_once(&tc_once, make_key);
    if (!tc_key_ok) return NULL;
    /* The sizes under the lock, and the same arena when it is joined (its
     * memory may hold another arena meanwhile: the generation tells). */
    if (!_cua_arena_lock_alive(a)) return NULL;
    uint32_t gen = atomic_load_explicit(&a->gen, memory_order_relaxed);
    size_t max_size = a->cfg.thread_cache_max, cap_bytes = a->cfg.thread_cache_bytes;
    _cua_unlock(&a->lock);
    if (!(tc = tc_new(a, max_size, cap_bytes))) return NULL;
    _cua_lock(&a->lock);
    bool alive = atomic_load_explicit(&a->alive, memory_order_relaxed) &&
                 atomic_load_explicit(&a->gen, memory_order_relaxed) == gen;
    if (alive) {
        atomic_store_explicit(&tc->gate, a->offloaded ? CUA_TC_CLOSED : CUA_TC_OPEN,
                              memory_order_relaxed);
        tc->anext = a->tcs;
        if (a->tcs) a->tcs->aprev = tc;
        a->tcs = tc;
    }
    _cua_unlock(&a->lock);
    if (!alive || pthread_setspecific(tc_key, tc) != 0) {
        if (alive) {
            tc_release(tc);
        } else {
            tc_free(tc);
        }
        return NULL;
    }
    tc->tnext = tl_caches;
    tl_caches = tl_last = tc;
    pthread_setspecific(tc_key, tl_caches);
    return tc;
}

/* ---- the thread's allocations and frees -------------------------------------------- */

bool _cua_tc_pop(cua_tcache *tc, size_t size, cua_stream stream, void **out)
{
    if (size == 0 || size > tc->max_size) return false;
    uint64_t asize = ((uint64_t)size + CUA_ALIGNMENT - 1) & ~(uint64_t)(CUA_ALIGNMENT - 1);
    unsigned c = _cua_sc_floor(asize);
    if (c >= tc->nbins) return false;
    _cua_lock(&tc->lock);
    if (atomic_load_explicit(&tc->gate, memory_order_relaxed) != CUA_TC_OPEN) goto miss;
    cua_tc_slot *bin = bin_of(tc, c);
    for (int i = (int)tc->nbin[c] - 1; i >= 0; i--) {
        if (bin[i].stream != stream || bin[i].b->size < asize) continue;
        cua_tc_slot s = bin[i];
        bin[i] = bin[--tc->nbin[c]];
        cua_block *b = s.b;
        uint64_t w = atomic_load_explicit(&b->tcw, memory_order_relaxed);
        uint64_t nw = (((w >> 2) + 1) << 2) | CUA_TCW_OUT;
        b->treq = size;
        atomic_store_explicit(&b->tco, tc, memory_order_relaxed);
        atomic_store_explicit(&b->tcw, nw, memory_order_release);
        add(&tc->adj_live, (int64_t)size);
        add(&tc->adj_blocks, 1);
        add(&tc->adj_alloc, (int64_t)b->size);
        addu(&tc->allocs, 1);
        subu(&tc->cached_bytes, b->size);
        own_insert(tc, s.ptr, b, nw, stream);
        _cua_history_note(tc->arena->device, CUA_HISTORY_ALLOC, s.ptr, size, stream,
                          tc->arena->name);
        _cua_unlock(&tc->lock);
        *out = (void *)s.ptr;
        return true;
    }
miss:
    _cua_unlock(&tc->lock);
    return false;
}

bool _cua_tc_push(cua_tcache *tc, void *ptr)
{
    _cua_lock(&tc->lock);
    cua_tc_own *o = NULL;
    if (atomic_load_explicit(&tc->gate, memory_order_relaxed) == CUA_TC_OPEN)
        o = own_find(tc, (uintptr_t)ptr);
    if (!o) {
        _cua_unlock(&tc->lock);
        return false;
    }
    cua_tc_own e = *o;
    o->ptr = 0;
    /* e.b may have been freed by another thread and reused since: nothing of
     * it is read before the compare-and-swap proves it is still ours. */
    uint64_t cached = (e.word & ~(uint64_t)3) | CUA_TCW_CACHED;
    if (!atomic_compare_exchange_strong_explicit(&e.b->tcw, &e.word, cached,
                                                 memory_order_acq_rel, memory_order_relaxed)) {
        _cua_unlock(&tc->lock);
        return false;
    }
    cua_block *b = e.b;
    unsigned c = _cua_sc_floor(b->size);
    if (c >= tc->nbins || tc->nbin[c] == CUA_TC_BIN_CAP ||
        ldu(&tc->cached_bytes) + b->size > tc->cap_bytes) {
        /* Full: back to handed out, for the arena's free to take. */
        atomic_store_explicit(&b->tcw, e.word, memory_order_release);
        _cua_unlock(&tc->lock);
        return false;
    }
    bin_of(tc, c)[tc->nbin[c]++] = (cua_tc_slot){b, e.stream, (uintptr_t)ptr};
    add(&tc->adj_live, -(int64_t)b->treq);
    add(&tc->adj_blocks, -1);
    add(&tc->adj_alloc, -(int64_t)b->size);
    addu(&tc->frees, 1);
    addu(&tc->cached_bytes, b->size);
    _cua_history_note(tc->arena->device, CUA_HISTORY_FREE, (uintptr_t)ptr, b->treq, e.stream,
                      tc->arena->name);
    _cua_unlock(&tc->lock);
    return true;
}

uint64_t _cua_tc_grant_locked(cua_tcache *tc, cua_block *b, size_t size)
{
    if (!tc || b->size > tc->max_size ||
        atomic_load_explicit(&tc->gate, memory_order_relaxed) != CUA_TC_OPEN)
        return 0;
    tc->arena->tc_granted = true; /* every block a cache hands out descends from a grant */
    uint64_t w = atomic_load_explicit(&b->tcw, memory_order_relaxed);
    uint64_t nw = (((w >> 2) + 1) << 2) | CUA_TCW_OUT;
    b->treq = size;
    atomic_store_explicit(&b->tco, tc, memory_order_relaxed);
    atomic_store_explicit(&b->tcw, nw, memory_order_release);
    return nw;
}

/* Note [frees from other threads]: a block one thread allocates and another
 * frees (a request's tensors freed by the thread that finished the request,
 * cuarena-mt --cross 1) went back to the heap through the arena's lock, so
 * its owner's next allocation of that size missed its cache and took the
 * lock too: with 16 threads, 0.24 of the allocations hit their cache against
 * 0.89 when each thread frees its own. Now the free, still under the arena's
 * lock (only it finds the block of a pointer another thread handed out),
 * puts the block into the cache that handed it out, as that thread's own
 * free would have: same stream, so reusing it there is as safe. The cache is
 * found through the block's hint `tco`, and used only when it is on the
 * arena's list (its thread may have ended) and still notes the pointer in
 * its own map with the word the block has (the compare-and-swap of
 * _cua_tc_push); else the arena frees the block as before. */
bool _cua_tc_give_back_locked(cua_arena *a, cua_block *b, void *ptr)
{
    cua_tcache *owner = atomic_load_explicit(&b->tco, memory_order_relaxed);
    if (!owner) return false;
    for (cua_tcache *tc = a->tcs; tc; tc = tc->anext)
        if (tc == owner) return _cua_tc_push(tc, ptr);
    return false;
}

void _cua_tc_note(cua_tcache *tc, void *ptr, cua_block *b, uint64_t word, cua_stream stream)
{
    _cua_lock(&tc->lock);
    if (atomic_load_explicit(&tc->gate, memory_order_relaxed) == CUA_TC_OPEN)
        own_insert(tc, (uintptr_t)ptr, b, word, stream);
    _cua_unlock(&tc->lock);
}

/* ---- the arena's side ------------------------------------------------------------------- */

/* A block a cache held goes back to the heap (arena lock held). */
static void free_cached(cua_arena *a, cua_block *b)
{
    _cua_heap_map_remove(&a->heap, b->off);
    a->live_bytes -= b->req;
    a->live_blocks--;
    a->allocated_bytes -= b->size;
    _cua_stream_put_free(a, b, b->tag);
}

/* Every block of tc's bins back to the heap (arena lock held; takes tc's). */
static void flush_one(cua_arena *a, cua_tcache *tc)
{
    _cua_lock(&tc->lock);
    for (unsigned c = 0; c < tc->nbins; c++) {
        cua_tc_slot *bin = bin_of(tc, c);
        for (unsigned i = 0; i < tc->nbin[c]; i++) {
            cua_block *b = bin[i].b;
            uint64_t w = atomic_load_explicit(&b->tcw, memory_order_relaxed);
            atomic_store_explicit(&b->tcw, w & ~(uint64_t)3, memory_order_relaxed);
            add(&tc->adj_live, (int64_t)b->req);
            add(&tc->adj_blocks, 1);
            add(&tc->adj_alloc, (int64_t)b->size);
            subu(&tc->cached_bytes, b->size);
            free_cached(a, b);
        }
        tc->nbin[c] = 0;
    }
    _cua_unlock(&tc->lock);
}

uint64_t _cua_tc_flush_all_locked(cua_arena *a)
{
    uint64_t n = 0;
    for (cua_tcache *tc = a->tcs; tc; tc = tc->anext) {
        n += ldu(&tc->cached_bytes);
        flush_one(a, tc);
    }
    return n;
}

static void set_gates(cua_arena *a, int gate)
{
    for (cua_tcache *tc = a->tcs; tc; tc = tc->anext) {
        _cua_lock(&tc->lock);
        atomic_store_explicit(&tc->gate, gate, memory_order_release);
        _cua_unlock(&tc->lock);
    }
}

void _cua_tc_close_all_locked(cua_arena *a)
{
    set_gates(a, CUA_TC_CLOSED);
    _cua_tc_flush_all_locked(a);
    /* No thread can cache a block now: the ones handed out become the
     * arena's, with their sizes as asked (an offload copies those). */
    _cua_tc_disown_all_locked(a);
}

void _cua_tc_disown_all_locked(cua_arena *a)
{
    if (!a->tc_granted) return; /* no cache ever handed a block out of this arena */
    for (cua_block *b = a->heap.first; b; b = b->next)
        if (b->state == CUA_BLOCK_LIVE) (void)_cua_tc_disown_locked(a, b);
}

void _cua_tc_open_all_locked(cua_arena *a) { set_gates(a, CUA_TC_OPEN); }

void _cua_tc_kill_all_locked(cua_arena *a)
{
    /* Its thread frees a dead cache only after taking the arena's lock (held
     * here): the unlock below is not the last touch of freed memory. */
    for (cua_tcache *tc = a->tcs, *next; tc; tc = next) {
        next = tc->anext;
        tc->anext = tc->aprev = NULL;
        _cua_lock(&tc->lock);
        atomic_store_explicit(&tc->gate, CUA_TC_DEAD, memory_order_release);
        _cua_unlock(&tc->lock);
    }
    a->tcs = NULL;
}

bool _cua_tc_disown_locked(cua_arena *a, cua_block *b)
{
    uint64_t w = atomic_load_explicit(&b->tcw, memory_order_acquire);
    for (;;) {
        unsigned st = _cua_tcw_state(w);
        if (st == CUA_TCW_ARENA) return true;
        if (st == CUA_TCW_CACHED) return false;
        if (atomic_compare_exchange_weak_explicit(&b->tcw, &w, w & ~(uint64_t)3,
                                                  memory_order_acq_rel, memory_order_acquire))
            break;
    }
    /* The heap counted the size asked when the lock handed it out; the
     * cache's correction for what it was asked since moves to the arena. */
    int64_t d = (int64_t)b->treq - (int64_t)b->req;
    a->live_bytes = (uint64_t)((int64_t)a->live_bytes + d);
    a->tc_fix -= d;
    b->req = b->treq;
    if (a->live_bytes > a->peak_live) a->peak_live = a->live_bytes;
    return true;
}

void _cua_tc_sums_locked(const cua_arena *a, cua_tc_sums *s)
{
    *s = (cua_tc_sums){.live = a->tc_fix};
    for (cua_tcache *tc = a->tcs; tc; tc = tc->anext) {
        /* Under the cache's lock: a hit moves its counters one at a time, and
         * a sum taken between two of them said live > allocated (the GPU
         * thread stress, 16 threads, after 111 s). */
        _cua_lock(&tc->lock);
        s->live += ld(&tc->adj_live);
        s->blocks += ld(&tc->adj_blocks);
        s->alloc += ld(&tc->adj_alloc);
        s->allocs += ldu(&tc->allocs);
        s->frees += ldu(&tc->frees);
        s->cached_bytes += ldu(&tc->cached_bytes);
        _cua_unlock(&tc->lock);
    }
}

size_t _cua_tc_count_mine(void)
{
    size_t n = 0;
    for (cua_tcache *tc = tl_caches; tc; tc = tc->tnext) n++;
    return n;
}
