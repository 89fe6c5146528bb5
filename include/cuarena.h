/*
 * cuarena.h - the one public header of cuarena, a CUDA device-memory allocator
 * with expandable segments, component arenas, explicit trim and fragmentation
 * statistics.
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

/** The name of the call kind `call`, e.g. "map". Returns a static string, or NULL
 *  for an unknown kind. */
CUA_API const char *cua_call_name(cua_call call);

/** Options of the host backend. Initialise with cua_host_config_init(). */
typedef struct cua_host_config {
    /** Simulated device memory in bytes ("device total"); mapping past it fails
     *  with CUA_ERR_OUT_OF_MEMORY. Default 80 GiB. Pages cost real memory only
     *  once they are written. */
    size_t capacity;
    /** Mapping granularity in bytes, a power of two and a multiple of the OS
     *  page size. Default 2 MiB, as on CUDA. */
    size_t granularity;
    /** 0 (default): events complete as soon as they are recorded.
     *  1: events complete only when cua_host_stream_complete() is called for
     *  their stream or when they are synchronised, so tests can hold work
     *  "in flight" on a stream. */
    int manual_events;
    /** 1: behave as a device without virtual memory management: reserve,
     *  create and map answer CUA_ERR_NOT_SUPPORTED and arenas fall back to
     *  whole segments (CUA_ARENA_NO_VMM). Default 0. */
    int no_vmm;
    /** The simulated device's ordinal (0..63): the device its mappings are
     *  made accessible to, as a CUDA backend's own device. Default 0. */
    int device;
    /** Simulated peers: bit d set when device d can access this device's
     *  memory (what cuDeviceCanAccessPeer would answer). An arena's `peers`
     *  and cua_arena_grant_peer() are refused (CUA_ERR_NOT_SUPPORTED) for a
     *  device without its bit. Default 0: none. */
    uint64_t peer_mask;
} cua_host_config;

/** Fill *cfg with the defaults. */
CUA_API void cua_host_config_init(cua_host_config *cfg);

/**
 * Create a host backend: host memory with CUDA's virtual-memory rules
 * (a handle maps only at offset 0, a mapping is unmapped whole, access must be
 * set before use), so code that works on it is legal on the GPU.
 * cfg may be NULL for the defaults.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (out NULL, bad granularity or capacity),
 * CUA_ERR_OUT_OF_MEMORY (host resources), CUA_ERR_NOT_SUPPORTED (no memfd).
 */
CUA_API cua_status cua_backend_host_create(const cua_host_config *cfg, cua_backend **out);

/**
 * Host backend only: mark every event recorded so far on `stream` complete,
 * as if the stream's queued work had finished.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL or not a host backend).
 */
CUA_API cua_status cua_host_stream_complete(cua_backend *host, cua_stream stream);

/**
 * Host backend only: destroy `stream` as cuStreamDestroy would: its queued
 * work completes, and from then on recording an event on it or waiting for it
 * fails with CUA_ERR_BACKEND (the driver answers an error, or crashes), so
 * tests can show what cua_stream_retire() is for, and that an arena survives
 * a stream destroyed behind its back (it waits for the whole device).
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL or not a host backend),
 * CUA_ERR_OUT_OF_MEMORY (host memory).
 */
CUA_API cua_status cua_host_stream_destroy(cua_backend *host, cua_stream stream);

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

/**
 * Create a backend that forwards every call to `inner` and fails the calls
 * chosen with cua_fault_fail_nth() / cua_fault_fail_random(). It does not own
 * `inner`; destroy it before `inner`. The new backend goes to *out.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL), CUA_ERR_OUT_OF_MEMORY (host memory).
 */
CUA_API cua_status cua_backend_fault_create(cua_backend *inner, cua_backend **out);

/**
 * Fault backend: fail the `nth` (1-based, counted from now) call of kind
 * `call` with status `fail` (CUA_ERR_OUT_OF_MEMORY or CUA_ERR_BACKEND).
 * nth 0 clears the rule for that kind. One rule per kind; a rule fires once.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (not a fault backend, bad kind or status).
 */
CUA_API cua_status cua_fault_fail_nth(cua_backend *fault, cua_call call, uint64_t nth,
                                      cua_status fail);

/**
 * Fault backend: as cua_fault_fail_nth(), for `count` calls in a row: the
 * nth (1-based, counted from now) to the (nth + count - 1)th call of kind
 * `call` fail with `fail` (a driver that keeps failing). Replaces the kind's rule.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (not a fault backend, bad kind or
 * status, count 0).
 */
CUA_API cua_status cua_fault_fail_calls(cua_backend *fault, cua_call call, uint64_t nth,
                                        uint64_t count, cua_status fail);

/**
 * Fault backend `fault`: fail every call of any kind with probability `p` (0..1),
 * drawing from a generator seeded with `seed`; the status is
 * CUA_ERR_OUT_OF_MEMORY for create and reserve calls, CUA_ERR_BACKEND for the
 * others. p = 0 switches it off.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG.
 */
CUA_API cua_status cua_fault_fail_random(cua_backend *fault, double p, uint64_t seed);

/**
 * Fault backend `fault`: how many failures it has injected so far, into *count.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (not a fault backend, count NULL).
 */
CUA_API cua_status cua_fault_injected(cua_backend *fault, uint64_t *count);

/** What a backend holds now and what it was asked to do. */
typedef struct cua_backend_stats {
    uint64_t calls[CUA_CALL_COUNT];    /**< calls per kind, failed ones included */
    uint64_t call_ns[CUA_CALL_COUNT];  /**< nanoseconds spent in them per kind */
    uint64_t failures;                 /**< calls that returned an error */
    uint64_t reservations;             /**< address ranges reserved now */
    uint64_t handles;                  /**< physical handles (and whole segments) alive now */
    uint64_t mappings;                 /**< handles mapped now */
    uint64_t events;                   /**< events alive now */
    uint64_t handle_bytes;             /**< bytes of physical handles alive now */
    uint64_t host_buffers;             /**< pinned host buffers alive now */
    uint64_t host_bytes;               /**< their bytes */
    uint64_t streams;                  /**< streams the backend created, alive now */
    uint64_t total_bytes;              /**< device total (host: capacity) */
    uint64_t free_bytes;               /**< device free now, as the backend reports it */
    /** Releases (unmap, release, unreserve, free, event destroy) the driver
     *  refused during an arena's destroy: the backend retries them before its
     *  next reserve, create or alloc, and at its destroy. Their resources are
     *  still counted above. */
    uint64_t pending_releases;
} cua_backend_stats;

/** Read the counters of `backend` into *out. Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL). */
CUA_API cua_status cua_backend_get_stats(cua_backend *backend, cua_backend_stats *out);

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
    /** A name for reports (copied; at most 63 bytes are kept, cut before a
     *  UTF-8 character that would not fit whole). NULL: "arena". */
    const char *name;
    /** Where memory comes from. NULL: a host backend created for this arena
     *  with the default options (owned and destroyed by the arena). */
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
     *  block, a restore) is mapped in handles of this size: on the H100 one
     *  handle costs ~100 us to create, map, enable, unmap and release, so 4 GiB
     *  in 2 MiB handles costs 200 ms and in 32 MiB handles 15 ms. A multiple of
     *  the granularity; 0: 32 MiB (or chunk_max when larger); CUA_CHUNK_LARGE_NONE:
     *  chunk_max everywhere. Once its blocks are free, a large handle can still
     *  only be unmapped whole. */
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
    CUA_BACKEND_HOST = 0, /**< a host backend of the arena's own (the default) */
    CUA_BACKEND_CUDA = 1, /**< the shared CUDA backend of `device` (cua_device_backend) */
    CUA_BACKEND_AUTO = 2, /**< CUDA where the device exists, else host (default arenas) */
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

/** The byte freed blocks are filled with under CUA_ARENA_POISON. */
#define CUA_POISON_BYTE 0xDE

/** Fill *cfg with the built-in defaults (CUARENA_CONF is read by cua_config_from_env()). */
CUA_API void cua_arena_config_init(cua_arena_config *cfg);

/**
 * Create an arena: reserves its address range; maps nothing yet.
 * cfg may be NULL for the defaults.
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
 * (on the H100: 4 GiB in 0.21 s the first time, 0.09-0.11 s after).
 * cua_arena_trim() and cua_arena_destroy() unmap them. The address range stays reserved and the
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
/* PyTorch                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * The allocation function of torch.cuda.memory.CUDAPluggableAllocator
 * (python/cuarena/torch.py installs it): `size` bytes on `device` for
 * `stream` (a cudaStream_t), from the calling thread's current arena when it
 * is on that device, else from the device's default arena. Returns the
 * pointer, or NULL (torch raises its out-of-memory error; cua_last_error()
 * on the same thread says why). A zero size gives a unique pointer.
 */
CUA_API void *cua_torch_alloc(size_t size, int device, void *stream);

/**
 * The free function of torch.cuda.memory.CUDAPluggableAllocator: torch 2.11
 * passes (ptr, size, device, stream); the block's own arena and stream are
 * used. A bad pointer is ignored (cua_last_error() says so).
 */
CUA_API void cua_torch_free(void *ptr, size_t size, int device, void *stream);

/* ------------------------------------------------------------------------ */
/* CuPy                                                                      */
/* ------------------------------------------------------------------------ */

/*
 * CuPy's cupy.cuda.memory.CFunctionAllocator(param, malloc_func, free_func,
 * owner) calls `void *malloc(void *param, size_t size, int device_id)` and
 * `void free(void *param, void *ptr, int device_id)` with the param it was
 * given; python/cuarena/cupy.py (cuarena.cupy.install()) passes these two.
 *
 * Streams: CuPy's hook passes no stream, and the current CuPy stream is not
 * visible from C, so every block is allocated, and freed, on stream 0: the
 * legacy default stream. A freed block is handed out again at once to the
 * next allocation, as CuPy's own pool does on its current stream. That is
 * safe while CuPy's work runs on one stream, or on the legacy default stream
 * and one blocking stream (the two are ordered with each other; the
 * per-thread stream of CUPY_CUDA_PER_THREAD_DEFAULT_STREAM is such a one).
 * Any other two streams are not ordered: an array freed while a kernel on one
 * still reads it may be handed to the other. There, synchronise before dropping such arrays, or
 * install with stream_aware=True (cuarena.cupy: a Python allocator that
 * allocates on CuPy's current stream).
 */

/**
 * The malloc function of CuPy's CFunctionAllocator: `size` bytes on stream 0
 * for device `device`, from `param` when it is an arena (it must be on
 * `device`), else (param NULL) from the calling thread's current arena when
 * it is on `device`, else from the device's default arena. Returns the
 * pointer, or NULL, with cua_last_error() on the same thread saying why (the
 * arena's limit, no memory, a destroyed arena, a device that is not the
 * arena's). CuPy itself does not check for NULL (it would hand out address
 * 0): cuarena.cupy's allocator raises CuPy's OutOfMemoryError on it; other
 * callers must check too. A zero size (CuPy never asks for one) gives a
 * unique pointer.
 */
CUA_API void *cua_cupy_malloc(void *param, size_t size, int device);

/**
 * The free function of CuPy's CFunctionAllocator: frees `ptr` (cua_free) in
 * the order of stream 0, into the arena it came from; `param` and `device`
 * are not needed (the block remembers both). A bad pointer is ignored
 * (cua_last_error() says so).
 */
CUA_API void cua_cupy_free(void *param, void *ptr, int device);

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
    uint64_t calls[CUA_CALL_COUNT];   /**< backend calls made for this arena, per kind */
    uint64_t call_ns[CUA_CALL_COUNT]; /**< nanoseconds spent in them, per kind */
    double mapped_over_live;      /**< mapped_bytes / live_bytes (0 when nothing is live) */
    double free_fragmentation;    /**< 1 - largest_free / free_bytes (0 when nothing is free) */
} cua_stats;

/** Read the figures of `arena` into *out. Returns CUA_OK, CUA_ERR_INVALID_ARG,
 *  CUA_ERR_DESTROYED. */
CUA_API cua_status cua_arena_get_stats(cua_arena *arena, cua_stats *out);

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
 * How much more a new allocation on `device` could get: the driver's free
 * memory in whole pages, less 1/4096 of it and one page that the driver needs
 * to map them (an allocation of all of it fails on the H100), plus what every
 * arena of the device could give back by a trim (cached_bytes). What to size a
 * KV cache from, instead of probing. The bytes go to *out.
 * Returns CUA_OK (0 when the device has no arena), CUA_ERR_INVALID_ARG,
 * CUA_ERR_BACKEND.
 */
CUA_API cua_status cua_headroom(int device, size_t *out);

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

/* ---- allocation history --------------------------------------------------------- */

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
 * entries into out, oldest first, their number in *n. With cap 0 (out may
 * be NULL) *n is the number of entries recorded, for sizing out. Returns
 * CUA_OK or CUA_ERR_INVALID_ARG (device out of range, n NULL, or out NULL
 * with a non-zero cap).
 */
CUA_API cua_status cua_history_read(int device, cua_history_entry *out, size_t cap, size_t *n);

#ifdef __cplusplus
}
#endif
#endif /* CUARENA_H */
