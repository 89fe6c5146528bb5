/*
 * test.h - the tests' tiny harness. A test file defines cases with TEST(name)
 * and includes this once; main() runs every case (or those named on the
 * command line) and ends with "N passed, N failed". A failed CHECK ends its case.
 */
#ifndef CUA_TEST_H
#define CUA_TEST_H

#include "cuarena.h"
#include "cuarena_backend.h"
#include "cuarena_frameworks.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
struct test_case { const char *name; test_fn fn; };

#define TEST_MAX 256
static struct test_case test_cases[TEST_MAX];
static int test_count;
static int test_failed_flag;

#define TEST(name)                                                                     \
    static void name(void);                                                            \
    __attribute__((constructor)) static void register_##name(void)                     \
    {                                                                                  \
        if (test_count < TEST_MAX) test_cases[test_count++] = (struct test_case){#name, name}; \
    }                                                                                  \
    static void name(void)

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n", __FILE__,   \
                    __LINE__, #cond, cua_last_error());                                \
            test_failed_flag = 1;                                                      \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define CHECK_ST(expr, want)                                                           \
    do {                                                                               \
        cua_status st_ = (expr);                                                       \
        if (st_ != (want)) {                                                           \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n  last error: %s\n",  \
                    __FILE__, __LINE__, #expr, cua_status_name(st_),                   \
                    cua_status_name(want), cua_last_error());                          \
            test_failed_flag = 1;                                                      \
            return;                                                                    \
        }                                                                              \
    } while (0)

#define CHECK_OK(expr) CHECK_ST(expr, CUA_OK)

/* A test that runs on a fixture: `setup` (an expression) makes the `type`
 * the body sees as `var` (NULL: the test fails), and `teardown(var)` runs
 * after the body, whether it passed or not, and must return CUA_OK. */
#define TEST_WITH(name, type, var, setup, teardown)                                    \
    static void name##_on(type var __attribute__((unused)));                           \
    TEST(name)                                                                         \
    {                                                                                  \
        type var = (setup);                                                            \
        CHECK(var);                                                                    \
        name##_on(var);                                                                \
        CHECK_OK(teardown(var));                                                       \
    }                                                                                  \
    static void name##_on(type var __attribute__((unused)))

/* A test on an arena `a` made by `setup`, given to `teardown` after. */
#define TEST_ON(name, setup, teardown) TEST_WITH(name, cua_arena *, a, setup, teardown)

#define CHECK_ARENA(a) CHECK_OK(cua_arena_check(a))

/* ---- the fixture: sizes, host arenas, leak checks ----------------------------------- */

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* A config for a test arena: the defaults, on a host backend of its own
 * whatever the machine has (a test that wants the GPU says so). */
static inline void test_config(cua_arena_config *cfg)
{
    cua_arena_config_init(cfg);
    cfg->backend_kind = CUA_BACKEND_HOST;
}

/* test_host_backend_with's options. */
enum {
    TEST_MANUAL_EVENTS = 1, /* events complete only when their stream is completed or synced */
    TEST_NO_VMM = 2,        /* no virtual memory management: whole segments only */
};

/* A host backend of `capacity` bytes in pages of `page` bytes (0: the
 * defaults) with the options `opts` (TEST_MANUAL_EVENTS, TEST_NO_VMM). */
static inline cua_status test_host_backend_with(size_t capacity, size_t page, unsigned opts,
                                                cua_backend **out)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    if (capacity) hc.capacity = capacity;
    if (page) hc.granularity = page;
    hc.manual_events = (opts & TEST_MANUAL_EVENTS) != 0;
    hc.no_vmm = (opts & TEST_NO_VMM) != 0;
    return cua_backend_host_create(&hc, out);
}

/* A host backend of `capacity` bytes in pages of `page` bytes (0: the defaults). */
static inline cua_status test_host_backend(size_t capacity, size_t page, cua_backend **out)
{
    return test_host_backend_with(capacity, page, 0, out);
}

/* An arena named `name` on backend bk, checked after every call. */
static inline cua_status test_arena(cua_backend *bk, const char *name, cua_arena **out)
{
    cua_arena_config cfg;
    test_config(&cfg);
    cfg.name = name;
    cfg.backend = bk;
    cfg.flags = CUA_ARENA_CHECK_ALWAYS;
    return cua_arena_create(&cfg, out);
}

/* The flags cua_arena_config_init sets (a build of debug_level 2 poisons). */
static inline unsigned test_default_flags(void)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    return cfg.flags;
}

/* An arena on backend bk (NULL: a host backend of its own) named `name`:
 * test_config's defaults, exactly the flags `flags` (a build of debug_level 2
 * poisons by default: here only when asked), then the options of `conf`
 * (CUARENA_CONF's syntax; may be NULL). NULL when conf is refused or the
 * create fails (cua_last_error() says why). */
static inline cua_arena *test_arena_with(cua_backend *bk, const char *name, unsigned flags,
                                         const char *conf)
{
    cua_arena_config cfg;
    test_config(&cfg);
    cfg.name = name;
    cfg.backend = bk;
    cfg.flags = flags;
    cua_arena *a = NULL;
    if (conf && cua_config_parse(conf, &cfg) != CUA_OK) return NULL;
    return cua_arena_create(&cfg, &a) == CUA_OK ? a : NULL;
}

/* Whether backend bk holds nothing any more: no reservation, handle,
 * mapping, event, stream or pinned buffer (the leak check after a teardown). */
static inline bool test_backend_clean(cua_backend *bk)
{
    cua_backend_stats s;
    if (cua_backend_get_stats(bk, &s) != CUA_OK) return false;
    bool clean = !s.reservations && !s.handles && !s.handle_bytes && !s.mappings && !s.events &&
                 !s.streams && !s.host_buffers;
    if (!clean)
        fprintf(stderr, "left in the backend: %llu reservations, %llu handles (%llu bytes), "
                "%llu mappings, %llu events, %llu streams, %llu pinned buffers\n",
                (unsigned long long)s.reservations, (unsigned long long)s.handles,
                (unsigned long long)s.handle_bytes, (unsigned long long)s.mappings,
                (unsigned long long)s.events, (unsigned long long)s.streams,
                (unsigned long long)s.host_buffers);
    return clean;
}

/* The arena of config cfg, or NULL (cua_last_error() says why). */
static inline cua_arena *test_create(const cua_arena_config *cfg)
{
    cua_arena *a = NULL;
    return cua_arena_create(cfg, &a) == CUA_OK ? a : NULL;
}

/* a's statistics; zeroes when they cannot be read. */
static inline cua_stats test_stats(cua_arena *a)
{
    cua_stats s;
    memset(&s, 0, sizeof s);
    cua_arena_get_stats(a, &s);
    return s;
}

/* bk's counters; zeroes when they cannot be read. */
static inline cua_backend_stats test_backend_stats(cua_backend *bk)
{
    cua_backend_stats s;
    memset(&s, 0, sizeof s);
    cua_backend_get_stats(bk, &s);
    return s;
}

/* Destroy arena a (forced), then its backend bk: the first failure's status.
 * The backend's destroy is the leak check: it frees its own staging area and
 * answers CUA_ERR_BUSY, naming them, while reservations, handles, events,
 * streams or pinned buffers of its users are alive. */
static inline cua_status test_teardown(cua_arena *a, cua_backend *bk)
{
    cua_status st = cua_arena_destroy(a, CUA_DESTROY_FORCE);
    return st == CUA_OK ? cua_backend_destroy(bk) : st;
}

/* Run fn on n threads (at most 64), the ith with (char *)args + i * size (size
 * 0: all with args), and wait for them all: false when one could not start
 * (those that did are waited for). */
static inline bool test_threads(int n, void *(*fn)(void *), void *args, size_t size)
{
    pthread_t th[64];
    int started = 0;
    while (started < n && started < 64) {
        void *arg = size ? (char *)args + (size_t)started * size : args;
        if (pthread_create(&th[started], NULL, fn, arg) != 0) break;
        started++;
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    return started == n;
}

/* Run fn(arg) on a thread of its own and wait for it: what fn returned, or
 * (void *)-1 when the thread could not start. */
static inline void *test_on_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    void *ret = (void *)-1;
    if (pthread_create(&t, NULL, fn, arg) == 0) pthread_join(t, &ret);
    return ret;
}

/* A deterministic generator for tests (splitmix64). */
static inline uint64_t test_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Optional per-file setup: define TEST_ARGS_HOOK(argc, argv) before including. */
int main(int argc, char **argv)
{
#ifdef TEST_ARGS_HOOK
    TEST_ARGS_HOOK(argc, argv);
#endif
    int passed = 0, failed = 0;
    for (int i = 0; i < test_count; i++) {
        int selected = argc < 2;
        for (int j = 1; j < argc; j++)
            if (argv[j][0] != '-' && strcmp(argv[j], test_cases[i].name) == 0) selected = 1;
        if (!selected) continue;
        test_failed_flag = 0;
        test_cases[i].fn();
        if (test_failed_flag) {
            failed++;
            printf("FAIL %s\n", test_cases[i].name);
        } else {
            passed++;
            printf("ok   %s\n", test_cases[i].name);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif /* CUA_TEST_H */
