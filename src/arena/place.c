/*
 * place.c - where an allocation goes (place.h).
 */
#include "arena/place.h"
#include "arena/stream.h"

/* Note [placement that knows what is mapped]: best fit alone is blind to
 * mapping. Over a warm run of a workload whose layout shifts (weights of a
 * new checkpoint, KV caches of other lengths), best fit lands blocks on
 * pages the footprint cap gave back while mapped free pages elsewhere sit
 * idle; the cap then unmaps those to map these, and a warm pass moves as
 * many bytes as it allocates. So when best fit's choice would map pages,
 * the free blocks of the request's size classes and up are weighed by the
 * pages each would map: at its start, and at the start and the end of every
 * mapped run inside it (where a block that fits there maps nothing); the
 * fewest pages win, then the smaller block, then the lower address. The
 * search reads the segment's bitmap of mapped pages (64 pages a word) and
 * stops at CUA_PLACE_BLOCKS blocks and CUA_PLACE_RUNS runs a block, or at
 * a place that maps nothing. It runs only when best fit would grow, so the
 * fast path is unchanged. */
#ifndef CUA_PLACE_BLOCKS
#define CUA_PLACE_BLOCKS 64
#endif
#ifndef CUA_PLACE_RUNS
#define CUA_PLACE_RUNS 32
#endif
/* Requests below this size keep best fit's place in an arena of one stream:
 * small blocks fill pages that are partly used, and weighing them moved
 * fewer bytes but cost memory at small scale (the generated llm_serving at
 * scale 1: peak mapped / live 1.036 -> 1.047 from 2 MiB up, 1.040 from 4 MiB,
 * unchanged from 32 MiB; tools/fingerprint's traces, host backend).
 *
 * Note [small blocks of many streams]: with several streams, each stream's
 * frees keep its tag until a reclaim, and the free space is cut into many
 * more small blocks; best fit then often picks, for a small request, a
 * block on pages the footprint cap gave back, while mapped free blocks that
 * fit lie elsewhere. Every such pick is a growth, and past the cap a move: a
 * page unmapped here and mapped there, under the arena lock. cuarena-mt
 * with 16 threads on their own streams (H100, sizes of the bundled GPT-2
 * trace) made 97,974 driver calls in a run, 1.29 s of them unmap and set
 * access, and ran at 0.75 M ops/s; weighing every size in an arena of more
 * than one stream, 104,011 calls, most of them event records and queries
 * (0.2 us each), 57 ms in all, 3.62 M ops/s, and peak mapped / live 1.43 ->
 * 1.38. So the size floor holds only while the arena has seen one stream. */
#ifndef CUA_PLACE_MIN
#define CUA_PLACE_MIN ((uint64_t)32 << 20)
#endif

/* Pages of [off, off + len) not mapped (a count over the segment's bitmap). */
static uint64_t missing_pages(const cua_arena *a, uint64_t off, uint64_t len)
{
    uint32_t p0 = _cua_seg_page(&a->seg, off), p1 = _cua_seg_page(&a->seg, off + len - 1) + 1;
    return (p1 - p0) - _cua_seg_mapped_pages(&a->seg, p0, p1);
}


/* Whether spot s is better than t: fewer pages to map, then the smaller free
 * block (best fit), then the lower address. */
static bool spot_better(const cua_spot *s, const cua_spot *t)
{
    if (!t->b) return true;
    if (s->missing != t->missing) return s->missing < t->missing;
    if (s->b->size != t->b->size) return s->b->size < t->b->size;
    return s->at < t->at;
}

/* Weigh the places in free block f for `asize` bytes: its start, and the
 * start and the end of each mapped run inside it (Note [placement that knows
 * what is mapped]). */
static void weigh_block(const cua_arena *a, cua_block *f, uint64_t asize, cua_spot *best)
{
    const cua_segment *seg = &a->seg;
    uint64_t end = f->off + f->size;
    cua_spot s = {f, f->off, missing_pages(a, f->off, asize)};
    if (spot_better(&s, best)) *best = s;
    uint32_t p = _cua_seg_page(seg, f->off), limit = _cua_seg_page(seg, end - 1) + 1, run_end;
    for (unsigned runs = 0; runs < CUA_PLACE_RUNS && best->missing &&
                            _cua_seg_next_mapped_run(seg, &p, limit, &run_end); runs++) {
        uint64_t rs = _cua_max((uint64_t)p << seg->gshift, f->off);
        uint64_t re = _cua_min((uint64_t)run_end << seg->gshift, end);
        uint64_t at[2] = {rs, re >= f->off + asize ? (re - asize) & ~(uint64_t)(CUA_ALIGNMENT - 1) : f->off};
        for (int i = 0; i < 2; i++) {
            if (at[i] < f->off || at[i] + asize > end) continue;
            s = (cua_spot){f, at[i], missing_pages(a, at[i], asize)};
            if (spot_better(&s, best)) *best = s;
        }
        p = run_end;
    }
}

/* The free block, and the place in it, that maps the fewest pages for
 * `asize` bytes on stream `tag`: free blocks of that tag and of tag 0, the
 * smallest bins first, at most CUA_PLACE_BLOCKS of them. */
static cua_spot place_mapped(const cua_arena *a, uint32_t tag, uint64_t asize, cua_spot best)
{
    unsigned looked = 0;
    uint32_t tags[2] = {0, tag};
    for (int t = 0; t < (tag ? 2 : 1); t++) {
        unsigned bin = _cua_sc_floor(asize);
        for (cua_block *f; best.missing && looked < CUA_PLACE_BLOCKS &&
                           (f = _cua_heap_bin_next(&a->heap, tags[t], &bin)) != NULL;
             bin++) {
            for (; f && looked < CUA_PLACE_BLOCKS; f = f->fnext) {
                if (f->size < asize) continue;
                looked++;
                weigh_block(a, f, asize, &best);
            }
        }
    }
    return best;
}

/* Best fit's place, with the pages it would map. */
static cua_spot best_fit(cua_arena *a, uint32_t tag, uint64_t asize)
{
    cua_block *b = _cua_heap_find(&a->heap, tag, asize);
    return (cua_spot){b, b ? b->off : 0, b ? missing_pages(a, b->off, asize) : 0};
}

/* At most this many pending blocks are looked at by every allocation (Note
 * [blocks used on other streams come back]). */
#ifndef CUA_POLL_PENDING_MAX
#define CUA_POLL_PENDING_MAX 8
#endif

/* Where `asize` bytes go. When best fit would map pages, first learn
 * whether other streams have finished with their free blocks (which then
 * merge with their neighbours and may fit without growth), then weigh.
 * (Weighing first and learning only when nothing mapped fits saved event
 * calls but left the free space split by stream tags: the generated
 * rl_weight_update at scale 20 then moved 2.0 GiB a warm run instead of 0.05.) */
cua_spot _cua_place(cua_arena *a, uint32_t tag, uint64_t asize, cua_placerun *run)
{
    /* Note [blocks used on other streams come back]: a block freed while
     * other streams used it (cua_record_stream) waits on the pending list
     * for their events. torch looks at those events at every allocation, so
     * a block comes back as soon as the work is done (its test_record_stream
     * expects the next allocation of the size on the block's stream to get
     * it). A few pending blocks are looked at here, on the lock path of every
     * allocation (a query each; the thread caches' path makes none); many
     * are looked at when placement would grow, below (once: not again when
     * they were looked at here). */
    bool polled = a->streams.pending && a->streams.pending_blocks <= CUA_POLL_PENDING_MAX;
    if (polled) {
        cua_status ignored; /* (one whose streams do not answer waits on) */
        (void)_cua_stream_poll_pending(a, false, &ignored);
    }
    bool others = a->streams.n > 2 || a->streams.pending;
    bool weigh = !a->seg.novmm && !(a->cfg.flags & CUA_ARENA_BLIND_PLACEMENT) &&
                 (asize >= CUA_PLACE_MIN || others);
    cua_spot s = best_fit(a, tag, asize);
    if (!s.b && !others) return s;
    if (s.b && (s.missing == 0 || (!weigh && !others))) return s;
    if (others) {
        cua_status st = CUA_OK;
        uint64_t n;
        if (run) { /* Note [events asked outside the lock] (stream.c) */
            n = _cua_stream_learn(a);
            if (!n && !run->ran && _cua_stream_plan(a, &run->ev)) return (cua_spot){0};
        } else {
            n = _cua_stream_reclaim(a, false, &st);
        }
        if (a->streams.pending && !polled) n += _cua_stream_poll_pending(a, false, &st);
        if (n) {
            s = best_fit(a, tag, asize);
            if (!s.b || s.missing == 0) return s;
        }
    }
    return weigh && s.b ? place_mapped(a, tag, asize, s) : s;
}
