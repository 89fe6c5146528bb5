/*
 * check.h - the checker: every invariant of an arena, verified (check.c
 * composes the validators of the heap and the segment with the arena's own).
 */
#ifndef CUA_ARENA_CHECK_H
#define CUA_ARENA_CHECK_H

#include "arena/types.h"

/* CUA_OK, or CUA_ERR_CORRUPT with the first broken invariant in the message.
 * Arena lock held; changes nothing. */
cua_status _cua_check_arena_locked(cua_arena *a);

#endif /* CUA_ARENA_CHECK_H */
