/*
 * heap.c - blocks, the free index and the live-pointer map. See heap.h.
 */
#include "core/heap.h"

#include <stdlib.h>
#include <string.h>

/* Blocks of a bin examined for the best fit; bins span 25 % of size, so a
 * longer scan buys little and costs time on the fast path. */
#ifndef CUA_SCAN_MAX
#define CUA_SCAN_MAX 32
#endif
#define CUA_SLAB_BLOCKS 512

/* ---- descriptors ------------------------------------------------------------ */

/* A slab of descriptors onto the spare list; false when out of host memory. */
static bool refill(cua_heap *h)
{
    if (h->nslabs == h->cap_slabs) {
        size_t ncap = h->cap_slabs ? 2 * h->cap_slabs : 16;
        void **ns = realloc(h->slabs, ncap * sizeof *ns);
        if (!ns) return false;
        h->slabs = ns;
        h->cap_slabs = ncap;
    }
    /* (sizeof is a multiple of the alignment, as aligned_alloc asks) */
    cua_block *slab = aligned_alloc(_Alignof(cua_block), CUA_SLAB_BLOCKS * sizeof *slab);
    if (!slab) return false;
    h->slabs[h->nslabs++] = slab;
    for (size_t i = 0; i < CUA_SLAB_BLOCKS; i++) {
        atomic_init(&slab[i].tcw, 0);
        slab[i].treq = 0;
        atomic_init(&slab[i].tco, NULL);
        slab[i].fnext = h->spare;
        h->spare = &slab[i];
    }
    return true;
}

static cua_block *block_new(cua_heap *h)
{
    if (!h->spare && !refill(h)) return NULL;
    cua_block *b = h->spare;
    h->spare = b->fnext;
    /* Not tcw: a thread may still compare-and-swap a stale word there (and
     * fail); its generation must go on counting up. */
    memset(b, 0, offsetof(cua_block, tcw));
    h->nblocks++;
    return b;
}

static void block_delete(cua_heap *h, cua_block *b)
{
    b->fnext = h->spare;
    h->spare = b;
    h->nblocks--;
}

/* ---- the free index ------------------------------------------------------------ */

static void freeidx_insert(cua_freeidx *fi, cua_block *b)
{
    unsigned bin = _cua_sc_floor(b->size);
    b->bin = (uint8_t)bin;
    b->fprev = NULL;
    b->fnext = fi->bins[bin];
    if (b->fnext) b->fnext->fprev = b;
    fi->bins[bin] = b;
    fi->bitmap[bin >> 6] |= 1ull << (bin & 63);
    fi->bytes += b->size;
    fi->count++;
}

void _cua_freeidx_remove(cua_freeidx *fi, cua_block *b)
{
    unsigned bin = b->bin;
    if (b->fprev)
        b->fprev->fnext = b->fnext;
    else
        fi->bins[bin] = b->fnext;
    if (b->fnext) b->fnext->fprev = b->fprev;
    if (!fi->bins[bin]) fi->bitmap[bin >> 6] &= ~(1ull << (bin & 63));
    b->fprev = b->fnext = NULL;
    fi->bytes -= b->size;
    fi->count--;
}

/* First non-empty bin at or above `from`, or CUA_SC_COUNT. */
static unsigned next_bin(const cua_freeidx *fi, unsigned from)
{
    for (unsigned w = from >> 6; w < CUA_BITMAP_WORDS; w++) {
        uint64_t bits = fi->bitmap[w];
        if (w == from >> 6) bits &= ~0ull << (from & 63);
        if (bits) return (w << 6) + (unsigned)__builtin_ctzll(bits);
    }
    return CUA_SC_COUNT;
}

static bool better(const cua_block *a, const cua_block *b)
{
    return !b || a->size < b->size || (a->size == b->size && a->off < b->off);
}

static cua_block *scan_bin(cua_block *b, uint64_t size)
{
    cua_block *best = NULL;
    for (unsigned n = 0; b && n < CUA_SCAN_MAX; b = b->fnext, n++) {
        if (b->size < size || !better(b, best)) continue;
        best = b;
        if (b->size == size) break;
    }
    return best;
}

static cua_block *find_in(const cua_freeidx *fi, uint64_t size)
{
    if (!fi || !fi->count) return NULL;
    unsigned fl = _cua_sc_floor(size);
    if (fi->bins[fl]) {
        cua_block *b = scan_bin(fi->bins[fl], size);
        if (b) return b;
    }
    unsigned i = next_bin(fi, fl + 1);
    return i < CUA_SC_COUNT ? scan_bin(fi->bins[i], size) : NULL;
}

cua_block *_cua_heap_find(cua_heap *h, uint32_t tag, uint64_t size)
{
    cua_block *any = find_in(h->idx[0], size);
    if (tag == 0 || tag >= h->ntags) return any;
    cua_block *own = find_in(h->idx[tag], size);
    if (own && better(own, any)) return own;
    return any;
}

cua_block *_cua_heap_bin_next(const cua_heap *h, uint32_t tag, unsigned *bin)
{
    const cua_freeidx *fi = tag < h->ntags ? h->idx[tag] : NULL;
    if (!fi || !fi->count || *bin >= CUA_SC_COUNT) return NULL;
    unsigned i = next_bin(fi, *bin);
    if (i >= CUA_SC_COUNT) return NULL;
    *bin = i;
    return fi->bins[i];
}

cua_status _cua_heap_ensure_tag(cua_heap *h, uint32_t tag)
{
    if (tag < h->ntags) return CUA_OK;
    cua_freeidx **ni = realloc(h->idx, (tag + 1) * sizeof *ni);
    if (!ni) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a stream's free index");
    h->idx = ni;
    for (uint32_t t = h->ntags; t <= tag; t++) {
        h->idx[t] = calloc(1, sizeof **h->idx);
        if (!h->idx[t]) {
            h->ntags = t;
            return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a stream's free index");
        }
    }
    h->ntags = tag + 1;
    return CUA_OK;
}

/* ---- split and coalesce ----------------------------------------------------------- */

static inline bool fenced(const cua_heap *h, uint64_t off)
{
    return h->fence && h->fence(h->fence_ctx, off);
}

/* Cut free block b (out of the index) to `size`; the rest stays free. */
static cua_block *cut(cua_heap *h, cua_block *b, uint64_t size, cua_block *rest)
{
    if (rest) {
        rest->off = b->off + size;
        rest->size = b->size - size;
        rest->tag = b->tag;
        rest->seq = b->seq;
        rest->state = CUA_BLOCK_FREE;
        rest->prev = b;
        rest->next = b->next;
        if (b->next) b->next->prev = rest;
        b->next = rest;
        b->size = size;
        freeidx_insert(h->idx[rest->tag], rest);
    }
    b->state = CUA_BLOCK_LIVE;
    return b;
}

/* The block starts in b's lower neighbour p (free, smaller than size) and
 * takes the front of b. */
static cua_block *slide(cua_heap *h, cua_block *p, cua_block *b, uint64_t size)
{
    uint64_t into_b = size - p->size;
    _cua_freeidx_remove(h->idx[p->tag], p);
    _cua_freeidx_remove(h->idx[b->tag], b);
    p->size = size;
    if (p->seq < b->seq) p->seq = b->seq;
    if (b->size == into_b) { /* b is used up */
        p->next = b->next;
        if (b->next) b->next->prev = p;
        block_delete(h, b);
    } else {
        b->off += into_b;
        b->size -= into_b;
        freeidx_insert(h->idx[b->tag], b);
    }
    p->state = CUA_BLOCK_LIVE;
    return p;
}

cua_block *_cua_heap_take(cua_heap *h, cua_block *b, uint64_t size, uint32_t tag,
                          uint32_t *undo_tag)
{
    cua_assert(b->state == CUA_BLOCK_FREE && b->size >= size);
    cua_assert(size && size % CUA_ALIGNMENT == 0);
    cua_block *p = b->prev;
    *undo_tag = b->tag;
    if (p && p->state == CUA_BLOCK_FREE && p->tag != b->tag && (p->tag == tag || p->tag == 0) &&
        p->size < size && !fenced(h, b->off)) {
        *undo_tag = p->tag ? p->tag : b->tag;
        return slide(h, p, b, size);
    }
    /* A block of whole pages taken from the top of the range (never-used space)
     * starts on a page boundary: it then covers no page it does not need (a
     * model's weights leave no partly used page behind when they go), and the
     * gap below it stays free for smaller blocks. Aligning every large block
     * was tried and strands far more memory in the gaps (1.12 x live). */
    uint64_t pad = h->page ? (h->page - (b->off & (h->page - 1))) & (h->page - 1) : 0;
    if (!b->next && pad && size % h->page == 0 && b->size >= pad + size) {
        cua_block *hi = block_new(h);
        if (!hi) return NULL;
        _cua_freeidx_remove(h->idx[b->tag], b);
        cut(h, b, pad, hi);
        b->state = CUA_BLOCK_FREE;
        freeidx_insert(h->idx[b->tag], b);
        b = hi;
    }
    cua_block *rest = NULL;
    if (b->size > size) {
        rest = block_new(h);
        if (!rest) return NULL;
    }
    _cua_freeidx_remove(h->idx[b->tag], b);
    return cut(h, b, size, rest);
}

/* Merge `right` (free, same tag, out of the index) into its left neighbour `left`. */
static void absorb(cua_heap *h, cua_block *left, cua_block *right)
{
    left->size += right->size;
    if (right->seq > left->seq) left->seq = right->seq;
    left->next = right->next;
    if (right->next) right->next->prev = left;
    block_delete(h, right);
}

/* Can free neighbour n join a block of `tag` across offset `edge`? */
static bool mergeable(const cua_heap *h, const cua_block *n, uint32_t tag, bool merge_any,
                      uint64_t edge)
{
    return n && n->state == CUA_BLOCK_FREE && (n->tag == tag || merge_any) && !fenced(h, edge);
}

cua_block *_cua_heap_put(cua_heap *h, cua_block *b, uint32_t tag, uint64_t seq, bool merge_any)
{
    cua_assert(tag < h->ntags); /* (b is live or pending, or free out of the index: retag) */
    b->state = CUA_BLOCK_FREE;
    b->tag = tag;
    b->seq = seq;
    b->uses = NULL;
    b->req = 0;
    if (mergeable(h, b->prev, tag, merge_any, b->off)) {
        cua_block *p = b->prev;
        _cua_freeidx_remove(h->idx[p->tag], p);
        absorb(h, p, b);
        p->tag = tag;
        b = p;
    }
    if (b->next && mergeable(h, b->next, tag, merge_any, b->next->off)) {
        _cua_freeidx_remove(h->idx[b->next->tag], b->next);
        absorb(h, b, b->next);
    }
    freeidx_insert(h->idx[tag], b);
    return b;
}

cua_block *_cua_heap_retag_any(cua_heap *h, cua_block *b)
{
    _cua_freeidx_remove(h->idx[b->tag], b);
    return _cua_heap_put(h, b, 0, b->seq, false);
}

/* Split free block b at `off` (inside it, above its start); both parts keep its tag. */
static cua_status split_free(cua_heap *h, cua_block *b, uint64_t off)
{
    cua_block *hi = block_new(h);
    if (!hi) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a block descriptor");
    _cua_freeidx_remove(h->idx[b->tag], b);
    cut(h, b, off - b->off, hi);
    b->state = CUA_BLOCK_FREE;
    freeidx_insert(h->idx[b->tag], b);
    return CUA_OK;
}

cua_block *_cua_heap_split_block(cua_heap *h, cua_block *b, uint64_t off)
{
    cua_assert(b->state == CUA_BLOCK_FREE && off > b->off && off < b->off + b->size);
    return split_free(h, b, off) == CUA_OK ? b->next : NULL;
}

cua_status _cua_heap_split_at(cua_heap *h, uint64_t off)
{
    cua_block *b = off < h->size ? _cua_heap_block_at(h, off) : NULL;
    if (!b || b->state != CUA_BLOCK_FREE || b->off == off) return CUA_OK;
    return split_free(h, b, off);
}

void _cua_heap_merge_at(cua_heap *h, uint64_t off, bool merge_any)
{
    cua_block *b = off < h->size ? _cua_heap_block_at(h, off) : NULL;
    if (!b || b->off != off || b->state != CUA_BLOCK_FREE) return;
    if (!mergeable(h, b->prev, b->tag, merge_any, off)) return;
    cua_block *p = b->prev;
    _cua_freeidx_remove(h->idx[p->tag], p);
    _cua_freeidx_remove(h->idx[b->tag], b);
    uint32_t tag = b->tag;
    absorb(h, p, b);
    p->tag = tag;
    freeidx_insert(h->idx[tag], p);
}

cua_status _cua_heap_reserve(cua_heap *h, unsigned n)
{
    unsigned have = 0;
    for (cua_block *b = h->spare; b && have < n; b = b->fnext) have++;
    if (have < n && !refill(h))
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for block descriptors");
    return CUA_OK;
}

cua_status _cua_heap_share_above(cua_heap *h, uint64_t top)
{
    cua_block *b = top < h->size ? _cua_heap_block_at(h, top) : NULL;
    if (!b || b->state != CUA_BLOCK_FREE || b->tag == 0) return CUA_OK;
    if (b->off < top) { /* the lower part keeps its tag */
        cua_status st = split_free(h, b, top);
        if (st != CUA_OK) return st;
        b = b->next;
    }
    _cua_freeidx_remove(h->idx[b->tag], b);
    b->tag = 0;
    freeidx_insert(h->idx[0], b);
    return CUA_OK;
}

/* ---- init / fini ---------------------------------------------------------------------- */

cua_status _cua_heap_init(cua_heap *h, uint64_t size)
{
    memset(h, 0, sizeof *h);
    h->size = size;
    cua_status st = _cua_heap_ensure_tag(h, 0);
    if (st != CUA_OK) return st;
    h->slot_mask = 1023;
    h->slots = calloc(h->slot_mask + 1, sizeof *h->slots);
    cua_block *b = h->slots ? block_new(h) : NULL;
    if (!b) {
        _cua_heap_fini(h);
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for the arena's heap");
    }
    b->size = size;
    b->state = CUA_BLOCK_FREE;
    freeidx_insert(h->idx[0], b);
    h->first = b;
    return CUA_OK;
}

void _cua_heap_fini(cua_heap *h)
{
    for (size_t i = 0; i < h->nslabs; i++) free(h->slabs[i]);
    free(h->slabs);
    for (uint32_t t = 0; t < h->ntags; t++) free(h->idx[t]);
    free(h->idx);
    free(h->slots);
    memset(h, 0, sizeof *h);
}

/* ---- the live-pointer map: open addressing, linear probing, backward-shift delete ---- */

static inline uint64_t slot_of(const cua_heap *h, uint64_t key)
{
    return ((key >> 9) * 0x9e3779b97f4a7c15ull >> 20) & h->slot_mask;
}

static cua_status map_grow(cua_heap *h)
{
    uint64_t ncap = (h->slot_mask + 1) * 2;
    cua_ptrslot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory to grow the pointer map");
    cua_ptrslot *old = h->slots;
    uint64_t oldcap = h->slot_mask + 1;
    h->slots = ns;
    h->slot_mask = ncap - 1;
    for (uint64_t i = 0; i < oldcap; i++) {
        if (!old[i].key) continue;
        uint64_t s = slot_of(h, old[i].key);
        while (ns[s].key) s = (s + 1) & h->slot_mask;
        ns[s] = old[i];
    }
    free(old);
    return CUA_OK;
}

cua_status _cua_heap_map_insert(cua_heap *h, cua_block *b)
{
    if ((h->live + 1) * 2 > h->slot_mask + 1) {
        cua_status st = map_grow(h);
        if (st != CUA_OK) return st;
    }
    uint64_t key = b->off + 1, s = slot_of(h, key);
    while (h->slots[s].key) s = (s + 1) & h->slot_mask;
    h->slots[s].key = key;
    h->slots[s].block = b;
    h->live++;
    return CUA_OK;
}

cua_block *_cua_heap_map_find(const cua_heap *h, uint64_t off)
{
    uint64_t key = off + 1, s = slot_of(h, key);
    for (;;) {
        uint64_t k = h->slots[s].key;
        if (k == key) return h->slots[s].block;
        if (!k) return NULL;
        s = (s + 1) & h->slot_mask;
    }
}

/* Empty slot s, moving later entries of its probe run into the hole (backward shift). */
static void map_remove_slot(cua_heap *h, uint64_t s)
{
    uint64_t hole = s;
    for (uint64_t j = (s + 1) & h->slot_mask; h->slots[j].key; j = (j + 1) & h->slot_mask) {
        uint64_t home = slot_of(h, h->slots[j].key);
        bool between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (between) continue;
        h->slots[hole] = h->slots[j];
        hole = j;
    }
    h->slots[hole].key = 0;
    h->slots[hole].block = NULL;
    h->live--;
}

cua_block *_cua_heap_map_take(cua_heap *h, uint64_t off)
{
    uint64_t key = off + 1, s = slot_of(h, key);
    for (;;) {
        uint64_t k = h->slots[s].key;
        if (k == key) break;
        if (!k) return NULL;
        s = (s + 1) & h->slot_mask;
    }
    cua_block *b = h->slots[s].block;
    map_remove_slot(h, s);
    return b;
}

void _cua_heap_map_remove(cua_heap *h, uint64_t off)
{
    (void)_cua_heap_map_take(h, off);
}

cua_block *_cua_heap_block_at(const cua_heap *h, uint64_t off)
{
    for (cua_block *b = h->first; b; b = b->next)
        if (off >= b->off && off - b->off < b->size) return b;
    return NULL;
}

/* ---- the validator: every invariant of the blocks, the free index and the map ---- */

#define CORRUPT(...) return _cua_error(CUA_ERR_CORRUPT, __VA_ARGS__)

/* Without VMM a block must lie inside one segment: no fence strictly inside it. */
static bool crosses_fence(const cua_heap *h, const cua_block *b)
{
    if (!h->fence || !h->page) return false;
    uint64_t first = (b->off & ~(h->page - 1)) + h->page;
    for (uint64_t off = first; off < b->off + b->size; off += h->page)
        if (h->fence(h->fence_ctx, off)) return true;
    return false;
}

/* Block b (after prev) in its state: a free one merged with a free lower
 * neighbour it could join, of a known tag; a live one in the pointer map. */
static cua_status check_block_state(const cua_heap *h, const cua_block *prev, const cua_block *b,
                                    bool merge_any, cua_heap_tally *t)
{
    if (b->state == CUA_BLOCK_FREE) {
        t->free_blocks++;
        if (prev && prev->state == CUA_BLOCK_FREE && !fenced(h, b->off) &&
            (prev->tag == b->tag || merge_any))
            CORRUPT("free blocks at %llu and %llu (tags %u, %u) are neighbours but not merged",
                    (unsigned long long)prev->off, (unsigned long long)b->off, prev->tag, b->tag);
        if (b->tag >= h->ntags)
            CORRUPT("free block at %llu has tag %u of %u", (unsigned long long)b->off, b->tag,
                    h->ntags);
    } else if (b->state == CUA_BLOCK_LIVE) {
        t->live++;
        t->allocated += b->size;
        if (_cua_heap_map_find(h, b->off) != b)
            CORRUPT("live block at %llu is not in the pointer map", (unsigned long long)b->off);
    } else if (b->state == CUA_BLOCK_PENDING) {
        t->pending++;
        t->pending_bytes += b->size;
    } else {
        CORRUPT("block at %llu has state %u", (unsigned long long)b->off, b->state);
    }
    return CUA_OK;
}

/* The blocks tile [0, size) in address order with sound links and sizes, and
 * none crosses a fence. */
static cua_status check_blocks(const cua_heap *h, bool merge_any, cua_heap_tally *t)
{
    uint64_t pos = 0;
    const cua_block *prev = NULL;
    if (!h->first || h->first->prev) CORRUPT("the first block is missing or has a predecessor");
    for (const cua_block *b = h->first; b; prev = b, b = b->next) {
        if (b->off != pos)
            CORRUPT("blocks do not tile: block at offset %llu, expected %llu",
                    (unsigned long long)b->off, (unsigned long long)pos);
        if (b->prev != prev) CORRUPT("block at %llu: broken prev link", (unsigned long long)b->off);
        if (!b->size || b->size % CUA_ALIGNMENT)
            CORRUPT("block at %llu: size %llu is not a positive multiple of %u",
                    (unsigned long long)b->off, (unsigned long long)b->size, CUA_ALIGNMENT);
        pos += b->size;
        if (crosses_fence(h, b))
            CORRUPT("block at %llu of %llu bytes crosses a segment edge",
                    (unsigned long long)b->off, (unsigned long long)b->size);
        cua_status st = check_block_state(h, prev, b, merge_any, t);
        if (st != CUA_OK) return st;
    }
    if (pos != h->size)
        CORRUPT("blocks cover %llu bytes of %llu", (unsigned long long)pos,
                (unsigned long long)h->size);
    return CUA_OK;
}

/* The free blocks of tag `tag`: each in the bin of its size, the bitmap and
 * the counts agreeing with the lists. *count gets the blocks. */
static cua_status check_freeidx(const cua_heap *h, uint32_t tag, uint64_t free_blocks,
                                uint64_t *count)
{
    const cua_freeidx *fi = h->idx[tag];
    uint64_t bytes = 0;
    *count = 0;
    for (unsigned bin = 0; bin < CUA_SC_COUNT; bin++) {
        bool bit = (fi->bitmap[bin >> 6] >> (bin & 63)) & 1;
        if (bit != (fi->bins[bin] != NULL))
            CORRUPT("tag %u bin %u: bitmap says %d, list says %d", tag, bin, bit,
                    fi->bins[bin] != NULL);
        const cua_block *p = NULL;
        for (const cua_block *b = fi->bins[bin]; b; p = b, b = b->fnext) {
            if (b->state != CUA_BLOCK_FREE || b->tag != tag || b->bin != bin ||
                _cua_sc_floor(b->size) != bin || b->fprev != p)
                CORRUPT("block at %llu is in tag %u bin %u but does not belong there",
                        (unsigned long long)b->off, tag, bin);
            if (++*count > free_blocks) CORRUPT("tag %u's free lists loop", tag);
            bytes += b->size;
        }
    }
    if (*count != fi->count || bytes != fi->bytes)
        CORRUPT("tag %u index counts %llu blocks / %llu bytes, lists hold %llu / %llu", tag,
                (unsigned long long)fi->count, (unsigned long long)fi->bytes,
                (unsigned long long)*count, (unsigned long long)bytes);
    return CUA_OK;
}

/* The free index holds exactly the free blocks; the pointer map exactly the live ones. */
static cua_status check_index(const cua_heap *h, const cua_heap_tally *t)
{
    uint64_t total = 0;
    for (uint32_t tag = 0; tag < h->ntags; tag++) {
        uint64_t count;
        cua_status st = check_freeidx(h, tag, t->free_blocks, &count);
        if (st != CUA_OK) return st;
        total += count;
    }
    if (total != t->free_blocks)
        CORRUPT("the free index holds %llu blocks, the range %llu", (unsigned long long)total,
                (unsigned long long)t->free_blocks);
    if (h->live != t->live)
        CORRUPT("pointer map holds %llu blocks, %llu are live", (unsigned long long)h->live,
                (unsigned long long)t->live);
    return CUA_OK;
}

cua_status _cua_heap_check(const cua_heap *h, bool merge_any, cua_heap_tally *out)
{
    cua_heap_tally t = {0};
    cua_status st = check_blocks(h, merge_any, &t);
    if (st == CUA_OK) st = check_index(h, &t);
    if (out) *out = t;
    return st;
}
