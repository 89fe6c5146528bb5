/*
 * arena.c - an arena's life: create, alloc (placement and growth), free,
 * settings, destroy (arena.h). When pages are mapped and given back is
 * policy.c's; stream order is stream.c's.
 *
 * Placement is best fit over the whole address range, blind to which pages are
 * mapped: the layout is then the one an ideal best fit would make, and mapping
 * follows it page by page. Growth maps only the pages a block lacks.
 */
#include "arena/arena.h"
#include "arena/check.h"
#include "arena/events.h"
#include "arena/nvtx.h"
#include "arena/offload.h"
#include "arena/place.h"
#include "arena/policy.h"
#include "arena/stream.h"
#include "arena/tcache.h"
#include "base/addrmap.h"
#include "base/history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- create -------------------------------------------------------------------- */

static cua_status check_config(const cua_arena_config *cfg, size_t gran)
{
    if (cfg->chunk_max % gran)
        return _cua_error(CUA_ERR_INVALID_ARG,
                          "chunk_max %zu is not a multiple of the granularity %zu",
                          cfg->chunk_max, gran);
    if (cfg->chunk_large != CUA_CHUNK_LARGE_NONE && cfg->chunk_large % gran)
        return _cua_error(CUA_ERR_INVALID_ARG,
                          "chunk_large %zu is not a multiple of the granularity %zu",
                          cfg->chunk_large, gran);
    if (cfg->device < 0) return _cua_error(CUA_ERR_INVALID_ARG, "device %d < 0", cfg->device);
    if (cfg->limit && cfg->floor > cfg->limit)
        return _cua_error(CUA_ERR_INVALID_ARG, "floor %zu is above the limit %zu", cfg->floor,
                          cfg->limit);
    if (cfg->priority < 0) return _cua_error(CUA_ERR_INVALID_ARG, "priority %d < 0", cfg->priority);
    return CUA_OK;
}

/* What needs no backend: the values cuarena.h promises to refuse. */
static cua_status check_values(const cua_arena_config *cfg)
{
    const unsigned known = CUA_ARENA_CHECK_ALWAYS | CUA_ARENA_NO_FOOTPRINT_CAP | CUA_ARENA_NO_VMM |
                           CUA_ARENA_POISON | CUA_ARENA_SCRUB | CUA_ARENA_NVTX |
                           CUA_ARENA_BLIND_PLACEMENT | CUA_ARENA_EVICT_FRAGMENTS |
                           CUA_ARENA_DELAYED_UNMAP | CUA_ARENA_KEEP_MAPPED;
    if (cfg->flags & ~known)
        return _cua_error(CUA_ERR_INVALID_ARG, "unknown flag bits %#x (known: %#x)",
                          cfg->flags & ~known, known);
    if (cfg->thread_cache < CUA_THREAD_CACHE_AUTO || cfg->thread_cache > CUA_THREAD_CACHE_OFF)
        return _cua_error(CUA_ERR_INVALID_ARG, "thread_cache %d is not a cua_thread_cache_mode",
                          cfg->thread_cache);
    /* Devices 0..63, as everywhere else: peaks, defaults, peers, the report. */
    if (cfg->device < 0 || cfg->device >= CUA_MAX_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "device %d is out of range 0..%d", cfg->device,
                          CUA_MAX_DEVICES - 1);
    return CUA_OK;
}

static size_t default_va(const cua_backend *bk, const cua_arena_config *cfg)
{
    size_t va = cfg->va_size ? cfg->va_size : 4 * bk->total_bytes;
    size_t unit = _cua_max(CUA_GIB, bk->granularity);
    if (!_cua_align_up(va, unit, &va)) va = SIZE_MAX & ~(unit - 1);
    return va;
}

/* ---- what the segment tells the arena (core/segment.h's observer) ----------------- */

/* Mapped bytes moved: the device's counters and its history. */
static void seg_mapped(void *ctx, uintptr_t addr, int64_t delta)
{
    cua_arena *a = ctx;
    if (!a->dev) return;
    _cua_devstat_add(a->dev, delta);
    _cua_history_note(a->device, delta > 0 ? CUA_HISTORY_MAP : CUA_HISTORY_UNMAP, addr,
                      (uint64_t)(delta > 0 ? delta : -delta), 0, NULL);
}

/* An arena destroyed: its tombstone may stop answering for its old range. */
static bool arena_gone(const cua_arena *a) { return !atomic_load(&a->alive); }

/* novmm: a whole segment's addresses are the arena's (the address map) and
 * its NVTX heap (the tag) while it lasts. */
static cua_status seg_segment(void *ctx, cua_seg_change what, uintptr_t addr, size_t len,
                              void **tag)
{
    cua_arena *a = ctx;
    switch (what) {
    case CUA_SEG_CAME: {
        cua_status st = _cua_addrmap_insert_range(addr, len, a, arena_gone);
        if (st == CUA_OK) *tag = _cua_nvtx_segment_open(a, addr, len);
        return st;
    }
    case CUA_SEG_LEAVING:
        /* Its NVTX heap and its addresses go before the free: once freed the
         * range may be another's heap, and the free itself may look the
         * address up (a supplier's memory can be another arena's block:
         * Note [memory from a supplier], backend/supplier.c). */
        _cua_nvtx_segment_close(*tag);
        *tag = NULL;
        _cua_addrmap_remove_range(addr, a);
        return CUA_OK;
    case CUA_SEG_STAYED: {
        /* (cannot fail: remove_range kept the room) */
        cua_status st = _cua_addrmap_insert_range(addr, len, a, arena_gone);
        cua_assert(st == CUA_OK);
        (void)st;
        *tag = _cua_nvtx_segment_open(a, addr, len); /* (idle: no regions) */
        return CUA_OK;
    }
    case CUA_SEG_GONE:
        _cua_addrmap_shrink_ranges(); /* (the room LEAVING kept) */
        return CUA_OK;
    }
    return CUA_OK;
}

/* novmm: a trim freed the segment at [off, off + len); its edges are gone, so
 * the free blocks on either side of each may merge now. */
static void seg_trimmed(void *ctx, uint64_t off, uint64_t len)
{
    cua_arena *a = ctx;
    if (!a->seg.novmm) return;
    _cua_heap_merge_at(&a->heap, off, _cua_arena_one_stream(a));
    _cua_heap_merge_at(&a->heap, off + len, _cua_arena_one_stream(a));
}

static cua_status arena_body_init(cua_arena *a, cua_arena_config *cfg)
{
    cua_status vs = check_values(cfg);
    if (vs != CUA_OK) return vs;
    cua_status st = check_config(cfg, a->bk->granularity);
    /* A CUDA backend allocates on its own device: an arena of another device
     * on it would be counted, reported and relieved under the wrong one. (A
     * host backend is a simulation: tests let one stand for several.) */
    if (st == CUA_OK && a->bk->kind == CUA_BK_CUDA && a->bk->device != cfg->device)
        st = _cua_error(CUA_ERR_INVALID_ARG, "arena '%s' is on device %d, but its backend "
                        "allocates on device %d (set cua_arena_config.device to it)", a->name,
                        cfg->device, a->bk->device);
    if (st == CUA_OK) {
        size_t va = default_va(a->bk, cfg);
        if ((va >> _cua_log2(a->bk->granularity)) > UINT32_MAX)
            va = (size_t)UINT32_MAX << _cua_log2(a->bk->granularity) & ~(CUA_GIB - 1);
        size_t align = _cua_max(CUA_GIB, a->bk->granularity);
        /* (NVTX registration needs whole segments: compute-sanitizer
         * refuses heaps over VMM mappings, nvtx.h) */
        if (!a->bk->vmm || (cfg->flags & CUA_ARENA_NVTX)) cfg->flags |= CUA_ARENA_NO_VMM;
        const cua_seg_observer obs = {.ctx = a, .mapped = seg_mapped, .segment = seg_segment,
                                      .trimmed = seg_trimmed};
        st = _cua_seg_init(&a->seg, a->bk, &a->cs, va, align, cfg->chunk_max, cfg->chunk_large,
                           cfg->flags & CUA_ARENA_NO_VMM, &obs);
        if (st == CUA_OK) _cua_nvtx_open(a, cfg->flags); /* before any segment comes */
        if (st == CUA_OK) a->seg.defer_unmap = !a->seg.novmm && (cfg->flags & CUA_ARENA_DELAYED_UNMAP);
    }
    /* Peers named at creation: refused before anything is mapped. */
    for (int d = 0; st == CUA_OK && d < CUA_MAX_DEVICES; d++) {
        if (!(cfg->peers >> d & 1)) continue;
        st = _cua_seg_grant_peer(&a->seg, d);
        if (st != CUA_OK) {
            st = _cua_error_wrap(st, "arena '%s': peer %d", a->name, d);
            _cua_seg_fini(&a->seg);
        }
    }
    if (st == CUA_OK) {
        st = _cua_heap_init(&a->heap, a->seg.size);
        a->heap.page = a->seg.gran;
        if (st != CUA_OK) _cua_seg_fini(&a->seg);
    }
    if (st == CUA_OK && a->seg.novmm) { /* blocks stay inside one segment */
        a->heap.fence = _cua_seg_fence;
        a->heap.fence_ctx = &a->seg;
    }
    if (st == CUA_OK && !a->seg.novmm) {
        st = _cua_addrmap_insert(a->seg.base, a->seg.size, a);
        if (st != CUA_OK) {
            _cua_heap_fini(&a->heap);
            _cua_seg_fini(&a->seg);
        }
    }
    return st;
}

cua_status _cua_arena_create(cua_arena *a, const cua_arena_config *cfg_in, cua_backend *bk,
                             bool owns_bk)
{
    cua_arena_config cfg = *cfg_in;
    const char *name = cfg.name ? cfg.name : "arena";
    size_t len = _cua_utf8_fit(name, strlen(name), sizeof a->name - 1); /* (63 bytes at most) */
    snprintf(a->name, sizeof a->name, "%.*s", (int)len, name);
    cfg.name = a->name;
    cfg.backend = bk;
    a->device = cfg.device;
    a->bk = bk;
    a->owns_bk = owns_bk;
    _cua_lock_set_rank(&a->lock, bk->kind == CUA_BK_SUPPLIER ? CUA_LOCK_RANK_ARENA_SUPPLIED
                                                             : CUA_LOCK_RANK_ARENA);
    a->dev = _cua_devstat_of(cfg.device);
    cua_status st = arena_body_init(a, &cfg);
    if (st != CUA_OK) {
        if (owns_bk) _cua_backend_destroy(bk);
        a->bk = NULL;
        return st;
    }
    a->cfg = cfg;
    atomic_fetch_add(&a->bk->users, 1);
    _cua_tc_arena_init(a);
    atomic_store_explicit(&a->alive, 1, memory_order_release); /* whole: alive */
    return CUA_OK;
}

/* ---- growth -------------------------------------------------------------------------- */

static void oom_report(cua_arena *a, cua_status st, size_t size, cua_stream stream)
{
    char asked[32], mapped[32], live[32], idle[32], fr[32], tot[32], lim[32];
    size_t free_b = 0, total_b = 0;
    cua_status prev = st;
    _cua_bk_mem_info(a->bk, &a->cs, &free_b, &total_b);
    _cua_fmt_bytes(asked, sizeof asked, size);
    _cua_fmt_bytes(mapped, sizeof mapped, a->seg.mapped_bytes);
    _cua_fmt_bytes(live, sizeof live, a->live_bytes);
    _cua_fmt_bytes(idle, sizeof idle, a->seg.idle_bytes);
    _cua_fmt_bytes(fr, sizeof fr, free_b);
    _cua_fmt_bytes(tot, sizeof tot, total_b);
    _cua_fmt_bytes(lim, sizeof lim, a->cfg.limit);
    if (prev == CUA_ERR_LIMIT)
        _cua_error(st, "arena '%s' cannot allocate %s on stream %#lx: its limit is %s and it "
                   "has %s mapped, %s live, %s cached after trimming (device: %s free of %s)",
                   a->name, asked, (unsigned long)stream, lim, mapped, live, idle, fr, tot);
    else
        _cua_error_wrap(st, "arena '%s' cannot allocate %s on stream %#lx: device has %s free "
                        "of %s; the arena has %s mapped, %s live, %s cached", a->name, asked,
                        (unsigned long)stream, fr, tot, mapped, live, idle);
}

/* novmm: the free blocks that share the new segment's first or last page with
 * b now cross its edges; split them there (descriptors were reserved). */
static void fence_segment(cua_arena *a, const cua_block *b)
{
    uint64_t page = a->seg.gran;
    _cua_heap_split_at(&a->heap, b->off & ~(page - 1));
    _cua_heap_split_at(&a->heap, (b->off + b->size + page - 1) & ~(page - 1));
}

/* grow() with handles kept: make room, then map (`missing` bytes). */
static cua_status grow_kept(cua_arena *a, cua_block *b, uint64_t missing)
{
    cua_status st = _cua_policy_make_room(a, missing);
    if (st == CUA_OK && a->seg.novmm) st = _cua_heap_reserve(&a->heap, 2);
    if (st != CUA_OK) return st;
    st = _cua_seg_map(&a->seg, b->off, b->size);
    if (st == CUA_ERR_OUT_OF_MEMORY && (a->seg.idle_bytes || a->seg.kept.n)) {
        uint64_t released; /* the device is full: give back the cache and try once more */
        _cua_seg_keep_handles(&a->seg, false);
        if (_cua_policy_give_back(a, CUA_GIVE_MAP_FAILED, a->seg.idle_bytes, &released) == CUA_OK)
            st = _cua_seg_map(&a->seg, b->off, b->size);
    }
    /* Also after a failure: a map that failed half way (and pages it could
     * not unmap again) may have left more mapped than before. */
    if (a->seg.mapped_bytes > a->peak_mapped) a->peak_mapped = a->seg.mapped_bytes;
    if (st != CUA_OK) return st;
    if (a->seg.novmm) fence_segment(a, b);
    _cua_policy_grown(a);
    return CUA_OK;
}

/* Map the pages block b lacks. Handles the footprint cap or the limit unmap on
 * the way are mapped again here (unmap + map instead of release + create);
 * whatever is left is released at the end. */
static cua_status grow(cua_arena *a, cua_block *b, uint64_t missing)
{
    _cua_seg_keep_handles(&a->seg, true);
    cua_status st = grow_kept(a, b, missing);
    /* A release that fails here leaves the handle on the zombie list, released
     * by a later trim or the destroy; the growth itself succeeded or not. */
    (void)_cua_seg_keep_handles(&a->seg, false);
    return st;
}

/* ---- alloc ------------------------------------------------------------------------------ */

static cua_status take_spot(cua_arena *a, cua_spot s, uint32_t tag, uint64_t asize, cua_block **out);

/* One attempt: place, cut, map. On failure the heap is as before. */
static cua_status alloc_once(cua_arena *a, uint32_t tag, uint64_t asize, cua_block **out,
                             cua_placerun *run)
{
    cua_spot s = _cua_place(a, tag, asize, run);
    if (!s.b && run && run->ev.n && !run->ran) return CUA_ERR_BUSY; /* (to run them unlocked) */
    if (!s.b) {
        char sz[32];
        return _cua_error(CUA_ERR_OUT_OF_MEMORY,
                          "arena '%s': no free range of %s left in its address space", a->name,
                          _cua_fmt_bytes(sz, sizeof sz, asize));
    }
    return take_spot(a, s, tag, asize, out);
}

/* Cut `asize` bytes at s.at out of free block s.b for `tag` and map what they
 * lack. On failure the heap is as before. */
static cua_status take_spot(cua_arena *a, cua_spot s, uint32_t tag, uint64_t asize, cua_block **out)
{
    cua_block *b = s.b;
    if (s.at > b->off && !(b = _cua_heap_split_block(&a->heap, b, s.at)))
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a block descriptor");
    uint32_t free_tag;
    b = _cua_heap_take(&a->heap, b, asize, tag, &free_tag);
    if (!b) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a block descriptor");
    uint64_t missing = _cua_seg_acquire(&a->seg, b->off, b->size);
    bool grant = _cua_seg_lacks_access(&a->seg, b->off, b->size); /* nearly never */
    cua_status st = missing || grant ? grow(a, b, missing) : CUA_OK;
    if (st == CUA_OK) st = _cua_heap_map_insert(&a->heap, b);
    if (st != CUA_OK) { /* undo: the pages it acquired, then the cut */
        _cua_seg_release(&a->seg, b->off, b->size, a->seq);
        _cua_heap_put(&a->heap, b, free_tag, b->seq, _cua_arena_one_stream(a));
        return st;
    }
    b->tag = tag;
    if (b->off + b->size > a->top_used) a->top_used = b->off + b->size;
    *out = b;
    return CUA_OK;
}

static cua_status handed_out(cua_arena *a, cua_block *b, size_t size, cua_stream stream,
                             void **out, cua_block **made);

cua_status _cua_arena_alloc_locked(cua_arena *a, size_t size, cua_stream stream, bool final,
                                   void **out, cua_block **made, cua_placerun *run)
{
    size_t asize;
    if (size == 0) return _cua_error(CUA_ERR_INVALID_ARG, "cannot allocate 0 bytes");
    if (!_cua_align_up(size, CUA_ALIGNMENT, &asize) || asize > a->seg.size)
        return _cua_error(CUA_ERR_INVALID_ARG,
                          "cannot allocate %zu bytes: more than the arena's address range "
                          "of %zu bytes", size, a->seg.size);
    if (CUA_UNLIKELY(a->offloaded))
        return _cua_error(CUA_ERR_OFFLOADED, "arena '%s' is offloaded: cua_arena_restore() it "
                          "before allocating %zu bytes", a->name, size);
    uint32_t tag;
    cua_status st = _cua_stream_slot(a, stream, &tag);
    if (st != CUA_OK) return st;
    cua_block *b = NULL;
    st = alloc_once(a, tag, asize, &b, run);
    if (st == CUA_ERR_BUSY && run && run->ev.n && !run->ran) return st; /* (arena.h) */
    if (st == CUA_ERR_LIMIT || st == CUA_ERR_OUT_OF_MEMORY) {
        /* Last resort before failing: wait for every stream and pending block,
         * give back all of the cache, and try once more. */
        uint64_t released;
        _cua_policy_give_back_above(a, CUA_GIVE_OUT_OF_MEMORY, 0, &released);
        st = alloc_once(a, tag, asize, &b, NULL);
    }
    if (st == CUA_ERR_OUT_OF_MEMORY && !final) return st; /* the caller asks the others first */
    if (st != CUA_OK) {
        a->oom_count++;
        if (st == CUA_ERR_LIMIT || st == CUA_ERR_OUT_OF_MEMORY) {
            _cua_history_note(a->device, CUA_HISTORY_OOM, 0, size, stream, a->name);
            oom_report(a, st, size, stream);
            _cua_event_queue(a, CUA_ARENA_OUT_OF_MEMORY, st == CUA_ERR_LIMIT ? "limit" : "device",
                             size);
        }
        return st;
    }
    return handed_out(a, b, size, stream, out, made);
}

/* Count block b, just taken for `size` bytes on `stream`, as live. */
static cua_status handed_out(cua_arena *a, cua_block *b, size_t size, cua_stream stream,
                             void **out, cua_block **made)
{
    b->req = size;
    a->live_bytes += size;
    a->live_blocks++;
    a->allocated_bytes += b->size;
    a->alloc_count++;
    if (a->live_bytes > a->peak_live) a->peak_live = a->live_bytes;
    *out = (void *)_cua_seg_addr(&a->seg, b->off);
    _cua_history_note(a->device, CUA_HISTORY_ALLOC, (uintptr_t)*out, size, stream, a->name);
    if (CUA_UNLIKELY(a->nvtx_on)) _cua_nvtx_alloc(_cua_seg_tag(&a->seg, b->off), *out, size);
    if (made) *made = b;
    if (a->cfg.flags & CUA_ARENA_CHECK_ALWAYS) return _cua_check_arena_locked(a);
    return CUA_OK;
}

/* Note [a block at a given address]: a CUDA-graph tree restores a private
 * pool's checkpoint by making the pool's blocks of that moment live again,
 * at the addresses its recorded graphs use. The range must lie in one free
 * block; what threads' caches hold and what other streams finished with is
 * given back first, so that only memory really in use (live, or freed while
 * another stream's work may still read it) is refused (CUA_ERR_BUSY). The
 * free block must be free for this stream or for any (tag 0). */
cua_status _cua_arena_alloc_at_locked(cua_arena *a, void *ptr, size_t size, cua_stream stream,
                                      void **out)
{
    size_t asize;
    uint64_t off = 0;
    if (size == 0) return _cua_error(CUA_ERR_INVALID_ARG, "cannot allocate 0 bytes");
    if (CUA_UNLIKELY(a->offloaded))
        return _cua_error(CUA_ERR_OFFLOADED, "arena '%s' is offloaded: cua_arena_restore() it "
                          "before allocating at %p", a->name, ptr);
    if (a->seg.novmm)
        return _cua_error(CUA_ERR_NOT_SUPPORTED, "arena '%s' is made of whole segments (vmm:0): "
                          "it has no fixed addresses to allocate at", a->name);
    if (!_cua_seg_offset(&a->seg, (uintptr_t)ptr, &off) || off % CUA_ALIGNMENT ||
        !_cua_align_up(size, CUA_ALIGNMENT, &asize) || asize > a->seg.size - off)
        return _cua_error(CUA_ERR_INVALID_ARG, "[%p, +%zu) is not an aligned range of arena "
                          "'%s'", ptr, size, a->name);
    uint32_t tag;
    cua_status st = _cua_stream_slot(a, stream, &tag);
    if (st != CUA_OK) return st;
    _cua_tc_flush_all_locked(a);
    if (a->streams.pending) (void)_cua_stream_poll_pending(a, false, &st);
    (void)_cua_stream_reclaim(a, false, &st);
    cua_block *b = _cua_heap_block_at(&a->heap, off);
    if (!b || b->state != CUA_BLOCK_FREE || off + asize > b->off + b->size)
        return _cua_error(CUA_ERR_BUSY, "[%p, +%zu) of arena '%s' is not free: a live block, "
                          "or one another stream may still use, lies in it", ptr, size, a->name);
    if (b->tag != 0 && b->tag != tag)
        return _cua_error(CUA_ERR_BUSY, "[%p, +%zu) of arena '%s' is free for another stream "
                          "only (its work may still use it)", ptr, size, a->name);
    cua_block *made = NULL;
    st = take_spot(a, (cua_spot){b, off, 0}, tag, asize, &made);
    if (st != CUA_OK) return st;
    return handed_out(a, made, size, stream, out, NULL);
}

/* ---- free ------------------------------------------------------------------------------- */

cua_status _cua_arena_lookup_live(cua_arena *a, const void *ptr, cua_block **out)
{
    uint64_t off = 0;
    *out = NULL;
    if (!_cua_seg_offset(&a->seg, (uintptr_t)ptr, &off))
        return _cua_error(CUA_ERR_INVALID_POINTER, "%p is not in any segment of arena '%s' (it "
                          "was freed back to the driver, or never handed out)", ptr, a->name);
    cua_block *b = _cua_heap_map_find(&a->heap, off);
    bool interior = !b;
    if (interior) b = _cua_heap_block_at(&a->heap, off);
    if (b && b->state == CUA_BLOCK_LIVE &&
        _cua_tcw_state(atomic_load_explicit(&b->tcw, memory_order_relaxed)) == CUA_TCW_CACHED)
        return _cua_error(CUA_ERR_DOUBLE_FREE, "%p lies in a block that was freed already (it "
                          "waits in a thread's cache for reuse) in arena '%s'", ptr, a->name);
    if (CUA_LIKELY(!interior)) {
        *out = b;
        return CUA_OK;
    }
    if (b && b->state == CUA_BLOCK_LIVE) {
        *out = b;
        return _cua_error(CUA_ERR_INVALID_POINTER,
                          "%p is an interior pointer: %llu bytes into the live block at %p of "
                          "%llu bytes in arena '%s'", ptr, (unsigned long long)(off - b->off),
                          (void *)_cua_seg_addr(&a->seg, b->off), (unsigned long long)b->req,
                          a->name);
    }
    *out = NULL;
    if (b && b->state == CUA_BLOCK_PENDING)
        return _cua_error(CUA_ERR_DOUBLE_FREE,
                          "%p was already freed (it waits for other streams) in arena '%s'",
                          ptr, a->name);
    return _cua_error(CUA_ERR_DOUBLE_FREE,
                      "%p is not live: it lies in free memory of arena '%s' (a double free, or "
                      "a pointer cuarena never returned)", ptr, a->name);
}

cua_status _cua_arena_free_locked(cua_arena *a, void *ptr)
{
    uint64_t off;
    cua_block *b = NULL;
    if (CUA_LIKELY(_cua_seg_offset(&a->seg, (uintptr_t)ptr, &off)))
        b = _cua_heap_map_take(&a->heap, off);
    if (CUA_UNLIKELY(!b)) { /* not a live block: say what it is */
        cua_status st = _cua_arena_lookup_live(a, ptr, &b);
        cua_assert(st != CUA_OK);
        return st;
    }
    uint64_t tcw = atomic_load_explicit(&b->tcw, memory_order_relaxed);
    if (CUA_UNLIKELY(tcw & 3)) {
        /* Handed out by a thread's cache: back into that cache (a live block
         * for the heap, so into the map again: room, it was just taken) */
        if (_cua_tcw_state(tcw) == CUA_TCW_OUT && _cua_tc_give_back_locked(a, b, ptr))
            return _cua_heap_map_insert(&a->heap, b);
        if (!_cua_tc_disown_locked(a, b)) {
            cua_status st = _cua_heap_map_insert(&a->heap, b);
            return st != CUA_OK ? st : _cua_error(CUA_ERR_DOUBLE_FREE,
                                                  "%p was freed already (it waits in a "
                                                  "thread's cache for reuse)", ptr);
        }
    }
    if (CUA_UNLIKELY(a->nvtx_on)) _cua_nvtx_free(_cua_seg_tag(&a->seg, b->off), ptr);
    _cua_history_note(a->device, CUA_HISTORY_FREE, (uintptr_t)ptr, b->req,
                      a->streams.slot[b->tag].stream, a->name);
    cua_status st;
    a->live_bytes -= b->req;
    a->live_blocks--;
    a->allocated_bytes -= b->size;
    a->free_count++;
    if (CUA_UNLIKELY(a->offloaded)) { /* it holds no pages: only its copy goes */
        _cua_offload_image_drop(a, b->off);
        free(b->uses);
        _cua_heap_put(&a->heap, b, _cua_stream_free_tag(a, b->tag), ++a->seq,
                      _cua_arena_one_stream(a));
        return CUA_OK;
    }
    if (b->uses && b->uses->n) {
        st = _cua_stream_defer(a, b);
        if (st != CUA_OK)
            _cua_error_wrap(st, "%p was freed, but its other streams could not be waited for: "
                            "it is reused once they can", ptr);
    } else {
        if (CUA_UNLIKELY(b->uses != NULL)) {
            free(b->uses);
            b->uses = NULL;
        }
        /* (best effort, a debugging aid; not on a stream that went away) */
        if (CUA_UNLIKELY(a->cfg.flags & CUA_ARENA_POISON) && !a->streams.slot[b->tag].retired)
            (void)_cua_bk_fill(a->bk, &a->cs, (uintptr_t)ptr, (size_t)b->size, CUA_POISON_BYTE,
                               a->streams.slot[b->tag].stream);
        _cua_stream_put_free(a, b, b->tag);
        st = _cua_policy_after_free(a);
        if (st != CUA_OK)
            _cua_error_wrap(st, "%p was freed, but giving its pages back failed", ptr);
    }
    if (st == CUA_OK && (a->cfg.flags & CUA_ARENA_CHECK_ALWAYS)) st = _cua_check_arena_locked(a);
    return st;
}

cua_status _cua_arena_retire_stream_locked(cua_arena *a, cua_stream stream)
{
    if (!_cua_stream_known(a, stream)) return CUA_OK; /* this arena never saw it */
    /* Threads' caches key blocks by stream handle, and the driver gives a new
     * stream the handle of a destroyed one: their blocks come back to the
     * arena (freed on their streams, or live again under the lock). */
    _cua_tc_flush_all_locked(a);
    _cua_tc_disown_all_locked(a);
    return _cua_stream_retire_locked(a, stream);
}

cua_status _cua_arena_record_stream_locked(cua_arena *a, void *ptr, cua_stream stream)
{
    if (a->offloaded)
        return _cua_error(CUA_ERR_OFFLOADED, "arena '%s' is offloaded: %p has no memory to "
                          "order uses of until cua_arena_restore()", a->name, ptr);
    cua_block *b = NULL;
    cua_status st = _cua_arena_lookup_live(a, ptr, &b);
    if (st != CUA_OK) return st;
    (void)_cua_tc_disown_locked(a, b); /* its free must now wait for the stream: the arena's */
    return _cua_stream_add_use(a, b, stream);
}

cua_status _cua_arena_ptr_info_locked(cua_arena *a, const void *ptr, void **base, size_t *size)
{
    cua_block *b = NULL;
    cua_status st = _cua_arena_lookup_live(a, ptr, &b);
    if (b) (void)_cua_tc_disown_locked(a, b); /* the size asked last, even if a cache handed it out */
    if (st == CUA_ERR_INVALID_POINTER && b) st = CUA_OK; /* interior: answer with the block */
    if (st != CUA_OK) return st;
    if (base) *base = (void *)_cua_seg_addr(&a->seg, b->off);
    if (size) *size = b->req;
    return CUA_OK;
}

/* ---- settings --------------------------------------------------------------------------- */

cua_status _cua_arena_set_limit_locked(cua_arena *a, size_t limit)
{
    if (limit && limit < a->cfg.floor)
        return _cua_error(CUA_ERR_INVALID_ARG, "arena '%s': limit %zu is below its floor %zu",
                          a->name, limit, a->cfg.floor);
    a->cfg.limit = limit;
    if (!limit || a->seg.mapped_bytes <= limit) return CUA_OK;
    uint64_t released; /* (what threads' caches hold can go first: the rule flushes them) */
    return _cua_policy_give_back(a, CUA_GIVE_LIMIT_LOWERED, a->seg.mapped_bytes - limit,
                                 &released);
}

cua_status _cua_arena_trim_if_idle_locked(cua_arena *a, uint64_t now_ns, uint64_t *released)
{
    *released = 0;
    /* The old places of moved pages go at every look, idle or not: the
     * janitor's thread and the user's call to cua_trim_idle are not an
     * allocation's time (Note [moves that unmap later]). */
    if (a->seg.aliases.n) (void)_cua_seg_purge(&a->seg);
    cua_tc_sums tcs;
    _cua_tc_sums_locked(a, &tcs);
    uint64_t ops = a->alloc_count + a->free_count + tcs.allocs + tcs.frees;
    if (ops != a->idle_seen_ops || !a->idle_since_ns) { /* busy since the last look */
        a->idle_seen_ops = ops;
        a->idle_since_ns = now_ns;
        return CUA_OK;
    }
    if (!a->cfg.idle_ms || now_ns - a->idle_since_ns < (uint64_t)a->cfg.idle_ms * 1000000u)
        return CUA_OK;
    return _cua_policy_give_back_above(a, CUA_GIVE_IDLE, _cua_policy_idle_keep(a), released);
}

cua_status _cua_arena_trim_locked(cua_arena *a, uint64_t keep, uint64_t *released)
{
    cua_status st = _cua_policy_give_back_above(a, CUA_GIVE_TRIM, keep, released);
    _cua_offload_drop_spare(a); /* host memory an offload would reuse: given back too */
    if (st == CUA_OK && (a->cfg.flags & CUA_ARENA_CHECK_ALWAYS)) st = _cua_check_arena_locked(a);
    return st;
}

cua_status _cua_arena_trim_for_pressure_locked(cua_arena *a, uint64_t want, uint64_t *released)
{
    return _cua_policy_give_back(a, CUA_GIVE_PRESSURE, want, released);
}

cua_status _cua_arena_set_floor_locked(cua_arena *a, size_t floor)
{
    if (a->cfg.limit && floor > a->cfg.limit)
        return _cua_error(CUA_ERR_INVALID_ARG, "arena '%s': floor %zu is above its limit %zu",
                          a->name, floor, a->cfg.limit);
    a->cfg.floor = floor;
    return CUA_OK;
}

cua_status _cua_arena_set_release_locked(cua_arena *a, size_t bytes)
{
    a->cfg.release_threshold = bytes;
    return _cua_policy_after_free(a);
}

cua_status _cua_arena_grant_peer_locked(cua_arena *a, int device)
{
    cua_status st = _cua_seg_grant_peer(&a->seg, device);
    if (st != CUA_OK)
        return _cua_error_wrap(st, "arena '%s': cannot grant device %d access", a->name, device);
    a->cfg.peers |= (uint64_t)1 << device;
    return CUA_OK;
}

void _cua_arena_reset_peaks_locked(cua_arena *a)
{
    a->peak_live = a->live_bytes;
    a->peak_mapped = a->seg.mapped_bytes;
}

/* ---- destroy ------------------------------------------------------------------------------ */

cua_status _cua_arena_destroy_locked(cua_arena *a, unsigned flags)
{
    _cua_tc_flush_all_locked(a); /* blocks the threads' caches hold are not live */
    if (a->live_blocks && !(flags & CUA_DESTROY_FORCE)) {
        char live[32];
        return _cua_error(CUA_ERR_BUSY,
                          "arena '%s' still has %llu live block(s) (%s); free them or pass "
                          "CUA_DESTROY_FORCE", a->name, (unsigned long long)a->live_blocks,
                          _cua_fmt_bytes(live, sizeof live, a->live_bytes));
    }
    _cua_tc_kill_all_locked(a);
    /* Work still queued may use freed memory: wait for it before unmapping. */
    cua_status st = CUA_OK, first = CUA_OK;
    _cua_stream_poll_pending(a, true, &st);
    if (st != CUA_OK) first = st;
    _cua_stream_reclaim(a, true, &st);
    if (st != CUA_OK && first == CUA_OK) first = st;
    _cua_stream_fini(a);
    for (cua_block *b = a->heap.first; b; b = b->next) {
        free(b->uses);
        b->uses = NULL;
    }
    st = _cua_seg_fini(&a->seg);
    if (st != CUA_OK && first == CUA_OK) first = st;
    _cua_heap_fini(&a->heap);
    _cua_offload_image_free(a);
    _cua_offload_drop_spare(a);
    a->offloaded = false;
    atomic_fetch_sub(&a->bk->users, 1);
    if (a->owns_bk) {
        st = _cua_backend_destroy(a->bk);
        if (st != CUA_OK && first == CUA_OK) first = st;
    }
    a->bk = NULL;
    atomic_fetch_add_explicit(&a->gen, 1, memory_order_relaxed);
    atomic_store_explicit(&a->alive, 0, memory_order_release);
    a->live_blocks = a->live_bytes = a->allocated_bytes = 0;
    return first;
}
