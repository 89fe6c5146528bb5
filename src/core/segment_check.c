/*
 * segment_check.c - the segment's validator (segment.h): the page table, the
 * chunks, the ends table, the idle list and the counters agree. Beside
 * segment.c rather than in it, which would pass 800 lines.
 */
#include "core/segment.h"

/* ---- the validator: page table, chunks, ends table, idle list and counters ---- */

#define CORRUPT(...) return _cua_error(CUA_ERR_CORRUPT, __VA_ARGS__)

cua_status _cua_seg_check_block(const cua_segment *seg, uint64_t off, uint64_t len,
                                uint32_t *busy)
{
    uint32_t p = _cua_seg_page(seg, off), last = _cua_seg_page(seg, off + len - 1);
    while (p <= last) {
        const cua_chunk *c = seg->pages[p];
        if (!c)
            CORRUPT("live block at %llu covers unmapped page %u", (unsigned long long)off, p);
        busy[c->first]++;
        p = c->first + c->npages;
    }
    return CUA_OK;
}

/* What the walk over the chunks counts, to compare with the segment's counters. */
typedef struct seg_tally {
    uint64_t mapped, idle, chunks, noaccess;
} seg_tally;

/* The chunk at page p: the page table and the ends table agree with it, and
 * its busy count with `busy` (when given) and with the idle list. */
static cua_status check_chunk(const cua_segment *seg, uint32_t p, const uint32_t *busy)
{
    const cua_chunk *c = seg->pages[p];
    if (c->first != p || !c->npages || (!seg->novmm && c->npages > _cua_seg_chunk_cap(seg)))
        CORRUPT("page %u points to a chunk at page %u of %u pages", p, c->first, c->npages);
    for (uint32_t q = p; q < p + c->npages; q++)
        if (seg->pages[q] != c || seg->ends[q] != p + c->npages)
            CORRUPT("page %u is not in its chunk at %u (or its end says %u, not %u)", q, p,
                    seg->ends[q], p + c->npages);
    if (c->noaccess && c->busy) CORRUPT("chunk at page %u has blocks but no access", p);
    if (busy && c->busy != busy[p])
        CORRUPT("chunk at page %u counts %u blocks, %u overlap it", p, c->busy, busy[p]);
    if ((c->busy == 0) != (c->idle_prev != NULL))
        CORRUPT("chunk at page %u: busy %u but %s the idle list", p, c->busy,
                c->idle_prev ? "on" : "not on");
    return CUA_OK;
}

/* The bitmap placement counts with says of each page what the page table says.
 * Checked after the chunks: the page table is the truth, the bitmap derived. */
static cua_status check_mapbits(const cua_segment *seg)
{
    for (uint32_t p = 0; p < seg->npages; p++) {
        bool bit = seg->mapbits[p >> 6] >> (p & 63) & 1;
        if (bit != (seg->pages[p] != NULL))
            CORRUPT("page %u is %s, but the bitmap of mapped pages says %s", p,
                    seg->pages[p] ? "mapped" : "unmapped", bit ? "mapped" : "unmapped");
    }
    return CUA_OK;
}

/* Every chunk of the page table, and the counters that sum them up. */
static cua_status check_page_table(const cua_segment *seg, const uint32_t *busy, seg_tally *t)
{
    for (uint32_t p = 0; p < seg->npages;) {
        const cua_chunk *c = seg->pages[p];
        if (!c) {
            p++;
            continue;
        }
        cua_status st = check_chunk(seg, p, busy);
        if (st != CUA_OK) return st;
        t->mapped += (uint64_t)c->npages << seg->gshift;
        if (!c->busy) t->idle += (uint64_t)c->npages << seg->gshift;
        t->noaccess += c->noaccess;
        t->chunks++;
        p += c->npages;
    }
    if (t->noaccess != seg->noaccess_chunks)
        CORRUPT("%llu chunks lack access, the segment counts %u", (unsigned long long)t->noaccess,
                seg->noaccess_chunks);
    if (t->mapped != seg->mapped_bytes || t->idle != seg->idle_bytes || t->chunks != seg->nchunks)
        CORRUPT("chunks map %llu bytes (%llu idle, %llu chunks), the segment counts %llu (%llu, "
                "%llu)", (unsigned long long)t->mapped, (unsigned long long)t->idle,
                (unsigned long long)t->chunks, (unsigned long long)seg->mapped_bytes,
                (unsigned long long)seg->idle_bytes, (unsigned long long)seg->nchunks);
    return check_mapbits(seg);
}

/* The idle list holds the idle chunks, all of them and only them. */
static cua_status check_idle_list(const cua_segment *seg, uint64_t idle)
{
    uint64_t on_list = 0;
    for (const cua_chunk *c = seg->idle.idle_next; c != &seg->idle; c = c->idle_next) {
        if (c->busy || c->idle_next->idle_prev != c) CORRUPT("the idle list is broken");
        on_list += (uint64_t)c->npages << seg->gshift;
        if (on_list > idle) CORRUPT("the idle list holds more than the idle chunks");
    }
    if (on_list != idle)
        CORRUPT("the idle list holds %llu bytes, idle chunks %llu", (unsigned long long)on_list,
                (unsigned long long)idle);
    return CUA_OK;
}

/* novmm: the segments sorted by address are the chunks, without overlap. */
static cua_status check_byaddr(const cua_segment *seg)
{
    if (seg->nbyaddr != seg->nchunks)
        CORRUPT("%zu segments indexed by address, %llu chunks", seg->nbyaddr,
                (unsigned long long)seg->nchunks);
    for (size_t i = 0; i < seg->nbyaddr; i++) {
        const cua_chunk *c = seg->byaddr[i], *below = i ? seg->byaddr[i - 1] : NULL;
        if (seg->pages[c->first] != c)
            CORRUPT("segment %zu by address is not in the page table", i);
        if (below && below->addr + ((uint64_t)below->npages << seg->gshift) > c->addr)
            CORRUPT("segments %zu and %zu by address overlap or are out of order", i - 1, i);
    }
    return CUA_OK;
}

/* The old places of moved handles (outside a growth: no kept handle has
 * one): each on unmapped pages, marked in the alias bitmap, apart from each
 * other, summed up by alias_bytes; and no other page marked. */
static cua_status check_aliases(const cua_segment *seg)
{
    uint64_t bytes = 0, pages = 0;
    for (size_t i = 0; i < seg->aliases.n; i++) {
        const cua_handle_entry *e = &seg->aliases.v[i];
        uint32_t n = (uint32_t)(e->size >> seg->gshift);
        if (!e->at || e->size % seg->gran || !n || e->at - 1 > seg->npages - n)
            CORRUPT("moved handle %zu has an old place of %zu bytes at page %u, outside the "
                    "segment", i, e->size, e->at - 1);
        for (uint32_t p = e->at - 1; p < e->at - 1 + n; p++) {
            if (seg->pages[p]) CORRUPT("page %u is mapped, and an old place of a moved handle", p);
            if (!(seg->aliasbits[p >> 6] >> (p & 63) & 1))
                CORRUPT("page %u is an old place of a moved handle the alias bitmap misses", p);
        }
        bytes += e->size;
        pages += n;
    }
    if (bytes != seg->alias_bytes)
        CORRUPT("old places of moved handles hold %llu bytes, the segment counts %llu",
                (unsigned long long)bytes, (unsigned long long)seg->alias_bytes);
    uint64_t marked = 0;
    for (uint32_t w = 0; w < (seg->npages + 63) / 64; w++)
        marked += (uint64_t)__builtin_popcountll(seg->aliasbits[w]);
    if (marked != pages) /* (more than listed: marked twice, or a page nobody unmaps) */
        CORRUPT("%llu pages are marked old places of moved handles, %llu are listed",
                (unsigned long long)marked, (unsigned long long)pages);
    return CUA_OK;
}

cua_status _cua_seg_check(const cua_segment *seg, const uint32_t *busy)
{
    seg_tally t = {0};
    cua_status st = check_page_table(seg, busy, &t);
    if (st == CUA_OK) st = check_idle_list(seg, t.idle);
    if (st == CUA_OK && !seg->novmm) st = check_aliases(seg);
    if (st == CUA_OK && seg->novmm) st = check_byaddr(seg);
    return st;
}
