/*
 * test-sizeclass.c - the size-class table and its O(1) floor / ceil, checked
 * against the definition in sizeclass.h and against a linear search.
 */
#include "core/sizeclass.h"

#include "test.h"

/* The largest class <= size, by walking the table (size >= 512). */
static unsigned floor_by_search(uint64_t size)
{
    unsigned best = 0;
    for (unsigned i = 0; i < CUA_SC_COUNT; i++)
        if (_cua_sc_size(i) <= size) best = i;
    return best;
}

/* The smallest class >= size, by walking the table (size <= 2^48). */
static unsigned ceil_by_search(uint64_t size)
{
    for (unsigned i = 0; i < CUA_SC_COUNT; i++)
        if (_cua_sc_size(i) >= size) return i;
    return CUA_SC_COUNT; /* not reached for size <= CUA_SC_MAX_SIZE */
}

/* Check floor and ceil of one size against the search; report the size on failure. */
static int rounding_ok(uint64_t size)
{
    int ok = 1;
    if (size >= CUA_ALIGNMENT && _cua_sc_floor(size) != floor_by_search(size)) {
        fprintf(stderr, "floor(%llu) = %u, expected %u\n", (unsigned long long)size,
                _cua_sc_floor(size), floor_by_search(size));
        ok = 0;
    }
    if (size <= CUA_SC_MAX_SIZE && _cua_sc_ceil(size) != ceil_by_search(size)) {
        fprintf(stderr, "ceil(%llu) = %u, expected %u\n", (unsigned long long)size,
                _cua_sc_ceil(size), ceil_by_search(size));
        ok = 0;
    }
    return ok;
}

TEST(count_and_ends)
{
    CHECK(CUA_SC_COUNT == 152);
    CHECK(_cua_sc_size(0) == 512);
    CHECK(_cua_sc_size(1) == 1024);
    CHECK(_cua_sc_size(2) == 1536);
    CHECK(_cua_sc_size(3) == 2048);
    CHECK(_cua_sc_size(4) == 2560);
    CHECK(_cua_sc_size(CUA_SC_COUNT - 1) == CUA_SC_MAX_SIZE);
    CHECK(_cua_sc_size(CUA_SC_COUNT - 2) == CUA_SC_MAX_SIZE / 2 + 3 * (CUA_SC_MAX_SIZE / 8));
}

TEST(table_shape)
{
    for (unsigned i = 0; i < CUA_SC_COUNT; i++) {
        uint64_t s = _cua_sc_size(i);
        CHECK(s % CUA_ALIGNMENT == 0);
        if (i == 0) continue;
        uint64_t prev = _cua_sc_size(i - 1);
        CHECK(prev < s);
        if (s <= 2048)
            CHECK(s - prev == CUA_ALIGNMENT); /* the small classes: every multiple of 512 */
        else
            CHECK((s - prev) * 4 <= s); /* at most 25 % of the class above 2 KiB */
    }
}

TEST(four_classes_per_doubling)
{
    for (unsigned k = 12; k <= 48; k++) {
        uint64_t lo = (uint64_t)1 << (k - 1), hi = (uint64_t)1 << k;
        unsigned n = 0;
        for (unsigned i = 0; i < CUA_SC_COUNT; i++) {
            uint64_t s = _cua_sc_size(i);
            if (s >= lo && s < hi) n++;
        }
        CHECK(n == 4);
    }
    /* and the classes of one doubling are 2^k + j * 2^(k-2) */
    for (unsigned i = 3; i < CUA_SC_COUNT; i++) {
        uint64_t s = _cua_sc_size(i);
        unsigned k = 63u - (unsigned)__builtin_clzll(s);
        uint64_t quarter = (uint64_t)1 << (k - 2);
        CHECK(((s - ((uint64_t)1 << k)) % quarter) == 0);
    }
}

TEST(every_size_up_to_16m)
{
    for (uint64_t s = CUA_ALIGNMENT; s <= ((uint64_t)1 << 24); s += CUA_ALIGNMENT)
        CHECK(rounding_ok(s));
}

TEST(every_class_and_neighbours)
{
    for (unsigned i = 0; i < CUA_SC_COUNT; i++) {
        uint64_t s = _cua_sc_size(i);
        CHECK(_cua_sc_floor(s) == i);
        CHECK(_cua_sc_ceil(s) == i);
        CHECK(rounding_ok(s - 1));
        CHECK(rounding_ok(s + 1));
        CHECK(rounding_ok(s - 512));
        CHECK(rounding_ok(s + 512));
    }
}

TEST(random_sizes)
{
    uint64_t seed = 42;
    for (int n = 0; n < 200000; n++) {
        /* A random bit length first, so that every doubling is drawn as often. */
        unsigned bits = 9 + (unsigned)(test_rand(&seed) % 40); /* 9..48 */
        uint64_t s = test_rand(&seed) & (((uint64_t)1 << bits) - 1);
        if (s < CUA_ALIGNMENT) s += CUA_ALIGNMENT;
        CHECK(rounding_ok(s));
    }
}

TEST(boundaries)
{
    CHECK(_cua_sc_floor(512) == 0);
    CHECK(_cua_sc_ceil(512) == 0);
    CHECK(_cua_sc_ceil(1) == 0);
    CHECK(_cua_sc_ceil(513) == 1);
    CHECK(_cua_sc_floor(511) == 0); /* below the first class: the first bin */
    CHECK(_cua_sc_floor(0) == 0);
    CHECK(_cua_sc_floor(2047) == 2);
    CHECK(_cua_sc_floor(2048) == 3);
    CHECK(_cua_sc_ceil(2047) == 3);
    CHECK(_cua_sc_ceil(2049) == 4);
    CHECK(_cua_sc_floor(CUA_SC_MAX_SIZE) == CUA_SC_COUNT - 1);
    CHECK(_cua_sc_floor(CUA_SC_MAX_SIZE - 1) == CUA_SC_COUNT - 2);
    CHECK(_cua_sc_floor(CUA_SC_MAX_SIZE + 1) == CUA_SC_COUNT - 1);
    CHECK(_cua_sc_floor(UINT64_MAX) == CUA_SC_COUNT - 1);
    CHECK(_cua_sc_ceil(CUA_SC_MAX_SIZE) == CUA_SC_COUNT - 1);
    CHECK(_cua_sc_ceil(CUA_SC_MAX_SIZE - 1) == CUA_SC_COUNT - 1);
    CHECK(_cua_sc_ceil(_cua_sc_size(CUA_SC_COUNT - 2) + 1) == CUA_SC_COUNT - 1);
}

TEST(bin_invariant)
{
    /* sizeclass.h: every block in bin i is >= class i and < class i + 1. */
    uint64_t seed = 7;
    for (int n = 0; n < 100000; n++) {
        unsigned bits = 10 + (unsigned)(test_rand(&seed) % 39);
        uint64_t s = (test_rand(&seed) & (((uint64_t)1 << bits) - 1)) | CUA_ALIGNMENT;
        unsigned b = _cua_sc_floor(s);
        CHECK(_cua_sc_size(b) <= s);
        CHECK(b + 1 == CUA_SC_COUNT || s < _cua_sc_size(b + 1));
    }
}
