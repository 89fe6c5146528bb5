/*
 * nvtx.c - NVTX memory-range registration (nvtx.h): one heap per arena over
 * its reserved range (usage: sub-allocator), one region per live block of the
 * size asked for. The calls cost a function-pointer check when no tool is
 * injected; an arena makes them only with CUA_ARENA_NVTX.
 */
#include "nvtx.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic" /* nvtx3 casts dlsym's result to functions */
#include <nvtx3/nvToolsExt.h>
#include <nvtx3/nvToolsExtMem.h>
#pragma GCC diagnostic pop

#include <pthread.h>
#include <stdlib.h>

static pthread_once_t domain_once = PTHREAD_ONCE_INIT;
static nvtxDomainHandle_t domain;

static void domain_make(void) { domain = nvtxDomainCreateA("cuarena"); }

static bool wanted(const cua_arena *a)
{
    return ((a->cfg.flags & CUA_ARENA_NVTX) || getenv("NVTX_INJECTION64_PATH")) && !a->seg.novmm;
}

void _cua_nvtx_open(cua_arena *a)
{
    if (!wanted(a)) return;
    pthread_once(&domain_once, domain_make);
    nvtxMemVirtualRangeDesc_t range = {.size = a->seg.size, .ptr = (const void *)a->seg.base};
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
    a->nvtx_heap = nvtxMemHeapRegister(domain, &desc);
}

void _cua_nvtx_close(cua_arena *a)
{
    if (!a->nvtx_heap) return;
    nvtxMemHeapUnregister(domain, (nvtxMemHeapHandle_t)a->nvtx_heap);
    a->nvtx_heap = NULL;
}

void _cua_nvtx_alloc(cua_arena *a, void *ptr, size_t size)
{
    if (!a->nvtx_heap) return;
    nvtxMemVirtualRangeDesc_t region = {.size = size, .ptr = ptr};
    nvtxMemRegionsRegisterBatch_t batch = {
        .extCompatID = NVTX_EXT_COMPATID_MEM,
        .structSize = sizeof batch,
        .regionType = NVTX_MEM_TYPE_VIRTUAL_ADDRESS,
        .heap = (nvtxMemHeapHandle_t)a->nvtx_heap,
        .regionCount = 1,
        .regionDescElementSize = sizeof region,
        .regionDescElements = &region,
    };
    nvtxMemRegionsRegister(domain, &batch);
}

void _cua_nvtx_free(cua_arena *a, void *ptr)
{
    if (!a->nvtx_heap) return;
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
