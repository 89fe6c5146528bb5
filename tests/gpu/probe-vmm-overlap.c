/* probe-vmm-overlap.c - what page moves cost on this GPU, and whether an
 * unmap on one thread slows a map + set access on another (a measuring tool
 * for the delayed unmap of docs/tuning.md; not a test).
 *
 * Prints, for GiB-sized ranges made of handles of a few sizes:
 *   map, set access and unmap alone (ms per GiB), and
 *   map + set access of one range while another thread unmaps another range
 *   of the same size (the mapping thread's time against its time alone).
 * Build: cc -O2 probe-vmm-overlap.c -I/usr/local/cuda/include -lcuda -lpthread */
#define _GNU_SOURCE
#include "probe-drv.h"

#include <cuda.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) { return probe_now() * 1e3; }

typedef struct range {
    CUdeviceptr va;
    size_t bytes, hsize;
    int n;
    CUmemGenericAllocationHandle *h;
} range;

static CUmemAllocationProp prop;
static CUmemAccessDesc acc;

static void range_make(range *r, size_t bytes, size_t hsize)
{
    r->bytes = bytes;
    r->hsize = hsize;
    r->n = (int)(bytes / hsize);
    r->h = calloc((size_t)r->n, sizeof *r->h);
    CK(cuMemAddressReserve(&r->va, bytes, 0, 0, 0));
    for (int i = 0; i < r->n; i++) CK(cuMemCreate(&r->h[i], hsize, &prop, 0));
}

static double range_map(range *r) /* map every handle, one set access over the range */
{
    double t = now_ms();
    for (int i = 0; i < r->n; i++) CK(cuMemMap(r->va + (size_t)i * r->hsize, r->hsize, 0, r->h[i], 0));
    CK(cuMemSetAccess(r->va, r->bytes, &acc, 1));
    return now_ms() - t;
}

static double range_unmap(range *r) /* one unmap over the range */
{
    double t = now_ms();
    CK(cuMemUnmap(r->va, r->bytes));
    return now_ms() - t;
}

typedef struct job {
    range *r;
    CUcontext ctx;
    double ms;
} job;

static void *unmap_job(void *arg)
{
    job *j = arg;
    CK(cuCtxSetCurrent(j->ctx));
    j->ms = range_unmap(j->r);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t gib = argc > 1 ? strtoull(argv[1], NULL, 0) : 4;
    CK(cuInit(0));
    CUdevice dev;
    CUcontext ctx;
    CK(cuDeviceGet(&dev, 0));
    CK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CK(cuCtxSetCurrent(ctx));
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    acc.location = prop.location;
    acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    size_t bytes = gib << 30;
    size_t hsizes[] = {(size_t)2 << 20, (size_t)32 << 20, (size_t)256 << 20, (size_t)1 << 30};
    printf("vmm-overlap: %zu GiB ranges; ms per GiB (median of 3)\n", gib);
    printf("vmm-overlap: handle MiB | map+access alone | unmap alone | map+access while "
           "another thread unmaps | that unmap\n");
    for (size_t k = 0; k < sizeof hsizes / sizeof *hsizes; k++) {
        range a, b;
        range_make(&a, bytes, hsizes[k]);
        range_make(&b, bytes, hsizes[k]);
        double ma[3], ua[3], mb[3], ub[3];
        for (int rep = 0; rep < 3; rep++) {
            ma[rep] = range_map(&a) / (double)gib;
            ua[rep] = range_unmap(&a) / (double)gib;
            (void)range_map(&b);
            job j = {.r = &b, .ctx = ctx};
            pthread_t t;
            pthread_create(&t, NULL, unmap_job, &j);
            mb[rep] = range_map(&a) / (double)gib;
            pthread_join(t, NULL);
            ub[rep] = j.ms / (double)gib;
            (void)range_unmap(&a);
        }
        /* median of three */
#define MED(v) ((v)[0] > (v)[1] ? ((v)[1] > (v)[2] ? (v)[1] : ((v)[0] > (v)[2] ? (v)[2] : (v)[0])) \
                                : ((v)[0] > (v)[2] ? (v)[0] : ((v)[1] > (v)[2] ? (v)[2] : (v)[1])))
        printf("vmm-overlap: %8zu | %8.3f | %8.3f | %8.3f | %8.3f\n", hsizes[k] >> 20, MED(ma),
               MED(ua), MED(mb), MED(ub));
        for (int i = 0; i < a.n; i++) CK(cuMemRelease(a.h[i]));
        for (int i = 0; i < b.n; i++) CK(cuMemRelease(b.h[i]));
        CK(cuMemAddressFree(a.va, a.bytes));
        CK(cuMemAddressFree(b.va, b.bytes));
        free(a.h);
        free(b.h);
    }
    return 0;
}
