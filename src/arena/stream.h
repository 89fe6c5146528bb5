/*
 * stream.h - stream-ordered reuse (stream.c says how): which stream may take
 * a free block, the lazily recorded reclaim events, the pending list of
 * blocks used on several streams, and streams that go away. Arena lock held.
 */
#ifndef CUA_ARENA_STREAM_H
#define CUA_ARENA_STREAM_H

#include "arena/types.h"

cua_status _cua_stream_slot_find(cua_arena *a, cua_stream stream, uint32_t *tag);
/* The slot (heap tag) of a stream, made on first use; the last one found is
 * checked first, inline. */
static inline cua_status _cua_stream_slot(cua_arena *a, cua_stream stream, uint32_t *tag)
{
    cua_streams *ss = &a->streams;
    if (CUA_LIKELY(ss->last && ss->slot[ss->last].stream == stream)) {
        *tag = ss->last;
        return CUA_OK;
    }
    return _cua_stream_slot_find(a, stream, tag);
}
/* A block was freed under stream slot `tag` at free sequence `seq`: the slot
 * has something to learn (its list has room for every slot). */
static inline void _cua_stream_freed(cua_arena *a, uint32_t tag, uint64_t seq)
{
    cua_streams *ss = &a->streams;
    ss->slot[tag].last_free_seq = seq;
    if (!ss->slot[tag].active) {
        ss->slot[tag].active = true;
        ss->active[ss->nactive++] = tag;
    }
}
/* The tag a block freed under `tag` takes: 0 ("any stream") when that
 * stream was retired, whose work is all done. */
static inline uint32_t _cua_stream_free_tag(const cua_arena *a, uint32_t tag)
{
    return tag && a->streams.slot[tag].retired ? 0 : tag;
}
/* Put a block that leaves the live set back into the free space under its
 * stream's tag (shared by free, the pending list and the thread caches'
 * flush): page counts, free sequence, coalescing. */
void _cua_stream_put_free(cua_arena *a, cua_block *b, uint32_t tag);
/* Learn which frees other streams have completed and make those blocks usable
 * by every stream. blocking: wait for the streams (stream sync) instead of
 * asking events. Returns the blocks retagged (0 on failure; status in *st). */
uint64_t _cua_stream_reclaim(cua_arena *a, bool blocking, cua_status *st);
/* Reclaim events asked without the arena lock (Note [events asked outside the
 * lock], stream.c): _cua_stream_learn applies the answers of the jobs that
 * are done and hands every stream the blocks known complete, with no driver
 * call; _cua_stream_plan lends jobs for the slots still constraining (true
 * when it lent any: the caller releases the lock, calls _cua_stream_run with
 * `run`, takes the lock again, and learns). */
typedef struct cua_evrun {
    cua_backend *bk;
    uint32_t n, idx[CUA_JOBS];
    cua_evjob *job;          /* the arena's jobs */
    cua_callstats cs;        /* the calls made, for the arena's counts */
} cua_evrun;
uint64_t _cua_stream_learn(cua_arena *a);
bool _cua_stream_plan(cua_arena *a, cua_evrun *run);
void _cua_stream_run(cua_evrun *run);      /* (no lock) */
void _cua_stream_ran(cua_arena *a, const cua_evrun *run); /* (lock again) its counts */
/* Wait for slot `tag`'s stream; one that answers no more (destroyed without
 * cua_stream_retire) is waited for with the whole device and retired. */
cua_status _cua_stream_wait_slot(cua_arena *a, uint32_t tag);
/* Highest free sequence whose freed memory no stream can still be using. */
uint64_t _cua_stream_safe_seq(const cua_arena *a);
cua_status _cua_stream_add_use(cua_arena *a, cua_block *b, cua_stream stream);
/* Free a block with uses on other streams: events now, reuse once they complete. */
cua_status _cua_stream_defer(cua_arena *a, cua_block *b);
/* Release pending blocks whose events completed (blocking: wait for them). */
uint64_t _cua_stream_poll_pending(cua_arena *a, bool blocking, cua_status *st);
void _cua_stream_fini(cua_arena *a);
/* Whether the arena has seen `stream`: a live slot, or a use of a block. */
bool _cua_stream_known(const cua_arena *a, cua_stream stream);
/* The stream, known to the arena, is about to be destroyed: wait for it now
 * and never touch it again (the threads' caches gave their blocks back
 * first: arena.c's _cua_arena_retire_stream_locked). */
cua_status _cua_stream_retire_locked(cua_arena *a, cua_stream stream);

#endif /* CUA_ARENA_STREAM_H */
