/*
 * fuzz-mt.c - the fuzzer's multi-threaded mode (CUA_FUZZ_THREADS=N, 2 to 8:
 * fuzz-api.c hands every input here instead). An input's first bytes
 * configure two arenas on one host backend (manual events: work stays "in
 * flight" on four streams until completed); the rest is split into N equal
 * parts, one per thread, and the threads run their parts at once on the
 * shared arenas: alloc (good sizes on four streams), free of their own
 * blocks, hand-overs of blocks to another thread through its small locked
 * inbox (that thread frees them: cross-thread frees, also through thread
 * caches), record_stream, trim, limits and release thresholds, statistics,
 * pointer info, the checker, and stream completion.
 *
 * Checks: every status is one the call may return; every block a thread
 * holds keeps its pattern (blocks up to 64 KiB are filled whole, larger ones
 * in a stripe every 64 KiB), checked before each free and at each hand-over;
 * after the threads end, no two live blocks overlap and each arena's live
 * bytes equal the model's; then everything is freed (from the main thread:
 * cross-thread again), trimmed and destroyed, and the backend must hold
 * nothing. A violation aborts, naming the thread and its operation.
 *
 * Each thread's operations follow from its bytes alone; what interleaves
 * (hand-overs, out-of-memory answers under another thread's limit) follows
 * the scheduler, so an input replays the same calls, not the same order.
 */
#include "fuzz-mt.h"

#include "cuarena.h"
#include "cuarena_backend.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MT_MAX_THREADS 8
#define MT_ARENAS 2
#define MT_NSTREAMS 4
#define MT_LIVE 64                      /* blocks one thread holds */
#define MT_INBOX 16                     /* blocks handed to a thread, not yet taken */
#define MT_GRAN ((size_t)512 << 10)
#define MT_CAPACITY ((size_t)256 << 20)
#define MT_STRIPE ((size_t)64 << 10)    /* blocks up to this are filled whole */
#define MT_STRIPE_LEN 64

typedef struct mt_block {
    unsigned char *p;
    size_t size;
    uint32_t seed;
    int arena;
} mt_block;

typedef struct mt_thread {
    int id;
    pthread_t th;
    const uint8_t *p; /* its part of the input */
    size_t n;
    uint64_t op;      /* its operation number, for messages */
    mt_block live[MT_LIVE];
    int nlive;
    pthread_mutex_t inbox_mu;
    mt_block inbox[MT_INBOX];
    int ninbox;
} mt_thread;

static struct {
    cua_backend *host;
    cua_arena *a[MT_ARENAS];
    mt_thread t[MT_MAX_THREADS];
    int nthreads;
    _Atomic int go;
    _Atomic uint64_t ops;
    uint64_t inputs, creates;
} M;

static const cua_stream mt_streams[MT_NSTREAMS] = {0, 0x100, 0x200, 0x300};

/* ---- input and checks ---------------------------------------------------------- */

typedef struct mt_reader {
    const uint8_t *p;
    size_t n;
} mt_reader;

static unsigned rd8(mt_reader *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static unsigned rd16(mt_reader *r)
{
    unsigned lo = rd8(r); /* (two statements: the order of reads is fixed) */
    return lo | rd8(r) << 8;
}

static void mt_die(const mt_thread *t, const char *what, cua_status st)
{
    fprintf(stderr, "fuzz-api (threads): thread %d, operation %llu: %s (%s; last error: %s)\n",
            t ? t->id : -1, t ? (unsigned long long)t->op : 0ull, what, cua_status_name(st),
            cua_last_error());
    abort();
}

static void mt_expect(const mt_thread *t, int ok, const char *what, cua_status st)
{
    if (!ok) mt_die(t, what, st);
}

static inline unsigned char pattern_at(const mt_block *b, size_t i)
{
    return (unsigned char)(b->seed + i * 7 + (i >> 8));
}

/* Apply fn to every byte range of b that carries its pattern. */
static void for_stripes(const mt_block *b, void (*fn)(const mt_block *, size_t, size_t))
{
    if (b->size <= MT_STRIPE) {
        fn(b, 0, b->size);
        return;
    }
    for (size_t at = 0; at + MT_STRIPE_LEN <= b->size; at += MT_STRIPE) fn(b, at, MT_STRIPE_LEN);
    fn(b, b->size - MT_STRIPE_LEN, MT_STRIPE_LEN);
}

static void fill_range(const mt_block *b, size_t at, size_t len)
{
    for (size_t i = at; i < at + len; i++) b->p[i] = pattern_at(b, i);
}

static _Thread_local const mt_thread *tl_self;

static void check_range(const mt_block *b, size_t at, size_t len)
{
    for (size_t i = at; i < at + len; i++)
        if (b->p[i] != pattern_at(b, i)) mt_die(tl_self, "a live block lost its contents", CUA_OK);
}

static void fill(const mt_block *b) { for_stripes(b, fill_range); }
static void verify(const mt_block *b) { for_stripes(b, check_range); }

/* ---- blocks -------------------------------------------------------------------- */

static void free_block(mt_thread *t, const mt_block *b)
{
    verify(b);
    cua_status st = cua_free(b->p);
    mt_expect(t, st == CUA_OK, "free of a live block", st);
}

/* Keep b as t's (freed at once when t holds too many). */
static void keep(mt_thread *t, const mt_block *b)
{
    if (t->nlive == MT_LIVE) {
        free_block(t, b);
        return;
    }
    t->live[t->nlive++] = *b;
}

static mt_block take_live(mt_thread *t, unsigned k)
{
    int j = (int)(k % (unsigned)t->nlive);
    mt_block b = t->live[j];
    t->live[j] = t->live[--t->nlive];
    return b;
}

/* The blocks other threads handed to t become t's. */
static void drain_inbox(mt_thread *t)
{
    mt_block got[MT_INBOX];
    pthread_mutex_lock(&t->inbox_mu);
    int n = t->ninbox;
    memcpy(got, t->inbox, (size_t)n * sizeof *got);
    t->ninbox = 0;
    pthread_mutex_unlock(&t->inbox_mu);
    for (int i = 0; i < n; i++) {
        verify(&got[i]);
        keep(t, &got[i]);
    }
}

/* Give b to thread `to`; false when its inbox is full. */
static int hand_to(mt_thread *to, const mt_block *b)
{
    pthread_mutex_lock(&to->inbox_mu);
    int ok = to->ninbox < MT_INBOX;
    if (ok) to->inbox[to->ninbox++] = *b;
    pthread_mutex_unlock(&to->inbox_mu);
    return ok;
}

/* ---- operations ---------------------------------------------------------------- */

static size_t mt_size(mt_reader *r)
{
    unsigned k = rd8(r), v = rd16(r);
    switch (k % 4) {
    case 0: return 1 + v % 4096;
    case 1: return 1 + (size_t)v * 16;
    case 2: return 1 + (size_t)v * 64;
    default: return (size_t)(1 + v % 16) * MT_GRAN;
    }
}

static void op_alloc(mt_thread *t, mt_reader *r, int i)
{
    size_t size = mt_size(r);
    cua_stream s = mt_streams[rd8(r) % MT_NSTREAMS];
    void *p = NULL;
    cua_status st = cua_arena_alloc(M.a[i], size, s, &p);
    if (st != CUA_OK) {
        mt_expect(t, st == CUA_ERR_OUT_OF_MEMORY || st == CUA_ERR_LIMIT, "alloc status", st);
        mt_expect(t, !p && cua_last_error()[0], "a failed alloc: NULL and a message", st);
        return;
    }
    mt_expect(t, p && ((uintptr_t)p & 255) == 0, "alloc returns an aligned pointer", st);
    mt_block b = {p, size, (uint32_t)(t->id * 0x9e3779b9u + t->op * 2654435761u), i};
    fill(&b);
    keep(t, &b);
}

static void op_free(mt_thread *t, mt_reader *r)
{
    unsigned k = rd8(r);
    if (!t->nlive) return;
    mt_block b = take_live(t, k);
    free_block(t, &b);
}

static void op_hand_over(mt_thread *t, mt_reader *r)
{
    unsigned k = rd8(r), to = rd8(r);
    if (!t->nlive) return;
    mt_block b = take_live(t, k);
    verify(&b);
    mt_thread *dst = &M.t[(t->id + 1 + (int)(to % (unsigned)(M.nthreads - 1))) % M.nthreads];
    if (!hand_to(dst, &b)) free_block(t, &b);
}

static void op_record(mt_thread *t, mt_reader *r)
{
    unsigned k = rd8(r), s = rd8(r);
    if (!t->nlive) return;
    cua_status st = cua_record_stream(t->live[k % (unsigned)t->nlive].p, mt_streams[s % MT_NSTREAMS]);
    mt_expect(t, st == CUA_OK || st == CUA_ERR_OUT_OF_MEMORY, "record_stream", st);
}

static void op_settings(mt_thread *t, mt_reader *r, int i)
{
    unsigned k = rd8(r), v = rd16(r);
    cua_status st;
    switch (k % 3) {
    case 0:
        st = cua_arena_trim(M.a[i], (size_t)(v % 32) * MT_GRAN, NULL);
        mt_expect(t, st == CUA_OK, "trim", st);
        break;
    case 1: /* a limit, sometimes below what is mapped: refused, or others fail with LIMIT */
        st = cua_arena_set_limit(M.a[i], v % 4 ? (size_t)(32 + v % 256) * MT_GRAN : 0);
        mt_expect(t, st == CUA_OK || cua_last_error()[0], "set_limit", st);
        break;
    default:
        st = cua_arena_set_release_threshold(M.a[i], v % 4 ? (size_t)(v % 64) * MT_GRAN
                                                           : CUA_KEEP_ALL);
        mt_expect(t, st == CUA_OK, "set_release_threshold", st);
        break;
    }
}

static void op_reads(mt_thread *t, mt_reader *r, int i)
{
    unsigned k = rd8(r);
    cua_stats s;
    cua_status st = cua_arena_get_stats(M.a[i], &s);
    mt_expect(t, st == CUA_OK && s.live_bytes <= s.allocated_bytes, "stats", st);
    if (k & 1) {
        st = cua_arena_check(M.a[i]);
        mt_expect(t, st == CUA_OK, "the checker", st);
    }
    if (t->nlive) {
        const mt_block *b = &t->live[k % (unsigned)t->nlive];
        cua_arena *owner = NULL;
        void *base = NULL;
        size_t size = 0;
        st = cua_ptr_info(b->p + b->size / 2, &owner, &base, &size);
        mt_expect(t, st == CUA_OK && base == b->p && size >= b->size && owner == M.a[b->arena],
                  "ptr_info of a live block", st);
    }
}

static void op_streams(mt_thread *t, mt_reader *r)
{
    unsigned k = rd8(r);
    cua_status st = cua_host_stream_complete(M.host, mt_streams[k % MT_NSTREAMS]);
    mt_expect(t, st == CUA_OK, "stream complete", st);
}

static void one_op(mt_thread *t, mt_reader *r)
{
    unsigned op = rd8(r);
    int i = (int)(op >> 7); /* the arena */
    t->op++;
    atomic_fetch_add_explicit(&M.ops, 1, memory_order_relaxed);
    drain_inbox(t);
    switch (op % 10) {
    case 0: case 1: case 2: op_alloc(t, r, i); break;
    case 3: case 4: op_free(t, r); break;
    case 5: op_hand_over(t, r); break;
    case 6: op_record(t, r); break;
    case 7: op_settings(t, r, i); break;
    case 8: op_reads(t, r, i); break;
    default: op_streams(t, r); break;
    }
}

static void *thread_main(void *arg)
{
    mt_thread *t = arg;
    tl_self = t;
    while (!atomic_load(&M.go)) sched_yield();
    mt_reader r = {t->p, t->n};
    while (r.n) one_op(t, &r);
    drain_inbox(t);
    return NULL;
}

/* ---- one input ------------------------------------------------------------------ */

static void setup_once(void)
{
    if (M.host) return;
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = MT_CAPACITY;
    hc.granularity = MT_GRAN;
    hc.manual_events = 1;
    if (cua_backend_host_create(&hc, &M.host) != CUA_OK) mt_die(NULL, "the host backend", CUA_OK);
    for (int k = 0; k < MT_MAX_THREADS; k++) pthread_mutex_init(&M.t[k].inbox_mu, NULL);
}

static void create_arena(int i, unsigned bits, unsigned v)
{
    static const cua_thread_cache_mode tc[4] = {CUA_THREAD_CACHE_OFF, CUA_THREAD_CACHE_ON,
                                                CUA_THREAD_CACHE_AUTO, CUA_THREAD_CACHE_ON};
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = i ? "mt1" : "mt0";
    cfg.backend = M.host;
    cfg.va_size = (size_t)1 << 30;
    cfg.chunk_max = (bits & 1) ? 4 * MT_GRAN : 0;
    cfg.chunk_large = (bits & 2) ? 16 * MT_GRAN : CUA_CHUNK_LARGE_NONE;
    cfg.release_threshold = (bits & 4) ? (size_t)(v % 16) * MT_GRAN : CUA_KEEP_ALL;
    cfg.flags = (bits & 8) ? CUA_ARENA_NO_VMM : 0;
    if (bits & 128) cfg.flags |= CUA_ARENA_DELAYED_UNMAP; /* moves that unmap later */
    cfg.thread_cache = tc[(bits >> 4) & 3];
    cfg.thread_cache_bytes = (bits & 64) ? 64 * 1024 : 0;
    cua_status st = cua_arena_create(&cfg, &M.a[i]);
    mt_expect(NULL, st == CUA_OK, "create", st);
    M.creates++;
}

static void run_threads(const uint8_t *data, size_t n)
{
    atomic_store(&M.go, 0);
    for (int k = 0; k < M.nthreads; k++) {
        mt_thread *t = &M.t[k];
        t->id = k;
        t->op = 0;
        t->nlive = t->ninbox = 0;
        t->p = data + n * (size_t)k / (size_t)M.nthreads;
        t->n = n * (size_t)(k + 1) / (size_t)M.nthreads - n * (size_t)k / (size_t)M.nthreads;
        if (pthread_create(&t->th, NULL, thread_main, t) != 0) mt_die(NULL, "pthread_create", CUA_OK);
    }
    atomic_store(&M.go, 1);
    for (int k = 0; k < M.nthreads; k++) pthread_join(M.t[k].th, NULL);
}

static int by_address(const void *x, const void *y)
{
    const mt_block *p = x, *q = y;
    return (p->p > q->p) - (p->p < q->p);
}

/* After the threads: their blocks (and what their inboxes hold) apart, and
 * each arena's live bytes the model's. */
static void check_after(void)
{
    static mt_block all[MT_MAX_THREADS * (MT_LIVE + MT_INBOX)];
    size_t n = 0;
    uint64_t live[MT_ARENAS] = {0};
    for (int k = 0; k < M.nthreads; k++) {
        drain_inbox(&M.t[k]); /* (handed over after its thread's last look) */
        for (int j = 0; j < M.t[k].nlive; j++) {
            all[n] = M.t[k].live[j];
            live[all[n].arena] += all[n].size;
            n++;
        }
    }
    qsort(all, n, sizeof *all, by_address);
    for (size_t j = 1; j < n; j++)
        mt_expect(NULL, all[j - 1].p + all[j - 1].size <= all[j].p, "two live blocks overlap", CUA_OK);
    for (int i = 0; i < MT_ARENAS; i++) {
        cua_stats s;
        cua_status st = cua_arena_get_stats(M.a[i], &s);
        mt_expect(NULL, st == CUA_OK && s.live_bytes == live[i], "live bytes differ from the model's", st);
        st = cua_arena_check(M.a[i]);
        mt_expect(NULL, st == CUA_OK, "the checker after the threads", st);
    }
}

/* Free everything (from this thread), trim, destroy: nothing may be left. */
static void settle(void)
{
    for (int k = 0; k < M.nthreads; k++)
        while (M.t[k].nlive) {
            mt_block b = take_live(&M.t[k], 0);
            free_block(NULL, &b);
        }
    for (int i = 0; i < MT_ARENAS; i++) {
        cua_status st = cua_arena_trim(M.a[i], 0, NULL); /* frees not waited for record now */
        mt_expect(NULL, st == CUA_OK, "trim at the end", st);
    }
    for (int s = 0; s < MT_NSTREAMS; s++) cua_host_stream_complete(M.host, mt_streams[s]);
    for (int i = 0; i < MT_ARENAS; i++) {
        cua_stats s;
        cua_arena_set_limit(M.a[i], 0);
        cua_status st = cua_arena_trim(M.a[i], 0, NULL);
        if (st == CUA_OK) st = cua_arena_get_stats(M.a[i], &s);
        mt_expect(NULL, st == CUA_OK && !s.live_bytes && !s.mapped_bytes,
                  "an arena still maps memory after freeing all and trim(0)", st);
        st = cua_arena_destroy(M.a[i], 0);
        mt_expect(NULL, st == CUA_OK, "destroy of an empty arena", st);
        M.a[i] = NULL;
    }
    cua_backend_stats bs;
    cua_backend_get_stats(M.host, &bs);
    mt_expect(NULL, !bs.handles && !bs.mappings && !bs.reservations && !bs.events,
              "the backend still holds handles, mappings, reservations or events", CUA_OK);
}

int fuzz_mt_threads(void)
{
    const char *v = getenv("CUA_FUZZ_THREADS");
    int n = v ? atoi(v) : 0;
    if (n < 2) return 0;
    return n > MT_MAX_THREADS ? MT_MAX_THREADS : n;
}

void fuzz_mt_input(const uint8_t *data, size_t size, int nthreads)
{
    setup_once();
    M.inputs++;
    M.nthreads = nthreads;
    mt_reader r = {data, size};
    for (int i = 0; i < MT_ARENAS; i++) {
        unsigned bits = rd8(&r);
        create_arena(i, bits, rd16(&r));
    }
    run_threads(r.p, r.n);
    check_after();
    settle();
}

void fuzz_mt_counts(uint64_t *inputs, uint64_t *ops, uint64_t *creates)
{
    *inputs = M.inputs;
    *ops = atomic_load(&M.ops);
    *creates = M.creates;
}
