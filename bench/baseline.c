/*
 * baseline.c - cuarena-baseline: the bundled traces through the CUDA runtime's
 * own allocators, the baselines of cuarena's GPU benchmark (tests/gpu/run.sh).
 *
 *   cuarena-baseline [--mode malloc|async|all] [--repeat N] [--device D] FILE...
 *
 * malloc: cudaMalloc / cudaFree for every event. async: cudaMallocAsync /
 * cudaFreeAsync on the legacy default stream from the device's default pool
 * (its release threshold left as it is). Per trace and mode, one JSON line:
 *   - peak_mapped_bytes: from an untimed run. malloc: the highest rise of the
 *     driver's used memory (cudaMemGetInfo after every allocation). async: the
 *     pool's reserved high watermark (peak_driver_used_bytes: the same
 *     cudaMemGetInfo figure as for malloc);
 *   - ns_per_event: median over --repeat timed runs after one warm-up, timing
 *     only the allocator calls, as cuarena-replay does (run ns / 2 x allocs);
 *   - driver_free_before / after: cudaMemGetInfo free bytes before the first
 *     run and after everything was freed and the pool trimmed.
 * Without a CUDA device it says so and exits 77 (skipped).
 */
#include "trace.h"

#include <cuda_runtime.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { MODE_MALLOC = 1, MODE_ASYNC = 2 } mode;

typedef struct options {
    unsigned modes;
    int repeat, device;
    char **files;
    int n_files;
} options;

typedef struct figures {
    uint64_t peak_mapped, peak_driver_used;
    size_t free_before, free_after;
    double ns_med;
    double *ns;
    int errors;
} figures;

static const char *mode_name(mode m) { return m == MODE_MALLOC ? "cudaMalloc" : "cudaMallocAsync"; }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cuda_ok(cudaError_t e, const char *what, const char *trace)
{
    if (e == cudaSuccess) return 1;
    fprintf(stderr, "cuarena-baseline: %s: %s: %s\n", trace, what, cudaGetErrorString(e));
    return 0;
}

static size_t used_now(void)
{
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return tot - fr;
}

static size_t free_now(void)
{
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return fr;
}

static cudaError_t do_alloc(mode m, void **p, size_t size)
{
    return m == MODE_MALLOC ? cudaMalloc(p, size) : cudaMallocAsync(p, size, (cudaStream_t)0);
}

static cudaError_t do_free(mode m, void *p)
{
    return m == MODE_MALLOC ? cudaFree(p) : cudaFreeAsync(p, (cudaStream_t)0);
}

/* Free what is still live (after a failure, or what the trace never frees). */
static void free_live(mode m, void **ptrs, uint32_t n)
{
    for (uint32_t s = 0; s < n; s++)
        if (ptrs[s]) {
            do_free(m, ptrs[s]);
            ptrs[s] = NULL;
        }
    cudaDeviceSynchronize();
}

/* One pass over the trace. track: cudaMemGetInfo after every allocation
 * (untimed), the rise in *peak. Returns the ns spent in allocator calls, or 0. */
static uint64_t pass(mode m, const trace *t, void **ptrs, int track, uint64_t *peak,
                     const char *name)
{
    size_t used0 = track ? used_now() : 0;
    uint64_t spent = 0;
    for (size_t i = 0; i < t->n_events; i++) {
        const trace_event *e = &t->events[i];
        if (e->op == TRACE_MARK) continue;
        uint64_t t0 = now_ns();
        cudaError_t err = e->op == TRACE_ALLOC ? do_alloc(m, &ptrs[e->slot], (size_t)e->size)
                                               : do_free(m, ptrs[e->slot]);
        spent += now_ns() - t0;
        if (!cuda_ok(err, e->op == TRACE_ALLOC ? mode_name(m) : "free", name)) {
            free_live(m, ptrs, t->n_allocs);
            return 0;
        }
        if (e->op == TRACE_FREE) ptrs[e->slot] = NULL;
        if (track && e->op == TRACE_ALLOC) {
            size_t used = used_now();
            if (used > used0 && used - used0 > *peak) *peak = used - used0;
        }
    }
    uint64_t t0 = now_ns(); /* what the trace leaves live is freed, and timed, too */
    for (uint32_t s = 0; s < t->n_allocs; s++)
        if (ptrs[s]) {
            do_free(m, ptrs[s]);
            ptrs[s] = NULL;
        }
    spent += now_ns() - t0;
    return spent ? spent : 1;
}

static cudaMemPool_t default_pool(int device)
{
    cudaMemPool_t pool = NULL;
    cudaDeviceGetDefaultMemPool(&pool, device);
    return pool;
}

/* Give the pool's memory back and reset its high watermark. */
static void pool_reset(cudaMemPool_t pool)
{
    cudaDeviceSynchronize();
    cudaMemPoolTrimTo(pool, 0);
    uint64_t zero = 0;
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void measure(const options *o, mode m, const trace *t, const char *name, figures *f)
{
    void **ptrs = calloc(t->n_allocs ? t->n_allocs : 1, sizeof *ptrs);
    cudaMemPool_t pool = m == MODE_ASYNC ? default_pool(o->device) : NULL;
    if (!ptrs) {
        f->errors = 1;
        return;
    }
    if (pool) pool_reset(pool);
    cudaDeviceSynchronize();
    f->free_before = free_now();
    /* metrics run */
    if (!pass(m, t, ptrs, 1, &f->peak_driver_used, name)) f->errors = 1;
    cudaDeviceSynchronize();
    f->peak_mapped = f->peak_driver_used;
    if (pool) {
        uint64_t high = 0;
        cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &high);
        f->peak_mapped = high;
    }
    /* warm-up, then the timed runs */
    uint64_t unused = 0;
    for (int r = -1; r < o->repeat && !f->errors; r++) {
        uint64_t ns = pass(m, t, ptrs, 0, &unused, name);
        cudaDeviceSynchronize(); /* outside the timing: the async frees land */
        if (!ns) f->errors = 1;
        else if (r >= 0) f->ns[r] = (double)ns / (2.0 * (double)t->n_allocs);
    }
    if (!f->errors && o->repeat > 0) {
        double *sorted = malloc((size_t)o->repeat * sizeof *sorted);
        if (sorted) {
            memcpy(sorted, f->ns, (size_t)o->repeat * sizeof *sorted);
            qsort(sorted, (size_t)o->repeat, sizeof *sorted, cmp_double);
            f->ns_med = sorted[o->repeat / 2];
            free(sorted);
        }
    }
    if (pool) pool_reset(pool);
    cudaDeviceSynchronize();
    f->free_after = free_now();
    free(ptrs);
}

static void print_json(const options *o, mode m, const trace *t, const char *name,
                       const figures *f)
{
    printf("{\"trace\":\"%s\",\"backend\":\"%s\",\"events\":%zu,\"allocs\":%" PRIu32
           ",\"peak_live_bytes\":%" PRIu64 ",\"peak_mapped_bytes\":%" PRIu64
           ",\"peak_mapped_over_live\":%.6f,\"peak_driver_used_bytes\":%" PRIu64,
           name, mode_name(m), t->n_events, t->n_allocs, t->peak_live_bytes, f->peak_mapped,
           t->peak_live_bytes ? (double)f->peak_mapped / (double)t->peak_live_bytes : 0.0,
           f->peak_driver_used);
    if (f->errors || o->repeat <= 0) printf(",\"ns_per_event\":null");
    else printf(",\"ns_per_event\":%.2f", f->ns_med);
    printf(",\"ns_per_event_runs\":[");
    for (int r = 0; r < o->repeat && !f->errors; r++) printf("%s%.2f", r ? "," : "", f->ns[r]);
    printf("],\"driver_free_before\":%zu,\"driver_free_after\":%zu,\"errors\":%d}\n",
           f->free_before, f->free_after, f->errors);
    fflush(stdout);
}

/* "dir/name.catrace.gz" -> "name" */
static void trace_name(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    snprintf(out, cap, "%s", base ? base + 1 : path);
    char *dot = strstr(out, ".catrace");
    if (dot) *dot = 0;
}

static void usage(const char *msg)
{
    if (msg) fprintf(stderr, "cuarena-baseline: %s\n", msg);
    fprintf(stderr, "usage: cuarena-baseline [--mode malloc|async|all] [--repeat N] "
                    "[--device D] FILE...\n");
    exit(2);
}

static void parse(int argc, char **argv, options *o)
{
    *o = (options){MODE_MALLOC | MODE_ASYNC, 5, 0, NULL, 0};
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) usage(NULL);
        if (!v) usage("an option lacks its value");
        if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "malloc")) o->modes = MODE_MALLOC;
            else if (!strcmp(v, "async")) o->modes = MODE_ASYNC;
            else if (!strcmp(v, "all")) o->modes = MODE_MALLOC | MODE_ASYNC;
            else usage("--mode takes malloc, async or all");
        } else if (!strcmp(a, "--repeat")) {
            o->repeat = atoi(v);
            if (o->repeat < 0 || o->repeat > 1000) usage("--repeat takes 0..1000");
        } else if (!strcmp(a, "--device")) {
            o->device = atoi(v);
        } else {
            usage("unknown option");
        }
        i += 2; /* the option and its value */
    }
    if (i >= argc) usage("no trace file");
    o->files = argv + i;
    o->n_files = argc - i;
}

int main(int argc, char **argv)
{
    options o;
    parse(argc, argv, &o);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count <= o.device) {
        fprintf(stderr, "cuarena-baseline: no CUDA device (%s): skipped\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "too few devices");
        return 77;
    }
    if (!cuda_ok(cudaSetDevice(o.device), "cudaSetDevice", "-") || !cuda_ok(cudaFree(NULL), "context", "-"))
        return 1;
    int errors = 0;
    double *ns = calloc((size_t)o.repeat + 1, sizeof *ns);
    for (int fi = 0; fi < o.n_files && ns; fi++) {
        trace t;
        char err[512], name[128];
        if (trace_load(o.files[fi], &t, err, sizeof err) != TRACE_OK) {
            fprintf(stderr, "cuarena-baseline: %s\n", err);
            errors++;
            continue;
        }
        trace_name(o.files[fi], name, sizeof name);
        for (unsigned m = MODE_MALLOC; m <= MODE_ASYNC; m <<= 1) {
            if (!(o.modes & m)) continue;
            figures f = {0};
            f.ns = ns;
            measure(&o, (mode)m, &t, name, &f);
            print_json(&o, (mode)m, &t, name, &f);
            errors += f.errors;
        }
        trace_free(&t);
    }
    free(ns);
    return errors ? 1 : 0;
}
