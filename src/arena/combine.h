/*
 * combine.h - allocations and frees of a contended arena done by the thread
 * that holds its lock (flat combining): a thread that finds the lock held
 * posts its call in the arena's request slots and waits; the holder, before
 * it lets the lock go, does the posted calls one after another, with the
 * arena's data still in its core's cache. Note [calls the lock holder does]
 * in combine.c says why.
 *
 * The poster's side (no lock held): _cua_combine_enter either takes the lock
 * (the caller then makes its call itself, and serves others before its
 * unlock) or has the call done (its results in the request), or says neither
 * (the caller takes the lock the usual way). The holder's side:
 * _cua_combine_serve, before the unlock of an allocation or a free.
 *
 * Only allocations and frees are posted, and only while no event callback is
 * set (a call's events would reach the callback on the holder's thread) and
 * the arena's segments come from no user's supplier (its functions would
 * run on the holder's thread). A
 * call whose placement plans event jobs comes back to its poster, who runs
 * the jobs without the lock (Note [events asked outside the lock],
 * stream.c) and ends the call itself.
 */
#ifndef CUA_COMBINE_H
#define CUA_COMBINE_H

#include "arena/place.h"

enum { CUA_REQ_ALLOC = 1, CUA_REQ_FREE = 2 };

/* A posted call: the poster's own (thread-local), read and written by the
 * holder between taking it from the slot and storing `done`. */
typedef struct cua_req {
    _Atomic uint32_t done;        /* 1: the holder did it; the results below are set */
    uint8_t op;                   /* CUA_REQ_* */
    uint32_t gen;                 /* the arena's generation the poster saw */
    size_t size;                  /* alloc: bytes */
    cua_stream stream;            /* alloc: stream */
    struct cua_tcache *tc;        /* alloc: the poster's cache (NULL: none) */
    void *ptr;                    /* free: the pointer; alloc: the block's address */
    cua_block *b;                 /* alloc: the block, for the poster's cache */
    uint64_t word;                /* alloc: its cache word (0: not handed to the cache) */
    cua_status st;
    char *msg;                    /* a failure's words (malloc'ed, the poster frees; NULL: none) */
    cua_placerun run;             /* alloc: event jobs for the poster to run (st BUSY) */
} cua_req;

enum { CUA_COMBINE_NONE, CUA_COMBINE_LOCKED, CUA_COMBINE_DONE };

/* ... after finding the lock held: post and wait (combine.c). */
int _cua_combine_post(cua_arena *a, uint32_t gen, cua_req *r);

/* Take a's lock for a call (a of generation gen, alive: CUA_COMBINE_LOCKED),
 * or, when another thread holds it, post *r (op and arguments set) and wait
 * until the holder did it (CUA_COMBINE_DONE, the results in *r) or the lock
 * comes free (then LOCKED). CUA_COMBINE_NONE: nothing held, nothing done
 * (combining off, no free slot, or the arena not alive or of another
 * generation): take the lock the usual way. */
static inline int _cua_combine_enter(cua_arena *a, uint32_t gen, cua_req *r)
{
    _cua_lock_check(&a->lock); /* (a wait for the lock, as far as the order goes) */
    if (CUA_LIKELY(_cua_trylock(&a->lock)))
        return _cua_arena_held_same(a, gen) ? CUA_COMBINE_LOCKED : CUA_COMBINE_NONE;
    return _cua_combine_post(a, gen, r);
}

/* The holder (lock held), before it lets go: do the posted calls (combine.c;
 * the holder's message stays its own through the calls done for others). */
void _cua_combine_serve_posted(cua_arena *a);

/* ... when there are any. */
static inline void _cua_combine_serve(cua_arena *a)
{
    if (CUA_UNLIKELY(atomic_load_explicit(&a->req_mask, memory_order_relaxed) != 0))
        _cua_combine_serve_posted(a);
}

/* Calls done for other threads since the arena was made (statistics). */
uint64_t _cua_combine_count(const cua_arena *a);

#endif /* CUA_COMBINE_H */
