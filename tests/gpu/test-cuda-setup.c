/*
 * test-cuda-setup.c - test-cuda's setup (test-cuda.c has the cases): the
 * kernel as PTX text, the driver loaded at run time as the library loads it,
 * and what every case uses, set up once: the backend, the kernel, two
 * streams, a warm-up and the baseline of the driver's free bytes; at exit
 * the teardown checks that nothing is left. Any setup failure exits 1.
 */
#include "test-cuda.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char ptx[] =
    ".version 8.0\n"
    ".target sm_75\n"
    ".address_size 64\n"
    "\n"
    "// spin_fill(ptr, nwords, cycles, value): every thread waits until clock64\n"
    "// has advanced by `cycles`, then stores `value` into its grid-stride share\n"
    "// of the nwords 32-bit words at ptr. cycles = 0 is a plain fill.\n"
    ".visible .entry spin_fill(.param .u64 p_ptr, .param .u64 p_n,\n"
    "                          .param .u64 p_cycles, .param .u32 p_val)\n"
    "{\n"
    "    .reg .pred %p<3>;\n"
    "    .reg .b32  %r<6>;\n"
    "    .reg .b64  %rd<12>;\n"
    "    ld.param.u64 %rd1, [p_ptr];\n"
    "    ld.param.u64 %rd2, [p_n];\n"
    "    ld.param.u64 %rd3, [p_cycles];\n"
    "    ld.param.u32 %r1, [p_val];\n"
    "    cvta.to.global.u64 %rd1, %rd1;\n"
    "    mov.u64 %rd4, %clock64;\n"
    "SPIN:\n"
    "    mov.u64 %rd5, %clock64;\n"
    "    sub.u64 %rd6, %rd5, %rd4;\n"
    "    setp.lt.u64 %p1, %rd6, %rd3;\n"
    "    @%p1 bra SPIN;\n"
    "    mov.u32 %r2, %ctaid.x;\n"
    "    mov.u32 %r3, %ntid.x;\n"
    "    mov.u32 %r4, %tid.x;\n"
    "    mov.u32 %r5, %nctaid.x;\n"
    "    mul.wide.u32 %rd7, %r2, %r3;\n"       /* first word: ctaid * ntid + tid */
    "    cvt.u64.u32 %rd8, %r4;\n"
    "    add.u64 %rd7, %rd7, %rd8;\n"
    "    mul.wide.u32 %rd9, %r5, %r3;\n"       /* stride: nctaid * ntid */
    "LOOP:\n"
    "    setp.ge.u64 %p2, %rd7, %rd2;\n"
    "    @%p2 bra DONE;\n"
    "    shl.b64 %rd10, %rd7, 2;\n"
    "    add.u64 %rd11, %rd1, %rd10;\n"
    "    st.global.u32 [%rd11], %r1;\n"
    "    add.u64 %rd7, %rd7, %rd9;\n"
    "    bra LOOP;\n"
    "DONE:\n"
    "    ret;\n"
    "}\n";

/* CUA_TEST_PRINT_PTX=1: print the kernel's PTX and exit (for ptxas). */
__attribute__((constructor)) static void maybe_print_ptx(void)
{
    if (!getenv("CUA_TEST_PRINT_PTX")) return;
    fputs(ptx, stdout);
    exit(0);
}

/* ---- the driver, loaded at run time --------------------------------------------------- */

cuda_driver cu;

/* The driver's entry points this program needs (tests/gpu/cudrv.h). */
static const char *load_driver(void)
{
    static const cudrv_sym syms[] = {
        CUDRV(cu, GetErrorName), CUDRV(cu, DeviceGet), CUDRV(cu, DeviceGetAttribute),
        CUDRV(cu, CtxSynchronize), CUDRV(cu, MemGetInfo), CUDRV(cu, MemsetD8Async),
        CUDRV(cu, MemsetD32Async), CUDRV(cu, MemcpyDtoH), CUDRV(cu, MemcpyHtoD),
        CUDRV(cu, StreamCreate), CUDRV(cu, StreamDestroy), CUDRV(cu, StreamQuery),
        CUDRV(cu, StreamSynchronize), CUDRV(cu, ModuleLoadData), CUDRV(cu, ModuleGetFunction),
        CUDRV(cu, ModuleUnload), CUDRV(cu, LaunchKernel),
    };
    return cudrv_load(syms, sizeof syms / sizeof syms[0]);
}

const char *cu_name(CUresult r) { return cudrv_error(cu.GetErrorName, r); }

/* ---- the shared setup: backend, kernel, streams, baseline ------------------------------ */

cua_backend *g_bk;
static CUmodule g_mod;
static CUfunction g_kernel;
CUstream g_a, g_b;
static unsigned g_grid;       /* blocks of 256 threads: two per SM, so that B's work fits */
uint64_t g_cycles;
size_t g_free0;
static cua_arena *g_arenas[64]; /* arenas of the current case, force-destroyed after a failure */
static int g_narenas;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("test-cuda: setup failed: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    exit(1);
}

#define SETUP_CU(expr)                                                                     \
    do {                                                                                   \
        CUresult r_ = (expr);                                                              \
        if (r_ != CUDA_SUCCESS) die("%s: %s", #expr, cu_name(r_));                          \
    } while (0)
#define SETUP_OK(expr)                                                                     \
    do {                                                                                   \
        cua_status s_ = (expr);                                                            \
        if (s_ != CUA_OK) die("%s: %s: %s", #expr, cua_status_name(s_), cua_last_error());  \
    } while (0)

CUresult launch(void *p, size_t words, uint64_t cycles, uint32_t value, CUstream s)
{
    CUdeviceptr ptr = (CUdeviceptr)p;
    unsigned long long n = words, c = cycles;
    unsigned v = value;
    void *args[] = {&ptr, &n, &c, &v};
    return cu.LaunchKernel(g_kernel, g_grid, 1, 1, 256, 1, 1, 0, s, args, NULL);
}

cua_status make_arena(unsigned flags, size_t limit, size_t release, cua_arena **out)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = flags & CUA_ARENA_NO_VMM ? "gpu-whole" : "gpu-vmm";
    cfg.backend = g_bk;
    cfg.flags = flags;
    cfg.limit = limit;
    cfg.release_threshold = release;
    cua_status st = cua_arena_create(&cfg, out);
    if (st == CUA_OK && g_narenas < 64) g_arenas[g_narenas++] = *out;
    return st;
}

/* After a failed case: wait for the GPU and destroy what the case left alive
 * (arenas destroyed already answer CUA_ERR_DESTROYED). Returns false when
 * something could not be released. */
bool release_leftovers(void)
{
    bool ok = true;
    CUresult r = cu.CtxSynchronize();
    if (r != CUDA_SUCCESS) {
        printf("test-cuda: cuCtxSynchronize: %s\n", cu_name(r));
        ok = false;
    }
    for (int i = 0; i < g_narenas; i++) {
        cua_status st = cua_arena_destroy(g_arenas[i], CUA_DESTROY_FORCE);
        if (st != CUA_OK && st != CUA_ERR_DESTROYED) {
            printf("test-cuda: destroying a leftover arena: %s\n", cua_last_error());
            ok = false;
        }
    }
    g_narenas = 0;
    return ok;
}

/* Once a kernel, the copies and both kinds of arena, so that whatever the
 * driver sets up on first use (lazy module loading, staging buffers) is in
 * place before the baseline is taken. */
static void warm_up(void)
{
    static uint32_t host[1024];
    for (unsigned flags = 0; flags <= CUA_ARENA_NO_VMM; flags += CUA_ARENA_NO_VMM) {
        cua_arena *a;
        void *p;
        SETUP_OK(make_arena(flags, 0, CUA_KEEP_ALL, &a));
        SETUP_OK(cua_arena_alloc(a, MiB, 0, &p));
        SETUP_CU(launch(p, MiB / 4, 0, 1, 0));
        SETUP_CU(cu.MemsetD32Async((CUdeviceptr)p, 2, MiB / 4, 0));
        SETUP_CU(cu.MemsetD8Async((CUdeviceptr)p, 3, MiB, 0));
        SETUP_CU(cu.MemcpyHtoD((CUdeviceptr)p, host, sizeof host));
        SETUP_CU(cu.MemcpyDtoH(host, (CUdeviceptr)p, sizeof host));
        SETUP_CU(cu.CtxSynchronize());
        SETUP_OK(cua_free(p));
        SETUP_OK(cua_arena_destroy(a, 0));
    }
    g_narenas = 0;
}

/* At exit: nothing may be left in the backend; it must go away cleanly. */
static void teardown(void)
{
    bool ok = release_leftovers();
    CUresult r;
    if ((r = cu.StreamDestroy(g_a)) != CUDA_SUCCESS || (r = cu.StreamDestroy(g_b)) != CUDA_SUCCESS ||
        (r = cu.ModuleUnload(g_mod)) != CUDA_SUCCESS) {
        printf("test-cuda: teardown: destroying the streams or the module: %s\n", cu_name(r));
        ok = false;
    }
    cua_status st = cua_backend_destroy(g_bk);
    if (st != CUA_OK) {
        printf("test-cuda: teardown: cua_backend_destroy: %s: %s\n", cua_status_name(st),
               cua_last_error());
        ok = false;
    }
    if (!ok) {
        printf("test-cuda: FAIL at teardown\n");
        fflush(stdout);
        _exit(1);
    }
}

void setup_once(void)
{
    cua_status st = cua_backend_cuda_create(0, &g_bk);
    if (st == CUA_ERR_NO_DEVICE || st == CUA_ERR_NOT_SUPPORTED) {
        printf("test-cuda: skipped: no CUDA device (%s)\n", cua_last_error());
        exit(77);
    }
    if (st != CUA_OK) die("cua_backend_cuda_create(0): %s: %s", cua_status_name(st), cua_last_error());
    const char *missing = load_driver();
    if (missing) die("the driver lacks %s", missing);
    /* The backend made the primary context current on this thread. */
    CUdevice dev;
    int khz = 0, sms = 0;
    SETUP_CU(cu.DeviceGet(&dev, 0));
    SETUP_CU(cu.DeviceGetAttribute(&khz, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, dev));
    SETUP_CU(cu.DeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
    g_cycles = (uint64_t)(khz > 0 ? khz : 2000000) * 300; /* 300 ms at the nominal clock */
    g_grid = 2u * (unsigned)(sms > 0 ? sms : 1);
    SETUP_CU(cu.ModuleLoadData(&g_mod, ptx));
    SETUP_CU(cu.ModuleGetFunction(&g_kernel, g_mod, "spin_fill"));
    SETUP_CU(cu.StreamCreate(&g_a, CU_STREAM_NON_BLOCKING));
    SETUP_CU(cu.StreamCreate(&g_b, CU_STREAM_NON_BLOCKING));
    warm_up();
    size_t total = 0;
    SETUP_CU(cu.MemGetInfo(&g_free0, &total));
    printf("memory: baseline %zu bytes free of %zu after context, module, streams; "
           "%d SMs, %d kHz\n", g_free0, total, sms, khz);
    atexit(teardown);
}
