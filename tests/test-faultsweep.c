/*
 * test-faultsweep.c - every driver call of six representative workloads,
 * failed in turn. Each workload runs once without faults, counting its
 * backend calls per kind; then, for every kind k, every call n of that kind
 * (1 .. the count) and every status the driver can answer for it (out of
 * memory where the call takes memory, an error everywhere), it runs again on
 * fresh backends with that one call failing. After every API call:
 *   - a failed call's status is the injected one (or names it: "injected" is
 *     in its message), never CUA_OK with a lost side effect;
 *   - the checker passes on every arena of the workload;
 *   - every live block still holds its bytes (host backend: verified);
 * and after the workload's teardown the backend holds nothing: no handle,
 * mapping, reservation, event, stream or host buffer.
 *
 * Workloads: a replay (three streams, frees across them, trims at markers),
 * the engine (four component arenas: offload and restore of one, discard and
 * restore of the KV cache, teardown), offload and restore of a multi-block
 * arena, trims under a limit (growth that must swap cached pages), and
 * reserve then yield (a reservation adopted, one given back).
 *
 * Pairs: then every first failure again, with a second one inside its
 * cleanup - each call the failing API call made after the first failure
 * (releases, unmaps, retries) failed in turn (sweep_pairs below).
 * Prints the sites, failures and pairs per workload, and "N passed, N failed".
 */
#include "test.h"
#include "backend/fault.h" /* _cua_fault_fail_also, _cua_fault_calls: pairs of failures */

/* The workloads' unit: the host backend's granularity here (64 KiB pages keep
 * the ~700 runs fast; the code paths are those of 2 MiB pages). */
#define U ((size_t)64 << 10)
#define MAX_BLOCKS 64
#define MAX_ARENAS 4

typedef struct blk {
    unsigned char *p;
    size_t size;
    int arena;
    unsigned char seed;
    int valid; /* its bytes are known */
} blk;

typedef struct run {
    cua_backend *host, *fault;
    cua_arena *arenas[MAX_ARENAS];
    int offloaded[MAX_ARENAS];
    blk b[MAX_BLOCKS];
    int nb;
    int failed;            /* a check failed: the case fails */
    const char *where;     /* the step that failed */
    uint64_t api_failures; /* API calls that answered with the injected failure */
    /* Pairs: a probe run notes the calls of each kind made when the first
     * failure was injected and by the end of the API call that got it (the
     * first look after it): those between are its cleanup's. */
    int probing, window_closed;
    uint64_t at_first[CUA_CALL_COUNT], window_end[CUA_CALL_COUNT];
} run;

static void note(run *r)
{
    uint64_t now[CUA_CALL_COUNT];
    if (!r->probing || r->window_closed || !_cua_fault_calls(r->fault, r->at_first, now)) return;
    memcpy(r->window_end, now, sizeof now);
    r->window_closed = 1;
}

/* ---- checks ------------------------------------------------------------------------ */

static void fail(run *r, const char *where)
{
    if (!r->failed) {
        r->failed = 1;
        r->where = where;
        fprintf(stderr, "  fault sweep: %s (last error: %s)\n", where, cua_last_error());
    }
}

static void pattern(blk *b, int write)
{
    size_t idx[4] = { 0, b->size / 3, b->size / 2, b->size - 1 };
    for (int k = 0; k < 4; k++) {
        unsigned char v = (unsigned char)(b->seed + k * 37);
        if (write) b->p[idx[k]] = v;
        else if (b->p[idx[k]] != v) b->valid = -1;
    }
}

static void verify(run *r)
{
    note(r);
    for (int i = 0; i < MAX_ARENAS; i++)
        if (r->arenas[i] && cua_arena_check(r->arenas[i]) != CUA_OK) fail(r, "the checker failed");
    for (int j = 0; j < r->nb; j++) {
        blk *b = &r->b[j];
        if (!b->valid || r->offloaded[b->arena]) continue;
        pattern(b, 0);
        if (b->valid < 0) fail(r, "a live block lost its bytes");
    }
}

/* A call's status: CUA_OK, or a failure that names the injection. */
static int ok(run *r, cua_status st, const char *what)
{
    note(r);
    if (st == CUA_OK) return 1;
    if (!strstr(cua_last_error(), "injected")) fail(r, what);
    r->api_failures++;
    return 0;
}

/* ---- the workloads' building blocks ---------------------------------------------------- */

static int arena_flags(run *r, int i, const char *name, size_t limit, size_t threshold,
                       unsigned flags)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.flags |= flags;
    cfg.name = name;
    cfg.backend = r->fault;
    cfg.limit = limit;
    cfg.release_threshold = threshold;
    cfg.va_size = (size_t)1 << 30;
    return ok(r, cua_arena_create(&cfg, &r->arenas[i]), "create");
}

static int arena(run *r, int i, const char *name, size_t limit, size_t threshold)
{
    return arena_flags(r, i, name, limit, threshold, 0);
}

static blk *alloc(run *r, int i, size_t size, cua_stream stream)
{
    void *p = NULL;
    if (!r->arenas[i] || r->nb == MAX_BLOCKS || r->offloaded[i]) return NULL;
    if (!ok(r, cua_arena_alloc(r->arenas[i], size, stream, &p), "alloc")) {
        if (p) fail(r, "a failed alloc left *out set");
        verify(r);
        return NULL;
    }
    blk *b = &r->b[r->nb++];
    *b = (blk){ .p = p, .size = size, .arena = i, .seed = (unsigned char)(r->nb * 29), .valid = 1 };
    pattern(b, 1);
    verify(r);
    return b;
}

/* Free block j (a failure still frees it: the pages it could not give back stay cached). */
static void release(run *r, int j)
{
    blk *b = &r->b[j];
    if (!r->offloaded[b->arena] && b->valid) pattern(b, 0);
    if (b->valid < 0) fail(r, "a block lost its bytes before its free");
    cua_status st = cua_free(b->p);
    ok(r, st, "free");
    if (st != CUA_OK && cua_ptr_info(b->p, NULL, NULL, NULL) == CUA_OK) fail(r, "a failed free kept the block live");
    r->b[j] = r->b[--r->nb];
    verify(r);
}

static void release_arena_blocks(run *r, int i)
{
    for (int j = r->nb - 1; j >= 0; j--)
        if (r->b[j].arena == i) release(r, j);
}

static void trim(run *r, int i, size_t keep)
{
    if (!r->arenas[i]) return;
    size_t released;
    ok(r, cua_arena_trim(r->arenas[i], keep, &released), "trim");
    verify(r);
}

/* Offload (or discard) and restore; a restore that fails is retried (the
 * injected failure fires once), the data checked after. */
static void offload_restore(run *r, int i, int discard)
{
    if (!r->arenas[i]) return;
    cua_status st = discard ? cua_arena_discard(r->arenas[i]) : cua_arena_offload(r->arenas[i]);
    if (st != CUA_OK) ok(r, st, "offload");
    void *probe = NULL; /* BACKEND after the copy: offloaded all the same (cuarena.h) */
    int is_off = st == CUA_OK ||
                 (st == CUA_ERR_BACKEND && cua_arena_alloc(r->arenas[i], 1, 0, &probe) == CUA_ERR_OFFLOADED);
    if (probe) cua_free(probe);
    r->offloaded[i] = is_off;
    verify(r);
    if (!is_off) return;
    for (int tries = 0; tries < 3 && r->offloaded[i]; tries++) {
        st = cua_arena_restore(r->arenas[i]);
        if (st == CUA_OK) r->offloaded[i] = 0;
        else ok(r, st, "restore");
    }
    if (r->offloaded[i]) fail(r, "restore failed three times for one injected failure");
    for (int j = 0; j < r->nb; j++)
        if (r->b[j].arena == i && discard) pattern(&r->b[j], 1); /* contents undefined: new bytes */
    verify(r);
}

static void teardown(run *r)
{
    for (int i = 0; i < MAX_ARENAS; i++) {
        if (!r->arenas[i]) continue;
        if (r->offloaded[i] && cua_arena_restore(r->arenas[i]) == CUA_OK) r->offloaded[i] = 0;
        release_arena_blocks(r, i);
        cua_status st = cua_arena_destroy(r->arenas[i], CUA_DESTROY_FORCE);
        if (st != CUA_OK) ok(r, st, "destroy");
        r->arenas[i] = NULL;
    }
}

/* ---- the workloads ------------------------------------------------------------------ */

/* A replay: blocks of trace-like sizes on three streams, freed across them,
 * trims at "teardown" markers. */
static void w_replay(run *r)
{
    if (!arena(r, 0, "replay", 0, CUA_KEEP_ALL)) return;
    static const size_t sizes[] = { 512, 4096, 3 * U / 2, 300000, 5 * U, 65536, 2 * U + 512, 1024 };
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 8; k++) alloc(r, 0, sizes[(k + round) % 8], (cua_stream)(k % 3) * 0x100);
        for (int j = r->nb - 1; j >= 0; j -= 2) release(r, j);
        if (r->nb) ok(r, cua_record_stream(r->b[0].p, 0x200), "record_stream");
        trim(r, 0, round == 1 ? U : 0); /* a "teardown" marker */
    }
    teardown(r);
}

/* The engine: four component arenas, the text encoder offloaded and restored,
 * the KV cache discarded and restored, teardown. */
static void w_engine(run *r)
{
    if (!arena(r, 0, "text_encoder", 0, CUA_KEEP_ALL) || !arena(r, 1, "transformer", 0, CUA_KEEP_ALL) ||
        !arena(r, 2, "vae", 0, 0) || !arena(r, 3, "kv_cache", 0, CUA_KEEP_ALL)) {
        teardown(r);
        return;
    }
    for (int i = 0; i < 3; i++) alloc(r, i, (size_t)(2 + i) * U, 0);
    alloc(r, 1, 3 * U, 0);
    alloc(r, 3, 4 * U, 0);
    for (int req = 0; req < 2; req++) {
        blk *act = alloc(r, 1, 2 * U + 4096, 0);
        alloc(r, 2, U, 0);
        offload_restore(r, 0, 0);
        if (act) release(r, (int)(act - r->b));
        offload_restore(r, 3, 1);
    }
    teardown(r);
}

/* Offload and restore of an arena of many blocks (chunked copies). */
static void w_offload(run *r)
{
    if (!arena(r, 0, "weights", 0, CUA_KEEP_ALL)) return;
    for (int k = 0; k < 6; k++) alloc(r, 0, (size_t)(k % 3 + 1) * U + (size_t)k * 4096, 0);
    release(r, 3);
    offload_restore(r, 0, 0);
    alloc(r, 0, 2 * U, 0);
    offload_restore(r, 0, 0);
    teardown(r);
}

/* Growth under a limit: cached pages must be swapped or trimmed to make room. */
static void w_limit(run *r)
{
    if (!arena(r, 0, "limited", 16 * U, CUA_KEEP_ALL)) return;
    for (int round = 0; round < 4; round++) { /* at most 10 U live, growth by other streams' pages */
        alloc(r, 0, (size_t)(4 + round) * U, 0);
        alloc(r, 0, 3 * U, 0x100);
        while (r->nb) release(r, r->nb - 1);
        alloc(r, 0, (size_t)(8 - round) * U + 4096, 0x200);
        while (r->nb) release(r, r->nb - 1);
    }
    trim(r, 0, 0);
    teardown(r);
}

/* Moves that unmap later (CUA_ARENA_DELAYED_UNMAP): growths past the
 * footprint cap map the pages they take at a new place and leave the old
 * place mapped; the idle trim and a trim purge the old places, and a growth
 * over an old place purges it first. A failed unmap of an old place (the
 * purge's) loses nothing: it stays listed and is tried again, and teardown
 * leaves nothing behind. */
static void w_moves(run *r)
{
    if (!arena_flags(r, 0, "moves", 0, CUA_KEEP_ALL, CUA_ARENA_DELAYED_UNMAP)) return;
    for (int round = 0; round < 2; round++) {
        blk *a = alloc(r, 0, 4 * U, 0);
        alloc(r, 0, 2 * U, 0);
        if (a) release(r, (int)(a - r->b));
        alloc(r, 0, 6 * U, 0); /* past the cap: a's pages move, their old place stays */
        size_t released;
        if (round == 0) {
            ok(r, cua_trim_idle(CUA_ALL_DEVICES, &released), "trim_idle");
            verify(r);
        }
        while (r->nb > 1) release(r, r->nb - 1);
        alloc(r, 0, 3 * U, 0); /* best fit: over the old place, if still listed */
        trim(r, 0, 0);
        while (r->nb) release(r, r->nb - 1);
    }
    teardown(r);
}

/* Reserve then yield: a reservation adopted by an arena that then grows into
 * it, one given back unused, with blocks around them. */
static void w_reserve(run *r)
{
    if (!arena(r, 0, "kv_cache", 0, 0)) return;
    cua_reservation *res = NULL;
    if (ok(r, cua_reserve(r->fault, 4 * U, &res), "reserve"))
        ok(r, cua_arena_adopt(r->arenas[0], res), "adopt"); /* used up either way */
    verify(r);
    alloc(r, 0, 3 * U, 0);
    alloc(r, 0, 2 * U + 4096, 0x100);
    if (ok(r, cua_reserve(r->fault, 3 * U, &res), "reserve"))
        ok(r, cua_reservation_release(res), "reservation_release");
    verify(r);
    release(r, 0);
    trim(r, 0, 0);
    teardown(r);
}

typedef struct workload {
    const char *name;
    void (*fn)(run *);
} workload;

static const workload workloads[] = {
    { "replay", w_replay }, { "engine", w_engine }, { "offload", w_offload }, { "limit", w_limit },
    { "reserve", w_reserve }, { "moves", w_moves },
};

/* ---- the sweep ------------------------------------------------------------------------ */

static int start(run *r)
{
    memset(r, 0, sizeof *r);
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 256 * MiB;
    hc.granularity = U;
    return cua_backend_host_create(&hc, &r->host) == CUA_OK &&
           cua_backend_fault_create(r->host, &r->fault) == CUA_OK;
}

/* After teardown nothing may be left; then the backends go. */
static void finish(run *r)
{
    note(r);
    if (cua_backend_destroy(r->fault) != CUA_OK) fail(r, "the fault backend could not be destroyed");
    cua_backend_stats s;
    cua_backend_get_stats(r->host, &s);
    if (s.handles || s.handle_bytes || s.mappings || s.reservations || s.events || s.streams || s.host_buffers)
        fail(r, "the backend still holds something after teardown");
    if (cua_backend_destroy(r->host) != CUA_OK) fail(r, "the host backend could not be destroyed");
}

static int takes_memory(cua_call k)
{
    return k == CUA_CALL_CREATE || k == CUA_CALL_RESERVE || k == CUA_CALL_ALLOC || k == CUA_CALL_HOST_ALLOC;
}

static uint64_t total_sites, total_failures;

static void sweep(const workload *w)
{
    run r;
    CHECK(start(&r));
    w->fn(&r);
    CHECK(!r.failed);
    cua_backend_stats clean;
    CHECK_OK(cua_backend_get_stats(r.fault, &clean));
    finish(&r);
    CHECK(!r.failed);
    uint64_t sites = 0, failures = 0, absorbed = 0, answered = 0;
    for (int k = 0; k < CUA_CALL_COUNT; k++) {
        if (k == CUA_CALL_MEM_INFO) continue; /* statistics only: not the workload's */
        for (uint64_t n = 1; n <= clean.calls[k]; n++) {
            sites++;
            for (int s = 0; s < 2; s++) {
                cua_status want = s ? CUA_ERR_OUT_OF_MEMORY : CUA_ERR_BACKEND;
                if (s && !takes_memory((cua_call)k)) continue;
                CHECK(start(&r));
                CHECK_OK(cua_fault_fail_nth(r.fault, (cua_call)k, n, want));
                w->fn(&r);
                uint64_t injected = 0;
                cua_fault_injected(r.fault, &injected);
                finish(&r);
                if (r.failed)
                    fprintf(stderr, "  %s: failing call %llu of %s with %s: %s\n", w->name, (unsigned long long)n,
                            cua_call_name((cua_call)k), cua_status_name(want), r.where);
                CHECK(!r.failed);
                failures += injected;
                if (r.api_failures) answered++;
                else absorbed++;
            }
        }
    }
    printf("  %-8s %4llu call sites, %4llu failures injected: %llu answered with the failure, %llu absorbed "
           "(retried or not needed); 0 leaks, 0 checker violations, 0 bytes lost\n",
           w->name, (unsigned long long)sites, (unsigned long long)failures, (unsigned long long)answered,
           (unsigned long long)absorbed);
    total_sites += sites;
    total_failures += failures;
}

/* ---- pairs: a second failure inside the cleanup of the first ---------------------------
 * For every first failure of the sweep, a probe run notes the calls the API
 * call that got it made after it (its cleanup: releases, unmaps, retries);
 * then each of those calls, in turn, fails too (CUA_ERR_BACKEND), on fresh
 * backends. The same checks hold after every call, and after teardown the
 * backend holds nothing: every handle was released, or kept by the backend
 * for the retry its destroy performs. */

static uint64_t total_firsts, total_pairs;

/* A cleanup may make many calls of one kind (a copy per chunk, an unmap per
 * run of pages): by default the first PAIRS_EACH of each kind and the last
 * fail in turn; CUA_FAULTSWEEP_PAIRS=all fails every one (slower: minutes). */
#define PAIRS_EACH 2
static int all_pairs(void)
{
    const char *v = getenv("CUA_FAULTSWEEP_PAIRS");
    return v && strcmp(v, "all") == 0;
}

/* One run with the first failure (k1, n1, s1) and, when k2 >= 0, the m-th
 * call of kind k2 failing too. */
static int run_pair(run *r, const workload *w, int k1, uint64_t n1, cua_status s1, int k2, uint64_t m)
{
    if (!start(r)) return 0;
    cua_fault_fail_nth(r->fault, (cua_call)k1, n1, s1);
    if (k2 >= 0) _cua_fault_fail_also(r->fault, (cua_call)k2, m, CUA_ERR_BACKEND);
    r->probing = k2 < 0;
    w->fn(r);
    finish(r);
    if (r->failed)
        fprintf(stderr, "  %s: call %llu of %s failing with %s, then call %llu of %s: %s\n", w->name,
                (unsigned long long)n1, cua_call_name((cua_call)k1), cua_status_name(s1),
                (unsigned long long)m, k2 >= 0 ? cua_call_name((cua_call)k2) : "-", r->where);
    return !r->failed;
}

static void sweep_pairs(const workload *w)
{
    run r;
    CHECK(start(&r));
    w->fn(&r);
    cua_backend_stats clean;
    CHECK_OK(cua_backend_get_stats(r.fault, &clean));
    finish(&r);
    CHECK(!r.failed);
    uint64_t firsts = 0, pairs = 0;
    for (int k1 = 0; k1 < CUA_CALL_COUNT; k1++) {
        if (k1 == CUA_CALL_MEM_INFO) continue;
        for (uint64_t n1 = 1; n1 <= clean.calls[k1]; n1++) {
            for (int s = 0; s < 2; s++) {
                cua_status s1 = s ? CUA_ERR_OUT_OF_MEMORY : CUA_ERR_BACKEND;
                if (s && !takes_memory((cua_call)k1)) continue;
                CHECK(run_pair(&r, w, k1, n1, s1, -1, 0));
                if (!r.window_closed) continue;
                run probe = r;
                uint64_t cleanup = 0;
                for (int k2 = 0; k2 < CUA_CALL_COUNT; k2++) {
                    if (k2 == CUA_CALL_MEM_INFO) continue;
                    uint64_t lo = probe.at_first[k2] + 1, hi = probe.window_end[k2];
                    for (uint64_t m = lo; m <= hi; m++) {
                        if (!all_pairs() && m >= lo + PAIRS_EACH && m != hi) continue;
                        CHECK(run_pair(&r, w, k1, n1, s1, k2, m));
                        cleanup++;
                    }
                }
                firsts += cleanup != 0;
                pairs += cleanup;
            }
        }
    }
    printf("  %-8s %4llu first failures with calls after them, %5llu pairs injected; 0 leaks, "
           "0 checker violations, 0 bytes lost\n",
           w->name, (unsigned long long)firsts, (unsigned long long)pairs);
    total_firsts += firsts;
    total_pairs += pairs;
}

TEST(sweep_replay) { sweep(&workloads[0]); }
TEST(sweep_engine) { sweep(&workloads[1]); }
TEST(sweep_offload) { sweep(&workloads[2]); }
TEST(sweep_limit) { sweep(&workloads[3]); }
TEST(sweep_reserve) { sweep(&workloads[4]); }
TEST(pairs_replay) { sweep_pairs(&workloads[0]); }
TEST(pairs_engine) { sweep_pairs(&workloads[1]); }
TEST(pairs_offload) { sweep_pairs(&workloads[2]); }
TEST(pairs_limit) { sweep_pairs(&workloads[3]); }
TEST(pairs_reserve) { sweep_pairs(&workloads[4]); }
TEST(sweep_moves) { sweep(&workloads[5]); }
TEST(pairs_moves) { sweep_pairs(&workloads[5]); }
TEST(totals)
{
    printf("  all: %llu call sites, %llu failures injected; pairs: %llu first failures, %llu pairs\n",
           (unsigned long long)total_sites, (unsigned long long)total_failures,
           (unsigned long long)total_firsts, (unsigned long long)total_pairs);
}
