/*
 * test-stress.c - randomized alloc / free / record_stream / trim / limit
 * operations over 4 streams on the host backend with simulated (manual)
 * events, the checker after every step, and two models beside the arena:
 *   - data: every live block carries a pattern at its ends and middle, checked
 *     at its free (overlapping blocks or lost pages break it);
 *   - streams: every freed range remembers which streams' work must complete
 *     before another stream may get it; an allocation that overlaps such a
 *     range too early fails the test.
 * Five configurations: three release policies / chunk sizes on VMM, and two
 * without VMM (whole segments: forced by CUA_ARENA_NO_VMM, and a backend that
 * has no VMM). CUA_STRESS_OPS sets the number of operations per configuration
 * (default 100000; the closing figures use 1000000).
 */
#include "test.h"

#include <stdbool.h>

#define NSTREAMS 4
#define MAX_LIVE 400
#define MAX_UNSAFE 4096

typedef struct live_block {
    unsigned char *p;
    size_t size;
    int stream;
    unsigned uses;  /* bitmask of streams it was used on (its own included) */
    uint64_t id;
} live_block;

typedef struct unsafe_range {
    uintptr_t lo, hi;
    unsigned waits; /* streams whose completion is still needed */
    int freed_on;
} unsafe_range;

typedef struct world {
    cua_backend *bk;
    cua_arena *a;
    live_block live[MAX_LIVE];
    int nlive;
    unsafe_range unsafe[MAX_UNSAFE];
    int nunsafe;
    uint64_t rng, next_id, syncs;
    uint64_t ops, allocs, frees, ooms, trims, completes, violations;
} world;

static const cua_stream stream_of[NSTREAMS] = {0, 0x1000, 0x2000, 0x3000};

static uint64_t sync_calls(world *w)
{
    cua_backend_stats s;
    cua_backend_get_stats(w->bk, &s);
    return s.calls[CUA_CALL_STREAM_SYNC] + s.calls[CUA_CALL_EVENT_SYNC];
}

/* The pattern of block `id` at byte i. */
static unsigned char pat(uint64_t id, size_t i) { return (unsigned char)(id * 131 + i * 7 + 1); }

static void spots(size_t size, size_t *idx, int *n)
{
    *n = 0;
    size_t span = size < 256 ? size : 256;
    for (size_t i = 0; i < span; i += 17) idx[(*n)++] = i;
    for (size_t i = size - span; i < size; i += 19) idx[(*n)++] = i;
    idx[(*n)++] = size / 2;
}

static void fill(const live_block *b)
{
    size_t idx[64];
    int n;
    spots(b->size, idx, &n);
    for (int i = 0; i < n; i++) b->p[idx[i]] = pat(b->id, idx[i]);
}

static bool intact(const live_block *b)
{
    size_t idx[64];
    int n;
    spots(b->size, idx, &n);
    for (int i = 0; i < n; i++)
        if (b->p[idx[i]] != pat(b->id, idx[i])) return false;
    return true;
}

static size_t random_size(world *w)
{
    uint64_t r = test_rand(&w->rng), k = r % 100;
    if (k < 70) return 1 + (size_t)(r >> 8) % (64 * 1024);
    if (k < 95) return 64 * 1024 + (size_t)(r >> 8) % (2u << 20);
    return (2u << 20) + (size_t)(r >> 8) % (24u << 20);
}

/* A stream's completion clears it from every range that waits for it. */
static void model_complete(world *w, int s)
{
    int j = 0;
    for (int i = 0; i < w->nunsafe; i++) {
        w->unsafe[i].waits &= ~(1u << s);
        if (w->unsafe[i].waits) w->unsafe[j++] = w->unsafe[i];
    }
    w->nunsafe = j;
}

static bool model_may_take(const world *w, uintptr_t lo, uintptr_t hi, int s)
{
    for (int i = 0; i < w->nunsafe; i++) {
        const unsafe_range *u = &w->unsafe[i];
        if (u->hi <= lo || u->lo >= hi) continue;
        unsigned need = u->waits & ~(1u << s);
        /* the freeing stream itself may reuse at once unless other uses remain */
        if (need) return false;
    }
    return true;
}

static void step_alloc(world *w)
{
    if (w->nlive == MAX_LIVE) return;
    int s = (int)(test_rand(&w->rng) % NSTREAMS);
    size_t size = random_size(w);
    void *p = NULL;
    uint64_t before = w->syncs;
    cua_status st = cua_arena_alloc(w->a, size, stream_of[s], &p);
    w->syncs = sync_calls(w);
    if (w->syncs != before) w->nunsafe = 0; /* the arena waited for every stream */
    if (st == CUA_ERR_OUT_OF_MEMORY || st == CUA_ERR_LIMIT) {
        w->ooms++;
        return;
    }
    if (st != CUA_OK || !p) {
        fprintf(stderr, "alloc of %zu failed: %s: %s\n", size, cua_status_name(st),
                cua_last_error());
        w->violations++;
        return;
    }
    if (!model_may_take(w, (uintptr_t)p, (uintptr_t)p + size, s)) {
        fprintf(stderr, "op %llu: %p+%zu handed to stream %d before the streams that freed it "
                "completed\n", (unsigned long long)w->ops, p, size, s);
        w->violations++;
    }
    live_block *b = &w->live[w->nlive++];
    *b = (live_block){p, size, s, 1u << s, w->next_id++};
    fill(b);
    w->allocs++;
}

static void step_free(world *w)
{
    if (!w->nlive) return;
    int i = (int)(test_rand(&w->rng) % (uint64_t)w->nlive);
    live_block b = w->live[i];
    if (!intact(&b)) {
        fprintf(stderr, "op %llu: block %p+%zu lost its contents\n", (unsigned long long)w->ops,
                (void *)b.p, b.size);
        w->violations++;
    }
    cua_status st = cua_free(b.p);
    if (st != CUA_OK) {
        fprintf(stderr, "free failed: %s\n", cua_last_error());
        w->violations++;
    }
    w->live[i] = w->live[--w->nlive];
    if (w->nunsafe < MAX_UNSAFE) {
        /* Its own stream may reuse it once the other users completed; others
         * also need the freeing stream. */
        w->unsafe[w->nunsafe++] = (unsafe_range){(uintptr_t)b.p, (uintptr_t)b.p + b.size,
                                                 b.uses, b.stream};
    } else {
        fprintf(stderr, "op %llu: the stream model is full\n", (unsigned long long)w->ops);
        w->violations++; /* the model cannot follow: make the run fail loudly */
    }
    w->frees++;
}

static void step_record(world *w)
{
    if (!w->nlive) return;
    live_block *b = &w->live[test_rand(&w->rng) % (uint64_t)w->nlive];
    int s = (int)(test_rand(&w->rng) % NSTREAMS);
    if (cua_record_stream(b->p, stream_of[s]) != CUA_OK) {
        fprintf(stderr, "record_stream failed: %s\n", cua_last_error());
        w->violations++;
    }
    b->uses |= 1u << s;
}

static void step_complete(world *w)
{
    int s = (int)(test_rand(&w->rng) % NSTREAMS);
    cua_host_stream_complete(w->bk, stream_of[s]);
    model_complete(w, s);
    w->completes++;
}

static void step_trim(world *w)
{
    size_t released = 0, keep = (test_rand(&w->rng) % 4) * (2u << 20);
    uint64_t before = w->syncs;
    if (cua_arena_trim(w->a, keep, &released) != CUA_OK) {
        fprintf(stderr, "trim failed: %s\n", cua_last_error());
        w->violations++;
    }
    w->syncs = sync_calls(w);
    if (w->syncs != before) w->nunsafe = 0;
    w->trims++;
}

static void step(world *w)
{
    uint64_t r = test_rand(&w->rng) % 1000;
    if (r < 470) step_alloc(w);
    else if (r < 900) step_free(w);
    else if (r < 940) step_record(w);
    else if (r < 985) step_complete(w);
    else if (r < 995) step_trim(w);
    else if (r < 997) cua_arena_set_limit(w->a, (64 + test_rand(&w->rng) % 256) << 20);
    else cua_arena_set_limit(w->a, 0);
    w->ops++;
}

static uint64_t ops_wanted(void)
{
    const char *e = getenv("CUA_STRESS_OPS");
    return e ? strtoull(e, NULL, 10) : 100000;
}

/* Whole segments instead of VMM: forced on the arena, or a backend without VMM. */
enum { VMM = 0, NO_VMM_FLAG = 1, NO_VMM_BACKEND = 2 };

/* One configuration: release policy, chunk size, VMM or not. */
static void run(size_t release_threshold, size_t chunk_max, int vmm, uint64_t seed, world *w)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = (size_t)512 << 20;
    hc.manual_events = 1;
    hc.no_vmm = vmm == NO_VMM_BACKEND;
    memset(w, 0, sizeof *w);
    w->rng = seed;
    if (cua_backend_host_create(&hc, &w->bk) != CUA_OK) {
        w->violations++;
        return;
    }
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "stress";
    cfg.backend = w->bk;
    cfg.va_size = (size_t)1 << 30;
    cfg.release_threshold = release_threshold;
    cfg.chunk_max = chunk_max;
    if (vmm == NO_VMM_FLAG) cfg.flags |= CUA_ARENA_NO_VMM;
    if (cua_arena_create(&cfg, &w->a) != CUA_OK) {
        w->violations++;
        return;
    }
    uint64_t n = ops_wanted();
    for (uint64_t i = 0; i < n && !w->violations; i++) {
        step(w);
        if (cua_arena_check(w->a) != CUA_OK) {
            fprintf(stderr, "op %llu: %s\n", (unsigned long long)i, cua_last_error());
            w->violations++;
        }
    }
    for (int i = 0; i < w->nlive; i++)
        if (!intact(&w->live[i]) || cua_free(w->live[i].p) != CUA_OK) {
            fprintf(stderr, "block %p lost its contents or could not be freed\n",
                    (void *)w->live[i].p);
            w->violations++;
        }
    if (cua_arena_destroy(w->a, 0) != CUA_OK) {
        fprintf(stderr, "destroy failed: %s\n", cua_last_error());
        w->violations++;
    }
    cua_backend_stats bs;
    cua_backend_get_stats(w->bk, &bs);
    /* Whole segments really were used (or not); none is left (checked below). */
    if (vmm != VMM && (bs.calls[CUA_CALL_CREATE] || !bs.calls[CUA_CALL_ALLOC] ||
                       !bs.calls[CUA_CALL_FREE])) {
        fprintf(stderr, "without VMM: %llu creates, %llu allocs, %llu frees\n",
                (unsigned long long)bs.calls[CUA_CALL_CREATE],
                (unsigned long long)bs.calls[CUA_CALL_ALLOC],
                (unsigned long long)bs.calls[CUA_CALL_FREE]);
        w->violations++;
    }
    if (vmm == VMM && (bs.calls[CUA_CALL_ALLOC] || !bs.calls[CUA_CALL_CREATE])) w->violations++;
    if (bs.handles || bs.reservations || bs.mappings || bs.events || bs.handle_bytes) {
        fprintf(stderr, "left in the backend: %llu handles, %llu reservations, %llu mappings, "
                "%llu events\n", (unsigned long long)bs.handles,
                (unsigned long long)bs.reservations, (unsigned long long)bs.mappings,
                (unsigned long long)bs.events);
        w->violations++;
    }
    if (cua_backend_destroy(w->bk) != CUA_OK) {
        fprintf(stderr, "backend destroy failed: %s\n", cua_last_error());
        w->violations++;
    }
    printf("  %llu ops (%llu allocs, %llu frees, %llu failed allocs, %llu trims, %llu stream "
           "completions), %llu violations\n",
           (unsigned long long)w->ops, (unsigned long long)w->allocs,
           (unsigned long long)w->frees, (unsigned long long)w->ooms,
           (unsigned long long)w->trims, (unsigned long long)w->completes,
           (unsigned long long)w->violations);
}

static world W;

TEST(stress_keep_all_pages)
{
    run(CUA_KEEP_ALL, 0, VMM, 1, &W);
    CHECK(W.violations == 0);
    CHECK(W.allocs > 0 && W.frees > 0);
}

TEST(stress_release_all_big_chunks)
{
    run(0, (size_t)8 << 20, VMM, 2, &W);
    CHECK(W.violations == 0);
}

TEST(stress_release_some)
{
    run((size_t)16 << 20, 0, VMM, 3, &W);
    CHECK(W.violations == 0);
}

/* The same model without VMM: blocks never cross a segment, segments go back whole. */
TEST(stress_no_vmm_keep_all)
{
    run(CUA_KEEP_ALL, 0, NO_VMM_FLAG, 4, &W);
    CHECK(W.violations == 0);
    CHECK(W.allocs > 0 && W.frees > 0);
}

TEST(stress_no_vmm_backend_release_some)
{
    run((size_t)16 << 20, 0, NO_VMM_BACKEND, 5, &W);
    CHECK(W.violations == 0);
}
