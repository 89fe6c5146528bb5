/*
 * types.h - the arena's data: one segment (address range + physical chunks),
 * the heap of blocks in it, its streams, limit, release policy and
 * statistics, behind one lock; and the lock's inline helpers. Every module of
 * the arena layer reads it; each declares its own functions in its header
 * (stream.h, tcache.h, policy.h, offload.h, ..., arena.h for arena.c).
 * Callers take the lock and check `alive` first (_cua_arena_lock_alive).
 */
#ifndef CUA_ARENA_TYPES_H
#define CUA_ARENA_TYPES_H

#include "base/devstat.h"
#include "core/heap.h"
#include "core/segment.h"

#include <string.h>

#define CUA_ARENA_MAGIC 0x41524e41u /* "ARNA" */
#define CUA_ARENA_EVENTS 8          /* events one call may queue (more merge) */
#define CUA_NAME_CAP 64

/* One stream that used the arena; its index in the table is its heap tag
 * (tag 0 stands for "any stream" and has no entry in use). */
typedef struct cua_streamslot {
    cua_stream stream;
    cua_event ev;            /* reclaim event, valid while has_ev */
    uint64_t ev_seq;         /* the arena's free sequence when ev was recorded */
    uint64_t done_seq;       /* frees on this stream up to this sequence are complete */
    uint64_t last_free_seq;  /* sequence of the last free on this stream */
    uint64_t shared_seq;     /* its free blocks up to this sequence are tag 0 */
    bool has_ev;
    bool active;             /* on the streams' `active` list */
    /* A job asks or records its event without the arena lock (Note [events
     * asked outside the lock], stream.c): the job's token, 0 when none. */
    uint64_t busy;
    /* retired (cua_stream_retire): the stream is gone; its work was waited for,
     * so done_seq is UINT64_MAX, nothing is recorded on it again, and the
     * blocks it frees go to every stream. The slot is taken again by a new
     * stream once no free block carries its tag. */
    bool retired;
} cua_streamslot;

/* Other streams a live block was used on (cua_record_stream), and at its free
 * the events recorded on them. */
struct cua_uses {
    uint32_t n, cap;
    /* unsynced: no event could be recorded and the stream could not be
     * synchronised at the free; a blocking poll synchronises it later. */
    struct { cua_stream stream; cua_event ev; bool unsynced; } use[];
};

/* A driver call on a slot's reclaim event, made by an allocating thread
 * without the arena lock (stream.c). The arena lends it under the lock; the
 * thread that planned it runs it, writes `st`, and marks it DONE; whoever
 * holds the lock next learns from it. A destroy waits for RUNNING ones. */
enum { CUA_JOB_FREE = 0, CUA_JOB_RUNNING, CUA_JOB_DONE };
#define CUA_JOBS 32
/* Slots for calls posted to the lock's holder (combine.c; at most 64: a mask). */
#define CUA_COMBINE_SLOTS 32
typedef struct cua_evjob {
    _Atomic int state;
    bool record;             /* record `ev` on `stream`, then ask it; else ask it */
    bool done;               /* (answer) the event has completed */
    uint32_t tag;
    uint64_t token;          /* the slot's `busy` while it runs */
    uint64_t seq;            /* record: the free sequence the event stands for */
    cua_stream stream;
    cua_event ev;            /* record: 0 until made, when the pool had none */
    cua_status st;           /* (answer) the driver's */
} cua_evjob;

typedef struct cua_streams {
    cua_streamslot *slot;    /* slot[0] unused: tag 0 */
    uint32_t n, cap;         /* slots in use, including slot 0 */
    uint32_t last;           /* the slot found last (a one-entry cache) */
    /* stream -> slot of the streams not retired (open addressing, 0: empty),
     * so that a look-up costs the same among 10 streams or 100,000. */
    uint32_t *index;
    uint32_t index_mask;     /* its size - 1 (0: none yet) */
    uint32_t *retired;       /* retired slots, for new streams (a stack) */
    uint32_t nretired, cap_retired;
    /* The slots that may have something to learn (frees not known complete,
     * or blocks not yet shared): what reclaims and trims look at, not every
     * stream the arena ever saw. Room for every slot (cap). */
    uint32_t *active;
    uint32_t nactive;
    cua_event *pool;         /* idle events for reuse */
    uint32_t npool, cap_pool;
    cua_block *pending;      /* freed blocks waiting for other streams (fnext list) */
    uint64_t pending_bytes, pending_blocks;
    cua_evjob job[CUA_JOBS]; /* lent out to run without the lock */
    uint32_t jobs_out;       /* jobs not FREE */
    uint64_t token;          /* the last job token handed out */
} cua_streams;

struct cua_arena {
    /* The memory of an arena is never freed: after its destroy it waits in
     * the registry's pool for the next arena (registry.c). Users hold a
     * handle (`self`: the slot and the generation), not this address, so a
     * stale handle is told apart by its generation and answered
     * CUA_ERR_DESTROYED: a destroyed arena costs no memory of its own.
     * magic and tc_on are read by every thread's fast path: they share no
     * cache line with the lock and the counters written under it. */
    uint32_t magic;
    _Atomic int tc_on;           /* threads may use caches (tcache.c; read without the lock) */
    _Alignas(64) cua_lock_t lock;
    _Atomic int alive;       /* written under lock; read without it by registry walks */
    /* +1 at every destroy (under the lock): code that let go of the lock (a
     * callback ran) compares it with the value it saw, so that an arena
     * destroyed meanwhile - or another arena in the same memory since - is
     * told apart (_cua_arena_same); handles carry it too. */
    _Atomic uint32_t gen;
    uint32_t idx;            /* its slot in the registry's table of handles: for life */
    cua_arena *self;         /* the handle of the arena in it now (or last) */
    _Atomic uint32_t lock_waits; /* takers that found the lock held (thread_cache auto) */
    /* thread_cache auto and caches allowed: decided at create; read by lock
     * takers without the lock (a taker may hold a destroyed arena's memory
     * that the next arena is being built in: atomic, never cleared by memset) */
    _Atomic bool tc_auto;
    /* Calls posted by threads that found the lock held, for the holder to do
     * (combine.c): a slot per poster, and a bit per taken slot. Never
     * cleared: a poster empties its slot, or the holder does when it takes it. */
    _Alignas(64) _Atomic uint64_t req_mask;
    struct cua_req *_Atomic req[CUA_COMBINE_SLOTS];
    /* Everything from here is cleared for the next arena (registry.c). */
    char name[CUA_NAME_CAP];
    int device;
    /* The body: released by destroy. */
    cua_backend *bk;
    bool owns_bk;
    cua_devstat *dev;        /* the device's counters (NULL: device out of range) */
    cua_arena_config cfg;    /* name points to `name` */
    cua_segment seg;
    bool nvtx_on;            /* its segments and blocks are registered with NVTX (nvtx.c) */
    cua_heap heap;
    cua_streams streams;
    cua_callstats cs;
    uint64_t seq;            /* free sequence: +1 per free */
    uint64_t top_used;       /* highest end of any block ever handed out */
    uint64_t footprint_hw;   /* the demand peak: most bytes mapped with no cache left */
    /* Offloaded (offload.c): the live blocks hold no pages; their data, unless
     * discarded, is in `image` (host memory), one entry per block by offset. */
    bool offloaded;
    struct cua_image {
        struct cua_image_block { uint64_t off, len, at; } *blocks; /* sorted by off */
        size_t n;
        unsigned char *data;
        uint64_t bytes;
        size_t map_bytes;   /* data's mapping (bytes rounded up, or a reused one) */
        bool discarded;
        /* CUA_ARENA_KEEP_MAPPED: the runs of pages mapped at the offload,
         * [first, end) page numbers, mapped again by the restore. */
        uint32_t (*kept)[2];
        size_t nkept;
    } image;
    /* The last image's mapping after a restore, its pages lazily freed
     * (MADV_FREE), for the next offload (offload.c). */
    unsigned char *spare_image;
    size_t spare_bytes;
    /* cua_trim_idle's view: the alloc + free count it saw last, and since when. */
    uint64_t idle_seen_ops, idle_since_ns;
    /* Events of the current call, delivered after the lock is released (api.c). */
    cua_arena_event events[CUA_ARENA_EVENTS];
    unsigned nevents;
    /* Thread caches (tcache.c): the list and tc_fix under the lock. */
    struct cua_tcache *tcs;
    int64_t tc_fix;              /* live bytes: what caches' blocks freed here left behind */
    uint64_t tc_gone_allocs, tc_gone_frees; /* the counts of caches whose threads ended */
    bool tc_granted;             /* a cache was ever handed a block (blocks may be OUT) */
    /* statistics (stats.c reads them) */
    uint64_t live_bytes, live_blocks, allocated_bytes;
    uint64_t peak_live, peak_mapped;
    uint64_t alloc_count, free_count, oom_count, trim_count, trimmed_bytes;
    uint64_t combined;       /* calls the lock's holder did for other threads */
};

/* thread_cache auto: caches go on after this many takers found the lock held. */
#define CUA_TC_AUTO_WAITS 256u

/* A taker found the arena's lock held: thread_cache auto turns caches on
 * once threads queue. */
static inline void _cua_arena_count_wait(cua_arena *a)
{
    if (atomic_load_explicit(&a->tc_auto, memory_order_relaxed) &&
        !atomic_load_explicit(&a->tc_on, memory_order_relaxed)) {
        uint32_t n = atomic_fetch_add_explicit(&a->lock_waits, 1, memory_order_relaxed) + 1;
        if (n == CUA_TC_AUTO_WAITS) atomic_store_explicit(&a->tc_on, 1, memory_order_relaxed);
    }
}

/* Take the arena's lock after finding it held: count the wait, then wait. */
static inline void _cua_arena_lock_wait(cua_arena *a)
{
    _cua_arena_count_wait(a);
    _cua_lock(&a->lock);
}

/* Take the arena's lock if it is alive (true); a destroyed arena is left
 * unlocked (false). `alive` only changes under the lock. Released with
 * _cua_arena_unlock (events.h), which hands over the events the call queued. */
static inline bool _cua_arena_lock_alive(cua_arena *a)
{
    _cua_lock_check(&a->lock); /* a blocking take: the try below is only its fast path */
    if (CUA_UNLIKELY(!_cua_trylock(&a->lock))) _cua_arena_lock_wait(a);
    if (CUA_LIKELY(atomic_load_explicit(&a->alive, memory_order_acquire))) return true;
    _cua_unlock(&a->lock);
    return false;
}

/* The arena seen with generation `gen` is still alive, not destroyed since
 * (read without its lock: for code that let the lock go, and ran callbacks). */
static inline bool _cua_arena_same(cua_arena *a, uint32_t gen)
{
    return atomic_load_explicit(&a->alive, memory_order_acquire) &&
           atomic_load_explicit(&a->gen, memory_order_relaxed) == gen;
}

/* The arena's lock, just taken, is kept when the arena is alive and still of
 * generation `gen` (true); otherwise it is let go (false): destroyed
 * meanwhile, its memory maybe another arena's since. */
static inline bool _cua_arena_held_same(cua_arena *a, uint32_t gen)
{
    if (CUA_LIKELY(atomic_load_explicit(&a->alive, memory_order_acquire) &&
                   atomic_load_explicit(&a->gen, memory_order_relaxed) == gen))
        return true;
    _cua_unlock(&a->lock);
    return false;
}

/* Take the arena's lock if it is alive and still of generation `gen` (true);
 * otherwise leave it unlocked (false). */
static inline bool _cua_arena_lock_same(cua_arena *a, uint32_t gen)
{
    _cua_lock_check(&a->lock); /* a blocking take: the try below is only its fast path */
    if (CUA_UNLIKELY(!_cua_trylock(&a->lock))) _cua_arena_lock_wait(a);
    return _cua_arena_held_same(a, gen);
}

/* While the arena has one stream, free blocks merge whatever their tags. */
static inline bool _cua_arena_one_stream(const cua_arena *a) { return a->streams.n <= 2; }

#endif /* CUA_ARENA_TYPES_H */
