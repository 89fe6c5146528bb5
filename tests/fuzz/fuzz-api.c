/*
 * fuzz-api.c - a libFuzzer target: the input is decoded into a sequence of
 * API calls over up to four arenas (VMM and whole segments, limits, floors,
 * release thresholds; some of whole segments from a supplier backend over
 * the fault backend) sharing one host backend behind a fault backend, on
 * four streams with manual events: alloc (good and bad sizes), free (good,
 * double, interior and wild pointers, pointers of destroyed arenas),
 * record_stream, trim, limits, floors, offload / discard / restore, destroy
 * (plain and forced) and create, stream completion, injected backend
 * failures, stats, walks and reports.
 *
 * After every call: the status is one the call may return; the checker passes
 * on every live arena; each arena's live bytes equal the model's; and every
 * live block of an arena that is not offloaded still holds its pattern (a
 * block of a discarded arena gets a new one once restored). At the end of an
 * input everything is freed, restored and trimmed (nothing may stay mapped),
 * then destroyed, and the backend must hold nothing at all. A violation
 * aborts, with the operation's number and what was wrong.
 *
 * Each input creates its four arenas (their configurations from its first
 * bytes) and destroys them, so an input replays alone as it ran. (A
 * destroyed arena costs nothing: its memory serves the next one and its
 * stale handle is told apart by its generation.) Long runs are a series of
 * fuzzer processes over one corpus (tests/fuzz/run-fuzz.sh).
 *
 * Built as fuzz-api with clang (-Dfuzzer=true: -fsanitize=fuzzer), or with a
 * main that runs files and directories of inputs (fuzz-api-run; every build
 * runs the seed corpus in tests/fuzz/corpus that way). CUA_FUZZ_STATS=1 prints
 * the operations run at exit. CUA_FUZZ_THREADS=N (2 to 8) runs every input in
 * the multi-threaded mode instead (fuzz-mt.c: N threads on shared arenas).
 *
 * This file holds the model, its checks and the operations; the callbacks
 * that re-enter are in fuzz-callbacks.c, one input from start to end and the
 * corpus runner in fuzz-run.c (their shared state: fuzz-api.h).
 */
#include "fuzz-api.h"
#include "fuzz-mt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

world W;

unsigned last_op;

int trace_level(void)
{
    const char *t = getenv("CUA_FUZZ_TRACE");
    return t ? atoi(t) : 0;
}

const cua_stream streams[NSTREAMS] = { 0, 0x100, 0x200, 0x300 };

/* ---- input ---------------------------------------------------------------------- */


unsigned u8(reader *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

/* Two bytes, low first. (Every read is its own statement or initializer: the
 * order of reads within one expression is unspecified in C, and gcc and
 * clang would decode an input differently.) */
unsigned u16(reader *r)
{
    unsigned lo = u8(r);
    return lo | u8(r) << 8;
}

/* ---- checks --------------------------------------------------------------------- */

void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz-api: operation %llu: %s%s%s (last error: %s)\n", (unsigned long long)W.ops, what,
            detail ? ": " : "", detail ? detail : "", cua_last_error());
    abort();
}

void expect(int ok, const char *what)
{
    if (!ok) die(what, NULL);
}

/* A failure must say what happened in words. */
void expect_fail(cua_status st, const char *what)
{
    if (st == CUA_OK) die(what, "returned CUA_OK");
    if (!cua_last_error()[0]) die(what, "failed with an empty message");
}

/* The pattern of a block at its first, middle and last 8 bytes. */
static void spots(const block *b, size_t at[3], size_t *len)
{
    *len = b->size < 8 ? b->size : 8;
    at[0] = 0;
    at[1] = b->size / 2 > *len ? b->size / 2 - *len : 0;
    at[2] = b->size - *len;
}

static void write_pattern(block *b)
{
    size_t at[3], len;
    spots(b, at, &len);
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < len; i++) b->p[at[k] + i] = (unsigned char)(b->seed + at[k] + i);
}

void check_pattern(const block *b)
{
    size_t at[3], len;
    spots(b, at, &len);
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < len; i++)
            if (b->p[at[k] + i] != (unsigned char)(b->seed + at[k] + i)) die("a live block lost its contents", NULL);
}

/* The checks after a call: the arenas it touched (every arena every 16th
 * call and at the end of an input), the patterns of every live block. */
void check_arenas(unsigned mask)
{
    for (int i = 0; i < NARENAS; i++) {
        slot *s = &W.s[i];
        if (!s->a || !(mask & (1u << i))) continue;
        cua_status st = cua_arena_check(s->a);
        if (st) die("the checker failed", cua_last_error());
        cua_stats stats;
        expect(cua_arena_get_stats(s->a, &stats) == CUA_OK, "stats of a live arena");
        if (stats.live_bytes != s->live) die("live bytes differ from the model's", NULL);
    }
    for (int j = 0; j < W.nlive; j++)
        if (!W.s[W.live[j].arena].offloaded) check_pattern(&W.live[j]);
}

void check_all(void) { check_arenas(~0u); }

/* ---- the model ------------------------------------------------------------------ */

static void forget_freed(const void *p)
{
    for (int k = 0; k < W.nfreed; k++)
        if (W.freed[k] == p) W.freed[k] = W.freed[--W.nfreed];
}

void remember_freed(void *p)
{
    if (W.nfreed == MAX_FREED) W.nfreed--;
    memmove(W.freed + 1, W.freed, (size_t)W.nfreed * sizeof *W.freed);
    W.freed[0] = p;
    W.nfreed++;
}

void drop_block(int j)
{
    W.touched |= 1u << W.live[j].arena;
    W.s[W.live[j].arena].live -= W.live[j].size;
    W.live[j] = W.live[--W.nlive];
}

static int live_at(const void *p)
{
    for (int j = 0; j < W.nlive; j++) {
        if (W.dying & (1u << W.live[j].arena)) continue; /* gone already: its memory may be reused */
        if ((const unsigned char *)p >= W.live[j].p && (const unsigned char *)p < W.live[j].p + W.live[j].size)
            return j;
    }
    return -1;
}

/* ---- arenas --------------------------------------------------------------------- */

void create_slot(int i, unsigned cfgbits, unsigned v)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = (const char *[]){ "fuzz0", "fuzz1", "fuzz2", "fuzz3" }[i];
    cfg.backend = W.fault;
    cfg.va_size = (size_t)1 << 30;
    cfg.chunk_max = (cfgbits & 1) ? 4 * GRAN : 0;
    cfg.chunk_large = (cfgbits & 2) ? 16 * GRAN : CUA_CHUNK_LARGE_NONE;
    cfg.release_threshold = (cfgbits & 4) ? (size_t)(v % 16) * GRAN : CUA_KEEP_ALL;
    cfg.limit = (cfgbits & 8) ? (size_t)(16 + v % 128) * GRAN : 0;
    cfg.floor = (cfgbits & 16) ? (size_t)(v % 8) * GRAN : 0;
    cfg.flags = (cfgbits & 32) ? CUA_ARENA_NO_VMM : 0;
    /* Some arenas of whole segments take them from a supplier (one of whose
     * next allocations may fail). */
    if ((cfgbits & 32) && ((v >> 11) & 1)) {
        cfg.backend = W.supplied;
        if ((v >> 12) & 1) W.supply_fail_at = W.supply_allocs + 1 + ((v >> 13) & 3);
    }
    if ((v >> 10) & 1) cfg.flags |= CUA_ARENA_DELAYED_UNMAP; /* moves that unmap later */
    if ((v >> 15) & 1) cfg.flags |= CUA_ARENA_KEEP_MAPPED;   /* pages a graph replays into */
    cfg.priority = (int)(cfgbits >> 6);
    /* Half the arenas free and allocate through a thread cache (tcache.c). */
    cfg.thread_cache = (v >> 8) & 1 ? CUA_THREAD_CACHE_ON : CUA_THREAD_CACHE_OFF;
    cfg.thread_cache_bytes = (v >> 9) & 1 ? 64 * 1024 : 0;
    cua_status st = cua_arena_create(&cfg, &W.s[i].a);
    W.creates++;
    if (st) {
        expect_fail(st, "create");
        W.s[i].a = NULL;
    }
    W.s[i].offloaded = W.s[i].discarded = 0;
    W.s[i].live = 0;
}

void bury(cua_arena *a)
{
    if (W.ndead == MAX_DEAD) W.ndead--;
    memmove(W.dead + 1, W.dead, (size_t)W.ndead * sizeof *W.dead);
    W.dead[0] = a;
    W.ndead++;
}

static void destroy_slot(int i, int force)
{
    slot *s = &W.s[i];
    int has_live = s->live > 0;
    for (int j = 0; j < W.nlive && !has_live; j++) has_live = W.live[j].arena == i;
    W.dying |= 1u << i;
    cua_status st = cua_arena_destroy(s->a, force ? CUA_DESTROY_FORCE : 0);
    W.dying &= ~(1u << i);
    if (has_live && !force) {
        expect(st == CUA_ERR_BUSY, "destroy with live blocks answers BUSY");
        return;
    }
    /* A failed release still destroys the arena (the rest is released). */
    expect(st == CUA_OK || st == CUA_ERR_BACKEND, "destroy");
    if (st && getenv("CUA_FUZZ_TRACE"))
        fprintf(stderr, "op %llu: destroy: %s: %s\n", (unsigned long long)W.ops, cua_status_name(st), cua_last_error());
    for (int j = W.nlive - 1; j >= 0; j--)
        if (W.live[j].arena == i) {
            remember_freed(W.live[j].p);
            drop_block(j);
        }
    bury(s->a);
    s->a = NULL;
}

/* Restore until it works (it may fail on injected faults), then a fresh
 * pattern for the blocks of a discarded arena. */
void restore_slot(int i)
{
    slot *s = &W.s[i];
    cua_status st = CUA_OK;
    for (int tries = 0; tries < 4 && s->a && s->offloaded; tries++) {
        W.moving |= 1u << i;
        st = cua_arena_restore(s->a);
        W.moving &= ~(1u << i);
        if (!s->a) { /* an eviction callback destroyed it meanwhile */
            expect(st == CUA_ERR_DESTROYED || st == CUA_OK, "restore of an arena a callback destroyed");
            return;
        }
        if (st == CUA_OK) s->offloaded = 0;
        else expect_fail(st, "restore");
    }
    if (!s->a) return;
    if (s->offloaded) {
        W.quiet++; /* from here on it must converge: no callback acts */
        cua_fault_fail_random(W.fault, 0, 0);
        for (int k = 0; k < CUA_CALL_COUNT; k++) cua_fault_fail_nth(W.fault, (cua_call)k, 0, CUA_ERR_BACKEND);
        st = cua_arena_restore(s->a);
        /* The other arenas may have taken the pages the offload gave back, for
         * live data (their caches a restore takes itself): free theirs, block
         * by block, until it fits. With nothing else live it must succeed. */
        for (int j = W.nlive - 1; st == CUA_ERR_OUT_OF_MEMORY && j >= 0; j--) {
            if (W.live[j].arena == i) continue;
            free_live(W.live[j].p);
            remember_freed(W.live[j].p);
            drop_block(j);
            j = W.nlive; /* (the list moved) */
            st = cua_arena_restore(s->a);
        }
        /* Floors keep other arenas' pages through any trim made for another
         * arena: lowered, with their caches trimmed, it must fit. */
        for (int k = 0; st == CUA_ERR_OUT_OF_MEMORY && k < NARENAS; k++) {
            if (k == i || !W.s[k].a) continue;
            (void)cua_arena_set_floor(W.s[k].a, 0);
            (void)cua_arena_trim(W.s[k].a, 0, NULL);
            st = cua_arena_restore(s->a);
        }
        if (st != CUA_OK) die("restore without faults", NULL);
        s->offloaded = 0;
        W.quiet--;
    }
    if (s->discarded)
        for (int j = 0; j < W.nlive; j++)
            if (W.live[j].arena == i) write_pattern(&W.live[j]);
    s->discarded = 0;
}

/* ---- operations ----------------------------------------------------------------- */

/* Free a live block: CUA_OK, or CUA_ERR_BACKEND when giving pages back failed
 * (the block is free all the same, so no longer live). */
void free_live(void *p)
{
    uint64_t acted = W.cb_actions;
    cua_status st = cua_free(p);
    if (trace_level() > 2) fprintf(stderr, "op %llu: free %p: %s\n", (unsigned long long)W.ops, p, cua_status_name(st));
    /* (unless a callback acted meanwhile: it may have been handed out again) */
    if (st == CUA_ERR_BACKEND && W.cb_actions == acted && cua_ptr_info(p, NULL, NULL, NULL) == CUA_OK) {
        cua_free(p); /* for the message */
        die("a block is still live after a free that answered BACKEND", NULL);
    }
    if (st == CUA_ERR_BACKEND) {
        if (trace_level()) fprintf(stderr, "op %llu: free: BACKEND: %s\n", (unsigned long long)W.ops, cua_last_error());
    } else {
        expect(st == CUA_OK, "free of a live block");
    }
}

size_t pick_size(reader *r)
{
    unsigned k = u8(r), v = u16(r);
    switch (k % 4) {
    case 0: return 1 + v % 4096;                       /* small */
    case 1: return 1 + (size_t)v * 16;                 /* up to 1 MiB */
    case 2: return 1 + (size_t)v * 64;                 /* up to 4 MiB */
    default: return (size_t)(1 + v % 64) * GRAN;       /* whole pages */
    }
}

/* A block just handed out by slot i's arena joins the model. */
void add_live(int i, void *p, size_t size)
{
    expect(p != NULL && ((uintptr_t)p & 255) == 0, "alloc returns an aligned pointer");
    expect(live_at(p) < 0 && live_at((char *)p + size - 1) < 0, "alloc overlaps a live block");
    if (W.nlive == MAX_LIVE) { /* the model is full: give it straight back */
        free_live(p);
        return;
    }
    forget_freed(p);
    block *b = &W.live[W.nlive++];
    *b = (block){ .p = p, .size = size, .arena = i, .seed = (uint32_t)W.ops * 2654435761u + (uint32_t)W.nlive };
    W.s[i].live += size;
    W.touched |= 1u << i;
    write_pattern(b);
}

static void op_alloc(reader *r, int i)
{
    slot *s = &W.s[i];
    size_t size = pick_size(r);
    cua_stream stream = streams[u8(r) % NSTREAMS];
    void *p = NULL;
    int was_off = s->offloaded;
    cua_status st = cua_arena_alloc(s->a, size, stream, &p);
    if (trace_level() > 2)
        fprintf(stderr, "op %llu: alloc %zu on stream %llu in slot %d: %p %s\n", (unsigned long long)W.ops, size,
                (unsigned long long)stream, i, p, cua_status_name(st));
    if (!s->a) { /* a callback it ran destroyed the arena (cuarena.h: "Callbacks") */
        expect(!p && (st == CUA_ERR_DESTROYED || st == CUA_ERR_OUT_OF_MEMORY || st == CUA_ERR_LIMIT),
               "an alloc whose arena a callback destroyed answers DESTROYED or its own failure");
        return;
    }
    if (was_off) {
        expect(st == CUA_ERR_OFFLOADED && !p, "alloc in an offloaded arena answers OFFLOADED");
        return;
    }
    if (s->offloaded) { /* a callback it ran offloaded the arena: no block */
        expect(st != CUA_OK && !p, "an alloc whose arena a callback offloaded answers a failure");
        expect_fail(st, "alloc");
        return;
    }
    if (st) {
        expect(st == CUA_ERR_OUT_OF_MEMORY || st == CUA_ERR_LIMIT || st == CUA_ERR_BACKEND, "alloc status");
        expect_fail(st, "alloc");
        expect(!p, "a failed alloc sets *out to NULL");
        return;
    }
    add_live(i, p, size);
}

static void op_free(reader *r)
{
    if (!W.nlive) return;
    int j = (int)(u16(r) % (unsigned)W.nlive);
    if (!W.s[W.live[j].arena].offloaded) check_pattern(&W.live[j]);
    W.touched |= 1u << W.live[j].arena;
    void *p = W.live[j].p;
    /* Out of the model first: the callbacks the free runs must not pick it. */
    drop_block(j);
    remember_freed(p);
    free_live(p);
}

/* Pointers cuarena must refuse, never crash on, and never lose a block over. */
static void op_bad_free(reader *r)
{
    unsigned k = u8(r);
    void *p = NULL;
    switch (k % 4) {
    case 0: /* double free */
        if (!W.nfreed) return;
        p = W.freed[u8(r) % (unsigned)W.nfreed];
        break;
    case 1: /* interior pointer */
        if (!W.nlive) return;
        p = W.live[u16(r) % (unsigned)W.nlive].p;
        p = (char *)p + 1 + u8(r);
        break;
    case 2: /* wild */
        p = (void *)(uintptr_t)(0x1000 + (uintptr_t)u16(r) * 4096);
        break;
    default: /* the stack */
        p = &k;
        break;
    }
    if (live_at(p) >= 0 && k % 4 == 0) return; /* handed out again meanwhile */
    int owner = live_at(p);
    if (owner >= 0 && W.live[owner].p == p) return; /* a live block's own pointer */
    expect_fail(cua_free(p), "free of a bad pointer");
    expect_fail(cua_record_stream(p, streams[1]), "record_stream of a bad pointer");
}

static void op_record(reader *r)
{
    if (!W.nlive) return;
    block *b = &W.live[u16(r) % (unsigned)W.nlive];
    W.touched |= 1u << b->arena;
    cua_status st = cua_record_stream(b->p, streams[u8(r) % NSTREAMS]);
    if (W.s[b->arena].offloaded) expect(st == CUA_ERR_OFFLOADED, "record_stream while offloaded");
    else expect(st == CUA_OK || st == CUA_ERR_OUT_OF_MEMORY, "record_stream");
}

/* Whether an arena is offloaded, as its allocations answer. */
int is_offloaded(cua_arena *a)
{
    void *p = NULL;
    W.quiet++; /* a probe: its callbacks act not */
    cua_status st = cua_arena_alloc(a, 1, 0, &p);
    if (st == CUA_OK) free_live(p);
    W.quiet--;
    return st == CUA_ERR_OFFLOADED;
}

static void op_offload(reader *r, int i)
{
    slot *s = &W.s[i];
    unsigned k = u8(r);
    if (k % 3 == 2) {
        if (!s->offloaded) {
            cua_status st = cua_arena_restore(s->a);
            if (st != CUA_ERR_INVALID_ARG) die("restore without offload answers INVALID_ARG", cua_status_name(st));
        }
        else restore_slot(i);
        return;
    }
    int was = s->offloaded;
    W.moving |= 1u << i;
    cua_status st = k % 3 ? cua_arena_discard(s->a) : cua_arena_offload(s->a);
    W.moving &= ~(1u << i);
    if (!s->a) return; /* a callback of its event destroyed it */
    if (was) {
        expect(st == CUA_ERR_OFFLOADED, "offload of an offloaded arena");
    } else if (s->offloaded) { /* a callback of its event offloaded it (again: OFFLOADED) */
        expect(st == CUA_OK || st == CUA_ERR_BACKEND, "offload");
        if (st == CUA_OK) s->discarded = s->discarded || k % 3 == 1;
    } else if (st == CUA_OK || (st == CUA_ERR_BACKEND && is_offloaded(s->a) && s->a)) {
        s->offloaded = 1; /* BACKEND: the data is safe, some pages stayed mapped */
        s->discarded = k % 3 == 1;
    } else {
        expect_fail(st, "offload");
        if (getenv("CUA_FUZZ_TRACE")) fprintf(stderr, "op %llu: offload/discard failed: %s: %s\n",
                                              (unsigned long long)W.ops, cua_status_name(st), cua_last_error());
    }
}

static void op_settings(reader *r, int i)
{
    slot *s = &W.s[i];
    unsigned k = u8(r), v = u16(r);
    size_t released = 0;
    cua_status st;
    switch (k % 5) {
    case 0:
        st = cua_arena_trim(s->a, (size_t)(v % 64) * GRAN, &released);
        expect(st == CUA_OK || st == CUA_ERR_BACKEND, "trim");
        break;
    case 1: /* a limit, sometimes below the floor or the mapped bytes */
        st = cua_arena_set_limit(s->a, v % 3 ? (size_t)(v % 256) * GRAN : 0);
        if (st) expect_fail(st, "set_limit");
        break;
    case 2:
        st = cua_arena_set_floor(s->a, (size_t)(v % 32) * GRAN);
        if (st) expect(st == CUA_ERR_INVALID_ARG, "set_floor above the limit");
        break;
    case 3:
        st = cua_arena_set_release_threshold(s->a, v % 4 ? (size_t)(v % 64) * GRAN : CUA_KEEP_ALL);
        expect(st == CUA_OK || st == CUA_ERR_BACKEND, "set_release_threshold");
        break;
    default: { /* reads: stats JSON, a walk, pointer info */
        char buf[4096];
        size_t len = 0;
        st = cua_arena_stats_json(s->a, buf, sizeof buf, &len);
        expect(st == CUA_OK || st == CUA_ERR_INVALID_ARG, "stats_json");
        if (W.nlive) {
            block *b = &W.live[v % (unsigned)W.nlive];
            cua_arena *owner = NULL;
            void *base = NULL;
            size_t size = 0;
            expect(cua_ptr_info(b->p + b->size / 2, &owner, &base, &size) == CUA_OK && base == b->p &&
                       size >= b->size && owner == W.s[b->arena].a,
                   "ptr_info of a live block");
        }
        break;
    }
    }
}

static void op_bad_args(reader *r, int i)
{
    slot *s = &W.s[i];
    void *p = (void *)1;
    switch (u8(r) % 5) {
    case 0:
        expect(cua_arena_alloc(s->a, 0, 0, &p) == CUA_ERR_INVALID_ARG && !p, "alloc of 0 bytes");
        break;
    case 1:
        expect_fail(cua_arena_alloc(s->a, SIZE_MAX - u8(r), 0, &p), "alloc of SIZE_MAX");
        expect(!p, "a failed alloc sets *out to NULL");
        break;
    case 2:
        expect(cua_arena_alloc(NULL, 64, 0, &p) == CUA_ERR_INVALID_ARG, "alloc in a NULL arena");
        break;
    case 3: /* a destroyed arena's handle */
        if (!W.ndead) return;
        {
            cua_arena *d = W.dead[u8(r) % (unsigned)W.ndead];
            expect(cua_arena_alloc(d, 64, 0, &p) == CUA_ERR_DESTROYED, "alloc in a destroyed arena");
            expect(cua_arena_destroy(d, 0) == CUA_ERR_DESTROYED, "destroying twice");
            expect(cua_arena_trim(d, 0, NULL) == CUA_ERR_DESTROYED, "trim of a destroyed arena");
            expect(cua_arena_offload(d) == CUA_ERR_DESTROYED, "offload of a destroyed arena");
        }
        break;
    default: {
        cua_arena_config cfg;
        cua_arena_config_init(&cfg);
        cfg.backend_kind = CUA_BACKEND_HOST;
        const char *confs[] = { "limit:12Q", "nosuchkey:1", "limit:1M,floor:2M", "release_threshold:",
                                "idle_ms:-5", ",,,", "vmm:maybe" };
        cua_status st = cua_config_parse(confs[u8(r) % 7], &cfg);
        if (st) expect(st == CUA_ERR_CONFIG, "a malformed option string answers CONFIG");
        break;
    }
    }
}

static void op_streams(reader *r)
{
    unsigned k = u8(r);
    if (k & 0x80) {
        expect(cua_host_stream_complete(W.host, streams[k % NSTREAMS]) == CUA_OK, "stream complete");
    } else if (k & 0x40) { /* one failure of one kind of backend call, soon */
        cua_call call = (cua_call)(u8(r) % CUA_CALL_COUNT);
        /* out of memory where the driver can say it: calls that take memory */
        int takes = call == CUA_CALL_CREATE || call == CUA_CALL_RESERVE || call == CUA_CALL_ALLOC ||
                    call == CUA_CALL_HOST_ALLOC;
        if (getenv("CUA_FUZZ_TRACE")) fprintf(stderr, "op %llu: fault rule on %s\n", (unsigned long long)W.ops, cua_call_name(call));
        unsigned nth = 1 + u8(r) % 4, count = 1 + (k >> 1) % 3; /* a driver failing 1-3 times in a row */
        expect(cua_fault_fail_calls(W.fault, call, nth, count,
                                    takes && (k & 1) ? CUA_ERR_OUT_OF_MEMORY : CUA_ERR_BACKEND) == CUA_OK,
               "fault rule");
    } else if (k & 0x20) {
        size_t n = 0, released = 0;
        cua_arena *list[8];
        expect(cua_arena_list(0, list, 8, &n) == CUA_OK, "list");
        expect(cua_trim_idle(0, &released) == CUA_OK || 1, "trim_idle");
    } else if (k & 0x10) { /* a stream about to go (it may come back later as a new one) */
        cua_stream s = streams[k % NSTREAMS];
        cua_status st = cua_stream_retire(CUA_ALL_DEVICES, s);
        if (s == 0) expect(st == CUA_ERR_INVALID_ARG, "the default stream is not retired");
        else expect(st == CUA_OK || st == CUA_ERR_BACKEND || st == CUA_ERR_OUT_OF_MEMORY, "stream retire");
    }
}

void one_op(reader *r)
{
    unsigned op = last_op = u8(r);
    int i = (int)(u8(r) % NARENAS);
    W.ops++;
    W.touched = 1u << i;
    W.asker = i;
    if (!W.s[i].a) {
        unsigned bits = u8(r);
        create_slot(i, bits, u16(r));
        return;
    }
    switch (op % 12) {
    case 0: case 1: case 2: op_alloc(r, i); break;
    case 3: case 4: op_free(r); break;
    case 5: op_bad_free(r); break;
    case 6: op_record(r); break;
    case 7: op_offload(r, i); break;
    case 8: op_settings(r, i); break;
    case 9: op_bad_args(r, i); break;
    case 10: op_streams(r); break;
    default:
        if (W.s[i].offloaded && !(op & 0x80)) restore_slot(i);
        if (W.s[i].a) destroy_slot(i, op & 0x10); /* (unless a callback of the restore did) */
        break;
    }
}
