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

/* A host backend of `capacity` bytes in pages of `page` bytes (0: the defaults). */
static inline cua_status test_host_backend(size_t capacity, size_t page, cua_backend **out)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    if (capacity) hc.capacity = capacity;
    if (page) hc.granularity = page;
    return cua_backend_host_create(&hc, out);
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
