/*
 * check.c - the checker: every invariant of an arena, verified. It composes
 * the heap's validator (_cua_heap_check) with the arena's own cross-checks:
 * blocks against streams and thread caches, the chunks of the segment,
 * statistics, the pending list and the offload image. Tests call it after every step;
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

/* Chunks: the page table (and its chunk ends) agrees with them, busy counts
 * the live and pending blocks on them, idle ones are exactly those on the idle
 * list. */
static cua_status check_chunks(const cua_arena *a)
{
    const cua_segment *seg = &a->seg;
    uint32_t *busy = calloc(seg->npages, sizeof *busy);
    if (!busy) FAIL("no host memory to check %u pages", seg->npages);
    cua_status st = CUA_OK;
    for (const cua_block *b = a->heap.first; b && st == CUA_OK; b = b->next) {
        if (b->state == CUA_BLOCK_FREE) continue;
        if (a->offloaded && b->state == CUA_BLOCK_LIVE) continue; /* they hold no pages */
        uint32_t p = _cua_seg_page(seg, b->off), last = _cua_seg_page(seg, b->off + b->size - 1);
        while (p <= last) {
            const cua_chunk *c = seg->pages[p];
            if (!c) {
                st = _cua_error(CUA_ERR_CORRUPT, "live block at %llu covers unmapped page %u",
                                (unsigned long long)b->off, p);
                break;
            }
            busy[c->first]++;
            p = c->first + c->npages;
        }
    }
    if (seg->kept.n || seg->keep_handles)
        st = _cua_error(CUA_ERR_CORRUPT, "%zu unmapped handles are kept outside a growth",
                        seg->kept.n);
    uint64_t mapped = 0, idle = 0, chunks = 0, noaccess = 0;
    for (uint32_t p = 0; p < seg->npages && st == CUA_OK;) {
        const cua_chunk *c = seg->pages[p];
        if (!c) {
            p++;
            continue;
        }
        if (c->first != p || !c->npages || (!seg->novmm && c->npages > _cua_seg_chunk_cap(seg))) {
            st = _cua_error(CUA_ERR_CORRUPT, "page %u points to a chunk at page %u of %u pages",
                            p, c->first, c->npages);
            break;
        }
        for (uint32_t q = p; q < p + c->npages; q++)
            if (seg->pages[q] != c || seg->ends[q] != p + c->npages) {
                st = _cua_error(CUA_ERR_CORRUPT, "page %u is not in its chunk at %u (or its end "
                                "says %u, not %u)", q, p, seg->ends[q], p + c->npages);
                break;
            }
        if (st == CUA_OK && c->noaccess && c->busy)
            st = _cua_error(CUA_ERR_CORRUPT, "chunk at page %u has blocks but no access", p);
        if (st == CUA_OK && c->busy != busy[p])
            st = _cua_error(CUA_ERR_CORRUPT, "chunk at page %u counts %u blocks, %u overlap it",
                            p, c->busy, busy[p]);
        if (st == CUA_OK && (c->busy == 0) != (c->idle_prev != NULL))
            st = _cua_error(CUA_ERR_CORRUPT, "chunk at page %u: busy %u but %s the idle list",
                            p, c->busy, c->idle_prev ? "on" : "not on");
        mapped += (uint64_t)c->npages << seg->gshift;
        if (!c->busy) idle += (uint64_t)c->npages << seg->gshift;
        noaccess += c->noaccess;
        chunks++;
        p += c->npages;
    }
    free(busy);
    if (st != CUA_OK) return st;
    if (noaccess != seg->noaccess_chunks)
        FAIL("%llu chunks lack access, the segment counts %u", (unsigned long long)noaccess,
             seg->noaccess_chunks);
    if (mapped != seg->mapped_bytes || idle != seg->idle_bytes || chunks != seg->nchunks)
        FAIL("chunks map %llu bytes (%llu idle, %llu chunks), the segment counts %llu (%llu, %llu)",
             (unsigned long long)mapped, (unsigned long long)idle, (unsigned long long)chunks,
             (unsigned long long)seg->mapped_bytes, (unsigned long long)seg->idle_bytes,
             (unsigned long long)seg->nchunks);
    uint64_t on_list = 0;
    for (const cua_chunk *c = seg->idle.idle_next; c != &seg->idle; c = c->idle_next) {
        if (c->busy || c->idle_next->idle_prev != c) FAIL("the idle list is broken");
        on_list += (uint64_t)c->npages << seg->gshift;
        if (on_list > idle) FAIL("the idle list holds more than the idle chunks");
    }
    if (on_list != idle) FAIL("the idle list holds %llu bytes, idle chunks %llu",
                              (unsigned long long)on_list, (unsigned long long)idle);
    if (!seg->novmm) return CUA_OK;
    if (seg->nbyaddr != seg->nchunks)
        FAIL("%zu segments indexed by address, %llu chunks", seg->nbyaddr,
             (unsigned long long)seg->nchunks);
    for (size_t i = 0; i < seg->nbyaddr; i++) {
        const cua_chunk *c = seg->byaddr[i];
        if (seg->pages[c->first] != c) FAIL("segment %zu by address is not in the page table", i);
        if (i && seg->byaddr[i - 1]->addr + ((uint64_t)seg->byaddr[i - 1]->npages << seg->gshift) >
                     c->addr)
            FAIL("segments %zu and %zu by address overlap or are out of order", i - 1, i);
    }
    return CUA_OK;
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
