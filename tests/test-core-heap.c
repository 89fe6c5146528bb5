/*
 * test-core-heap.c - the heap (src/core/heap.h) driven alone, without an
 * arena: init, best fit, take and put, split and coalesce, stream tags, the
 * live-pointer map, reserve, share_above, retag, fences through a fake fence
 * callback. The heap's validator (_cua_heap_check) runs after every step, and
 * is shown to catch each kind of damage.
 */
#include "core/heap.h"
#include "test.h"

static cua_heap heap;
static uint64_t seq; /* the free sequence an arena would keep */

/* A fake fence: offsets listed in `fences` are chunk edges. */
static uint64_t fences[4];
static size_t nfences;

static bool fake_fence(const void *ctx, uint64_t off)
{
    (void)ctx;
    for (size_t i = 0; i < nfences; i++)
        if (fences[i] == off) return true;
    return false;
}

static cua_status init(uint64_t size)
{
    seq = 0;
    nfences = 0;
    return _cua_heap_init(&heap, size);
}

/* What an arena's alloc does to the heap: best fit on stream tag `tag`, take,
 * and the pointer map. NULL when nothing fits. */
static cua_block *get(uint64_t size, uint32_t tag)
{
    uint32_t undo;
    cua_block *b = _cua_heap_find(&heap, tag, size);
    if (b) b = _cua_heap_take(&heap, b, size, tag, &undo);
    if (b && _cua_heap_map_insert(&heap, b) != CUA_OK) return NULL;
    return b;
}

/* ... and its free: out of the map, back to the free index with `tag`. */
static cua_block *give(cua_block *b, uint32_t tag, bool merge_any)
{
    if (_cua_heap_map_take(&heap, b->off) != b) return NULL;
    return _cua_heap_put(&heap, b, tag, ++seq, merge_any);
}

static bool heap_ok(bool merge_any)
{
    return _cua_heap_check(&heap, merge_any, NULL) == CUA_OK;
}

/* The validator refuses the heap, saying `what`. */
static bool heap_refused(bool merge_any, const char *what)
{
    cua_status st = _cua_heap_check(&heap, merge_any, NULL);
    if (st == CUA_ERR_CORRUPT && strstr(cua_last_error(), what)) return true;
    fprintf(stderr, "validator: %s (%s), expected \"%s\"\n", cua_status_name(st),
            cua_last_error(), what);
    return false;
}

static uint64_t spares(void)
{
    uint64_t n = 0;
    for (const cua_block *b = heap.spare; b; b = b->fnext) n++;
    return n;
}

TEST(init_is_one_free_block)
{
    CHECK_OK(init(MiB));
    const cua_block *b = heap.first;
    CHECK(b && b->off == 0 && b->size == MiB && b->state == CUA_BLOCK_FREE && b->tag == 0);
    CHECK(!b->next && heap.ntags == 1 && heap.idx[0]->count == 1 && heap.idx[0]->bytes == MiB);
    CHECK(_cua_heap_block_at(&heap, 12345) == b && !_cua_heap_block_at(&heap, MiB));
    cua_heap_tally t;
    CHECK_OK(_cua_heap_check(&heap, false, &t));
    CHECK(t.free_blocks == 1 && t.live == 0 && t.allocated == 0 && t.pending == 0);
    _cua_heap_fini(&heap);
}

TEST(take_carves_from_the_start)
{
    CHECK_OK(init(MiB));
    cua_block *b[3];
    for (int i = 0; i < 3; i++) {
        b[i] = get(4 * KiB, 0);
        CHECK(b[i] && b[i]->off == (uint64_t)i * 4 * KiB && b[i]->state == CUA_BLOCK_LIVE);
        CHECK(heap_ok(false));
    }
    cua_heap_tally t;
    CHECK_OK(_cua_heap_check(&heap, false, &t));
    CHECK(t.live == 3 && t.allocated == 12 * KiB && t.free_blocks == 1 && heap.live == 3);
    CHECK(_cua_heap_map_find(&heap, 8 * KiB) == b[2] && !_cua_heap_map_find(&heap, 2 * KiB));
    CHECK(!get(MiB, 0)); /* the rest is 1 MiB - 12 KiB */
    CHECK(get(MiB - 12 * KiB, 0) && !heap.idx[0]->count);
    CHECK(heap_ok(false));
    _cua_heap_fini(&heap);
}

TEST(put_coalesces_with_both_neighbours)
{
    CHECK_OK(init(MiB));
    cua_block *b[4];
    for (int i = 0; i < 4; i++) CHECK((b[i] = get(8 * KiB, 0)));
    CHECK(give(b[0], 0, false) && give(b[2], 0, false));
    CHECK(heap.idx[0]->count == 3 && heap_ok(false)); /* 0, 2, and the tail */
    cua_block *m = give(b[1], 0, false);
    CHECK(m && m->off == 0 && m->size == 24 * KiB && m->seq == seq);
    CHECK(heap.idx[0]->count == 2 && heap_ok(false));
    m = give(b[3], 0, false);
    CHECK(m && m->off == 0 && m->size == MiB && heap.first == m && !m->next);
    CHECK(heap.idx[0]->count == 1 && heap.live == 0 && heap.nblocks == 1 && heap_ok(false));
    _cua_heap_fini(&heap);
}

TEST(best_fit_takes_the_smallest_then_the_lowest)
{
    CHECK_OK(init(MiB));
    /* holes of 8, 4 and 4 KiB, kept apart by live blocks */
    uint64_t sizes[] = {8 * KiB, 4 * KiB, 4 * KiB};
    cua_block *hole[3];
    for (int i = 0; i < 3; i++) {
        CHECK((hole[i] = get(sizes[i], 0)) && get(512, 0));
    }
    for (int i = 0; i < 3; i++) CHECK(give(hole[i], 0, false));
    CHECK(heap_ok(false));
    CHECK(_cua_heap_find(&heap, 0, 3 * KiB) == hole[1]); /* a tie: the lower one */
    /* An exact fit ends the bin's scan: the last one freed (the head of its bin). */
    CHECK(_cua_heap_find(&heap, 0, 4 * KiB) == hole[2]);
    CHECK(_cua_heap_find(&heap, 0, 6 * KiB) == hole[0]);
    CHECK(_cua_heap_find(&heap, 0, 9 * KiB) == _cua_heap_block_at(&heap, 17 * KiB + 512));
    CHECK(!_cua_heap_find(&heap, 0, 2 * MiB));
    _cua_heap_fini(&heap);
}

TEST(tags_keep_streams_apart)
{
    CHECK_OK(init(MiB));
    CHECK_OK(_cua_heap_ensure_tag(&heap, 2));
    CHECK(heap.ntags == 3 && heap_ok(false));
    cua_block *a = get(8 * KiB, 1), *b = get(8 * KiB, 2);
    CHECK(a && b && a->off == 0 && b->off == 8 * KiB);
    CHECK(give(a, 1, false) && a->tag == 1 && heap.idx[1]->count == 1);
    CHECK(_cua_heap_find(&heap, 2, 8 * KiB) != a); /* stream 2 may not take it ... */
    CHECK(_cua_heap_find(&heap, 1, 8 * KiB) == a); /* ... stream 1 may */
    CHECK(_cua_heap_find(&heap, 0, 8 * KiB) != a);
    CHECK(give(b, 2, false) && b->tag == 2); /* tags differ: no merge */
    CHECK(heap.first == a && a->next == b && heap_ok(false));
    /* With one stream in use tags restrict nobody, and such neighbours must merge. */
    CHECK(heap_refused(true, "are neighbours but not merged"));
    _cua_heap_merge_at(&heap, 8 * KiB, true);
    CHECK(heap.first == a && a->size == 16 * KiB && a->tag == 2 && heap_ok(false));
    _cua_heap_merge_at(&heap, 16 * KiB, true); /* and the tail, of tag 0 */
    CHECK(a->size == MiB && a->tag == 0 && heap_ok(true));
    _cua_heap_fini(&heap);
}

TEST(take_slides_into_a_free_lower_neighbour)
{
    CHECK_OK(init(MiB));
    CHECK_OK(_cua_heap_ensure_tag(&heap, 1));
    cua_block *a = get(4 * KiB, 0), *b = get(8 * KiB, 0);
    CHECK(a && b && get(4 * KiB, 0));
    CHECK(give(a, 0, false) && give(b, 1, false));
    CHECK(heap.first == a && a->next == b && heap_ok(false));
    /* 8 KiB on stream 1: b fits; a (tag 0, too small alone) lies below it. */
    uint32_t undo = 99;
    cua_block *f = _cua_heap_find(&heap, 1, 8 * KiB);
    CHECK(f == b);
    cua_block *t = _cua_heap_take(&heap, f, 8 * KiB, 1, &undo);
    CHECK(t == a && t->off == 0 && t->size == 8 * KiB && t->state == CUA_BLOCK_LIVE);
    CHECK(undo == 1 && b->off == 8 * KiB && b->size == 4 * KiB && b->tag == 1);
    CHECK_OK(_cua_heap_map_insert(&heap, t));
    CHECK(heap_ok(false));
    _cua_heap_fini(&heap);
}

TEST(whole_pages_from_the_top_start_on_a_page)
{
    CHECK_OK(init(MiB));
    heap.page = 64 * KiB;
    CHECK(get(4 * KiB, 0));
    cua_block *b = get(128 * KiB, 0);
    CHECK(b && b->off == 64 * KiB); /* not at 4 KiB */
    const cua_block *gap = _cua_heap_block_at(&heap, 4 * KiB);
    CHECK(gap && gap->state == CUA_BLOCK_FREE && gap->off == 4 * KiB && gap->size == 60 * KiB);
    CHECK(heap_ok(false));
    cua_block *small = get(8 * KiB, 0); /* the gap serves smaller blocks */
    CHECK(small && small->off == 4 * KiB && heap_ok(false));
    _cua_heap_fini(&heap);
}

TEST(fences_split_and_stop_merges)
{
    CHECK_OK(init(MiB));
    heap.page = 64 * KiB;
    heap.fence = fake_fence;
    fences[nfences++] = 128 * KiB;
    CHECK(heap_refused(false, "crosses a segment edge")); /* the one block spans it */
    CHECK_OK(_cua_heap_split_at(&heap, 128 * KiB));
    CHECK(heap.first->size == 128 * KiB && heap.idx[0]->count == 2 && heap_ok(false));
    CHECK_OK(_cua_heap_split_at(&heap, 128 * KiB)); /* a block starts there: nothing to do */
    CHECK(heap.idx[0]->count == 2);
    /* Frees do not merge across the fence, whatever the tags. */
    cua_block *lo = get(128 * KiB, 0), *hi = get(64 * KiB, 0);
    CHECK(lo && hi && lo->off == 0 && hi->off == 128 * KiB);
    CHECK(give(lo, 0, true) && give(hi, 0, true));
    CHECK(heap.first->size == 128 * KiB && heap.idx[0]->count == 2 && heap_ok(true));
    /* The fence goes (its chunk was trimmed): the neighbours must merge now. */
    nfences = 0;
    CHECK(heap_refused(false, "are neighbours but not merged"));
    _cua_heap_merge_at(&heap, 128 * KiB, false);
    CHECK(heap.first->size == MiB && heap_ok(false));
    _cua_heap_fini(&heap);
}

TEST(a_slide_never_crosses_a_fence)
{
    CHECK_OK(init(MiB));
    CHECK_OK(_cua_heap_ensure_tag(&heap, 1));
    heap.page = 4 * KiB;
    heap.fence = fake_fence;
    cua_block *a = get(4 * KiB, 0), *b = get(8 * KiB, 0);
    CHECK(a && b && get(4 * KiB, 0));
    fences[nfences++] = 4 * KiB; /* a chunk edge between a and b */
    CHECK(give(a, 0, false) && give(b, 1, false) && heap_ok(false));
    uint32_t undo;
    cua_block *t = _cua_heap_take(&heap, b, 8 * KiB, 1, &undo);
    CHECK(t == b && t->off == 4 * KiB && undo == 1);
    CHECK_OK(_cua_heap_map_insert(&heap, t));
    CHECK(heap_ok(false));
    _cua_heap_fini(&heap);
}

TEST(reserve_keeps_spare_descriptors)
{
    CHECK_OK(init(MiB));
    uint64_t before = spares();
    CHECK_OK(_cua_heap_reserve(&heap, (unsigned)before)); /* enough already */
    CHECK(spares() == before);
    CHECK_OK(_cua_heap_reserve(&heap, (unsigned)before + 1));
    CHECK(spares() > before && heap.nslabs == 2);
    for (uint64_t i = 0; i < before + 1; i++) CHECK(get(512, 0));
    CHECK(heap.nslabs == 2 && heap_ok(false)); /* no slab was needed for those splits */
    _cua_heap_fini(&heap);
}

TEST(share_above_gives_the_top_to_every_stream)
{
    CHECK_OK(init(MiB));
    CHECK_OK(_cua_heap_ensure_tag(&heap, 1));
    CHECK(get(4 * KiB, 1));
    cua_block *rest = get(MiB - 4 * KiB, 1);
    CHECK(rest && give(rest, 1, false) && rest->tag == 1);
    CHECK_OK(_cua_heap_share_above(&heap, 8 * KiB));
    const cua_block *top = _cua_heap_block_at(&heap, 8 * KiB);
    CHECK(top && top->off == 8 * KiB && top->tag == 0 && !top->next);
    CHECK(rest->off == 4 * KiB && rest->size == 4 * KiB && rest->tag == 1);
    CHECK(heap.idx[1]->count == 1 && heap.idx[0]->count == 1 && heap_ok(false));
    CHECK_OK(_cua_heap_share_above(&heap, 16 * KiB)); /* tag 0 there already */
    CHECK(heap.idx[0]->count == 1 && heap_ok(false));
    /* retag: the stream's block goes to every stream, and merges with the top */
    cua_block *m = _cua_heap_retag_any(&heap, rest);
    CHECK(m == rest && m->tag == 0 && m->size == MiB - 4 * KiB && !m->next);
    CHECK(heap.idx[1]->count == 0 && heap.idx[0]->count == 1 && heap_ok(false));
    _cua_heap_fini(&heap);
}

TEST(pending_blocks_are_neither_free_nor_mapped)
{
    CHECK_OK(init(MiB));
    cua_block *b = get(16 * KiB, 0);
    CHECK(b && _cua_heap_map_take(&heap, 0) == b && !_cua_heap_map_take(&heap, 0));
    CHECK(heap_refused(false, "is not in the pointer map"));
    b->state = CUA_BLOCK_PENDING; /* waiting for other streams */
    cua_heap_tally t;
    CHECK_OK(_cua_heap_check(&heap, false, &t));
    CHECK(t.pending == 1 && t.pending_bytes == 16 * KiB && t.live == 0);
    CHECK(_cua_heap_put(&heap, b, 0, ++seq, false) == b && b->size == MiB);
    CHECK(heap_ok(false));
    _cua_heap_fini(&heap);
}

TEST(the_pointer_map_grows_and_deletes)
{
    enum { N = 3000 }; /* three times the first table */
    static cua_block *b[N];
    CHECK_OK(init(N * 512 + MiB));
    for (int i = 0; i < N; i++) CHECK((b[i] = get(512, 0)));
    CHECK(heap.live == N && heap.slot_mask + 1 >= 2 * N && heap_ok(false));
    for (int i = 0; i < N; i += 2) CHECK(_cua_heap_map_take(&heap, b[i]->off) == b[i]);
    for (int i = 0; i < N; i++)
        CHECK(_cua_heap_map_find(&heap, b[i]->off) == (i % 2 ? b[i] : NULL));
    for (int i = 0; i < N; i += 2) CHECK_OK(_cua_heap_map_insert(&heap, b[i]));
    for (int i = N - 1; i >= 0; i--) CHECK(give(b[i], 0, false));
    CHECK(heap.live == 0 && heap.nblocks == 1 && heap_ok(false));
    _cua_heap_fini(&heap);
}

/* ---- the validator catches each kind of damage -------------------------------- */

TEST(the_validator_sees_broken_blocks)
{
    CHECK_OK(init(MiB));
    cua_block *a = get(4 * KiB, 0), *b = get(4 * KiB, 0);
    CHECK(a && b && heap_ok(false));
    b->prev = NULL;
    CHECK(heap_refused(false, "broken prev link"));
    b->prev = a;
    a->prev = b;
    CHECK(heap_refused(false, "the first block is missing"));
    a->prev = NULL;
    b->off += 512;
    CHECK(heap_refused(false, "blocks do not tile"));
    b->off -= 512;
    b->size += 1;
    CHECK(heap_refused(false, "is not a positive multiple of 512"));
    b->size -= 1;
    heap.size += 512;
    CHECK(heap_refused(false, "blocks cover"));
    heap.size -= 512;
    b->state = 7;
    CHECK(heap_refused(false, "has state 7"));
    b->state = CUA_BLOCK_LIVE;
    b->next->tag = 3;
    CHECK(heap_refused(false, "has tag 3 of 1"));
    b->next->tag = 0;
    CHECK(heap_ok(false));
    _cua_heap_fini(&heap);
}

TEST(the_validator_sees_a_broken_index)
{
    CHECK_OK(init(MiB));
    CHECK(get(4 * KiB, 0) && heap_ok(false));
    cua_freeidx *fi = heap.idx[0];
    unsigned bin = heap.first->next->bin;
    fi->bitmap[bin >> 6] ^= 1ull << (bin & 63);
    CHECK(heap_refused(false, "bitmap says"));
    fi->bitmap[bin >> 6] ^= 1ull << (bin & 63);
    heap.first->next->bin = (uint8_t)(bin - 1);
    CHECK(heap_refused(false, "does not belong there"));
    heap.first->next->bin = (uint8_t)bin;
    fi->bytes += 512;
    CHECK(heap_refused(false, "index counts"));
    fi->bytes -= 512;
    heap.live++;
    CHECK(heap_refused(false, "pointer map holds 2 blocks, 1 are live"));
    heap.live--;
    CHECK(heap_ok(false));
    _cua_heap_fini(&heap);
}
