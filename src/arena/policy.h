/*
 * policy.h - when an arena maps pages and when it gives them back: one rule
 * per reason, in one table (policy.c), and the functions that apply them.
 * The mechanisms (the segment's trim, the streams' reclaim, the thread
 * caches' flush) are below; arena.c, offload.c and the process-wide parts
 * ask here. Arena lock held.
 */
#ifndef CUA_ARENA_POLICY_H
#define CUA_ARENA_POLICY_H

#include "arena/types.h"

/* Why pages go back to the driver: one row each of policy.c's table. */
typedef enum cua_give_reason {
    CUA_GIVE_TRIM,              /* cua_arena_trim: all that is idle above `keep` */
    CUA_GIVE_RELEASE_THRESHOLD, /* after a free: idle bytes above the release threshold */
    CUA_GIVE_FOOTPRINT_CAP,     /* a growth past the demand peak and its slack */
    CUA_GIVE_LIMIT,             /* a growth that would pass the arena's limit */
    CUA_GIVE_LIMIT_WAIT,        /* ... and still would: after waiting for the streams */
    CUA_GIVE_LIMIT_LOWERED,     /* cua_arena_set_limit below what is mapped */
    CUA_GIVE_OUT_OF_MEMORY,     /* the arena's allocation found the device full: last resort */
    CUA_GIVE_MAP_FAILED,        /* a growth's map found the device full: the cache, once */
    CUA_GIVE_PRESSURE,          /* another arena's allocation found the device full */
    CUA_GIVE_IDLE,              /* no alloc or free for idle_ms (cua_trim_idle, the janitor) */
    CUA_GIVE_COUNT
} cua_give_reason;

/* Give back up to `want` bytes of idle pages for `reason`, as its rule says
 * (the floor, waiting for streams, settling first); *released gets the bytes.
 * Counted, and raised as a CUA_ARENA_TRIMMED event with the rule's name. */
cua_status _cua_policy_give_back(cua_arena *a, cua_give_reason reason, uint64_t want,
                                 uint64_t *released);
/* Give back everything idle above `keep` bytes for `reason` (trim, idle). */
cua_status _cua_policy_give_back_above(cua_arena *a, cua_give_reason reason, uint64_t keep,
                                       uint64_t *released);

/* Before a growth maps `need` more bytes: make room under the limit and the
 * footprint cap (CUA_ERR_LIMIT when live data itself would pass the limit). */
cua_status _cua_policy_make_room(cua_arena *a, uint64_t need);
/* Whether a growth of `need` bytes would have to give pages back first (the
 * footprint cap or the limit): a move, which placement tries to avoid. */
bool _cua_policy_growth_moves(const cua_arena *a, uint64_t need);
/* After a growth mapped pages: note the demand peak. */
void _cua_policy_grown(cua_arena *a);
/* After a free: the release threshold. */
cua_status _cua_policy_after_free(cua_arena *a);
/* The bytes idle trims keep (the release threshold; 0 when it keeps all). */
uint64_t _cua_policy_idle_keep(const cua_arena *a);

#endif /* CUA_ARENA_POLICY_H */
