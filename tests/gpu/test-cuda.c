/*
 * test-cuda.c - the CUDA backend on a real GPU. Every case runs twice: with
 * expandable VMM segments, and with whole segments from cuMemAlloc
 * (CUA_ARENA_NO_VMM, the fallback). Each ends with the driver's free memory
 * back at the baseline taken after the context was set up, to the byte.
 *
 *   data_integrity  data written by the GPU into every live block reads back
 *                   intact while neighbours are allocated, freed, split,
 *                   coalesced and trimmed; the checker after every step
 *   cross_stream    a long kernel on stream A writes a block freed on A: a
 *                   request on stream B does not get it while A runs (a
 *                   checksum of B's data shows any overlap); the control
 *                   case shows the checksum does catch such a race
 *   record_stream   a block used by a kernel on B (cua_record_stream) is not
 *                   handed out on A until B's kernel is done
 *   trim_destroy    cuMemGetInfo's free bytes rise by exactly what trim says
 *                   it released; after destroy they equal the baseline
 *   limit_release   a limit fails with CUA_ERR_LIMIT; release threshold 0
 *                   gives every page back at the free
 *   fast_path       a warm arena makes no driver call on alloc and free
 *   out_of_memory   filling the GPU ends in CUA_ERR_OUT_OF_MEMORY with a
 *                   report of what the driver has free; everything comes back
 *
 * The driver is reached like the library reaches it (dlopen + cuGetProcAddress),
 * so the test builds and links without one; without a GPU it exits 77
 * (skipped). The kernel is PTX text, JIT-compiled by the driver (no nvcc at
 * build time); check it with `ptxas -arch=sm_90` after changing it.
 */
#include "test.h"

#include <dlfcn.h>
#include <stdbool.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <cuda.h>
#pragma GCC diagnostic pop

#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

static const char ptx[] =
    ".version 8.0\n.target sm_75\n.address_size 64\n"
    /* spin_fill(ptr, nwords, cycles, value): every thread waits `cycles` clocks,
     * then writes `value` over its grid-stride share of the words. */
    ".visible .entry spin_fill(.param .u64 p_ptr, .param .u64 p_n, .param .u64 p_cycles,"
    " .param .u32 p_val)\n{\n"
    ".reg .pred %p<3>;\n.reg .b32 %r<6>;\n.reg .b64 %rd<12>;\n"
    "ld.param.u64 %rd1, [p_ptr];\nld.param.u64 %rd2, [p_n];\n"
    "ld.param.u64 %rd3, [p_cycles];\nld.param.u32 %r1, [p_val];\n"
    "cvta.to.global.u64 %rd1, %rd1;\nmov.u64 %rd4, %clock64;\n"
    "SPIN:\nmov.u64 %rd5, %clock64;\nsub.u64 %rd6, %rd5, %rd4;\n"
    "setp.lt.u64 %p1, %rd6, %rd3;\n@%p1 bra SPIN;\n"
    "mov.u32 %r2, %ctaid.x;\nmov.u32 %r3, %ntid.x;\nmov.u32 %r4, %tid.x;\n"
    "mov.u32 %r5, %nctaid.x;\nmul.wide.u32 %rd7, %r2, %r3;\ncvt.u64.u32 %rd8, %r4;\n"
    "add.u64 %rd7, %rd7, %rd8;\nmul.wide.u32 %rd9, %r5, %r3;\n"
    "LOOP:\nsetp.ge.u64 %p2, %rd7, %rd2;\n@%p2 bra DONE;\nshl.b64 %rd10, %rd7, 2;\n"
    "add.u64 %rd11, %rd1, %rd10;\nst.global.u32 [%rd11], %r1;\nadd.u64 %rd7, %rd7, %rd9;\n"
    "bra LOOP;\nDONE:\nret;\n}\n";

/* ---- the driver, loaded at run time ---------------------------------------------- */

static struct {
    CUresult (*MemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*StreamCreate)(CUstream *, unsigned);
    CUresult (*StreamSynchronize)(CUstream);
    CUresult (*StreamQuery)(CUstream);
    CUresult (*CtxSynchronize)(void);
    CUresult (*MemGetInfo)(size_t *, size_t *);
    CUresult (*ModuleLoadData)(CUmodule *, const void *);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceGetAttribute)(int *, CUdevice_attribute, CUdevice);
} cu;

typedef CUresult (*getproc_fn)(const char *, void **, int, cuuint64_t,
                               CUdriverProcAddressQueryResult *);

static cua_backend *g_bk;
static CUfunction g_spin;
static CUstream g_a, g_b;
static size_t g_free0;      /* driver free bytes with no arena alive */
static uint64_t g_cycles;   /* clocks of a ~300 ms spin */

static bool load_driver(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    getproc_fn gp = lib ? (getproc_fn)(uintptr_t)dlsym(lib, "cuGetProcAddress_v2") : NULL;
    if (!gp) return false;
    static const struct { const char *name; void **fn; } e[] = {
        {"cuMemsetD32Async", (void **)&cu.MemsetD32Async}, {"cuMemcpyDtoH", (void **)&cu.MemcpyDtoH},
        {"cuStreamCreate", (void **)&cu.StreamCreate},
        {"cuStreamSynchronize", (void **)&cu.StreamSynchronize},
        {"cuStreamQuery", (void **)&cu.StreamQuery}, {"cuCtxSynchronize", (void **)&cu.CtxSynchronize},
        {"cuMemGetInfo", (void **)&cu.MemGetInfo}, {"cuModuleLoadData", (void **)&cu.ModuleLoadData},
        {"cuModuleGetFunction", (void **)&cu.ModuleGetFunction},
        {"cuLaunchKernel", (void **)&cu.LaunchKernel}, {"cuDeviceGet", (void **)&cu.DeviceGet},
        {"cuDeviceGetAttribute", (void **)&cu.DeviceGetAttribute},
    };
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++) {
        CUdriverProcAddressQueryResult found;
        if (gp(e[i].name, e[i].fn, 12000, CU_GET_PROC_ADDRESS_DEFAULT, &found) != CUDA_SUCCESS ||
            !*e[i].fn)
            return false;
    }
    return true;
}

static size_t free_now(void)
{
    size_t fr = 0, tot = 0;
    cu.CtxSynchronize();
    cu.MemGetInfo(&fr, &tot);
    return fr;
}

static cua_status make_arena(unsigned flags, size_t limit, size_t release, cua_arena **out)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = flags & CUA_ARENA_NO_VMM ? "gpu-whole" : "gpu-vmm";
    cfg.backend = g_bk;
    cfg.flags = flags;
    cfg.limit = limit;
    cfg.release_threshold = release;
    return cua_arena_create(&cfg, out);
}

/* Both kinds of arena once, so that whatever the driver sets up on first use
 * is in place before the baseline is taken. */
static bool warm_up(void)
{
    for (unsigned flags = 0; flags <= CUA_ARENA_NO_VMM; flags += CUA_ARENA_NO_VMM) {
        cua_arena *a;
        void *p;
        if (make_arena(flags, 0, CUA_KEEP_ALL, &a) || cua_arena_alloc(a, MiB, 0, &p) ||
            cu.MemsetD32Async((CUdeviceptr)p, 1, MiB / 4, 0) || cua_free(p) ||
            cua_arena_destroy(a, 0))
            return false;
    }
    return true;
}

/* Once: the backend (it makes the primary context current), the kernel, two
 * streams, the baseline. No GPU: say so and exit 77. */
static void gpu(void)
{
    if (g_bk) return;
    cua_status st = cua_backend_cuda_create(0, &g_bk);
    if (st != CUA_OK || !load_driver()) {
        printf("test-cuda: skipped: no CUDA device (%s)\n",
               st != CUA_OK ? cua_last_error() : "the driver lacks an entry point");
        exit(77);
    }
    CUmodule mod;
    CUdevice dev;
    int khz = 0;
    if (cu.ModuleLoadData(&mod, ptx) || cu.ModuleGetFunction(&g_spin, mod, "spin_fill") ||
        cu.StreamCreate(&g_a, CU_STREAM_NON_BLOCKING) ||
        cu.StreamCreate(&g_b, CU_STREAM_NON_BLOCKING) || cu.DeviceGet(&dev, 0) ||
        cu.DeviceGetAttribute(&khz, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, dev) || !warm_up()) {
        printf("test-cuda: setting up the GPU failed: %s\n", cua_last_error());
        exit(1);
    }
    g_cycles = (uint64_t)khz * 300; /* 300 ms at the nominal clock */
    g_free0 = free_now();
    printf("memory: baseline %zu bytes free after context, module and streams\n", g_free0);
}

/* Launch spin_fill over n words at p on stream s. */
static CUresult spin_fill(void *p, size_t words, uint64_t cycles, unsigned value, CUstream s)
{
    CUdeviceptr ptr = (CUdeviceptr)p;
    unsigned long long n = words, c = cycles;
    void *args[] = {&ptr, &n, &c, &value};
    return cu.LaunchKernel(g_spin, 264, 1, 1, 256, 1, 1, 0, s, args, NULL);
}

/* Words of p (n of them) that are not `value`, reading at most `cap` words
 * from the start plus the last one. */
static size_t count_bad(const void *p, size_t n, unsigned value, size_t cap)
{
    static unsigned buf[2u << 20]; /* 8 MiB: the largest block read whole */
    size_t m = n < cap ? n : cap, bad = 0;
    if (m > sizeof buf / sizeof buf[0]) m = sizeof buf / sizeof buf[0];
    if (cu.MemcpyDtoH(buf, (CUdeviceptr)p, m * 4)) return n;
    for (size_t i = 0; i < m; i++) bad += buf[i] != value;
    if (cu.MemcpyDtoH(buf, (CUdeviceptr)p + (n - 1) * 4, 4)) return n;
    return bad + (buf[0] != value);
}

/* ---- cases ---------------------------------------------------------------------------- */

typedef struct blk { void *p; size_t size; unsigned value; } blk;

static size_t pick_size(uint64_t *rng)
{
    uint64_t r = test_rand(rng) % 100;
    if (r < 70) return 512 + test_rand(rng) % (256 * 1024);
    if (r < 95) return 256 * 1024 + test_rand(rng) % (4 * MiB);
    return 4 * MiB + test_rand(rng) % (20 * MiB);
}

static void data_integrity(unsigned flags)
{
    gpu();
    cua_arena *a;
    CHECK_OK(make_arena(flags | CUA_ARENA_CHECK_ALWAYS, 0, CUA_KEEP_ALL, &a));
    blk live[96];
    int n = 0;
    uint64_t rng = 42 + flags;
    for (int step = 0; step < 2000; step++) {
        uint64_t r = test_rand(&rng) % 100;
        if (n < 96 && (r < 55 || n == 0)) {
            blk *b = &live[n];
            b->size = pick_size(&rng);
            b->value = 0x01000000u * (unsigned)(step % 251) + (unsigned)step;
            CHECK_OK(cua_arena_alloc(a, b->size, 0, &b->p));
            CHECK(cu.MemsetD32Async((CUdeviceptr)b->p, b->value, b->size / 4, 0) == CUDA_SUCCESS);
            n++;
        } else if (r < 99) {
            int i = (int)(test_rand(&rng) % (uint64_t)n);
            CHECK_OK(cua_free(live[i].p));
            live[i] = live[--n];
        } else {
            size_t released;
            CHECK_OK(cua_arena_trim(a, 0, &released));
        }
        if (step % 50 == 49 || step == 1999) {
            cu.CtxSynchronize();
            for (int i = 0; i < n; i++)
                if (count_bad(live[i].p, live[i].size / 4, live[i].value, 1 << 16)) {
                    fprintf(stderr, "step %d: block %p of %zu bytes lost its data\n", step,
                            live[i].p, live[i].size);
                    CHECK(0);
                }
        }
    }
    for (int i = 0; i < n; i++) CHECK_OK(cua_free(live[i].p));
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK(free_now() == g_free0);
}

/* X on stream A under a long kernel that writes 0xAA.. at its end; X freed on
 * A; then a block on `second`, filled with 0x55.. on B without waiting for A.
 * Returns the words of that block that A's kernel overwrote. */
static size_t race(cua_arena *a, CUstream second, void **x_out, void **y_out)
{
    const size_t size = 8 * MiB;
    void *x = NULL, *y = NULL;
    if (cua_arena_alloc(a, size, (cua_stream)g_a, &x) ||
        spin_fill(x, size / 4, g_cycles, 0xaaaaaaaau, g_a) || cua_free(x))
        return SIZE_MAX;
    bool a_running = cu.StreamQuery(g_a) == CUDA_ERROR_NOT_READY;
    if (cua_arena_alloc(a, size, (cua_stream)second, &y) ||
        cu.MemsetD32Async((CUdeviceptr)y, 0x55555555u, size / 4, g_b))
        return SIZE_MAX;
    cu.StreamSynchronize(g_b);
    cu.StreamSynchronize(g_a);
    size_t bad = count_bad(y, size / 4, 0x55555555u, size / 4);
    *x_out = x;
    *y_out = y;
    if (!a_running) fprintf(stderr, "race: stream A was done before the second request\n");
    cua_free(y);
    return a_running ? bad : SIZE_MAX;
}

static void cross_stream(unsigned flags)
{
    gpu();
    cua_arena *a;
    void *x, *y;
    CHECK_OK(make_arena(flags | CUA_ARENA_CHECK_ALWAYS, 0, CUA_KEEP_ALL, &a));
    size_t bad = race(a, g_b, &x, &y);
    CHECK(bad == 0);
    CHECK(y != x); /* A's kernel still ran: the block could not go to B */
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK(free_now() == g_free0);
}

/* Control: on one stream the block may be reused at once (stream order makes
 * it safe); using it from B without ordering is a race the checksum sees. */
static void race_detector_works(unsigned flags)
{
    gpu();
    cua_arena *a;
    void *x, *y;
    CHECK_OK(make_arena(flags, 0, CUA_KEEP_ALL, &a));
    size_t bad = race(a, g_a, &x, &y);
    CHECK(y == x);
    CHECK(bad > 0 && bad != SIZE_MAX);
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK(free_now() == g_free0);
}

static void record_stream(unsigned flags)
{
    gpu();
    const size_t size = 8 * MiB;
    cua_arena *a;
    void *x, *y;
    CHECK_OK(make_arena(flags | CUA_ARENA_CHECK_ALWAYS, 0, CUA_KEEP_ALL, &a));
    CHECK_OK(cua_arena_alloc(a, size, (cua_stream)g_a, &x));
    CHECK(spin_fill(x, size / 4, g_cycles, 0xaaaaaaaau, g_b) == CUDA_SUCCESS);
    CHECK_OK(cua_record_stream(x, (cua_stream)g_b));
    CHECK_OK(cua_free(x));
    CHECK(cu.StreamQuery(g_b) == CUDA_ERROR_NOT_READY);
    CHECK_OK(cua_arena_alloc(a, size, (cua_stream)g_a, &y));
    CHECK(y != x);
    CHECK(cu.MemsetD32Async((CUdeviceptr)y, 0x55555555u, size / 4, g_a) == CUDA_SUCCESS);
    cu.StreamSynchronize(g_a);
    cu.StreamSynchronize(g_b);
    CHECK(count_bad(y, size / 4, 0x55555555u, size / 4) == 0);
    CHECK_OK(cua_free(y));
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK(free_now() == g_free0);
}

static void trim_destroy(unsigned flags)
{
    gpu();
    cua_arena *a;
    void *p[64];
    CHECK_OK(make_arena(flags, 0, CUA_KEEP_ALL, &a));
    uint64_t rng = 7;
    for (int i = 0; i < 64; i++) {
        size_t size = MiB + test_rand(&rng) % (40 * MiB);
        CHECK_OK(cua_arena_alloc(a, size, 0, &p[i]));
        CHECK(cu.MemsetD32Async((CUdeviceptr)p[i], (unsigned)i, size / 4, 0) == CUDA_SUCCESS);
    }
    for (int i = 0; i < 64; i += 2) CHECK_OK(cua_free(p[i]));
    size_t free1 = free_now(), released = 0;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    size_t free2 = free_now();
    printf("memory: %s: trim released %zu bytes, driver free rose by %zu\n",
           flags ? "whole segments" : "vmm", released, free2 - free1);
    CHECK(released > 0 && free2 - free1 == released);
    for (int i = 1; i < 64; i += 2) CHECK_OK(cua_free(p[i]));
    CHECK_OK(cua_arena_destroy(a, 0));
    size_t after = free_now();
    printf("memory: %s: after destroy %zu bytes free, baseline %zu\n",
           flags ? "whole segments" : "vmm", after, g_free0);
    CHECK(after == g_free0);
    cua_backend_stats bs;
    CHECK_OK(cua_backend_get_stats(g_bk, &bs));
    CHECK(bs.handles == 0 && bs.mappings == 0 && bs.reservations == 0 && bs.handle_bytes == 0);
}

static void limit_release(unsigned flags)
{
    gpu();
    cua_arena *a;
    void *p[5];
    CHECK_OK(make_arena(flags, 256 * MiB, CUA_KEEP_ALL, &a));
    for (int i = 0; i < 4; i++) CHECK_OK(cua_arena_alloc(a, 64 * MiB, 0, &p[i]));
    CHECK_ST(cua_arena_alloc(a, 64 * MiB, 0, &p[4]), CUA_ERR_LIMIT);
    CHECK(strstr(cua_last_error(), "limit") != NULL);
    for (int i = 0; i < 4; i++) CHECK_OK(cua_free(p[i]));
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_OK(make_arena(flags, 0, 0, &a));
    for (int i = 0; i < 3; i++) CHECK_OK(cua_arena_alloc(a, 30 * MiB + 4096 * (size_t)i, 0, &p[i]));
    for (int i = 0; i < 3; i++) CHECK_OK(cua_free(p[i]));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.mapped_bytes == 0);
    CHECK(free_now() == g_free0); /* the arena is alive and holds nothing */
    CHECK_OK(cua_arena_destroy(a, 0));
}

static uint64_t driver_calls(void)
{
    cua_backend_stats s;
    uint64_t n = 0;
    cua_backend_get_stats(g_bk, &s);
    for (int k = 0; k < CUA_CALL_COUNT; k++) n += s.calls[k];
    return n;
}

static void fast_path(unsigned flags)
{
    gpu();
    static const size_t sizes[] = {512, 4096, 100000, MiB, 3 * MiB, 20 * MiB, 777, 65536};
    enum { N = sizeof sizes / sizeof sizes[0] };
    cua_arena *a;
    void *p[N];
    CHECK_OK(make_arena(flags, 0, CUA_KEEP_ALL, &a));
    for (int round = 0; round < 1001; round++) {
        uint64_t before = driver_calls();
        for (int i = 0; i < N; i++) CHECK_OK(cua_arena_alloc(a, sizes[i], 0, &p[i]));
        for (int i = N - 1; i >= 0; i--) CHECK_OK(cua_free(p[i]));
        if (round > 0) CHECK(driver_calls() == before); /* warm: no driver call at all */
    }
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK(free_now() == g_free0);
}

static void out_of_memory(unsigned flags)
{
    gpu();
    cua_arena *a;
    void *p[256];
    int n = 0;
    cua_status st = CUA_OK;
    size_t start = free_now();
    CHECK_OK(make_arena(flags, 0, CUA_KEEP_ALL, &a));
    while (n < 256 && (st = cua_arena_alloc(a, GiB, 0, &p[n])) == CUA_OK) n++;
    CHECK_ST(st, CUA_ERR_OUT_OF_MEMORY);
    printf("memory: %s: out of memory after %d GiB: %s\n", flags ? "whole segments" : "vmm", n,
           cua_last_error());
    CHECK(n > 0 && strstr(cua_last_error(), "free") != NULL);
    CHECK_ARENA(a);
    for (int i = 0; i < n; i++) CHECK_OK(cua_free(p[i]));
    CHECK_OK(cua_arena_destroy(a, 0));
    cua_backend_stats bs;
    CHECK_OK(cua_backend_get_stats(g_bk, &bs));
    size_t after = free_now();
    printf("memory: %s: after the out-of-memory case %zu bytes free, %zu at its start, "
           "baseline %zu; the backend holds %llu handles\n", flags ? "whole segments" : "vmm",
           after, start, g_free0, (unsigned long long)bs.handles);
    CHECK(bs.handles == 0 && bs.mappings == 0 && bs.reservations == 0);
    CHECK(after == start);
}

#define BOTH(name)                                                                        \
    TEST(name##_vmm) { name(0); }                                                          \
    TEST(name##_whole_segments) { name(CUA_ARENA_NO_VMM); }

BOTH(data_integrity)
BOTH(cross_stream)
BOTH(race_detector_works)
BOTH(record_stream)
BOTH(trim_destroy)
BOTH(limit_release)
BOTH(fast_path)
BOTH(out_of_memory)
