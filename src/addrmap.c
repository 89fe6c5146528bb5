/*
 * addrmap.c - the process-wide map from an address to the arena that reserved
 * it, so cua_free(ptr) finds its arena without a search. Arenas reserve whole,
 * aligned GiB granules; a two-level radix over the 48-bit address space maps a
 * granule to its arena. Readers take no lock (atomic loads); writers (arena
 * create) take one. Leaves are never freed.
 *
 * A destroyed arena keeps its entries (pointing to its tombstone), so its old
 * pointers get CUA_ERR_DESTROYED, until a new arena reserves the same range.
 */
#include "arena.h"

#include <stdatomic.h>
#include <stdlib.h>

#define GRANULE_SHIFT 30u /* 1 GiB */
#define LEAF_BITS 9u
#define TOP_BITS (48u - GRANULE_SHIFT - LEAF_BITS)

typedef struct leaf {
    _Atomic(cua_arena *) slot[1u << LEAF_BITS];
} leaf;

static _Atomic(leaf *) top[1u << TOP_BITS];
static pthread_mutex_t addrmap_lock = PTHREAD_MUTEX_INITIALIZER;

static inline uintptr_t granule(uintptr_t addr) { return addr >> GRANULE_SHIFT; }

cua_status _cua_addrmap_insert(uintptr_t base, size_t size, cua_arena *a)
{
    uintptr_t g0 = granule(base), g1 = granule(base + size - 1);
    if ((g1 >> (LEAF_BITS + TOP_BITS)) != 0)
        return _cua_error(CUA_ERR_NOT_SUPPORTED,
                          "address range %#lx+%zu lies above 2^48, which the address map "
                          "does not cover", (unsigned long)base, size);
    pthread_mutex_lock(&addrmap_lock);
    for (uintptr_t g = g0; g <= g1; g++) {
        leaf *l = atomic_load(&top[g >> LEAF_BITS]);
        if (!l) {
            l = calloc(1, sizeof *l);
            if (!l) {
                pthread_mutex_unlock(&addrmap_lock);
                _cua_addrmap_remove(base, (size_t)(g - g0) << GRANULE_SHIFT, a);
                return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for the address map");
            }
            atomic_store(&top[g >> LEAF_BITS], l);
        }
        atomic_store_explicit(&l->slot[g & ((1u << LEAF_BITS) - 1)], a, memory_order_release);
    }
    pthread_mutex_unlock(&addrmap_lock);
    return CUA_OK;
}

cua_arena *_cua_addrmap_find(uintptr_t addr)
{
    uintptr_t g = granule(addr);
    if (g >> (LEAF_BITS + TOP_BITS)) return NULL;
    leaf *l = atomic_load_explicit(&top[g >> LEAF_BITS], memory_order_acquire);
    if (!l) return NULL;
    return atomic_load_explicit(&l->slot[g & ((1u << LEAF_BITS) - 1)], memory_order_acquire);
}

void _cua_addrmap_remove(uintptr_t base, size_t size, cua_arena *a)
{
    if (!size) return;
    pthread_mutex_lock(&addrmap_lock);
    for (uintptr_t g = granule(base); g <= granule(base + size - 1); g++) {
        leaf *l = atomic_load(&top[g >> LEAF_BITS]);
        if (!l) continue;
        cua_arena *expected = a;
        atomic_compare_exchange_strong(&l->slot[g & ((1u << LEAF_BITS) - 1)], &expected, NULL);
    }
    pthread_mutex_unlock(&addrmap_lock);
}
