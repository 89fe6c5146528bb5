/*
 * walk.c - an arena's snapshot, region by region (cuarena.h: cua_arena_walk):
 * the segments (chunks) of mapped memory and the pieces of blocks in each,
 * the raw material of torch-style memory snapshots.
 *
 * The regions are collected into a host array under the arena lock (one pass
 * over the chunks in page order and the blocks in address order, merged;
 * without VMM the segments are then sorted by address); api.c hands them to
 * the callback after the lock is released.
 */
#include "arena/walk.h"
#include "arena/tcache.h"

#include <stdlib.h>
#include <string.h>

typedef struct regions {
    cua_region *v;
    size_t n, cap;
} regions;

static bool put(regions *r, cua_region x)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        cua_region *v = realloc(r->v, cap * sizeof *v);
        if (!v) return false;
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n++] = x;
    return true;
}

static cua_region_kind block_kind(const cua_block *b)
{
    return b->state == CUA_BLOCK_LIVE      ? CUA_REGION_LIVE
           : b->state == CUA_BLOCK_PENDING ? CUA_REGION_PENDING
                                           : CUA_REGION_FREE;
}

/* Every chunk, then the pieces of blocks inside it. */
static bool collect(const cua_arena *a, regions *r)
{
    const cua_segment *seg = &a->seg;
    const cua_block *b = a->heap.first;
    /* (no page above the highest block ever handed out is mapped) */
    uint64_t top = (a->top_used + seg->gran - 1) >> seg->gshift;
    uint32_t last = (uint32_t)_cua_min(seg->npages, top);
    for (uint32_t p = 0; p < last;) {
        const cua_chunk *c = seg->pages[p];
        if (!c) {
            p++;
            continue;
        }
        uint64_t c0 = (uint64_t)c->first << seg->gshift, c1 = c0 + ((uint64_t)c->npages << seg->gshift);
        if (!put(r, (cua_region){CUA_REGION_SEGMENT, _cua_seg_addr(seg, c0), (size_t)(c1 - c0), 0, 0}))
            return false;
        while (b && b->off + b->size <= c0) b = b->next;
        for (const cua_block *x = b; x && x->off < c1; x = x->next) {
            uint64_t lo = _cua_max(x->off, c0), hi = _cua_min(x->off + x->size, c1);
            cua_region piece = {block_kind(x), _cua_seg_addr(seg, lo), (size_t)(hi - lo), 0, 0};
            if (x->state == CUA_BLOCK_LIVE) {
                piece.requested = lo == x->off ? (size_t)x->req : 0;
                piece.stream = x->tag < a->streams.n ? a->streams.slot[x->tag].stream : 0;
            }
            if (!put(r, piece)) return false;
        }
        p = c->first + c->npages;
    }
    return true;
}

/* One segment's regions in a snapshot: the segment and the pieces after it. */
typedef struct group {
    uintptr_t address;
    size_t first, n;
} group;

static int by_address(const void *x, const void *y)
{
    const group *p = x, *q = y;
    return (p->address > q->address) - (p->address < q->address);
}

/* Without VMM the segments lie where the driver put them, and collect() saw
 * them in the order of the arena's offsets: put them (each with its pieces)
 * in address order, as cuarena.h promises. */
static bool sort_segments(regions *r)
{
    size_t ng = 0;
    for (size_t i = 0; i < r->n; i++) ng += r->v[i].kind == CUA_REGION_SEGMENT;
    if (ng < 2) return true;
    group *g = malloc(ng * sizeof *g);
    cua_region *v = malloc(r->n * sizeof *v);
    if (!g || !v) {
        free(g);
        free(v);
        return false;
    }
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[i].kind == CUA_REGION_SEGMENT) g[k++] = (group){r->v[i].address, i, 0};
        g[k - 1].n++;
    }
    qsort(g, ng, sizeof *g, by_address);
    size_t at = 0;
    for (size_t j = 0; j < ng; j++) {
        memcpy(&v[at], &r->v[g[j].first], g[j].n * sizeof *v);
        at += g[j].n;
    }
    free(g);
    free(r->v);
    r->v = v;
    return true;
}

cua_status _cua_walk_snapshot_locked(cua_arena *a, cua_region **out, size_t *n)
{
    regions r = {0};
    _cua_tc_flush_all_locked(a); /* blocks in threads' caches are free: shown as such */
    _cua_tc_disown_all_locked(a); /* and those they handed out show the sizes asked */
    bool ok = collect(a, &r);
    if (ok && a->seg.novmm) ok = sort_segments(&r);
    if (!ok) {
        free(r.v);
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a snapshot of %zu regions",
                          r.n);
    }
    *out = r.v;
    *n = r.n;
    return CUA_OK;
}
