/*
 * nvtx.c - NVTX memory-range registration (nvtx.h): one heap per segment of
 * an arena of whole segments (usage: sub-allocator), one region per live block
 * of the size asked for. The calls cost a function-pointer check when no tool is
 * injected; an arena makes them only with CUA_ARENA_NVTX.
 */
#include "arena/nvtx.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic" /* nvtx3 casts dlsym's result to functions */
#include <nvtx3/nvToolsExt.h>
#include <nvtx3/nvToolsExtMem.h>
#pragma GCC diagnostic pop

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t domain_once = PTHREAD_ONCE_INIT;
static nvtxDomainHandle_t domain;

/*
 * compute-sanitizer takes NVTX memory calls only from a process whose CUDA
 * runtime is initialised: before that it answers every heap and region
 * registration "one or more of the parameters is invalid" (seen on an H200
 * with compute-sanitizer 2025.3; its NVTX guide says so too). cuarena itself
 * uses only the driver, so where a tool is injected it initialises the
 * runtime once, the way the guide shows (cudaFree(NULL)): in the context
 * current on this thread, which the backend has just made its device's own.
 */
static void runtime_init(void)
{
    if (!getenv("NVTX_INJECTION64_PATH")) return; /* no tool listens: nothing to win */
    /* The application's runtime when it has one loaded; a second one only if not. */
    void *sym = dlsym(RTLD_DEFAULT, "cudaFree");
    static const char *const names[] = {"libcudart.so.13", "libcudart.so.12", "libcudart.so"};
    for (size_t i = 0; !sym && i < sizeof names / sizeof names[0]; i++) {
        void *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
        if (!lib) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (lib) sym = dlsym(lib, "cudaFree"); /* (it stays loaded: the runtime stays up) */
    }
    int (*cuda_free)(void *) = NULL;
    memcpy(&cuda_free, &sym, sizeof sym); /* (ISO C has no cast to a function pointer) */
    if (cuda_free) cuda_free(NULL);
}

static void domain_make(void)
{
    runtime_init();
    domain = nvtxDomainCreateA("cuarena");
}

void _cua_nvtx_open(cua_arena *a, unsigned flags)
{
    a->nvtx_on = a->seg.novmm && ((flags & CUA_ARENA_NVTX) || getenv("NVTX_INJECTION64_PATH"));
    if (!a->nvtx_on) return;
    /* Any backend call makes the arena's device current on this thread (when
     * no context is), so that the runtime starts there, not on device 0. */
    size_t free_bytes, total_bytes;
    (void)_cua_bk_mem_info(a->bk, &a->cs, &free_bytes, &total_bytes);
    pthread_once(&domain_once, domain_make);
}

void *_cua_nvtx_segment_open(const cua_arena *a, uintptr_t addr, size_t len)
{
    if (!a->nvtx_on) return NULL;
    nvtxMemVirtualRangeDesc_t range = {.size = len, .ptr = (const void *)addr};
    nvtxMemHeapDesc_t desc = {
        .extCompatID = NVTX_EXT_COMPATID_MEM,
        .structSize = sizeof desc,
        .usage = NVTX_MEM_HEAP_USAGE_TYPE_SUB_ALLOCATOR,
        .type = NVTX_MEM_TYPE_VIRTUAL_ADDRESS,
        .typeSpecificDescSize = sizeof range,
        .typeSpecificDesc = &range,
        .messageType = NVTX_MESSAGE_TYPE_ASCII,
        .message.ascii = a->name,
    };
    return (void *)nvtxMemHeapRegister(domain, &desc);
}

void _cua_nvtx_segment_close(void *heap)
{
    if (heap) nvtxMemHeapUnregister(domain, (nvtxMemHeapHandle_t)heap);
}

void _cua_nvtx_alloc(void *heap, void *ptr, size_t size)
{
    if (!heap) return;
    nvtxMemVirtualRangeDesc_t region = {.size = size, .ptr = ptr};
    nvtxMemRegionsRegisterBatch_t batch = {
        .extCompatID = NVTX_EXT_COMPATID_MEM,
        .structSize = sizeof batch,
        .regionType = NVTX_MEM_TYPE_VIRTUAL_ADDRESS,
        .heap = (nvtxMemHeapHandle_t)heap,
        .regionCount = 1,
        .regionDescElementSize = sizeof region,
        .regionDescElements = &region,
    };
    nvtxMemRegionsRegister(domain, &batch);
}

void _cua_nvtx_free(void *heap, void *ptr)
{
    if (!heap) return;
    nvtxMemRegionRef_t ref = {.pointer = ptr};
    nvtxMemRegionsUnregisterBatch_t batch = {
        .extCompatID = NVTX_EXT_COMPATID_MEM,
        .structSize = sizeof batch,
        .refType = NVTX_MEM_REGION_REF_TYPE_POINTER,
        .refCount = 1,
        .refElementSize = sizeof ref,
        .refElements = &ref,
    };
    nvtxMemRegionsUnregister(domain, &batch);
}
