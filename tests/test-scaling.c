/*
 * test-scaling.c - costs that must not grow with what an arena has seen
 * (host backend): a look-up on a stream among tens of thousands costs what
 * it costs among a hundred; statistics of an arena with a vast unmapped
 * tail cost what its blocks cost, not what its pages do. Each case times
 * the same work at two sizes and wants the per-operation cost within a
 * small factor (generous: the machine may be loaded), and prints both.
 */
#include "test.h"

#include <time.h>

#define MiB ((size_t)1 << 20)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static cua_backend *host(size_t granularity, size_t capacity)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.granularity = granularity;
    hc.capacity = capacity;
    cua_backend *bk = NULL;
    return cua_backend_host_create(&hc, &bk) == CUA_OK ? bk : NULL;
}

static cua_arena *arena_on(cua_backend *bk, size_t va)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "scaling";
    cfg.backend = bk;
    cfg.va_size = va;
    cfg.thread_cache = CUA_THREAD_CACHE_OFF;
    cua_arena *a = NULL;
    return cua_arena_create(&cfg, &a) == CUA_OK ? a : NULL;
}

static cua_stream stream_no(long i) { return (cua_stream)(0x10000 + (uintptr_t)i * 16); }

/* Nanoseconds per alloc + free pair, round robin over `nstreams` streams the
 * arena has all seen (every pair misses the last-stream cache). */
static double ns_per_op(long nstreams, long ops, int *ok)
{
    *ok = 0;
    cua_backend *bk = host(2 * MiB, 4096 * MiB);
    cua_arena *a = bk ? arena_on(bk, (size_t)64 << 30) : NULL;
    if (!a) return 0;
    void *p = NULL;
    for (long i = 0; i < nstreams; i++) {
        if (cua_arena_alloc(a, 4096, stream_no(i), &p) != CUA_OK || cua_free(p) != CUA_OK) return 0;
    }
    double t0 = now_s();
    for (long k = 0; k < ops; k++) {
        long i = (k * 7919) % nstreams;
        if (cua_arena_alloc(a, 4096, stream_no(i), &p) != CUA_OK || cua_free(p) != CUA_OK) return 0;
    }
    double ns = (now_s() - t0) / (double)ops * 1e9;
    if (cua_arena_check(a) != CUA_OK || cua_arena_destroy(a, 0) != CUA_OK ||
        cua_backend_destroy(bk) != CUA_OK)
        return 0;
    *ok = 1;
    return ns;
}

TEST(stream_lookups_do_not_grow_with_streams_seen)
{
    int ok1, ok2;
    long ops = getenv("CUA_SCALING_OPS") ? atol(getenv("CUA_SCALING_OPS")) : 20000;
    double few = ns_per_op(8000, ops, &ok1), many = ns_per_op(64000, ops, &ok2);
    CHECK(ok1 && ok2);
    printf("  alloc + free round robin: %.0f ns per pair over 8000 streams, %.0f ns over 64000\n",
           few, many);
    CHECK(many < 6 * few); /* (O(streams) per look-up: 8 times; the rest is the caches) */
}

/* cua_arena_get_stats of an arena whose range has 2^24 pages of 4 KiB (64
 * GiB), all of them unmapped above a few blocks. */
TEST(stats_do_not_walk_the_pages_of_the_free_tail)
{
    cua_backend *bk = host(4096, 256 * MiB);
    CHECK(bk);
    cua_arena *small = arena_on(bk, (size_t)1 << 30), *big = arena_on(bk, (size_t)64 << 30);
    CHECK(small && big);
    void *p[4];
    for (int i = 0; i < 4; i++) CHECK_OK(cua_arena_alloc(big, MiB, 0, &p[i]));
    CHECK_OK(cua_free(p[1]));
    for (int i = 0; i < 4; i++) CHECK_OK(cua_arena_alloc(small, MiB, 0, &p[i]));
    CHECK_OK(cua_free(p[1]));
    cua_stats s;
    double t[2];
    cua_arena *which[2] = {small, big};
    for (int k = 0; k < 2; k++) {
        double t0 = now_s();
        for (int i = 0; i < 20; i++) CHECK_OK(cua_arena_get_stats(which[k], &s));
        t[k] = (now_s() - t0) / 20 * 1e6;
        CHECK(s.largest_free_bytes == MiB && s.free_bytes == MiB);
    }
    printf("  statistics: %.1f us for 1 GiB of 4 KiB pages, %.1f us for 64 GiB\n", t[0], t[1]);
    CHECK(t[1] < 8 * t[0] + 200);
    CHECK_OK(cua_arena_destroy(small, CUA_DESTROY_FORCE));
    CHECK_OK(cua_arena_destroy(big, CUA_DESTROY_FORCE));
    CHECK_OK(cua_backend_destroy(bk));
}
