/*
 * walk.h - an arena's snapshot, region by region (walk.c), for
 * cua_arena_walk: the segments of mapped memory in address order, each
 * followed by the pieces of blocks that lie in it. Arena lock held.
 */
#ifndef CUA_ARENA_WALK_H
#define CUA_ARENA_WALK_H

#include "arena/types.h"

/* The regions of arena `a` into a malloc'ed array *out of *n entries (the
 * threads' caches give their blocks back first, so that they show as free and
 * live blocks show the sizes asked). CUA_ERR_OUT_OF_MEMORY: no host memory. */
cua_status _cua_walk_snapshot_locked(cua_arena *a, cua_region **out, size_t *n);

#endif /* CUA_ARENA_WALK_H */
