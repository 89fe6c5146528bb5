/*
 * sizeclass.h - the size-class table: jemalloc-style, four classes per
 * doubling. Classes index the heap's free lists (bins).
 *
 *   512, 1024, 1536, 2048            (multiples of CUA_ALIGNMENT up to 2 KiB)
 *   then for every doubling 2^k (k >= 11): 2^k + j * 2^(k-2), j = 0..3
 *   up to CUA_SC_MAX_SIZE (2^48); a size above it belongs to the last class.
 *
 * A free block of size s lives in bin _cua_sc_floor(s): every block in bin i is
 * at least _cua_sc_size(i) bytes and less than _cua_sc_size(i + 1). A request
 * for r bytes fits every block of bins >= _cua_sc_ceil(r), and maybe some of
 * bin _cua_sc_floor(r).
 */
#ifndef CUA_SIZECLASS_H
#define CUA_SIZECLASS_H

#include "base/internal.h"

#define CUA_SC_MAX_SIZE ((uint64_t)1 << 48)
#define CUA_SC_COUNT 152 /* 512, 1024, 1536; 4 per doubling for 2^11..2^47; 2^48 */

/* Size of class i (i < CUA_SC_COUNT). */
uint64_t _cua_sc_size(unsigned i);
/* Below this every class is a multiple of CUA_ALIGNMENT (512, 1024, 1536). */
#define SC_SMALL_LIMIT 2048u
/* Classes under SC_SMALL_LIMIT; the first class of doubling k is 4k - SC_K_BIAS. */
#define SC_SMALL_COUNT 3u
#define SC_FIRST_K 11u
#define SC_K_BIAS (4u * SC_FIRST_K - SC_SMALL_COUNT)

/* Largest class whose size is <= size (size >= CUA_ALIGNMENT). Inline: it is
 * on the fast path (a count of leading zeros and a few shifts). */
static inline unsigned _cua_sc_floor(uint64_t size)
{
    if (size < SC_SMALL_LIMIT) {
        /* Sizes under 512 have no class below them; they go to the first. */
        return size < CUA_ALIGNMENT ? 0u : (unsigned)(size / CUA_ALIGNMENT) - 1u;
    }
    if (size >= CUA_SC_MAX_SIZE) return CUA_SC_COUNT - 1u;
    unsigned k = _cua_log2(size);                 /* 11..47 */
    unsigned j = (unsigned)(size >> (k - 2u)) & 3u; /* the quarter of the doubling */
    return 4u * k - SC_K_BIAS + j;
}
/* Smallest class whose size is >= size (size <= CUA_SC_MAX_SIZE). */
unsigned _cua_sc_ceil(uint64_t size);

#endif /* CUA_SIZECLASS_H */
