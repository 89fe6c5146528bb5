/*
 * addrmap.c - the process-wide map from an address to the arena that reserved
 * it, so cua_free(ptr) finds its arena without a search. Arenas reserve whole,
 * aligned GiB granules; a two-level radix over the 48-bit address space maps a
 * granule to its arena. Readers take no lock (atomic loads); writers (arena
 * create) take one. Leaves are never freed.
 *
 * A destroyed arena's entries point to the registry's stand-in that is never
 * alive (the arena's own memory goes to the next arena: registry.c),
 * so its old pointers get CUA_ERR_DESTROYED, until a new arena reserves the
 * same range.
 *
 * Arenas without VMM (CUA_ARENA_NO_VMM) own segments at addresses the driver
 * chose, which may share a granule with other arenas' segments: those are kept
 * in a sorted array of ranges under a read-write lock, searched when the radix
 * has no arena for an address. Their entries go when the segment is freed.
 */
#include "base/addrmap.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define GRANULE_SHIFT 30u /* 1 GiB */
#define LEAF_BITS 9u
#define TOP_BITS (48u - GRANULE_SHIFT - LEAF_BITS)

typedef struct leaf {
    _Atomic(cua_arena *) slot[1u << LEAF_BITS];
} leaf;

static _Atomic(leaf *) top[1u << TOP_BITS];
static cua_mutex addrmap_lock = CUA_MUTEX_INIT(ADDRMAP);

static inline uintptr_t granule(uintptr_t addr) { return addr >> GRANULE_SHIFT; }

cua_status _cua_addrmap_insert(uintptr_t base, size_t size, cua_arena *a)
{
    uintptr_t g0 = granule(base), g1 = granule(base + size - 1);
    if ((g1 >> (LEAF_BITS + TOP_BITS)) != 0)
        return _cua_error(CUA_ERR_NOT_SUPPORTED,
                          "address range %#lx+%zu lies above 2^48, which the address map "
                          "does not cover", (unsigned long)base, size);
    _cua_mutex_lock(&addrmap_lock);
    for (uintptr_t g = g0; g <= g1; g++) {
        leaf *l = atomic_load(&top[g >> LEAF_BITS]);
        if (!l) {
            l = calloc(1, sizeof *l);
            if (!l) {
                _cua_mutex_unlock(&addrmap_lock);
                _cua_addrmap_remove(base, (size_t)(g - g0) << GRANULE_SHIFT, a);
                return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for the address map");
            }
            atomic_store(&top[g >> LEAF_BITS], l);
        }
        atomic_store_explicit(&l->slot[g & ((1u << LEAF_BITS) - 1)], a, memory_order_release);
    }
    _cua_mutex_unlock(&addrmap_lock);
    return CUA_OK;
}

/* ---- ranges of segments without VMM ---------------------------------------------- */

typedef struct range {
    uintptr_t base;
    size_t size;
    cua_arena *arena;
} range;

static range *ranges;
static size_t nranges, cap_ranges;
static _Atomic size_t nranges_hint; /* lets the radix path skip the lock when there are none */
static cua_rwlock ranges_lock = CUA_RWLOCK_INIT(RANGES);

/* The driver placed a segment where a destroyed arena's range was: that
 * address space is someone else's now, so the tombstone must stop answering
 * for it (after the segment is freed, its pointers are simply unknown, not
 * "of a destroyed arena"). Only entries of arenas no longer alive go. */
static void forget_tombstones(uintptr_t base, size_t size, bool (*gone)(const cua_arena *))
{
    _cua_mutex_lock(&addrmap_lock);
    for (uintptr_t g = granule(base); g <= granule(base + size - 1); g++) {
        if (g >> (LEAF_BITS + TOP_BITS)) break;
        leaf *l = atomic_load(&top[g >> LEAF_BITS]);
        if (!l) continue;
        _Atomic(cua_arena *) *slot = &l->slot[g & ((1u << LEAF_BITS) - 1)];
        cua_arena *old = atomic_load(slot);
        if (old && gone(old)) atomic_compare_exchange_strong(slot, &old, NULL);
    }
    _cua_mutex_unlock(&addrmap_lock);
}

/* Index of the first range with base >= addr. */
static size_t range_lower_bound(uintptr_t addr)
{
    return _cua_lower_bound(ranges, nranges, sizeof *ranges, addr);
}

cua_status _cua_addrmap_insert_range(uintptr_t base, size_t size, cua_arena *a,
                                     bool (*gone)(const cua_arena *))
{
    cua_status st = CUA_OK;
    _cua_rwlock_wrlock(&ranges_lock);
    if (nranges == cap_ranges) {
        size_t ncap = cap_ranges ? 2 * cap_ranges : 64;
        range *nr = realloc(ranges, ncap * sizeof *nr);
        if (nr) {
            ranges = nr;
            cap_ranges = ncap;
        } else {
            st = _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for the address map");
        }
    }
    if (st == CUA_OK) {
        /* After any range of the same base: find_range takes the last one, so
         * a segment the driver hands out again at once answers for its new
         * arena while the old one still has to remove its entry. */
        size_t i = range_lower_bound(base + 1);
        memmove(&ranges[i + 1], &ranges[i], (nranges - i) * sizeof *ranges);
        ranges[i] = (range){base, size, a};
        nranges++;
        atomic_store(&nranges_hint, nranges);
    }
    _cua_rwlock_unlock(&ranges_lock);
    if (st == CUA_OK) forget_tombstones(base, size, gone);
    return st;
}

void _cua_addrmap_remove_range(uintptr_t base, const cua_arena *a)
{
    _cua_rwlock_wrlock(&ranges_lock);
    size_t i = range_lower_bound(base);
    while (i < nranges && ranges[i].base == base && ranges[i].arena != a) i++;
    if (i < nranges && ranges[i].base == base) {
        memmove(&ranges[i], &ranges[i + 1], (nranges - i - 1) * sizeof *ranges);
        nranges--;
        atomic_store(&nranges_hint, nranges);
    }
    _cua_rwlock_unlock(&ranges_lock);
}

void _cua_addrmap_shrink_ranges(void)
{
    _cua_rwlock_wrlock(&ranges_lock);
    if (nranges == 0) { /* the last one went: give the table back */
        free(ranges);
        ranges = NULL;
        cap_ranges = 0;
    }
    _cua_rwlock_unlock(&ranges_lock);
}

static cua_arena *find_range(uintptr_t addr)
{
    if (atomic_load_explicit(&nranges_hint, memory_order_relaxed) == 0) return NULL;
    cua_arena *a = NULL;
    _cua_rwlock_rdlock(&ranges_lock);
    size_t i = range_lower_bound(addr + 1); /* the first range above addr */
    if (i > 0 && addr - ranges[i - 1].base < ranges[i - 1].size) a = ranges[i - 1].arena;
    _cua_rwlock_unlock(&ranges_lock);
    return a;
}

/* Segments first: the driver may place one where a destroyed arena's range
 * was, whose tombstone the radix still holds. */
cua_arena *_cua_addrmap_find(uintptr_t addr)
{
    cua_arena *a = find_range(addr);
    if (a) return a;
    uintptr_t g = granule(addr);
    if (g >> (LEAF_BITS + TOP_BITS)) return NULL;
    leaf *l = atomic_load_explicit(&top[g >> LEAF_BITS], memory_order_acquire);
    if (!l) return NULL;
    return atomic_load_explicit(&l->slot[g & ((1u << LEAF_BITS) - 1)], memory_order_acquire);
}

void _cua_addrmap_bury(uintptr_t base, size_t size, cua_arena *a, cua_arena *dead)
{
    if (!size) return;
    _cua_mutex_lock(&addrmap_lock);
    for (uintptr_t g = granule(base); g <= granule(base + size - 1); g++) {
        if (g >> (LEAF_BITS + TOP_BITS)) break;
        leaf *l = atomic_load(&top[g >> LEAF_BITS]);
        if (!l) continue;
        cua_arena *expected = a;
        atomic_compare_exchange_strong(&l->slot[g & ((1u << LEAF_BITS) - 1)], &expected, dead);
    }
    _cua_mutex_unlock(&addrmap_lock);
}

void _cua_addrmap_remove(uintptr_t base, size_t size, cua_arena *a)
{
    if (!size) return;
    _cua_mutex_lock(&addrmap_lock);
    for (uintptr_t g = granule(base); g <= granule(base + size - 1); g++) {
        leaf *l = atomic_load(&top[g >> LEAF_BITS]);
        if (!l) continue;
        cua_arena *expected = a;
        atomic_compare_exchange_strong(&l->slot[g & ((1u << LEAF_BITS) - 1)], &expected, NULL);
    }
    _cua_mutex_unlock(&addrmap_lock);
}
