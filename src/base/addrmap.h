/*
 * addrmap.h - the process-wide map from an address to the arena that owns it,
 * so that cua_free(ptr) finds its arena without a search (addrmap.c says how).
 * A leaf of the base layer: it stores arena handles and never looks inside.
 */
#ifndef CUA_ADDRMAP_H
#define CUA_ADDRMAP_H

#include "base/internal.h"

/* A reserved range [base, base + size) of whole, aligned 1 GiB granules. */
cua_status _cua_addrmap_insert(uintptr_t base, size_t size, cua_arena *a);
/* Forget a range only if it still belongs to `a` (a later arena may own it). */
void _cua_addrmap_remove(uintptr_t base, size_t size, cua_arena *a);
/* `a` was destroyed: its range, where still its, names `dead` (a stand-in
 * that is never alive: its memory goes to the next arena), until another
 * arena reserves it. */
void _cua_addrmap_bury(uintptr_t base, size_t size, cua_arena *a, cua_arena *dead);
/* A whole segment at an address the driver chose (arenas without VMM). The
 * reserved ranges it overlaps stop answering for arenas that are `gone`
 * (destroyed: their tombstones). */
cua_status _cua_addrmap_insert_range(uintptr_t base, size_t size, cua_arena *a,
                                     bool (*gone)(const cua_arena *));
/* The range of `base` that arena `a` inserted (another may have the same
 * base). The table keeps its room, so that inserting the range again cannot
 * fail (a segment whose free failed stays the arena's). */
void _cua_addrmap_remove_range(uintptr_t base, const cua_arena *a);
/* Give the table of ranges back when no range is left. */
void _cua_addrmap_shrink_ranges(void);
/* The arena that owns addr, or NULL (no lock taken for reserved ranges). */
cua_arena *_cua_addrmap_find(uintptr_t addr);

#endif /* CUA_ADDRMAP_H */
