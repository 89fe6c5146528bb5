/*
 * tcache.h - per-thread caches of freed small blocks, so that threads sharing
 * an arena do not queue on its lock (jemalloc's tcache, mimalloc's thread-local
 * heaps, in the shape this allocator needs).
 *
 * A thread has one cache per arena it uses while the arena has caches on. A
 * block the thread allocated (through the lock, or from its cache) is noted
 * in the cache's `own` map; the thread's free of it then needs no lock: the
 * block goes into a bin of its size class, still live for the heap, and the
 * thread's next allocation of that class on the same stream takes it back.
 * Same stream only, so stream order alone makes the reuse safe.
 *
 * Who may touch a block is decided by its word `tcw` (heap.h) and nothing
 * else: the owning thread moves it handed-out -> cached with a compare-and-
 * swap; anyone else (a free from another thread, record_stream, offload) moves
 * it handed-out -> arena's under the arena lock, and the owner's later
 * compare-and-swap fails, so it goes through the lock too. The generation in
 * the word makes a stale note in `own` harmless.
 *
 * Locks: a cache's lock is a leaf for its thread (never held while taking the
 * arena's lock); the arena (trim, offload, destroy, the checker) takes it
 * after its own lock to empty or close the cache.
 *
 * Statistics: the heap's counters count cached blocks as live; each cache
 * keeps the corrections (adj_*), stats.c adds them up.
 *
 * A thread's exit gives its cached blocks back to the heap; the release
 * threshold applies to the pages they free at the arena's next free or trim
 * (this layer calls no policy).
 */
#ifndef CUA_TCACHE_H
#define CUA_TCACHE_H

#include "arena/types.h"

#define CUA_TC_BIN_CAP 16   /* blocks per size class */
#define CUA_TC_OWN 512      /* slots of the own map (a power of two) */
#define CUA_TC_PROBES 8     /* slots a key may be in */

enum { CUA_TC_OPEN = 0, CUA_TC_CLOSED = 1, CUA_TC_DEAD = 2 };
enum { CUA_TCW_ARENA = 0, CUA_TCW_OUT = 1, CUA_TCW_CACHED = 2 };

/* A bin entry: the block, the stream it was last handed out on, its address. */
typedef struct cua_tc_slot {
    cua_block *b;
    cua_stream stream;
    uintptr_t ptr;
} cua_tc_slot;

typedef struct cua_tc_own {
    uintptr_t ptr;     /* 0: empty */
    cua_block *b;
    uint64_t word;     /* b->tcw when this thread handed it out */
    cua_stream stream;
} cua_tc_own;

typedef struct cua_tcache {
    cua_lock_t lock;
    _Atomic int gate;            /* CUA_TC_*: closed while offloaded, dead once destroyed */
    cua_arena *arena;
    struct cua_tcache *anext, *aprev; /* the arena's list (its lock) */
    struct cua_tcache *tnext;         /* the thread's list (the thread only) */
    uint64_t max_size, cap_bytes;
    unsigned nbins;                   /* bins for size classes 0 .. nbins - 1 */
    /* Written under the cache's lock; statistics read them under it too. */
    _Atomic int64_t adj_live, adj_blocks, adj_alloc;
    _Atomic uint64_t allocs, frees, cached_bytes;
    cua_tc_own own[CUA_TC_OWN];
    uint8_t *nbin;                    /* entries in each bin */
    cua_tc_slot (*bin)[CUA_TC_BIN_CAP];
} cua_tcache;

/* Take the arena's thread caches into account: turn them on for a new arena
 * (lock not needed: not yet shared). */
void _cua_tc_arena_init(cua_arena *a);
/* The calling thread's cache of `a`, made when missing (NULL: caches off for
 * `a`, destroyed, or no host memory). Takes the arena's lock to make one. */
cua_tcache *_cua_tc_get(cua_arena *a);
/* Its cache of `a` if it has one (no lock taken). */
cua_tcache *_cua_tc_find(cua_arena *a);
/* An allocation of `size` (asize rounded) on `stream` from the cache: true and
 * *out when it had a block. */
bool _cua_tc_pop(cua_tcache *tc, size_t size, cua_stream stream, void **out);
/* The thread frees ptr: true when the cache took it, false when the free must
 * go through the arena's lock. */
bool _cua_tc_push(cua_tcache *tc, void *ptr);
/* After an allocation through the lock (lock held): hand block b (of `size`
 * bytes asked) to the thread's cache when it is small enough; its word is
 * returned for _cua_tc_note (0: not handed). */
uint64_t _cua_tc_grant_locked(cua_tcache *tc, cua_block *b, size_t size);
/* ... and after the lock is released: note it in the thread's own map. */
void _cua_tc_note(cua_tcache *tc, void *ptr, cua_block *b, uint64_t word, cua_stream stream);

/* Arena side (arena lock held). */
/* Another thread frees b (at ptr), handed out by a cache: into that cache when
 * it still knows the block (Note [frees from other threads]); false: the
 * arena frees it. */
bool _cua_tc_give_back_locked(cua_arena *a, cua_block *b, void *ptr);
/* Give every cached block back to the heap (trim, out of memory, walk). */
uint64_t _cua_tc_flush_all_locked(cua_arena *a);
/* Close (offload) or open (restore) every cache; closing also flushes. */
void _cua_tc_close_all_locked(cua_arena *a);
void _cua_tc_open_all_locked(cua_arena *a);
/* Destroy: every cache dead, the list dropped (the threads free them). */
void _cua_tc_kill_all_locked(cua_arena *a);
/* A block handed out by a cache becomes the arena's again (free or
 * record_stream from another thread, offload): false when it is cached,
 * that is the user freed it already. */
bool _cua_tc_disown_locked(cua_arena *a, cua_block *b);
/* ... every live block handed out by a cache (walk, close: the sizes asked
 * become the heap's). */
void _cua_tc_disown_all_locked(cua_arena *a);
/* Sums of the caches' corrections, for statistics. */
typedef struct cua_tc_sums {
    int64_t live, blocks, alloc;
    uint64_t allocs, frees, cached_bytes;
} cua_tc_sums;
void _cua_tc_sums_locked(const cua_arena *a, cua_tc_sums *s);

/* For tests: how many caches the calling thread holds (dead ones included). */
size_t _cua_tc_count_mine(void);

static inline unsigned _cua_tcw_state(uint64_t w) { return (unsigned)(w & 3u); }

#endif /* CUA_TCACHE_H */
