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
 * keeps it. Physical memory is pinned device memory of the backend's device;
 * access is granted to that device. Where the device has no virtual memory
 * management, only alloc / free (cuMemAlloc / cuMemFree) are used.
 */
#include "backend.h"

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
        E(CtxSetCurrent), E(MemGetAllocationGranularity), E(MemAddressReserve),
        E(MemAddressFree), E(MemCreate), E(MemRelease), E(MemMap), E(MemUnmap),
        E(MemSetAccess), E(MemGetInfo), E(MemAlloc), E(MemFree), E(EventCreate), E(EventDestroy), E(EventRecord),
        E(EventQuery), E(EventSynchronize), E(StreamSynchronize), E(MemHostAlloc),
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
    CUmemAccessDesc access;
} cuda_backend;

static cuda_backend *cb_of(cua_backend *b) { return (cuda_backend *)b; }

/* Make a context current when the calling thread has none. */
static cua_status ensure_ctx(cuda_backend *cb)
{
    CUcontext cur = NULL;
    CUresult r = api.CtxGetCurrent(&cur);
    if (r == CUDA_SUCCESS && cur) return CUA_OK;
    r = api.CtxSetCurrent(cb->ctx);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuCtxSetCurrent(primary context)");
}

#define ENTER(cb)                                                                          \
    do {                                                                                   \
        cua_status e_ = ensure_ctx(cb);                                                    \
        if (e_ != CUA_OK) return e_;                                                       \
    } while (0)

static cua_status cuda_reserve(cua_backend *b, size_t size, size_t align, uintptr_t *addr)
{
    ENTER(cb_of(b));
    CUdeviceptr p = 0;
    CUresult r = api.MemAddressReserve(&p, size, align, 0, 0);
    if (r != CUDA_SUCCESS)
        return cu_fail(r, "cuMemAddressReserve(%zu bytes, alignment %zu)", size, align);
    *addr = (uintptr_t)p;
    return CUA_OK;
}

static cua_status cuda_unreserve(cua_backend *b, uintptr_t addr, size_t size)
{
    ENTER(cb_of(b));
    CUresult r = api.MemAddressFree((CUdeviceptr)addr, size);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemAddressFree(%#lx, %zu)",
                                                (unsigned long)addr, size);
}

static cua_status cuda_create(cua_backend *b, size_t size, cua_handle *out)
{
    cuda_backend *cb = cb_of(b);
    ENTER(cb);
    CUmemGenericAllocationHandle h;
    CUresult r = api.MemCreate(&h, size, &cb->prop, 0);
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuMemCreate(%zu bytes on device %d)", size, b->device);
    *out = (cua_handle)h;
    return CUA_OK;
}

static cua_status cuda_release(cua_backend *b, cua_handle h)
{
    ENTER(cb_of(b));
    CUresult r = api.MemRelease((CUmemGenericAllocationHandle)h);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemRelease");
}

static cua_status cuda_map(cua_backend *b, uintptr_t addr, size_t size, size_t offset, cua_handle h)
{
    ENTER(cb_of(b));
    CUresult r = api.MemMap((CUdeviceptr)addr, size, offset, (CUmemGenericAllocationHandle)h, 0);
    return r == CUDA_SUCCESS ? CUA_OK
                             : cu_fail(r, "cuMemMap(%#lx, %zu bytes)", (unsigned long)addr, size);
}

static cua_status cuda_unmap(cua_backend *b, uintptr_t addr, size_t size)
{
    ENTER(cb_of(b));
    CUresult r = api.MemUnmap((CUdeviceptr)addr, size);
    return r == CUDA_SUCCESS ? CUA_OK
                             : cu_fail(r, "cuMemUnmap(%#lx, %zu bytes)", (unsigned long)addr, size);
}

static cua_status cuda_set_access(cua_backend *b, uintptr_t addr, size_t size)
{
    cuda_backend *cb = cb_of(b);
    ENTER(cb);
    CUresult r = api.MemSetAccess((CUdeviceptr)addr, size, &cb->access, 1);
    return r == CUDA_SUCCESS ? CUA_OK
                             : cu_fail(r, "cuMemSetAccess(%#lx, %zu bytes)", (unsigned long)addr, size);
}

/* Whole segments where VMM is missing or switched off. */
static cua_status cuda_alloc(cua_backend *b, size_t size, uintptr_t *addr)
{
    ENTER(cb_of(b));
    CUdeviceptr p = 0;
    CUresult r = api.MemAlloc(&p, size);
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuMemAlloc(%zu bytes on device %d)", size, b->device);
    *addr = (uintptr_t)p;
    return CUA_OK;
}

static cua_status cuda_free(cua_backend *b, uintptr_t addr, size_t size)
{
    ENTER(cb_of(b));
    CUresult r = api.MemFree((CUdeviceptr)addr);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemFree(%#lx, %zu bytes)",
                                                (unsigned long)addr, size);
}

static cua_status cuda_mem_info(cua_backend *b, size_t *free_bytes, size_t *total_bytes)
{
    ENTER(cb_of(b));
    CUresult r = api.MemGetInfo(free_bytes, total_bytes);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemGetInfo");
}

static cua_status cuda_event_create(cua_backend *b, cua_event *out)
{
    ENTER(cb_of(b));
    CUevent ev;
    CUresult r = api.EventCreate(&ev, CU_EVENT_DISABLE_TIMING);
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuEventCreate");
    *out = (cua_event)(uintptr_t)ev;
    return CUA_OK;
}

static cua_status cuda_event_destroy(cua_backend *b, cua_event ev)
{
    ENTER(cb_of(b));
    CUresult r = api.EventDestroy((CUevent)(uintptr_t)ev);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuEventDestroy");
}

static cua_status cuda_event_record(cua_backend *b, cua_event ev, cua_stream stream)
{
    ENTER(cb_of(b));
    CUresult r = api.EventRecord((CUevent)(uintptr_t)ev, (CUstream)stream);
    return r == CUDA_SUCCESS ? CUA_OK
                             : cu_fail(r, "cuEventRecord(stream %#lx)", (unsigned long)stream);
}

static cua_status cuda_event_query(cua_backend *b, cua_event ev)
{
    ENTER(cb_of(b));
    CUresult r = api.EventQuery((CUevent)(uintptr_t)ev);
    if (r == CUDA_SUCCESS) return CUA_OK;
    if (r == CUDA_ERROR_NOT_READY) return CUA_ERR_BUSY;
    return cu_fail(r, "cuEventQuery");
}

static cua_status cuda_event_sync(cua_backend *b, cua_event ev)
{
    ENTER(cb_of(b));
    CUresult r = api.EventSynchronize((CUevent)(uintptr_t)ev);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuEventSynchronize");
}

static cua_status cuda_stream_sync(cua_backend *b, cua_stream stream)
{
    ENTER(cb_of(b));
    CUresult r = api.StreamSynchronize((CUstream)stream);
    return r == CUDA_SUCCESS ? CUA_OK
                             : cu_fail(r, "cuStreamSynchronize(%#lx)", (unsigned long)stream);
}

static cua_status cuda_host_alloc(cua_backend *b, size_t size, void **out)
{
    ENTER(cb_of(b));
    CUresult r = api.MemHostAlloc(out, size, CU_MEMHOSTALLOC_PORTABLE);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemHostAlloc(%zu bytes)", size);
}

static cua_status cuda_host_free(cua_backend *b, void *p, size_t size)
{
    ENTER(cb_of(b));
    CUresult r = api.MemFreeHost(p);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemFreeHost(%zu bytes)", size);
}

static cua_status cuda_stream_create(cua_backend *b, cua_stream *out)
{
    ENTER(cb_of(b));
    CUstream s;
    CUresult r = api.StreamCreate(&s, CU_STREAM_NON_BLOCKING);
    if (r != CUDA_SUCCESS) return cu_fail(r, "cuStreamCreate");
    *out = (cua_stream)(uintptr_t)s;
    return CUA_OK;
}

static cua_status cuda_stream_destroy(cua_backend *b, cua_stream s)
{
    ENTER(cb_of(b));
    CUresult r = api.StreamDestroy((CUstream)(uintptr_t)s);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuStreamDestroy");
}

static cua_status cuda_copy_to_host(cua_backend *b, void *dst, uintptr_t src, size_t n,
                                    cua_stream s)
{
    ENTER(cb_of(b));
    CUresult r = api.MemcpyDtoHAsync(dst, (CUdeviceptr)src, n, (CUstream)(uintptr_t)s);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemcpyDtoHAsync(%zu bytes from %#lx)", n,
                                                (unsigned long)src);
}

static cua_status cuda_fill(cua_backend *b, uintptr_t addr, size_t n, unsigned char v, cua_stream s)
{
    ENTER(cb_of(b));
    CUresult r = api.MemsetD8Async((CUdeviceptr)addr, v, n, (CUstream)(uintptr_t)s);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemsetD8Async(%zu bytes at %#lx)", n, (unsigned long)addr);
}

static cua_status cuda_copy_to_device(cua_backend *b, uintptr_t dst, const void *src, size_t n,
                                      cua_stream s)
{
    ENTER(cb_of(b));
    CUresult r = api.MemcpyHtoDAsync((CUdeviceptr)dst, src, n, (CUstream)(uintptr_t)s);
    return r == CUDA_SUCCESS ? CUA_OK : cu_fail(r, "cuMemcpyHtoDAsync(%zu bytes to %#lx)", n,
                                                (unsigned long)dst);
}

static void cuda_destroy(cua_backend *b)
{
    cuda_backend *cb = cb_of(b);
    api.DevicePrimaryCtxRelease(cb->dev);
    free(cb);
}

static const cua_backend_ops cuda_ops = {
    .reserve = cuda_reserve,
    .unreserve = cuda_unreserve,
    .create = cuda_create,
    .release = cuda_release,
    .map = cuda_map,
    .unmap = cuda_unmap,
    .set_access = cuda_set_access,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .mem_info = cuda_mem_info,
    .event_create = cuda_event_create,
    .event_destroy = cuda_event_destroy,
    .event_record = cuda_event_record,
    .event_query = cuda_event_query,
    .event_sync = cuda_event_sync,
    .stream_sync = cuda_stream_sync,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .stream_create = cuda_stream_create,
    .stream_destroy = cuda_stream_destroy,
    .copy_to_host = cuda_copy_to_host,
    .copy_to_device = cuda_copy_to_device,
    .fill = cuda_fill,
    .destroy = cuda_destroy,
};

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
    cb->access.location = cb->prop.location;
    cb->access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    size_t gran = 2 * CUA_MIB, free_b = 0, total_b = 0; /* without VMM: 2 MiB segments */
    CUresult r = CUDA_SUCCESS;
    st = ensure_ctx(cb);
    if (st == CUA_OK && vmm)
        r = api.MemGetAllocationGranularity(&gran, &cb->prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
    if (st == CUA_OK && r == CUDA_SUCCESS) r = api.MemGetInfo(&free_b, &total_b);
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
    cb->base.device = device;
    cb->base.vmm = vmm;
    *out = &cb->base;
    return CUA_OK;
}
