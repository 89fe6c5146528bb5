/*
 * cuarena_backend.h - the backends a test or a tool builds an arena on, and
 * what they count: the host backend (host memory with CUDA's virtual-memory
 * rules, simulated streams), the fault backend (fails chosen driver calls),
 * and every backend's counters. An engine needs none of it: its arenas take
 * the device's CUDA backend (cuarena.h).
 *
 * Unlike cuarena.h, this header is not under the ABI promise (docs/abi.md):
 * it may change in any release.
 */
#ifndef CUARENA_BACKEND_H
#define CUARENA_BACKEND_H

#include "cuarena.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* The host backend                                                          */
/* ------------------------------------------------------------------------ */

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
 * Host backend only: begin (`on` 1) or end (`on` 0) a simulated CUDA graph
 * capture on `stream`. While it captures, recording an event on it or waiting
 * for it does nothing and answers CUA_ERR_BUSY, as the CUDA backend answers
 * for a capturing stream (an event recorded into a capture could never be
 * waited for, and the driver would invalidate the capture); waiting for the
 * whole device fails with CUA_ERR_BACKEND and invalidates the capture, as the
 * driver does. The end then fails with CUA_ERR_BACKEND, as cuStreamEndCapture
 * does, so tests can show that an arena never breaks a user's capture.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL, not a host backend, a begin on a
 * capturing stream or an end on one that is not), CUA_ERR_BACKEND (the capture
 * was invalidated), CUA_ERR_OUT_OF_MEMORY (host memory).
 */
CUA_API cua_status cua_host_stream_capture(cua_backend *host, cua_stream stream, int on);

/* ------------------------------------------------------------------------ */
/* The fault backend                                                         */
/* ------------------------------------------------------------------------ */

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

/* ------------------------------------------------------------------------ */
/* Memory from a supplier                                                    */
/* ------------------------------------------------------------------------ */

/** A supplier's segment: `size` bytes of device memory of `device`, aligned
 *  to CUA_ALIGNMENT, or NULL when it has none. */
typedef void *(*cua_supplier_alloc_fn)(size_t size, int device, void *ctx);
/** Take back a segment the supplier gave (its address and size as given). */
typedef void (*cua_supplier_free_fn)(void *ptr, size_t size, int device, void *ctx);

/**
 * Create a backend whose memory comes from a supplier of the user's: an
 * allocator whose memory is special (registered for NCCL's collectives,
 * another library's pool; what torch.cuda.MemPool(allocator=...) is for).
 * An arena on it takes whole segments from `alloc_fn` and gives them back to
 * `free_fn` (it has no virtual memory management, as with vmm:0: trims give
 * back whole free segments) and places blocks inside them as any arena does.
 * Events, streams, copies and access come from `inner`, a backend of the
 * same device. The callbacks get `ctx`; they are called under the arena's
 * lock and must not call into that arena. It does not own `inner`: destroy
 * it before `inner`. The new backend goes to *out.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (a NULL argument but ctx),
 * CUA_ERR_OUT_OF_MEMORY (host memory).
 */
CUA_API cua_status cua_backend_supplier_create(cua_backend *inner, cua_supplier_alloc_fn alloc_fn,
                                               cua_supplier_free_fn free_fn, void *ctx,
                                               cua_backend **out);

/* ------------------------------------------------------------------------ */
/* Every backend's counters                                                  */
/* ------------------------------------------------------------------------ */

/** What a backend holds now and what it was asked to do. */
typedef struct cua_backend_stats {
    uint64_t calls[CUA_CALL_MAX];      /**< calls per kind (cua_call), failed ones included */
    uint64_t call_ns[CUA_CALL_MAX];    /**< nanoseconds spent in them per kind */
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

/**
 * Read the counters of `backend` into *out, of `size` bytes (the caller's
 * sizeof(cua_backend_stats): a library newer than the caller's header fills
 * only the fields the caller knows). cua_backend_get_stats() passes it.
 * Returns CUA_OK, CUA_ERR_INVALID_ARG (NULL, or a size smaller than the first
 * release's struct).
 */
CUA_API cua_status cua_backend_get_stats_sized(cua_backend *backend, cua_backend_stats *out,
                                               size_t size);

/* Read the counters of `backend` into *out (cua_backend_get_stats_sized). */
static inline cua_status cua_backend_get_stats(cua_backend *backend, cua_backend_stats *out)
{
    return cua_backend_get_stats_sized(backend, out, sizeof *out);
}

#ifdef __cplusplus
}
#endif

#endif /* CUARENA_BACKEND_H */
