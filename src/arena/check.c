/*
 * check.c - the checker: every invariant of an arena, verified. It composes
 * the heap's validator (_cua_heap_check) and the segment's (_cua_seg_check)
 * with the arena's own cross-checks: blocks against streams and thread
 * caches, chunks' busy counts against the blocks, statistics, the pending
 * list and the offload image. Tests call it after every step;
 * CUA_ARENA_CHECK_ALWAYS calls it after every alloc and free. It changes
 * nothing.
 */
#include "arena/check.h"

#include <stdlib.h>

#define FAIL(...) return _cua_error(CUA_ERR_CORRUPT, __VA_ARGS__)

/* The heap's counts, and the bytes the live blocks asked for. */
typedef struct tally {
    cua_heap_tally heap;
    uint64_t live_bytes;
} tally;

/* What the heap's validator cannot know: free blocks keep the tags of streams
 * still in use and come from the past; live blocks asked for what they hold and
 * were allocated on a stream slot; only live blocks belong to thread caches. */
static cua_status check_blocks(const cua_arena *a, tally *t)
{
    for (const cua_block *b = a->heap.first; b; b = b->next) {
        if (b->state == CUA_BLOCK_FREE) {
            if (b->tag && b->tag < a->streams.n && a->streams.slot[b->tag].retired)
                FAIL("free block at %llu keeps the tag %u of a retired stream",
                     (unsigned long long)b->off, b->tag);
            if (b->seq > a->seq) FAIL("free block at %llu is from the future",
                                      (unsigned long long)b->off);
        } else if (b->state == CUA_BLOCK_LIVE) {
            t->live_bytes += b->req;
            if (!b->req || b->req > b->size)
                FAIL("live block at %llu asked %llu bytes but has %llu",
                     (unsigned long long)b->off, (unsigned long long)b->req,
                     (unsigned long long)b->size);
            if (b->tag == 0 || b->tag >= a->streams.n)
                FAIL("live block at %llu has no stream slot", (unsigned long long)b->off);
        }
        /* Only a live block can be a thread cache's (handed out, or cached). */
        if (b->state != CUA_BLOCK_LIVE && (atomic_load_explicit(&b->tcw, memory_order_relaxed) & 3))
            FAIL("block at %llu (state %u) is still a thread cache's", (unsigned long long)b->off,
                 b->state);
    }
    return CUA_OK;
}

/* The segment's chunks against the blocks: busy counts the live and pending
 * blocks on each chunk (the segment's validator compares), and no handle is
 * kept outside a growth. */
static cua_status check_chunks(const cua_arena *a)
{
    const cua_segment *seg = &a->seg;
    uint32_t *busy = calloc(seg->npages, sizeof *busy);
    if (!busy) FAIL("no host memory to check %u pages", seg->npages);
    cua_status st = CUA_OK;
    for (const cua_block *b = a->heap.first; b && st == CUA_OK; b = b->next) {
        if (b->state == CUA_BLOCK_FREE) continue;
        if (a->offloaded && b->state == CUA_BLOCK_LIVE) continue; /* they hold no pages */
        st = _cua_seg_check_block(seg, b->off, b->size, busy);
    }
    if (seg->kept.n || seg->keep_handles)
        st = _cua_error(CUA_ERR_CORRUPT, "%zu unmapped handles are kept outside a growth",
                        seg->kept.n);
    if (st == CUA_OK) st = _cua_seg_check(seg, busy);
    free(busy);
    return st;
}

static cua_status check_stats(const cua_arena *a, const tally *t)
{
    const cua_heap_tally *h = &t->heap;
    if (h->live != a->live_blocks || t->live_bytes != a->live_bytes ||
        h->allocated != a->allocated_bytes)
        FAIL("stats count %llu live blocks / %llu bytes / %llu allocated, blocks say %llu / %llu / %llu",
             (unsigned long long)a->live_blocks, (unsigned long long)a->live_bytes,
             (unsigned long long)a->allocated_bytes, (unsigned long long)h->live,
             (unsigned long long)t->live_bytes, (unsigned long long)h->allocated);
    if (h->pending != a->streams.pending_blocks || h->pending_bytes != a->streams.pending_bytes)
        FAIL("%llu pending blocks counted, %llu found", (unsigned long long)a->streams.pending_blocks,
             (unsigned long long)h->pending);
    uint64_t n = 0;
    for (const cua_block *b = a->streams.pending; b; b = b->fnext)
        if (b->state != CUA_BLOCK_PENDING || ++n > h->pending) FAIL("the pending list is broken");
    if (n != h->pending) FAIL("the pending list holds %llu of %llu pending blocks",
                              (unsigned long long)n, (unsigned long long)h->pending);
    if (a->allocated_bytes + a->streams.pending_bytes > a->seg.mapped_bytes + a->seg.size)
        FAIL("more bytes allocated than exist");
    if (a->peak_live < a->live_bytes || a->peak_mapped < a->seg.mapped_bytes)
        FAIL("a peak is below its current value");
    return CUA_OK;
}

/* Offloaded: the image has one entry per block that was live, in address
 * order; those with data point at a live block of that size, inside the image. */
static cua_status check_image(const cua_arena *a)
{
    const struct cua_image *im = &a->image;
    if (!a->offloaded) {
        if (im->n || im->blocks || im->data) FAIL("an image is kept while not offloaded");
        return CUA_OK;
    }
    for (size_t i = 0; i < im->n; i++) {
        const struct cua_image_block *e = &im->blocks[i];
        if (i && e->off <= im->blocks[i - 1].off) FAIL("the offload image is out of order");
        if (!e->len) continue;
        const cua_block *b = _cua_heap_map_find(&a->heap, e->off);
        if (!b || b->req != e->len || e->at + e->len > im->bytes)
            FAIL("offload image entry at %llu does not match a live block",
                 (unsigned long long)e->off);
    }
    if (!im->discarded && im->bytes && !im->data) FAIL("the offload image lost its data");
    return CUA_OK;
}

cua_status _cua_check_arena_locked(cua_arena *a)
{
    tally t = {0};
    cua_status st = _cua_heap_check(&a->heap, _cua_arena_one_stream(a), &t.heap);
    if (st == CUA_OK) st = check_blocks(a, &t);
    if (st == CUA_OK) st = check_chunks(a);
    if (st == CUA_OK) st = check_stats(a, &t);
    if (st == CUA_OK) st = check_image(a);
    if (st != CUA_OK) return _cua_error_wrap(st, "arena '%s' is corrupt", a->name);
    return CUA_OK;
}
