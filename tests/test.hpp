/*
 * test.hpp - what the C++ test programs share (test-cpp, test-trt): CHECK, and
 * a runner of named cases that prints a line per case and ends with "N passed,
 * N failed", as tests/test.h's runner does for the C programs.
 */
#ifndef CUA_TEST_HPP
#define CUA_TEST_HPP

#include "cuarena.h"

#include <cstddef>
#include <cstdio>

static int failed_checks;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n",       \
                         __FILE__, __LINE__, #cond, cua_last_error());                 \
            failed_checks++;                                                           \
            return;                                                                    \
        }                                                                              \
    } while (0)

struct test_case {
    const char *name;
    void (*fn)();
};

/* Run every case in order; the program's exit status (1 when one failed). */
template <std::size_t N> static int run_cases(const test_case (&cases)[N])
{
    int passed = 0, failed = 0;
    for (const test_case &c : cases) {
        int before = failed_checks;
        c.fn();
        if (failed_checks != before) {
            failed++;
            std::fprintf(stderr, "FAIL %s\n", c.name);
        } else {
            passed++;
            std::printf("ok   %s\n", c.name);
        }
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#endif /* CUA_TEST_HPP */
