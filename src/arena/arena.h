/*
 * arena.h - an arena: one segment (address range + physical chunks), the heap
 * of blocks in it, its streams, limit, release policy and statistics, behind
 * one lock. arena.c holds the policies (placement, growth, the footprint cap,
 * trims, limits); stream.c the stream-ordered reuse; stats.c and check.c read
 * the arena. Callers (api.c) take the lock and check `alive` first.
 */
#ifndef CUA_ARENA_H
#define CUA_ARENA_H

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
    /* Everything from here is cleared for the next arena (registry.c). */
    char name[CUA_NAME_CAP];
    int device;
    /* The body: released by destroy. */
    cua_backend *bk;
    bool owns_bk;
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
};

/* registry.c: handles. A handle is no address: it names a slot of the
 * registry's table and the generation of the arena in it, so that any value
 * a caller passes is decoded, never read from. The arena in the slot is the
 * handle's while its generation is the handle's (check it under the lock). */
/* The arena memory a handle names, and the handle's generation into *gen;
 * NULL when h is no handle (NULL, a pointer, garbage). */
cua_arena *_cua_arena_of(const cua_arena *h, uint32_t *gen);
/* Memory for a new arena: the pool's, cleared from `name` on, or new; its
 * lock held (the caller builds the arena, then unlocks). */
cua_status _cua_registry_body(cua_arena **out);
/* Give a destroyed arena's memory (or one never handed out) to the pool. */
void _cua_registry_recycle(cua_arena *a);
/* Validate the handle in *pa and take its arena's lock (alive, of the
 * handle's generation); *pa becomes the arena. On failure (INVALID_ARG,
 * DESTROYED; the message says which) nothing is held and *pa stays. */
cua_status _cua_arena_enter(cua_arena **pa);

/* Lifecycle (lock not held by the caller for create; held for the rest). */
cua_status _cua_arena_create(const cua_arena_config *cfg, cua_arena **out);
cua_status _cua_arena_destroy_locked(cua_arena *a, unsigned flags);

/* final: a device out-of-memory is the answer (counted, reported, an event);
 * else it is returned quietly, for the caller to ask other arenas first. */
cua_status _cua_arena_alloc_locked(cua_arena *a, size_t size, cua_stream stream, bool final,
                                   void **out);
/* Give back up to `want` cached bytes for another arena's allocation (the
 * floor stays). */
cua_status _cua_arena_trim_for_pressure_locked(cua_arena *a, uint64_t want, uint64_t *released);
cua_status _cua_arena_free_locked(cua_arena *a, void *ptr);
/* A block a thread cache held goes back to the heap (tcache.c's flush). */
void _cua_arena_free_cached_locked(cua_arena *a, cua_block *b);
cua_status _cua_arena_trim_locked(cua_arena *a, uint64_t keep, uint64_t *released);
cua_status _cua_arena_set_limit_locked(cua_arena *a, size_t limit);
cua_status _cua_arena_set_release_locked(cua_arena *a, size_t bytes);
cua_status _cua_arena_set_floor_locked(cua_arena *a, size_t floor);
/* If the arena has made no alloc or free since the last look and that is
 * idle_ms ago, trim it (threshold, floor); else note the time. */
cua_status _cua_arena_trim_if_idle_locked(cua_arena *a, uint64_t now_ns, uint64_t *released);
cua_status _cua_arena_record_stream_locked(cua_arena *a, void *ptr, cua_stream stream);
cua_status _cua_arena_ptr_info_locked(cua_arena *a, const void *ptr, void **base, size_t *size);

/* Find the live block of ptr, or explain why there is none. */
cua_status _cua_arena_lookup_live(cua_arena *a, const void *ptr, cua_block **out);

/* stream.c */
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
/* Learn which frees other streams have completed and make those blocks usable
 * by every stream. blocking: wait for the streams (stream sync) instead of
 * asking events. Returns the blocks retagged (0 on failure; status in *st). */
uint64_t _cua_stream_reclaim(cua_arena *a, bool blocking, cua_status *st);
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
/* The stream is about to be destroyed: wait for it now and never touch it
 * again (cua_stream_retire). CUA_OK also when the arena never saw it. */
cua_status _cua_stream_retire_locked(cua_arena *a, cua_stream stream);
/* Put a block that leaves the live set back into the heap (shared by free and
 * pending release): page counts, free sequence, coalescing. */
void _cua_arena_put_free(cua_arena *a, cua_block *b, uint32_t tag);
/* While the arena has one stream, free blocks merge whatever their tags. */
static inline bool _cua_arena_one_stream(const cua_arena *a) { return a->streams.n <= 2; }

/* stats.c */
void _cua_stats_read(const cua_arena *a, cua_stats *out);
size_t _cua_stats_json(const cua_stats *s, const char *name, int device, const char *backend,
                       char *buf, size_t cap);

/* check.c */
cua_status _cua_arena_check_locked(cua_arena *a);

/* Queue an event of this call (lock held); a full queue merges it into the
 * last one. Delivered by _cua_events_deliver once the lock is released. */
void _cua_arena_event(cua_arena *a, cua_arena_event_kind kind, const char *reason,
                      uint64_t bytes);
/* Unlock the arena and hand its queued events to the callback. */
void _cua_events_deliver(cua_arena *a);
/* Deliver one event now (no lock held). */
void _cua_event_now(cua_arena *a, cua_arena_event_kind kind);

/* Take the arena's lock if it is alive (true); a destroyed arena is left
 * unlocked (false). `alive` only changes under the lock. */
void _cua_arena_lock_wait(cua_arena *a); /* tcache.c: count the wait, then take the lock */
static inline bool _cua_arena_lock_alive(cua_arena *a)
{
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

/* Release the arena's lock; events the call queued go to the callback after it. */
static inline void _cua_arena_unlock(cua_arena *a)
{
    if (CUA_UNLIKELY(a->nevents != 0))
        _cua_events_deliver(a);
    else
        _cua_unlock(&a->lock);
}

/* offload.c (lock held). */
cua_status _cua_arena_offload_locked(cua_arena *a, bool keep_data);
cua_status _cua_arena_restore_locked(cua_arena *a);
/* The bytes a restore maps: the pages its live blocks cover (blocks share
 * pages, and a block's first and last pages are whole). */
uint64_t _cua_arena_restore_need_locked(const cua_arena *a);
/* Drop the image (destroy); forget one block's data (freed while offloaded). */
void _cua_image_free(cua_arena *a);
/* Unmap the spare image (trim, destroy). */
void _cua_image_drop_spare(cua_arena *a);
void _cua_image_drop(cua_arena *a, uint64_t off);

/* pressure.c: before an allocation fails for want of device memory, take
 * cached memory from the device's other arenas (lowest priority first, only
 * as much as needed) and call the eviction callbacks; true when that freed
 * anything. Called with no lock held. After the final failure, add the
 * device's arenas and the verdict (fragmentation or exhaustion) to the message. */
bool _cua_pressure_relieve(cua_arena *a, size_t size);
void _cua_pressure_report(cua_arena *a, size_t size);

/* registry.c: the arenas alive, and the default arena of each device.
 * _cua_registry_default returns the handle of the device's default, making
 * `candidate` the default when there is none (NULL: only look). */
#define CUA_MAX_DEVICES 64
cua_status _cua_registry_add(cua_arena *a);
/* Destroy: a leaves the list of live arenas and the defaults. */
void _cua_registry_remove(cua_arena *a);
/* The handle of the device's default arena (a becomes it when there is none). */
cua_arena *_cua_registry_default(int device, cua_arena *candidate);
/* The arenas alive on device (or all) in a malloc'ed array (NULL, 0: none). */
cua_status _cua_registry_snapshot(int device, cua_arena ***out, size_t *n);
/* The same, lowest priority first (creation order among equals). */
cua_status _cua_registry_by_priority(int device, cua_arena ***out, size_t *n);
/* The counters of a device's mapped bytes (NULL past CUA_MAX_DEVICES). */
cua_devstat *_cua_registry_devstat(int device);

/* addrmap.c: the process-wide map from an address to its arena (1 GiB granules). */
cua_status _cua_addrmap_insert(uintptr_t base, size_t size, cua_arena *a);
cua_arena *_cua_addrmap_find(uintptr_t addr);
/* Forget a range only if it still belongs to `a` (a later arena may own it). */
void _cua_addrmap_remove(uintptr_t base, size_t size, cua_arena *a);
/* `a` was destroyed: its range, where still its, answers for a destroyed arena
 * (its memory goes to the next arena), until another arena reserves it. */
void _cua_addrmap_bury(uintptr_t base, size_t size, cua_arena *a);

/* torch.c: the arena a framework's allocation hook (PyTorch, CuPy) takes
 * memory from on `device` when it names none: the calling thread's current
 * arena when it is on that device, else the device's default arena (NULL when
 * that cannot be made: cua_last_error() says why). */
cua_arena *_cua_hook_arena(int device);

#endif /* CUA_ARENA_H */
