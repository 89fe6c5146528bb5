/*
 * cuarena_inspect.h - what an engine reads about its memory: an arena's
 * statistics and snapshot, arena events, the arenas of a device and the
 * device report (JSON and Prometheus), headroom and peaks, the allocation
 * history. Part of the public API (cuarena.h includes it; including it
 * alone includes cuarena.h).
 */
#ifndef CUARENA_INSPECT_H
#define CUARENA_INSPECT_H

#include "cuarena.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */
/* ------------------------------------------------------------------------ */

/** One arena's figures. Bytes unless said otherwise. */
typedef struct cua_stats {
    uint64_t live_bytes;          /**< bytes asked for by the live blocks */
    uint64_t live_blocks;         /**< number of live blocks */
    uint64_t allocated_bytes;     /**< live block sizes after rounding to CUA_ALIGNMENT */
    uint64_t mapped_bytes;        /**< physical memory mapped from the backend */
    uint64_t reserved_bytes;      /**< address space reserved */
    uint64_t free_bytes;          /**< mapped bytes not in live (or pending) blocks; all
                                   *   that is mapped while offloaded (its blocks hold
                                   *   no pages) */
    uint64_t cached_bytes;        /**< mapped pages with no live block: what trim can return */
    uint64_t pending_bytes;       /**< freed bytes waiting for other streams' events */
    uint64_t largest_free_bytes;  /**< largest free block that lies in mapped pages */
    uint64_t free_blocks;         /**< number of free blocks */
    uint64_t peak_live_bytes;     /**< highest live_bytes since creation or reset */
    uint64_t peak_mapped_bytes;   /**< highest mapped_bytes since creation or reset */
    uint64_t alloc_count;         /**< successful allocations */
    uint64_t free_count;          /**< successful frees */
    uint64_t oom_count;           /**< allocations that failed (limit or out of memory) */
    uint64_t trim_count;          /**< trims that released pages (explicit or by policy) */
    uint64_t trimmed_bytes;       /**< bytes released by trims in total */
    uint64_t limit_bytes;         /**< the limit, 0 = none */
    uint64_t adopted_bytes;       /**< physical memory from reservations, not mapped yet */
    uint64_t tcache_allocs;       /**< of alloc_count: served by a thread's cache (no lock) */
    uint64_t tcache_frees;        /**< of free_count: taken by a thread's cache (no lock) */
    uint64_t tcache_bytes;        /**< freed bytes waiting in threads' caches (in free_bytes) */
    uint64_t mapped_total_bytes;  /**< bytes mapped since creation, in all (pages moved in) */
    uint64_t unmapped_total_bytes; /**< bytes unmapped since creation, in all (pages moved out) */
    double mapped_over_live;      /**< mapped_bytes / live_bytes (0 when nothing is live) */
    double free_fragmentation;    /**< 1 - largest_free / free_bytes (0 when nothing is free) */
    uint64_t calls[CUA_CALL_MAX];   /**< backend calls made for this arena, per kind (cua_call) */
    uint64_t call_ns[CUA_CALL_MAX]; /**< nanoseconds spent in them, per kind */
} cua_stats;

/**
 * Read the figures of `arena` into *out, of `size` bytes (the caller's
 * sizeof(cua_stats): a library newer than the caller's header fills only the
 * fields the caller knows). cua_arena_get_stats() passes it.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL, or a size smaller than the first
 * release's struct), CUA_ERR_DESTROYED.
 */
CUA_API cua_status cua_arena_get_stats_sized(cua_arena *arena, cua_stats *out, size_t size);

/* Read the figures of `arena` into *out (cua_arena_get_stats_sized). */
static inline cua_status cua_arena_get_stats(cua_arena *arena, cua_stats *out)
{
    return cua_arena_get_stats_sized(arena, out, sizeof *out);
}

/** Set the peaks of `arena` (peak_live_bytes, peak_mapped_bytes) to the current
 *  values. Returns CUA_OK, CUA_ERR_INVALID_ARG, CUA_ERR_DESTROYED. */
CUA_API cua_status cua_arena_reset_peaks(cua_arena *arena);

/**
 * Write the arena's figures as one JSON object (no newline) into buf.
 * *len receives the length without the terminating NUL; when it is >= cap the
 * text was cut and a buffer of *len + 1 bytes is needed. buf may be NULL when
 * cap is 0. Returns CUA_OK, CUA_ERR_INVALID_ARG, CUA_ERR_DESTROYED.
 */
CUA_API cua_status cua_arena_stats_json(cua_arena *arena, char *buf, size_t cap, size_t *len);

/** What a cua_region describes. */
typedef enum cua_region_kind {
    CUA_REGION_SEGMENT = 0, /**< mapped physical memory: one handle (a chunk), or one
                             *   cuMemAlloc segment without VMM */
    CUA_REGION_LIVE,        /**< (a piece of) a live block inside the last segment */
    CUA_REGION_FREE,        /**< (a piece of) a free block inside the last segment */
    CUA_REGION_PENDING,     /**< (a piece of) a freed block still in use by a stream */
} cua_region_kind;

/** One region of an arena's snapshot (cua_arena_walk). */
typedef struct cua_region {
    cua_region_kind kind;
    uintptr_t address;      /**< device address */
    size_t size;            /**< bytes */
    size_t requested;       /**< LIVE: bytes asked for (on the block's first piece, else 0) */
    cua_stream stream;      /**< LIVE: the stream it was allocated on */
} cua_region;

/** Called once per region, in address order; `user` is what was passed. */
typedef void (*cua_region_fn)(const cua_region *region, void *user);

/**
 * A snapshot of the arena's mapped memory: each segment (physical handle) in
 * address order (also the whole segments of an arena without VMM, which lie
 * where the driver put them), followed by the pieces of blocks that lie in it (a block
 * that spans several segments is cut at their edges). Unmapped address space
 * is not reported. The snapshot is taken under the arena's lock and `fn` runs
 * after it is released, so `fn` may call cuarena; `user` is passed to each call.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL), CUA_ERR_DESTROYED,
 * CUA_ERR_OUT_OF_MEMORY (host memory for the snapshot).
 */
CUA_API cua_status cua_arena_walk(cua_arena *arena, cua_region_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* Callbacks: the one rule                                                   */
/* ------------------------------------------------------------------------ */

/*
 * The arena-event callback (cua_set_event_callback), the eviction callbacks
 * (cua_add_evict_callback) and a walk's region function (cua_arena_walk) run
 * on the thread of the call that raised them, with no lock of cuarena held:
 * no arena's, no registry's, no callback list's. So a callback may call any
 * cuarena function, on any arena, the one whose call ran it included:
 * allocate, free, trim, offload, restore, destroy (its own calls may raise
 * events again: the callback then runs nested). The caller's
 * cua_last_error() is kept across it.
 *
 * What the call that ran a callback answers when the callback destroyed or
 * offloaded that call's arena (checked after every callback returns, with
 * the arena's generation: never a use of what the destroy released):
 *   - cua_arena_alloc(), cua_malloc(), the framework hooks: CUA_ERR_DESTROYED
 *     (a block it had found went with the arena), CUA_ERR_OFFLOADED (a block
 *     it had found is freed again: it would hold no memory), or its own
 *     failure when the allocation had failed already (CUA_ERR_OUT_OF_MEMORY,
 *     CUA_ERR_LIMIT: the callback of that event destroyed or offloaded it;
 *     the message then lacks the device's arenas);
 *   - cua_arena_restore(): CUA_ERR_DESTROYED (the device was full and an
 *     eviction callback destroyed it);
 *   - cua_arena_create(): CUA_ERR_DESTROYED and *out NULL (the callback of
 *     its CUA_ARENA_CREATED event destroyed it);
 *   - every other call: its own status; its work was done before the
 *     callback ran (a free, a trim, a limit, a destroy).
 * Another thread that destroys the arena meanwhile is answered the same way.
 *
 * Unsetting: cua_set_event_callback() and cua_remove_evict_callback() return
 * only after the calls of the old callback running on other threads have
 * returned, so that its `user` may be freed at once (a shutdown: unset, then
 * free). Called from inside a callback they do not wait (two threads each in
 * a callback and unsetting would wait for each other forever): a callback
 * may unset itself, and the events of its call left undelivered are dropped.
 * Do not unset while holding a lock that the callback takes.
 */

/* ------------------------------------------------------------------------ */
/* Arena events: a callback for engines that log what their memory does      */
/* ------------------------------------------------------------------------ */

/** What happened to an arena. */
typedef enum cua_arena_event_kind {
    CUA_ARENA_CREATED = 0,     /**< cua_arena_create() made it */
    CUA_ARENA_DESTROYED,       /**< cua_arena_destroy() gave everything back */
    CUA_ARENA_TRIMMED,         /**< pages went back to the driver: `bytes`, `reason` */
    CUA_ARENA_OUT_OF_MEMORY,   /**< an allocation of `bytes` failed: `reason` */
    CUA_ARENA_OFFLOADED,       /**< its pages went back, `bytes` of live data kept on the host
                                *   (reason "offload"), or dropped (reason "discard") */
    CUA_ARENA_RESTORED,        /**< its live blocks are mapped again, `bytes` copied back */
} cua_arena_event_kind;

/** One event, valid only during the callback. */
typedef struct cua_arena_event {
    cua_arena_event_kind kind;
    cua_arena *arena;          /**< the arena (after DESTROYED its handle names it only) */
    const char *name;          /**< its name */
    int device;                /**< its device */
    uint64_t bytes;            /**< TRIMMED: bytes unmapped; OUT_OF_MEMORY: bytes asked */
    /** TRIMMED: "trim" (asked for), "release_threshold", "footprint_cap",
     *  "limit", "idle", "out_of_memory" (given back before failing), "pressure"
     *  (given back for another arena of the device); OUT_OF_MEMORY:
     *  "limit" or "device"; otherwise "". */
    const char *reason;
    uint64_t mapped_bytes;     /**< the arena's mapped bytes after the event */
    uint64_t live_bytes;       /**< the arena's live bytes after the event */
} cua_arena_event;

/** The callback: `user` is what was given with it. */
typedef void (*cua_arena_event_fn)(const cua_arena_event *event, void *user);

/**
 * Set the process's arena-event callback `fn` (NULL: none), called with
 * `user` as its last argument. It runs on the
 * thread whose call caused the event, after that call has released the
 * arena's lock and before it returns, so it may call cuarena (the caller's
 * cua_last_error() is kept; see "Callbacks: the one rule" above). Several
 * trims in one call of the same reason may arrive as one event. Returns
 * CUA_OK once the calls of the callback set before, running on other
 * threads, have returned (not when called from inside a callback): then the
 * old `user` may be freed.
 */
CUA_API cua_status cua_set_event_callback(cua_arena_event_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* The arenas of a device: enumerate, find, report, headroom                 */
/* ------------------------------------------------------------------------ */

/** Every device, where a function takes a device ordinal. */
#define CUA_ALL_DEVICES (-1)

/**
 * The arenas alive on `device` (or CUA_ALL_DEVICES), in the order they were
 * created: up to cap of them into out (out may be NULL when cap is 0), and
 * their number into *n (which may exceed cap: call again with more room).
 * Arenas destroyed meanwhile answer later calls with CUA_ERR_DESTROYED.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (n NULL, out NULL with cap > 0, device < -1).
 */
CUA_API cua_status cua_arena_list(int device, cua_arena **out, size_t cap, size_t *n);

/**
 * The first arena alive on `device` (or CUA_ALL_DEVICES) named `name`, into *out.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL argument, device < -1),
 * CUA_ERR_NOT_FOUND (*out is then NULL).
 */
CUA_API cua_status cua_arena_find(int device, const char *name, cua_arena **out);

/**
 * Where the memory of a device went, as one JSON object (no newline) in buf
 * (cap, *len and a cut text as for cua_arena_stats_json()):
 *   {"device":D,"driver_free_bytes":F,"driver_total_bytes":T,"driver_used_bytes":U,
 *    "mapped_bytes":M,"live_bytes":L,"cached_bytes":C,"unaccounted_bytes":X,
 *    "headroom_bytes":H,"peak_mapped_bytes":P,"arenas":[<cua_arena_stats_json of each arena>,...]}
 * M, L, C sum the arenas alive on the device; X = U - M (0 if negative): device
 * memory that no cuarena arena maps (other libraries, the CUDA context, another
 * process) - in a pipeline reload that fails, usually the memory that did not
 * go; H as cua_headroom(); P as cua_device_peak(). The driver figures come
 * from the backend of the device's first arena (0 when it has none).
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (len NULL, buf NULL with cap > 0,
 * device < 0), CUA_ERR_BACKEND (the driver query failed).
 */
CUA_API cua_status cua_device_report_json(int device, char *buf, size_t cap, size_t *len);

/**
 * The figures of cua_device_report_json() for `device` (or CUA_ALL_DEVICES)
 * in Prometheus' text exposition format (version 0.0.4), for a metrics
 * endpoint to serve as it is, into buf (cap, *len and a cut text as for
 * cua_arena_stats_json()). Per arena, labelled device="D",arena="NAME":
 * cuarena_arena_mapped_bytes, _live_bytes, _live_blocks, _cached_bytes,
 * _free_bytes, _largest_free_bytes, _fragmentation_ratio, _reserved_bytes,
 * _limit_bytes, _peak_live_bytes, _peak_mapped_bytes (gauges) and
 * _allocations_total, _frees_total, _oom_total, _trims_total,
 * _trimmed_bytes_total (counters); per device, labelled device="D":
 * cuarena_device_mapped_bytes, _live_bytes, _cached_bytes, _peak_mapped_bytes,
 * _arenas, _driver_free_bytes, _driver_total_bytes, _headroom_bytes; and
 * cuarena_build_info{version="X.Y.Z"} 1. Label values are escaped (\\, \",
 * \n) and made valid UTF-8 (U+FFFD for a byte of no valid sequence); a second
 * arena of the same name on a device is labelled NAME#2, a third NAME#3.
 * Every family has its HELP and TYPE lines, also with no arena (a device
 * asked for by its ordinal then reports zeros). Lines end with "\n".
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (len NULL, buf NULL with cap > 0,
 * device < -1), CUA_ERR_OUT_OF_MEMORY (host memory), CUA_ERR_BACKEND (the
 * driver query failed).
 */
CUA_API cua_status cua_device_report_prometheus(int device, char *buf, size_t cap, size_t *len);

/**
 * How much more a new allocation on `device` could get: the driver's free
 * memory in whole pages, less 1/4096 of it and one page that the driver needs
 * to map them (an allocation of all of it fails on a GPU), plus what every
 * arena of the device could give back by a trim (cached_bytes). What to size a
 * KV cache from, instead of probing. The bytes go to *out.
 * Returns CUA_OK (0 when the device has no arena), CUA_ERR_INVALID_ARG,
 * CUA_ERR_BACKEND.
 */
CUA_API cua_status cua_headroom(int device, size_t *out);

/**
 * The most bytes all arenas of `device` had mapped at once, since the process
 * started or cua_device_reset_peak(), into *peak_mapped, and what they map now
 * into *mapped_now (either may be NULL, not both). Per-arena peaks are in cua_stats.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (device outside 0..63).
 */
CUA_API cua_status cua_device_peak(int device, size_t *peak_mapped, size_t *mapped_now);

/** Start the device's peak again from what is mapped now. Returns CUA_OK, CUA_ERR_INVALID_ARG. */
CUA_API cua_status cua_device_reset_peak(int device);

/* ------------------------------------------------------------------------ */
/* Allocation history                                                        */
/* ------------------------------------------------------------------------ */

/** What a history entry records (cua_history_entry.action). */
typedef enum cua_history_action {
    CUA_HISTORY_ALLOC = 0, /**< a block was handed out: its address and bytes asked */
    CUA_HISTORY_FREE = 1,  /**< a block was freed: its address and bytes asked */
    CUA_HISTORY_MAP = 2,   /**< physical memory was mapped: the mapping's address and bytes */
    CUA_HISTORY_UNMAP = 3, /**< physical memory was given back: its address and bytes */
    CUA_HISTORY_OOM = 4,   /**< an allocation failed for want of memory: the bytes asked */
} cua_history_action;

/** One event of a device's allocation history. */
typedef struct cua_history_entry {
    int action;          /**< a cua_history_action */
    uintptr_t address;   /**< the block's or the mapping's address (0 for CUA_HISTORY_OOM) */
    uint64_t size;       /**< bytes: asked (alloc, free, oom), mapped or unmapped */
    cua_stream stream;   /**< the block's stream (0 for mappings) */
    uint64_t time_ns;    /**< when, CLOCK_MONOTONIC nanoseconds */
    char arena[32];      /**< the arena's name, cut to 31 bytes on a UTF-8 character
                          *   boundary ("" for mappings) */
} cua_history_entry;

/**
 * Start recording the allocation history of `device`: the last `max_entries`
 * events (allocations, frees, mappings, unmappings, out-of-memory answers) of
 * all its arenas, in a ring; a new call starts a new, empty history. While it
 * records, every allocation and free takes the device's history lock (a
 * debugging aid, like torch.cuda.memory._record_memory_history).
 * max_entries 0 stops recording and keeps what was recorded, for reading.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (device out of range, max_entries above
 * 2^30) or CUA_ERR_OUT_OF_MEMORY (no host memory for the ring).
 */
CUA_API cua_status cua_history_enable(int device, size_t max_entries);

/**
 * Read the allocation history of `device`: the newest min(cap, recorded)
 * entries into out, an array of entries of `entry_size` bytes each (the
 * caller's sizeof(cua_history_entry)), oldest first, their number in *n.
 * With cap 0 (out may be NULL) *n is the number of entries recorded, for
 * sizing out. cua_history_read() passes the size. Returns CUA_OK or
 * CUA_ERR_INVALID_ARG (device out of range, n NULL, out NULL with a non-zero
 * cap, or an entry size smaller than the first release's).
 */
CUA_API cua_status cua_history_read_sized(int device, cua_history_entry *out, size_t cap,
                                          size_t *n, size_t entry_size);

/* Read the allocation history of `device` (cua_history_read_sized). */
static inline cua_status cua_history_read(int device, cua_history_entry *out, size_t cap,
                                          size_t *n)
{
    return cua_history_read_sized(device, out, cap, n, sizeof *out);
}

#ifdef __cplusplus
}
#endif

#endif /* CUARENA_INSPECT_H */
