/*
 * backend_cuda.c - the backend on the CUDA driver's virtual-memory API.
 *
 * The driver is loaded at run time (dlopen of libcuda.so.1, then
 * cuGetProcAddress for every entry point at the CUDA 12.0 ABI), so the library
 * links and its host tests run on machines without a GPU or driver; creating
 * this backend there answers CUA_ERR_NO_DEVICE.
 *
 * One backend per device. It retains the device's primary context (the one
 * PyTorch and the runtime API use) and makes it current on a thread that has
 * no context when the backend is called; a thread with its own current context
 * keeps it, unless it is of another device: then the primary context is
 * pushed for the call and popped after (ctx_enter). Physical memory is pinned
 * device memory of the backend's device; access is granted to that device and
 * to the peers an arena names (cuMemSetAccess with one descriptor each, after
 * cuDeviceCanAccessPeer said yes; cuCtxEnablePeerAccess for cuMemAlloc). Where the device has no virtual memory
 * management, only alloc / free (cuMemAlloc / cuMemFree) are used.
 */
#include "backend/cuda.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <cuda.h>
#pragma GCC diagnostic pop

/* ---- the driver's entry points, loaded once per process ----------------------- */

typedef struct cuda_api {
    CUresult (*Init)(unsigned);
    CUresult (*DeviceGetCount)(int *);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceGetAttribute)(int *, CUdevice_attribute, CUdevice);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*DevicePrimaryCtxRelease)(CUdevice);
    CUresult (*CtxGetCurrent)(CUcontext *);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*CtxPushCurrent)(CUcontext);
    CUresult (*CtxPopCurrent)(CUcontext *);
    CUresult (*CtxGetDevice)(CUdevice *);
    CUresult (*DeviceCanAccessPeer)(int *, CUdevice, CUdevice);
    CUresult (*CtxEnablePeerAccess)(CUcontext, unsigned);
    CUresult (*MemGetAllocationGranularity)(size_t *, const CUmemAllocationProp *,
                                            CUmemAllocationGranularity_flags);
    CUresult (*MemAddressReserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
    CUresult (*MemAddressFree)(CUdeviceptr, size_t);
    CUresult (*MemCreate)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                          unsigned long long);
    CUresult (*MemRelease)(CUmemGenericAllocationHandle);
    CUresult (*MemMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
                       unsigned long long);
    CUresult (*MemUnmap)(CUdeviceptr, size_t);
    CUresult (*MemSetAccess)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
    CUresult (*MemGetInfo)(size_t *, size_t *);
    CUresult (*MemAlloc)(CUdeviceptr *, size_t);
    CUresult (*MemFree)(CUdeviceptr);
    CUresult (*EventCreate)(CUevent *, unsigned);
    CUresult (*EventDestroy)(CUevent);
    CUresult (*EventRecord)(CUevent, CUstream);
    CUresult (*EventQuery)(CUevent);
    CUresult (*EventSynchronize)(CUevent);
    CUresult (*StreamSynchronize)(CUstream);
    CUresult (*StreamIsCapturing)(CUstream, CUstreamCaptureStatus *);
    CUresult (*CtxSynchronize)(void);
    CUresult (*MemHostAlloc)(void **, size_t, unsigned);
    CUresult (*MemFreeHost)(void *);
    CUresult (*StreamCreate)(CUstream *, unsigned);
    CUresult (*StreamDestroy)(CUstream);
    CUresult (*MemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
    CUresult (*MemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
    CUresult (*MemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
    CUresult (*GetErrorName)(CUresult, const char **);
    CUresult (*GetErrorString)(CUresult, const char **);
} cuda_api;

typedef CUresult (*getproc_fn)(const char *, void **, int, cuuint64_t,
                               CUdriverProcAddressQueryResult *);

static cuda_api api;
static cua_status api_status = CUA_ERR_NO_DEVICE;
static char api_msg[256];
static pthread_once_t api_once = PTHREAD_ONCE_INIT;

#define CUA_CUDA_ABI 12000

static void api_load(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(api_msg, sizeof api_msg, "no CUDA driver: dlopen(libcuda.so.1) failed: %s",
                 dlerror());
        return;
    }
    getproc_fn getproc = (getproc_fn)(uintptr_t)dlsym(lib, "cuGetProcAddress_v2");
    if (!getproc) {
        snprintf(api_msg, sizeof api_msg, "the CUDA driver is too old: no cuGetProcAddress_v2");
        return;
    }
    static const struct { const char *name; size_t offset; } entries[] = {
#define E(f) {"cu" #f, offsetof(cuda_api, f)}
        E(Init), E(DeviceGetCount), E(DeviceGet), E(DeviceGetAttribute),
        E(DevicePrimaryCtxRetain), E(DevicePrimaryCtxRelease), E(CtxGetCurrent),
        E(CtxSetCurrent), E(CtxPushCurrent), E(CtxPopCurrent), E(CtxGetDevice),
        E(DeviceCanAccessPeer), E(CtxEnablePeerAccess), E(MemGetAllocationGranularity), E(MemAddressReserve),
        E(MemAddressFree), E(MemCreate), E(MemRelease), E(MemMap), E(MemUnmap),
        E(MemSetAccess), E(MemGetInfo), E(MemAlloc), E(MemFree), E(EventCreate), E(EventDestroy), E(EventRecord),
        E(EventQuery), E(EventSynchronize), E(StreamSynchronize), E(StreamIsCapturing), E(CtxSynchronize), E(MemHostAlloc),
        E(MemFreeHost), E(StreamCreate), E(StreamDestroy), E(MemcpyDtoHAsync),
        E(MemcpyHtoDAsync), E(MemsetD8Async), E(GetErrorName), E(GetErrorString),
#undef E
    };
    for (size_t i = 0; i < CUA_ARRAY_LEN(entries); i++) {
        void *fn = NULL;
        CUdriverProcAddressQueryResult found;
        if (getproc(entries[i].name, &fn, CUA_CUDA_ABI, CU_GET_PROC_ADDRESS_DEFAULT, &found) !=
                CUDA_SUCCESS || !fn) {
            snprintf(api_msg, sizeof api_msg, "the CUDA driver has no %s", entries[i].name);
            return;
        }
        memcpy((char *)&api + entries[i].offset, &fn, sizeof fn);
    }
    CUresult r = api.Init(0);
    if (r != CUDA_SUCCESS) {
        const char *name = "?";
        api.GetErrorName(r, &name);
        snprintf(api_msg, sizeof api_msg, "cuInit failed: %s", name);
        return;
    }
    api_status = CUA_OK;
}

/* ---- errors ------------------------------------------------------------------------ */

static cua_status cu_fail(CUresult r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cua_status cu_fail(CUresult r, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *name = "CUDA_ERROR_UNKNOWN", *text = "";
    api.GetErrorName(r, &name);
    api.GetErrorString(r, &text);
    cua_status st = r == CUDA_ERROR_OUT_OF_MEMORY ? CUA_ERR_OUT_OF_MEMORY : CUA_ERR_BACKEND;
    return _cua_error(st, "%s failed: %s (%s)", what, name, text);
}

/* ---- the backend ----------------------------------------------------------------------- */

typedef struct cuda_backend {
    cua_backend base;
    CUdevice dev;
    CUcontext ctx;          /* the retained primary context */
    CUmemAllocationProp prop;
    /* Peers given access to the whole segments of cuMemAlloc (no VMM): their
     * primary contexts stay retained (the access goes with them) until destroy. */
    cua_lock_t peer_lock;
    uint64_t ctx_peers;
} cuda_backend;

static cuda_backend *cb_of(cua_backend *b) { return (cuda_backend *)b; }

/*
 * Make a context of the backend's device current for one hook: a thread with
 * no context gets the primary context (and keeps it); a thread whose current
 * context is of this device keeps it; a thread whose current context is of
 * another device (a multi-GPU program that set device 1 and frees a block of
 * device 0) gets the primary context pushed for the call and popped after,
 * so that cuMemAlloc, cuMemGetInfo, events and streams are the device's own.
 */
static cua_status ctx_enter(cuda_backend *cb, bool *pushed)
{
    *pushed = false;
    CUcontext cur = NULL;
    CUresult r = api.CtxGetCurrent(&cur);
    if (r == CUDA_SUCCESS && cur == cb->ctx) return CUA_OK;
    if (r != CUDA_SUCCESS || !cur) {
        r = api.CtxSetCurrent(cb->ctx);
        return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuCtxSetCurrent(primary context)");
    }
    CUdevice d = -1;
    if (api.CtxGetDevice(&d) == CUDA_SUCCESS && d == cb->dev) return CUA_OK;
    r = api.CtxPushCurrent(cb->ctx);
    if (r != CUDA_SUCCESS)
        return cu_fail(r, "cuCtxPushCurrent(device %d's primary context)", cb->base.device);
    *pushed = true;
    return CUA_OK;
}

static void ctx_leave(bool pushed)
{
    CUcontext popped;
    if (pushed) api.CtxPopCurrent(&popped);
}

/* ENTER at the top of a hook, LEAVE right after its driver call. */
#define ENTER(cb)                                                                          \
    bool pushed_ = false;                                                                  \
    do {                                                                                   \
        cua_status e_ = ctx_enter(cb, &pushed_);                                           \
        if (e_ != CUA_OK) return e_;                                                       \
    } while (0)
#define LEAVE() ctx_leave(pushed_)

static cua_status cuda_reserve(cua_backend *b, size_t size, size_t align, uintptr_t *addr)
{
    ENTER(cb_of(b));
    CUdeviceptr p = 0;
    CUresult r = api.MemAddressReserve(&p, size, align, 0, 0);
    LEAVE();
    if (r != CUDA_SUCCESS)
        return cu_fail(r, "cuMemAddressReserve(%zu bytes, alignment %zu)", size, align);
    *addr = (uintptr_t)p;
    return CUA_OK;
}

static cua_status cuda_unreserve(cua_backend *b, uintptr_t addr, size_t size)
{
    ENTER(cb_of(b));
    CUresult r = api.MemAddressFree((CUdeviceptr)addr, size);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemAddressFree(%#lx, %zu)",
                                                (unsigned long)addr, size);
}

static cua_status cuda_create(cua_backend *b, size_t size, cua_handle *out)
{
    cuda_backend *cb = cb_of(b);
    ENTER(cb);
    CUmemGenericAllocationHandle h;
    CUresult r = api.MemCreate(&h, size, &cb->prop, 0);
    LEAVE();
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuMemCreate(%zu bytes on device %d)", size, b->device);
    *out = (cua_handle)h;
    return CUA_OK;
}

static cua_status cuda_release(cua_backend *b, cua_handle h)
{
    ENTER(cb_of(b));
    CUresult r = api.MemRelease((CUmemGenericAllocationHandle)h);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemRelease");
}

static cua_status cuda_map(cua_backend *b, uintptr_t addr, size_t size, size_t offset, cua_handle h)
{
    ENTER(cb_of(b));
    CUresult r = api.MemMap((CUdeviceptr)addr, size, offset, (CUmemGenericAllocationHandle)h, 0);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK
                             : cu_fail(r, "cuMemMap(%#lx, %zu bytes)", (unsigned long)addr, size);
}

static cua_status cuda_unmap(cua_backend *b, uintptr_t addr, size_t size)
{
    ENTER(cb_of(b));
    CUresult r = api.MemUnmap((CUdeviceptr)addr, size);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK
                             : cu_fail(r, "cuMemUnmap(%#lx, %zu bytes)", (unsigned long)addr, size);
}

static cua_status cuda_set_access(cua_backend *b, uintptr_t addr, size_t size, const int *devices,
                                  int n)
{
    cuda_backend *cb = cb_of(b);
    CUmemAccessDesc desc[CUA_MAX_DEVICES];
    if (!devices || n <= 0 || n > (int)CUA_ARRAY_LEN(desc))
        return _cua_error(CUA_ERR_BACKEND, "cuMemSetAccess(%#lx, %zu bytes): %d devices (1..%d)",
                          (unsigned long)addr, size, n, CUA_MAX_DEVICES);
    for (int i = 0; i < n; i++) {
        desc[i].location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        desc[i].location.id = devices[i];
        desc[i].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    }
    ENTER(cb);
    CUresult r = api.MemSetAccess((CUdeviceptr)addr, size, desc, (size_t)n);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK
                             : cu_fail(r, "cuMemSetAccess(%#lx, %zu bytes, %d device(s): %d%s)",
                                       (unsigned long)addr, size, n, devices[0],
                                       n > 1 ? " and peers" : "");
}

/* The CUdevice of ordinal `peer`, or CUA_ERR_NO_DEVICE. */
static cua_status peer_device(cuda_backend *cb, int peer, CUdevice *out)
{
    int count = 0;
    CUresult r = api.DeviceGetCount(&count);
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuDeviceGetCount");
    if (peer < 0 || peer >= count)
        return _cua_error(CUA_ERR_NO_DEVICE, "peer access to device %d's memory for device %d: "
                          "no CUDA device %d (%d present)", cb->base.device, peer, peer, count);
    r = api.DeviceGet(out, peer);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuDeviceGet(%d)", peer);
}

static cua_status cuda_peer_check(cua_backend *b, int peer)
{
    cuda_backend *cb = cb_of(b);
    CUdevice pd;
    cua_status st = peer_device(cb, peer, &pd);
    if (st != CUA_OK || pd == cb->dev) return st;
    int can = 0;
    CUresult r = api.DeviceCanAccessPeer(&can, pd, cb->dev); /* can pd reach dev's memory? */
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuDeviceCanAccessPeer(%d, %d)", peer, b->device);
    if (!can)
        return _cua_error(CUA_ERR_NOT_SUPPORTED, "device %d cannot access device %d's memory: "
                          "cuDeviceCanAccessPeer says no (no P2P path between them: PCIe "
                          "topology, IOMMU, or a virtualised GPU; nvidia-smi topo -p2p r "
                          "shows it)", peer, b->device);
    return CUA_OK;
}

/* cuCtxEnablePeerAccess makes the *current* context able to reach the
 * argument's memory: the peer's primary context is made current (pushed),
 * and given access to this device's primary context. It stays retained. */
static cua_status cuda_peer_enable(cua_backend *b, int peer)
{
    cuda_backend *cb = cb_of(b);
    cua_status st = cuda_peer_check(b, peer);
    if (st != CUA_OK || peer == b->device) return st;
    _cua_lock(&cb->peer_lock);
    if (cb->ctx_peers >> peer & 1) {
        _cua_unlock(&cb->peer_lock);
        return CUA_OK;
    }
    CUdevice pd;
    CUcontext pctx = NULL, popped;
    st = peer_device(cb, peer, &pd);
    CUresult r = CUDA_SUCCESS;
    if (st == CUA_OK && (r = api.DevicePrimaryCtxRetain(&pctx, pd)) != CUDA_SUCCESS)
        st = cu_fail(r, "cuDevicePrimaryCtxRetain(%d)", peer);
    if (st == CUA_OK && (r = api.CtxPushCurrent(pctx)) != CUDA_SUCCESS) {
        st = cu_fail(r, "cuCtxPushCurrent(device %d's primary context)", peer);
        api.DevicePrimaryCtxRelease(pd);
    } else if (st == CUA_OK) {
        r = api.CtxEnablePeerAccess(cb->ctx, 0);
        api.CtxPopCurrent(&popped);
        if (r == CUDA_SUCCESS || r == CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED) {
            cb->ctx_peers |= (uint64_t)1 << peer; /* released with the backend */
        } else {
            st = cu_fail(r, "cuCtxEnablePeerAccess(device %d to device %d's memory)", peer,
                         b->device);
            api.DevicePrimaryCtxRelease(pd);
        }
    }
    _cua_unlock(&cb->peer_lock);
    return st;
}

/* Whole segments where VMM is missing or switched off. */
static cua_status cuda_alloc(cua_backend *b, size_t size, uintptr_t *addr)
{
    ENTER(cb_of(b));
    CUdeviceptr p = 0;
    CUresult r = api.MemAlloc(&p, size);
    LEAVE();
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuMemAlloc(%zu bytes on device %d)", size, b->device);
    *addr = (uintptr_t)p;
    return CUA_OK;
}

static cua_status cuda_free(cua_backend *b, uintptr_t addr, size_t size)
{
    ENTER(cb_of(b));
    CUresult r = api.MemFree((CUdeviceptr)addr);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemFree(%#lx, %zu bytes)",
                                                (unsigned long)addr, size);
}

static cua_status cuda_mem_info(cua_backend *b, size_t *free_bytes, size_t *total_bytes)
{
    ENTER(cb_of(b));
    CUresult r = api.MemGetInfo(free_bytes, total_bytes);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemGetInfo");
}

static cua_status cuda_event_create(cua_backend *b, cua_event *out)
{
    ENTER(cb_of(b));
    CUevent ev;
    CUresult r = api.EventCreate(&ev, CU_EVENT_DISABLE_TIMING);
    LEAVE();
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuEventCreate");
    *out = (cua_event)(uintptr_t)ev;
    return CUA_OK;
}

static cua_status cuda_event_destroy(cua_backend *b, cua_event ev)
{
    ENTER(cb_of(b));
    CUresult r = api.EventDestroy((CUevent)(uintptr_t)ev);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuEventDestroy");
}

/* Note [streams that capture a CUDA graph]: while a stream captures a graph
 * (torch's CUDA graphs, torch.compile's reduce-overhead mode), an event
 * recorded on it becomes a node of the graph, and querying or waiting for
 * such an event - or waiting for the stream, or for a legacy stream that
 * would join the capture - fails and invalidates the capture: the user's
 * graph is lost. So recording on a capturing stream, and waiting for one,
 * records and waits for nothing here and answers CUA_ERR_BUSY, without a
 * message ("not now"); the arena then leaves the blocks that needed it where
 * they are (not handed to other streams) until a later call finds the capture
 * over, as torch defers its events until no capture is underway. The check
 * is one cuStreamIsCapturing, on paths that record or wait (misses, frees of
 * blocks used on other streams), never on a cache hit. */
static bool capturing(CUstream stream)
{
    CUstreamCaptureStatus cs = CU_STREAM_CAPTURE_STATUS_NONE;
    CUresult r = api.StreamIsCapturing(stream, &cs);
    /* (IMPLICIT: a legacy stream while a blocking stream captures) */
    return r == CUDA_ERROR_STREAM_CAPTURE_IMPLICIT ||
           (r == CUDA_SUCCESS && cs != CU_STREAM_CAPTURE_STATUS_NONE);
}

static cua_status cuda_event_record(cua_backend *b, cua_event ev, cua_stream stream)
{
    ENTER(cb_of(b));
    bool busy = capturing((CUstream)stream);
    CUresult r = busy ? CUDA_SUCCESS : api.EventRecord((CUevent)(uintptr_t)ev, (CUstream)stream);
    LEAVE();
    if (busy) return CUA_ERR_BUSY; /* (nothing recorded) */
    return r == CUDA_SUCCESS ? CUA_OK
                             : cu_fail(r, "cuEventRecord(stream %#lx)", (unsigned long)stream);
}

static cua_status cuda_event_query(cua_backend *b, cua_event ev)
{
    ENTER(cb_of(b));
    CUresult r = api.EventQuery((CUevent)(uintptr_t)ev);
    LEAVE();
    if (r == CUDA_SUCCESS) return CUA_OK;
    if (r == CUDA_ERROR_NOT_READY) return CUA_ERR_BUSY;
    return cu_fail(r, "cuEventQuery");
}

static cua_status cuda_event_sync(cua_backend *b, cua_event ev)
{
    ENTER(cb_of(b));
    CUresult r = api.EventSynchronize((CUevent)(uintptr_t)ev);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuEventSynchronize");
}

static cua_status cuda_stream_sync(cua_backend *b, cua_stream stream)
{
    ENTER(cb_of(b));
    /* (the whole device: the primary context's work, every stream's) */
    bool busy = stream != CUA_STREAM_DEVICE && capturing((CUstream)stream);
    CUresult r = stream == CUA_STREAM_DEVICE ? api.CtxSynchronize()
                 : busy                      ? CUDA_SUCCESS
                                             : api.StreamSynchronize((CUstream)stream);
    LEAVE();
    if (busy) return CUA_ERR_BUSY; /* (not waited for) */
    if (r == CUDA_SUCCESS) return CUA_OK;
    if (stream == CUA_STREAM_DEVICE) return cu_fail(r, "cuCtxSynchronize");
    return cu_fail(r, "cuStreamSynchronize(%#lx)", (unsigned long)stream);
}

static cua_status cuda_host_alloc(cua_backend *b, size_t size, void **out)
{
    ENTER(cb_of(b));
    CUresult r = api.MemHostAlloc(out, size, CU_MEMHOSTALLOC_PORTABLE);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemHostAlloc(%zu bytes)", size);
}

static cua_status cuda_host_free(cua_backend *b, void *p, size_t size)
{
    ENTER(cb_of(b));
    CUresult r = api.MemFreeHost(p);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemFreeHost(%zu bytes)", size);
}

static cua_status cuda_stream_create(cua_backend *b, cua_stream *out)
{
    ENTER(cb_of(b));
    CUstream s;
    CUresult r = api.StreamCreate(&s, CU_STREAM_NON_BLOCKING);
    LEAVE();
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuStreamCreate");
    *out = (cua_stream)(uintptr_t)s;
    return CUA_OK;
}

static cua_status cuda_stream_destroy(cua_backend *b, cua_stream s)
{
    ENTER(cb_of(b));
    CUresult r = api.StreamDestroy((CUstream)(uintptr_t)s);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuStreamDestroy");
}

static cua_status cuda_copy_to_host(cua_backend *b, void *dst, uintptr_t src, size_t n,
                                    cua_stream s)
{
    ENTER(cb_of(b));
    CUresult r = api.MemcpyDtoHAsync(dst, (CUdeviceptr)src, n, (CUstream)(uintptr_t)s);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemcpyDtoHAsync(%zu bytes from %#lx)", n,
                                                (unsigned long)src);
}

static cua_status cuda_fill(cua_backend *b, uintptr_t addr, size_t n, unsigned char v, cua_stream s)
{
    ENTER(cb_of(b));
    CUresult r = api.MemsetD8Async((CUdeviceptr)addr, v, n, (CUstream)(uintptr_t)s);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemsetD8Async(%zu bytes at %#lx)", n, (unsigned long)addr);
}

static cua_status cuda_copy_to_device(cua_backend *b, uintptr_t dst, const void *src, size_t n,
                                      cua_stream s)
{
    ENTER(cb_of(b));
    CUresult r = api.MemcpyHtoDAsync((CUdeviceptr)dst, src, n, (CUstream)(uintptr_t)s);
    LEAVE();
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemcpyHtoDAsync(%zu bytes to %#lx)", n,
                                                (unsigned long)dst);
}

static void cuda_destroy(cua_backend *b)
{
    cuda_backend *cb = cb_of(b);
    for (int d = 0; d < CUA_MAX_DEVICES; d++) {
        CUdevice pd;
        if ((cb->ctx_peers >> d & 1) && api.DeviceGet(&pd, d) == CUDA_SUCCESS)
            api.DevicePrimaryCtxRelease(pd);
    }
    _cua_lock_destroy(&cb->peer_lock);
    api.DevicePrimaryCtxRelease(cb->dev);
    free(cb);
}

static const cua_backend_ops cuda_ops = CUA_BACKEND_OPS(cuda);

/* ---- create --------------------------------------------------------------------------- */

static cua_status open_device(cuda_backend *cb, int device, bool *vmm_out)
{
    int count = 0, vmm = 0;
    CUresult r = api.DeviceGetCount(&count);
    if (r != CUDA_SUCCESS) return _cua_error(CUA_ERR_NO_DEVICE, "cuDeviceGetCount failed");
    if (device >= count)
        return _cua_error(CUA_ERR_NO_DEVICE, "no CUDA device %d: %d device(s) present", device,
                          count);
    r = api.DeviceGet(&cb->dev, device);
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuDeviceGet(%d)", device);
    r = api.DeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
                               cb->dev);
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuDeviceGetAttribute(VMM supported)");
    *vmm_out = vmm != 0; /* without it, arenas take whole segments from cuMemAlloc */
    r = api.DevicePrimaryCtxRetain(&cb->ctx, cb->dev);
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuDevicePrimaryCtxRetain(%d)", device);
    return CUA_OK;
}

cua_status _cua_backend_cuda_create(int device, cua_backend **out)
{
    pthread_once(&api_once, api_load);
    if (api_status != CUA_OK) return _cua_error(api_status, "%s", api_msg);
    cuda_backend *cb = calloc(1, sizeof *cb);
    if (!cb) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a CUDA backend");
    bool vmm = false;
    cua_status st = open_device(cb, device, &vmm);
    if (st != CUA_OK) {
        free(cb);
        return st;
    }
    cb->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    cb->prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    cb->prop.location.id = device;
    size_t gran = 2 * CUA_MIB, free_b = 0, total_b = 0; /* without VMM: 2 MiB segments */
    CUresult r = CUDA_SUCCESS;
    bool pushed = false;
    st = ctx_enter(cb, &pushed);
    if (st == CUA_OK && vmm)
        r = api.MemGetAllocationGranularity(&gran, &cb->prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
    if (st == CUA_OK && r == CUDA_SUCCESS) r = api.MemGetInfo(&free_b, &total_b);
    ctx_leave(pushed);
    if (st != CUA_OK || r != CUDA_SUCCESS || !_cua_is_pow2(gran)) {
        if (st == CUA_OK)
            st = r != CUDA_SUCCESS ? cu_fail(r, "reading device %d's granularity and memory", device)
                                   : _cua_error(CUA_ERR_NOT_SUPPORTED,
                                                "granularity %zu is not a power of two", gran);
        api.DevicePrimaryCtxRelease(cb->dev);
        free(cb);
        return st;
    }
    _cua_backend_init(&cb->base, &cuda_ops, "cuda", CUA_BK_CUDA, gran, total_b);
    _cua_lock_init(&cb->peer_lock, CUA_LOCK_RANK_CUDA_PEER);
    cb->base.device = device;
    cb->base.vmm = vmm;
    *out = &cb->base;
    return CUA_OK;
}
