/*
 * cuarena.h - the one public header of cuarena, a CUDA device-memory allocator
 * with expandable segments, component arenas, explicit trim and fragmentation
 * statistics.
 *
 * It includes cuarena_inspect.h (statistics, snapshots, events, the device
 * report, the allocation history). Two more headers: cuarena_backend.h (the
 * host and fault backends, and backends' counters: for tests and tools) and
 * cuarena_frameworks.h (the entry points PyTorch and CuPy load). docs/abi.md says what stays stable
 * between releases: the symbols of tools/abi-symbols.txt, and structures that
 * only grow at their end (the caller's size is passed along: the *_sized
 * functions, which the inline wrappers of this header call).
 *
 * Conventions
 *   - Every entry point returns a cua_status. CUA_OK is 0; anything else is an
 *     error, and cua_last_error() returns a message in words, kept per thread
 *     until the next error on that thread.
 *   - Handles (cua_arena, cua_backend) are opaque. Passing NULL where a handle
 *     is required returns CUA_ERR_INVALID_ARG; a destroyed arena returns
 *     CUA_ERR_DESTROYED, never a crash. A cua_arena handle is a value, not an
 *     address (never dereference it): any value that is no handle is
 *     answered CUA_ERR_INVALID_ARG without being read.
 *   - All functions are thread-safe. The library never prints.
 *   - Sizes are in bytes. Allocations are aligned to CUA_ALIGNMENT.
 *   - A stream is the integer value of a CUstream / cudaStream_t; 0 is the
 *     default stream. On the host backend streams are plain numbers.
 */
#ifndef CUARENA_H
#define CUARENA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CUA_STATIC)
#define CUA_API
#elif defined(_WIN32)
#define CUA_API __declspec(dllimport)
#elif defined(__GNUC__) && defined(CUA_BUILDING)
#define CUA_API __attribute__((visibility("default")))
#else
#define CUA_API
#endif

/*
 * The version of this header. The build checks that it is meson.build's
 * project version (src/api.c does not compile otherwise), and the test
 * 'version' that cua_version() of the library says the same; a program can
 * compare CUA_VERSION with cua_version() to catch a header and a library of
 * different releases.
 */
#define CUA_VERSION_MAJOR 0
#define CUA_VERSION_MINOR 1
#define CUA_VERSION_PATCH 0
/** The version as one number for #if: major * 10000 + minor * 100 + patch. */
#define CUA_VERSION_NUMBER \
    (CUA_VERSION_MAJOR * 10000 + CUA_VERSION_MINOR * 100 + CUA_VERSION_PATCH)
#define CUA_STRINGIFY_(x) #x
#define CUA_XSTRINGIFY_(x) CUA_STRINGIFY_(x)
/** The version as a string, "major.minor.patch" (e.g. "0.1.0"). */
#define CUA_VERSION                                                      \
    CUA_XSTRINGIFY_(CUA_VERSION_MAJOR) "." CUA_XSTRINGIFY_(CUA_VERSION_MINOR) "." \
        CUA_XSTRINGIFY_(CUA_VERSION_PATCH)

/** Every block starts at a multiple of this and its size is rounded up to it. */
#define CUA_ALIGNMENT 512u

/* ------------------------------------------------------------------------ */
/* Status and errors                                                         */
/* ------------------------------------------------------------------------ */

typedef enum cua_status {
    CUA_OK = 0,
    CUA_ERR_INVALID_ARG,     /**< NULL handle or output, size 0, bad flag or value */
    CUA_ERR_OUT_OF_MEMORY,   /**< the device (or host backend capacity) is full */
    CUA_ERR_LIMIT,           /**< the arena's limit would be exceeded */
    CUA_ERR_INVALID_POINTER, /**< not a pointer cuarena handed out, or an interior pointer */
    CUA_ERR_DOUBLE_FREE,     /**< the pointer lies in memory that is already free */
    CUA_ERR_DESTROYED,       /**< the arena (or the arena of the pointer) was destroyed */
    CUA_ERR_BUSY,            /**< the object still has live blocks or users */
    CUA_ERR_BACKEND,         /**< a driver (backend) call failed; the message names it */
    CUA_ERR_NOT_SUPPORTED,   /**< the backend or build cannot do this */
    CUA_ERR_NO_DEVICE,       /**< no CUDA driver or no such device */
    CUA_ERR_CONFIG,          /**< malformed option string or option value */
    CUA_ERR_CORRUPT,         /**< the checker found a broken invariant */
    CUA_ERR_IO,              /**< a file could not be read or parsed */
    CUA_ERR_NOT_FOUND,       /**< no arena (or other object) by that name */
    CUA_ERR_OFFLOADED,       /**< the arena is offloaded: restore it first */
    CUA_STATUS_COUNT
} cua_status;

/**
 * The name of `status`, e.g. "CUA_ERR_LIMIT". Returns a static string, never
 * NULL ("CUA_STATUS_UNKNOWN" for a value outside the enum).
 */
CUA_API const char *cua_status_name(cua_status status);

/**
 * The message of the last error on the calling thread, in words: what was
 * asked and why it failed. Takes no argument; returns "" if no error
 * happened on this thread yet, never NULL. The pointer stays valid until the
 * next cuarena call on this thread.
 */
CUA_API const char *cua_last_error(void);

/**
 * The library's version as "major.minor.patch" (meson.build's project
 * version), taking no argument; returns a static string, never NULL. The
 * header's CUA_VERSION says which version a program was compiled against.
 */
CUA_API const char *cua_version(void);

/* ------------------------------------------------------------------------ */
/* Backends: where the memory comes from                                     */
/* ------------------------------------------------------------------------ */

/** A memory provider: the CUDA driver, host memory, or a fault-injecting wrapper. */
typedef struct cua_backend cua_backend;

/** A stream: the value of a CUstream / cudaStream_t. 0 is the default stream. */
typedef uintptr_t cua_stream;

/** The kinds of backend (driver) calls, counted and timed per kind. */
typedef enum cua_call {
    CUA_CALL_RESERVE,      /**< reserve an address range (cuMemAddressReserve) */
    CUA_CALL_UNRESERVE,    /**< release an address range (cuMemAddressFree) */
    CUA_CALL_CREATE,       /**< create a physical handle (cuMemCreate) */
    CUA_CALL_RELEASE,      /**< release a physical handle (cuMemRelease) */
    CUA_CALL_MAP,          /**< map a handle at an address (cuMemMap) */
    CUA_CALL_UNMAP,        /**< unmap a range (cuMemUnmap) */
    CUA_CALL_SET_ACCESS,   /**< make a mapped range accessible (cuMemSetAccess) */
    CUA_CALL_MEM_INFO,     /**< free / total device memory (cuMemGetInfo) */
    CUA_CALL_EVENT_CREATE, /**< cuEventCreate */
    CUA_CALL_EVENT_DESTROY,/**< cuEventDestroy */
    CUA_CALL_EVENT_RECORD, /**< cuEventRecord */
    CUA_CALL_EVENT_QUERY,  /**< cuEventQuery */
    CUA_CALL_EVENT_SYNC,   /**< cuEventSynchronize */
    CUA_CALL_STREAM_SYNC,  /**< cuStreamSynchronize */
    CUA_CALL_ALLOC,        /**< allocate a whole segment without VMM (cuMemAlloc) */
    CUA_CALL_FREE,         /**< free such a segment (cuMemFree) */
    CUA_CALL_HOST_ALLOC,   /**< pinned host memory for copies (cuMemHostAlloc) */
    CUA_CALL_HOST_FREE,    /**< cuMemFreeHost */
    CUA_CALL_STREAM_CREATE,  /**< a stream of the backend's own for copies (cuStreamCreate) */
    CUA_CALL_STREAM_DESTROY, /**< cuStreamDestroy */
    CUA_CALL_COPY_TO_HOST,   /**< device to host copy on a stream (cuMemcpyDtoHAsync) */
    CUA_CALL_COPY_TO_DEVICE, /**< host to device copy on a stream (cuMemcpyHtoDAsync) */
    CUA_CALL_FILL,           /**< fill device memory with a byte on a stream (cuMemsetD8Async):
                                  freed blocks, with the poison option */
    CUA_CALL_COUNT
} cua_call;

/** Room for call kinds in the statistics' arrays: kinds are only ever added
 *  below it, so a new kind does not move the fields after the arrays. */
#define CUA_CALL_MAX 32

/** The name of the call kind `call`, e.g. "map". Returns a static string, or NULL
 *  for an unknown kind. */
CUA_API const char *cua_call_name(cua_call call);


/**
 * Create a CUDA backend for device `device`: the driver's virtual-memory API
 * (cuMemAddressReserve, cuMemCreate, cuMemMap, cuMemSetAccess, cuMemUnmap,
 * cuMemRelease), events and streams. The driver is loaded at run time
 * (libcuda.so.1), so programs link and run without one. The device's primary
 * context is retained and made current on the calling thread when no context
 * is current there; every arena of the backend allocates on `device`. On a
 * device without virtual memory management its arenas take whole segments
 * from cuMemAlloc (see CUA_ARENA_NO_VMM).
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (out NULL, device < 0),
 * CUA_ERR_NO_DEVICE (no driver, or no such device), CUA_ERR_NOT_SUPPORTED (the
 * library was built without the CUDA backend), CUA_ERR_BACKEND (a driver call
 * failed).
 */
CUA_API cua_status cua_backend_cuda_create(int device, cua_backend **out);

/**
 * The process's shared CUDA backend of `device`, made on first use (as
 * cua_backend_cuda_create) and kept until the process ends: the default
 * arenas, the PyTorch entry points and arenas with backend_kind CUA_BACKEND_CUDA
 * use it. cua_backend_destroy() refuses it (CUA_ERR_BUSY).
 * Returns as cua_backend_cuda_create(), and CUA_ERR_INVALID_ARG (device out of range).
 */
CUA_API cua_status cua_device_backend(int device, cua_backend **out);



/** The mapping granularity of `backend` in bytes, into *out.
 *  Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL). */
CUA_API cua_status cua_backend_granularity(cua_backend *backend, size_t *out);

/**
 * Destroy a backend created by the caller. Arenas using it must be destroyed
 * first. Returns CUA_OK, CUA_ERR_INVALID_ARG, CUA_ERR_BUSY (arenas, reserved
 * ranges or handles are still alive; nothing is released then).
 */
CUA_API cua_status cua_backend_destroy(cua_backend *backend);

/* ------------------------------------------------------------------------ */
/* Arenas                                                                    */
/* ------------------------------------------------------------------------ */

/** An arena: one reserved address range, the blocks in it, its limit and stats. */
typedef struct cua_arena cua_arena;

/** Keep every cached free byte mapped (never release on free). */
#define CUA_KEEP_ALL SIZE_MAX

/** Options of an arena. Initialise with cua_arena_config_init(). */
typedef struct cua_arena_config {
    /** sizeof(cua_arena_config) in the caller's build, set by
     *  cua_arena_config_init(): a library newer than the caller's header
     *  reads only the fields the caller knows (new fields come last). */
    size_t struct_size;
    /** A name for reports (copied; at most 63 bytes are kept, cut before a
     *  UTF-8 character that would not fit whole). NULL: "arena". */
    const char *name;
    /** Where memory comes from. NULL: as backend_kind says (by default the
     *  device's shared CUDA backend, or a host backend of the arena's own
     *  where there is no such device). */
    cua_backend *backend;
    /** Device ordinal (0..63), for reports and the CUDA backend: the registry,
     *  the device report, the headroom, the device peaks and out-of-memory
     *  relief group arenas by it. A CUDA backend given in `backend` must be
     *  this device's (CUA_ERR_INVALID_ARG otherwise). */
    int device;
    /** Most bytes the arena may have mapped at once; 0 = no limit. When a
     *  request would pass it, the arena trims its cache and retries first. */
    size_t limit;
    /** Cached free bytes (fully free mapped pages) kept after a free; above it
     *  the oldest free pages are unmapped. CUA_KEEP_ALL (default) keeps them
     *  all; the arena still never maps much more than its demand peak (the most
     *  it ever needed with no cache left) while cached pages can be given back
     *  instead: the footprint cap, see growth_slack. */
    size_t release_threshold;
    /** Address space to reserve in bytes (rounded up to 1 GiB); 0: 4 x the
     *  backend's total memory. Blocks can never use more than this. */
    size_t va_size;
    /** Largest physical handle in bytes (a multiple of the granularity);
     *  0: one granularity page. Larger handles make growth cheaper on CUDA but
     *  can only be unmapped whole. */
    size_t chunk_max;
    /** A run of at least this many unmapped bytes (the growth of a large
     *  block, a restore) is mapped in handles of this size: each handle costs
     *  driver calls to create, map, enable, unmap and release, so large runs
     *  take fewer, larger ones (docs/tuning.md has the measured costs). A
     *  multiple of the granularity; 0: 32 MiB (or chunk_max when larger);
     *  CUA_CHUNK_LARGE_NONE: chunk_max everywhere. Once its blocks are free, a
     *  large handle can still only be unmapped whole. */
    size_t chunk_large;
    /** Let mapped bytes pass the demand peak by this many bytes before the
     *  footprint cap swaps cached pages; 0: 1/128 of the peak, at least one
     *  granularity page and at most 64 MiB; SIZE_MAX: by any amount. */
    size_t growth_slack;
    /** Bytes kept mapped through trims, for latency: no trim (asked for, by
     *  the release threshold, the footprint cap, idleness, or another arena's
     *  shortage) takes mapped bytes below it; only a trim that lets an
     *  allocation in this arena succeed does. 0 (default): none. Must not
     *  exceed a non-zero limit. */
    size_t floor;
    /** Order in which cua_trim_idle() and out-of-memory handling take cached
     *  memory from arenas of a device: lower priorities give first. 0 default. */
    int priority;
    /** An arena with no alloc or free for this many milliseconds is trimmed
     *  by cua_trim_idle() (and the janitor) down to its release threshold (all
     *  of its cache when that is CUA_KEEP_ALL) and its floor. 0: never. */
    unsigned idle_ms;
    /** CUA_ARENA_* flags. */
    unsigned flags;
    /** Where memory comes from when `backend` is NULL (a cua_backend_kind). */
    int backend_kind;
    /** Per-thread caches of freed small blocks (a cua_thread_cache_mode):
     *  a thread's free of a block it allocated, and its next allocation of
     *  that size class on the same stream, then take no arena lock, so many
     *  threads on one arena scale. CUA_THREAD_CACHE_AUTO (default) turns them
     *  on once threads are seen waiting for the arena's lock. Off when the
     *  arena poisons, checks always, or registers blocks with NVTX. */
    int thread_cache;
    /** Most bytes one thread's cache holds for this arena; 0: 8 MiB. */
    size_t thread_cache_bytes;
    /** Largest block a thread cache keeps; 0: 1 MiB. */
    size_t thread_cache_max;
    /** Peer access: bit d set lets device d read and write the arena's
     *  memory (kernels on d use its pointers directly, NCCL's P2P transport,
     *  a pipeline stage on the next GPU). Every mapping is made accessible to
     *  the backend's own device and to these (one cuMemSetAccess descriptor
     *  each), through trims, regrowth, offload and restore. Each peer is
     *  checked at creation (cuDeviceCanAccessPeer): one that cannot reach the
     *  device fails the create with CUA_ERR_NOT_SUPPORTED. The own device's
     *  bit is ignored. Without VMM (CUA_ARENA_NO_VMM) a peer gets
     *  cuCtxEnablePeerAccess: all of the device's cuMemAlloc memory, not only
     *  this arena's. CUA_PEER(d) makes a bit. 0 (default): none. */
    uint64_t peers;
} cua_arena_config;

/** The bit of device `d` (0..63) in cua_arena_config.peers. */
#define CUA_PEER(d) ((uint64_t)1 << (d))

/** cua_arena_config.thread_cache. Blocks waiting in thread caches count as
 *  free in the statistics. The peak of live bytes is kept where the arena's
 *  lock is taken: it counts blocks waiting in caches as live (so it can pass
 *  the true peak by what the caches hold), and a block a cache hands out
 *  again with the size asked when the lock handed it out (so it can miss
 *  the true peak by the difference, less than a quarter of that block).
 *  Trims, limits lowered below the mapped bytes, offloads, walks and
 *  out-of-memory retries empty every thread's cache first. */
typedef enum cua_thread_cache_mode {
    CUA_THREAD_CACHE_AUTO = 0, /**< on once the arena's lock is contended */
    CUA_THREAD_CACHE_ON = 1,   /**< on from the start */
    CUA_THREAD_CACHE_OFF = 2,  /**< never: every call takes the arena's lock */
} cua_thread_cache_mode;

/** cua_arena_config.backend_kind: the backend of an arena created without one. */
typedef enum cua_backend_kind {
    CUA_BACKEND_HOST = 0, /**< a host backend of the arena's own */
    CUA_BACKEND_CUDA = 1, /**< the shared CUDA backend of `device` (cua_device_backend) */
    CUA_BACKEND_AUTO = 2, /**< CUDA where the device exists, else host (the default) */
} cua_backend_kind;

/** chunk_large: never map larger handles than chunk_max. */
#define CUA_CHUNK_LARGE_NONE SIZE_MAX

/** Run cua_arena_check() after every alloc, free and trim (slow; for tests). */
#define CUA_ARENA_CHECK_ALWAYS 0x1u
/** Never swap cached pages to stay near the demand peak (see release_threshold). */
#define CUA_ARENA_NO_FOOTPRINT_CAP 0x2u
/**
 * Do not use virtual memory management: take memory in whole segments from
 * the backend's plain allocator (cuMemAlloc on CUDA) and return a segment only
 * when every block in it is free. Blocks never span two segments. Arenas use
 * this mode by themselves on a device without VMM support.
 */
#define CUA_ARENA_NO_VMM 0x4u
/**
 * Poison freed memory: a block freed with no other stream using it is filled
 * with CUA_POISON_BYTE on its stream (the host backend: at once; CUDA:
 * cuMemsetD8Async), so that a use after free reads garbage that shows,
 * instead of the old data. One driver call per free: for debugging (on by
 * default in builds of debug_level 2).
 */
#define CUA_ARENA_POISON 0x8u
/**
 * Scrub host copies: after a restore (and before the arena's host image or
 * the backend's staging buffers are given back or kept for reuse) their
 * bytes are zeroed, so that no copy of the arena's data stays readable in
 * the process. Costs a pass over the image (about 0.1 s per 4 GiB).
 */
#define CUA_ARENA_SCRUB 0x10u

/**
 * Register each segment of the arena and every live block with NVTX (the
 * memory extension: a heap of sub-allocations per segment and its regions),
 * so that compute-sanitizer memcheck (--nvtx yes) sees each block as an
 * allocation of its own and reports an access past its end into a neighbour.
 * The arena is then one of whole segments (CUA_ARENA_NO_VMM is implied):
 * compute-sanitizer 2025.3 refuses NVTX heaps over VMM mappings. Builds with
 * the CUDA toolkit; one NVTX call per alloc and free (cheap when no tool is
 * attached); thread caches stay off. Arenas of whole segments also register
 * when NVTX_INJECTION64_PATH is set (a tool injects NVTX).
 */
#define CUA_ARENA_NVTX 0x20u
/** Place blocks by best fit alone, blind to which pages are mapped (the
 *  placement of releases before 0.2, for comparison): by default a request
 *  that best fit would put on unmapped pages goes where the fewest pages
 *  must be mapped, so warm runs reuse what is mapped. */
#define CUA_ARENA_BLIND_PLACEMENT 0x40u
/** The footprint cap and the limit give back the smallest runs of idle
 *  pages first, and only what a growth takes past the peak and its slack
 *  (by default: the oldest idle pages, down to the demand peak; docs/tuning.md
 *  has what each moved). */
#define CUA_ARENA_EVICT_FRAGMENTS 0x80u
/** Unmap later the old place of pages a growth moves: pages the footprint
 *  cap or the limit gives back during a growth, and that the growth maps
 *  again elsewhere, stay mapped at their old place too (the same memory at
 *  two addresses: no more physical memory) until a trim, the idle trim, the
 *  janitor, offload, destroy or a growth over that place unmaps them
 *  (docs/tuning.md, "Moves that unmap later"). Off by default: a stale
 *  pointer into an old place then reads another block's memory instead of
 *  faulting, and the unmaps leave the allocating path only where such a
 *  point falls between a move and the next growth. */
#define CUA_ARENA_DELAYED_UNMAP 0x100u
/** Pages once mapped stay mapped: no automatic reason gives any back (the
 *  footprint cap, the release threshold, the limit, another arena's
 *  pressure, idleness, the arena's own shortage); only cua_arena_trim(), an
 *  offload and the destroy do. An offload remembers every page that was
 *  mapped, and the restore maps them all again at their addresses. For memory
 *  a captured CUDA graph replays into after its blocks were freed (a private
 *  pool of CUDA-graph trees): freed is not unused there. */
#define CUA_ARENA_KEEP_MAPPED 0x200u

/** The byte freed blocks are filled with under CUA_ARENA_POISON. */
#define CUA_POISON_BYTE 0xDE

/**
 * Fill *cfg, of `size` bytes (the caller's sizeof(cua_arena_config)), with
 * the built-in defaults and set cfg->struct_size to `size`; CUARENA_CONF is
 * read by cua_config_from_env(). cua_arena_config_init() passes the size.
 * Does nothing when cfg is NULL or size is smaller than the first release's
 * struct.
 */
CUA_API void cua_arena_config_init_sized(cua_arena_config *cfg, size_t size);

/* Fill *cfg with the built-in defaults (cua_arena_config_init_sized). */
static inline void cua_arena_config_init(cua_arena_config *cfg)
{
    cua_arena_config_init_sized(cfg, sizeof *cfg);
}

/**
 * Create an arena: reserves its address range; maps nothing yet.
 * cfg may be NULL for the defaults; else it was filled by
 * cua_arena_config_init() (its struct_size tells which fields it has).
 * A limit need not be a multiple of the granularity: mapped bytes, which it
 * bounds, move in whole pages, so the pages under it are what can be mapped.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (out NULL, chunk_max or chunk_large not
 * a multiple of the granularity, a floor above the limit, device outside
 * 0..63, priority below 0, a bad backend_kind or thread_cache, flag bits that
 * are no CUA_ARENA_* flag...), CUA_ERR_NO_DEVICE
 * (backend_kind CUA_BACKEND_CUDA without the device), CUA_ERR_OUT_OF_MEMORY (no address space or
 * host memory), CUA_ERR_BACKEND, CUA_ERR_DESTROYED (the event callback
 * destroyed it at its CUA_ARENA_CREATED event; *out is NULL).
 */
CUA_API cua_status cua_arena_create(const cua_arena_config *cfg, cua_arena **out);

/**
 * Create an arena named `name` (may be NULL) from the built-in defaults, then
 * CUARENA_CONF, then `conf` (the same syntax, e.g. "limit:6G,device:1"; may be
 * NULL), on the device's shared CUDA backend where the device exists, else on
 * a host backend of its own (backend_kind CUA_BACKEND_AUTO unless a `backend`
 * item says otherwise). For bindings that cannot fill a cua_arena_config.
 * The arena goes to *out (NULL on failure).
 * Returns as cua_arena_create(), and CUA_ERR_CONFIG (a bad item in either text).
 */
CUA_API cua_status cua_arena_create_conf(const char *name, const char *conf, cua_arena **out);

/** Free every live block of the arena as part of the destroy. */
#define CUA_DESTROY_FORCE 0x1u

/**
 * Destroy an arena: unmaps and releases every page and handle and the address
 * range, and destroys an owned backend. With live blocks it fails with
 * CUA_ERR_BUSY (the message gives their count) unless flags has
 * CUA_DESTROY_FORCE. Later calls with the handle, or with pointers of the
 * arena, return CUA_ERR_DESTROYED. (A handle is a slot and a generation,
 * not an address: the arena's memory goes to the next arena, and a stale
 * handle is told apart by its generation, so a destroyed arena costs no
 * memory and its handle is answered, never used after free.)
 * Returns CUA_OK, CUA_ERR_INVALID_ARG, CUA_ERR_BUSY, CUA_ERR_DESTROYED,
 * CUA_ERR_BACKEND (a release failed; the arena is destroyed all the same and
 * the rest is released).
 */
CUA_API cua_status cua_arena_destroy(cua_arena *arena, unsigned flags);

/**
 * Allocate `size` bytes on `stream` from `arena`. The block may be used at once
 * on `stream`; memory freed on another stream is handed out only after that
 * stream's work before the free has completed.
 * Returns CUA_OK (and *out), CUA_ERR_INVALID_ARG (size 0, out NULL, size too
 * large to round), CUA_ERR_LIMIT, CUA_ERR_OUT_OF_MEMORY (the message says what
 * was asked, what the backend has free and what the arena holds and could
 * trim), CUA_ERR_DESTROYED (also: a callback this call ran, or another
 * thread, destroyed the arena meanwhile), CUA_ERR_OFFLOADED (also: a callback
 * offloaded it meanwhile), CUA_ERR_BACKEND. On failure *out is NULL.
 */
CUA_API cua_status cua_arena_alloc(cua_arena *arena, size_t size, cua_stream stream,
                                   void **out);

/**
 * Make the block [ptr, ptr + size) of `arena` live for `stream`: a range that
 * is free there, inside one free block, free for `stream` or for any stream.
 * For restoring memory at the addresses recorded work uses (a CUDA-graph
 * tree's pool checkpoint). Threads' caches are emptied and completed streams
 * learnt first; pages the range lacks are mapped (under the limit and the
 * footprint cap, as any growth). Free the block with cua_free().
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (ptr NULL, size 0, a range that is not
 * the arena's or not aligned to CUA_ALIGNMENT), CUA_ERR_BUSY (part of the
 * range is live, or free only for another stream whose work may still use
 * it), CUA_ERR_NOT_SUPPORTED (an arena of whole segments), CUA_ERR_LIMIT,
 * CUA_ERR_OUT_OF_MEMORY, CUA_ERR_OFFLOADED, CUA_ERR_DESTROYED,
 * CUA_ERR_BACKEND.
 */
CUA_API cua_status cua_arena_alloc_at(cua_arena *arena, void *ptr, size_t size,
                                      cua_stream stream);

/**
 * Free `ptr`, a block returned by cua_arena_alloc() or cua_malloc(), in the
 * order of the stream it was allocated on. NULL is accepted and does nothing.
 * Returns CUA_OK, CUA_ERR_INVALID_POINTER (not from cuarena, or interior),
 * CUA_ERR_DOUBLE_FREE, CUA_ERR_DESTROYED, CUA_ERR_BACKEND (releasing pages
 * failed; the block is free all the same).
 */
CUA_API cua_status cua_free(void *ptr);

/**
 * Record that the live block `ptr` is used on `stream` as well as on the stream
 * it was allocated on. When freed, it is handed out again only after the work
 * queued on every such stream before the free has completed. The stream must
 * stay valid until then (as CUDA's allocators ask): in the rare case that at
 * the free neither an event could be recorded on it nor it be synchronised,
 * cuarena records that event on it at a later call.
 * Returns CUA_OK, CUA_ERR_INVALID_POINTER, CUA_ERR_DOUBLE_FREE,
 * CUA_ERR_DESTROYED, CUA_ERR_OUT_OF_MEMORY (host memory).
 */
CUA_API cua_status cua_record_stream(void *ptr, cua_stream stream);

/**
 * Tell cuarena that `stream` is about to be destroyed. cuarena remembers the
 * streams blocks were allocated, freed and used on, and asks them later
 * (lazily, to keep driver calls off the free path) whether their work has
 * completed; a destroyed stream cannot be asked, and the driver may even
 * crash on it. So before cuStreamDestroy / cudaStreamDestroy of a stream that
 * cuarena has seen, call this: every arena of `device` (or CUA_ALL_DEVICES)
 * that knows the stream waits for its queued work now (a stream
 * synchronisation), forgets it, and hands the blocks freed on it - before and
 * after this call - to every stream. Arenas that never saw it cost a look.
 * Streams that live as long as the process (PyTorch's pool, the default
 * stream) need no call. A stream destroyed without this call (CuPy's die at
 * garbage collection) does not break the arenas that know it: when an event
 * can be neither recorded on it nor the stream waited for, cuarena waits for
 * the whole device instead (cuCtxSynchronize), hands its blocks to every
 * stream and never touches it again - but it touches it once (the driver
 * may take a destroyed handle for a new stream's, or crash), and the device
 * wait stalls every stream: retire streams before destroying them.
 * Blocks that threads' caches hold in those arenas go back to the arena first
 * (a new stream may get the destroyed one's handle).
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (device below CUA_ALL_DEVICES, or a
 * default stream: 0, CU_STREAM_LEGACY 0x1, CU_STREAM_PER_THREAD 0x2),
 * CUA_ERR_OUT_OF_MEMORY (host memory to list the arenas), CUA_ERR_BACKEND
 * (the stream could not be synchronised: the arenas that said so still count
 * on it, so destroy it only after its work is done).
 */
CUA_API cua_status cua_stream_retire(int device, cua_stream stream);

/**
 * Find the arena and the block of the live pointer `ptr`: the arena into
 * *arena, the block's start into *base and its size (bytes asked for) into
 * *size; arena, base and size may each be NULL. Returns CUA_OK,
 * CUA_ERR_INVALID_POINTER, CUA_ERR_DOUBLE_FREE (in free memory), CUA_ERR_DESTROYED.
 * An interior pointer of a live block is answered with CUA_OK and the block.
 */
CUA_API cua_status cua_ptr_info(const void *ptr, cua_arena **arena, void **base, size_t *size);

/**
 * Unmap every cached free page of the arena above `keep_bytes` of cache, the
 * oldest first, and say how many bytes went back to the backend (`released`
 * may be NULL). Pages anywhere in the range are trimmed, also in the middle.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG, CUA_ERR_DESTROYED, CUA_ERR_BACKEND
 * (released holds what was returned before the failure).
 */
CUA_API cua_status cua_arena_trim(cua_arena *arena, size_t keep_bytes, size_t *released);

/**
 * Set the arena's limit on mapped bytes (0 = none). A limit under what is
 * mapped now trims the cache; live blocks are never touched, so the arena may
 * stay above the limit until they are freed.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (also: a limit below the floor),
 * CUA_ERR_DESTROYED, CUA_ERR_BACKEND.
 */
CUA_API cua_status cua_arena_set_limit(cua_arena *arena, size_t limit);

/**
 * Let device `device` (0..63) read and write the memory of `arena` from now
 * on: every page mapped now gets access (one cuMemSetAccess per run of
 * adjacent mappings, with the arena's own device and every peer), and every
 * page mapped later too, as if `device` had been in cua_arena_config.peers.
 * Peer access is checked first (cuDeviceCanAccessPeer); nothing changes when
 * it is impossible. Granting the arena's own device, or a peer again, does
 * nothing. An arena without VMM gets cuCtxEnablePeerAccess (all of the
 * device's cuMemAlloc memory). Access is not taken back (CUDA has no
 * per-peer revoke in place): a peer keeps it until the arena is destroyed.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL, device outside 0..63),
 * CUA_ERR_DESTROYED, CUA_ERR_NOT_SUPPORTED (the device cannot reach the
 * arena's: the message says why), CUA_ERR_NO_DEVICE (no such device),
 * CUA_ERR_BACKEND (a set-access call failed: pages granted before it keep
 * their access, the peer is not recorded, and the call may be repeated).
 */
CUA_API cua_status cua_arena_grant_peer(cua_arena *arena, int device);

/** Set the release threshold of `arena` to `bytes` (see cua_arena_config); cached
 *  pages above it are unmapped at once. Returns as cua_arena_set_limit(). */
CUA_API cua_status cua_arena_set_release_threshold(cua_arena *arena, size_t bytes);

/**
 * Offload the arena: wait for the streams it has seen, copy every live block
 * to host memory (through the backend's reused pinned staging area, the
 * device filling one buffer while the CPU empties the other; the CPU's part is
 * split among up to 16 helper threads that live for this call only), then give
 * every physical page back to the driver. The host copy is written into fresh
 * pages the first time; after a restore its pages are handed back to the
 * kernel lazily (MADV_FREE) and the next offload of about the same size writes
 * into them again without page faults, unless the kernel took them meanwhile
 * (docs/tuning.md has the measured times). cua_arena_trim() and cua_arena_destroy() unmap them. The address range stays reserved and the
 * blocks stay live: cua_arena_restore() maps pages at the same addresses and
 * copies the data back, so every pointer the engine holds is valid again.
 * Meanwhile allocations and cua_record_stream() fail with CUA_ERR_OFFLOADED;
 * cua_free() works (the block's copy is dropped). On failure nothing was
 * released and the arena is as before, with one exception: CUA_ERR_BACKEND
 * from unmapping pages after the data is safe on the host leaves the arena
 * offloaded (the message says so; restore works), with those pages still
 * mapped until a trim gives them back.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG, CUA_ERR_DESTROYED, CUA_ERR_OFFLOADED
 * (already), CUA_ERR_NOT_SUPPORTED (an arena of whole segments: their
 * addresses cannot be kept), CUA_ERR_OUT_OF_MEMORY (host memory), CUA_ERR_BACKEND.
 */
CUA_API cua_status cua_arena_offload(cua_arena *arena);

/**
 * As cua_arena_offload() of `arena`, without copying: the live blocks'
 * contents are dropped (a KV cache that can be recomputed). After
 * cua_arena_restore() they are at the same addresses with undefined contents.
 * Returns as cua_arena_offload().
 */
CUA_API cua_status cua_arena_discard(cua_arena *arena);

/**
 * Map pages for the live blocks of an offloaded (or discarded) arena at their
 * addresses, copy their data back, and free the host copy (lazily: see
 * cua_arena_offload). The limit and the
 * footprint cap do not apply (the memory was the arena's). On failure (the
 * device is full) nothing stays mapped, the arena stays offloaded with its
 * host copy, and restore may be tried again.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (not offloaded), CUA_ERR_DESTROYED
 * (also: an eviction callback destroyed it meanwhile), CUA_ERR_OUT_OF_MEMORY,
 * CUA_ERR_BACKEND.
 */
CUA_API cua_status cua_arena_restore(cua_arena *arena);

/**
 * Set the floor of `arena`: bytes kept mapped through trims (see cua_arena_config).
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (a floor above the limit), CUA_ERR_DESTROYED.
 */
CUA_API cua_status cua_arena_set_floor(cua_arena *arena, size_t floor);

/**
 * Trim the arenas of `device` (or CUA_ALL_DEVICES) that have been idle - no
 * alloc and no free - for their idle_ms or longer, lowest priority first,
 * each down to its release threshold (all of its cache when that is
 * CUA_KEEP_ALL) but not below its floor. Idleness is measured between calls
 * of this function (the fast path reads no clock): call it from an engine's
 * loop every so often, or start the janitor. *released (may be NULL) gets the
 * bytes given back. Returns CUA_OK, CUA_ERR_INVALID_ARG, CUA_ERR_BACKEND.
 */
CUA_API cua_status cua_trim_idle(int device, size_t *released);

/**
 * Start the janitor: one thread that calls cua_trim_idle(CUA_ALL_DEVICES)
 * every period_ms milliseconds until cua_janitor_stop(). cuarena starts no
 * thread by itself. Returns CUA_OK, CUA_ERR_INVALID_ARG (period 0),
 * CUA_ERR_BUSY (already running), CUA_ERR_OUT_OF_MEMORY (no thread).
 */
CUA_API cua_status cua_janitor_start(unsigned period_ms);

/** Stop the janitor and wait for its thread. Returns CUA_OK (also when none
 *  ran), CUA_ERR_BUSY when called from the janitor's own thread (a callback
 *  of its trim): it cannot wait for itself, and keeps running. */
CUA_API cua_status cua_janitor_stop(void);

/**
 * The name `arena` was created with, into *name (valid until the arena is
 * destroyed). Returns CUA_OK, CUA_ERR_INVALID_ARG, CUA_ERR_DESTROYED.
 */
CUA_API cua_status cua_arena_name(cua_arena *arena, const char **name);

/**
 * Verify every invariant of the arena: the blocks tile the address range, no
 * two free neighbours that could merge, the free index agrees with the blocks,
 * every live block's pages are mapped, page counters and statistics add up.
 * Returns CUA_OK, CUA_ERR_CORRUPT (the message names the first broken
 * invariant), CUA_ERR_INVALID_ARG, CUA_ERR_DESTROYED.
 */
CUA_API cua_status cua_arena_check(cua_arena *arena);

/* ------------------------------------------------------------------------ */
/* Default and current arena                                                 */
/* ------------------------------------------------------------------------ */

/**
 * The default arena of a device, created on first use with the defaults of
 * cua_arena_config_init() and the options of CUARENA_CONF (cua_config_from_env()),
 * on the device's shared CUDA backend where the device exists, else on a host
 * backend (backend_kind CUA_BACKEND_AUTO; CUARENA_CONF's `backend` may say otherwise),
 * into *out. Returns CUA_OK, CUA_ERR_INVALID_ARG, and the statuses of cua_arena_create().
 */
CUA_API cua_status cua_arena_default(int device, cua_arena **out);

/**
 * Allocate `size` bytes on `stream` from the calling thread's current arena
 * (cua_arena_push()), or from the default arena of device 0 when none is
 * set; the block goes to *out (NULL on failure). Returns as cua_arena_alloc(),
 * and the statuses of cua_arena_default().
 */
CUA_API cua_status cua_malloc(size_t size, cua_stream stream, void **out);

/**
 * Make `arena` the calling thread's current arena until the matching
 * cua_arena_pop(). Pushes nest up to 64 deep.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL, or too deep), CUA_ERR_DESTROYED.
 */
CUA_API cua_status cua_arena_push(cua_arena *arena);

/** Undo the last cua_arena_push(). Returns CUA_OK, CUA_ERR_INVALID_ARG (nothing pushed). */
CUA_API cua_status cua_arena_pop(void);

/** The calling thread's current arena, or NULL when none is pushed, into *out.
 *  Returns CUA_OK, CUA_ERR_INVALID_ARG (out NULL). */
CUA_API cua_status cua_arena_current(cua_arena **out);


/* ------------------------------------------------------------------------ */
/* Out of memory: what cuarena does before it fails                          */
/* ------------------------------------------------------------------------ */

/*
 * When an allocation finds no device memory, its arena waits for its streams,
 * gives back its own cache and retries; then the device's other arenas give
 * cached memory, lowest priority first and only as much as the request needs
 * (never every cache at once: that is the latency spike users complain of);
 * then the eviction callbacks run, lowest priority first, until enough is
 * free; then it retries once more. Only then it fails, with a message that
 * names what was asked, the driver's free memory, each arena of the device
 * (live / mapped / trimmable / largest free block) and a verdict:
 * "fragmentation" (enough free memory in total, no place for the request) or
 * "exhaustion" (not enough anywhere).
 */

/** An eviction callback: free what you can on `device` (cua_free, destroy or
 *  offload an arena - the one whose allocation asked too -, release other
 *  libraries' memory); `bytes_needed` is what is still missing. Return the
 *  bytes you freed (a hint; cuarena asks the driver). Called with no cuarena
 *  lock held ("Callbacks: the one rule" above). */
typedef size_t (*cua_evict_fn)(int device, size_t bytes_needed, void *user);

/**
 * Register an eviction callback with a priority (lower runs first; equal ones
 * in the order registered). At most 16.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (fn NULL, or already registered with
 * this user), CUA_ERR_BUSY (16 registered).
 */
CUA_API cua_status cua_add_evict_callback(cua_evict_fn fn, void *user, int priority);

/** Remove a callback registered with this fn and user. Returns CUA_OK once
 *  its calls running on other threads have returned (not when called from
 *  inside a callback), so that `user` may be freed; CUA_ERR_NOT_FOUND. */
CUA_API cua_status cua_remove_evict_callback(cua_evict_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* Reserve then adopt                                                        */
/* ------------------------------------------------------------------------ */

/** Physical memory taken now, for an arena to use later (cua_reserve). */
typedef struct cua_reservation cua_reservation;

/**
 * Reserve then yield: take `bytes` (rounded up to the granularity) of
 * physical memory from the backend now, mapped nowhere, so that neither
 * another library nor another arena can take it, and hand it to an arena
 * later with cua_arena_adopt() - for example while a model's weights are
 * still loading, so that its KV cache is sure to fit afterwards. The
 * reservation goes to *out.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG, CUA_ERR_NOT_SUPPORTED (no VMM),
 * CUA_ERR_OUT_OF_MEMORY (the device has less: nothing is kept; a handle whose
 * release the driver refuses then is kept by the backend for a retry, as
 * cua_reservation_release() says), CUA_ERR_BACKEND.
 */
CUA_API cua_status cua_reserve(cua_backend *backend, size_t bytes, cua_reservation **out);

/**
 * Give the memory of reservation `res` to `arena`, of the same backend: its next
 * growths map it instead of asking the driver (cua_stats.adopted_bytes until
 * then), and it goes back to the driver with the arena (or a trim, once
 * mapped). The reservation is used up, also on failure: like a freed pointer,
 * it must not be passed again.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (another backend, NULL), CUA_ERR_DESTROYED,
 * CUA_ERR_NOT_SUPPORTED (an arena of whole segments).
 */
CUA_API cua_status cua_arena_adopt(cua_arena *arena, cua_reservation *res);

/** Give the memory of reservation `res` back to the driver, unused; `res` is
 *  used up. Returns CUA_OK, CUA_ERR_INVALID_ARG, CUA_ERR_BACKEND (a handle's
 *  release failed; tried all: the backend keeps the refused ones and retries
 *  them before its next reservation, handle or segment, at a trim of an
 *  arena on it and at its destroy - cua_backend_stats.pending_releases). */
CUA_API cua_status cua_reservation_release(cua_reservation *res);

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Parse `text`, an option string like CUARENA_CONF
 * ("release_threshold:512M,limit:8G"), into cfg, over what it holds. The keys
 * are the fields of cua_arena_config and its flags (device, limit,
 * release_threshold, va_size, chunk_max, chunk_large, growth_slack, floor,
 * priority, idle_ms, backend, thread_cache, thread_cache_bytes,
 * thread_cache_max, check, footprint_cap, poison, scrub, nvtx, vmm, peers
 * ("1+2": device ordinals joined by +, or none): README's Options table says
 * what each takes). Sizes take K, M, G, T suffixes (powers of 1024) and,
 * where the table says so, "all"/"none".
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL), CUA_ERR_CONFIG (unknown key or
 * bad value; the message names it and cfg is unchanged).
 */
CUA_API cua_status cua_config_parse(const char *text, cua_arena_config *cfg);

/**
 * Apply the environment variable CUARENA_CONF (if set) to cfg with
 * cua_config_parse(). Returns CUA_OK (also when it is not set),
 * CUA_ERR_INVALID_ARG, CUA_ERR_CONFIG.
 */
CUA_API cua_status cua_config_from_env(cua_arena_config *cfg);

#ifdef __cplusplus
}
#endif

/* What an engine reads about its memory: statistics, snapshots, events, the
 * device report, the allocation history. */
#include "cuarena_inspect.h"

#endif /* CUARENA_H */
