/*
 * segment.c - the expandable segment: reservation, page table, chunks of
 * physical memory, the idle list and trim. See segment.h.
 */
#include "core/segment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- chunk descriptors and the idle list ---------------------------------- */

/* Descriptors come from slabs, so that the chunks of neighbouring pages sit
 * near each other in host memory: the walk over a large block's chunks then
 * reads a few cache lines, not one scattered allocation per page (in a
 * process whose heap the CUDA driver has fragmented, that was a third of
 * the time of llama_train's replay). */
#define CUA_CHUNK_SLAB 256

static bool chunk_refill(cua_segment *seg)
{
    if (seg->nslabs == seg->cap_slabs) {
        size_t ncap = seg->cap_slabs ? 2 * seg->cap_slabs : 8;
        cua_chunk **ns = realloc(seg->slabs, ncap * sizeof *ns);
        if (!ns) return false;
        seg->slabs = ns;
        seg->cap_slabs = ncap;
    }
    cua_chunk *slab = malloc(CUA_CHUNK_SLAB * sizeof *slab);
    if (!slab) return false;
    seg->slabs[seg->nslabs++] = slab;
    for (size_t i = CUA_CHUNK_SLAB; i-- > 0;) { /* the first one on top */
        slab[i].idle_next = seg->spare;
        seg->spare = &slab[i];
    }
    return true;
}

static cua_chunk *chunk_new(cua_segment *seg)
{
    if (!seg->spare && !chunk_refill(seg)) return NULL;
    cua_chunk *c = seg->spare;
    seg->spare = c->idle_next;
    memset(c, 0, sizeof *c);
    return c;
}

static void chunk_free(cua_segment *seg, cua_chunk *c)
{
    if (c->noaccess) {
        c->noaccess = false;
        seg->noaccess_chunks--;
    }
    c->idle_next = seg->spare;
    seg->spare = c;
}

static void idle_push(cua_segment *seg, cua_chunk *c, uint64_t seq)
{
    cua_chunk *tail = seg->idle.idle_prev;
    c->idle_seq = seq;
    c->idle_prev = tail;
    c->idle_next = &seg->idle;
    tail->idle_next = c;
    seg->idle.idle_prev = c;
    seg->idle_bytes += (uint64_t)c->npages << seg->gshift;
}

static void idle_remove(cua_segment *seg, cua_chunk *c)
{
    c->idle_prev->idle_next = c->idle_next;
    c->idle_next->idle_prev = c->idle_prev;
    c->idle_prev = c->idle_next = NULL;
    seg->idle_bytes -= (uint64_t)c->npages << seg->gshift;
}

/* Mapped bytes change by chunk c: the segment's count, and the observer. */
static void mapped_add(cua_segment *seg, const cua_chunk *c, int64_t delta)
{
    seg->mapped_bytes += (uint64_t)delta;
    if (delta > 0)
        seg->mapped_total += (uint64_t)delta;
    else
        seg->unmapped_total += (uint64_t)-delta;
    if (!seg->obs.mapped) return;
    uintptr_t addr = seg->novmm ? c->addr : seg->base + ((uintptr_t)c->first << seg->gshift);
    seg->obs.mapped(seg->obs.ctx, addr, delta);
}

/* Tell the observer of a whole segment's change (novmm). */
static cua_status seg_changed(cua_segment *seg, cua_seg_change what, cua_chunk *c, size_t len)
{
    if (!seg->obs.segment) return CUA_OK;
    return seg->obs.segment(seg->obs.ctx, what, c->addr, len, &c->tag);
}

static void set_pages(cua_segment *seg, uint32_t first, uint32_t n, cua_chunk *c)
{
    for (uint32_t p = first; p < first + n; p++) {
        seg->pages[p] = c;
        seg->ends[p] = first + n;
    }
    _cua_seg_bits(seg->mapbits, first, first + n, c != NULL);
}

/* ---- init / fini ------------------------------------------------------------ */

static void free_page_table(cua_segment *seg)
{
    free(seg->pages);
    free(seg->ends);
    free(seg->mapbits);
    free(seg->aliasbits);
    seg->pages = NULL;
    seg->ends = NULL;
    seg->mapbits = NULL;
    seg->aliasbits = NULL;
}

cua_status _cua_seg_init(cua_segment *seg, cua_backend *bk, cua_callstats *cs, size_t size,
                         size_t align, size_t chunk_max, size_t chunk_large, bool novmm,
                         const cua_seg_observer *obs)
{
    memset(seg, 0, sizeof *seg);
    seg->novmm = novmm;
    if (obs) seg->obs = *obs;
    seg->bk = bk;
    seg->cs = cs;
    seg->access[0] = bk->device;
    seg->naccess = 1;
    seg->gran = bk->granularity;
    seg->gshift = _cua_log2(seg->gran);
    seg->size = size;
    if ((size >> seg->gshift) > UINT32_MAX)
        return _cua_error(CUA_ERR_INVALID_ARG, "address range of %zu bytes has too many pages",
                          size);
    seg->npages = (uint32_t)(size >> seg->gshift);
    seg->chunk_max_pages = chunk_max ? (uint32_t)(chunk_max >> seg->gshift) : 1;
    if (chunk_large != CUA_CHUNK_LARGE_NONE) {
        size_t large = chunk_large ? chunk_large : _cua_max(CUA_CHUNK_LARGE_DEFAULT, seg->gran);
        seg->chunk_large_pages = (uint32_t)_cua_min(large >> seg->gshift, UINT32_MAX);
    }
    seg->idle.idle_next = seg->idle.idle_prev = &seg->idle;
    /* The range first (novmm: offsets only, segments come with their own
     * addresses): a range the backend refuses (va_size SIZE_MAX) then costs
     * no page table of billions of entries, which calloc zeroes when malloc
     * perturbs (MALLOC_PERTURB_: 4 minutes). */
    cua_status st = novmm ? CUA_OK : _cua_bk_reserve(bk, cs, size, align, &seg->base);
    if (st != CUA_OK) return _cua_error_wrap(st, "cannot reserve the arena's address range");
    /* calloc of a large table is lazily zeroed by the OS: untouched parts cost nothing. */
    seg->pages = calloc(seg->npages, sizeof *seg->pages);
    seg->ends = calloc(seg->npages, sizeof *seg->ends);
    seg->mapbits = calloc(((size_t)seg->npages + 63) / 64, sizeof *seg->mapbits);
    seg->aliasbits = calloc(((size_t)seg->npages + 63) / 64, sizeof *seg->aliasbits);
    if (!seg->pages || !seg->ends || !seg->mapbits || !seg->aliasbits) {
        free_page_table(seg);
        if (!novmm && _cua_bk_unreserve(bk, cs, seg->base, size) != CUA_OK) /* kept for a retry */
            _cua_bk_bury(bk, (cua_grave){.kind = CUA_CALL_UNRESERVE, .addr = seg->base, .size = size},
                         CUA_ERR_BACKEND);
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a page table of %u pages",
                          seg->npages);
    }
    return CUA_OK;
}

/* ---- novmm: whole segments, and the chunks sorted by address ---------------------- */

static size_t byaddr_lower_bound(const cua_segment *seg, uintptr_t addr)
{
    size_t lo = 0, hi = seg->nbyaddr;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg->byaddr[mid]->addr < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool _cua_seg_offset_novmm(const cua_segment *seg, uintptr_t addr, uint64_t *off)
{
    size_t i = byaddr_lower_bound(seg, addr + 1); /* the first chunk above addr */
    if (i == 0) return false;
    const cua_chunk *c = seg->byaddr[i - 1];
    if (addr - c->addr >= ((uint64_t)c->npages << seg->gshift)) return false;
    *off = ((uint64_t)c->first << seg->gshift) + (addr - c->addr);
    return true;
}

bool _cua_seg_fence(const void *segp, uint64_t off)
{
    const cua_segment *seg = segp;
    if (off & (seg->gran - 1)) return false;
    uint32_t p = _cua_seg_page(seg, off);
    return p > 0 && p < seg->npages && seg->pages[p - 1] != seg->pages[p];
}

/* Allocate one segment of n pages for page `first` and register it. */
static cua_status alloc_segment(cua_segment *seg, cua_chunk *c, size_t len)
{
    if (seg->nbyaddr == seg->cap_byaddr) {
        size_t ncap = seg->cap_byaddr ? 2 * seg->cap_byaddr : 16;
        cua_chunk **nb = realloc(seg->byaddr, ncap * sizeof *nb);
        if (!nb) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory to index a segment");
        seg->byaddr = nb;
        seg->cap_byaddr = ncap;
    }
    cua_status st = _cua_bk_alloc(seg->bk, seg->cs, len, &c->addr);
    if (st != CUA_OK) return st;
    if (c->addr % CUA_ALIGNMENT == 0)
        st = seg_changed(seg, CUA_SEG_CAME, c, len);
    else
        st = _cua_error(CUA_ERR_BACKEND, "the backend's alloc returned %#lx, not aligned to %u",
                        (unsigned long)c->addr, CUA_ALIGNMENT);
    if (st != CUA_OK) {
        char keep[CUA_MSG_CAP];
        snprintf(keep, sizeof keep, "%s", cua_last_error());
        _cua_bk_free(seg->bk, seg->cs, c->addr, len); /* best effort */
        return _cua_error(st, "%s", keep);
    }
    size_t i = byaddr_lower_bound(seg, c->addr);
    memmove(&seg->byaddr[i + 1], &seg->byaddr[i], (seg->nbyaddr - i) * sizeof *seg->byaddr);
    seg->byaddr[i] = c;
    seg->nbyaddr++;
    return CUA_OK;
}

/* Free a chunk's segment; on failure it stays allocated (and counted). */
static cua_status free_segment(cua_segment *seg, cua_chunk *c)
{
    size_t len = (size_t)c->npages << seg->gshift;
    (void)seg_changed(seg, CUA_SEG_LEAVING, c, len);
    cua_status st = _cua_bk_free(seg->bk, seg->cs, c->addr, len);
    if (st != CUA_OK) {
        (void)seg_changed(seg, CUA_SEG_STAYED, c, len);
        return st;
    }
    (void)seg_changed(seg, CUA_SEG_GONE, c, len);
    size_t i = byaddr_lower_bound(seg, c->addr);
    memmove(&seg->byaddr[i], &seg->byaddr[i + 1], (seg->nbyaddr - i - 1) * sizeof *seg->byaddr);
    seg->nbyaddr--;
    return CUA_OK;
}

static cua_status unmap_chunk(cua_segment *seg, cua_chunk *c)
{
    if (seg->novmm) {
        cua_status st = free_segment(seg, c);
        if (st != CUA_OK) return st;
        set_pages(seg, c->first, c->npages, NULL);
        mapped_add(seg, c, -(int64_t)((uint64_t)c->npages << seg->gshift));
        seg->nchunks--;
        return CUA_OK;
    }
    uintptr_t addr = seg->base + ((uintptr_t)c->first << seg->gshift);
    size_t len = (size_t)c->npages << seg->gshift;
    cua_status st = _cua_bk_unmap(seg->bk, seg->cs, addr, len, 1);
    if (st != CUA_OK) return st;
    set_pages(seg, c->first, c->npages, NULL);
    mapped_add(seg, c, -(int64_t)len);
    seg->nchunks--;
    return _cua_seg_release_handle(seg, c->handle, len);
}

cua_status _cua_seg_fini(cua_segment *seg)
{
    cua_status first = CUA_OK;
    size_t buried_maps = 0;
    if (!seg->pages) return CUA_OK;
    if (seg->aliases.n) { /* old places first; the backend retries what stays */
        cua_status st = _cua_seg_purge(seg);
        if (st != CUA_OK) st = _cua_seg_purge(seg); /* a transient failure gets one more try */
        if (st != CUA_OK) first = st;
        for (size_t i = 0; i < seg->aliases.n; i++, buried_maps++)
            _cua_bk_bury(seg->bk, (cua_grave){.kind = CUA_CALL_UNMAP, .size = seg->aliases.v[i].size,
                                              .addr = seg->base + ((uintptr_t)(seg->aliases.v[i].at - 1)
                                                                   << seg->gshift),
                                              .unmap_only = true}, /* (its handle: below) */
                         st);
        seg->aliases.n = 0;
        seg->alias_bytes = 0;
    }
    free(seg->aliases.v);
    seg->aliases.v = NULL;
    for (uint32_t p = 0; p < seg->npages;) {
        cua_chunk *c = seg->pages[p];
        if (!c) {
            p++;
            continue;
        }
        p = c->first + c->npages;
        if (c->idle_prev) idle_remove(seg, c);
        cua_status st = unmap_chunk(seg, c);
        if (st != CUA_OK && seg->pages[c->first]) st = unmap_chunk(seg, c); /* one more try */
        if (st != CUA_OK && first == CUA_OK) first = st;
        if (seg->pages[c->first]) { /* still mapped: the backend retries it later */
            buried_maps++;
            size_t len = (size_t)c->npages << seg->gshift;
            cua_grave g = {.kind = seg->novmm ? CUA_CALL_FREE : CUA_CALL_UNMAP, .size = len, .h = c->handle,
                           .addr = seg->novmm ? c->addr : seg->base + ((uintptr_t)c->first << seg->gshift)};
            _cua_bk_bury(seg->bk, g, st);
            if (seg->novmm) { /* its pointers: unknown now */
                (void)seg_changed(seg, CUA_SEG_LEAVING, c, len);
                (void)seg_changed(seg, CUA_SEG_GONE, c, len);
            }
            set_pages(seg, c->first, c->npages, NULL);
            mapped_add(seg, c, -(int64_t)len);
        }
    }
    cua_status st = _cua_seg_keep_handles(seg, false);
    if (st != CUA_OK && first == CUA_OK) first = st;
    free(seg->kept.v);
    while (seg->adopted.n) { /* adopted, never mapped: back to the driver */
        seg->adopted.n--;
        st = _cua_seg_release_handle(seg, seg->adopted.v[seg->adopted.n].h, seg->adopted.v[seg->adopted.n].size);
        if (st != CUA_OK && first == CUA_OK) first = st;
    }
    seg->adopted_bytes = 0;
    free(seg->adopted.v);
    st = _cua_seg_retry_zombies(seg);
    if (st != CUA_OK && first == CUA_OK) first = st;
    if (seg->zombies.n) st = _cua_seg_retry_zombies(seg); /* a transient failure gets one more try */
    for (size_t i = 0; i < seg->zombies.n; i++) /* the backend retries the rest later */
        _cua_bk_bury(seg->bk, (cua_grave){.kind = CUA_CALL_RELEASE, .h = seg->zombies.v[i].h,
                                          .size = seg->zombies.v[i].size}, st);
    free(seg->zombies.v);
    free(seg->byaddr);
    if (!seg->novmm && buried_maps) { /* never free a range with a mapping still in it */
        _cua_bk_bury(seg->bk, (cua_grave){.kind = CUA_CALL_UNRESERVE, .addr = seg->base, .size = seg->size}, first);
        st = CUA_OK;
    } else {
        st = seg->novmm ? CUA_OK : _cua_bk_unreserve(seg->bk, seg->cs, seg->base, seg->size);
    }
    if (st != CUA_OK) {
        if (first == CUA_OK) first = st;
        if (_cua_bk_unreserve(seg->bk, seg->cs, seg->base, seg->size) != CUA_OK)
            _cua_bk_bury(seg->bk, (cua_grave){.kind = CUA_CALL_UNRESERVE, .addr = seg->base, .size = seg->size}, st);
    }
    for (size_t i = 0; i < seg->nslabs; i++) free(seg->slabs[i]);
    free(seg->slabs);
    seg->slabs = NULL;
    seg->nslabs = seg->cap_slabs = 0;
    seg->spare = NULL;
    free_page_table(seg);
    return first;
}

/* ---- acquire / release -------------------------------------------------------- */

/* The walk's next page after page p of chunk c, for a walk that ends at page
 * `last`: past the end when c holds it (a block inside one chunk never reads
 * the ends table), else from the ends table, so that the walk over a block of
 * many chunks does not wait for each descriptor before the next. */
static inline uint32_t next_page(const cua_segment *seg, const cua_chunk *c, uint32_t p,
                                 uint32_t last)
{
    return c->first + c->npages > last ? last + 1 : seg->ends[p];
}

/* Walk the chunks over [off, off + len): count the bytes of unmapped pages and,
 * when `acquire`, count one more block on each chunk. */
static uint64_t walk(cua_segment *seg, uint64_t off, uint64_t len, bool acquire)
{
    uint32_t p = _cua_seg_page(seg, off), last = _cua_seg_page(seg, off + len - 1);
    uint64_t missing = 0;
    while (p <= last) {
        cua_chunk *c = seg->pages[p];
        if (!c) {
            missing += seg->gran;
            p++;
            continue;
        }
        if (acquire && c->busy++ == 0) idle_remove(seg, c);
        p = next_page(seg, c, p, last);
    }
    return missing;
}

bool _cua_seg_lacks_access_walk(const cua_segment *seg, uint64_t off, uint64_t len)
{
    uint32_t p = _cua_seg_page(seg, off), last = _cua_seg_page(seg, off + len - 1);
    while (p <= last) {
        const cua_chunk *c = seg->pages[p];
        if (!c) {
            p++;
            continue;
        }
        if (c->noaccess) return true;
        p = next_page(seg, c, p, last);
    }
    return false;
}

uint64_t _cua_seg_acquire(cua_segment *seg, uint64_t off, uint64_t len)
{
    cua_assert(len && off < seg->size && len <= seg->size - off);
    return walk(seg, off, len, true);
}

uint64_t _cua_seg_missing(const cua_segment *seg, uint64_t off, uint64_t len)
{
    return walk((cua_segment *)seg, off, len, false);
}

void _cua_seg_release(cua_segment *seg, uint64_t off, uint64_t len, uint64_t seq)
{
    cua_assert(len && off < seg->size && len <= seg->size - off);
    uint32_t p = _cua_seg_page(seg, off), last = _cua_seg_page(seg, off + len - 1);
    while (p <= last) {
        cua_chunk *c = seg->pages[p];
        if (!c) { /* only while undoing a partial acquire */
            p++;
            continue;
        }
        cua_assert(c->busy > 0);
        if (--c->busy == 0) idle_push(seg, c, seq);
        p = next_page(seg, c, p, last);
    }
}

/* ---- map ------------------------------------------------------------------------ */

/* The physical memory of a chunk of len bytes at addr: a handle created and
 * mapped there (access is set by the caller), or novmm a whole segment. */
static cua_status back_chunk(cua_segment *seg, cua_chunk *c, uintptr_t addr, size_t len)
{
    if (seg->novmm) return alloc_segment(seg, c, len);
    /* A handle a trim of this growth unmapped, one adopted from a reservation,
     * or a new one. */
    uint32_t at = 0, no_at;
    bool kept = seg->kept.n && _cua_seg_take_handle(&seg->kept, len, &c->handle, &at);
    bool adopted = !kept && seg->adopted.n && _cua_seg_take_handle(&seg->adopted, len, &c->handle, &no_at);
    /* Still mapped at its old place: that place becomes an alias, unmapped by
     * a purge (or now, when the list has no room). */
    if (at && !_cua_handles_push(&seg->aliases, c->handle, len, at)) {
        if (!_cua_seg_unmap_old_place(seg, at, len)) {
            _cua_seg_put_kept(seg, c->handle, len, at);
            return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory to list a moved handle");
        }
        at = 0;
    }
    if (at) seg->alias_bytes += len;
    cua_status st = kept || adopted ? CUA_OK : _cua_bk_create(seg->bk, seg->cs, len, &c->handle);
    if (st != CUA_OK) return st;
    if (adopted) seg->adopted_bytes -= len;
    st = _cua_bk_map(seg->bk, seg->cs, addr, len, c->handle);
    if (st != CUA_OK) {
        char keep[CUA_MSG_CAP];
        snprintf(keep, sizeof keep, "%s", cua_last_error());
        if (kept) { /* back to kept, with its old place (no longer an alias) */
            if (at) {
                seg->aliases.n--; /* (the entry pushed above, the last one) */
                seg->alias_bytes -= len;
            }
            _cua_seg_put_kept(seg, c->handle, len, at); /* released with the rest of the kept ones */
        } else if (adopted && _cua_seg_list_push(&seg->adopted, c->handle, len)) {
            seg->adopted_bytes += len; /* still the arena's */
        } else {
            _cua_seg_release_handle(seg, c->handle, len); /* a failed release is retried later */
        }
        return _cua_error(st, "%s", keep);
    }
    return CUA_OK;
}

/* Create and map one chunk of n pages at page `first`. */
static cua_status map_chunk(cua_segment *seg, uint32_t first, uint32_t n)
{
    size_t len = (size_t)n << seg->gshift;
    uintptr_t addr = seg->base + ((uintptr_t)first << seg->gshift);
    cua_chunk *c = chunk_new(seg);
    if (!c) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a chunk descriptor");
    cua_status st = back_chunk(seg, c, addr, len);
    if (st != CUA_OK) {
        chunk_free(seg, c);
        return st;
    }
    c->first = first;
    c->npages = n;
    c->busy = 1;
    c->noaccess = false;
    set_pages(seg, first, n, c);
    mapped_add(seg, c, (int64_t)len);
    seg->nchunks++;
    return CUA_OK;
}

static cua_status chunk_access(cua_segment *seg, const cua_chunk *c)
{
    return _cua_bk_set_access(seg->bk, seg->cs, seg->base + ((uintptr_t)c->first << seg->gshift),
                              (size_t)c->npages << seg->gshift, seg->access, seg->naccess);
}

/* Undo the chunks this call mapped in [p0, p1) (they all have busy == 1 and
 * were unmapped before: `was` marks those pages). One that cannot be unmapped
 * stays (the caller's release makes it idle, a trim retries): with access,
 * when granting it works, else marked noaccess, so that no block is placed on
 * it before a map grants access. */
static void unmap_new(cua_segment *seg, uint32_t p0, uint32_t p1, const uint8_t *was)
{
    for (uint32_t p = p0; p < p1;) {
        cua_chunk *c = seg->pages[p];
        if (!c || !was[p - p0]) {
            p++;
            continue;
        }
        p = c->first + c->npages;
        /* (unmapped but its release failed: the handle is a zombie, the chunk goes) */
        if (unmap_chunk(seg, c) == CUA_OK || seg->pages[c->first] != c) {
            chunk_free(seg, c);
        } else if (chunk_access(seg, c) != CUA_OK) {
            c->noaccess = true;
            seg->noaccess_chunks++;
        }
    }
}

/* Grant access to the chunks of [p0, p1) that lack it. */
static cua_status grant_noaccess(cua_segment *seg, uint32_t p0, uint32_t p1)
{
    for (uint32_t p = p0; p < p1;) {
        cua_chunk *c = seg->pages[p];
        if (!c) {
            p++;
            continue;
        }
        if (c->noaccess) {
            cua_status st = chunk_access(seg, c);
            if (st != CUA_OK) return st;
            c->noaccess = false;
            seg->noaccess_chunks--;
        }
        p = c->first + c->npages;
    }
    return CUA_OK;
}

cua_status _cua_seg_map(cua_segment *seg, uint64_t off, uint64_t len)
{
    uint32_t p0 = _cua_seg_page(seg, off), p1 = _cua_seg_page(seg, off + len - 1) + 1;
    if (seg->novmm) { /* one segment, usable at once; the heap kept the pages unmapped */
        for (uint32_t p = p0; p < p1; p++) cua_assert(!seg->pages[p]);
        return map_chunk(seg, p0, p1 - p0);
    }
    /* Old places of moved handles in the range go first: a page is mapped at
     * one place only. */
    if (seg->alias_bytes && _cua_seg_any_bit(seg->aliasbits, p0, p1)) {
        /* (all of them: the bytes cost the same now or later, and one purge
         * merges adjacent places into one call; a failure elsewhere does not
         * stop this growth) */
        cua_status st = _cua_seg_purge(seg);
        if (st != CUA_OK && _cua_seg_any_bit(seg->aliasbits, p0, p1)) return st;
    }
    uint8_t small[64];
    uint8_t *was = (p1 - p0) <= sizeof small ? small : malloc(p1 - p0);
    if (!was) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory to map %u pages", p1 - p0);
    for (uint32_t p = p0; p < p1; p++) was[p - p0] = seg->pages[p] == NULL;

    cua_status st = seg->noaccess_chunks ? grant_noaccess(seg, p0, p1) : CUA_OK;
    for (uint32_t p = p0; p < p1 && st == CUA_OK;) {
        if (!was[p - p0]) {
            p++;
            continue;
        }
        uint32_t run_end = p;
        while (run_end < p1 && was[run_end - p0]) run_end++;
        /* A long run takes large handles: fewer driver calls to map it and,
         * later, to unmap it. */
        uint32_t cap = seg->chunk_max_pages;
        if (seg->chunk_large_pages > cap && run_end - p >= seg->chunk_large_pages)
            cap = seg->chunk_large_pages;
        for (uint32_t q = p; q < run_end && st == CUA_OK;) {
            uint32_t n = _cua_min(run_end - q, cap);
            st = map_chunk(seg, q, n);
            if (st == CUA_ERR_OUT_OF_MEMORY && n > seg->chunk_max_pages) {
                /* Memory is short: small handles may still fit where one
                 * large one does not (a backend may want it in one piece). */
                cap = seg->chunk_max_pages;
                st = CUA_OK;
                continue;
            }
            q += n;
        }
        if (st == CUA_OK) /* one access call for the whole run of new mappings */
            st = _cua_bk_set_access(seg->bk, seg->cs, seg->base + ((uintptr_t)p << seg->gshift),
                                    (size_t)(run_end - p) << seg->gshift, seg->access,
                                    seg->naccess);
        p = run_end;
    }
    if (st != CUA_OK) {
        char keep[CUA_MSG_CAP];
        strncpy(keep, cua_last_error(), sizeof keep - 1);
        keep[sizeof keep - 1] = 0;
        unmap_new(seg, p0, p1, was);
        _cua_error(st, "%s", keep);
    }
    if (was != small) free(was);
    return st;
}

/* ---- peers ------------------------------------------------------------------------ */

cua_status _cua_seg_grant_peer(cua_segment *seg, int peer)
{
    for (int i = 0; i < seg->naccess; i++)
        if (seg->access[i] == peer) return CUA_OK;
    if (seg->naccess == CUA_SEG_MAX_ACCESS)
        return _cua_error(CUA_ERR_INVALID_ARG, "device %d: the memory is accessible to %d "
                          "devices already", peer, seg->naccess);
    cua_status st = _cua_bk_peer_check(seg->bk, peer);
    if (st != CUA_OK) return st;
    if (seg->novmm) {
        st = _cua_bk_peer_enable(seg->bk, seg->cs, peer);
        if (st == CUA_OK) seg->access[seg->naccess++] = peer;
        return st;
    }
    /* The new list, for the chunks mapped now; runs of adjacent chunks in one call. */
    seg->access[seg->naccess] = peer;
    for (uint32_t p = 0; p < seg->npages && st == CUA_OK;) {
        cua_chunk *c = seg->pages[p];
        if (!c || c->noaccess) { /* a noaccess chunk gets every device when granted */
            p = c ? c->first + c->npages : p + 1;
            continue;
        }
        uint32_t end = c->first + c->npages;
        while (end < seg->npages && seg->pages[end] && !seg->pages[end]->noaccess)
            end = seg->pages[end]->first + seg->pages[end]->npages;
        st = _cua_bk_set_access(seg->bk, seg->cs, seg->base + ((uintptr_t)p << seg->gshift),
                                (size_t)(end - p) << seg->gshift, seg->access, seg->naccess + 1);
        p = end;
    }
    if (st == CUA_OK) seg->naccess++;
    return st;
}

/* ---- trim ------------------------------------------------------------------------- */

static int cmp_chunk_first(const void *a, const void *b)
{
    const cua_chunk *x = *(cua_chunk *const *)a, *y = *(cua_chunk *const *)b;
    return (x->first > y->first) - (x->first < y->first);
}

/* Unmap a run of address-adjacent chunks in one call, then release each handle. */
/* novmm: free each segment of the run on its own. */
static cua_status trim_segments(cua_segment *seg, cua_chunk **run, size_t n, uint64_t *released)
{
    cua_status first = CUA_OK;
    for (size_t i = 0; i < n; i++) {
        cua_chunk *c = run[i];
        uint64_t off = (uint64_t)c->first << seg->gshift, clen = (uint64_t)c->npages << seg->gshift;
        cua_status st = unmap_chunk(seg, c);
        if (st != CUA_OK) {
            idle_push(seg, c, c->idle_seq);
            if (first == CUA_OK) first = st;
            continue;
        }
        *released += clen;
        chunk_free(seg, c);
        if (seg->obs.trimmed) seg->obs.trimmed(seg->obs.ctx, off, clen);
    }
    return first;
}

/* A trim during growth with deferred unmaps: the chunks leave the page table
 * and their handles go to the kept list still mapped where they were (`at`),
 * with no driver call (Note [moves that unmap later]). Returns how many of
 * the run it took: all, unless host memory ran out. */
static size_t trim_run_later(cua_segment *seg, cua_chunk **run, size_t n, uint64_t *released)
{
    for (size_t i = 0; i < n; i++) {
        cua_chunk *c = run[i];
        size_t clen = (size_t)c->npages << seg->gshift;
        if (!_cua_handles_push(&seg->kept, c->handle, clen, c->first + 1)) return i;
        _cua_seg_bits(seg->aliasbits, c->first, c->first + c->npages, true);
        set_pages(seg, c->first, c->npages, NULL);
        mapped_add(seg, c, -(int64_t)clen);
        seg->nchunks--;
        *released += clen;
        chunk_free(seg, c);
    }
    return n;
}

static cua_status trim_run(cua_segment *seg, cua_chunk **run, size_t n, uint64_t *released)
{
    if (seg->novmm) return trim_segments(seg, run, n, released);
    if (seg->keep_handles && seg->defer_unmap) {
        size_t k = trim_run_later(seg, run, n, released);
        if (k == n) return CUA_OK;
        run += k; /* the rest (out of host memory): unmapped at once */
        n -= k;
    }
    uint32_t pages = 0;
    for (size_t i = 0; i < n; i++) pages += run[i]->npages;
    uintptr_t addr = seg->base + ((uintptr_t)run[0]->first << seg->gshift);
    size_t len = (size_t)pages << seg->gshift;
    cua_status st = _cua_bk_unmap(seg->bk, seg->cs, addr, len, n);
    if (st != CUA_OK) { /* nothing changed: put them back, oldest first order is lost */
        for (size_t i = 0; i < n; i++) idle_push(seg, run[i], run[i]->idle_seq);
        return st;
    }
    cua_status first = CUA_OK;
    for (size_t i = 0; i < n; i++) {
        cua_chunk *c = run[i];
        size_t clen = (size_t)c->npages << seg->gshift;
        set_pages(seg, c->first, c->npages, NULL);
        mapped_add(seg, c, -(int64_t)clen);
        seg->nchunks--;
        *released += clen;
        cua_status rs = _cua_seg_drop_handle(seg, c->handle, clen);
        if (rs != CUA_OK && first == CUA_OK) first = rs;
        chunk_free(seg, c);
    }
    return first;
}

cua_status _cua_seg_trim(cua_segment *seg, uint64_t want, uint64_t safe_seq, bool fragments,
                         uint64_t *released)
{
    *released = 0;
    if (seg->zombies.n) _cua_seg_retry_zombies(seg);
    cua_chunk **pick = NULL;
    size_t n = fragments ? _cua_seg_pick_fragments(seg, want, safe_seq, &pick)
                         : _cua_seg_pick_oldest(seg, want, safe_seq, &pick);
    if (n == 0) {
        free(pick);
        return CUA_OK;
    }
    for (size_t i = 0; i < n; i++) idle_remove(seg, pick[i]);
    qsort(pick, n, sizeof *pick, cmp_chunk_first);
    cua_status first = CUA_OK;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && pick[j - 1]->first + pick[j - 1]->npages == pick[j]->first) j++;
        cua_status st = trim_run(seg, pick + i, j - i, released);
        if (st != CUA_OK && first == CUA_OK) first = st;
        i = j;
    }
    free(pick);
    return first;
}
