/*
 * test-heap.c - the heap layer seen through an arena: splitting, coalescing,
 * best fit, the pointer map, and stream-ordered reuse (tags, reclaim events,
 * record_stream) on the host backend with simulated events.
 */
#include "test.h"

#include "arena/arena.h"


static cua_backend *bk;

/* An arena of 1 GiB on a host backend of its own (events held in flight
 * until completed when `manual_events`), checked after every call. */
static cua_arena *make(int manual_events)
{
    if (test_host_backend_with(GiB, 0, manual_events ? TEST_MANUAL_EVENTS : 0, &bk) != CUA_OK)
        return NULL;
    return test_arena_with(bk, NULL, CUA_ARENA_CHECK_ALWAYS, "va_size:1G");
}

static cua_status done(cua_arena *a)
{
    return test_teardown(a, bk);
}

/* A test on a fresh arena `a` of make(manual_events), torn down after. */
#define HEAP_TEST(name, manual_events) TEST_ON(name, make(manual_events), done)

/* A block on stream s that needs new pages, its free, and a trim: what
 * records events on the arena's streams and waits for them. */
static void miss_then_trim(cua_arena *a, size_t size, cua_stream s)
{
    void *p;
    CHECK_OK(cua_arena_alloc(a, size, s, &p));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_trim(a, 0, NULL));
    CHECK_ARENA(a);
}

static uint64_t free_blocks(cua_arena *a)
{
    return test_stats(a).free_blocks;
}

HEAP_TEST(split_carves_from_the_start, 0)
{
    char *p[3];
    for (int i = 0; i < 3; i++) CHECK_OK(cua_arena_alloc(a, 4 * KiB, 0, (void **)&p[i]));
    CHECK(p[1] == p[0] + 4 * KiB && p[2] == p[1] + 4 * KiB);
    CHECK(free_blocks(a) == 1); /* the rest of the range */
}

HEAP_TEST(coalesce_with_both_neighbours, 0)
{
    void *p[4];
    for (int i = 0; i < 4; i++) CHECK_OK(cua_arena_alloc(a, 8 * KiB, 0, &p[i]));
    CHECK_OK(cua_free(p[1]));
    CHECK(free_blocks(a) == 2);
    CHECK_OK(cua_free(p[0]));
    CHECK(free_blocks(a) == 2); /* p0 + p1 merged */
    CHECK_OK(cua_free(p[2]));
    CHECK(free_blocks(a) == 2); /* p0..p2 merged */
    CHECK_OK(cua_free(p[3]));
    CHECK(free_blocks(a) == 1); /* everything is one block again */
    void *q;
    CHECK_OK(cua_arena_alloc(a, 40 * KiB, 0, &q));
    CHECK(q == p[0]);
}

HEAP_TEST(best_fit_picks_the_smallest_hole, 0)
{
    size_t holes[4] = {16 * KiB, 12 * KiB, 20 * KiB, 12 * KiB};
    void *h[4], *sep[4];
    for (int i = 0; i < 4; i++) {
        CHECK_OK(cua_arena_alloc(a, holes[i], 0, &h[i]));
        CHECK_OK(cua_arena_alloc(a, 512, 0, &sep[i]));
    }
    for (int i = 0; i < 4; i++) CHECK_OK(cua_free(h[i]));
    void *q;
    CHECK_OK(cua_arena_alloc(a, 10 * KiB, 0, &q));
    CHECK(q == h[1]); /* 12 KiB: the smallest that fits, lowest address of the two */
    CHECK_OK(cua_arena_alloc(a, 14 * KiB, 0, &q));
    CHECK(q == h[0]);
    CHECK_OK(cua_arena_alloc(a, 12 * KiB, 0, &q));
    CHECK(q == h[3]);
}

HEAP_TEST(pointer_map_under_many_blocks, 0)
{
    enum { N = 20000 };
    static void *p[N];
    uint64_t rng = 42;
    for (int i = 0; i < N; i++) CHECK_OK(cua_arena_alloc(a, 512 + (test_rand(&rng) % 8) * 512, 0, &p[i]));
    void *first = p[0];
    for (int i = N - 1; i > 0; i--) { /* shuffle */
        int j = (int)(test_rand(&rng) % (uint64_t)(i + 1));
        void *t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    for (int i = 0; i < N; i++) {
        CHECK_OK(cua_free(p[i]));
        if (i % 1000 == 0) CHECK_ARENA(a);
    }
    CHECK(free_blocks(a) == 1);
    void *all;
    CHECK_OK(cua_arena_alloc(a, 100 * MiB, 0, &all));
    CHECK(all == first);
}

/* Stream reuse: a block freed on S1 goes to S1 at once, to S2 only after S1's
 * work completed (the reclaim event), and then it merges as "any stream". */
HEAP_TEST(cross_stream_reuse_waits_for_the_event, 1)
{
    const cua_stream s1 = 0x11, s2 = 0x22;
    void *A, *B, *C, *D, *E;
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &A));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &B));
    CHECK_OK(cua_free(A));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s2, &C));
    CHECK(C != A); /* S1 may still be using A */
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &D));
    CHECK(D == A); /* S1 itself reuses at once */
    CHECK_OK(cua_free(D));
    /* S1's work completes; a growth on S2 learns of the event recorded before
     * (it covers the first free of A, not the second) and records a new one. */
    CHECK_OK(cua_host_stream_complete(bk, s1));
    void *X;
    CHECK_OK(cua_arena_alloc(a, 2 * MiB, s2, &X));
    /* S1 completes again: the next growth on S2 takes A instead of new pages. */
    CHECK_OK(cua_host_stream_complete(bk, s1));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s2, &E));
    CHECK(E == A);
}

HEAP_TEST(record_stream_holds_the_block_until_the_other_stream_completes, 1)
{
    const cua_stream s1 = 0x11, s2 = 0x22;
    void *A, *B;
    CHECK_OK(cua_arena_alloc(a, 1 * MiB, s1, &A));
    CHECK_OK(cua_record_stream(A, s2));
    CHECK_OK(cua_free(A));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.pending_bytes == 1 * MiB);
    CHECK_OK(cua_arena_alloc(a, 1 * MiB, s1, &B));
    CHECK(B != A); /* S2 may still read A */
    CHECK_OK(cua_host_stream_complete(bk, s2));
    CHECK_OK(cua_arena_trim(a, CUA_KEEP_ALL, NULL)); /* polls the pending list */
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.pending_bytes == 0);
    CHECK_OK(cua_free(B));
    void *C;
    CHECK_OK(cua_arena_alloc(a, 1 * MiB, s1, &C));
    CHECK(C == A);
}

/* torch's test_record_stream: once the other stream's work is done, the
 * next allocation of the size on the block's own stream gets the block back,
 * with no trim or growth in between (the pending list is looked at by the
 * allocation, as torch's allocator processes its events at every malloc). */
HEAP_TEST(record_stream_block_comes_back_once_the_other_stream_is_done, 1)
{
    const cua_stream s1 = 0x11, s2 = 0x22;
    void *A, *B, *C, *D;
    CHECK_OK(cua_arena_alloc(a, 16, s1, &A));
    CHECK_OK(cua_record_stream(A, s2));
    CHECK_OK(cua_free(A));
    CHECK_OK(cua_arena_alloc(a, 16, s1, &B));
    CHECK(B != A); /* S2 may still read A */
    CHECK_OK(cua_host_stream_complete(bk, s2));
    CHECK_OK(cua_arena_alloc(a, 16, s1, &C));
    CHECK(C == A);
    /* Before the other stream is done, it stays out of reach. */
    CHECK_OK(cua_record_stream(C, s2));
    CHECK_OK(cua_free(C));
    CHECK_OK(cua_arena_alloc(a, 16, s1, &D));
    CHECK(D != A);
}

/* torch's test_graph_capture_reclaim_*: a block used on a stream that is
 * capturing a CUDA graph, then freed. An event recorded there would be a node
 * of the graph, and waiting for the stream (or the device) invalidates the
 * capture; the arena does neither: the block stays pending - out of reach -
 * until the capture is over, then its event is recorded as for any stream. */
HEAP_TEST(a_block_used_by_a_capturing_stream_waits_for_the_capture_to_end, 1)
{
    const cua_stream s1 = 0x11, s2 = 0x22;
    void *A, *B, *C, *D;
    CHECK_OK(cua_arena_alloc(a, 16, s1, &A));
    CHECK_OK(cua_record_stream(A, s2));
    CHECK_OK(cua_host_stream_capture(bk, s2, 1));
    CHECK_OK(cua_free(A));
    CHECK_OK(cua_arena_alloc(a, 16, s1, &B));
    CHECK(B != A);
    CHECK_OK(cua_arena_trim(a, 0, NULL)); /* (waits for what it can, not for s2) */
    CHECK_OK(cua_host_stream_capture(bk, s2, 0)); /* the capture was not invalidated */
    CHECK_OK(cua_arena_alloc(a, 16, s1, &C)); /* records the event on s2 now */
    CHECK(C != A);
    CHECK_OK(cua_host_stream_complete(bk, s2));
    CHECK_OK(cua_arena_alloc(a, 16, s1, &D));
    CHECK(D == A);
}

/* The same for the blocks a capturing stream frees: another stream's miss
 * would ask the stream's reclaim event; it leaves them to the capturing
 * stream (which reuses them in stream order) until the capture is over. */
HEAP_TEST(blocks_freed_on_a_capturing_stream_stay_its_own_until_the_capture_ends, 1)
{
    const cua_stream s1 = 0x11, s2 = 0x22;
    void *A, *B, *C, *D, *E;
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s2, &A));
    CHECK_OK(cua_host_stream_capture(bk, s2, 1));
    CHECK_OK(cua_free(A));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &B)); /* a miss: s2 is not asked */
    CHECK(B != A);
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s2, &C)); /* its own stream: in stream order */
    CHECK(C == A);
    CHECK_OK(cua_free(C));
    CHECK_OK(cua_arena_trim(a, 0, NULL));
    CHECK_OK(cua_host_stream_capture(bk, s2, 0));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &D)); /* records s2's reclaim event */
    CHECK(D != A);
    CHECK_OK(cua_host_stream_complete(bk, s2));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &E));
    CHECK(E == A);
}

HEAP_TEST(free_space_of_a_finished_stream_is_not_stranded, 1)
{
    /* Fill 16 MiB on four streams, free everything, complete all streams:
     * a 16 MiB request on a fifth stream fits in the same pages. */
    void *p[8];
    for (int i = 0; i < 8; i++) CHECK_OK(cua_arena_alloc(a, 2 * MiB, (cua_stream)(1 + i % 4), &p[i]));
    for (int i = 0; i < 8; i++) CHECK_OK(cua_free(p[i]));
    for (int i = 0; i < 4; i++) CHECK_OK(cua_host_stream_complete(bk, (cua_stream)(1 + i)));
    void *q;
    CHECK_OK(cua_arena_alloc(a, 2 * MiB, 9, &q)); /* records the reclaim events */
    CHECK_OK(cua_free(q));
    for (int i = 0; i < 4; i++) CHECK_OK(cua_host_stream_complete(bk, (cua_stream)(1 + i)));
    CHECK_OK(cua_arena_alloc(a, 16 * MiB, 9, &q));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(q == p[0]);
    CHECK(s.mapped_bytes <= 18 * MiB);
}

/* With two streams, blocks of different tags stay apart; a request too large
 * for the lower one starts there and runs into the upper one (usable by the
 * same stream), as a merged block would. */
HEAP_TEST(a_request_slides_into_a_usable_lower_neighbour, 1)
{
    void *x, *p[2], *q;
    CHECK_OK(cua_arena_alloc(a, 4 * KiB, 0x22, &x)); /* a second stream exists */
    CHECK_OK(cua_arena_alloc(a, 8 * KiB, 0x11, &p[0]));
    CHECK_OK(cua_arena_alloc(a, 8 * KiB, 0x11, &p[1]));
    CHECK_OK(cua_free(p[1])); /* tag of 0x11, below the never-used rest (tag 0) */
    CHECK(free_blocks(a) == 2);
    CHECK_OK(cua_arena_alloc(a, 40 * KiB, 0x11, &q));
    CHECK(q == p[1]);
}

/* A stream destroyed without cua_stream_retire (CuPy's die at garbage
 * collection; engines destroy theirs): the arena's next look at it (a
 * reclaim event at a miss, a wait at a free) fails. The arena survives it:
 * it waits for the whole device instead - the stream's work is done then -
 * and never touches the stream again; its blocks go to every stream. */
TEST(a_stream_destroyed_without_retire_does_not_break_the_arena)
{
    cua_arena *a = make(1);
    CHECK(a);
    const cua_stream s1 = 0x11, s2 = 0x22;
    void *A, *L, *B, *U, *C, *D;
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &A));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &L)); /* still live when s1 goes */
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s2, &B));
    CHECK_OK(cua_arena_alloc(a, 2 * MiB, s2, &U));
    CHECK_OK(cua_record_stream(U, s1)); /* used on s1 too */
    CHECK_OK(cua_free(A));
    CHECK_OK(cua_host_stream_destroy(bk, s1));
    /* the free of a block used on the gone stream: the device waited for */
    CHECK_OK(cua_free(U));
    /* the miss that looks at s1: it grows, A's room is every stream's after,
     * and U's is free (its poll needs nothing more of s1) */
    CHECK_OK(cua_arena_alloc(a, 8 * MiB, s2, &C));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.pending_bytes == 0);
    CHECK_ARENA(a);
    cua_backend_stats b0, b1;
    CHECK_OK(cua_backend_get_stats(bk, &b0));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s2, &D));
    CHECK(D == A);
    CHECK_OK(cua_free(L)); /* a block of the gone stream: to every stream, nothing recorded */
    CHECK_OK(cua_free(D));
    CHECK_OK(cua_free(C));
    CHECK_OK(cua_arena_trim(a, 0, NULL));
    CHECK_OK(cua_arena_offload(a));
    CHECK_OK(cua_arena_restore(a));
    CHECK_OK(cua_stream_retire(CUA_ALL_DEVICES, s1)); /* known gone: nothing to do */
    CHECK_ARENA(a);
    CHECK_OK(cua_backend_get_stats(bk, &b1));
    CHECK(b1.failures == b0.failures); /* the gone stream was not touched again */
    /* a new stream of the same handle is a stream of its own */
    void *E;
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &E));
    CHECK_OK(cua_free(E));
    CHECK_OK(cua_free(B));
    CHECK_OK(done(a));
}

/* Retired before its destroy: the stream was waited for, nothing touches it
 * again, and its free blocks - freed before the retire and after it - go to
 * every stream. */
HEAP_TEST(retired_stream_is_waited_for_once_and_never_touched_again, 1)
{
    const cua_stream s1 = 0x11, s2 = 0x22;
    void *A, *L, *B, *C, *D;
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &A));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s1, &L)); /* still live at the retire */
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s2, &B));
    CHECK_OK(cua_free(A));
    CHECK_OK(cua_stream_retire(CUA_ALL_DEVICES, s1));
    CHECK_ARENA(a);
    CHECK_OK(cua_host_stream_destroy(bk, s1));
    /* A's work on s1 was waited for by the retire: s2 takes it at once */
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s2, &C));
    CHECK(C == A);
    /* a block of the gone stream freed after the retire goes to every stream */
    CHECK_OK(cua_free(L));
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, s2, &D));
    CHECK(D == L);
    miss_then_trim(a, 64 * MiB, s2); /* records and waits on s2 only */
}

/* A retired stream's pending uses (record_stream) are forgotten, a live
 * block's use on it costs its free nothing, and its slot is taken again by the
 * next new stream: a program that makes and destroys a stream per request
 * does not grow the arena's tables. */
HEAP_TEST(retired_stream_uses_are_forgotten_and_its_slot_is_reused, 1)
{
    const cua_stream s1 = 0x11;
    void *P, *Q;
    CHECK_OK(cua_arena_alloc(a, 1 * MiB, s1, &P));
    CHECK_OK(cua_arena_alloc(a, 1 * MiB, s1, &Q));
    for (cua_stream s = 0x100; s < 0x100 + 50; s++) {
        if (s == 0x100) CHECK_OK(cua_record_stream(P, s));
        CHECK_OK(cua_record_stream(Q, s));
        void *x;
        CHECK_OK(cua_arena_alloc(a, 256 * KiB, s, &x));
        CHECK_OK(cua_free(x));
        if (s == 0x100) CHECK_OK(cua_free(P)); /* pending on s */
        CHECK_OK(cua_stream_retire(CUA_ALL_DEVICES, s));
        CHECK_OK(cua_host_stream_destroy(bk, s));
        CHECK_ARENA(a);
    }
    cua_stats st;
    CHECK_OK(cua_arena_get_stats(a, &st));
    CHECK(st.pending_bytes == 0); /* P's use on the first stream: forgotten */
    CHECK_OK(cua_free(Q));        /* its uses on 50 destroyed streams: none recorded */
    CHECK_ARENA(a);
    miss_then_trim(a, 16 * MiB, s1);
}

HEAP_TEST(retire_of_an_unknown_stream_or_bad_device, 1)
{
    CHECK_OK(cua_stream_retire(0, 0x77)); /* never seen: nothing to do */
    CHECK_ST(cua_stream_retire(-5, 0x77), CUA_ERR_INVALID_ARG);
    CHECK(cua_last_error()[0]);
    for (cua_stream s = 0; s <= 2; s++) /* the default streams live as long as the process */
        CHECK_ST(cua_stream_retire(CUA_ALL_DEVICES, s), CUA_ERR_INVALID_ARG);
    CHECK_ARENA(a);
}

/* A block of a retired stream freed while its arena is offloaded goes to
 * every stream too (the fuzzer's corpus found the path that kept the tag). */
HEAP_TEST(retired_stream_block_freed_while_offloaded, 1)
{
    void *A, *B;
    CHECK_OK(cua_arena_alloc(a, 1 * MiB, 0x11, &A));
    CHECK_OK(cua_arena_alloc(a, 1 * MiB, 0x22, &B));
    CHECK_OK(cua_arena_offload(a));
    CHECK_OK(cua_stream_retire(CUA_ALL_DEVICES, 0x11));
    CHECK_OK(cua_free(A));
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_restore(a));
    CHECK_ARENA(a);
}
