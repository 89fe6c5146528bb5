/*
 * probe-nvtx.c - which NVTX heaps compute-sanitizer's memcheck accepts over
 * CUDA VMM memory, and which out-of-bounds writes it then reports. A probe,
 * not a test: tests/gpu/probe-nvtx.sh runs each case in a process of its own
 * under `compute-sanitizer --tool memcheck --nvtx yes` and sums up.
 *
 *   probe-nvtx CASE | --list (the cases) | --check (77: no device) | --print-ptx
 *
 * Why: src/arena/nvtx.c registers a heap (sub-allocator, virtual address) over an
 * arena's whole reservation before anything is mapped; compute-sanitizer
 * 2025.3.1 warns "Call to nvtxMemHeapRegister failed: One or more of the
 * parameters is invalid" and misses oob.c's write into a freed block. Must a
 * heap lie over memory mapped with cuMemMap, within one mapping?
 *
 * Each case reserves 64 MiB at va (page i: [va + i*page, +page), page = the
 * allocation granularity, 2 MiB typically), maps pages with a cuMemCreate +
 * cuMemMap + cuMemSetAccess each, registers heaps and regions, and has a
 * one-thread kernel store single words: inside regions first (must not be
 * reported), then outside (reported where the heap works). Each store is
 * announced as "probe-nvtx: write TAG at 0xADDR (...)", for the script to
 * match with the sanitizer's "Address 0x..." lines. Nothing is torn down at
 * the end, so that the output holds only the case's own NVTX events.
 *
 * Driver API through cudrv.h; the kernel is PTX JIT-compiled by the driver
 * (oob.c's way); nvtx3 is header-only and loads the tool named by
 * NVTX_INJECTION64_PATH (compute-sanitizer sets it) at the first NVTX call.
 * Exit status: 0 the case ran, 1 a driver failure, 2 usage, 77 no device.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic" /* cuda.h's enums, nvtx3's dlsym casts */
#include "cudrv.h"
#include <nvtx3/nvToolsExt.h>
#include <nvtx3/nvToolsExtMem.h>
#pragma GCC diagnostic pop

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define RESERVE (64 * MIB) /* the VA reservation of every case */
#define REGION (256 * KIB) /* the usual region: a block of cuarena's */
#define STRAY 0x0badf00du  /* what the kernel stores */
typedef unsigned long long ull;

/* write_word(ptr, value): *ptr = value (one 32-bit word), one thread. */
static const char ptx[] =
    ".version 8.0\n.target sm_75\n.address_size 64\n"
    ".visible .entry write_word(.param .u64 p_ptr, .param .u32 p_val)\n{\n"
    "    .reg .b32 %r<2>;\n    .reg .b64 %rd<2>;\n"
    "    ld.param.u64 %rd1, [p_ptr];\n    ld.param.u32 %r1, [p_val];\n"
    "    cvta.to.global.u64 %rd1, %rd1;\n    st.global.u32 [%rd1], %r1;\n"
    "    ret;\n}\n";

static struct {
    CUresult (*GetErrorName)(CUresult, const char **);
    CUresult (*Init)(unsigned), (*DeviceGetCount)(int *), (*DeviceGet)(CUdevice *, int);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*CtxSetCurrent)(CUcontext), (*CtxSynchronize)(void);
    CUresult (*ModuleLoadData)(CUmodule *, const void *);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, CUstream, void **, void **);
    CUresult (*MemGetAllocationGranularity)(size_t *, const CUmemAllocationProp *,
                                            CUmemAllocationGranularity_flags);
    CUresult (*MemAddressReserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, ull);
    CUresult (*MemCreate)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, ull);
    CUresult (*MemRelease)(CUmemGenericAllocationHandle), (*MemUnmap)(CUdeviceptr, size_t);
    CUresult (*MemMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, ull);
    CUresult (*MemSetAccess)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
    CUresult (*MemAlloc)(CUdeviceptr *, size_t);
} cu;

static CUdevice dev;
static CUmemAllocationProp prop; /* device memory of dev */
static CUfunction kernel;
static size_t page;                         /* the allocation granularity */
static CUdeviceptr va;                      /* the reservation's base */
static CUmemGenericAllocationHandle mem[4]; /* the physical memory mapped at page i */
static nvtxDomainHandle_t domain;

#define PAGE(i) (va + (CUdeviceptr)(i) * page)
#define VPTR(p) ((const void *)(uintptr_t)(p))

/* One line of output; the format is a literal. */
#define say(...) (printf("probe-nvtx: " __VA_ARGS__), putchar('\n'))

static const char *cu_name(CUresult r) { return cudrv_error(cu.GetErrorName, r); }

/* A driver call that must succeed: the case cannot go on without it. */
static void ck(CUresult r, const char *what)
{
    if (r == CUDA_SUCCESS) return;
    say("FAIL: %s: %s (%d)", what, cu_name(r), (int)r);
    exit(1);
}
#define CK(expr) ck((expr), #expr)

/* ---- VMM --------------------------------------------------------------------------- */

/* Page i: a physical allocation of its own, mapped and made read-write. */
static void map_page(int i)
{
    CUmemAccessDesc rw = {.location = prop.location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CK(cu.MemCreate(&mem[i], page, &prop, 0));
    CK(cu.MemMap(PAGE(i), page, 0, mem[i], 0));
    CK(cu.MemSetAccess(PAGE(i), page, &rw, 1));
    say("mapped page %d: [0x%llx, 0x%llx) (cuMemCreate + cuMemMap + cuMemSetAccess of its own)",
        i, (ull)PAGE(i), (ull)PAGE(i + 1));
}

static void unmap_page(int i)
{
    CK(cu.MemUnmap(PAGE(i), page));
    CK(cu.MemRelease(mem[i]));
    say("unmapped page %d (cuMemUnmap + cuMemRelease)", i);
}

/* ---- NVTX: the calls of src/arena/nvtx.c ------------------------------------------------- */

/* A sub-allocator heap over [base, base + size), as src/arena/nvtx.c registers an arena. */
static nvtxMemHeapHandle_t heap_register(CUdeviceptr base, size_t size, const char *name)
{
    nvtxMemVirtualRangeDesc_t range = {.size = size, .ptr = VPTR(base)};
    nvtxMemHeapDesc_t desc = {
        .extCompatID = NVTX_EXT_COMPATID_MEM, .structSize = sizeof desc,
        .usage = NVTX_MEM_HEAP_USAGE_TYPE_SUB_ALLOCATOR, .type = NVTX_MEM_TYPE_VIRTUAL_ADDRESS,
        .typeSpecificDescSize = sizeof range, .typeSpecificDesc = &range,
        .messageType = NVTX_MESSAGE_TYPE_ASCII, .message.ascii = name,
    };
    say("heap '%s': nvtxMemHeapRegister over [0x%llx, 0x%llx)", name, (ull)base, (ull)(base + size));
    nvtxMemHeapHandle_t h = nvtxMemHeapRegister(domain, &desc);
    say("heap '%s': handle %p%s", name, (void *)h, h ? "" : " (NULL, as the process-wide heap's)");
    return h;
}

/* One region [ptr, ptr + size) in heap h (NULL: the process-wide heap). */
static void region_register(nvtxMemHeapHandle_t h, CUdeviceptr ptr, size_t size)
{
    nvtxMemVirtualRangeDesc_t region = {.size = size, .ptr = VPTR(ptr)};
    nvtxMemRegionsRegisterBatch_t batch = {
        .extCompatID = NVTX_EXT_COMPATID_MEM, .structSize = sizeof batch,
        .regionType = NVTX_MEM_TYPE_VIRTUAL_ADDRESS, .heap = h, .regionCount = 1,
        .regionDescElementSize = sizeof region, .regionDescElements = &region,
    };
    say("nvtxMemRegionsRegister in heap %p%s: [0x%llx, 0x%llx), %zu KiB", (void *)h,
        h ? "" : " (process-wide)", (ull)ptr, (ull)(ptr + size), size / KIB);
    nvtxMemRegionsRegister(domain, &batch);
}

/* The region that starts at ptr now ends at ptr + size. */
static void region_resize(CUdeviceptr ptr, size_t size)
{
    nvtxMemVirtualRangeDesc_t region = {.size = size, .ptr = VPTR(ptr)};
    nvtxMemRegionsResizeBatch_t batch = {
        .extCompatID = NVTX_EXT_COMPATID_MEM, .structSize = sizeof batch,
        .regionType = NVTX_MEM_TYPE_VIRTUAL_ADDRESS, .regionDescCount = 1,
        .regionDescElementSize = sizeof region, .regionDescElements = &region,
    };
    say("nvtxMemRegionsResize: the region at 0x%llx to end at 0x%llx, %zu KiB", (ull)ptr,
        (ull)(ptr + size), size / KIB);
    nvtxMemRegionsResize(domain, &batch);
}

/* Whether the injected tool implements NVTX memory function `cbid`: nvtx3
 * keeps a table of function slots that the tool fills at the extension's
 * first call; a slot it leaves empty becomes "disabled" (a no-op). */
static const char *tool_has(int cbid)
{
    intptr_t slot = NVTX_EXT_MEM_VERSIONED_ID(nvtxExtMemSlots)[cbid + 1];
    return slot == NVTX_EXTENSION_FRESH ? "not-initialised" :
           slot == NVTX_EXTENSION_DISABLED ? "no" : "yes";
}

/* The kernel stores one word at addr; TAG names the store in the script's summary. */
static void write_word(const char *tag, CUdeviceptr addr, const char *what)
{
    say("write %s at 0x%llx (%s)", tag, (ull)addr, what);
    unsigned value = STRAY;
    void *args[] = {&addr, &value};
    CUresult r = cu.LaunchKernel(kernel, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL);
    if (r == CUDA_SUCCESS) r = cu.CtxSynchronize();
    /* Tolerated: the sanitizer may stop the kernel; the next launches still run. */
    say("write %s: %s", tag, r == CUDA_SUCCESS ? "kernel ran" : cu_name(r));
}

/* The usual pair: a region's last word (must stay unreported), then the word
 * just past its end (reported where the heap works). */
static void in_and_past(CUdeviceptr region, size_t size, const char *where)
{
    write_word("in-region", region + size - 4, where);
    write_word("past-region-end", region + size, where);
}

/* ---- the cases --------------------------------------------------------------------- */

/* 1: what src/arena/nvtx.c does now: a heap over the bare reservation. */
static void case_reserved_heap(void)
{
    nvtxMemHeapHandle_t h = heap_register(va, RESERVE, "whole-reservation");
    map_page(0);
    region_register(h, PAGE(0), REGION);
    in_and_past(PAGE(0), REGION, "page 0, mapped after the heap");
}

/* 2: one mapping, the heap over exactly it. */
static nvtxMemHeapHandle_t heap_after_map_one(void)
{
    map_page(0);
    nvtxMemHeapHandle_t h = heap_register(PAGE(0), page, "one-mapping");
    region_register(h, PAGE(0), REGION);
    in_and_past(PAGE(0), REGION, "page 0, the heap's one mapping");
    return h;
}
static void case_heap_after_map_one(void) { heap_after_map_one(); }

/* 3: two adjacent mappings (two cuMemMap), one heap over both. */
static void case_heap_over_two_maps(void)
{
    map_page(0);
    map_page(1);
    region_register(heap_register(PAGE(0), 2 * page, "two-mappings"), PAGE(1), REGION);
    in_and_past(PAGE(1), REGION, "page 1, the heap's second mapping");
    write_word("page0-no-region", PAGE(0) + 4 * KIB, "page 0: in the heap, in no region");
}

/* 4: one heap per mapping; a block across the boundary as two regions. */
static void case_heap_per_map_region_spanning(void)
{
    map_page(0);
    map_page(1);
    nvtxMemHeapHandle_t h0 = heap_register(PAGE(0), page, "mapping-0");
    nvtxMemHeapHandle_t h1 = heap_register(PAGE(1), page, "mapping-1");
    CUdeviceptr b = PAGE(1) - REGION / 2, e = PAGE(1) + REGION / 2;
    say("a block [0x%llx, 0x%llx) across 0x%llx, as two regions:", (ull)b, (ull)e, (ull)PAGE(1));
    region_register(h0, b, REGION / 2);
    region_register(h1, PAGE(1), REGION / 2);
    write_word("in-piece-1", PAGE(1) - 4, "the first piece's last word, page 0");
    write_word("in-piece-2", PAGE(1), "the second piece's first word, page 1");
    write_word("past-piece-2", e, "one word past the second piece");
    write_word("before-piece-1", b - 4, "one word before the first piece");
}

/* 5: the heap over a mapped and an unmapped page; the second mapped after. */
static void case_heap_registered_then_map_grows(void)
{
    map_page(0);
    nvtxMemHeapHandle_t h = heap_register(PAGE(0), 2 * page, "mapped-and-not");
    say("(page 1 was not mapped at the registration)");
    map_page(1);
    region_register(h, PAGE(1), REGION);
    in_and_past(PAGE(1), REGION, "page 1, mapped after the heap");
}

/* 6: no heap: the region in the process-wide heap. */
static void case_process_wide(void)
{
    map_page(0);
    region_register(NVTX_MEM_HEAP_HANDLE_PROCESS_WIDE, PAGE(0), REGION);
    in_and_past(PAGE(0), REGION, "page 0, process-wide heap");
}

/* 7: case 2, then the heap goes, the page is remapped and a heap comes again
 * (what an arena with a heap per mapping would do as it trims and grows). */
static void case_heap_unregister_remap(void)
{
    nvtxMemHeapHandle_t h = heap_after_map_one();
    say("nvtxMemHeapUnregister %p", (void *)h);
    nvtxMemHeapUnregister(domain, h);
    unmap_page(0);
    map_page(0);
    h = heap_register(PAGE(0), page, "one-mapping-again");
    region_register(h, PAGE(0), REGION / 2); /* half: the stores' addresses differ */
    write_word("again-in-region", PAGE(0) + REGION / 2 - 4, "the new region's last word");
    write_word("again-past-region-end", PAGE(0) + REGION / 2, "one word past the new region");
}

/* 8: a region grown, then shrunk, with nvtxMemRegionsResize. */
static void case_resize(void)
{
    map_page(0);
    nvtxMemHeapHandle_t h = heap_register(PAGE(0), page, "one-mapping");
    say("the tool implements nvtxMemRegionsResize: %s; nvtxMemRegionsRegister: %s",
        tool_has(NVTX3EXT_CBID_nvtxMemRegionsResize), tool_has(NVTX3EXT_CBID_nvtxMemRegionsRegister));
    region_register(h, PAGE(0), REGION / 2);
    write_word("in-region", PAGE(0) + REGION / 4 - 4, "in the region at all its sizes");
    region_resize(PAGE(0), REGION);
    write_word("in-grown-part", PAGE(0) + 3 * REGION / 4, "inside only once grown");
    write_word("past-grown-end", PAGE(0) + REGION, "one word past the grown region");
    region_resize(PAGE(0), REGION / 4);
    write_word("past-shrunk-end", PAGE(0) + 3 * REGION / 8, "inside before, past the shrunk end");
}

/* 9 (beyond the brief): the heap stays registered while its page is unmapped
 * and mapped again with new memory (an arena's trim and regrowth): does the
 * heap survive, and is a warning printed? */
static void case_heap_across_remap(void)
{
    map_page(0);
    region_register(heap_register(PAGE(0), page, "one-mapping"), PAGE(0), REGION);
    unmap_page(0);
    map_page(0);
    in_and_past(PAGE(0), REGION, "page 0, remapped under the heap");
}

/* 10: no VMM: a heap over one cuMemAlloc allocation (what NVIDIA's examples
 * do, and what an arena of whole segments registers). */
static void case_heap_over_cumemalloc(void)
{
    CUdeviceptr p = 0;
    CK(cu.MemAlloc(&p, page));
    say("cuMemAlloc: [0x%llx, 0x%llx)", (ull)p, (ull)(p + page));
    region_register(heap_register(p, page, "cumemalloc"), p, REGION);
    in_and_past(p, REGION, "a cuMemAlloc allocation");
}

static const struct { const char *name; void (*run)(void); } cases[] = {
    {"reserved-heap", case_reserved_heap},
    {"heap-after-map-one", case_heap_after_map_one},
    {"heap-over-two-maps", case_heap_over_two_maps},
    {"heap-per-map-region-spanning", case_heap_per_map_region_spanning},
    {"heap-registered-then-map-grows", case_heap_registered_then_map_grows},
    {"process-wide", case_process_wide},
    {"heap-unregister-remap", case_heap_unregister_remap},
    {"resize", case_resize},
    {"heap-across-remap", case_heap_across_remap},
    {"heap-over-cumemalloc", case_heap_over_cumemalloc},
};
#define NCASES (sizeof cases / sizeof cases[0])

/* ---- setup ------------------------------------------------------------------------- */

static void skip(const char *what, const char *why)
{
    say("skipped: no CUDA device (%s: %s)", what, why);
    exit(77);
}

/* The driver and device 0, or exit 77 with the reason. */
static void need_device(void)
{
    static const cudrv_sym syms[] = {
        CUDRV(cu, GetErrorName), CUDRV(cu, Init), CUDRV(cu, DeviceGetCount), CUDRV(cu, DeviceGet),
        CUDRV(cu, DevicePrimaryCtxRetain), CUDRV(cu, CtxSetCurrent), CUDRV(cu, CtxSynchronize),
        CUDRV(cu, ModuleLoadData), CUDRV(cu, ModuleGetFunction), CUDRV(cu, LaunchKernel),
        CUDRV(cu, MemGetAllocationGranularity), CUDRV(cu, MemAddressReserve), CUDRV(cu, MemCreate),
        CUDRV(cu, MemRelease), CUDRV(cu, MemMap), CUDRV(cu, MemUnmap), CUDRV(cu, MemSetAccess),
        CUDRV(cu, MemAlloc),
    };
    if (!dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) skip("no driver", dlerror());
    const char *missing = cudrv_load(syms, sizeof syms / sizeof syms[0]);
    if (missing) ck(CUDA_ERROR_NOT_FOUND, missing); /* a driver older than CUDA 12 */
    int n = 0;
    CUresult r = cu.Init(0);
    if (r == CUDA_SUCCESS) r = cu.DeviceGetCount(&n);
    if (r != CUDA_SUCCESS || n == 0) skip("cuInit", r != CUDA_SUCCESS ? cu_name(r) : "0 devices");
    CK(cu.DeviceGet(&dev, 0));
    prop = (CUmemAllocationProp){.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                 .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev}};
}

/* Context, kernel, granularity, reservation, then the NVTX domain: the
 * sanitizer wants a current CUDA context before the first NVTX call. */
static void setup(void)
{
    CUcontext ctx;
    CUmodule mod;
    CK(cu.DevicePrimaryCtxRetain(&ctx, dev));
    CK(cu.CtxSetCurrent(ctx));
    CK(cu.ModuleLoadData(&mod, ptx));
    CK(cu.ModuleGetFunction(&kernel, mod, "write_word"));
    CK(cu.MemGetAllocationGranularity(&page, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    if (page < 2 * REGION || page > RESERVE / 4)
        ck(CUDA_ERROR_NOT_SUPPORTED, "a granularity of 512 KiB..16 MiB (the cases' layout)");
    CK(cu.MemAddressReserve(&va, RESERVE, page, 0, 0));
    /* The sanitizer's NVTX guide: the CUDA runtime initialised before the
     * first NVTX call (cudaFree(NULL), in the current context); without it
     * every registration was refused. PROBE_NVTX_NO_RUNTIME=1 leaves it out. */
    const char *no_rt = getenv("PROBE_NVTX_NO_RUNTIME");
    bool runtime = false;
    if (!no_rt || strcmp(no_rt, "1") != 0) {
        void *rt = dlopen("libcudart.so.13", RTLD_NOW | RTLD_LOCAL);
        if (!rt) rt = dlopen("libcudart.so", RTLD_NOW | RTLD_LOCAL);
        void *sym = rt ? dlsym(rt, "cudaFree") : NULL;
        int (*cuda_free)(void *) = NULL;
        memcpy(&cuda_free, &sym, sizeof sym);
        runtime = cuda_free && cuda_free(NULL) == 0;
    }
    say("CUDA runtime initialised: %s", runtime ? "yes" : "no");
    domain = nvtxDomainCreateA("probe-nvtx");
    say("device 0; page (granularity) %zu KiB; reserved [0x%llx, 0x%llx), %zu MiB; domain %p",
        page / KIB, (ull)va, (ull)(va + RESERVE), RESERVE / MIB, (void *)domain);
}

int main(int argc, char **argv)
{
    const char *arg = argc == 2 ? argv[1] : "";
    setvbuf(stdout, NULL, _IOLBF, 0); /* in order with the sanitizer's lines */
    if (strcmp(arg, "--print-ptx") == 0) return fputs(ptx, stdout) == EOF;
    if (strcmp(arg, "--list") == 0) {
        for (size_t i = 0; i < NCASES; i++) puts(cases[i].name);
        return 0;
    }
    if (strcmp(arg, "--check") == 0) {
        need_device();
        say("a CUDA device is there");
        return 0;
    }
    size_t c = 0;
    while (c < NCASES && strcmp(arg, cases[c].name) != 0) c++;
    if (c == NCASES) {
        fprintf(stderr, "usage: probe-nvtx CASE | --list | --check | --print-ptx\n");
        return 2;
    }
    const char *inj = getenv("NVTX_INJECTION64_PATH");
    say("case %s; NVTX_INJECTION64_PATH %s", arg, inj ? inj : "is not set (NVTX calls are no-ops)");
    need_device();
    setup();
    cases[c].run();
    say("%s done", arg);
    return 0;
}
