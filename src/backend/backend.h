/*
 * backend.h - the memory provider interface: a table of hooks, like jemalloc's
 * extent hooks. The allocator above it only ever reserves address ranges,
 * creates physical handles, maps them whole at offset 0, sets access, unmaps
 * whole mappings (several adjacent ones in one call), and records / queries
 * events on streams. Without virtual memory management (`vmm` false, or an
 * arena with CUA_ARENA_NO_VMM) it takes whole segments with alloc / free
 * instead of reserve / create / map.
 *
 * Implementations: host.c (memfd + mmap), fault.c (fails chosen calls),
 * cuda.c (the CUDA driver's VMM API), supplier.c (whole segments from the
 * user's callbacks, the rest from an inner backend).
 *
 * Callers go through the _cua_bk_* wrappers below, never through ops directly:
 * the wrappers count and time every call, per backend and per arena, and keep
 * the counts of live reservations, handles and events that leak checks read.
 */
#ifndef CUA_BACKEND_H
#define CUA_BACKEND_H

#include "base/internal.h"
#include "cuarena_backend.h"

#include <stdatomic.h>

typedef uint64_t cua_handle; /* a physical allocation (CUmemGenericAllocationHandle) */

/* stream_sync of this "stream" waits for the whole device (never a stream's
 * value: no stream lives at the top of the address space). */
#define CUA_STREAM_DEVICE ((cua_stream)UINTPTR_MAX)
typedef uint64_t cua_event;  /* an event (CUevent) */

typedef enum cua_bk_type {
    CUA_BK_HOST,
    CUA_BK_FAULT,
    CUA_BK_CUDA,
    CUA_BK_SUPPLIER,
} cua_bk_type;

/* Every hook returns CUA_OK or an error status after setting the thread's
 * message with _cua_error(). `b` is the backend the hook belongs to. */
typedef struct cua_backend_ops {
    /* Reserve `size` bytes of address space aligned to `align` (both multiples of
     * the granularity); nothing is accessible there until mapped. */
    cua_status (*reserve)(cua_backend *b, size_t size, size_t align, uintptr_t *addr);
    /* Release a whole reservation; every mapping in it must be gone. */
    cua_status (*unreserve)(cua_backend *b, uintptr_t addr, size_t size);
    /* Create a physical allocation of `size` bytes (a multiple of the granularity). */
    cua_status (*create)(cua_backend *b, size_t size, cua_handle *out);
    /* Release a physical allocation; it must not be mapped. */
    cua_status (*release)(cua_backend *b, cua_handle h);
    /* Map the whole handle at `addr` (inside a reservation, on unmapped pages).
     * `offset` is passed on as the driver gets it: anything but 0 is refused. */
    cua_status (*map)(cua_backend *b, uintptr_t addr, size_t size, size_t offset, cua_handle h);
    /* Unmap [addr, addr+size): it must cover whole mappings only. */
    cua_status (*unmap)(cua_backend *b, uintptr_t addr, size_t size);
    /* Make [addr, addr+size) readable and writable by each of the `n` devices
     * in `devices` (the backend's own device first, then peers: one
     * CUmemAccessDesc each); it must be fully mapped. Access granted before to
     * other devices stays. */
    cua_status (*set_access)(cua_backend *b, uintptr_t addr, size_t size, const int *devices,
                             int n);
    /* CUA_OK when device `peer` can access memory of the backend's device
     * (cuDeviceCanAccessPeer); CUA_ERR_NOT_SUPPORTED (with a message) when it
     * cannot, CUA_ERR_NO_DEVICE when there is no such device. Changes nothing. */
    cua_status (*peer_check)(cua_backend *b, int peer);
    /* Let device `peer` access the whole segments of alloc, now and later
     * (cuCtxEnablePeerAccess: for the whole context, not per segment). */
    cua_status (*peer_enable)(cua_backend *b, int peer);
    /* Allocate `size` bytes (a multiple of the granularity) of device memory at
     * an address of the backend's choosing, accessible at once (cuMemAlloc). */
    cua_status (*alloc)(cua_backend *b, size_t size, uintptr_t *addr);
    /* Free what alloc returned, whole. */
    cua_status (*free)(cua_backend *b, uintptr_t addr, size_t size);
    /* Free and total device memory. */
    cua_status (*mem_info)(cua_backend *b, size_t *free_bytes, size_t *total_bytes);
    cua_status (*event_create)(cua_backend *b, cua_event *out);
    cua_status (*event_destroy)(cua_backend *b, cua_event ev);
    /* CUA_ERR_BUSY, without a message and without recording, while `stream`
     * captures a CUDA graph (Note [streams that capture a CUDA graph],
     * backend/cuda.c): an event recorded there could not be waited for. */
    cua_status (*event_record)(cua_backend *b, cua_event ev, cua_stream stream);
    /* CUA_OK when the event has completed, CUA_ERR_BUSY while it has not
     * (without setting a message), another status on failure. */
    cua_status (*event_query)(cua_backend *b, cua_event ev);
    cua_status (*event_sync)(cua_backend *b, cua_event ev);
    /* Wait for the stream's work; for CUA_STREAM_DEVICE, for all of the
     * device's work (cuCtxSynchronize): what a stream that may be gone is
     * waited for with, without touching it. CUA_ERR_BUSY, without a message
     * and without waiting, while `stream` captures a CUDA graph. */
    cua_status (*stream_sync)(cua_backend *b, cua_stream stream);
    /* Set n bytes of mapped device memory at addr to v, ordered on stream s. */
    cua_status (*fill)(cua_backend *b, uintptr_t addr, size_t n, unsigned char v, cua_stream s);
    /* Page-locked host memory, which the device copies to and from at full
     * speed (the backend's staging area for offload and restore). */
    cua_status (*host_alloc)(cua_backend *b, size_t size, void **out);
    cua_status (*host_free)(cua_backend *b, void *p, size_t size);
    /* A stream of the backend's own, not ordered with the legacy stream. */
    cua_status (*stream_create)(cua_backend *b, cua_stream *out);
    cua_status (*stream_destroy)(cua_backend *b, cua_stream s);
    /* Copies queued on stream s (asynchronous where the backend can; complete
     * when an event recorded after them has): device memory must be mapped
     * and accessible, host memory from host_alloc for full speed. */
    cua_status (*copy_to_host)(cua_backend *b, void *dst, uintptr_t src, size_t n, cua_stream s);
    cua_status (*copy_to_device)(cua_backend *b, uintptr_t dst, const void *src, size_t n,
                                 cua_stream s);
    /* Free the implementation (called by _cua_backend_destroy when nothing is alive). */
    void (*destroy)(cua_backend *b);
} cua_backend_ops;

/* The table of a backend whose hooks are all named <prefix>_<hook>: every hook
 * of cua_backend_ops must then exist (one missing does not compile, where a
 * table written out would leave it NULL). */
#define CUA_BACKEND_OPS(prefix)                                                            \
    {                                                                                      \
        .reserve = prefix##_reserve, .unreserve = prefix##_unreserve,                      \
        .create = prefix##_create, .release = prefix##_release, .map = prefix##_map,       \
        .unmap = prefix##_unmap, .set_access = prefix##_set_access,                        \
        .peer_check = prefix##_peer_check, .peer_enable = prefix##_peer_enable,            \
        .alloc = prefix##_alloc, .free = prefix##_free, .mem_info = prefix##_mem_info,     \
        .event_create = prefix##_event_create, .event_destroy = prefix##_event_destroy,    \
        .event_record = prefix##_event_record, .event_query = prefix##_event_query,        \
        .event_sync = prefix##_event_sync, .stream_sync = prefix##_stream_sync,            \
        .host_alloc = prefix##_host_alloc, .host_free = prefix##_host_free,                \
        .stream_create = prefix##_stream_create,                                           \
        .stream_destroy = prefix##_stream_destroy,                                         \
        .copy_to_host = prefix##_copy_to_host, .copy_to_device = prefix##_copy_to_device,  \
        .fill = prefix##_fill, .destroy = prefix##_destroy,                                \
    }

_Static_assert(CUA_CALL_COUNT <= CUA_CALL_MAX, "cua_stats has room for CUA_CALL_MAX call kinds");

/* Counters of calls per kind; one set per backend and one per arena. */
typedef struct cua_callstats {
    uint64_t calls[CUA_CALL_COUNT];
    uint64_t call_ns[CUA_CALL_COUNT];
} cua_callstats;

/* The common header of every backend; implementations embed it first. */
struct cua_backend {
    const cua_backend_ops *ops;
    const char *name;          /* "host", "fault", "cuda" */
    cua_bk_type kind;
    int device;
    size_t granularity;        /* mapping granularity in bytes (a power of two) */
    size_t total_bytes;        /* device total */
    bool vmm;                  /* reserve / create / map work (else only alloc / free) */
    /* counted by the wrappers: */
    _Atomic uint64_t calls[CUA_CALL_COUNT];
    _Atomic uint64_t call_ns[CUA_CALL_COUNT];
    _Atomic uint64_t failures;
    /* Calls made while the thread held an arena's lock, which other threads
     * may be waiting for (counted only in builds with the lock witness: the
     * tests of "no driver call under the lock"). */
    _Atomic uint64_t calls_locked[CUA_CALL_COUNT];
    _Atomic int64_t reservations, handles, mappings, events, handle_bytes;
    _Atomic int64_t host_buffers, host_bytes, streams;
    _Atomic int users;         /* arenas that use this backend */
    bool shared;               /* a device's shared backend (cua_device_backend): never destroyed */
    /* The staging area offload and restore copy through (staging.c): made at
     * first use, reused, freed with the backend. */
    cua_lock_t stage_lock;
    void *stage[2];
    size_t stage_bytes;
    cua_stream copy_stream;
    cua_event stage_ev[2];
    bool staged;
    /* Releases the driver refused when their owner went away (an arena's
     * destroy): retried before the backend's next acquisitions and at its
     * destroy, so that nothing is dropped (backend.c, _cua_bk_bury). */
    cua_lock_t grave_lock;
    struct cua_grave *graves;
    size_t ngraves_cap;
    _Atomic size_t ngraves;
};

/* What a grave holds: UNMAP (addr, size; then release h), RELEASE (h, size),
 * UNRESERVE (addr, size), FREE (addr, size), EVENT_DESTROY (ev). */
typedef struct cua_grave {
    cua_call kind;
    uintptr_t addr;
    size_t size;
    cua_handle h;
    cua_event ev;
    bool unmap_only; /* CUA_CALL_UNMAP of an old place of a handle that lives on
                      * elsewhere (segment_alias.c): no release after it */
} cua_grave;

/* Hand a release that failed, whose owner goes away, to the backend: it is
 * retried later. Returns `st` (the failure), for the caller to report. */
cua_status _cua_bk_bury(cua_backend *b, cua_grave g, cua_status st);
/* Retry every grave; CUA_OK when none is left. Cheap when there are none. */
cua_status _cua_bk_retry_graves(cua_backend *b);

/* Fill the common header; used by implementations' create functions. */
void _cua_backend_init(cua_backend *b, const cua_backend_ops *ops, const char *name,
                       cua_bk_type kind, size_t granularity, size_t total_bytes);

/* Account one call of `kind` that started at t0 and returned st: count and
 * time it per backend and (cs, may be NULL) per arena. When it succeeded, the
 * backend's live count of what calls of that kind make or end (reservations,
 * handles, mappings, events, host buffers, streams) changes by n, and that of
 * their bytes by `bytes` (a kind without one ignores them). Returns st. */
cua_status _cua_bk_account(cua_backend *b, cua_callstats *cs, cua_call kind, uint64_t t0,
                           cua_status st, int64_t n, int64_t bytes);

/* ---- the wrappers: every call into a backend goes through one of these.
 * `cs` (may be NULL) receives the arena's share of the counts. ---------------- */

cua_status _cua_bk_reserve(cua_backend *b, cua_callstats *cs, size_t size, size_t align,
                           uintptr_t *addr);
cua_status _cua_bk_unreserve(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t size);
cua_status _cua_bk_create(cua_backend *b, cua_callstats *cs, size_t size, cua_handle *out);
cua_status _cua_bk_release(cua_backend *b, cua_callstats *cs, cua_handle h, size_t size);
cua_status _cua_bk_map(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t size,
                       cua_handle h);
/* `nmaps`: how many whole mappings [addr, addr+size) covers (for the counts). */
cua_status _cua_bk_unmap(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t size,
                         size_t nmaps);
/* `devices`: the n devices to grant (own device first); counted as one set_access. */
cua_status _cua_bk_set_access(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t size,
                              const int *devices, int n);
/* The backend's own device only: what every mapping gets at least. */
static inline cua_status _cua_bk_set_access_own(cua_backend *b, cua_callstats *cs, uintptr_t addr,
                                                size_t size)
{
    return _cua_bk_set_access(b, cs, addr, size, &b->device, 1);
}
/* Can `peer` access the backend's device? (Not counted: it maps nothing.) */
cua_status _cua_bk_peer_check(cua_backend *b, int peer);
/* Whole segments (no VMM): let `peer` access them; counted as a set_access. */
cua_status _cua_bk_peer_enable(cua_backend *b, cua_callstats *cs, int peer);
/* A whole segment without VMM: counted as a handle of `size` bytes. */
cua_status _cua_bk_alloc(cua_backend *b, cua_callstats *cs, size_t size, uintptr_t *addr);
cua_status _cua_bk_free(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t size);
cua_status _cua_bk_mem_info(cua_backend *b, cua_callstats *cs, size_t *free_bytes,
                            size_t *total_bytes);
cua_status _cua_bk_event_create(cua_backend *b, cua_callstats *cs, cua_event *out);
cua_status _cua_bk_event_destroy(cua_backend *b, cua_callstats *cs, cua_event ev);
cua_status _cua_bk_event_record(cua_backend *b, cua_callstats *cs, cua_event ev,
                                cua_stream stream);
cua_status _cua_bk_event_query(cua_backend *b, cua_callstats *cs, cua_event ev);
cua_status _cua_bk_event_sync(cua_backend *b, cua_callstats *cs, cua_event ev);
cua_status _cua_bk_fill(cua_backend *b, cua_callstats *cs, uintptr_t addr, size_t n, unsigned char v,
                        cua_stream s);
cua_status _cua_bk_stream_sync(cua_backend *b, cua_callstats *cs, cua_stream stream);
cua_status _cua_bk_host_alloc(cua_backend *b, cua_callstats *cs, size_t size, void **out);
cua_status _cua_bk_host_free(cua_backend *b, cua_callstats *cs, void *p, size_t size);
cua_status _cua_bk_stream_create(cua_backend *b, cua_callstats *cs, cua_stream *out);
cua_status _cua_bk_stream_destroy(cua_backend *b, cua_callstats *cs, cua_stream s);
cua_status _cua_bk_copy_to_host(cua_backend *b, cua_callstats *cs, void *dst, uintptr_t src,
                                size_t n, cua_stream s);
cua_status _cua_bk_copy_to_device(cua_backend *b, cua_callstats *cs, uintptr_t dst,
                                  const void *src, size_t n, cua_stream s);

/* staging.c: the backend's staging area, as its user sees it. */
typedef struct cua_stage {
    void *buf[2];        /* two pinned host buffers of `bytes` each */
    size_t bytes;
    cua_stream stream;   /* the copy stream */
    cua_event ev[2];     /* one per buffer: recorded after a copy into or out of it */
} cua_stage;
/* Take the backend's staging area (made at first use, reused after); it is
 * held (locked) until _cua_stage_put. Freed by _cua_stage_free (backend
 * destroy). */
cua_status _cua_stage_get(cua_backend *b, cua_callstats *cs, cua_stage *out);
void _cua_stage_put(cua_backend *b);
cua_status _cua_stage_free(cua_backend *b);

/* Destroy a backend if nothing is alive in it (CUA_ERR_BUSY otherwise). */
cua_status _cua_backend_destroy(cua_backend *b);

/* The implementations: host.h, fault.h, cuda.h. */

#endif /* CUA_BACKEND_H */
