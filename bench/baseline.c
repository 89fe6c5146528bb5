/*
 * baseline.c - cuarena-baseline: catrace files through the CUDA runtime's own
 * allocators, the baselines of cuarena's GPU benchmark (tests/gpu/run.sh). No
 * cuarena code: the trace loader and libcudart only.
 *
 *   malloc  cudaMalloc / cudaFree for every alloc / free event;
 *   async   cudaMallocAsync / cudaFreeAsync on the legacy default stream 0 (the
 *           traces use stream 0 only), from the device's default memory pool
 *           (never replaced here), its release threshold left at the default
 *           (0: the pool gives back what it holds beyond use at every sync);
 *   keep    cudaMallocFromPoolAsync from a pool made here whose release
 *           threshold is UINT64_MAX, as frameworks set it (nothing is given
 *           back at a sync; PyTorch's cudaMallocAsync backend does this).
 *
 * --timeline N samples the metrics run about N times and at every marker:
 * live bytes, and the bytes mapped (malloc: the driver's used rise; pools:
 * cudaMemPoolAttrReservedMemCurrent); at markers starting with --trim-at
 * (teardown) a pool is synced and trimmed (cudaMemPoolTrimTo 0), as
 * cuarena-replay trims its arena there. --cap B simulates a smaller GPU: all
 * but B bytes of the device's free memory are taken by one cudaMalloc before
 * the runs, and the event that fails is named. --budget-search bisects the
 * smallest such B (2 MiB steps) under which the trace completes.
 *
 * Per trace and mode one JSON line. peak_mapped_bytes comes from an untimed
 * metrics run first: for malloc the highest rise of the driver's used memory
 * (cudaMemGetInfo after every allocation; also peak_driver_used_bytes), for
 * async the pool's cudaMemPoolAttrReservedMemHigh, reset to 0 after a sync and
 * cudaMemPoolTrimTo(pool, 0) (peak_driver_used_bytes: the cudaMemGetInfo rise).
 * ns_per_event is timed as cuarena-replay times it: a warm-up run, then
 * --repeat runs, each clocking only the loop of allocator calls over all events
 * plus the frees of what the trace leaves live; a run is ns / (2 x allocations),
 * the median is reported; the device is synced after each run, off the clock.
 * driver_free_before / _after: cudaMemGetInfo free bytes before the first run,
 * and after everything was freed, the pool trimmed and the device synced.
 *
 * Exit status: 0 ok, 1 an allocator call failed (its line has errors:1),
 * 2 usage or input error, 77 no CUDA device or driver (skipped).
 */
#include "pin.h" /* first: sched.h needs _GNU_SOURCE */
#include "timeline.h"
#include "trace.h"

#include <cuda_runtime.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIB (1024.0 * 1024.0)
#define NO_EVENT SIZE_MAX

static const char usage_text[] =
    "usage: cuarena-baseline [options] FILE...\n"
    "Replay .catrace / .catrace.gz files through cudaMalloc and cudaMallocAsync;\n"
    "one JSON line per file and allocator.\n"
    "  --mode malloc|async|keep|all  the allocators (default all)\n"
    "  --timeline N             sample live and mapped about N times and at every marker\n"
    "  --trim-at PREFIX         trim the pool at markers starting with PREFIX (default teardown)\n"
    "  --cap BYTES              leave only BYTES of the device free (a smaller GPU)\n"
    "  --budget-search          bisect the smallest such cap that completes the trace\n"
    "  --budget-step B          ... to within B bytes (default 2 MiB)\n"
    "  --repeat N               timed runs after one warm-up (default 5; 0: no timing)\n"
    "  --device D               the CUDA device (default 0)\n"
    "  --table                  print a Markdown table after the JSON lines\n"
    "  --help                   this text\n";

enum { MODE_MALLOC = 1, MODE_ASYNC = 2, MODE_KEEP = 4, MODE_ALL = 7 };

#define GRAN ((size_t)2 << 20) /* cudaMalloc's granularity: the steps of caps */

typedef struct options {
    unsigned modes;     /* MODE_ bits */
    int repeat, device, table, budget_search;
    size_t budget_step; /* --budget-step: the bisection stops within this (0: GRAN) */
    uint64_t timeline;   /* about this many samples; 0 none */
    const char *trim_at;
    size_t cap;          /* 0: none */
    char **files;
    int n_files;
} options;

/* The figures of one (trace, mode); has_peak, has_timing: those runs completed. */
typedef struct result {
    char name[128];
    int mode, has_peak, has_timing, has_budget, errors;
    uint64_t events, allocs, peak_live, peak_mapped, peak_used, release_threshold;
    size_t free_before, free_after, min_budget;
    double ns_med;
    timeline tl;
} result;

/* One trace on one allocator: the device pointers of its slots (NULL when not
 * live), the slots it never frees (rest), the run going on (for messages). */
typedef struct replay {
    const trace *t;
    const char *name, *run;
    int mode;
    cudaMemPool_t pool; /* async: the default pool, keep: ours, malloc: NULL */
    void **ptrs;
    uint32_t *rest, n_rest;
} replay;

static const char *mode_name(int mode)
{
    return mode == MODE_MALLOC ? "cudaMalloc" : mode == MODE_ASYNC ? "cudaMallocAsync" : "cudaMallocAsync-keep";
}

static void die_oom(void)
{
    fputs("cuarena-baseline: out of host memory\n", stderr);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Driver-level used bytes of the device; its free bytes in *free_out. */
static size_t driver_used(size_t *free_out)
{
    size_t fr = 0, total = 0;
    if (cudaMemGetInfo(&fr, &total) != cudaSuccess) fr = total = 0;
    if (free_out) *free_out = fr;
    return total - fr;
}

/* ---- replaying ----------------------------------------------------------------- */

/* Free the pointer of a slot, which is then not live. */
static inline cudaError_t release(const replay *r, uint32_t slot)
{
    void *p = r->ptrs[slot];
    r->ptrs[slot] = NULL;
    return r->mode == MODE_MALLOC ? cudaFree(p) : cudaFreeAsync(p, (cudaStream_t)0);
}

/* Event i through the allocator (markers do nothing). */
static inline cudaError_t step(const replay *r, size_t i)
{
    const trace_event *e = &r->t->events[i];
    void **p = &r->ptrs[e->slot];
    cudaError_t err = cudaSuccess;
    if (e->op == TRACE_ALLOC) {
        if (r->mode == MODE_MALLOC) err = cudaMalloc(p, (size_t)e->size);
        else if (r->mode == MODE_ASYNC) err = cudaMallocAsync(p, (size_t)e->size, (cudaStream_t)0);
        else err = cudaMallocFromPoolAsync(p, (size_t)e->size, r->pool, (cudaStream_t)0);
        if (err) *p = NULL;
    } else if (e->op == TRACE_FREE) {
        err = release(r, e->slot);
    }
    return err;
}

/* Free what the trace leaves live, in slot order. */
static inline cudaError_t free_rest(const replay *r)
{
    cudaError_t err = cudaSuccess;
    for (uint32_t k = 0; k < r->n_rest && !err; k++) err = release(r, r->rest[k]);
    return err;
}

/* The name of the last marker before event i, or NULL. */
static const char *marker_before(const trace *t, size_t i)
{
    while (i-- > 0)
        if (t->events[i].op == TRACE_MARK) return trace_marker_name(t, t->events[i].slot);
    return NULL;
}

/* Report a failed call at event i (n_events: at the end of the run; NO_EVENT:
 * outside the events), free every pointer still held, sync. Returns -1. */
static int fail(const replay *r, size_t i, cudaError_t err)
{
    const trace *t = r->t;
    fprintf(stderr, "cuarena-baseline: %s: %s, %s run", r->name, mode_name(r->mode), r->run);
    if (i < t->n_events) {
        const char *mark = marker_before(t, i);
        fprintf(stderr, ", event %zu (%s of %" PRIu64 " bytes on stream %" PRIu64 ", slot %" PRIu32 ", %s%s%s)", i,
                t->events[i].op == TRACE_ALLOC ? "alloc" : "free", t->events[i].size, t->events[i].stream,
                t->events[i].slot,
                mark ? "after marker '" : "before any marker", mark ? mark : "", mark ? "'" : "");
    } else if (i == t->n_events) {
        fputs(", at its end", stderr);
    }
    fprintf(stderr, ": %s (%s)\n", cudaGetErrorString(err), cudaGetErrorName(err));
    cudaGetLastError(); /* clear a non-sticky error such as out of memory */
    for (uint32_t s = 0; s < t->n_allocs; s++)
        if (r->ptrs[s]) release(r, s);
    cudaDeviceSynchronize();
    return -1;
}

/* What the allocator holds now: the pool's reserved bytes, or the driver's
 * used bytes above used0. */
static cudaError_t mapped_now(const replay *r, size_t used0, uint64_t *out)
{
    if (r->pool) return cudaMemPoolGetAttribute(r->pool, cudaMemPoolAttrReservedMemCurrent, out);
    size_t used = driver_used(NULL);
    *out = used > used0 ? used - used0 : 0;
    return cudaSuccess;
}

/* The timeline's sample after event i (every tl->every events, the last
 * one, and every marker, where a pool is trimmed when the marker's name
 * starts with trim_at). */
/* Whether event i is a marker whose name starts with trim_at, where a pool
 * is synced and trimmed (the metrics run and every budget attempt alike). */
static int trim_mark(const replay *r, size_t i, const char *trim_at)
{
    const trace_event *e = &r->t->events[i];
    return e->op == TRACE_MARK && r->pool &&
           strncmp(trace_marker_name(r->t, e->slot), trim_at, strlen(trim_at)) == 0;
}

static cudaError_t sample(const replay *r, size_t i, uint64_t live, size_t used0, const char *trim_at, timeline *tl)
{
    const trace_event *e = &r->t->events[i];
    int mark = e->op == TRACE_MARK;
    uint64_t mapped;
    cudaError_t err;
    if (tl->every && (mark || i % tl->every == 0 || i + 1 == r->t->n_events)) {
        if ((err = mapped_now(r, used0, &mapped))) return err;
        if (timeline_point(tl, i, live, mapped) || (mark && timeline_marker(tl, i, e->slot, live, mapped)))
            die_oom();
    }
    if (!trim_mark(r, i, trim_at)) return cudaSuccess;
    if ((err = cudaDeviceSynchronize()) || (err = cudaMemPoolTrimTo(r->pool, 0))) return err;
    tl_marker *m = tl->every ? timeline_marker_at(tl, i) : NULL;
    if (!m) return cudaSuccess;
    if ((err = mapped_now(r, used0, &m->mapped_after_trim))) return err;
    m->trimmed = 1;
    if (timeline_point(tl, i, live, m->mapped_after_trim)) die_oom();
    return cudaSuccess;
}

/* Untimed: cudaMemGetInfo after every allocation, for the peaks, and the
 * timeline. What the trace leaves live becomes r->rest (slot order) for the
 * timed runs. */
static int metrics_run(replay *r, const options *o, result *res)
{
    size_t used0 = driver_used(NULL), peak = 0;
    uint64_t live = 0;
    cudaError_t err = cudaSuccess;
    size_t i;
    r->run = "metrics";
    for (i = 0; i < r->t->n_events; i++) {
        const trace_event *e = &r->t->events[i];
        if ((err = step(r, i))) break;
        live = e->op == TRACE_ALLOC ? live + e->size : e->op == TRACE_FREE ? live - e->size : live;
        if ((err = sample(r, i, live, used0, o->trim_at, &res->tl))) break;
        if (e->op != TRACE_ALLOC) continue;
        size_t used = driver_used(NULL);
        if (used > used0 && used - used0 > peak) peak = used - used0;
    }
    r->n_rest = 0;
    for (uint32_t s = 0; !err && s < r->t->n_allocs && r->n_rest < r->t->n_live_at_end; s++)
        if (r->ptrs[s]) r->rest[r->n_rest++] = s;
    if (!err) err = free_rest(r);
    if (!err) err = cudaDeviceSynchronize();
    if (err) return fail(r, i, err);
    res->peak_used = peak;
    res->peak_mapped = peak;
    if (r->pool && (err = cudaMemPoolGetAttribute(r->pool, cudaMemPoolAttrReservedMemHigh, &res->peak_mapped)))
        return fail(r, NO_EVENT, err);
    res->has_peak = 1;
    return 0;
}

/* One run with the clock on the allocator calls only. Returns its ns, or 0. */
static uint64_t timed_run(replay *r)
{
    size_t n = r->t->n_events, i;
    cudaError_t err = cudaSuccess;
    uint64_t t0 = now_ns();
    for (i = 0; i < n; i++)
        if ((err = step(r, i))) break;
    if (!err) err = free_rest(r);
    uint64_t dt = now_ns() - t0;
    if (!err) err = cudaDeviceSynchronize(); /* unclocked: the async frees land */
    if (err) {
        fail(r, i, err);
        return 0;
    }
    return dt ? dt : 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of ns[0..n), sorted in the scratch array `tmp`. */
static double median(const double *ns, double *tmp, int n)
{
    memcpy(tmp, ns, (size_t)n * sizeof *tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* The warm-up run, then `repeat` timed runs into ns[]. */
static int timing_runs(replay *r, int repeat, double *ns, result *res)
{
    double per_run = 2.0 * (double)r->t->n_allocs;
    for (int run = 0; run <= repeat; run++) {
        r->run = run ? "timed" : "warm-up";
        uint64_t dt = timed_run(r);
        if (!dt) return -1;
        if (run) ns[run - 1] = per_run > 0 ? (double)dt / per_run : 0.0;
    }
    res->ns_med = median(ns, ns + repeat, repeat);
    res->has_timing = 1;
    return 0;
}

/* Sync; for the pool, give all its memory back and reset its high watermark. */
static int settle(replay *r)
{
    cudaError_t err = cudaDeviceSynchronize();
    uint64_t zero = 0;
    if (!err && r->pool) err = cudaMemPoolTrimTo(r->pool, 0);
    if (!err && r->pool) err = cudaMemPoolSetAttribute(r->pool, cudaMemPoolAttrReservedMemHigh, &zero);
    return err ? fail(r, NO_EVENT, err) : 0;
}

/* A smaller GPU: one cudaMalloc takes all but `cap` bytes of the free
 * memory (*filler NULL when less than cap is free: nothing to take). */
static cudaError_t fill_to(size_t cap, void **filler)
{
    size_t fr;
    *filler = NULL;
    driver_used(&fr);
    if (fr <= cap) return cudaSuccess;
    return cudaMalloc(filler, (fr - cap) / GRAN * GRAN);
}

/* One untimed run of the whole trace with only `cap` bytes free, as the
 * metrics run replays it (the pool trimmed at the trim_at markers): 1 it
 * completed, 0 an allocation failed, -1 something else failed. */
static int budget_attempt(replay *r, size_t cap, const char *trim_at)
{
    void *filler;
    if (settle(r) || fill_to(cap, &filler)) return -1;
    cudaError_t err = cudaSuccess;
    for (size_t i = 0; i < r->t->n_events && !err; i++) {
        err = step(r, i);
        if (!err && trim_mark(r, i, trim_at) && !(err = cudaDeviceSynchronize()))
            err = cudaMemPoolTrimTo(r->pool, 0);
    }
    int ok = err == cudaSuccess;
    if (!ok && err != cudaErrorMemoryAllocation) ok = -1;
    cudaGetLastError(); /* out of memory is not sticky: clear it */
    for (uint32_t s = 0; s < r->t->n_allocs; s++)
        if (r->ptrs[s] && release(r, s)) ok = -1;
    if (cudaDeviceSynchronize() || (filler && cudaFree(filler)) || settle(r)) ok = -1;
    return ok;
}

/* The smallest cap (GRAN steps) under which the trace completes, between
 * peak live and a cap found by doubling from peak mapped. */
static int budget_search(replay *r, result *res, size_t budget_step, const char *trim_at)
{
    size_t lo = res->peak_live / GRAN * GRAN, hi = (res->peak_mapped + GRAN) / GRAN * GRAN + GRAN;
    size_t total_free;
    driver_used(&total_free);
    int ok;
    r->run = "budget";
    lo = lo >= GRAN ? lo - GRAN : 0;
    while ((ok = budget_attempt(r, hi, trim_at)) == 0 && hi < total_free) lo = hi, hi *= 2;
    size_t step = budget_step > GRAN ? budget_step / GRAN * GRAN : GRAN;
    while (ok > 0 && hi - lo > step) {
        size_t mid = lo + (hi - lo) / GRAN / 2 * GRAN;
        int k = budget_attempt(r, mid, trim_at);
        if (k < 0) ok = -1;
        else if (k) hi = mid;
        else lo = mid;
    }
    if (ok <= 0) {
        fprintf(stderr, "cuarena-baseline: %s: %s: budget search failed (%s)\n", r->name, mode_name(r->mode),
                ok ? "a CUDA call failed" : "no cap up to the device's free memory completes");
        return -1;
    }
    res->min_budget = hi;
    res->has_budget = 1;
    return 0;
}

/* Every figure of one (trace, mode); ns[] gets the runs (2 x repeat room). */
static void measure(replay *r, const options *o, double *ns, result *res)
{
    void *filler = NULL;
    r->run = "setup";
    int failed = settle(r);
    if (!failed && r->pool)
        failed = cudaMemPoolGetAttribute(r->pool, cudaMemPoolAttrReleaseThreshold, &res->release_threshold) != 0;
    if (!failed && o->cap && fill_to(o->cap, &filler)) failed = fail(r, NO_EVENT, cudaGetLastError());
    driver_used(&res->free_before);
    if (!failed) failed = metrics_run(r, o, res);
    if (!failed && o->repeat > 0) failed = timing_runs(r, o->repeat, ns, res);
    r->run = "teardown";
    if (settle(r)) failed = -1;
    driver_used(&res->free_after);
    if (filler && cudaFree(filler)) failed = -1;
    if (!failed && o->budget_search && !o->cap) failed = budget_search(r, res, o->budget_step, o->trim_at);
    res->errors = failed != 0;
}

/* ---- output -------------------------------------------------------------------- */

static void json_u64(const char *key, int has, uint64_t v)
{
    if (has) printf(",\"%s\":%" PRIu64, key, v);
    else printf(",\"%s\":null", key);
}

static void json_real(const char *key, int has, double v)
{
    if (has) printf(",\"%s\":%.4f", key, v);
    else printf(",\"%s\":null", key);
}

static void print_json(const result *res, const options *o, const trace *t, const double *ns)
{
    int repeat = o->repeat;
    printf("{\"trace\":");
    bench_json_string(res->name);
    printf(",\"backend\":\"%s\",\"events\":%" PRIu64 ",\"allocs\":%" PRIu64 ",\"peak_live_bytes\":%" PRIu64,
           mode_name(res->mode), res->events, res->allocs, res->peak_live);
    json_u64("peak_mapped_bytes", res->has_peak, res->peak_mapped);
    json_real("peak_mapped_over_live", res->has_peak && res->peak_live,
              (double)res->peak_mapped / (double)(res->peak_live ? res->peak_live : 1));
    json_u64("peak_driver_used_bytes", res->has_peak, res->peak_used);
    json_u64("release_threshold", res->mode != MODE_MALLOC, res->release_threshold);
    json_u64("cap_bytes", o->cap != 0, o->cap);
    json_u64("min_budget_bytes", res->has_budget, res->min_budget);
    json_real("min_budget_over_live", res->has_budget && res->peak_live,
              (double)res->min_budget / (double)(res->peak_live ? res->peak_live : 1));
    json_real("ns_per_event", res->has_timing, res->ns_med);
    printf(",\"ns_per_event_runs\":[");
    for (int k = 0; res->has_timing && k < repeat; k++) printf("%s%.4f", k ? "," : "", ns[k]);
    printf("],\"repeat\":%d,\"driver_free_before\":%zu,\"driver_free_after\":%zu,\"errors\":%d", repeat,
           res->free_before, res->free_after, res->errors);
    if (res->tl.every) timeline_json(&res->tl, t);
    printf("}\n");
    fflush(stdout);
}

static void print_table(const result *rs, int n, int repeat)
{
    printf("\n| trace | allocator | ns/event (median of %d) | peak mapped MiB | peak mapped / live |\n"
           "| --- | --- | ---: | ---: | ---: |\n", repeat);
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        char ns[32] = "-", mib[32] = "-", ratio[32] = "-";
        if (r->has_timing) snprintf(ns, sizeof ns, "%.1f", r->ns_med);
        if (r->has_peak) snprintf(mib, sizeof mib, "%.1f", (double)r->peak_mapped / MIB);
        if (r->has_peak && r->peak_live) snprintf(ratio, sizeof ratio, "%.3f", (double)r->peak_mapped / (double)r->peak_live);
        printf("| %s | %s | %s | %s | %s |\n", r->name, mode_name(r->mode), ns, mib, ratio);
    }
}

/* ---- arguments ----------------------------------------------------------------- */

static void usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "cuarena-baseline: %s%s\n%s", what, arg, usage_text);
    exit(2);
}

/* The value of option `opt` when argv[*i] is it ("--opt v" or "--opt=v"), else NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *opt)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0 || (argv[*i][n] != '=' && argv[*i][n] != '\0')) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (*i + 1 >= argc) usage_error("a value is missing after ", opt);
    return argv[++*i];
}

static int number_in(const char *v, long lo, long hi, const char *opt)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*v < '0' || *v > '9' || *end || n < lo || n > hi) usage_error("bad value for ", opt);
    return (int)n;
}

static void parse_args(int argc, char **argv, options *o)
{
    *o = (options){ .modes = MODE_ALL, .repeat = 5, .trim_at = "teardown" };
    if (!(o->files = calloc((size_t)argc, sizeof *o->files))) die_oom();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            exit(0);
        } else if ((v = opt_value(argc, argv, &i, "--mode"))) {
            if (strcmp(v, "malloc") == 0) o->modes = MODE_MALLOC;
            else if (strcmp(v, "async") == 0) o->modes = MODE_ASYNC;
            else if (strcmp(v, "keep") == 0 || strcmp(v, "async-keep") == 0) o->modes = MODE_KEEP;
            else if (strcmp(v, "all") == 0) o->modes = MODE_ALL;
            else usage_error("--mode is malloc, async, keep or all, not ", v);
        } else if ((v = opt_value(argc, argv, &i, "--timeline"))) {
            o->timeline = (uint64_t)number_in(v, 0, 100000000, "--timeline");
        } else if ((v = opt_value(argc, argv, &i, "--trim-at"))) {
            o->trim_at = v;
        } else if ((v = opt_value(argc, argv, &i, "--cap"))) {
            char *end;
            unsigned long long b = strtoull(v, &end, 10);
            if (*v < '0' || *v > '9' || *end || b == 0) usage_error("bad value for ", "--cap");
            o->cap = (size_t)b;
        } else if (strcmp(a, "--budget-search") == 0) {
            o->budget_search = 1;
        } else if ((v = opt_value(argc, argv, &i, "--budget-step"))) {
            char *end;
            unsigned long long b = strtoull(v, &end, 10);
            if (*v < '0' || *v > '9' || *end) usage_error("bad value for ", "--budget-step");
            o->budget_step = (size_t)b;
        } else if ((v = opt_value(argc, argv, &i, "--repeat"))) {
            o->repeat = number_in(v, 0, 100000, "--repeat");
        } else if ((v = opt_value(argc, argv, &i, "--device"))) {
            o->device = number_in(v, 0, 1 << 20, "--device");
        } else if (strcmp(a, "--table") == 0) {
            o->table = 1;
        } else if (a[0] == '-' && a[1]) {
            usage_error("unknown option ", a);
        } else {
            o->files[o->n_files++] = argv[i];
        }
    }
    if (o->n_files == 0) usage_error("no trace file given", "");
}

/* ---- main ---------------------------------------------------------------------- */

/* "dir/name.catrace.gz" -> "name" (also without .gz). */
static void base_name(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    snprintf(out, cap, "%s", slash ? slash + 1 : path);
    size_t n = strlen(out);
    if (n > 3 && strcmp(out + n - 3, ".gz") == 0) out[n -= 3] = '\0';
    if (n > 8 && strcmp(out + n - 8, ".catrace") == 0) out[n - 8] = '\0';
}

/* Every asked mode on one file; results appended at rs[*n_rs]. Returns the
 * exit status it deserves. */
static int run_file(const options *o, const char *path, cudaMemPool_t pools[2], double *ns, result *rs, int *n_rs)
{
    trace t;
    char err[1024];
    trace_status ts = trace_load(path, &t, err, sizeof err);
    if (ts) {
        fprintf(stderr, "cuarena-baseline: %s (%s)\n", err, trace_status_name(ts));
        return 2;
    }
    replay r = { .t = &t, .ptrs = calloc(t.n_allocs ? t.n_allocs : 1, sizeof(void *)) };
    r.rest = calloc(t.n_live_at_end ? t.n_live_at_end : 1, sizeof *r.rest);
    if (!r.ptrs || !r.rest) die_oom();
    int status = 0;
    for (int mode = MODE_MALLOC; mode <= MODE_KEEP; mode <<= 1) {
        if (!(o->modes & (unsigned)mode)) continue;
        result *res = &rs[(*n_rs)++];
        *res = (result){ .mode = mode, .events = t.n_events, .allocs = t.n_allocs, .peak_live = t.peak_live_bytes };
        if (o->timeline) res->tl.every = t.n_events / o->timeline ? t.n_events / o->timeline : 1;
        base_name(path, res->name, sizeof res->name);
        r.name = res->name;
        r.mode = mode;
        r.pool = mode == MODE_ASYNC ? pools[0] : mode == MODE_KEEP ? pools[1] : NULL;
        measure(&r, o, ns, res);
        print_json(res, o, &t, ns);
        timeline_free(&res->tl);
        if (res->errors) status = 1;
    }
    free(r.rest);
    free(r.ptrs);
    trace_free(&t);
    return status;
}

/* A pool of the device that keeps what it maps (release threshold UINT64_MAX). */
static cudaError_t keep_pool(int device, cudaMemPool_t *pool)
{
    struct cudaMemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    uint64_t keep = UINT64_MAX;
    cudaError_t err = cudaMemPoolCreate(pool, &props);
    if (!err && (err = cudaMemPoolSetAttribute(*pool, cudaMemPoolAttrReleaseThreshold, &keep))) {
        cudaMemPoolDestroy(*pool);
        *pool = NULL;
    }
    return err;
}

/* The device, its context, its default pool (async) and ours (keep): pools[0],
 * pools[1]. 0, or the exit status. */
static int open_device(const options *o, cudaMemPool_t pools[2])
{
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err || count == 0) {
        fprintf(stderr, "cuarena-baseline: no CUDA device (%s): skipped\n",
                cudaGetErrorString(err ? err : cudaErrorNoDevice));
        return 77;
    }
    if (o->device >= count) {
        fprintf(stderr, "cuarena-baseline: --device %d, but there are %d CUDA devices\n", o->device, count);
        return 2;
    }
    pools[0] = pools[1] = NULL;
    if (!(err = cudaSetDevice(o->device)) && !(err = cudaFree(NULL)) && (o->modes & MODE_ASYNC))
        err = cudaDeviceGetDefaultMemPool(&pools[0], o->device);
    if (!err && (o->modes & MODE_KEEP)) err = keep_pool(o->device, &pools[1]);
    if (!err) return bench_pin_thread("cuarena-baseline") ? 2 : 0; /* after the context: see pin.h */
    fprintf(stderr, "cuarena-baseline: device %d: %s (%s)\n", o->device, cudaGetErrorString(err), cudaGetErrorName(err));
    return 1;
}

int main(int argc, char **argv)
{
    options o;
    cudaMemPool_t pools[2];
    parse_args(argc, argv, &o);
    int status = open_device(&o, pools);
    if (status) {
        free(o.files);
        return status;
    }
    result *rs = calloc((size_t)o.n_files * 3, sizeof *rs);
    double *ns = calloc(2 * (size_t)o.repeat + 1, sizeof *ns);
    if (!rs || !ns) die_oom();
    int n_rs = 0;
    for (int i = 0; i < o.n_files; i++) {
        int s = run_file(&o, o.files[i], pools, ns, rs, &n_rs);
        if (s > status) status = s;
    }
    if (o.table) print_table(rs, n_rs, o.repeat);
    if (pools[1]) cudaMemPoolDestroy(pools[1]);
    free(ns);
    free(rs);
    free(o.files);
    return status;
}
