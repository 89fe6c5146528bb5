/*
 * oob.c - an out-of-bounds write into a neighbouring cuarena block, for
 * compute-sanitizer (tests/gpu/sanitizer.sh runs it).
 *
 *   oob MODE     MODE: ok | oob | oob-nonvtx
 *
 * On the CUDA backend, in an arena of 1 GiB of address space: blocks A and
 * B of 256 KiB each, B right after A (checked: B == A + 256 KiB, one 2 MiB
 * chunk holds both). Both are filled (A with 0x11111111, B with 0x22222222),
 * then B is freed: its memory stays mapped in the arena's cache, as a caching
 * allocator's free memory does. A one-thread kernel then stores 0x0BADF00D
 *   ok          into A's last word (in bounds);
 *   oob         into the word just past A's end, B's first word;
 *   oob-nonvtx  the same, in an arena without NVTX registration.
 * ok and oob use CUA_ARENA_NVTX, which makes the arena one of whole segments
 * (cuMemAlloc; compute-sanitizer refuses NVTX heaps over VMM mappings): each
 * segment is an NVTX heap of sub-allocations and each live block a region of
 * it, so memcheck (--nvtx yes) knows that B's memory is no allocation any
 * more and reports the write ("Invalid __global__ write of size 4 bytes").
 * oob-nonvtx (a VMM arena) shows what the registration buys: to the driver
 * the address is mapped memory, so the write is not reported and lands
 * silently. (The library also registers arenas of whole segments without the
 * flag when NVTX_INJECTION64_PATH is set, as a tool that injects NVTX sets
 * it; oob-nonvtx unsets it first.)
 *
 * Then a block of 256 KiB is allocated again; it takes B's place (the first
 * fit), and its first word is printed: 0x22222222 after ok, 0x0BADF00D where
 * the stray write landed. A write into a *live* neighbour cannot be caught by
 * an address-based checker: its address belongs to a valid allocation.
 *
 * The kernel is PTX text JIT-compiled by the driver (no nvcc needed);
 * `oob --print-ptx` prints it for ptxas. Exit status: 0 the steps ran (in oob
 * mode a failed launch or synchronisation is reported and tolerated: the
 * sanitizer may stop the kernel), 1 a setup or driver failure, 77 no CUDA
 * device, 2 bad usage.
 */
#include "cuarena.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include "cudrv.h"
#pragma GCC diagnostic pop

#define BLOCK ((size_t)256 << 10)
#define WORDS (BLOCK / 4)
#define FILL_A 0x11111111u
#define FILL_B 0x22222222u
#define STRAY 0x0badf00du

static const char ptx[] =
    ".version 8.0\n"
    ".target sm_75\n"
    ".address_size 64\n"
    "\n"
    "// write_word(ptr, index, value): ptr[index] = value (32-bit words), one thread.\n"
    ".visible .entry write_word(.param .u64 p_ptr, .param .u64 p_index, .param .u32 p_val)\n"
    "{\n"
    "    .reg .b32  %r<2>;\n"
    "    .reg .b64  %rd<5>;\n"
    "    ld.param.u64 %rd1, [p_ptr];\n"
    "    ld.param.u64 %rd2, [p_index];\n"
    "    ld.param.u32 %r1, [p_val];\n"
    "    cvta.to.global.u64 %rd1, %rd1;\n"
    "    shl.b64 %rd3, %rd2, 2;\n"
    "    add.u64 %rd4, %rd1, %rd3;\n"
    "    st.global.u32 [%rd4], %r1;\n"
    "    ret;\n"
    "}\n";

static struct {
    CUresult (*GetErrorName)(CUresult, const char **);
    CUresult (*CtxSynchronize)(void);
    CUresult (*MemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*ModuleLoadData)(CUmodule *, const void *);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*ModuleUnload)(CUmodule);
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **);
} cu;

/* The driver's entry points this program needs (tests/gpu/cudrv.h). */
static const char *load_driver(void)
{
    static const cudrv_sym syms[] = {
        CUDRV(cu, GetErrorName), CUDRV(cu, CtxSynchronize), CUDRV(cu, MemsetD32Async),
        CUDRV(cu, MemcpyDtoH), CUDRV(cu, ModuleLoadData), CUDRV(cu, ModuleGetFunction),
        CUDRV(cu, ModuleUnload), CUDRV(cu, LaunchKernel),
    };
    return cudrv_load(syms, sizeof syms / sizeof syms[0]);
}

static const char *cu_name(CUresult r) { return cudrv_error(cu.GetErrorName, r); }

#define DIE_CU(expr)                                                                       \
    do {                                                                                   \
        CUresult r_ = (expr);                                                              \
        if (r_ != CUDA_SUCCESS) {                                                          \
            printf("oob: FAIL: %s: %s (%d)\n", #expr, cu_name(r_), (int)r_);               \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)
#define DIE_OK(expr)                                                                       \
    do {                                                                                   \
        cua_status s_ = (expr);                                                            \
        if (s_ != CUA_OK) {                                                                \
            printf("oob: FAIL: %s: %s: %s\n", #expr, cua_status_name(s_), cua_last_error()); \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

int main(int argc, char **argv)
{
    const char *mode = argc == 2 ? argv[1] : "";
    if (strcmp(mode, "--print-ptx") == 0) {
        fputs(ptx, stdout);
        return 0;
    }
    bool ok = strcmp(mode, "ok") == 0, nonvtx = strcmp(mode, "oob-nonvtx") == 0;
    if (!ok && !nonvtx && strcmp(mode, "oob") != 0) {
        fprintf(stderr, "usage: oob ok|oob|oob-nonvtx  (or --print-ptx)\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *inj = getenv("NVTX_INJECTION64_PATH");
    printf("oob: mode %s; NVTX_INJECTION64_PATH %s\n", mode, inj ? "is set (a tool injects NVTX)" : "is not set");
    if (nonvtx && inj) unsetenv("NVTX_INJECTION64_PATH"); /* else the library registers anyway */

    cua_backend *bk;
    cua_status st = cua_backend_cuda_create(0, &bk);
    if (st == CUA_ERR_NO_DEVICE || st == CUA_ERR_NOT_SUPPORTED) {
        printf("oob: skipped: no CUDA device (%s)\n", cua_last_error());
        return 77;
    }
    DIE_OK(st);
    const char *missing = load_driver();
    if (missing) {
        printf("oob: FAIL: the driver lacks %s\n", missing);
        return 1;
    }
    CUmodule mod;
    CUfunction fn;
    DIE_CU(cu.ModuleLoadData(&mod, ptx)); /* the backend made the primary context current */
    DIE_CU(cu.ModuleGetFunction(&fn, mod, "write_word"));

    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = nonvtx ? "oob-plain" : "oob-nvtx";
    cfg.backend = bk;
    cfg.va_size = (size_t)1 << 30; /* small: the sanitizer tracks the whole reservation */
    cfg.flags = nonvtx ? 0 : CUA_ARENA_NVTX;
    cua_arena *arena;
    void *a, *b, *b2;
    DIE_OK(cua_arena_create(&cfg, &arena));
    DIE_OK(cua_arena_alloc(arena, BLOCK, 0, &a));
    DIE_OK(cua_arena_alloc(arena, BLOCK, 0, &b));
    printf("oob: arena '%s' (NVTX registration %s): A %p, B %p, B - A = %td bytes\n", cfg.name,
           nonvtx ? "off" : "on", a, b, (char *)b - (char *)a);
    if ((char *)b != (char *)a + BLOCK) {
        printf("oob: FAIL: A and B are not neighbours (B should start at A + %zu)\n", BLOCK);
        return 1;
    }
    DIE_CU(cu.MemsetD32Async((CUdeviceptr)a, FILL_A, WORDS, 0));
    DIE_CU(cu.MemsetD32Async((CUdeviceptr)b, FILL_B, WORDS, 0));
    DIE_CU(cu.CtxSynchronize());
    DIE_OK(cua_free(b)); /* B's memory stays mapped: A lives on the same chunk */

    CUdeviceptr ptr = (CUdeviceptr)a;
    unsigned long long index = ok ? WORDS - 1 : WORDS;
    unsigned value = STRAY;
    void *args[] = {&ptr, &index, &value};
    printf("oob: kernel writes %#x to A[%llu] at %p (%s)\n", value, index,
           (void *)((char *)a + index * 4), ok ? "A's last word, in bounds" : "one past A's end: B's first word");
    CUresult lr = cu.LaunchKernel(fn, 1, 1, 1, 1, 1, 1, 0, 0, args, NULL);
    CUresult sr = lr == CUDA_SUCCESS ? cu.CtxSynchronize() : lr;
    if (sr != CUDA_SUCCESS) {
        printf("oob: the kernel's launch or synchronisation answered %s\n", cu_name(sr));
        if (ok || nonvtx) return 1;
        printf("oob: (tolerated in oob mode: the sanitizer may stop the kernel)\n");
    }

    /* A block of B's size again: the first fit is B's place. */
    DIE_OK(cua_arena_alloc(arena, BLOCK, 0, &b2));
    uint32_t word = 0, last_a = 0;
    DIE_CU(cu.MemcpyDtoH(&word, (CUdeviceptr)b2, 4));
    DIE_CU(cu.MemcpyDtoH(&last_a, (CUdeviceptr)a + (WORDS - 1) * 4, 4));
    if (b2 == b)
        printf("oob: B's memory, allocated again at %p: first word %#010x (%s)\n", b2, word,
               word == STRAY ? "the stray write landed in it" :
               word == FILL_B ? "unchanged" : "neither B's fill nor the stray value");
    else
        printf("oob: the new block is at %p, not at B's place %p: first word %#010x\n", b2, b, word);
    printf("oob: A's last word %#010x\n", last_a);
    DIE_OK(cua_free(b2));
    DIE_OK(cua_free(a));
    DIE_OK(cua_arena_check(arena));
    DIE_OK(cua_arena_destroy(arena, 0));
    DIE_CU(cu.ModuleUnload(mod));
    DIE_OK(cua_backend_destroy(bk));
    printf("oob: %s done\n", mode);
    return 0;
}
