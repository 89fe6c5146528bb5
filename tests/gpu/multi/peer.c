/*
 * peer.c - peer access on two real GPUs: a kernel on GPU 1 reads cuarena
 * blocks of GPU 0 (and GPU 0 reads GPU 1's) after access was granted, and
 * checks every word.
 *
 *   grant_later     an arena of device 0, a block written from the host, then
 *                   cua_arena_grant_peer(a, 1): GPU 1 copies the block into a
 *                   block of a device-1 arena; the copy must equal the pattern
 *   later_mappings  a block mapped after the grant (new handles) is readable too
 *   trim_regrow     trim, then regrow at the same addresses: still readable
 *   offload_restore offload + restore: same addresses, same data, still readable
 *   at_creation     an arena of device 1 created with peers = CUA_PEER(0):
 *                   GPU 0 reads it
 *   whole_segments  CUA_ARENA_NO_VMM on device 0 with peers 1
 *                   (cuCtxEnablePeerAccess): GPU 1 reads it
 *   other_context   with GPU 1's context current on the thread, a device-0
 *                   arena of whole segments allocates: the pointer is device
 *                   0's (cuPointerGetAttribute), not GPU 1's
 *   baseline        after destroying everything, each device's driver free
 *                   memory is back where it was (to 2 MiB: context growth)
 *
 * Build (no nvcc: the kernel is PTX text JIT-compiled by the driver):
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -Iinclude -I/usr/local/cuda/include \
 *       tests/gpu/multi/peer.c -Lbuild-gpu -lcuarena -Wl,-rpath,$PWD/build-gpu -ldl -o peer
 * Exit status: 0 passed, 1 failed, 77 skipped (fewer than 2 GPUs, or no P2P
 * between GPU 0 and GPU 1: then cuarena's refusal is what is checked).
 * CUA_TEST_PRINT_PTX=1 prints the kernel (for ptxas -arch=sm_90).
 */
#include "cuarena.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <cuda.h>
#pragma GCC diagnostic pop

#define MiB ((size_t)1 << 20)

static const char ptx[] =
    ".version 8.0\n"
    ".target sm_75\n"
    ".address_size 64\n"
    "\n"
    "// copy_words(src, dst, n): dst[i] = src[i] for the n 32-bit words, grid-stride.\n"
    ".visible .entry copy_words(.param .u64 p_src, .param .u64 p_dst, .param .u64 p_n)\n"
    "{\n"
    "    .reg .pred %p<2>;\n"
    "    .reg .b32  %r<6>;\n"
    "    .reg .b64  %rd<12>;\n"
    "    ld.param.u64 %rd1, [p_src];\n"
    "    ld.param.u64 %rd2, [p_dst];\n"
    "    ld.param.u64 %rd3, [p_n];\n"
    "    cvta.to.global.u64 %rd1, %rd1;\n"
    "    cvta.to.global.u64 %rd2, %rd2;\n"
    "    mov.u32 %r1, %ctaid.x;\n"
    "    mov.u32 %r2, %ntid.x;\n"
    "    mov.u32 %r3, %tid.x;\n"
    "    mov.u32 %r4, %nctaid.x;\n"
    "    mul.wide.u32 %rd4, %r1, %r2;\n"
    "    cvt.u64.u32 %rd5, %r3;\n"
    "    add.u64 %rd4, %rd4, %rd5;\n"
    "    mul.wide.u32 %rd6, %r4, %r2;\n"
    "LOOP:\n"
    "    setp.ge.u64 %p1, %rd4, %rd3;\n"
    "    @%p1 bra DONE;\n"
    "    shl.b64 %rd7, %rd4, 2;\n"
    "    add.u64 %rd8, %rd1, %rd7;\n"
    "    add.u64 %rd9, %rd2, %rd7;\n"
    "    ld.global.u32 %r5, [%rd8];\n"
    "    st.global.u32 [%rd9], %r5;\n"
    "    add.u64 %rd4, %rd4, %rd6;\n"
    "    bra LOOP;\n"
    "DONE:\n"
    "    ret;\n"
    "}\n";

static struct {
    CUresult (*GetErrorName)(CUresult, const char **);
    CUresult (*DeviceGetCount)(int *);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceCanAccessPeer)(int *, CUdevice, CUdevice);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*DevicePrimaryCtxRelease)(CUdevice);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*CtxSynchronize)(void);
    CUresult (*MemGetInfo)(size_t *, size_t *);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*PointerGetAttribute)(void *, CUpointer_attribute, CUdeviceptr);
    CUresult (*ModuleLoadData)(CUmodule *, const void *);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*ModuleUnload)(CUmodule);
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **);
} cu;

typedef CUresult (*getproc_fn)(const char *, void **, int, cuuint64_t,
                               CUdriverProcAddressQueryResult *);

static const char *load_driver(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    getproc_fn gp = lib ? (getproc_fn)(uintptr_t)dlsym(lib, "cuGetProcAddress_v2") : NULL;
    if (!gp) return "libcuda.so.1 or its cuGetProcAddress_v2";
#define E(f) {"cu" #f, (void **)&cu.f}
    static const struct { const char *name; void **fn; } e[] = {
        E(GetErrorName), E(DeviceGetCount), E(DeviceGet), E(DeviceCanAccessPeer),
        E(DevicePrimaryCtxRetain), E(DevicePrimaryCtxRelease), E(CtxSetCurrent),
        E(CtxSynchronize), E(MemGetInfo), E(MemcpyDtoH), E(MemcpyHtoD), E(PointerGetAttribute),
        E(ModuleLoadData), E(ModuleGetFunction), E(ModuleUnload), E(LaunchKernel),
    };
#undef E
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        CUdriverProcAddressQueryResult found;
        if (gp(e[i].name, e[i].fn, 12000, CU_GET_PROC_ADDRESS_DEFAULT, &found) != CUDA_SUCCESS ||
            !*e[i].fn)
            return e[i].name;
    }
    return NULL;
}

static int failures;

static const char *cu_name(CUresult r)
{
    const char *s = NULL;
    return cu.GetErrorName && cu.GetErrorName(r, &s) == CUDA_SUCCESS && s ? s : "?";
}

#define DIE(...)                                                                           \
    do {                                                                                   \
        printf("peer: FAIL: " __VA_ARGS__);                                                \
        printf("\n");                                                                      \
        exit(1);                                                                           \
    } while (0)
#define CU(expr)                                                                           \
    do {                                                                                   \
        CUresult r_ = (expr);                                                              \
        if (r_ != CUDA_SUCCESS) DIE("%s:%d: %s: %s", __FILE__, __LINE__, #expr, cu_name(r_)); \
    } while (0)
#define OK(expr)                                                                           \
    do {                                                                                   \
        cua_status s_ = (expr);                                                            \
        if (s_ != CUA_OK)                                                                  \
            DIE("%s:%d: %s: %s: %s", __FILE__, __LINE__, #expr, cua_status_name(s_),       \
                cua_last_error());                                                         \
    } while (0)

static CUcontext ctx[2];
static CUfunction copy_fn[2];
static CUmodule mod[2];
static cua_backend *bk[2];

static uint32_t pattern(size_t i, uint32_t seed) { return (uint32_t)(i * 2654435761u) ^ seed; }

static void write_pattern(int dev, void *p, size_t bytes, uint32_t seed)
{
    size_t n = bytes / 4;
    uint32_t *h = malloc(bytes);
    if (!h) DIE("no host memory");
    for (size_t i = 0; i < n; i++) h[i] = pattern(i, seed);
    CU(cu.CtxSetCurrent(ctx[dev]));
    CU(cu.MemcpyHtoD((CUdeviceptr)p, h, bytes));
    free(h);
}

/* A kernel on GPU `reader` copies `bytes` at src (another GPU's block) into
 * dst (a block of the reader's), then the host checks dst word by word. */
static void check_read(const char *name, int reader, const void *src, void *dst, size_t bytes,
                       uint32_t seed)
{
    CUdeviceptr s = (CUdeviceptr)src, d = (CUdeviceptr)dst;
    unsigned long long n = bytes / 4;
    void *args[] = {&s, &d, &n};
    CU(cu.CtxSetCurrent(ctx[reader]));
    CU(cu.LaunchKernel(copy_fn[reader], 264, 1, 1, 256, 1, 1, 0, NULL, args, NULL));
    CUresult r = cu.CtxSynchronize();
    if (r != CUDA_SUCCESS)
        DIE("%s: the kernel on GPU %d reading GPU %d's block failed: %s (no access?)", name,
            reader, 1 - reader, cu_name(r));
    uint32_t *h = malloc(bytes);
    if (!h) DIE("no host memory");
    CU(cu.MemcpyDtoH(h, d, bytes));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (h[i] != pattern(i, seed) && !bad++) first = i;
    free(h);
    if (bad) {
        printf("peer: FAIL %s: %zu of %llu words differ, first at %zu\n", name, bad, n, first);
        failures++;
    } else {
        printf("peer: ok   %s (GPU %d read %zu MiB of GPU %d's arena)\n", name, reader,
               bytes / MiB, 1 - reader);
    }
}

static cua_arena *arena(int dev, const char *name, uint64_t peers, unsigned flags)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = name;
    cfg.backend = bk[dev];
    cfg.device = dev;
    cfg.peers = peers;
    cfg.flags = flags | CUA_ARENA_CHECK_ALWAYS;
    cua_arena *a = NULL;
    OK(cua_arena_create(&cfg, &a));
    return a;
}

static size_t driver_free(int dev)
{
    size_t fr = 0, tot = 0;
    CU(cu.CtxSetCurrent(ctx[dev]));
    CU(cu.CtxSynchronize());
    CU(cu.MemGetInfo(&fr, &tot));
    return fr;
}

int main(void)
{
    if (getenv("CUA_TEST_PRINT_PTX")) {
        fputs(ptx, stdout);
        return 0;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *missing = load_driver();
    if (missing) {
        printf("peer: skipped: no CUDA driver (%s)\n", missing);
        return 77;
    }
    int count = 0;
    if (cu.DeviceGetCount(&count) != CUDA_SUCCESS || count < 2) {
        printf("peer: skipped: needs 2 GPUs, found %d\n", count);
        return 77;
    }
    CUdevice dev[2];
    for (int d = 0; d < 2; d++) {
        CU(cu.DeviceGet(&dev[d], d));
        OK(cua_backend_cuda_create(d, &bk[d]));
        CU(cu.DevicePrimaryCtxRetain(&ctx[d], dev[d]));
        CU(cu.CtxSetCurrent(ctx[d]));
        CU(cu.ModuleLoadData(&mod[d], ptx));
        CU(cu.ModuleGetFunction(&copy_fn[d], mod[d], "copy_words"));
    }
    int can10 = 0, can01 = 0;
    CU(cu.DeviceCanAccessPeer(&can10, dev[1], dev[0]));
    CU(cu.DeviceCanAccessPeer(&can01, dev[0], dev[1]));
    size_t base[2] = {driver_free(0), driver_free(1)};

    if (!can10 || !can01) {
        /* No P2P: cuarena must refuse, with a message, and change nothing. */
        cua_arena *a = arena(0, "nop2p", 0, 0);
        cua_status st = cua_arena_grant_peer(a, 1);
        if (st != CUA_ERR_NOT_SUPPORTED) DIE("grant without P2P: %s", cua_status_name(st));
        printf("peer: ok   refused without P2P: %s\n", cua_last_error());
        OK(cua_arena_destroy(a, 0));
        printf("peer: skipped: GPU 0 and GPU 1 have no peer access (cuDeviceCanAccessPeer "
               "%d/%d)\n", can10, can01);
        return 77;
    }

    const size_t big = 64 * MiB;
    cua_arena *a0 = arena(0, "gpu0", 0, 0), *a1 = arena(1, "gpu1-dst", 0, 0);
    void *src, *dst, *src2;
    OK(cua_arena_alloc(a0, big, 0, &src));
    OK(cua_arena_alloc(a1, big, 0, &dst));
    write_pattern(0, src, big, 0x1111);
    OK(cua_arena_grant_peer(a0, 1));
    check_read("grant_later", 1, src, dst, big, 0x1111);

    OK(cua_arena_alloc(a0, 24 * MiB, 0, &src2)); /* new handles after the grant */
    write_pattern(0, src2, 24 * MiB, 0x2222);
    check_read("later_mappings", 1, src2, dst, 24 * MiB, 0x2222);

    OK(cua_free(src2));
    size_t released = 0;
    OK(cua_arena_trim(a0, 0, &released));
    if (released == 0) DIE("trim_regrow: the trim released nothing");
    void *again;
    OK(cua_arena_alloc(a0, 24 * MiB, 0, &again));
    write_pattern(0, again, 24 * MiB, 0x3333);
    check_read("trim_regrow", 1, again, dst, 24 * MiB, 0x3333);
    OK(cua_free(again));

    OK(cua_arena_offload(a0));
    OK(cua_arena_restore(a0));
    check_read("offload_restore", 1, src, dst, big, 0x1111);

    cua_arena *b1 = arena(1, "gpu1-peers0", CUA_PEER(0), 0), *b0 = arena(0, "gpu0-dst", 0, 0);
    void *s1, *d0;
    OK(cua_arena_alloc(b1, 16 * MiB, 0, &s1));
    OK(cua_arena_alloc(b0, 16 * MiB, 0, &d0));
    write_pattern(1, s1, 16 * MiB, 0x4444);
    check_read("at_creation", 0, s1, d0, 16 * MiB, 0x4444);

    cua_arena *w0 = arena(0, "gpu0-whole", CUA_PEER(1), CUA_ARENA_NO_VMM);
    void *ws;
    OK(cua_arena_alloc(w0, 8 * MiB, 0, &ws));
    write_pattern(0, ws, 8 * MiB, 0x5555);
    check_read("whole_segments", 1, ws, dst, 8 * MiB, 0x5555);

    /* GPU 1's context current; a device-0 arena of whole segments allocates. */
    CU(cu.CtxSetCurrent(ctx[1]));
    void *wx;
    OK(cua_arena_alloc(w0, 6 * MiB, 0, &wx));
    int ord = -1;
    CU(cu.PointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, (CUdeviceptr)wx));
    if (ord != 0) {
        printf("peer: FAIL other_context: a device-0 block landed on GPU %d\n", ord);
        failures++;
    } else {
        printf("peer: ok   other_context (device 0's memory with GPU 1's context current)\n");
    }
    OK(cua_free(wx));

    OK(cua_free(ws));
    OK(cua_free(s1));
    OK(cua_free(d0));
    OK(cua_free(src));
    OK(cua_free(dst));
    cua_arena *all[] = {a0, a1, b0, b1, w0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) OK(cua_arena_destroy(all[i], 0));
    for (int d = 0; d < 2; d++) {
        size_t now = driver_free(d);
        if (now + 2 * MiB < base[d]) {
            printf("peer: FAIL baseline: GPU %d has %zu MiB less free than before\n", d,
                   (base[d] - now) / MiB);
            failures++;
        }
    }
    if (!failures) printf("peer: ok   baseline (both GPUs' free memory is back)\n");
    for (int d = 0; d < 2; d++) {
        CU(cu.CtxSetCurrent(ctx[d]));
        CU(cu.ModuleUnload(mod[d]));
    }
    for (int d = 0; d < 2; d++) OK(cua_backend_destroy(bk[d]));
    for (int d = 0; d < 2; d++) cu.DevicePrimaryCtxRelease(dev[d]);
    printf("peer: %s\n", failures ? "FAIL" : "all passed");
    return failures ? 1 : 0;
}
