/*
 * mt.c - cuarena-mt: allocation throughput with several threads, each on a
 * stream of its own, all allocating from one arena (or, for comparison, from
 * cudaMallocAsync's default pool).
 *
 * Each thread keeps a window of live blocks: it allocates a size drawn from
 * the allocation sizes of a trace (default: a bundled one) and, once the window
 * is full, frees the oldest; one op = one alloc + one free. The clock runs
 * from a barrier that starts every thread to the moment the last one is done.
 * Per thread count one JSON line: ops per second in all, per thread, and the
 * speedup over one thread, and peak mapped / peak live. The peak live is what
 * the threads held, counted exactly in a run of its own after the timed one
 * (one shared counter that every op updates would slow the timed run): the
 * arena's own peak_live_bytes counts blocks waiting in threads' caches as
 * live, so its ratio, from the timed run, is reported apart
 * (peak_mapped_over_arena_live). The arena is checked empty afterwards.
 *
 * With --cross 1 the blocks are freed by another thread than the one that
 * allocated them: the oldest block of a thread's window goes to the next
 * thread's mailbox (a queue of one writer and one reader), which frees it;
 * when the mailbox is full its owner frees it itself. One op is still one
 * alloc and one free.
 *
 * With --interleave 1 the threads' loops run on one thread, an op of each in
 * turn: what placement does with many streams, deterministically.
 *
 *   cuarena-mt [--mode cuarena|async] [--backend host|cuda] [--threads 1,2,4]
 *              [--ops N] [--window W] [--sizes TRACE] [--conf OPTIONS] [--cross 1]
 *              [--interleave 1]
 *
 * Exit status: 0 ok, 1 an allocation failed or memory was left behind,
 * 2 usage or input error, 77 the CUDA pieces asked for are not there.
 */
#include "trace.h"

#include "cuarena.h"
#include "cuarena_backend.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef CUA_MT_CUDART
#include <cuda_runtime.h>
#endif

#define MAX_THREADS 64

static const char usage_text[] =
    "usage: cuarena-mt [options]\n"
    "Alloc+free throughput of 1..N threads, each on its own stream, one arena.\n"
    "  --mode cuarena|async   cuarena (default), or cudaMallocAsync's default pool\n"
    "  --backend host|cuda    cuarena's backend (default host)\n"
    "  --threads LIST         thread counts, comma-separated (default 1,2,4,8,16)\n"
    "  --ops N                ops (alloc + free) per thread (default 200000)\n"
    "  --window W             live blocks per thread (default 64)\n"
    "  --conf STRING          arena options (CUARENA_CONF syntax), e.g. thread_cache:off\n"
    "  --sizes FILE           draw sizes from this trace's allocations\n"
    "                         (default bench/traces/gpt2_generate.catrace.gz)\n"
    "  --label NAME           the allocator's name in the JSON lines (default: cuarena,\n"
    "                         or cudaMallocAsync): a build variant measured beside\n"
    "  --cross 0|1            1: blocks are freed by the next thread, not their own\n"
    "  --interleave 0|1       1: the threads' loops run on one thread, an op of each in\n"
    "                         turn: page moves repeat exactly (no timing of threads)\n";

typedef struct options {
    int async;
    const char *backend, *sizes, *conf, *label;
    int threads[16], n_threads;
    long ops, window;
    int cross, interleave;
} options;

/* A mailbox: blocks one thread hands the next to free (one writer, one
 * reader; the writer frees a block itself when it is full). */
#define MAILBOX 256
typedef struct mailbox {
    _Atomic size_t head, tail; /* (tail: the writer's; head: the reader's) */
    struct {
        void *p;
        uint64_t size;
    } slot[MAILBOX];
} mailbox;

typedef struct shared {
    const options *o;
    bool counting;                 /* the memory run: live bytes counted */
    _Atomic uint64_t live, peak_live;
    cua_arena *arena;
    const uint64_t *sizes;
    size_t n_sizes;
    pthread_barrier_t start, end;
    mailbox box[MAX_THREADS]; /* thread i writes box[i], thread i + 1 reads it */
    int n;
    int failures;
    pthread_mutex_t mu;
} shared;

typedef struct worker {
    shared *s;
    int index;
    uintptr_t stream;
    uint64_t t_done;
} worker;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int alloc_one(shared *s, uintptr_t stream, size_t size, void **p)
{
#ifdef CUA_MT_CUDART
    if (s->o->async) return cudaMallocAsync(p, size, (cudaStream_t)stream) == cudaSuccess ? 0 : -1;
#endif
    return cua_arena_alloc(s->arena, size, (cua_stream)stream, p) == CUA_OK ? 0 : -1;
}

static int free_one(shared *s, uintptr_t stream, void *p)
{
#ifdef CUA_MT_CUDART
    if (s->o->async) return cudaFreeAsync(p, (cudaStream_t)stream) == cudaSuccess ? 0 : -1;
#endif
    (void)s;
    (void)stream;
    return cua_free(p) == CUA_OK ? 0 : -1;
}

static bool box_put(mailbox *m, void *p, uint64_t size)
{
    size_t t = atomic_load_explicit(&m->tail, memory_order_relaxed);
    if (t - atomic_load_explicit(&m->head, memory_order_acquire) == MAILBOX) return false;
    m->slot[t % MAILBOX].p = p;
    m->slot[t % MAILBOX].size = size;
    atomic_store_explicit(&m->tail, t + 1, memory_order_release);
    return true;
}

static void *box_take(mailbox *m, uint64_t *size)
{
    size_t h = atomic_load_explicit(&m->head, memory_order_relaxed);
    if (h == atomic_load_explicit(&m->tail, memory_order_acquire)) return NULL;
    void *p = m->slot[h % MAILBOX].p;
    *size = m->slot[h % MAILBOX].size;
    atomic_store_explicit(&m->head, h + 1, memory_order_release);
    return p;
}

/* The memory run: `d` bytes more (or fewer) live, and the peak. */
static void count_live(shared *s, int64_t d)
{
    uint64_t now = atomic_fetch_add_explicit(&s->live, (uint64_t)d, memory_order_relaxed) +
                   (uint64_t)d;
    uint64_t peak = atomic_load_explicit(&s->peak_live, memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak_explicit(&s->peak_live, &peak, now,
                                                                memory_order_relaxed,
                                                                memory_order_relaxed)) {
    }
}

/* Free a block of `size` bytes (and count it gone in the memory run). */
static int free_counted(shared *s, worker *w, void *p, uint64_t size)
{
    int fails = free_one(s, w->stream, p) != 0;
    if (s->counting) count_live(s, -(int64_t)size);
    return fails;
}

/* Free the block leaving a window: with --cross, through the next thread. */
static int retire(shared *s, worker *w, void *p, uint64_t size)
{
    if (s->o->cross && box_put(&s->box[w->index], p, size)) return 0;
    return free_counted(s, w, p, size);
}

/* --cross: free what the previous thread handed over (all of it: `drain`). */
static int take_frees(shared *s, worker *w, bool drain)
{
    mailbox *in = &s->box[(w->index + s->n - 1) % s->n];
    int fails = 0;
    uint64_t size;
    for (void *p; (p = box_take(in, &size));) {
        fails += free_counted(s, w, p, size);
        if (!drain) break;
    }
    return fails;
}

/* A worker's loop state: its window of live blocks, its size stream, its op. */
typedef struct loop {
    void **ring;
    uint64_t *ring_size; /* the window's sizes, for the memory run's count */
    uint64_t x;
    long i;
    int fails;
} loop;

static void loop_init(loop *l, shared *s, worker *w)
{
    l->ring = calloc((size_t)s->o->window, sizeof *l->ring);
    l->ring_size = calloc((size_t)s->o->window, sizeof *l->ring_size);
    l->x = 0x9e3779b97f4a7c15ull * (uint64_t)(w->index + 1); /* per-thread sizes */
    l->i = 0;
    l->fails = l->ring && l->ring_size ? 0 : 1;
}

static bool loop_live(const loop *l, const shared *s)
{
    return l->ring && l->i < s->o->ops && !l->fails;
}

/* One op: the block leaving the window goes, a new one comes. */
static void loop_step(loop *l, shared *s, worker *w)
{
    long k = l->i++ % s->o->window;
    if (l->ring[k]) l->fails += retire(s, w, l->ring[k], l->ring_size[k]);
    if (s->o->cross) l->fails += take_frees(s, w, false);
    l->x ^= l->x << 13, l->x ^= l->x >> 7, l->x ^= l->x << 17;
    l->ring_size[k] = s->sizes[l->x % s->n_sizes];
    l->fails += alloc_one(s, w->stream, (size_t)l->ring_size[k], &l->ring[k]) != 0;
    if (s->counting && l->ring[k]) count_live(s, (int64_t)l->ring_size[k]);
}

static void loop_end(loop *l, shared *s, worker *w)
{
    for (long k = 0; l->ring && k < s->o->window; k++)
        if (l->ring[k]) l->fails += free_one(s, w->stream, l->ring[k]) != 0;
    free(l->ring);
    free(l->ring_size);
    l->ring = NULL;
    l->ring_size = NULL;
}

static void add_failures(shared *s, int fails)
{
    pthread_mutex_lock(&s->mu);
    s->failures += fails;
    pthread_mutex_unlock(&s->mu);
}

static void *work(void *arg)
{
    worker *w = arg;
    shared *s = w->s;
    loop l;
    loop_init(&l, s, w);
    pthread_barrier_wait(&s->start);
    while (loop_live(&l, s)) loop_step(&l, s, w);
    loop_end(&l, s, w);
    if (s->o->cross) { /* what the previous thread still hands over */
        pthread_barrier_wait(&s->end);
        l.fails += take_frees(s, w, true);
    }
    w->t_done = now_ns();
    add_failures(s, l.fails);
    return NULL;
}

/* --interleave: the n workers' loops on this one thread, an op of each in
 * turn. Placement and page moves then repeat exactly from run to run (no
 * scheduler in between), which the threads' own runs do not. */
static double run_interleaved(shared *s, int n, uintptr_t *streams, int *ok)
{
    worker w[MAX_THREADS];
    loop l[MAX_THREADS];
    s->n = n;
    s->failures = 0;
    for (int i = 0; i < n; i++) {
        atomic_store(&s->box[i].head, atomic_load(&s->box[i].tail));
        w[i] = (worker){s, i, streams[i], 0};
        loop_init(&l[i], s, &w[i]);
    }
    uint64_t t0 = now_ns();
    for (bool more = true; more;) {
        more = false;
        for (int i = 0; i < n; i++)
            if (loop_live(&l[i], s)) loop_step(&l[i], s, &w[i]), more = true;
    }
    for (int i = 0; i < n; i++) loop_end(&l[i], s, &w[i]);
    for (int i = 0; s->o->cross && i < n; i++) l[i].fails += take_frees(s, &w[i], true);
    uint64_t t1 = now_ns();
    for (int i = 0; i < n; i++) s->failures += l[i].fails;
    *ok = s->failures == 0;
    return (double)s->o->ops * n / ((double)(t1 - t0) * 1e-9);
}

/* ops/s of n threads; *ok = 0 when something failed. */
static double run(shared *s, int n, uintptr_t *streams, int *ok)
{
    if (s->o->interleave) return run_interleaved(s, n, streams, ok);
    worker w[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    pthread_barrier_init(&s->start, NULL, (unsigned)n + 1);
    pthread_barrier_init(&s->end, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) atomic_store(&s->box[i].head, atomic_load(&s->box[i].tail));
    s->n = n;
    s->failures = 0;
    int started = 0;
    for (int i = 0; i < n; i++) {
        w[i] = (worker){s, i, streams[i], 0};
        if (pthread_create(&th[i], NULL, work, &w[i]) != 0) break;
        started++;
    }
    if (started < n) { /* cannot happen twice: the barrier would wait forever */
        fprintf(stderr, "cuarena-mt: could start only %d of %d threads\n", started, n);
        exit(2);
    }
    uint64_t t0 = now_ns();
    pthread_barrier_wait(&s->start);
    uint64_t t1 = t0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (w[i].t_done > t1) t1 = w[i].t_done;
    }
    pthread_barrier_destroy(&s->start);
    pthread_barrier_destroy(&s->end);
    *ok = s->failures == 0;
    return (double)s->o->ops * n / ((double)(t1 - t0) * 1e-9);
}

static void parse(int argc, char **argv, options *o)
{
    *o = (options){.backend = "host", .sizes = "bench/traces/gpt2_generate.catrace.gz",
                   .threads = {1, 2, 4, 8, 16}, .n_threads = 5, .ops = 200000, .window = 64};
    for (int i = 1; i < argc; i += 2) { /* every option takes a value, --help aside */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (!strcmp(a, "--mode") && v) {
            o->async = !strcmp(v, "async");
            if (!o->async && strcmp(v, "cuarena")) break;
        } else if (!strcmp(a, "--backend") && v) {
            o->backend = v;
        } else if (!strcmp(a, "--sizes") && v) {
            o->sizes = v;
        } else if (!strcmp(a, "--conf") && v) {
            o->conf = v;
        } else if (!strcmp(a, "--label") && v && !strpbrk(v, "\"\\")) {
            o->label = v; /* (printed into JSON as it is) */
        } else if (!strcmp(a, "--ops") && v && (o->ops = atol(v)) > 0) {
        } else if (!strcmp(a, "--window") && v && (o->window = atol(v)) > 0) {
        } else if (!strcmp(a, "--cross") && v && (!strcmp(v, "0") || !strcmp(v, "1"))) {
            o->cross = *v == '1';
        } else if (!strcmp(a, "--interleave") && v && (!strcmp(v, "0") || !strcmp(v, "1"))) {
            o->interleave = *v == '1';
        } else if (!strcmp(a, "--threads") && v) {
            o->n_threads = 0;
            for (const char *p = v; *p && o->n_threads < 16; p = strchr(p, ',') ? strchr(p, ',') + 1 : "") {
                int t = atoi(p);
                if (t < 1 || t > MAX_THREADS) {
                    fprintf(stderr, "cuarena-mt: thread counts are 1..%d\n", MAX_THREADS);
                    exit(2);
                }
                o->threads[o->n_threads++] = t;
            }
        } else {
            fprintf(stderr, "cuarena-mt: bad argument '%s'\n%s", a, usage_text);
            exit(2);
        }
    }
}

/* The trace's allocation sizes. */
static uint64_t *load_sizes(const char *path, size_t *n)
{
    trace t;
    char err[512];
    trace_status ts = trace_load(path, &t, err, sizeof err);
    if (ts) {
        fprintf(stderr, "cuarena-mt: %s (%s)\n", err, trace_status_name(ts));
        exit(2);
    }
    uint64_t *v = malloc((t.n_allocs ? t.n_allocs : 1) * sizeof *v);
    *n = 0;
    for (size_t i = 0; v && i < t.n_events; i++)
        if (t.events[i].op == TRACE_ALLOC) v[(*n)++] = t.events[i].size;
    trace_free(&t);
    if (!v || !*n) {
        fprintf(stderr, "cuarena-mt: no allocation sizes in %s\n", path);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    options o;
    parse(argc, argv, &o);
    shared s = {.o = &o};
    pthread_mutex_init(&s.mu, NULL);
    s.sizes = load_sizes(o.sizes, &s.n_sizes);
    uintptr_t streams[MAX_THREADS];
    for (int i = 0; i < MAX_THREADS; i++) streams[i] = (uintptr_t)i + 1; /* host: any numbers */
    const char *who = o.label ? o.label : o.async ? "cudaMallocAsync" : "cuarena";
#ifdef CUA_MT_CUDART
    int use_cuda = o.async || !strcmp(o.backend, "cuda");
    for (int i = 0; use_cuda && i < MAX_THREADS; i++)
        if (cudaStreamCreateWithFlags((cudaStream_t *)&streams[i], cudaStreamNonBlocking)) {
            fprintf(stderr, "cuarena-mt: no CUDA device for the streams: skipped\n");
            return 77;
        }
#else
    if (o.async || strcmp(o.backend, "host")) {
        fprintf(stderr, "cuarena-mt: built without the CUDA runtime: only --backend host\n");
        return 77;
    }
#endif
    cua_backend *bk = NULL;
    if (!o.async) {
        cua_status st = !strcmp(o.backend, "cuda") ? cua_backend_cuda_create(0, &bk)
                                                   : cua_backend_host_create(NULL, &bk);
        cua_arena_config cfg;
        cua_arena_config_init(&cfg);
        cfg.name = "mt";
        cfg.backend = bk;
        if (st == CUA_OK && o.conf) st = cua_config_parse(o.conf, &cfg);
        if (st == CUA_OK) st = cua_arena_create(&cfg, &s.arena);
        if (st != CUA_OK) {
            fprintf(stderr, "cuarena-mt: %s\n", cua_last_error());
            return st == CUA_ERR_NO_DEVICE ? 77 : 2;
        }
    }
    int status = 0;
    double base = 0;
    for (int i = 0; i < o.n_threads; i++) {
        int ok = 1;
        run(&s, o.threads[i], streams, &ok); /* warm-up: the arena's pages, the pool */
        cua_stats before = {0}, after = {0};
        if (s.arena) {
            cua_arena_reset_peaks(s.arena);
            cua_arena_get_stats(s.arena, &before);
        }
        double ops = run(&s, o.threads[i], streams, &ok);
        if (s.arena) cua_arena_get_stats(s.arena, &after);
        uint64_t allocs = after.alloc_count - before.alloc_count;
        double hits = allocs ? (double)(after.tcache_allocs - before.tcache_allocs) / (double)allocs : 0;
        /* driver (backend) calls in the timed run: the fast path should make none */
        uint64_t calls = 0, call_ns = 0;
        for (int k = 0; k < CUA_CALL_COUNT; k++) {
            calls += after.calls[k] - before.calls[k];
            call_ns += after.call_ns[k] - before.call_ns[k];
        }
        if (i == 0 || o.threads[i] == 1) base = ops / o.threads[i];
        char drv[2048] = "\"driver_calls\":null,\"driver_ms\":null"; /* cudaMallocAsync: not seen */
        if (s.arena) {
            int at = snprintf(drv, sizeof drv, "\"driver_calls\":%" PRIu64 ",\"driver_ms\":%.1f,"
                              "\"driver_calls_by_kind\":{", calls, (double)call_ns / 1e6);
            const char *sep = "";
            for (int k = 0; k < CUA_CALL_COUNT && at > 0 && (size_t)at < sizeof drv; k++) {
                uint64_t n = after.calls[k] - before.calls[k];
                if (!n) continue;
                at += snprintf(drv + at, sizeof drv - (size_t)at, "%s\"%s\":%" PRIu64, sep,
                               cua_call_name((cua_call)k), n);
                sep = ",";
            }
            at += at > 0 && (size_t)at < sizeof drv
                      ? snprintf(drv + at, sizeof drv - (size_t)at, "},\"driver_ms_by_kind\":{")
                      : 0;
            sep = "";
            for (int k = 0; k < CUA_CALL_COUNT && at > 0 && (size_t)at < sizeof drv; k++) {
                uint64_t ns = after.call_ns[k] - before.call_ns[k];
                if (after.calls[k] == before.calls[k]) continue;
                at += snprintf(drv + at, sizeof drv - (size_t)at, "%s\"%s\":%.2f", sep,
                               cua_call_name((cua_call)k), (double)ns / 1e6);
                sep = ",";
            }
            if (at > 0 && (size_t)at < sizeof drv) snprintf(drv + at, sizeof drv - (size_t)at, "}");
        }
        /* peak mapped / peak live: of the memory run, with the threads' own
         * count of live bytes; of the timed run, with the arena's (which
         * counts blocks in threads' caches as live) */
        char ratio[64] = "null", arena_ratio[64] = "null";
        if (s.arena && after.peak_live_bytes)
            snprintf(arena_ratio, sizeof arena_ratio, "%.4f",
                     (double)after.peak_mapped_bytes / (double)after.peak_live_bytes);
        if (s.arena) {
            cua_stats mem = {0};
            cua_arena_reset_peaks(s.arena);
            atomic_store(&s.live, 0);
            atomic_store(&s.peak_live, 0);
            s.counting = true;
            run(&s, o.threads[i], streams, &ok);
            s.counting = false;
            uint64_t peak_live = atomic_load(&s.peak_live);
            if (cua_arena_get_stats(s.arena, &mem) == CUA_OK && peak_live)
                snprintf(ratio, sizeof ratio, "%.4f",
                         (double)mem.peak_mapped_bytes / (double)peak_live);
        }
        printf("{\"allocator\":\"%s\",\"conf\":\"%s\",\"backend\":\"%s\",\"cross\":%d,\"threads\":%d,"
               "\"interleave\":%d,\"ops_per_s\":%.0f,\"ops_per_s_per_thread\":%.0f,\"speedup_over_one\":%.2f,"
               "\"thread_cache_hits\":%.3f,\"peak_mapped_over_live\":%s,"
               "\"peak_mapped_over_arena_live\":%s,%s,\"failures\":%d}\n",
               who, o.conf ? o.conf : "", o.async ? "cuda" : o.backend, o.cross, o.threads[i], o.interleave, ops,
               ops / o.threads[i], base > 0 ? ops / base : 0, hits, ratio, arena_ratio, drv,
               ok ? 0 : 1);
        if (!ok) status = 1;
    }
    if (s.arena) {
        cua_stats st;
        size_t released;
        cua_arena_trim(s.arena, 0, &released);
        if (cua_arena_get_stats(s.arena, &st) != CUA_OK || st.live_blocks || st.mapped_bytes) {
            fprintf(stderr, "cuarena-mt: memory left behind: %" PRIu64 " blocks, %" PRIu64
                            " bytes mapped\n", st.live_blocks, st.mapped_bytes);
            status = 1;
        }
        if (cua_arena_destroy(s.arena, 0) != CUA_OK || cua_backend_destroy(bk) != CUA_OK) {
            fprintf(stderr, "cuarena-mt: %s\n", cua_last_error());
            status = 1;
        }
    }
    free((void *)s.sizes);
    return status;
}
