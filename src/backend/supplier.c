/*
 * supplier.c - a backend whose memory comes from the user: whole segments
 * from two callbacks (an allocator of the user's: NCCL's registered buffers,
 * a pool of another library, torch.cuda.MemPool's allocator), everything
 * else (events, streams, copies, access) from an inner backend of the same
 * device.
 *
 * Note [memory from a supplier]: some device memory must come from a
 * particular allocator (memory registered for NCCL's symmetric collectives,
 * for instance); torch lets a MemPool take its segments from such an
 * allocator and caches blocks inside them as it does elsewhere. An arena on
 * a supplier backend does the same: it has no virtual memory management
 * (vmm is false), so it takes whole segments with `alloc` and gives them back
 * with `free`, and splits, merges, reuses and trims blocks inside them as any
 * arena of whole segments does. The supplier's callbacks are called under
 * the arena's lock: they must not call back into that arena.
 *
 * While a supplier backend exists it counts as a user of the inner backend,
 * so the inner one cannot be destroyed first.
 */
#include "backend/supplier.h"

#include <stdlib.h>

typedef struct supplier_backend {
    struct cua_backend base; /* first: a cua_backend * points here */
    cua_backend *inner;
    cua_supplier_alloc_fn alloc_fn;
    cua_supplier_free_fn free_fn;
    void *ctx;
} supplier_backend;

static supplier_backend *supplier_of(cua_backend *b) { return (supplier_backend *)(void *)b; }

static cua_status no_vmm(const char *what)
{
    return _cua_error(CUA_ERR_NOT_SUPPORTED, "a supplier backend gives whole segments only: "
                      "no %s (its arenas take segments with alloc)", what);
}

/* The calls of virtual memory management: refused (vmm is false, so arenas
 * never make them). */
static cua_status supplier_reserve(cua_backend *b, size_t size, size_t align, uintptr_t *addr)
{
    (void)b, (void)size, (void)align, (void)addr;
    return no_vmm("address reservations");
}
static cua_status supplier_unreserve(cua_backend *b, uintptr_t addr, size_t size)
{
    (void)b, (void)addr, (void)size;
    return no_vmm("address reservations");
}
static cua_status supplier_create(cua_backend *b, size_t size, cua_handle *out)
{
    (void)b, (void)size, (void)out;
    return no_vmm("physical handles");
}
static cua_status supplier_release(cua_backend *b, cua_handle h)
{
    (void)b, (void)h;
    return no_vmm("physical handles");
}
static cua_status supplier_map(cua_backend *b, uintptr_t addr, size_t size, size_t offset,
                               cua_handle h)
{
    (void)b, (void)addr, (void)size, (void)offset, (void)h;
    return no_vmm("mappings");
}
static cua_status supplier_unmap(cua_backend *b, uintptr_t addr, size_t size)
{
    (void)b, (void)addr, (void)size;
    return no_vmm("mappings");
}

/* A segment from the supplier: its address must suit a block (CUA_ALIGNMENT). */
static cua_status supplier_alloc(cua_backend *b, size_t size, uintptr_t *addr)
{
    supplier_backend *s = supplier_of(b);
    void *p = s->alloc_fn(size, s->base.device, s->ctx);
    if (!p)
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "the supplier of this backend has no segment "
                          "of %zu bytes", size);
    if ((uintptr_t)p % CUA_ALIGNMENT) {
        s->free_fn(p, size, s->base.device, s->ctx);
        return _cua_error(CUA_ERR_BACKEND, "the supplier of this backend gave a segment at %p, "
                          "not aligned to %d bytes", p, CUA_ALIGNMENT);
    }
    *addr = (uintptr_t)p;
    return CUA_OK;
}

static cua_status supplier_free(cua_backend *b, uintptr_t addr, size_t size)
{
    supplier_backend *s = supplier_of(b);
    s->free_fn((void *)addr, size, s->base.device, s->ctx);
    return CUA_OK;
}

/* Everything else is the inner backend's, through its wrappers (which count
 * the calls there too). Defines supplier_<hook>. */
#define FORWARD(hook, params, ...)                                                         \
    static cua_status supplier_##hook params                                               \
    {                                                                                      \
        return _cua_bk_##hook(supplier_of(b)->inner, NULL, __VA_ARGS__);                   \
    }

FORWARD(set_access, (cua_backend *b, uintptr_t addr, size_t size, const int *devices, int n),
        addr, size, devices, n)
FORWARD(peer_enable, (cua_backend *b, int peer), peer)
FORWARD(mem_info, (cua_backend *b, size_t *free_bytes, size_t *total_bytes), free_bytes,
        total_bytes)
FORWARD(event_create, (cua_backend *b, cua_event *out), out)
FORWARD(event_destroy, (cua_backend *b, cua_event ev), ev)
FORWARD(event_record, (cua_backend *b, cua_event ev, cua_stream stream), ev, stream)
FORWARD(event_query, (cua_backend *b, cua_event ev), ev)
FORWARD(event_sync, (cua_backend *b, cua_event ev), ev)
FORWARD(stream_sync, (cua_backend *b, cua_stream stream), stream)
FORWARD(host_alloc, (cua_backend *b, size_t size, void **out), size, out)
FORWARD(host_free, (cua_backend *b, void *p, size_t size), p, size)
FORWARD(stream_create, (cua_backend *b, cua_stream *out), out)
FORWARD(stream_destroy, (cua_backend *b, cua_stream s), s)
FORWARD(copy_to_host, (cua_backend *b, void *dst, uintptr_t src, size_t n, cua_stream s), dst,
        src, n, s)
FORWARD(copy_to_device, (cua_backend *b, uintptr_t dst, const void *src, size_t n, cua_stream s),
        dst, src, n, s)
FORWARD(fill, (cua_backend *b, uintptr_t addr, size_t n, unsigned char v, cua_stream s), addr,
        n, v, s)

static cua_status supplier_peer_check(cua_backend *b, int peer)
{
    return _cua_bk_peer_check(supplier_of(b)->inner, peer);
}

static void supplier_destroy(cua_backend *b)
{
    supplier_backend *s = supplier_of(b);
    atomic_fetch_sub(&s->inner->users, 1);
    free(s);
}

static const cua_backend_ops supplier_ops = CUA_BACKEND_OPS(supplier);

cua_status _cua_backend_supplier_create(cua_backend *inner, cua_supplier_alloc_fn alloc_fn,
                                        cua_supplier_free_fn free_fn, void *ctx,
                                        cua_backend **out)
{
    if (!inner || !alloc_fn || !free_fn || !out)
        return _cua_error(CUA_ERR_INVALID_ARG, "supplier backend: inner, alloc, free or out is "
                          "NULL");
    *out = NULL;
    supplier_backend *s = calloc(1, sizeof *s);
    if (!s) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "supplier backend: no host memory for it");
    _cua_backend_init(&s->base, &supplier_ops, "supplier", CUA_BK_SUPPLIER, inner->granularity,
                      inner->total_bytes);
    s->base.device = inner->device;
    s->base.vmm = false;
    s->inner = inner;
    s->alloc_fn = alloc_fn;
    s->free_fn = free_fn;
    s->ctx = ctx;
    atomic_fetch_add(&inner->users, 1);
    *out = &s->base;
    return CUA_OK;
}
