/*
 * place.h - where an allocation goes in an arena's free space: best fit by
 * size class, learning first whether other streams are done with their free
 * blocks, and, when best fit would map pages, the place that maps the fewest
 * (Note [placement that knows what is mapped], place.c). Arena lock held.
 */
#ifndef CUA_ARENA_PLACE_H
#define CUA_ARENA_PLACE_H

#include "arena/stream.h"
#include "arena/types.h"

/* A place for an allocation: a free block and where in it. */
typedef struct cua_spot {
    cua_block *b;     /* NULL: no free block of the arena fits */
    uint64_t at;      /* offset of the new block, inside b */
    uint64_t missing; /* pages it would map */
} cua_spot;

/* Where `asize` bytes (aligned) go for stream `tag`. With `run` (an
 * allocation that may release the lock), what other streams finished is
 * learnt without driver calls; when more must be asked, the jobs are planned
 * into run (run->n) and no place is given (b NULL): the caller runs them
 * without the lock, sets run->ran, and asks again. Without run the events
 * are asked here, under the lock. */
typedef struct cua_placerun {
    cua_evrun ev;
    bool ran;         /* the jobs planned were run: place with what they said */
} cua_placerun;
cua_spot _cua_place(cua_arena *a, uint32_t tag, uint64_t asize, cua_placerun *run);
/* An allocation that answered `st` with run: it planned jobs for its caller
 * to run without the lock (BUSY, jobs planned and not run yet). */
static inline bool _cua_place_planned(cua_status st, const cua_placerun *run)
{
    return st == CUA_ERR_BUSY && run->ev.n && !run->ran;
}

#endif /* CUA_ARENA_PLACE_H */
