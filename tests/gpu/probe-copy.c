/*
 * probe-copy.c - where an offload's time can go on this machine: the pieces
 * of a device <-> host copy through a pinned staging area, measured apart.
 * A measuring tool for tests/gpu/run.sh (CUA_GPU_PROBE=1), not a test.
 *
 *   copy engine alone     device <-> 64 MiB pinned buffers, nothing else
 *   CPU copies            pinned <-> pageable, 1..16 threads, into fresh
 *                         pages (huge-page hint or not) and into touched ones
 *   VMM calls             create/map/access/unmap/release of 4 GiB in
 *                         handles of 2 MiB, 32 MiB, 512 MiB
 *   unmap during a copy   does cuMemUnmap wait for a copy in flight?
 *
 * Driver API only (links -lcuda). Prints one line per figure.
 */
#define _GNU_SOURCE
#include "probe-drv.h"

#include <cuda.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define GIB ((size_t)1 << 30)
#define MIB ((size_t)1 << 20)
#define TOTAL (4 * GIB)
#define STAGE (64 * MIB)

static double now(void) { return probe_now(); }

static double gbs(size_t n, double s) { return (double)n / s / 1e9; }

static void *fresh(size_t n, int huge)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) exit(2);
    if (huge) madvise(p, n, MADV_HUGEPAGE);
    return p;
}

#if defined(__x86_64__)
#include <immintrin.h>
/* Copy with non-temporal stores (no read for ownership of the destination,
 * no cache pollution); 64-byte aligned destination assumed, tail by memcpy. */
__attribute__((target("avx2"))) static void nt_copy(unsigned char *dst, const unsigned char *src, size_t n)
{
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
        _mm256_stream_si256((__m256i *)(dst + i), a);
        _mm256_stream_si256((__m256i *)(dst + i + 32), b);
        _mm256_stream_si256((__m256i *)(dst + i + 64), c);
        _mm256_stream_si256((__m256i *)(dst + i + 96), d);
    }
    _mm_sfence();
    memcpy(dst + i, src + i, n - i);
}
#else
static void nt_copy(unsigned char *dst, const unsigned char *src, size_t n) { memcpy(dst, src, n); }
#endif
static int use_nt;

typedef struct job {
    unsigned char *dst;
    const unsigned char *src;
    size_t n;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    if (use_nt)
        nt_copy(j->dst, j->src, j->n);
    else
        memcpy(j->dst, j->src, j->n);
    return NULL;
}

static size_t touch_len = TOTAL / 16;
static void *touch(void *p)
{
    for (size_t at = 0; at < touch_len; at += 4096) ((volatile unsigned char *)p)[at] = 1;
    return NULL;
}

static void par_copy(unsigned char *dst, const unsigned char *src, size_t n, int k)
{
    pthread_t th[64];
    job j[64] = {{0}};
    if (k < 1) k = 1;
    size_t per = (n / (size_t)k + 4095) & ~(size_t)4095; /* aligned for streaming stores */
    for (int i = 0; i < k; i++) {
        size_t at = (size_t)i * per < n ? (size_t)i * per : n;
        size_t len = n - at < per ? n - at : per;
        j[i] = (job){dst + at, src + at, len};
        if (i) pthread_create(&th[i], NULL, run_job, &j[i]);
    }
    run_job(&j[0]);
    for (int i = 1; i < k; i++) pthread_join(th[i], NULL);
}

/* The whole 4 GiB between the 64 MiB pinned buffer and `img`, k threads per chunk. */
static double cpu_pass(unsigned char *img, unsigned char *pin, int k, int to_img)
{
    double t = now();
    for (size_t at = 0; at < TOTAL; at += STAGE)
        if (to_img)
            par_copy(img + at, pin, STAGE, k);
        else
            par_copy(pin, img + at, STAGE, k);
    return now() - t;
}

static void probe_cpu(unsigned char *pin)
{
    int ks[] = {1, 4, 8, 12, 16};
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        int k = ks[i];
        unsigned char *img = fresh(TOTAL, 1);
        double a = cpu_pass(img, pin, k, 1);
        double b = cpu_pass(img, pin, k, 1);
        double c = cpu_pass(img, pin, k, 0);
        munmap(img, TOTAL);
        img = fresh(TOTAL, 0);
        double d = cpu_pass(img, pin, k, 1);
        munmap(img, TOTAL);
        printf("cpu threads=%2d  to fresh huge %5.1f  to touched %5.1f  from image %5.1f  "
               "to fresh 4k %5.1f GB/s\n", k, gbs(TOTAL, a), gbs(TOTAL, b), gbs(TOTAL, c),
               gbs(TOTAL, d));
        fflush(stdout);
    }
    /* Fault fresh pages in with k threads (memset per slice), then copy in. */
    for (int k = 1; k <= 16; k *= 4) {
        unsigned char *img = fresh(TOTAL, 1);
        double t = now();
        pthread_t th[64];
        size_t per = TOTAL / (size_t)k;
        touch_len = per;
        for (int i = 0; i < k; i++)
            pthread_create(&th[i], NULL, touch, img + (size_t)i * per);
        for (int i = 0; i < k; i++) pthread_join(th[i], NULL);
        double f = now() - t;
        munmap(img, TOTAL);
        printf("fault in 4 GiB (huge hint) with %2d threads: %.1f ms\n", k, f * 1e3);
    }
}

static void probe_dma(CUdeviceptr d, unsigned char *pin[2], CUstream s)
{
    for (int dir = 0; dir < 2; dir++) {
        CK(cuStreamSynchronize(s));
        double t = now();
        for (size_t at = 0; at < TOTAL; at += STAGE) {
            unsigned char *h = pin[(at / STAGE) % 2];
            if (dir == 0)
                CK(cuMemcpyDtoHAsync(h, d + at, STAGE, s));
            else
                CK(cuMemcpyHtoDAsync(d + at, h, STAGE, s));
        }
        CK(cuStreamSynchronize(s));
        double e = now() - t;
        printf("copy engine %s 4 GiB via 64 MiB pinned: %.1f GB/s (%.1f ms)\n",
               dir == 0 ? "device->host" : "host->device", gbs(TOTAL, e), e * 1e3);
    }
}

/* One pipelined offload: DMA chunk into pin[i], CPU copies previous chunk with k threads. */
static void probe_pipe(CUdeviceptr d, unsigned char *pin[2], CUstream s, CUevent ev[2], int k,
                       int touched)
{
    unsigned char *img = fresh(TOTAL, 1);
    if (touched) memset(img, 0, TOTAL);
    double t = now();
    int busy[2] = {0, 0};
    size_t host_at[2] = {0, 0};
    size_t n = 0;
    for (size_t at = 0; at < TOTAL; at += STAGE, n++) {
        int i = (int)(n % 2);
        if (busy[i]) {
            CK(cuEventSynchronize(ev[i]));
            par_copy(img + host_at[i], pin[i], STAGE, k);
        }
        CK(cuMemcpyDtoHAsync(pin[i], d + at, STAGE, s));
        CK(cuEventRecord(ev[i], s));
        busy[i] = 1;
        host_at[i] = at;
    }
    for (int j = 0; j < 2; j++) {
        int i = (int)((n + (size_t)j) % 2);
        if (busy[i]) {
            CK(cuEventSynchronize(ev[i]));
            par_copy(img + host_at[i], pin[i], STAGE, k);
        }
    }
    double e1 = now() - t;
    t = now();
    n = 0;
    busy[0] = busy[1] = 0;
    for (size_t at = 0; at < TOTAL; at += STAGE, n++) {
        int i = (int)(n % 2);
        if (busy[i]) CK(cuEventSynchronize(ev[i]));
        par_copy(pin[i], img + at, STAGE, k);
        CK(cuMemcpyHtoDAsync(d + at, pin[i], STAGE, s));
        CK(cuEventRecord(ev[i], s));
        busy[i] = 1;
    }
    CK(cuStreamSynchronize(s));
    double e2 = now() - t;
    munmap(img, TOTAL);
    printf("pipeline threads=%2d image %s: to host %.1f GB/s, to device %.1f GB/s\n", k,
           touched ? "touched" : "fresh  ", gbs(TOTAL, e1), gbs(TOTAL, e2));
}

/* Pinned device memory of `dev`, for cuMemCreate. */
static CUmemAllocationProp device_prop(CUdevice dev)
{
    CUmemAllocationProp prop = {0};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    return prop;
}

static void probe_vmm(CUdevice dev)
{
    CUmemAllocationProp prop = device_prop(dev);
    CUmemAccessDesc acc = {.location = prop.location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CUdeviceptr va;
    CK(cuMemAddressReserve(&va, TOTAL, 0, 0, 0));
    size_t sizes[] = {2 * MIB, 32 * MIB, 512 * MIB, 4 * GIB};
    static CUmemGenericAllocationHandle h[2048];
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t sz = sizes[si], n = TOTAL / sz;
        double t0 = now();
        for (size_t i = 0; i < n; i++) CK(cuMemCreate(&h[i], sz, &prop, 0));
        double t1 = now();
        for (size_t i = 0; i < n; i++) CK(cuMemMap(va + i * sz, sz, 0, h[i], 0));
        double t2 = now();
        CK(cuMemSetAccess(va, TOTAL, &acc, 1));
        double t3 = now();
        CK(cuMemUnmap(va, TOTAL));
        double t4 = now();
        for (size_t i = 0; i < n; i++) CK(cuMemRelease(h[i]));
        double t5 = now();
        printf("vmm 4 GiB in %4zu x %4zu MiB: create %6.1f map %6.1f access %6.1f unmap %6.1f "
               "release %6.1f ms\n", n, sz / MIB, (t1 - t0) * 1e3, (t2 - t1) * 1e3,
               (t3 - t2) * 1e3, (t4 - t3) * 1e3, (t5 - t4) * 1e3);
        /* access per handle instead of once */
        if (sz == 2 * MIB) {
            for (size_t i = 0; i < n; i++) CK(cuMemCreate(&h[i], sz, &prop, 0));
            for (size_t i = 0; i < n; i++) CK(cuMemMap(va + i * sz, sz, 0, h[i], 0));
            double a = now();
            for (size_t i = 0; i < n; i++) CK(cuMemSetAccess(va + i * sz, sz, &acc, 1));
            double b = now();
            for (size_t i = 0; i < n; i++) CK(cuMemUnmap(va + i * sz, sz));
            double c = now();
            for (size_t i = 0; i < n; i++) CK(cuMemRelease(h[i]));
            printf("vmm 2 MiB each call: access %.1f ms, unmap %.1f ms\n", (b - a) * 1e3,
                   (c - b) * 1e3);
        }
    }
    CK(cuMemAddressFree(va, TOTAL));
}

/* Does an unmap wait for a copy in flight on another range? */
static void probe_unmap_overlap(CUdevice dev, CUdeviceptr d, unsigned char *pin[2], CUstream s)
{
    CUmemAllocationProp prop = device_prop(dev);
    CUmemAccessDesc acc = {.location = prop.location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CUdeviceptr va;
    CUmemGenericAllocationHandle h;
    CK(cuMemAddressReserve(&va, 64 * MIB, 0, 0, 0));
    CK(cuMemCreate(&h, 64 * MIB, &prop, 0));
    CK(cuMemMap(va, 64 * MIB, 0, h, 0));
    CK(cuMemSetAccess(va, 64 * MIB, &acc, 1));
    double t = now();
    for (size_t at = 0; at < TOTAL; at += STAGE) CK(cuMemcpyDtoHAsync(pin[0], d + at, STAGE, s));
    double issued = now();
    CK(cuMemUnmap(va, 64 * MIB));
    double unmapped = now();
    CK(cuMemRelease(h));
    double released = now();
    CK(cuStreamSynchronize(s));
    double done = now();
    printf("unmap during a 4 GiB copy: issue %.1f ms, unmap returned at %.1f ms, release at "
           "%.1f ms, copy done at %.1f ms\n", (issued - t) * 1e3, (unmapped - t) * 1e3,
           (released - t) * 1e3, (done - t) * 1e3);
    CK(cuMemAddressFree(va, 64 * MIB));
}

static void probe_register(void)
{
    for (int kind = 0; kind < 3; kind++) {
        unsigned char *img = fresh(TOTAL, kind != 2);
        if (kind) memset(img, 0, TOTAL);
        double t = now();
        CK(cuMemHostRegister(img, TOTAL, 0));
        double r = now() - t;
        t = now();
        CK(cuMemHostUnregister(img));
        double u = now() - t;
        munmap(img, TOTAL);
        printf("register 4 GiB %s: %.1f ms, unregister %.1f ms\n",
               kind == 0 ? "fresh huge   " : kind == 1 ? "touched huge " : "touched 4k   ", r * 1e3, u * 1e3);
    }
}

int main(int argc, char **argv)
{
    int part = argc > 1 ? atoi(argv[1]) : 0;
    CUdevice dev;
    CUcontext ctx;
    CK(cuInit(0));
    CK(cuDeviceGet(&dev, 0));
    CK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(cuCtxSetCurrent(ctx));
    CUdeviceptr d;
    CK(cuMemAlloc(&d, TOTAL));
    CK(cuMemsetD8(d, 7, TOTAL));
    unsigned char *pin[2];
    for (int i = 0; i < 2; i++) CK(cuMemHostAlloc((void **)&pin[i], STAGE, 0));
    memset(pin[0], 1, STAGE);
    memset(pin[1], 1, STAGE);
    CUstream s;
    CUevent ev[2];
    CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    for (int i = 0; i < 2; i++) CK(cuEventCreate(&ev[i], CU_EVENT_DISABLE_TIMING));

    if (part == 0) {
        probe_dma(d, pin, s);
        probe_unmap_overlap(dev, d, pin, s);
        probe_vmm(dev);
    }
    if (part == 1) {
        probe_register();
        use_nt = 1;
        printf("non-temporal stores:\n");
    }
    probe_cpu(pin[0]);
    for (int k = 4; k <= 16; k += 4) {
        probe_pipe(d, pin, s, ev, k, 0);
        probe_pipe(d, pin, s, ev, k, 1);
    }
    CK(cuMemFree(d));
    return 0;
}
