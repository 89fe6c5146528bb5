/*
 * test-scaling.c - costs that must not grow with what an arena has seen
 * (host backend): a look-up on a stream among tens of thousands costs what
 * it costs among a hundred; statistics of an arena with a vast unmapped
 * tail cost what its blocks cost, not what its pages do; arenas made and
 * destroyed by the hundred thousand leave nothing behind. Each case does the
 * same work at two sizes and checks its results; the per-operation costs are
 * printed (figures to read, not assertions: the machine may be loaded).
 */
#include "test.h"

#include <time.h>
#include <unistd.h>

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

/* An arena named `name` on device `device` of backend bk (1 GiB of range). */
static cua_arena *named_on(cua_backend *bk, const char *name, int device)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = name;
    cfg.device = device;
    cfg.backend = bk;
    cfg.va_size = (size_t)1 << 30;
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
    CHECK_OK(cua_arena_destroy(small, CUA_DESTROY_FORCE));
    CHECK_OK(cua_arena_destroy(big, CUA_DESTROY_FORCE));
    CHECK_OK(cua_backend_destroy(bk));
}

/* ---- arenas made and destroyed by the hundred thousand -----------------------------------
 * A destroyed arena costs nothing: its memory waits for the next arena and
 * its handle is told stale by its generation. The process's resident memory
 * after a warm-up must not grow with the cycles, stale handles must still be
 * answered DESTROYED, and the list of the device's arenas holds the live one
 * only (a walk over it, what every out-of-memory relief makes, is timed and
 * printed at the start and at the end: figures, not an assertion).
 * CUA_CHURN_ARENAS sets the cycles (default 100000). */

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static double walk_us(void)
{
    struct timespec t0, t1;
    size_t headroom = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 1000; i++) cua_headroom(24, &headroom);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1000 / 1e3;
}

/* Under a sanitizer freed memory waits in a quarantine (ASan) or shadow
 * memory grows (TSan): RSS says nothing, and the cycles cost ten times more
 * (10^5 took 6 minutes under TSan): 10^4 of them. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CHURN_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CHURN_SANITIZED 1
#endif
#endif
#ifndef CHURN_SANITIZED
#define CHURN_SANITIZED 0
#endif

TEST(arena_churn_leaves_no_memory_behind)
{
    const char *v = getenv("CUA_CHURN_ARENAS");
    long cycles = v ? strtol(v, NULL, 10) : CHURN_SANITIZED ? 10000 : 100000;
    cua_backend *bk = host(2 * MiB, 256 * MiB);
    CHECK(bk);
    cua_arena *keep = named_on(bk, "kept", 24), *first = NULL;
    CHECK(keep);
    double walk0 = walk_us();
    size_t rss0 = 0;
    long warm = cycles < 10000 ? cycles / 10 : 1000;
    for (long i = 0; i < cycles; i++) {
        cua_arena *a = named_on(bk, "churn", 24);
        void *p = NULL;
        CHECK(a);
        CHECK_OK(cua_arena_alloc(a, 4096, 0, &p));
        CHECK_OK(cua_arena_destroy(a, CUA_DESTROY_FORCE));
        if (i == 0) first = a;
        if (i + 1 == warm) rss0 = rss_bytes();
    }
    size_t rss1 = rss_bytes();
    double walk1 = walk_us();
    void *p = NULL;
    CHECK_ST(cua_arena_alloc(first, 64, 0, &p), CUA_ERR_DESTROYED); /* the first stale handle */
    CHECK(strstr(cua_last_error(), "destroyed"));
    size_t n = 0;
    CHECK_OK(cua_arena_list(24, NULL, 0, &n));
    CHECK(n == 1);
    long growth = (long)rss1 - (long)rss0;
    printf("  %ld arenas created and destroyed: resident memory %.1f MiB after %ld (warm-up), "
           "%.1f MiB at the end (%+ld bytes, %.3f bytes per arena); a walk of the device's "
           "arenas %.2f us at start, %.2f us at the end\n",
           cycles, (double)rss0 / (1 << 20), warm, (double)rss1 / (1 << 20), growth,
           (double)growth / (double)(cycles - warm), walk0, walk1);
    if (!CHURN_SANITIZED) CHECK(growth < (long)(2 << 20)); /* page-sized noise, not per arena */
    CHECK_OK(cua_arena_destroy(keep, 0));
    CHECK_OK(cua_backend_destroy(bk));
}
