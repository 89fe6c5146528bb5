/*
 * test-api.c - the public API end to end on the host backend: allocation,
 * data, trim (also in the middle of the range), release threshold, limit,
 * footprint cap, destroy, default and current arenas. The checker runs after
 * every step.
 */
#include "test.h"


typedef struct fixture {
    cua_backend *bk;
    cua_arena *a;
} fixture;

/* An arena "api" on a host backend of 1 GiB of its own, with the release
 * threshold, limit and flags given, checked after every call. */
static cua_status setup(fixture *f, size_t release, size_t limit, unsigned flags)
{
    cua_status st = test_host_backend(GiB, 0, &f->bk);
    if (st != CUA_OK) return st;
    cua_arena_config cfg;
    test_config(&cfg);
    cfg.name = "api";
    cfg.backend = f->bk;
    cfg.release_threshold = release;
    cfg.limit = limit;
    cfg.flags = flags | CUA_ARENA_CHECK_ALWAYS;
    return cua_arena_create(&cfg, &f->a);
}

/* Destroy the arena and the backend; nothing may be left in the backend. */
static cua_status teardown(fixture *f)
{
    return test_teardown(f->a, f->bk);
}

/* The fixture of API_TEST, made by setup (NULL when it could not be). */
static fixture *made(size_t release, size_t limit, unsigned flags)
{
    static fixture f;
    return setup(&f, release, limit, flags) == CUA_OK ? &f : NULL;
}

/* A test on a fresh fixture `f` of setup(release, limit, flags), torn down after. */
#define API_TEST(name, release, limit, flags)                                              \
    TEST_WITH(name, fixture *, f, made(release, limit, flags), teardown)

static uint64_t mapped(cua_arena *a)
{
    return test_stats(a).mapped_bytes;
}

API_TEST(alloc_write_free, CUA_KEEP_ALL, 0, 0)
{
    unsigned char *p[8];
    size_t sizes[8] = {1, 511, 512, 513, 4096, 1 * MiB + 7, 3 * MiB, 9 * MiB};
    for (int i = 0; i < 8; i++) {
        CHECK_OK(cua_arena_alloc(f->a, sizes[i], 0, (void **)&p[i]));
        CHECK(((uintptr_t)p[i] % CUA_ALIGNMENT) == 0);
        memset(p[i], i + 1, sizes[i]);
    }
    for (int i = 0; i < 8; i++) {
        for (size_t j = 0; j < sizes[i]; j += 97) CHECK(p[i][j] == i + 1);
        CHECK(p[i][sizes[i] - 1] == i + 1);
        CHECK_OK(cua_free(p[i]));
        CHECK_ARENA(f->a);
    }
    CHECK_OK(cua_free(NULL));
}

API_TEST(blocks_are_cut_to_the_request_not_the_class, CUA_KEEP_ALL, 0, 0)
{
    char *a, *b;
    CHECK_OK(cua_arena_alloc(f->a, 1000001, 0, (void **)&a));
    CHECK_OK(cua_arena_alloc(f->a, 512, 0, (void **)&b));
    CHECK(b - a == 1000448); /* 1000001 rounded up to 512, not to a size class */
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(f->a, &s));
    CHECK(s.live_bytes == 1000001 + 512);
    CHECK(s.allocated_bytes == 1000448 + 512);
}

API_TEST(trim_returns_every_free_page, CUA_KEEP_ALL, 0, 0)
{
    void *p[10];
    for (int i = 0; i < 10; i++) CHECK_OK(cua_arena_alloc(f->a, 4 * MiB, 0, &p[i]));
    CHECK(mapped(f->a) == 40 * MiB);
    for (int i = 0; i < 10; i++) CHECK_OK(cua_free(p[i]));
    CHECK(mapped(f->a) == 40 * MiB); /* kept as cache */
    size_t released = 0;
    CHECK_OK(cua_arena_trim(f->a, 8 * MiB, &released));
    CHECK(released == 32 * MiB);
    CHECK(mapped(f->a) == 8 * MiB);
    CHECK_OK(cua_arena_trim(f->a, 0, &released));
    CHECK(released == 8 * MiB);
    CHECK(mapped(f->a) == 0);
    cua_backend_stats bs;
    CHECK_OK(cua_backend_get_stats(f->bk, &bs));
    CHECK(bs.handles == 0 && bs.handle_bytes == 0);
}

API_TEST(trim_in_the_middle_keeps_neighbours, CUA_KEEP_ALL, 0, 0)
{
    unsigned char *a, *b, *c;
    CHECK_OK(cua_arena_alloc(f->a, 4 * MiB, 0, (void **)&a));
    CHECK_OK(cua_arena_alloc(f->a, 4 * MiB, 0, (void **)&b));
    CHECK_OK(cua_arena_alloc(f->a, 4 * MiB, 0, (void **)&c));
    memset(a, 0xaa, 4 * MiB);
    memset(c, 0xcc, 4 * MiB);
    CHECK_OK(cua_free(b));
    size_t released = 0;
    CHECK_OK(cua_arena_trim(f->a, 0, &released));
    CHECK(released == 4 * MiB);
    CHECK(mapped(f->a) == 8 * MiB);
    CHECK(a[0] == 0xaa && a[4 * MiB - 1] == 0xaa && c[0] == 0xcc && c[4 * MiB - 1] == 0xcc);
    /* The hole is mapped again on demand. */
    CHECK_OK(cua_arena_alloc(f->a, 4 * MiB, 0, (void **)&b));
    memset(b, 0xbb, 4 * MiB);
    CHECK(mapped(f->a) == 12 * MiB);
}

API_TEST(release_threshold_zero_unmaps_at_free, 0, 0, 0)
{
    void *p;
    CHECK_OK(cua_arena_alloc(f->a, 6 * MiB, 0, &p));
    CHECK(mapped(f->a) == 6 * MiB);
    CHECK_OK(cua_free(p));
    CHECK(mapped(f->a) == 0);
    CHECK_OK(cua_arena_set_release_threshold(f->a, CUA_KEEP_ALL));
    CHECK_OK(cua_arena_alloc(f->a, 6 * MiB, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK(mapped(f->a) == 6 * MiB);
    CHECK_OK(cua_arena_set_release_threshold(f->a, 2 * MiB));
    CHECK(mapped(f->a) == 2 * MiB);
}

API_TEST(limit_fails_then_trims_cache_to_fit, CUA_KEEP_ALL, 16 * MiB, CUA_ARENA_NO_FOOTPRINT_CAP)
{
    void *a, *b, *c, *sep;
    CHECK_OK(cua_arena_alloc(f->a, 6 * MiB, 0, &a));
    CHECK_OK(cua_arena_alloc(f->a, 6 * MiB, 0, &b));
    CHECK_ST(cua_arena_alloc(f->a, 6 * MiB, 0, &c), CUA_ERR_LIMIT);
    CHECK(c == NULL);
    CHECK(strstr(cua_last_error(), "limit") != NULL);
    CHECK_ARENA(f->a);
    CHECK_OK(cua_free(b));
    CHECK_OK(cua_free(a));
    /* A cached 8 MiB hole, then a request that does not fit it: the cache is
     * trimmed to make room under the limit. */
    CHECK_OK(cua_arena_trim(f->a, 0, NULL));
    CHECK_OK(cua_arena_alloc(f->a, 8 * MiB, 0, &a));
    CHECK_OK(cua_arena_alloc(f->a, 2 * MiB, 0, &sep));
    CHECK_OK(cua_free(a));
    CHECK(mapped(f->a) == 10 * MiB);
    CHECK_OK(cua_arena_alloc(f->a, 12 * MiB, 0, &b));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(f->a, &s));
    CHECK(s.mapped_bytes <= 16 * MiB);
    CHECK(s.trimmed_bytes >= 8 * MiB);
}

static uint64_t footprint_after_swap(unsigned flags)
{
    fixture f;
    if (setup(&f, CUA_KEEP_ALL, 0, flags) != CUA_OK) return 0;
    void *a, *sep, *b;
    cua_arena_alloc(f.a, 4 * MiB, 0, &a);
    cua_arena_alloc(f.a, 2 * MiB, 0, &sep);
    cua_free(a);
    cua_arena_alloc(f.a, 6 * MiB, 0, &b); /* does not fit the 4 MiB hole */
    uint64_t m = mapped(f.a);
    if (cua_arena_check(f.a) != CUA_OK) m = 0;
    teardown(&f);
    return m;
}

TEST(footprint_cap_swaps_cache_instead_of_growing)
{
    /* Peak so far 6 MiB (+ one page of slack): the idle 4 MiB are given back. */
    CHECK(footprint_after_swap(0) == 8 * MiB);
    CHECK(footprint_after_swap(CUA_ARENA_NO_FOOTPRINT_CAP) == 12 * MiB);
}

/* The swap moves physical handles: the pages the cap gives back are mapped
 * again where the growth needs them, with no release and no create for them.
 * With CUA_ARENA_DELAYED_UNMAP their old place is unmapped in the growth;
 * by default it stays mapped (the same handles at two places) until a trim
 * (Note [moves that unmap later]). */
static void swap_moves_handles(fixture *f, bool later)
{
    unsigned char *a, *sep, *b;
    CHECK_OK(cua_arena_alloc(f->a, 4 * MiB, 0, (void **)&a));
    CHECK_OK(cua_arena_alloc(f->a, 2 * MiB, 0, (void **)&sep));
    memset(sep, 0x5a, 2 * MiB);
    CHECK_OK(cua_free(a));
    cua_backend_stats s0, s1, s2;
    CHECK_OK(cua_backend_get_stats(f->bk, &s0));
    CHECK_OK(cua_arena_alloc(f->a, 6 * MiB, 0, (void **)&b)); /* 3 new pages, 2 swapped out */
    CHECK_OK(cua_backend_get_stats(f->bk, &s1));
    CHECK(s1.calls[CUA_CALL_UNMAP] - s0.calls[CUA_CALL_UNMAP] == (later ? 0 : 1));
    CHECK(s1.calls[CUA_CALL_MAP] - s0.calls[CUA_CALL_MAP] == 3);
    CHECK(s1.calls[CUA_CALL_CREATE] - s0.calls[CUA_CALL_CREATE] == 1);
    CHECK(s1.calls[CUA_CALL_RELEASE] == s0.calls[CUA_CALL_RELEASE]);
    CHECK(s1.handles == 4 && s1.handle_bytes == 8 * MiB); /* nothing kept aside */
    CHECK(mapped(f->a) == 8 * MiB);
    memset(b, 0xa5, 6 * MiB);
    for (size_t i = 0; i < 2 * MiB; i += 4099) CHECK(sep[i] == 0x5a);
    for (size_t i = 0; i < 6 * MiB; i += 4099) CHECK(b[i] == 0xa5);
    CHECK_ARENA(f->a);
    if (later) { /* the two moved pages, still seen at their old place */
        CHECK(a[0] == 0xa5 && a[2 * MiB] == 0xa5);
    }
    uint64_t released;
    CHECK_OK(cua_arena_trim(f->a, 0, &released)); /* nothing idle: only the old places go */
    CHECK(released == 0 && mapped(f->a) == 8 * MiB);
    CHECK_OK(cua_backend_get_stats(f->bk, &s2));
    CHECK(s2.calls[CUA_CALL_UNMAP] - s1.calls[CUA_CALL_UNMAP] == (later ? 1 : 0)); /* one call */
    CHECK(s2.handles == 4);
    CHECK_ARENA(f->a);
    for (size_t i = 0; i < 6 * MiB; i += 4099) CHECK(b[i] == 0xa5);
}

API_TEST(footprint_cap_swap_reuses_handles, CUA_KEEP_ALL, 0, 0)
{
    swap_moves_handles(f, false);
}

API_TEST(footprint_cap_swap_unmaps_the_old_place_later, CUA_KEEP_ALL, 0, CUA_ARENA_DELAYED_UNMAP)
{
    swap_moves_handles(f, true);
}

/* A run of at least chunk_large (default 32 MiB) unmapped bytes takes large
 * handles; a short one takes granularity pages. */
API_TEST(large_runs_map_large_handles, CUA_KEEP_ALL, 0, 0)
{
    cua_backend_stats s0, s1, s2;
    void *big, *small;
    CHECK_OK(cua_backend_get_stats(f->bk, &s0));
    CHECK_OK(cua_arena_alloc(f->a, 100 * MiB, 0, &big)); /* 32 + 32 + 32 + 4 */
    CHECK_OK(cua_backend_get_stats(f->bk, &s1));
    CHECK(s1.calls[CUA_CALL_CREATE] - s0.calls[CUA_CALL_CREATE] == 4);
    CHECK_OK(cua_arena_alloc(f->a, 6 * MiB, 0, &small)); /* 3 x 2 */
    CHECK_OK(cua_backend_get_stats(f->bk, &s2));
    CHECK(s2.calls[CUA_CALL_CREATE] - s1.calls[CUA_CALL_CREATE] == 3);
    memset(big, 0x11, 100 * MiB);
    CHECK_OK(cua_free(big));
    size_t released = 0;
    CHECK_OK(cua_arena_trim(f->a, 0, &released));
    CHECK(released == 100 * MiB && mapped(f->a) == 6 * MiB);
    CHECK_ARENA(f->a);
}

/* A block that starts inside one chunk and covers fifteen more counts one
 * block on each (the walks step from chunk to chunk through the page table's
 * chunk ends): after its free exactly the chunks no other block touches are
 * idle, and a trim takes those and nothing else. The checker (after every
 * call) recounts every chunk from the blocks. */
API_TEST(a_block_over_many_chunks_counts_each_once, CUA_KEEP_ALL, 0, 0)
{
    void *p[16];
    for (int i = 0; i < 16; i++) CHECK_OK(cua_arena_alloc(f->a, 2 * MiB, 0, &p[i]));
    for (int i = 0; i < 16; i++) CHECK_OK(cua_free(p[i]));
    CHECK(mapped(f->a) == 32 * MiB); /* sixteen idle chunks of one page */
    cua_backend_stats s0, s1;
    CHECK_OK(cua_backend_get_stats(f->bk, &s0));
    unsigned char *x, *b, *c;
    CHECK_OK(cua_arena_alloc(f->a, 1 * MiB, 0, (void **)&x));  /* [0, 1) of chunk 0 */
    CHECK_OK(cua_arena_alloc(f->a, 29 * MiB, 0, (void **)&b)); /* [1, 30): chunks 0-14 */
    CHECK_OK(cua_arena_alloc(f->a, 2 * MiB, 0, (void **)&c));  /* [30, 32): chunk 15 */
    CHECK_OK(cua_backend_get_stats(f->bk, &s1));
    CHECK(s1.calls[CUA_CALL_CREATE] == s0.calls[CUA_CALL_CREATE]); /* all on mapped chunks */
    CHECK(b == x + 1 * MiB && c == b + 29 * MiB);
    memset(b, 0x5b, 29 * MiB);
    memset(c, 0xc0, 2 * MiB);
    size_t released = 0;
    CHECK_OK(cua_free(b));
    CHECK_OK(cua_arena_trim(f->a, 0, &released));
    CHECK(released == 28 * MiB && mapped(f->a) == 4 * MiB); /* chunk 0 still holds x */
    CHECK_OK(cua_free(x));
    CHECK_OK(cua_arena_trim(f->a, 0, &released));
    CHECK(released == 2 * MiB && mapped(f->a) == 2 * MiB);
    for (size_t i = 0; i < 2 * MiB; i += 4099) CHECK(c[i] == 0xc0);
    CHECK_ARENA(f->a);
}

/* When memory is short and the backend has no room for a large handle, the
 * run is mapped in small ones instead of failing. */
TEST(large_handle_falls_back_to_small_when_short)
{
    cua_backend *bk;
    CHECK_OK(test_host_backend(40 * MiB, 0, &bk));
    cua_arena *holes = test_arena_with(bk, "holes", CUA_ARENA_CHECK_ALWAYS, "release_threshold:0");
    CHECK(holes);
    void *p[20];
    for (int i = 0; i < 20; i++) CHECK_OK(cua_arena_alloc(holes, 2 * MiB, 0, &p[i]));
    for (int i = 0; i < 20; i += 2) CHECK_OK(cua_free(p[i])); /* 10 holes of 2 MiB */
    cua_arena *a = test_arena_with(bk, "large", CUA_ARENA_CHECK_ALWAYS,
                                   "release_threshold:0,chunk_large:8M");
    CHECK(a);
    cua_backend_stats s0 = test_backend_stats(bk), s1;
    void *q;
    CHECK_OK(cua_arena_alloc(a, 16 * MiB, 0, &q));
    s1 = test_backend_stats(bk);
    /* one 8 MiB create refused, then 8 of 2 MiB */
    CHECK(s1.calls[CUA_CALL_CREATE] - s0.calls[CUA_CALL_CREATE] == 9);
    CHECK(s1.handles - s0.handles == 8 && s1.handle_bytes - s0.handle_bytes == 16 * MiB);
    memset(q, 0x22, 16 * MiB);
    CHECK_ARENA(a);
    CHECK_OK(cua_free(q));
    for (int i = 1; i < 20; i += 2) CHECK_OK(cua_free(p[i]));
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_OK(cua_arena_destroy(holes, 0));
    CHECK_OK(cua_backend_destroy(bk));
}

TEST(destroy_busy_force_and_tombstone)
{
    fixture f;
    CHECK_OK(setup(&f, CUA_KEEP_ALL, 0, 0));
    void *p;
    CHECK_OK(cua_arena_alloc(f.a, 3 * MiB, 0, &p));
    CHECK_ST(cua_arena_destroy(f.a, 0), CUA_ERR_BUSY);
    CHECK(strstr(cua_last_error(), "1 live block") != NULL);
    CHECK_ARENA(f.a); /* nothing was lost */
    CHECK_OK(cua_arena_destroy(f.a, CUA_DESTROY_FORCE));
    void *q;
    CHECK_ST(cua_arena_alloc(f.a, 1, 0, &q), CUA_ERR_DESTROYED);
    CHECK_ST(cua_free(p), CUA_ERR_DESTROYED);
    CHECK_ST(cua_arena_destroy(f.a, 0), CUA_ERR_DESTROYED);
    CHECK_ST(cua_arena_check(f.a), CUA_ERR_DESTROYED);
    cua_backend_stats s;
    CHECK_OK(cua_backend_get_stats(f.bk, &s));
    CHECK(s.handles == 0 && s.reservations == 0 && s.mappings == 0 && s.events == 0);
    CHECK_OK(cua_backend_destroy(f.bk));
}

TEST(arena_with_its_own_backend)
{
    cua_arena *a;
    CHECK_OK(cua_arena_create(NULL, &a));
    void *p;
    CHECK_OK(cua_arena_alloc(a, 100, 7, &p));
    cua_arena *owner = NULL;
    void *base;
    size_t size;
    CHECK_OK(cua_ptr_info((char *)p + 10, &owner, &base, &size));
    CHECK(owner == a && base == p && size == 100);
    const char *name;
    CHECK_OK(cua_arena_name(a, &name));
    CHECK(strcmp(name, "arena") == 0);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_destroy(a, 0));
}

/* PyTorch's entry points: the current arena when it is on the asked device,
 * else the device's default arena (a host one here: no GPU). */
TEST(torch_entry_points_follow_the_current_arena)
{
    cua_arena *owner, *d, *mine, *other;
    cua_arena_config cfg;
    test_config(&cfg);
    cfg.flags = CUA_ARENA_CHECK_ALWAYS;
    CHECK_OK(cua_arena_create(&cfg, &mine));
    cfg.device = 3;
    CHECK_OK(cua_arena_create(&cfg, &other));
    void *p = cua_torch_alloc(1000, 0, NULL);
    CHECK(p);
    CHECK_OK(cua_ptr_info(p, &owner, NULL, NULL));
    CHECK_OK(cua_arena_default(0, &d));
    CHECK(owner == d);
    cua_torch_free(p, 1000, 0, NULL);
    CHECK_OK(cua_arena_push(mine));
    p = cua_torch_alloc(1 << 20, 0, NULL);
    void *z = cua_torch_alloc(0, 0, NULL), *z2 = cua_torch_alloc(0, 0, NULL);
    CHECK(p && z && z2 && z != z2);
    CHECK_OK(cua_ptr_info(p, &owner, NULL, NULL));
    CHECK(owner == mine);
    cua_torch_free(p, 1 << 20, 0, NULL);
    cua_torch_free(z, 0, 0, NULL);
    cua_torch_free(z2, 0, 0, NULL);
    CHECK_OK(cua_arena_push(other)); /* on device 3: torch's device 0 goes to the default */
    p = cua_torch_alloc(4096, 0, NULL);
    CHECK_OK(cua_ptr_info(p, &owner, NULL, NULL));
    CHECK(owner == d);
    cua_torch_free(p, 4096, 0, NULL);
    p = cua_torch_alloc(4096, 3, NULL);
    CHECK_OK(cua_ptr_info(p, &owner, NULL, NULL));
    CHECK(owner == other);
    cua_torch_free(p, 4096, 3, NULL);
    cua_torch_free(&owner, 8, 0, NULL); /* not ours: ignored, with a message */
    CHECK(cua_last_error()[0] != 0);
    CHECK(cua_torch_alloc((size_t)1 << 62, 3, NULL) == NULL); /* too large: NULL */
    CHECK_OK(cua_arena_pop());
    CHECK_OK(cua_arena_pop());
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(mine, &s));
    CHECK(s.live_blocks == 0);
    CHECK_OK(cua_arena_destroy(mine, 0));
    CHECK_OK(cua_arena_destroy(other, 0));
    CHECK_OK(cua_arena_destroy(d, 0));
}

TEST(default_and_current_arena)
{
    cua_arena *d, *cur, *mine;
    CHECK_OK(cua_arena_default(0, &d));
    cua_arena *d2;
    CHECK_OK(cua_arena_default(0, &d2));
    CHECK(d == d2);
    void *p;
    CHECK_OK(cua_malloc(1000, 0, &p));
    cua_arena *owner;
    CHECK_OK(cua_ptr_info(p, &owner, NULL, NULL));
    CHECK(owner == d);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_create(NULL, &mine));
    CHECK_OK(cua_arena_push(mine));
    CHECK_OK(cua_arena_current(&cur));
    CHECK(cur == mine);
    CHECK_OK(cua_malloc(1000, 0, &p));
    CHECK_OK(cua_ptr_info(p, &owner, NULL, NULL));
    CHECK(owner == mine);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_pop());
    CHECK_OK(cua_arena_current(&cur));
    CHECK(cur == NULL);
    CHECK_OK(cua_arena_destroy(mine, 0));
    CHECK_OK(cua_arena_destroy(d, 0));
    CHECK_OK(cua_arena_default(0, &d2)); /* a new default after destroy */
    CHECK(d2 != d);
    CHECK_OK(cua_arena_destroy(d2, 0));
}

TEST(two_arenas_are_independent)
{
    fixture f, g;
    CHECK_OK(setup(&f, CUA_KEEP_ALL, 0, 0));
    CHECK_OK(setup(&g, CUA_KEEP_ALL, 0, 0));
    unsigned char *p, *q;
    CHECK_OK(cua_arena_alloc(f.a, 2 * MiB, 0, (void **)&p));
    CHECK_OK(cua_arena_alloc(g.a, 2 * MiB, 0, (void **)&q));
    memset(p, 1, 2 * MiB);
    memset(q, 2, 2 * MiB);
    CHECK_OK(teardown(&f));
    CHECK(q[0] == 2 && q[2 * MiB - 1] == 2);
    cua_arena *owner;
    CHECK_OK(cua_ptr_info(q, &owner, NULL, NULL));
    CHECK(owner == g.a);
    CHECK_OK(teardown(&g));
}

/* cua_arena_alloc_at: a block made live again at its address (Note [a block
 * at a given address]), refused where the range is not free. */
API_TEST(alloc_at_makes_a_free_range_live_at_its_address, CUA_KEEP_ALL, 0, 0)
{
    unsigned char *p, *q, *r;
    CHECK_OK(cua_arena_alloc(f->a, 1 * MiB, 0, (void **)&p));
    CHECK_OK(cua_arena_alloc(f->a, 1 * MiB, 0, (void **)&q));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_alloc_at(f->a, p, 1 * MiB, 0)); /* where it was */
    void *base;
    size_t size;
    CHECK_OK(cua_ptr_info(p, NULL, &base, &size));
    CHECK(base == p && size == 1 * MiB);
    memset(p, 7, 1 * MiB);
    CHECK_ARENA(f->a);
    CHECK_ST(cua_arena_alloc_at(f->a, q, 4096, 0), CUA_ERR_BUSY);          /* live */
    CHECK_ST(cua_arena_alloc_at(f->a, p + 512, 512, 0), CUA_ERR_BUSY);     /* inside a live one */
    CHECK_ST(cua_arena_alloc_at(f->a, q + 1 * MiB - 512, 1024, 0), CUA_ERR_BUSY); /* runs into q */
    CHECK_ST(cua_arena_alloc_at(f->a, q + 1 * MiB + 1, 512, 0), CUA_ERR_INVALID_ARG); /* unaligned */
    CHECK_ST(cua_arena_alloc_at(f->a, q + 1 * MiB, 0, 0), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_arena_alloc_at(f->a, NULL, 512, 0), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_arena_alloc_at(f->a, (void *)(uintptr_t)4096, 512, 0), CUA_ERR_INVALID_ARG);
    /* far above what was ever used: its pages are mapped for it */
    r = q + 64 * MiB;
    uint64_t before = mapped(f->a);
    CHECK_OK(cua_arena_alloc_at(f->a, r, 3 * MiB, 0));
    CHECK(mapped(f->a) >= before + 3 * MiB);
    memset(r, 9, 3 * MiB);
    CHECK(p[12345] == 7 && r[3 * MiB - 1] == 9);
    CHECK_ARENA(f->a);
    CHECK_OK(cua_free(r));
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_free(p));
    CHECK_ARENA(f->a);
}

/* A block a thread's cache holds is free memory for alloc_at: caches are
 * emptied first. */
TEST(alloc_at_takes_back_what_thread_caches_hold)
{
    fixture f;
    CHECK_OK(test_host_backend(GiB, 0, &f.bk));
    cua_arena_config cfg;
    test_config(&cfg);
    cfg.name = "api_tc";
    cfg.backend = f.bk;
    cfg.release_threshold = CUA_KEEP_ALL;
    cfg.thread_cache = CUA_THREAD_CACHE_ON;
    CHECK_OK(cua_arena_create(&cfg, &f.a));
    void *p;
    CHECK_OK(cua_arena_alloc(f.a, 64 * 1024, 0, &p));
    CHECK_OK(cua_free(p)); /* into this thread's cache */
    CHECK_OK(cua_arena_alloc_at(f.a, p, 64 * 1024, 0));
    CHECK_ST(cua_free(p), CUA_OK);
    CHECK_ST(cua_free(p), CUA_ERR_DOUBLE_FREE);
    CHECK_OK(teardown(&f));
}

/* Bindings pass a handle as a signed pointer-sized integer (CuPy's
 * CFunctionAllocator takes its parameter as ssize_t): a handle must be a
 * positive intptr_t, also after its slot was reused many times. */
TEST(handles_are_positive_as_signed_integers)
{
    for (int i = 0; i < 3; i++) {
        fixture f;
        CHECK_OK(setup(&f, CUA_KEEP_ALL, 0, 0));
        CHECK((intptr_t)f.a > 0);
        CHECK_OK(teardown(&f));
    }
}

/* ---- without VMM: whole segments ------------------------------------------------------------ */

static uint64_t backend_calls(cua_backend *bk, cua_call kind)
{
    return test_backend_stats(bk).calls[kind];
}

API_TEST(no_vmm_blocks_share_a_segment_and_never_cross_one, CUA_KEEP_ALL, 0, CUA_ARENA_NO_VMM)
{
    unsigned char *a, *b, *c;
    CHECK_OK(cua_arena_alloc(f->a, 1 * MiB, 0, (void **)&a));
    CHECK_OK(cua_arena_alloc(f->a, 1 * MiB - 512, 0, (void **)&b)); /* the rest of a's segment */
    CHECK(backend_calls(f->bk, CUA_CALL_ALLOC) == 1 && b == a + 1 * MiB);
    /* 1 MiB more does not fit in the segment: it gets one of its own, whole. */
    CHECK_OK(cua_arena_alloc(f->a, 1 * MiB, 0, (void **)&c));
    CHECK(backend_calls(f->bk, CUA_CALL_ALLOC) == 2);
    CHECK(backend_calls(f->bk, CUA_CALL_CREATE) == 0 && backend_calls(f->bk, CUA_CALL_RESERVE) == 0);
    memset(a, 1, 1 * MiB);
    memset(b, 2, 1 * MiB - 512);
    memset(c, 3, 1 * MiB);
    CHECK(a[1 * MiB - 1] == 1 && b[0] == 2 && c[1 * MiB - 1] == 3);
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(f->a, &s));
    CHECK(s.mapped_bytes == 4 * MiB && s.reserved_bytes == 0);
    /* Interior and foreign pointers get answers, not crashes. */
    CHECK_ST(cua_free(a + 512), CUA_ERR_INVALID_POINTER);
}

API_TEST(no_vmm_trim_returns_only_whole_free_segments, CUA_KEEP_ALL, 0, CUA_ARENA_NO_VMM)
{
    void *a, *b, *big;
    CHECK_OK(cua_arena_alloc(f->a, 1 * MiB, 0, &a));
    CHECK_OK(cua_arena_alloc(f->a, 512 * 1024, 0, &b));
    CHECK_OK(cua_arena_alloc(f->a, 5 * MiB, 0, &big)); /* a 6 MiB segment */
    CHECK(mapped(f->a) == 8 * MiB);
    CHECK_OK(cua_free(a));
    size_t released = 0;
    CHECK_OK(cua_arena_trim(f->a, 0, &released));
    CHECK(released == 0); /* b still lives in that segment */
    CHECK_OK(cua_free(big));
    CHECK_OK(cua_arena_trim(f->a, 0, &released));
    CHECK(released == 6 * MiB && mapped(f->a) == 2 * MiB);
    CHECK_OK(cua_free(b));
    CHECK_OK(cua_arena_trim(f->a, 0, &released));
    CHECK(released == 2 * MiB && mapped(f->a) == 0);
    CHECK(backend_calls(f->bk, CUA_CALL_FREE) == 2);
    /* A pointer into a segment that went back to the driver. */
    CHECK_ST(cua_free(big), CUA_ERR_INVALID_POINTER);
    /* After the trims the free space merged into one block again: a 7 MiB block fits. */
    CHECK_OK(cua_arena_alloc(f->a, 7 * MiB, 0, &a));
    CHECK(mapped(f->a) == 8 * MiB);
}

TEST(no_vmm_backend_makes_arenas_fall_back)
{
    cua_backend *bk;
    CHECK_OK(test_host_backend_with(256 * MiB, 0, TEST_NO_VMM, &bk));
    cua_arena *a = test_arena_with(bk, NULL, CUA_ARENA_CHECK_ALWAYS, NULL);
    CHECK(a);
    void *p;
    CHECK_OK(cua_arena_alloc(a, 3 * MiB, 0, &p));
    CHECK(backend_calls(bk, CUA_CALL_ALLOC) == 1 && backend_calls(bk, CUA_CALL_RESERVE) == 0);
    cua_arena *owner;
    CHECK_OK(cua_ptr_info((char *)p + 100, &owner, NULL, NULL));
    CHECK(owner == a);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK(test_backend_stats(bk).free_bytes == 256 * MiB);
    CHECK(test_backend_clean(bk));
    CHECK_OK(cua_backend_destroy(bk));
}

/* nvtx:1 makes an arena of whole segments (compute-sanitizer refuses NVTX
 * heaps over VMM mappings), without thread caches (a cache hit would skip the
 * region's registration). */
TEST(nvtx_implies_whole_segments_and_no_thread_caches)
{
    cua_backend *bk;
    CHECK_OK(test_host_backend(256 * MiB, 0, &bk));
    /* thread caches asked for, and still off */
    cua_arena *a = test_arena_with(bk, NULL, CUA_ARENA_CHECK_ALWAYS | CUA_ARENA_NVTX,
                                   "thread_cache:on");
    CHECK(a);
    void *p;
    CHECK_OK(cua_arena_alloc(a, 3 * MiB, 0, &p));
    CHECK(backend_calls(bk, CUA_CALL_ALLOC) == 1 && backend_calls(bk, CUA_CALL_RESERVE) == 0);
    CHECK_ST(cua_arena_offload(a), CUA_ERR_NOT_SUPPORTED); /* (whole segments) */
    CHECK_OK(cua_free(p));
    for (int i = 0; i < 100; i++) { /* no cache: every pair goes through the arena */
        CHECK_OK(cua_arena_alloc(a, 4096, 0, &p));
        CHECK_OK(cua_free(p));
    }
    CHECK(test_stats(a).tcache_allocs == 0);
    CHECK_ARENA(a);
    CHECK_OK(test_teardown(a, bk));
}

/* Names are cut to 63 bytes before a character that would not fit whole:
 * never inside one (the stats JSON, the device report, events and messages
 * would carry invalid UTF-8). */
TEST(names_are_cut_on_a_utf8_character_boundary)
{
    char name[200] = "", want[64] = "";
    for (int i = 0; i < 40; i++) strcat(name, "\xc3\xa9"); /* U+00E9: 2 bytes, 80 in all */
    memcpy(want, name, 62);                               /* 31 whole characters */
    const char *cut[] = {"\xe2\x82\xac", "\xf0\x9f\x98\x80"}; /* 3 and 4 bytes */
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = name;
    cua_arena *a = NULL;
    const char *got = NULL;
    CHECK_OK(cua_arena_create(&cfg, &a));
    CHECK_OK(cua_arena_name(a, &got));
    CHECK(strcmp(got, want) == 0);
    CHECK_OK(cua_arena_destroy(a, 0));
    for (int k = 0; k < 2; k++) { /* 61 bytes of ASCII, then a 3- or 4-byte character */
        char n2[80];
        memset(n2, 'x', 61);
        strcpy(n2 + 61, cut[k]);
        cfg.name = n2;
        CHECK_OK(cua_arena_create(&cfg, &a));
        CHECK_OK(cua_arena_name(a, &got));
        CHECK(strlen(got) == 61 && strncmp(got, n2, 61) == 0);
        CHECK_OK(cua_arena_destroy(a, 0));
    }
    cfg.name = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\xc3\xa9"; /* 62 + 2 */
    CHECK_OK(cua_arena_create(&cfg, &a));
    CHECK_OK(cua_arena_name(a, &got));
    CHECK(strlen(got) == 62);
    CHECK_OK(cua_arena_destroy(a, 0));
}

/* ---- memory from a supplier ------------------------------------------------------------ */

/* A supplier of the user's: host memory (aligned to a 4 KiB page only, as
 * another allocator's segments may be), counted, with a cap on what it gives. */
typedef struct supply {
    int allocs, frees, device;
    size_t live, cap;
} supply;

static void *supply_alloc(size_t size, int device, void *ctx)
{
    supply *s = ctx;
    s->device = device;
    if (s->live + size > s->cap) return NULL;
    void *p = aligned_alloc(4096, size);
    if (!p) return NULL;
    s->allocs++;
    s->live += size;
    return p;
}

static void supply_free(void *p, size_t size, int device, void *ctx)
{
    supply *s = ctx;
    (void)device;
    free(p);
    s->frees++;
    s->live -= size;
}

/* An arena on a supplier backend takes whole segments from the supplier,
 * places blocks inside them, and gives them back at a trim and at destroy;
 * events and streams come from the inner backend. */
TEST(supplier_backend_gives_the_arena_its_segments)
{
    cua_backend *host, *bk;
    CHECK_OK(cua_backend_host_create(NULL, &host));
    supply s = {.cap = 64 * MiB, .device = -1};
    CHECK_ST(cua_backend_supplier_create(host, supply_alloc, NULL, &s, &bk), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_backend_supplier_create(host, supply_alloc, supply_free, &s, &bk));
    cua_arena *a = test_arena_with(bk, "supplied", CUA_ARENA_CHECK_ALWAYS, NULL);
    CHECK(a);
    void *p, *q, *r;
    CHECK_OK(cua_arena_alloc(a, 3 * MiB, 1, &p));
    CHECK_OK(cua_arena_alloc(a, 1000, 1, &q)); /* (inside the first segment) */
    CHECK(s.allocs == 1 && s.device == 0);
    cua_arena *owner;
    CHECK_OK(cua_ptr_info((char *)q + 10, &owner, NULL, NULL));
    CHECK(owner == a);
    memset(p, 0x5a, 3 * MiB); /* (host memory here: the supplier's segment) */
    /* More than the supplier has: an out-of-memory answer, nothing lost. */
    CHECK_ST(cua_arena_alloc(a, 128 * MiB, 1, &r), CUA_ERR_OUT_OF_MEMORY);
    CHECK(((unsigned char *)p)[3 * MiB - 1] == 0x5a);
    /* A free on another stream's block waits for an event of the inner backend. */
    CHECK_OK(cua_record_stream(p, 2));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
    size_t released = 0;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    CHECK(s.frees == s.allocs && s.live == 0 && released > 0);
    CHECK_OK(cua_arena_alloc(a, 5 * MiB, 1, &p));
    CHECK_OK(cua_arena_destroy(a, CUA_DESTROY_FORCE));
    CHECK(s.frees == s.allocs && s.live == 0);
    /* The inner backend cannot go first; the supplier backend can. */
    CHECK_ST(cua_backend_destroy(host), CUA_ERR_BUSY);
    CHECK_OK(cua_backend_destroy(bk));
    CHECK_OK(cua_backend_destroy(host));
}

/* A supplier whose segments are blocks of another arena (a MemPool whose
 * allocator is cuarena's own plain entry points): the pool's blocks free
 * into the pool, and the segments go back to the other arena at the trim,
 * by address, once they are no longer the pool's. */
static void *from_arena_alloc(size_t size, int device, void *ctx)
{
    (void)device;
    void *p = NULL;
    return cua_arena_alloc(ctx, size, 0, &p) == CUA_OK ? p : NULL;
}

static void from_arena_free(void *p, size_t size, int device, void *ctx)
{
    (void)size, (void)device, (void)ctx;
    cua_free(p);
}

TEST(supplier_backend_over_another_arena)
{
    cua_backend *host, *bk;
    CHECK_OK(cua_backend_host_create(NULL, &host));
    cua_arena *other = test_arena_with(host, "other", CUA_ARENA_CHECK_ALWAYS, NULL);
    CHECK(other);
    CHECK_OK(cua_backend_supplier_create(host, from_arena_alloc, from_arena_free, other, &bk));
    cua_arena *pool = test_arena_with(bk, "pool", CUA_ARENA_CHECK_ALWAYS, NULL);
    CHECK(pool);
    void *p, *q;
    CHECK_OK(cua_arena_alloc(pool, 3 * MiB, 0, &p));
    CHECK_OK(cua_arena_alloc(pool, 100, 0, &q));
    cua_arena *owner;
    CHECK_OK(cua_ptr_info(p, &owner, NULL, NULL));
    CHECK(owner == pool);
    cua_stats st;
    CHECK_OK(cua_arena_get_stats(other, &st));
    CHECK(st.live_blocks == 1 && st.live_bytes >= 3 * MiB);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
    size_t released;
    CHECK_OK(cua_arena_trim(pool, 0, &released));
    CHECK_OK(cua_arena_get_stats(other, &st));
    CHECK(st.live_blocks == 0);
    CHECK_OK(cua_arena_alloc(pool, 1 * MiB, 0, &p));
    CHECK_OK(cua_arena_destroy(pool, CUA_DESTROY_FORCE));
    CHECK_OK(cua_arena_get_stats(other, &st));
    CHECK(st.live_blocks == 0);
    CHECK_OK(cua_backend_destroy(bk));
    CHECK_OK(cua_arena_destroy(other, 0));
    CHECK_OK(cua_backend_destroy(host));
}
