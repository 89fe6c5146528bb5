/*
 * test.h - the tests' tiny harness. A test file defines cases with TEST(name)
 * and includes this once; main() runs every case (or those named on the
 * command line) and ends with "N passed, N failed". A failed CHECK ends its case.
 */
#ifndef CUA_TEST_H
#define CUA_TEST_H

#include "cuarena.h"

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
