/*
 * test-tcache.c - per-thread caches of freed small blocks (src/arena/tcache.c), on
 * the host backend: reuse on the same stream only, exact statistics while
 * blocks wait in caches, double frees of cached blocks, frees from other
 * threads, record_stream, trim, offload and restore with blocks handed out by
 * a cache, destroy with full caches, thread exit, and a threaded stress with
 * byte patterns. The checker runs after every step.
 */
#include "test.h"
#include "arena/tcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

/* An arena of 1 GiB on a host backend of its own with the options of `conf`;
 * no flag (debug_level 2 poisons by default: caches stay off then). */
#include "test-internal.h"
static cua_arena *make(const char *conf)
{
    char all[256];
    snprintf(all, sizeof all, "va_size:1G,%s", conf);
    return test_arena_with(NULL, "tcache", 0, all);
}

static cua_status destroy(cua_arena *a)
{
    return cua_arena_destroy(a, 0);
}

/* A test on a fresh arena `a` of make(conf), destroyed after. */
#define TC_TEST(name, conf) TEST_ON(name, make(conf), destroy)

TEST(freed_block_is_reused_on_its_stream_only)
{
    cua_arena *a = make("thread_cache:on");
    CHECK(a != NULL);
    void *p, *q, *r;
    CHECK_OK(cua_arena_alloc(a, 3000, 1, &p));
    CHECK_OK(cua_free(p));
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_alloc(a, 3000, 2, &q)); /* another stream: not the cached block */
    CHECK(q != p);
    CHECK_OK(cua_arena_alloc(a, 2900, 1, &r)); /* its stream, its size class: the cached block */
    CHECK(r == p);
    /* the size asked this time, not the first time (found by the fuzzer) */
    size_t size = 0;
    void *base = NULL;
    CHECK_OK(cua_ptr_info((char *)r + 1450, NULL, &base, &size));
    CHECK(base == r && size == 2900);
    CHECK_ARENA(a);
    cua_stats s = test_stats(a);
    CHECK(s.live_blocks == 2 && s.live_bytes == 3000 + 2900);
    CHECK(s.alloc_count == 3 && s.free_count == 1);
    CHECK(s.tcache_allocs == 1 && s.tcache_frees == 1 && s.tcache_bytes == 0);
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_free(r)); /* through the lock: ptr_info made it the arena's */
    s = test_stats(a);
    CHECK(s.live_blocks == 0 && s.live_bytes == 0 && s.allocated_bytes == 0);
    CHECK(s.free_count == 3 && s.tcache_frees == 2 && s.tcache_bytes == 3072);
    CHECK_OK(cua_arena_destroy(a, 0)); /* the cached blocks are not live: no CUA_ERR_BUSY */
}

TC_TEST(statistics_are_exact_with_blocks_in_the_cache, "thread_cache:on")
{
    void *p[64];
    uint64_t live = 0, rng = 5;
    for (int round = 0; round < 20; round++) {
        size_t sz[64];
        for (int i = 0; i < 64; i++) {
            sz[i] = 512 + (size_t)(test_rand(&rng) % 60000);
            CHECK_OK(cua_arena_alloc(a, sz[i], 0, &p[i]));
            live += sz[i];
        }
        cua_stats s = test_stats(a);
        CHECK(s.live_bytes == live && s.live_blocks == 64);
        CHECK(s.peak_live_bytes >= s.live_bytes);
        for (int i = 0; i < 64; i++) {
            CHECK_OK(cua_free(p[i]));
            live -= sz[i];
        }
        s = test_stats(a);
        CHECK(s.live_bytes == 0 && s.live_blocks == 0 && s.allocated_bytes == 0);
        CHECK(s.free_bytes == s.mapped_bytes - s.pending_bytes);
        CHECK(s.alloc_count == 64u * (round + 1u) && s.free_count == s.alloc_count);
        CHECK_ARENA(a);
    }
    size_t released = 0;
    CHECK_OK(cua_arena_trim(a, 0, &released)); /* empties the cache, then unmaps */
    cua_stats s = test_stats(a);
    CHECK(released > 0 && s.mapped_bytes == 0);
    CHECK_ARENA(a);
}

TC_TEST(double_free_of_a_cached_block_is_refused, "thread_cache:on")
{
    void *p, *keep;
    CHECK_OK(cua_arena_alloc(a, 4096, 0, &keep));
    memset(keep, 0x5a, 4096);
    CHECK_OK(cua_arena_alloc(a, 4096, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK_ST(cua_free(p), CUA_ERR_DOUBLE_FREE);
    CHECK(strstr(cua_last_error(), "thread's cache") != NULL);
    CHECK_ST(cua_record_stream(p, 3), CUA_ERR_DOUBLE_FREE);
    CHECK_ST(cua_ptr_info(p, NULL, NULL, NULL), CUA_ERR_DOUBLE_FREE);
    CHECK_ARENA(a);
    /* The block comes back once, not twice. */
    void *x, *y;
    CHECK_OK(cua_arena_alloc(a, 4096, 0, &x));
    CHECK_OK(cua_arena_alloc(a, 4096, 0, &y));
    CHECK(x == p && y != p && y != keep);
    for (int i = 0; i < 4096; i++) CHECK(((unsigned char *)keep)[i] == 0x5a);
    CHECK_OK(cua_free(x));
    CHECK_OK(cua_free(y));
    CHECK_OK(cua_free(keep));
    CHECK_ARENA(a);
}

typedef struct handoff {
    cua_arena *a;
    void *p;
    cua_status st;
} handoff;

static void *free_there(void *arg)
{
    handoff *h = arg;
    h->st = cua_free(h->p);
    return NULL;
}

/* Run fn(h) on a thread of its own: true when it ran and h->st is CUA_OK. */
static bool on_thread(void *(*fn)(void *), handoff *h)
{
    return test_on_thread(fn, h) == NULL && h->st == CUA_OK;
}

static void *alloc_free_exit(void *arg)
{
    handoff *h = arg;
    void *p[32];
    h->st = CUA_OK;
    for (int i = 0; i < 32 && h->st == CUA_OK; i++) h->st = cua_arena_alloc(h->a, 1024 + 512 * (size_t)i, 0, &p[i]);
    for (int i = 0; i < 32 && h->st == CUA_OK; i++) h->st = cua_free(p[i]);
    /* and one handed out by its cache, freed by nobody before the thread ends */
    if (h->st == CUA_OK) h->st = cua_arena_alloc(h->a, 1024, 0, &h->p);
    return NULL;
}

TC_TEST(free_from_another_thread_then_double_free_here, "thread_cache:on")
{
    void *p;
    CHECK_OK(cua_arena_alloc(a, 8192, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_alloc(a, 5000, 0, &p)); /* from the cache: 5000 asked of an 8 KiB block */
    handoff h = {a, p, CUA_ERR_INVALID_ARG};
    CHECK(on_thread(free_there, &h));
    CHECK_ARENA(a);
    cua_stats s = test_stats(a);
    CHECK(s.live_bytes == 0 && s.live_blocks == 0);
    /* The other thread's free put p back into this thread's cache (Note
     * [frees from other threads]): a second free is a double free. */
    CHECK(s.tcache_frees == 2);
    CHECK_ST(cua_free(p), CUA_ERR_DOUBLE_FREE);
    CHECK_ARENA(a);
}

TC_TEST(a_free_from_another_thread_goes_back_to_the_owners_cache, "thread_cache:on")
{
    void *p, *q, *r;
    CHECK_OK(cua_arena_alloc(a, 3000, 1, &p)); /* through the lock, handed to this cache */
    handoff h = {a, p, CUA_ERR_INVALID_ARG};
    CHECK(on_thread(free_there, &h));
    CHECK_ARENA(a);
    cua_stats s = test_stats(a);
    CHECK(s.live_blocks == 0 && s.live_bytes == 0 && s.free_count == 1);
    CHECK(s.tcache_frees == 1 && s.tcache_bytes == 3072);
    /* The same stream takes it from the cache, without the lock; another
     * stream does not get it. */
    CHECK_OK(cua_arena_alloc(a, 2000, 2, &q));
    CHECK(q != p && test_stats(a).tcache_allocs == 0);
    CHECK_OK(cua_arena_alloc(a, 2900, 1, &r));
    CHECK(r == p && test_stats(a).tcache_allocs == 1);
    CHECK_ARENA(a);
    /* Freed by another thread again, then by this one: a double free. */
    h = (handoff){a, r, CUA_ERR_INVALID_ARG};
    CHECK(on_thread(free_there, &h));
    CHECK_ST(cua_free(r), CUA_ERR_DOUBLE_FREE);
    CHECK_OK(cua_free(q));
    s = test_stats(a);
    CHECK(s.live_blocks == 0 && s.live_bytes == 0 && s.allocated_bytes == 0);
    CHECK_ARENA(a);
}

TC_TEST(thread_exit_gives_its_cache_back, "thread_cache:on")
{
    handoff h = {a, NULL, CUA_ERR_INVALID_ARG};
    CHECK(on_thread(alloc_free_exit, &h));
    CHECK_ARENA(a);
    cua_stats s = test_stats(a);
    CHECK(s.live_blocks == 1 && s.live_bytes == 1024);
    CHECK(s.alloc_count == 33 && s.free_count == 32);
    CHECK_OK(cua_free(h.p)); /* the thread is gone: freed through the lock */
    size_t released;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    s = test_stats(a);
    CHECK(s.live_blocks == 0 && s.live_bytes == 0 && s.mapped_bytes == 0);
    CHECK_ARENA(a);
}

TC_TEST(record_stream_takes_the_block_from_the_cache, "thread_cache:on")
{
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, 2048, 1, &p));
    CHECK_OK(cua_record_stream(p, 2));
    CHECK_OK(cua_free(p)); /* must wait for stream 2: not into the cache */
    cua_stats s = test_stats(a);
    CHECK(s.live_blocks == 0);
    CHECK(s.pending_bytes > 0);
    /* Stream 2 has no work on the host backend: the next allocation finds
     * the block's event complete and takes it back from the pending list
     * (Note [blocks used on other streams come back], arena/place.c). */
    CHECK_OK(cua_arena_alloc(a, 2048, 1, &q));
    CHECK(q == p && test_stats(a).pending_bytes == 0);
    CHECK_OK(cua_free(q));
    CHECK_ARENA(a);
}

TC_TEST(offload_and_restore_keep_blocks_a_cache_handed_out, "thread_cache:on")
{
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, 61000, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_alloc(a, 60000, 0, &q)); /* the cache's block, asked less this time */
    CHECK(q == p);
    for (int i = 0; i < 60000; i++) ((unsigned char *)q)[i] = (unsigned char)(i * 7);
    void *c;
    CHECK_OK(cua_arena_alloc(a, 1000, 0, &c));
    CHECK_OK(cua_free(c)); /* one block waiting in the cache */
    CHECK_OK(cua_arena_offload(a));
    CHECK_ARENA(a);
    CHECK_ST(cua_arena_alloc(a, 1000, 0, &c), CUA_ERR_OFFLOADED); /* not from the cache */
    CHECK_OK(cua_arena_restore(a));
    CHECK_ARENA(a);
    int bad = 0;
    for (int i = 0; i < 60000; i++) bad += ((unsigned char *)q)[i] != (unsigned char)(i * 7);
    CHECK(bad == 0);
    cua_stats s = test_stats(a);
    CHECK(s.live_blocks == 1 && s.live_bytes == 60000);
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_arena_alloc(a, 1000, 0, &c)); /* caches open again */
    CHECK_OK(cua_free(c));
    CHECK_ARENA(a);
}

TEST(destroyed_arena_answers_its_stale_handle)
{
    cua_arena *a = make("thread_cache:on");
    CHECK(a != NULL);
    void *p, *p2, *q;
    CHECK_OK(cua_arena_alloc(a, 1000, 0, &p));
    CHECK_OK(cua_arena_alloc(a, 1000, 0, &p2));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_destroy(a, CUA_DESTROY_FORCE));
    CHECK_ST(cua_arena_alloc(a, 1000, 0, &q), CUA_ERR_DESTROYED);
    CHECK_ST(cua_free(p2), CUA_ERR_DESTROYED); /* handed out by the cache, then the arena went */
    CHECK_ST(cua_free(p), CUA_ERR_DESTROYED);
}

TEST(off_and_big_blocks_bypass_the_cache)
{
    cua_arena *a = make("thread_cache:off,thread_cache_max:64K");
    CHECK(a != NULL);
    void *p;
    CHECK_OK(cua_arena_alloc(a, 1000, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK(_cua_tc_find(test_mem(a)) == NULL);
    CHECK_OK(cua_arena_destroy(a, 0));
    a = make("thread_cache:on,thread_cache_max:64K");
    CHECK(a != NULL);
    CHECK_OK(cua_arena_alloc(a, 100000, 0, &p)); /* above thread_cache_max */
    CHECK_OK(cua_free(p));
    cua_tcache *tc = _cua_tc_find(test_mem(a));
    CHECK(tc != NULL && atomic_load(&tc->cached_bytes) == 0);
    CHECK_OK(cua_arena_alloc(a, 1000, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK(atomic_load(&tc->cached_bytes) > 0);
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_destroy(a, 0));
}

/* ---- what a review found --------------------------------------------------------- */

static cua_arena *shared_a;
static unsigned char *kept;
static _Atomic int ready, go;

static void *cache_then_exit(void *arg)
{
    (void)arg;
    void *p;
    if (cua_arena_alloc(shared_a, 1000, 0, &p) == CUA_OK) cua_free(p); /* a cache, one block in it */
    atomic_fetch_add(&ready, 1);
    while (!atomic_load(&go)) sched_yield();
    return NULL; /* the thread's end gives its cache back while the arena is destroyed */
}

TEST(destroy_while_threads_with_caches_end)
{
    for (int round = 0; round < 20; round++) {
        shared_a = make("thread_cache:on");
        CHECK(shared_a != NULL);
        atomic_store(&ready, 0);
        atomic_store(&go, 0);
        pthread_t t[12];
        for (int i = 0; i < 12; i++) CHECK(pthread_create(&t[i], NULL, cache_then_exit, NULL) == 0);
        while (atomic_load(&ready) < 12) sched_yield();
        atomic_store(&go, 1);
        CHECK_OK(cua_arena_destroy(shared_a, CUA_DESTROY_FORCE));
        for (int i = 0; i < 12; i++) pthread_join(t[i], NULL);
    }
}

static void *grow_in_cache_then_exit(void *arg)
{
    (void)arg;
    void *p;
    if (cua_arena_alloc(shared_a, 2900, 0, &p) != CUA_OK) return NULL;
    cua_free(p);
    if (cua_arena_alloc(shared_a, 3000, 0, (void **)&kept) != CUA_OK || (void *)kept != p) kept = NULL;
    else memset(kept, 0xab, 3000);
    return NULL; /* its cache goes; the block, asked 3000 bytes from the cache, stays live */
}

TEST(offload_keeps_a_block_whose_cache_is_gone)
{
    shared_a = make("thread_cache:on");
    CHECK(shared_a != NULL);
    kept = NULL;
    CHECK(test_on_thread(grow_in_cache_then_exit, NULL) == NULL);
    CHECK(kept != NULL);
    CHECK_OK(cua_arena_offload(shared_a));
    CHECK_ARENA(shared_a);
    CHECK_OK(cua_arena_restore(shared_a));
    CHECK_ARENA(shared_a);
    int bad = 0;
    for (int i = 0; kept && i < 3000; i++) bad += kept[i] != 0xab;
    CHECK(bad == 0);
    cua_stats s = test_stats(shared_a);
    CHECK(s.live_bytes == 3000 && s.live_blocks == 1);
    CHECK_OK(cua_free(kept));
    CHECK_OK(cua_arena_destroy(shared_a, 0));
}

TEST(caches_of_destroyed_arenas_are_freed)
{
    size_t before = _cua_tc_count_mine();
    for (int i = 0; i < 50; i++) {
        cua_arena *a = make("thread_cache:on");
        CHECK(a != NULL);
        void *p;
        CHECK_OK(cua_arena_alloc(a, 1000, 0, &p));
        CHECK_OK(cua_free(p));
        CHECK_OK(cua_arena_destroy(a, 0));
    }
    CHECK(_cua_tc_count_mine() <= before + 1); /* the last one's, at most */
}

/* ---- threads ------------------------------------------------------------------- */

#define T_THREADS 6
#define T_LIVE 48

typedef struct tblk {
    unsigned char *p;
    size_t n;
    unsigned char tag;
} tblk;

typedef struct tshared {
    cua_arena *a;
    pthread_mutex_t m;
    tblk q[128];
    int nq;
    _Atomic uint64_t errors;
} tshared;

typedef struct targ {
    tshared *s;
    int id;
} targ;

static void tfill(tblk *b) { memset(b->p, b->tag, b->n); }
static void tfree(tshared *s, tblk *b)
{
    for (size_t i = 0; i < b->n; i += 61)
        if (b->p[i] != b->tag) atomic_fetch_add(&s->errors, 1);
    if (cua_free(b->p) != CUA_OK) atomic_fetch_add(&s->errors, 1);
}

static void *tstress(void *arg)
{
    targ *t = arg;
    tshared *s = t->s;
    tblk mine[T_LIVE];
    int n = 0;
    uint64_t rng = 99 + (uint64_t)t->id;
    const char *v = getenv("CUA_THREADS_OPS");
    long ops = v && atol(v) > 0 ? atol(v) : 20000;
    cua_stream stream = (cua_stream)(1 + t->id % 3); /* some threads share a stream */
    for (long op = 0; op < ops; op++) {
        uint64_t r = test_rand(&rng) % 100;
        if (n < T_LIVE && (n == 0 || r < 50)) {
            tblk b = {.n = 512 + (size_t)(test_rand(&rng) % 20000),
                      .tag = (unsigned char)(t->id * 20 + op % 20 + 1)};
            if (cua_arena_alloc(s->a, b.n, stream, (void **)&b.p) != CUA_OK) {
                atomic_fetch_add(&s->errors, 1);
                continue;
            }
            tfill(&b);
            mine[n++] = b;
        } else if (r < 85) {
            int k = (int)(test_rand(&rng) % (uint64_t)n);
            tfree(s, &mine[k]);
            mine[k] = mine[--n];
        } else if (r < 97) { /* cross-thread frees */
            pthread_mutex_lock(&s->m);
            if (s->nq < 128) {
                int k = (int)(test_rand(&rng) % (uint64_t)n);
                s->q[s->nq++] = mine[k];
                mine[k] = mine[--n];
                pthread_mutex_unlock(&s->m);
            } else {
                tblk b = s->q[--s->nq];
                pthread_mutex_unlock(&s->m);
                tfree(s, &b);
            }
        } else if (r < 99) {
            cua_stats st;
            if (cua_arena_get_stats(s->a, &st) != CUA_OK) atomic_fetch_add(&s->errors, 1);
        } else {
            if (cua_arena_trim(s->a, 0, NULL) != CUA_OK || cua_arena_check(s->a) != CUA_OK)
                atomic_fetch_add(&s->errors, 1);
        }
    }
    while (n > 0) tfree(s, &mine[--n]);
    return NULL;
}

TEST(threads_share_an_arena_through_their_caches)
{
    static tshared s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.m, NULL);
    s.a = make("thread_cache:on,thread_cache_bytes:256K");
    CHECK(s.a != NULL);
    targ args[T_THREADS];
    for (int i = 0; i < T_THREADS; i++) args[i] = (targ){&s, i};
    CHECK(test_threads(T_THREADS, tstress, args, sizeof args[0]));
    while (s.nq > 0) tfree(&s, &s.q[--s.nq]);
    CHECK(atomic_load(&s.errors) == 0);
    CHECK_ARENA(s.a);
    cua_stats st = test_stats(s.a);
    CHECK(st.live_blocks == 0 && st.live_bytes == 0 && st.alloc_count == st.free_count);
    size_t released;
    CHECK_OK(cua_arena_trim(s.a, 0, &released));
    st = test_stats(s.a);
    CHECK(st.mapped_bytes == 0);
    CHECK_OK(cua_arena_destroy(s.a, 0));
}

/* One thread allocates and frees a block through its cache while another
 * reads the statistics: every snapshot adds up (live <= allocated <= mapped).
 * A hit moves the cache's counters one at a time; the statistics once summed
 * them between two (the GPU thread stress found live > allocated). */
typedef struct {
    cua_arena *a;
    atomic_int stop;
} hitter;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *hit_loop(void *p)
{
    hitter *h = p;
    void *x;
    while (!atomic_load_explicit(&h->stop, memory_order_relaxed))
        for (int i = 0; i < 1000; i++)
            if (cua_arena_alloc(h->a, 1000, 7, &x) != CUA_OK || cua_free(x) != CUA_OK) return (void *)1;
    return NULL;
}

TEST(statistics_add_up_while_another_thread_hits_its_cache)
{
    static hitter h;
    h.a = make("thread_cache:on");
    CHECK(h.a != NULL);
    atomic_init(&h.stop, 0);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, hit_loop, &h) == 0);
    long bad = 0, reads = 0;
    for (uint64_t t0 = now_ns(); now_ns() - t0 < 1500000000u; reads++) {
        cua_stats st = test_stats(h.a);
        if (st.live_bytes > st.allocated_bytes || st.allocated_bytes > st.mapped_bytes ||
            st.live_blocks > 1)
            bad++;
    }
    atomic_store(&h.stop, 1);
    void *rc;
    pthread_join(th, &rc);
    CHECK(rc == NULL);
    CHECK(test_stats(h.a).tcache_allocs > 0); /* the hits happened: caches were on */
    if (bad) fprintf(stderr, "  %ld of %ld snapshots did not add up\n", bad, reads);
    CHECK(bad == 0);
    CHECK_ARENA(h.a);
    CHECK_OK(cua_arena_destroy(h.a, 0));
}

static void *free_it(void *p)
{
    return (void *)(intptr_t)cua_free(p);
}

/* A block cached on a stream that is then retired must not come back keyed by
 * that handle: the driver gives a new stream the destroyed one's handle, and
 * the new stream's work on the block would never be waited for (the review of
 * cua_stream_retire found it; mode 1: plain, mode 2: another stream takes the
 * retired slot first). */
TEST(retire_takes_back_what_caches_hold_for_the_stream)
{
    for (int mode = 1; mode <= 2; mode++) {
        cua_backend *bk;
        CHECK_OK(test_host_backend_with(GiB, 0, TEST_MANUAL_EVENTS, &bk));
        /* (no CUA_ARENA_CHECK_ALWAYS: its checks flush the caches) */
        cua_arena *a =
            test_arena_with(bk, NULL, test_default_flags(), "va_size:1G,thread_cache:on");
        CHECK(a);
        const cua_stream S1 = 0x11, S2 = 0x22, S3 = 0x33, S4 = 0x44;
        void *X, *Y, *Z, *W, *q;
        CHECK_OK(cua_arena_alloc(a, ((size_t)64 << 10), S1, &X));
        CHECK_OK(cua_arena_alloc(a, ((size_t)64 << 10), S2, &Y));
        CHECK_OK(cua_free(X)); /* into this thread's cache, under S1 */
        CHECK_OK(cua_stream_retire(CUA_ALL_DEVICES, S1));
        if (mode == 2) CHECK_OK(cua_arena_alloc(a, ((size_t)2 << 20), S4, &q));
        /* a new stream with S1's handle takes a block and keeps using it */
        CHECK_OK(cua_arena_alloc(a, ((size_t)64 << 10), S1, &Z));
        CHECK(test_on_thread(free_it, Z) == NULL);
        /* its work is not done (manual events): nobody else may take Z yet */
        CHECK_OK(cua_arena_alloc(a, ((size_t)64 << 10), mode == 2 ? S4 : S3, &W));
        CHECK(W != Z);
        CHECK_ARENA(a);
        CHECK_OK(test_teardown(a, bk));
    }
}
