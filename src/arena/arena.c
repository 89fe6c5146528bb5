/*
 * arena.c - the arena's policies: placement, growth, the footprint cap,
 * release threshold, limits, trim, free and destroy. See arena.h.
 *
 * Placement is best fit over the whole address range, blind to which pages are
 * mapped: the layout is then the one an ideal best fit would make, and mapping
 * follows it page by page. Growth maps only the pages a block lacks.
 *
 * The footprint cap: when growth would take mapped bytes past their earlier
 * peak (plus a slack), idle chunks are unmapped first, oldest first and only as
 * many as needed. The cache then never grows the footprint; it is swapped
 * rather than added to. A limit does the same as a hard bound, waiting for
 * streams when it must, and fails only when live data itself would pass it.
 */
#include "arena/arena.h"
#include "arena/nvtx.h"
#include "arena/tcache.h"
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
                           CUA_ARENA_POISON | CUA_ARENA_SCRUB | CUA_ARENA_NVTX;
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

/* novmm: a trim freed the segment at [off, off + len); its edges are gone, so
 * the free blocks on either side of each may merge now. */
static void segment_freed(void *ctx, uint64_t off, uint64_t len)
{
    cua_arena *a = ctx;
    _cua_heap_merge_at(&a->heap, off, _cua_arena_one_stream(a));
    _cua_heap_merge_at(&a->heap, off + len, _cua_arena_one_stream(a));
}

static cua_status arena_body_init(cua_arena *a, cua_arena_config *cfg)
{
    if (cfg->backend_kind < CUA_BACKEND_HOST || cfg->backend_kind > CUA_BACKEND_AUTO)
        return _cua_error(CUA_ERR_INVALID_ARG, "backend_kind %d is not a cua_backend_kind",
                          cfg->backend_kind);
    cua_status vs = check_values(cfg);
    if (vs != CUA_OK) return vs;
    if (!cfg->backend && cfg->backend_kind != CUA_BACKEND_HOST) {
        cua_status bs = cua_device_backend(cfg->device, &cfg->backend);
        if (bs != CUA_OK && cfg->backend_kind == CUA_BACKEND_CUDA) return bs;
        /* auto without the device: a host backend below */
    }
    if (cfg->backend) {
        a->bk = cfg->backend;
    } else { /* a simulated device of the arena's ordinal, without peers */
        cua_host_config hc;
        cua_host_config_init(&hc);
        if (cfg->device >= 0 && cfg->device < CUA_MAX_DEVICES) hc.device = cfg->device;
        cua_status st = _cua_backend_host_create(&hc, &a->bk);
        if (st != CUA_OK) return st;
        a->owns_bk = true;
    }
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
        st = _cua_seg_init(&a->seg, a->bk, &a->cs, va, align, cfg->chunk_max, cfg->chunk_large,
                           cfg->flags & CUA_ARENA_NO_VMM, a);
        a->seg.dev = _cua_registry_devstat(cfg->device);
        if (st == CUA_OK) _cua_nvtx_open(a, cfg->flags); /* before any segment comes */
    }
    /* Peers named at creation: refused before anything is mapped. */
    for (int d = 0; st == CUA_OK && d < 64; d++) {
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
        a->seg.on_unmap = segment_freed;
        a->seg.on_unmap_ctx = a;
    }
    if (st == CUA_OK && !a->seg.novmm) {
        st = _cua_addrmap_insert(a->seg.base, a->seg.size, a);
        if (st != CUA_OK) {
            _cua_heap_fini(&a->heap);
            _cua_seg_fini(&a->seg);
        }
    }
    if (st != CUA_OK && a->owns_bk) _cua_backend_destroy(a->bk);
    return st;
}

cua_status _cua_arena_create(const cua_arena_config *cfg_in, cua_arena **out)
{
    cua_arena_config cfg;
    if (cfg_in)
        cfg = *cfg_in;
    else
        cua_arena_config_init(&cfg);
    /* Memory of a destroyed arena, or new (registry.c): cleared, unpublished,
     * locked while it is built. */
    cua_arena *a = NULL;
    cua_status st = _cua_registry_body(&a);
    if (st != CUA_OK) return st;
    const char *name = cfg.name ? cfg.name : "arena";
    size_t len = _cua_utf8_fit(name, strlen(name), sizeof a->name - 1); /* (63 bytes at most) */
    memcpy(a->name, name, len);
    a->name[len] = '\0';
    cfg.name = a->name;
    a->device = cfg.device;
    st = arena_body_init(a, &cfg);
    if (st != CUA_OK) {
        _cua_unlock(&a->lock);
        _cua_registry_recycle(a);
        return st;
    }
    a->cfg = cfg;
    atomic_fetch_add(&a->bk->users, 1);
    _cua_tc_arena_init(a);
    atomic_store_explicit(&a->alive, 1, memory_order_release); /* whole: alive */
    _cua_unlock(&a->lock);
    *out = a;
    return CUA_OK;
}

/* ---- trimming ------------------------------------------------------------------------ */

/* Unmap up to `want` bytes of idle chunks that no stream can still be using.
 * blocking: wait for streams and pending blocks first, so every idle chunk
 * qualifies. */
static cua_status trim_idle(cua_arena *a, uint64_t want, bool blocking, const char *reason,
                            uint64_t *released)
{
    *released = 0;
    cua_status st = CUA_OK;
    uint64_t floor = a->cfg.floor, mapped = a->seg.mapped_bytes;
    if (floor && strcmp(reason, "out_of_memory") != 0) /* the floor stays, but for an allocation */
        want = _cua_min(want, mapped > floor ? mapped - floor : 0);
    if (want == 0 || a->seg.idle_bytes == 0) return CUA_OK;
    _cua_stream_reclaim(a, blocking, &st);
    if (st != CUA_OK) return _cua_error_wrap(st, "arena '%s': cannot learn what streams completed",
                                             a->name);
    st = _cua_seg_trim(&a->seg, want, _cua_stream_safe_seq(a), released);
    if (*released) {
        a->trim_count++;
        a->trimmed_bytes += *released;
        _cua_arena_event(a, CUA_ARENA_TRIMMED, reason, *released);
    }
    return st;
}

cua_status _cua_arena_trim_locked(cua_arena *a, uint64_t keep, uint64_t *released)
{
    cua_status st = CUA_OK;
    *released = 0;
    if (a->streams.pending) _cua_stream_poll_pending(a, false, &st);
    /* An explicit trim gives back all it can: handles whose release failed
     * before, in this arena and left by destroyed ones, too. */
    (void)_cua_seg_retry_zombies(&a->seg);
    (void)_cua_bk_retry_graves(a->bk);
    _cua_tc_flush_all_locked(a);
    if (a->seg.idle_bytes <= keep) return CUA_OK;
    return trim_idle(a, a->seg.idle_bytes - keep, true, "trim", released);
}

/* A device shortage (this arena's allocation or another's): wait for the
 * blocks freed here that other streams still use (record_stream; trim_idle
 * waits only for the streams' plain frees) and empty the threads' caches, so
 * that all that is idle can be given back. */
static void settle_for_shortage(cua_arena *a)
{
    cua_status ws;
    _cua_stream_poll_pending(a, true, &ws);
    _cua_tc_flush_all_locked(a);
}

/* Pages that streams may still use stay until a later call finds them safe. */
static cua_status apply_release_threshold(cua_arena *a)
{
    uint64_t thr = a->cfg.release_threshold, released;
    if (a->seg.idle_bytes <= thr) return CUA_OK;
    return trim_idle(a, a->seg.idle_bytes - thr, false, "release_threshold", &released);
}

/* ---- growth -------------------------------------------------------------------------- */

/* How far mapped bytes may pass the demand peak before cached pages are
 * swapped out: by default 1/CUA_SLACK_DIV of the peak, at least one page and
 * at most CUA_SLACK_MAX, so that warm runs that touch a few other pages than
 * the last one do not churn. The bound: at a 70 GB peak, 1/128 is 550 MiB of
 * memory that bought no fewer swaps than 64 MiB (the generated scenarios at
 * scale 140: 0.4-0.7 % of live more mapped for about the same driver calls;
 * docs/benchmarks.md). */
#ifndef CUA_SLACK_DIV
#define CUA_SLACK_DIV 128
#endif
#ifndef CUA_SLACK_MAX
#define CUA_SLACK_MAX ((uint64_t)64 << 20)
#endif
static uint64_t slack(const cua_arena *a)
{
    if (a->cfg.growth_slack) return a->cfg.growth_slack;
    uint64_t s = a->footprint_hw / CUA_SLACK_DIV; /* (uint64_t: size_t may be narrower) */
    if (s > CUA_SLACK_MAX) s = CUA_SLACK_MAX;
    return s > a->seg.gran ? s : a->seg.gran;
}

static bool over_limit(const cua_arena *a, uint64_t need)
{
    return a->cfg.limit && a->seg.mapped_bytes + need > a->cfg.limit;
}

/* Make room for `need` more mapped bytes under the limit and the footprint cap.
 * The cap: passing the demand peak by more than the slack first gives back
 * cached pages, down to the peak (so the next growths have the slack again). */
static cua_status make_room(cua_arena *a, uint64_t need)
{
    uint64_t over = 0, mapped = a->seg.mapped_bytes, released;
    if (a->cfg.limit && mapped + need > a->cfg.limit) over = mapped + need - a->cfg.limit;
    /* (past the peak by more than the slack; the sum peak + slack would wrap
     * for a slack of SIZE_MAX, which means "any amount") */
    if (!(a->cfg.flags & CUA_ARENA_NO_FOOTPRINT_CAP) && mapped + need > a->footprint_hw &&
        mapped + need - a->footprint_hw > slack(a))
        over = _cua_max(over, mapped + need - a->footprint_hw);
    if (over == 0) return CUA_OK;
    cua_status st = trim_idle(a, over, false, over_limit(a, need) ? "limit" : "footprint_cap",
                              &released);
    if (st == CUA_OK && over_limit(a, need) && a->seg.idle_bytes)
        st = trim_idle(a, a->seg.mapped_bytes + need - a->cfg.limit, true, "limit", &released);
    if (st != CUA_OK) return st;
    return over_limit(a, need) ? CUA_ERR_LIMIT : CUA_OK;
}

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
    cua_status st = make_room(a, missing);
    if (st == CUA_OK && a->seg.novmm) st = _cua_heap_reserve(&a->heap, 2);
    if (st != CUA_OK) return st;
    st = _cua_seg_map(&a->seg, b->off, b->size);
    if (st == CUA_ERR_OUT_OF_MEMORY && (a->seg.idle_bytes || a->seg.kept.n)) {
        uint64_t released; /* the device is full: give back the cache and try once more */
        _cua_seg_keep_handles(&a->seg, false);
        if (trim_idle(a, a->seg.idle_bytes, true, "out_of_memory", &released) == CUA_OK)
            st = _cua_seg_map(&a->seg, b->off, b->size);
    }
    /* Also after a failure: a map that failed half way (and pages it could
     * not unmap again) may have left more mapped than before. */
    if (a->seg.mapped_bytes > a->peak_mapped) a->peak_mapped = a->seg.mapped_bytes;
    if (st != CUA_OK) return st;
    if (a->seg.novmm) fence_segment(a, b);
    /* The demand peak: what had to be mapped with no cache left to give back. */
    if (a->seg.idle_bytes == 0 && a->seg.mapped_bytes > a->footprint_hw)
        a->footprint_hw = a->seg.mapped_bytes;
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

/* Best fit; before growing into new pages, learn whether other streams have
 * finished with their free blocks, which may then fit without growth. */
static cua_block *place(cua_arena *a, uint32_t tag, uint64_t asize)
{
    cua_block *b = _cua_heap_find(&a->heap, tag, asize);
    if (a->streams.n <= 2 && !a->streams.pending) return b; /* one stream: nothing to learn */
    if (b && _cua_seg_missing(&a->seg, b->off, asize) == 0) return b;
    cua_status st;
    uint64_t n = _cua_stream_reclaim(a, false, &st);
    if (a->streams.pending) n += _cua_stream_poll_pending(a, false, &st);
    return n ? _cua_heap_find(&a->heap, tag, asize) : b;
}

/* One attempt: place, cut, map. On failure the heap is as before. */
static cua_status alloc_once(cua_arena *a, uint32_t tag, uint64_t asize, cua_block **out)
{
    cua_block *b = place(a, tag, asize);
    if (!b) {
        char sz[32];
        return _cua_error(CUA_ERR_OUT_OF_MEMORY,
                          "arena '%s': no free range of %s left in its address space", a->name,
                          _cua_fmt_bytes(sz, sizeof sz, asize));
    }
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

cua_status _cua_arena_alloc_locked(cua_arena *a, size_t size, cua_stream stream, bool final,
                                   void **out)
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
    st = alloc_once(a, tag, asize, &b);
    if (st == CUA_ERR_LIMIT || st == CUA_ERR_OUT_OF_MEMORY) {
        /* Last resort before failing: wait for every stream and pending block,
         * give back all of the cache, and try once more. */
        uint64_t released;
        settle_for_shortage(a);
        trim_idle(a, a->seg.idle_bytes, true, "out_of_memory", &released);
        st = alloc_once(a, tag, asize, &b);
    }
    if (st == CUA_ERR_OUT_OF_MEMORY && !final) return st; /* the caller asks the others first */
    if (st != CUA_OK) {
        a->oom_count++;
        if (st == CUA_ERR_LIMIT || st == CUA_ERR_OUT_OF_MEMORY) {
            _cua_history_note(a->device, CUA_HISTORY_OOM, 0, size, stream, a->name);
            oom_report(a, st, size, stream);
            _cua_arena_event(a, CUA_ARENA_OUT_OF_MEMORY, st == CUA_ERR_LIMIT ? "limit" : "device",
                             size);
        }
        return st;
    }
    b->req = size;
    a->live_bytes += size;
    a->live_blocks++;
    a->allocated_bytes += b->size;
    a->alloc_count++;
    if (a->live_bytes > a->peak_live) a->peak_live = a->live_bytes;
    *out = (void *)_cua_seg_addr(&a->seg, b->off);
    _cua_history_note(a->device, CUA_HISTORY_ALLOC, (uintptr_t)*out, size, stream, a->name);
    if (CUA_UNLIKELY(a->nvtx_on)) _cua_nvtx_alloc(_cua_seg_nvtx_heap(&a->seg, b->off), *out, size);
    if (a->cfg.flags & CUA_ARENA_CHECK_ALWAYS) return _cua_arena_check_locked(a);
    return CUA_OK;
}

/* ---- free ------------------------------------------------------------------------------- */

void _cua_arena_put_free(cua_arena *a, cua_block *b, uint32_t tag)
{
    uint64_t seq = ++a->seq;
    _cua_seg_release(&a->seg, b->off, b->size, seq);
    tag = _cua_stream_free_tag(a, tag);
    if (tag) _cua_stream_freed(a, tag, seq);
    _cua_heap_put(&a->heap, b, tag, seq, _cua_arena_one_stream(a));
}

void _cua_arena_free_cached_locked(cua_arena *a, cua_block *b)
{
    _cua_heap_map_remove(&a->heap, b->off);
    a->live_bytes -= b->req;
    a->live_blocks--;
    a->allocated_bytes -= b->size;
    _cua_arena_put_free(a, b, b->tag);
}

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
    if (CUA_UNLIKELY(atomic_load_explicit(&b->tcw, memory_order_relaxed) & 3) &&
        !_cua_tc_disown_locked(a, b)) {
        cua_status st = _cua_heap_map_insert(&a->heap, b); /* (room: it was just taken) */
        return st != CUA_OK ? st : _cua_error(CUA_ERR_DOUBLE_FREE,
                                              "%p was freed already (it waits in a thread's "
                                              "cache for reuse)", ptr);
    }
    if (CUA_UNLIKELY(a->nvtx_on)) _cua_nvtx_free(_cua_seg_nvtx_heap(&a->seg, b->off), ptr);
    _cua_history_note(a->device, CUA_HISTORY_FREE, (uintptr_t)ptr, b->req,
                      a->streams.slot[b->tag].stream, a->name);
    cua_status st;
    a->live_bytes -= b->req;
    a->live_blocks--;
    a->allocated_bytes -= b->size;
    a->free_count++;
    if (CUA_UNLIKELY(a->offloaded)) { /* it holds no pages: only its copy goes */
        _cua_image_drop(a, b->off);
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
        _cua_arena_put_free(a, b, b->tag);
        st = apply_release_threshold(a);
        if (st != CUA_OK)
            _cua_error_wrap(st, "%p was freed, but giving its pages back failed", ptr);
    }
    if (st == CUA_OK && (a->cfg.flags & CUA_ARENA_CHECK_ALWAYS)) st = _cua_arena_check_locked(a);
    return st;
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
    _cua_tc_flush_all_locked(a); /* what threads' caches hold can go first */
    uint64_t released;
    return trim_idle(a, a->seg.mapped_bytes - limit, true, "limit", &released);
}

cua_status _cua_arena_trim_if_idle_locked(cua_arena *a, uint64_t now_ns, uint64_t *released)
{
    *released = 0;
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
    uint64_t keep = a->cfg.release_threshold == CUA_KEEP_ALL ? 0 : a->cfg.release_threshold;
    cua_status st = CUA_OK;
    if (a->streams.pending) _cua_stream_poll_pending(a, false, &st);
    _cua_tc_flush_all_locked(a);
    if (a->seg.idle_bytes <= keep) return CUA_OK;
    return trim_idle(a, a->seg.idle_bytes - keep, true, "idle", released);
}

cua_status _cua_arena_trim_for_pressure_locked(cua_arena *a, uint64_t want, uint64_t *released)
{
    settle_for_shortage(a); /* another arena needs the device: as for our own */
    return trim_idle(a, want, true, "pressure", released);
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
    return apply_release_threshold(a);
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
    _cua_image_free(a);
    _cua_image_drop_spare(a);
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
