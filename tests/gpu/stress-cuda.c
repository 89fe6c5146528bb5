/*
 * stress-cuda.c - threads on streams of their own allocate, write, verify and
 * free on shared and private arenas for a while, with every block's data
 * checked before it goes:
 *
 *   - each thread has its own stream (cuStreamCreate, non-blocking) and a
 *     private arena (limit 64 MiB; whole segments on odd threads), and uses
 *     two shared arenas: "shared-keep" (keeps its cache) and "shared-poison"
 *     (CUA_ARENA_POISON, release threshold 0: pages go back at every free);
 *   - a block is written on the thread's stream (cuMemsetD32Async) with a
 *     value of its own; before it is freed its first and last 16 words and
 *     one word between are copied back and compared (a corrupted block is
 *     reported with what it holds: 0xdededede is the poison of a freed block,
 *     0xf4eef4ee the late write of another stream);
 *   - blocks of the shared arenas are handed to another thread through a
 *     queue (after a stream synchronisation); the receiver verifies them on
 *     its stream and frees them (a cross-thread free), or records its stream
 *     on them (cua_record_stream), queues a write of 0xf4eef4ee on its stream
 *     and frees them at once: the allocator must not hand them out before
 *     that write is done;
 *   - trims, statistics (checked for consistency), the checker, and the
 *     destroy and re-creation of private arenas, at random.
 * At the end every thread verifies and frees what it holds, the checker runs
 * on every arena, each is destroyed without CUA_DESTROY_FORCE, and the
 * backend must hold nothing.
 *
 *   stress-cuda [--backend cuda|host] [--seconds S] [--threads T]
 *
 * CUA_GPU_STRESS_SECONDS (default 60) and CUA_GPU_STRESS_THREADS (16) set the
 * duration and the threads when the options do not. --backend host runs the
 * same on the host backend (writes and reads by the CPU, streams as numbers,
 * blocks up to 1 MiB): a smoke test for machines without a GPU, and for ASan
 * and TSan. Prints
 *   stress-cuda: T threads, N ops, M blocks verified, K corruption
 *   stress-cuda: checker: ...
 *   stress-cuda: PASS | FAIL
 * Exit status: 0 passed, 1 corruption or any failed check, 77 no CUDA device.
 */
#include "cuarena.h"
#include "cuarena_backend.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include "cudrv.h"
#pragma GCC diagnostic pop

#define MiB ((size_t)1 << 20)
#define MAX_THREADS 64
#define MAX_LIVE 48
#define QCAP 64
#define N_SHARED 2
#define PRIV N_SHARED /* arena index of the thread's private arena */
#define LATE_WRITE 0xf4eef4eeu
#define POISON_WORD (0x01010101u * CUA_POISON_BYTE)

/* ---- the driver (cuda backend only) ------------------------------------------------------ */

static struct {
    CUresult (*GetErrorName)(CUresult, const char **);
    CUresult (*CtxGetCurrent)(CUcontext *);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*StreamCreate)(CUstream *, unsigned);
    CUresult (*StreamDestroy)(CUstream);
    CUresult (*StreamSynchronize)(CUstream);
    CUresult (*MemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream);
    CUresult (*MemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
} cu;

/* The driver's entry points this program needs (tests/gpu/cudrv.h). */
static const char *load_driver(void)
{
    static const cudrv_sym syms[] = {
        CUDRV(cu, GetErrorName), CUDRV(cu, CtxGetCurrent), CUDRV(cu, CtxSetCurrent),
        CUDRV(cu, StreamCreate), CUDRV(cu, StreamDestroy), CUDRV(cu, StreamSynchronize),
        CUDRV(cu, MemsetD32Async), CUDRV(cu, MemcpyDtoHAsync),
    };
    return cudrv_load(syms, sizeof syms / sizeof syms[0]);
}

static const char *cu_name(CUresult r) { return cudrv_error(cu.GetErrorName, r); }

/* ---- shared state -------------------------------------------------------------------------- */

static bool use_cuda = true;
static CUcontext g_ctx;
static cua_backend *g_bk;
static cua_arena *g_shared[N_SHARED];
static const char *const arena_kind[] = {"shared-keep", "shared-poison", "private"};
static int g_threads;
static double g_seconds;
static size_t g_max_size;
static atomic_bool g_stop;
static atomic_int g_failures;
static atomic_ullong g_corrupt;
static pthread_barrier_t g_barrier;

static void fail(int tid, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(int tid, const char *fmt, ...)
{
    if (atomic_fetch_add(&g_failures, 1) < 20) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        printf("stress-cuda: thread %d: FAIL: %s\n", tid, msg);
        fflush(stdout);
    }
    atomic_store(&g_stop, true); /* wind down: the end checks still run */
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- device memory, on the cuda backend or the host ------------------------------------------ */

/* Queue a write of `value` into `words` words at p on the stream. */
static bool dev_fill(int tid, void *p, uint32_t value, size_t words, uintptr_t stream)
{
    if (!use_cuda) {
        uint32_t *w = p;
        for (size_t i = 0; i < words; i++) w[i] = value;
        return true;
    }
    CUresult r = cu.MemsetD32Async((CUdeviceptr)(uintptr_t)p, value, words, (CUstream)stream);
    if (r != CUDA_SUCCESS) fail(tid, "cuMemsetD32Async(%p, %zu words): %s", p, words, cu_name(r));
    return r == CUDA_SUCCESS;
}

/* Queue a copy of n bytes at p to dst on the stream (complete after dev_sync). */
static bool dev_read(int tid, void *dst, const void *p, size_t n, uintptr_t stream)
{
    if (!use_cuda) {
        memcpy(dst, p, n);
        return true;
    }
    CUresult r = cu.MemcpyDtoHAsync(dst, (CUdeviceptr)(uintptr_t)p, n, (CUstream)stream);
    if (r != CUDA_SUCCESS) fail(tid, "cuMemcpyDtoHAsync(%p, %zu bytes): %s", p, n, cu_name(r));
    return r == CUDA_SUCCESS;
}

static bool dev_sync(int tid, uintptr_t stream)
{
    if (!use_cuda) return true;
    CUresult r = cu.StreamSynchronize((CUstream)stream);
    if (r != CUDA_SUCCESS) fail(tid, "cuStreamSynchronize: %s", cu_name(r));
    return r == CUDA_SUCCESS;
}

/* ---- blocks, queues, threads ---------------------------------------------------------------- */

typedef struct blk {
    void *p;
    size_t size;     /* bytes asked for, a multiple of 4 */
    uint32_t value;  /* every word holds it */
    int arena;       /* 0..N_SHARED-1 shared, PRIV the thread's own */
} blk;

typedef struct queue {
    pthread_mutex_t mu;
    blk item[QCAP];
    int head, n;
} queue;

typedef struct worker {
    int tid;
    pthread_t th;
    uintptr_t stream;
    cua_arena *priv;
    queue q;
    blk live[MAX_LIVE];
    int nlive;
    uint64_t rng, seq;
    /* counts */
    uint64_t ops, allocs, frees, verified, handed, received, deferred, trims, trimmed_bytes;
    uint64_t stats, checks, recreated, limit_refusals, sweeps;
} worker;

static worker g_w[MAX_THREADS];

static cua_arena *arena_of(worker *w, int k) { return k == PRIV ? w->priv : g_shared[k]; }

static bool q_push(queue *q, const blk *b)
{
    pthread_mutex_lock(&q->mu);
    bool ok = q->n < QCAP;
    if (ok) q->item[(q->head + q->n++) % QCAP] = *b;
    pthread_mutex_unlock(&q->mu);
    return ok;
}

static bool q_pop(queue *q, blk *out)
{
    pthread_mutex_lock(&q->mu);
    bool ok = q->n > 0;
    if (ok) {
        *out = q->item[q->head];
        q->head = (q->head + 1) % QCAP;
        q->n--;
    }
    pthread_mutex_unlock(&q->mu);
    return ok;
}

/* Compare the block's first and last 16 words and one between with its value
 * (on the thread's stream, which is ordered after the block's last write). */
static bool verify(worker *w, const blk *b)
{
    size_t words = b->size / 4, edge = words < 16 ? words : 16;
    size_t mid = (size_t)(rnd(&w->rng) % words);
    uint32_t buf[33];
    if (!dev_read(w->tid, buf, b->p, edge * 4, w->stream) ||
        !dev_read(w->tid, buf + 16, (const uint32_t *)b->p + (words - edge), edge * 4, w->stream) ||
        !dev_read(w->tid, buf + 32, (const uint32_t *)b->p + mid, 4, w->stream) ||
        !dev_sync(w->tid, w->stream))
        return false;
    w->verified++;
    for (int i = 0; i < 33; i++) {
        if ((i % 16 >= (int)edge && i < 32) || buf[i] == b->value) continue;
        size_t word = i < 16 ? (size_t)i : i < 32 ? words - edge + (size_t)(i - 16) : mid;
        atomic_fetch_add(&g_corrupt, 1);
        fail(w->tid, "CORRUPTION: block %p (%zu bytes, arena %s): word %zu is %#010x, expected "
             "%#010x%s", b->p, b->size, arena_kind[b->arena], word, buf[i], b->value,
             buf[i] == POISON_WORD ? " (the poison of a freed block)" :
             buf[i] == LATE_WRITE ? " (another stream's write after its free)" : "");
        return false;
    }
    return true;
}

static bool free_block(worker *w, const blk *b)
{
    cua_status st = cua_free(b->p);
    if (st != CUA_OK) {
        fail(w->tid, "cua_free(%p) of arena %s: %s: %s", b->p, arena_kind[b->arena],
             cua_status_name(st), cua_last_error());
        return false;
    }
    w->frees++;
    return true;
}

static size_t pick_size(worker *w)
{
    uint64_t r = rnd(&w->rng) % 100;
    size_t s;
    if (r < 70) s = 512 + rnd(&w->rng) % (64 * 1024);
    else if (r < 95) s = 64 * 1024 + rnd(&w->rng) % (2 * MiB);
    else s = 2 * MiB + rnd(&w->rng) % (22 * MiB);
    if (s > g_max_size) s = 512 + rnd(&w->rng) % (g_max_size - 512);
    return s & ~(size_t)3;
}

static uint32_t pick_value(worker *w)
{
    uint32_t v = (uint32_t)rnd(&w->rng) ^ ((uint32_t)w->tid << 24) ^ (uint32_t)w->seq++;
    return v == POISON_WORD || v == LATE_WRITE || v == 0 ? v + 1 : v;
}

static cua_status make_private(worker *w)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "private";
    cfg.backend = g_bk;
    cfg.limit = use_cuda ? 64 * MiB : 32 * MiB;
    cfg.flags = w->tid % 2 ? CUA_ARENA_NO_VMM : 0;
    cfg.va_size = (size_t)4 << 30;
    return cua_arena_create(&cfg, &w->priv);
}

static void op_alloc(worker *w)
{
    int k = rnd(&w->rng) % 10 < 6 ? (int)(rnd(&w->rng) % N_SHARED) : PRIV;
    blk b = {.size = pick_size(w), .value = pick_value(w), .arena = k};
    cua_status st = cua_arena_alloc(arena_of(w, k), b.size, w->stream, &b.p);
    if (st == CUA_ERR_LIMIT && k == PRIV) {
        w->limit_refusals++;
        return;
    }
    if (st != CUA_OK) {
        fail(w->tid, "cua_arena_alloc(%s, %zu bytes): %s: %s", arena_kind[k], b.size,
             cua_status_name(st), cua_last_error());
        return;
    }
    w->allocs++;
    if (dev_fill(w->tid, b.p, b.value, b.size / 4, w->stream)) w->live[w->nlive++] = b;
}

/* Verify and free live block i. */
static void op_free(worker *w, int i)
{
    blk b = w->live[i];
    w->live[i] = w->live[--w->nlive];
    if (verify(w, &b)) free_block(w, &b);
}

static void op_handoff(worker *w)
{
    int i = (int)(rnd(&w->rng) % (uint64_t)w->nlive);
    if (w->live[i].arena == PRIV) return; /* its arena may be destroyed meanwhile */
    int to = g_threads > 1 ? (w->tid + 1 + (int)(rnd(&w->rng) % (uint64_t)(g_threads - 1))) % g_threads
                           : w->tid;
    if (!dev_sync(w->tid, w->stream)) return; /* its write is done before another stream reads */
    if (!q_push(&g_w[to].q, &w->live[i])) return;
    w->live[i] = w->live[--w->nlive];
    w->handed++;
}

/* A block from another thread: verify it here, then free it, or record this
 * stream on it, queue a late write and free it at once. */
static void take(worker *w, const blk *b, bool allow_late)
{
    w->received++;
    if (!verify(w, b)) return;
    if (allow_late && rnd(&w->rng) % 2) {
        cua_status st = cua_record_stream(b->p, w->stream);
        if (st != CUA_OK) {
            fail(w->tid, "cua_record_stream(%p): %s: %s", b->p, cua_status_name(st), cua_last_error());
            return;
        }
        if (!dev_fill(w->tid, b->p, LATE_WRITE, b->size / 4, w->stream)) return;
        w->deferred++;
    }
    free_block(w, b);
}

static void op_receive(worker *w)
{
    blk b;
    for (int n = 0; n < 4 && q_pop(&w->q, &b); n++) take(w, &b, true);
}

static void op_trim(worker *w)
{
    int k = (int)(rnd(&w->rng) % (N_SHARED + 1));
    size_t released = 0, keep = rnd(&w->rng) % 2 ? 0 : 16 * MiB;
    cua_status st = cua_arena_trim(arena_of(w, k), keep, &released);
    if (st != CUA_OK)
        fail(w->tid, "cua_arena_trim(%s): %s: %s", arena_kind[k], cua_status_name(st), cua_last_error());
    w->trims++;
    w->trimmed_bytes += released;
}

static void op_stats(worker *w)
{
    int k = (int)(rnd(&w->rng) % (N_SHARED + 1));
    cua_stats s;
    cua_status st = cua_arena_get_stats(arena_of(w, k), &s);
    if (st != CUA_OK) {
        fail(w->tid, "cua_arena_get_stats(%s): %s: %s", arena_kind[k], cua_status_name(st), cua_last_error());
        return;
    }
    if (s.allocated_bytes < s.live_bytes || s.mapped_bytes < s.allocated_bytes ||
        s.peak_live_bytes < s.live_bytes || s.peak_mapped_bytes < s.mapped_bytes)
        fail(w->tid, "statistics of %s do not add up: live %llu, allocated %llu, mapped %llu, "
             "peaks %llu / %llu", arena_kind[k], (unsigned long long)s.live_bytes,
             (unsigned long long)s.allocated_bytes, (unsigned long long)s.mapped_bytes,
             (unsigned long long)s.peak_live_bytes, (unsigned long long)s.peak_mapped_bytes);
    w->stats++;
}

static void op_check(worker *w)
{
    int k = (int)(rnd(&w->rng) % (N_SHARED + 1));
    cua_status st = cua_arena_check(arena_of(w, k));
    if (st != CUA_OK)
        fail(w->tid, "checker on %s: %s: %s", arena_kind[k], cua_status_name(st), cua_last_error());
    w->checks++;
}

/* Verify and free the private arena's blocks, destroy it (it must be empty)
 * and make a new one. */
static void op_recreate(worker *w)
{
    for (int i = w->nlive - 1; i >= 0 && !atomic_load(&g_stop); i--)
        if (w->live[i].arena == PRIV) op_free(w, i);
    if (atomic_load(&g_stop)) return;
    cua_status st = cua_arena_destroy(w->priv, 0);
    if (st != CUA_OK) {
        fail(w->tid, "destroying the private arena: %s: %s", cua_status_name(st), cua_last_error());
        return;
    }
    w->priv = NULL;
    if ((st = make_private(w)) != CUA_OK) {
        fail(w->tid, "creating a private arena: %s: %s", cua_status_name(st), cua_last_error());
        return;
    }
    w->recreated++;
}

static void *work(void *arg)
{
    worker *w = arg;
    double deadline = now_s() + g_seconds;
    bool ready = true;
    if (use_cuda) {
        CUstream s = NULL;
        CUresult r = cu.CtxSetCurrent(g_ctx);
        if (r == CUDA_SUCCESS) r = cu.StreamCreate(&s, CU_STREAM_NON_BLOCKING);
        if (r != CUDA_SUCCESS) {
            fail(w->tid, "cuCtxSetCurrent / cuStreamCreate: %s", cu_name(r));
            ready = false;
        }
        w->stream = (uintptr_t)s;
    } else {
        w->stream = (uintptr_t)(0x100 + w->tid); /* (0, 1, 2 are the default streams) */
    }
    cua_status st = ready ? make_private(w) : CUA_OK;
    if (st != CUA_OK) {
        fail(w->tid, "creating a private arena: %s: %s", cua_status_name(st), cua_last_error());
        ready = false;
    }
    while (ready && !atomic_load(&g_stop) && now_s() < deadline) {
        uint64_t r = rnd(&w->rng) % 1000;
        w->ops++;
        if (w->nlive == 0 || (r < 400 && w->nlive < MAX_LIVE)) op_alloc(w);
        else if (r < 650) op_free(w, (int)(rnd(&w->rng) % (uint64_t)w->nlive));
        else if (r < 780) op_handoff(w);
        else if (r < 900) op_receive(w);
        else if (r < 930) op_trim(w);
        else if (r < 960) op_stats(w);
        else if (r < 975) op_check(w);
        else if (r < 985) op_recreate(w);
        else { /* verify every live block */
            for (int i = 0; i < w->nlive && !atomic_load(&g_stop); i++) verify(w, &w->live[i]);
            w->sweeps++;
        }
    }
    /* Nobody hands blocks on after this point: empty the queue and the live set. */
    pthread_barrier_wait(&g_barrier);
    blk b;
    while (q_pop(&w->q, &b)) take(w, &b, false);
    while (w->nlive > 0) op_free(w, w->nlive - 1);
    if (w->priv) {
        if ((st = cua_arena_check(w->priv)) != CUA_OK)
            fail(w->tid, "checker on the private arena at the end: %s", cua_last_error());
        w->checks++;
        /* Empty unless a failure left blocks behind (then forced). */
        if ((st = cua_arena_destroy(w->priv, atomic_load(&g_failures) ? CUA_DESTROY_FORCE : 0)) != CUA_OK)
            fail(w->tid, "destroying the private arena at the end: %s", cua_last_error());
    }
    if (w->stream) {
        if (use_cuda) dev_sync(w->tid, w->stream);
        /* The shared arenas know this stream (its frees, its record_streams):
         * they are told before it goes (without it a later miss of theirs
         * records on a destroyed stream: CUDA_ERROR_INVALID_CONTEXT, or a
         * crash). The host backend's streams are destroyed too, so that a
         * missing retire shows there as well. */
        if ((st = cua_stream_retire(0, w->stream)) != CUA_OK)
            fail(w->tid, "cua_stream_retire: %s: %s", cua_status_name(st), cua_last_error());
        if (use_cuda) {
            CUresult r = cu.StreamDestroy((CUstream)w->stream);
            if (r != CUDA_SUCCESS) fail(w->tid, "cuStreamDestroy: %s", cu_name(r));
        } else if ((st = cua_host_stream_destroy(g_bk, w->stream)) != CUA_OK) {
            fail(w->tid, "cua_host_stream_destroy: %s", cua_last_error());
        }
    }
    return NULL;
}

/* ---- main ------------------------------------------------------------------------------------ */

static double env_num(const char *name, double dflt)
{
    const char *v = getenv(name);
    double x = v ? strtod(v, NULL) : 0;
    return x > 0 ? x : dflt;
}

int main(int argc, char **argv)
{
    g_seconds = env_num("CUA_GPU_STRESS_SECONDS", 60);
    g_threads = (int)env_num("CUA_GPU_STRESS_THREADS", 16);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            const char *b = argv[++i];
            if (strcmp(b, "host") != 0 && strcmp(b, "cuda") != 0) goto usage;
            use_cuda = strcmp(b, "cuda") == 0;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            g_seconds = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            g_threads = atoi(argv[++i]);
        } else {
            goto usage;
        }
    }
    if (g_seconds <= 0 || g_threads < 1 || g_threads > MAX_THREADS) goto usage;
    setvbuf(stdout, NULL, _IOLBF, 0);
    g_max_size = use_cuda ? 24 * MiB : MiB;

    cua_status st;
    if (use_cuda) {
        st = cua_backend_cuda_create(0, &g_bk);
        if (st == CUA_ERR_NO_DEVICE || st == CUA_ERR_NOT_SUPPORTED) {
            printf("stress-cuda: skipped: no CUDA device (%s)\n", cua_last_error());
            return 77;
        }
        const char *missing = st == CUA_OK ? load_driver() : NULL;
        CUresult r = CUDA_SUCCESS;
        if (st == CUA_OK && !missing) r = cu.CtxGetCurrent(&g_ctx); /* the backend made it current */
        if (st != CUA_OK || missing || r != CUDA_SUCCESS || !g_ctx) {
            printf("stress-cuda: FAIL: setup: %s\n", st != CUA_OK ? cua_last_error() :
                   missing ? missing : "no current context after cua_backend_cuda_create");
            return 1;
        }
    } else {
        cua_host_config hc;
        cua_host_config_init(&hc);
        if ((st = cua_backend_host_create(&hc, &g_bk)) != CUA_OK) {
            printf("stress-cuda: FAIL: setup: %s\n", cua_last_error());
            return 1;
        }
    }
    for (int k = 0; k < N_SHARED; k++) {
        cua_arena_config cfg;
        cua_arena_config_init(&cfg);
        cfg.name = arena_kind[k];
        cfg.backend = g_bk;
        cfg.va_size = (size_t)64 << 30;
        if (k == 1) {
            cfg.flags = CUA_ARENA_POISON;
            cfg.release_threshold = 0;
        }
        if ((st = cua_arena_create(&cfg, &g_shared[k])) != CUA_OK) {
            printf("stress-cuda: FAIL: creating %s: %s\n", arena_kind[k], cua_last_error());
            return 1;
        }
    }
    printf("stress-cuda: backend %s, %d threads, %.0f s; arenas shared-keep, shared-poison "
           "(poison, release threshold 0), one private per thread (limit %zu MiB; whole segments "
           "on odd threads)\n", use_cuda ? "cuda (device 0)" : "host", g_threads, g_seconds,
           (use_cuda ? 64 * MiB : 32 * MiB) / MiB);

    pthread_barrier_init(&g_barrier, NULL, (unsigned)g_threads);
    double t0 = now_s();
    for (int t = 0; t < g_threads; t++) { /* every queue before any thread: they hand on at once */
        g_w[t].tid = t;
        g_w[t].rng = 0x5eed0000u + (uint64_t)t;
        pthread_mutex_init(&g_w[t].q.mu, NULL);
    }
    for (int t = 0; t < g_threads; t++) {
        worker *w = &g_w[t];
        if (pthread_create(&w->th, NULL, work, w) != 0) {
            printf("stress-cuda: FAIL: pthread_create\n");
            return 1; /* the barrier could never open */
        }
    }
    worker sum = {0};
    for (int t = 0; t < g_threads; t++) {
        worker *w = &g_w[t];
        pthread_join(w->th, NULL);
        sum.ops += w->ops, sum.allocs += w->allocs, sum.frees += w->frees;
        sum.verified += w->verified, sum.handed += w->handed, sum.received += w->received;
        sum.deferred += w->deferred, sum.trims += w->trims, sum.trimmed_bytes += w->trimmed_bytes;
        sum.stats += w->stats, sum.checks += w->checks, sum.recreated += w->recreated;
        sum.limit_refusals += w->limit_refusals, sum.sweeps += w->sweeps;
    }
    double secs = now_s() - t0;

    /* The shared arenas: checked, empty, destroyed without force; then the backend. */
    int end_checks = 0, end_failed = 0;
    for (int k = 0; k < N_SHARED; k++) {
        cua_stats s;
        end_checks++;
        if (cua_arena_check(g_shared[k]) != CUA_OK) {
            printf("stress-cuda: FAIL: checker on %s at the end: %s\n", arena_kind[k], cua_last_error());
            end_failed++;
        }
        if (cua_arena_get_stats(g_shared[k], &s) != CUA_OK || s.live_blocks != 0) {
            printf("stress-cuda: FAIL: %s holds %llu live blocks at the end\n", arena_kind[k],
                   (unsigned long long)s.live_blocks);
            end_failed++;
        }
        if (cua_arena_destroy(g_shared[k], atomic_load(&g_failures) ? CUA_DESTROY_FORCE : 0) != CUA_OK) {
            printf("stress-cuda: FAIL: destroying %s: %s\n", arena_kind[k], cua_last_error());
            end_failed++;
        }
    }
    cua_backend_stats bs;
    if (cua_backend_get_stats(g_bk, &bs) == CUA_OK)
        printf("stress-cuda: backend calls: map %llu, unmap %llu, create %llu, alloc %llu, "
               "fill %llu, event record %llu, query %llu, stream sync %llu; failures %llu\n",
               (unsigned long long)bs.calls[CUA_CALL_MAP], (unsigned long long)bs.calls[CUA_CALL_UNMAP],
               (unsigned long long)bs.calls[CUA_CALL_CREATE], (unsigned long long)bs.calls[CUA_CALL_ALLOC],
               (unsigned long long)bs.calls[CUA_CALL_FILL],
               (unsigned long long)bs.calls[CUA_CALL_EVENT_RECORD],
               (unsigned long long)bs.calls[CUA_CALL_EVENT_QUERY],
               (unsigned long long)bs.calls[CUA_CALL_STREAM_SYNC], (unsigned long long)bs.failures);
    if ((st = cua_backend_destroy(g_bk)) != CUA_OK) {
        printf("stress-cuda: FAIL: cua_backend_destroy: %s: %s\n", cua_status_name(st), cua_last_error());
        end_failed++;
    }

    unsigned long long corrupt = atomic_load(&g_corrupt);
    int failures = atomic_load(&g_failures);
    printf("stress-cuda: %.1f s: %llu allocs, %llu frees, %llu handed to another thread (%llu "
           "freed there after a late write on its stream), %llu trims released %.1f MiB, %llu "
           "stats, %llu private arenas re-created, %llu refused by the limit, %llu sweeps\n",
           secs, (unsigned long long)sum.allocs, (unsigned long long)sum.frees,
           (unsigned long long)sum.received, (unsigned long long)sum.deferred,
           (unsigned long long)sum.trims, (double)sum.trimmed_bytes / (double)MiB,
           (unsigned long long)sum.stats, (unsigned long long)sum.recreated,
           (unsigned long long)sum.limit_refusals, (unsigned long long)sum.sweeps);
    printf("stress-cuda: %d threads, %llu ops, %llu blocks verified, %llu corruption\n", g_threads,
           (unsigned long long)sum.ops, (unsigned long long)sum.verified, corrupt);
    printf("stress-cuda: checker: %llu runs on all arenas during the run and on the private ones "
           "at the end, %s; on the %d shared arenas at the end: %d problems (checker, blocks "
           "left, destroy)\n", (unsigned long long)sum.checks,
           failures ? "see the FAIL lines" : "all passed", end_checks, end_failed);
    bool pass = corrupt == 0 && failures == 0 && end_failed == 0 && sum.allocs > 0;
    printf("stress-cuda: %s%s\n", pass ? "PASS" : "FAIL",
           failures > 20 ? " (the first 20 failures are printed)" : "");
    return pass ? 0 : 1;

usage:
    fprintf(stderr, "usage: stress-cuda [--backend cuda|host] [--seconds S] [--threads 1..%d]\n",
            MAX_THREADS);
    return 2;
}
