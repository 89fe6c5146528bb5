/*
 * sizeclass.c - the size-class table of sizeclass.h, by arithmetic alone.
 *
 * Class i is
 *   i = 0, 1, 2:  512 * (i + 1)                        (512, 1024, 1536)
 *   i >= 3:       2^k + j * 2^(k-2), with k = 11 + (i - 3) / 4, j = (i - 3) % 4
 * so the doubling 2^k owns classes 4k - 41 .. 4k - 38, and the last class,
 * i = 151, is 2^48 (k = 48, j = 0). No table is kept: floor and ceil are on
 * the allocator's fast path and are a count-leading-zeros and a few shifts.
 */
#include "core/sizeclass.h"


_Static_assert(SC_SMALL_COUNT + 4u * (48u - SC_FIRST_K) + 1u == CUA_SC_COUNT,
               "CUA_SC_COUNT must count 3 small classes, 4 per doubling 2^11..2^47, and 2^48");
_Static_assert(CUA_ALIGNMENT * 4u == SC_SMALL_LIMIT, "small classes are 1..3 x CUA_ALIGNMENT");

uint64_t _cua_sc_size(unsigned i)
{
    cua_assert(i < CUA_SC_COUNT);
    if (i < SC_SMALL_COUNT) return (uint64_t)CUA_ALIGNMENT * (i + 1u);
    unsigned k = SC_FIRST_K + (i - SC_SMALL_COUNT) / 4u;
    uint64_t j = (i - SC_SMALL_COUNT) % 4u;
    return ((uint64_t)1 << k) + j * ((uint64_t)1 << (k - 2u));
}

unsigned _cua_sc_ceil(uint64_t size)
{
    if (size <= CUA_ALIGNMENT) return 0u;
    /* Above the largest class there is none >= size; the last class is the
     * nearest answer, and the callers refuse such sizes before asking. */
    if (size > CUA_SC_MAX_SIZE) return CUA_SC_COUNT - 1u;
    /* The largest class < size is floor(size - 1); the one after it is the
     * smallest class >= size. */
    return _cua_sc_floor(size - 1u) + 1u;
}
