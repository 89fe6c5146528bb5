/*
 * segment_pick.c - which pages (the segment module, segment.h): the bitmap of
 * mapped pages that placement counts with, and the idle chunks a trim picks
 * as its victims (the oldest first, or the smallest runs first).
 */
#include "core/segment.h"

#include <stdlib.h>

/* ---- the mapped-page bitmap: counts and runs, a word at a time ---------------- */

uint32_t _cua_seg_mapped_pages(const cua_segment *seg, uint32_t p0, uint32_t p1)
{
    uint32_t n = 0;
    while (p0 < p1) {
        uint32_t w = p0 >> 6, b = p0 & 63, k = _cua_min(64 - b, p1 - p0);
        uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << b;
        n += (uint32_t)__builtin_popcountll(seg->mapbits[w] & mask);
        p0 += k;
    }
    return n;
}

/* The first page in [p, limit) whose bit is `on`, or limit. */
static uint32_t next_bit(const cua_segment *seg, uint32_t p, uint32_t limit, bool on)
{
    while (p < limit) {
        uint64_t word = seg->mapbits[p >> 6];
        if (!on) word = ~word;
        word &= ~0ull << (p & 63);
        if (word) return _cua_min(((p >> 6) << 6) + (uint32_t)__builtin_ctzll(word), limit);
        p = ((p >> 6) + 1) << 6;
    }
    return limit;
}

bool _cua_seg_next_mapped_run(const cua_segment *seg, uint32_t *p, uint32_t limit,
                              uint32_t *run_end)
{
    uint32_t start = next_bit(seg, *p, limit, true);
    if (start >= limit) return false;
    *p = start;
    *run_end = next_bit(seg, start, limit, false);
    return true;
}

/* ---- victims of a trim --------------------------------------------------------- */

/* The victims, oldest first: idle chunks (that no stream may still use) off
 * the head of the idle list until `want` bytes. */
size_t _cua_seg_pick_oldest(const cua_segment *seg, uint64_t want, uint64_t safe_seq,
                            cua_chunk ***out)
{
    size_t n = 0, cap = 0;
    cua_chunk **pick = NULL;
    uint64_t picked = 0;
    for (cua_chunk *c = seg->idle.idle_next; picked < want && c != &seg->idle; c = c->idle_next) {
        if (c->idle_seq > safe_seq) break;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            cua_chunk **np = realloc(pick, ncap * sizeof *np);
            if (!np) break;
            pick = np;
            cap = ncap;
        }
        pick[n++] = c;
        picked += (uint64_t)c->npages << seg->gshift;
    }
    *out = pick;
    return n;
}

/* An idle chunk of a run of address-adjacent idle chunks, for ordering. */
typedef struct run_member {
    cua_chunk *c;
    uint64_t run_bytes; /* the whole run's */
} run_member;

static int by_run_then_first(const void *x, const void *y)
{
    const run_member *p = x, *q = y;
    if (p->run_bytes != q->run_bytes) return p->run_bytes < q->run_bytes ? -1 : 1;
    return (p->c->first > q->c->first) - (p->c->first < q->c->first);
}

/* The victims, smallest fragments first (Note [eviction that keeps what will
 * be wanted]): every idle chunk that no stream may still use, grouped in runs
 * of address-adjacent idle chunks, the smallest runs first, until `want`. */
size_t _cua_seg_pick_fragments(const cua_segment *seg, uint64_t want, uint64_t safe_seq,
                               cua_chunk ***out)
{
    size_t n = 0;
    for (cua_chunk *c = seg->idle.idle_next; c != &seg->idle; c = c->idle_next) n++;
    run_member *m = malloc((n ? n : 1) * sizeof *m);
    cua_chunk **pick = malloc((n ? n : 1) * sizeof *pick);
    if (!m || !pick) {
        free(m);
        free(pick);
        return _cua_seg_pick_oldest(seg, want, safe_seq, out); /* (no host memory: the age order) */
    }
    n = 0;
    for (cua_chunk *c = seg->idle.idle_next; c != &seg->idle; c = c->idle_next)
        if (c->idle_seq <= safe_seq) m[n++] = (run_member){c, 0};
    qsort(m, n, sizeof *m, by_run_then_first); /* (all 0: by address) */
    for (size_t i = 0; i < n;) { /* each run's bytes onto its members */
        size_t j = i + 1;
        uint64_t bytes = (uint64_t)m[i].c->npages << seg->gshift;
        for (; j < n && m[j - 1].c->first + m[j - 1].c->npages == m[j].c->first; j++)
            bytes += (uint64_t)m[j].c->npages << seg->gshift;
        for (size_t k = i; k < j; k++) m[k].run_bytes = bytes;
        i = j;
    }
    qsort(m, n, sizeof *m, by_run_then_first);
    size_t k = 0;
    for (uint64_t picked = 0; k < n && picked < want; k++) {
        pick[k] = m[k].c;
        picked += (uint64_t)m[k].c->npages << seg->gshift;
    }
    free(m);
    *out = pick;
    return k;
}

