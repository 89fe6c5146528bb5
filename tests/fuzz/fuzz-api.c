/*
 * fuzz-api.c - a libFuzzer target: the input is decoded into a sequence of
 * API calls over up to four arenas (VMM and whole segments, limits, floors,
 * release thresholds) sharing one host backend behind a fault backend, on
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
 */
#include "cuarena.h"
#include "cuarena_backend.h"
#include "fuzz-mt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NARENAS 4
#define NSTREAMS 4
#define MAX_LIVE 256
#define MAX_FREED 64
#define MAX_DEAD 16
#define GRAN ((size_t)512 << 10)
#define CAPACITY ((size_t)256 << 20)

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;
typedef reader *reader_ptr;

typedef struct block {
    unsigned char *p;
    size_t size;
    int arena;
    uint32_t seed;
} block;

typedef struct slot {
    cua_arena *a;
    int offloaded, discarded;
    uint64_t live; /* the model's live bytes */
} slot;

static struct {
    cua_backend *host, *fault;
    slot s[NARENAS];
    block live[MAX_LIVE];
    int nlive;
    void *freed[MAX_FREED]; /* recently freed pointers, for double frees */
    int nfreed;
    cua_arena *dead[MAX_DEAD]; /* destroyed handles */
    int ndead;
    uint64_t ops, inputs, creates;
    unsigned touched; /* arenas the current call may have changed */
    /* Callbacks that re-enter (see "callbacks" below): they read their
     * actions from the input too. */
    reader_ptr in;     /* the input being run */
    int asker;         /* the slot of the operation running (its arena "asks") */
    int depth;         /* callbacks nested in callbacks */
    int quiet;         /* settling: callbacks do nothing */
    unsigned dying;    /* slots whose destroy runs: their blocks are gone already */
    unsigned moving;   /* slots whose offload or restore runs: their bytes are in flux */
    uint64_t cb_calls, cb_actions, cb_destroys;
} W;

static unsigned last_op;

static int trace_level(void)
{
    const char *t = getenv("CUA_FUZZ_TRACE");
    return t ? atoi(t) : 0;
}

static const cua_stream streams[NSTREAMS] = { 0, 0x100, 0x200, 0x300 };

/* ---- input ---------------------------------------------------------------------- */


static unsigned u8(reader *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

/* Two bytes, low first. (Every read is its own statement or initializer: the
 * order of reads within one expression is unspecified in C, and gcc and
 * clang would decode an input differently.) */
static unsigned u16(reader *r)
{
    unsigned lo = u8(r);
    return lo | u8(r) << 8;
}

/* ---- checks --------------------------------------------------------------------- */

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz-api: operation %llu: %s%s%s (last error: %s)\n", (unsigned long long)W.ops, what,
            detail ? ": " : "", detail ? detail : "", cua_last_error());
    abort();
}

static void expect(int ok, const char *what)
{
    if (!ok) die(what, NULL);
}

/* A failure must say what happened in words. */
static void expect_fail(cua_status st, const char *what)
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

static void check_pattern(const block *b)
{
    size_t at[3], len;
    spots(b, at, &len);
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < len; i++)
            if (b->p[at[k] + i] != (unsigned char)(b->seed + at[k] + i)) die("a live block lost its contents", NULL);
}

/* The checks after a call: the arenas it touched (every arena every 16th
 * call and at the end of an input), the patterns of every live block. */
static void check_arenas(unsigned mask)
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

static void check_all(void) { check_arenas(~0u); }

/* ---- the model ------------------------------------------------------------------ */

static void forget_freed(const void *p)
{
    for (int k = 0; k < W.nfreed; k++)
        if (W.freed[k] == p) W.freed[k] = W.freed[--W.nfreed];
}

static void remember_freed(void *p)
{
    if (W.nfreed == MAX_FREED) W.nfreed--;
    memmove(W.freed + 1, W.freed, (size_t)W.nfreed * sizeof *W.freed);
    W.freed[0] = p;
    W.nfreed++;
}

static void drop_block(int j)
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

static void create_slot(int i, unsigned cfgbits, unsigned v)
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

static void bury(cua_arena *a)
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

static void free_live(void *p);

/* Restore until it works (it may fail on injected faults), then a fresh
 * pattern for the blocks of a discarded arena. */
static void restore_slot(int i)
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
static void free_live(void *p)
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

static size_t pick_size(reader *r)
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
static void add_live(int i, void *p, size_t size)
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
static int is_offloaded(cua_arena *a)
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

/* ---- callbacks that re-enter ------------------------------------------------------
 * The eviction callback and the arena-event callback act as the input says
 * (a byte per call): mostly nothing, else an allocation, a free, a trim, an
 * offload or discard, or a destroy - of any arena, the one whose call ran
 * them (the asker) included, as cuarena.h's rule for callbacks allows. The
 * model follows each action at once; the operation that ran them reads the
 * model again after its call and accepts what the rule says it answers.
 * Callbacks nest two deep at most (their own calls raise events too). */

static int slot_of(const cua_arena *a)
{
    for (int i = 0; i < NARENAS; i++)
        if (a && W.s[i].a == a) return i;
    return -1;
}

static void cb_alloc(reader *r, int k)
{
    size_t size = pick_size(r);
    cua_stream stream = streams[u8(r) % NSTREAMS];
    void *p = NULL;
    cua_status st = cua_arena_alloc(W.s[k].a, size, stream, &p);
    if (st != CUA_OK) {
        expect(!p, "a failed alloc in a callback sets *out to NULL");
        expect_fail(st, "alloc in a callback");
        return;
    }
    /* (the model may still say offloaded: the restore that runs this callback
     * marks it restored when it returns) */
    expect(W.s[k].a != NULL, "a block from an arena that is gone");
    add_live(k, p, size);
}

static void cb_free(reader *r)
{
    if (!W.nlive) return;
    int j = (int)(u16(r) % (unsigned)W.nlive);
    void *p = W.live[j].p;
    if (W.dying & (1u << W.live[j].arena)) return;
    if (!W.s[W.live[j].arena].offloaded && !(W.moving & (1u << W.live[j].arena)))
        check_pattern(&W.live[j]);
    W.touched |= 1u << W.live[j].arena;
    drop_block(j); /* (first: the callbacks its free runs must not pick it) */
    remember_freed(p);
    free_live(p);
}

static void cb_offload(reader *r, int k)
{
    slot *s = &W.s[k];
    int discard = u8(r) & 1;
    if (s->offloaded || (W.moving & (1u << k))) return;
    W.moving |= 1u << k;
    cua_status st = discard ? cua_arena_discard(s->a) : cua_arena_offload(s->a);
    W.moving &= ~(1u << k);
    if (!s->a || s->offloaded) return; /* a nested callback got there first */
    if (st == CUA_OK || (st == CUA_ERR_BACKEND && is_offloaded(s->a))) {
        s->offloaded = 1;
        s->discarded = discard;
    } else {
        expect_fail(st, "offload in a callback");
    }
}

/* Destroy slot k's arena (forced) from a callback. The arena of a destroy in
 * progress (its DESTROYED event) answers DESTROYED: the operation that
 * destroys it updates the model. */
static void cb_destroy(int k)
{
    slot *s = &W.s[k];
    cua_arena *a = s->a;
    W.dying |= 1u << k;
    cua_status st = cua_arena_destroy(a, CUA_DESTROY_FORCE);
    W.dying &= ~(1u << k);
    if (st == CUA_ERR_DESTROYED) return;
    expect(st == CUA_OK || st == CUA_ERR_BACKEND, "destroy in a callback");
    if (s->a != a) return; /* (a nested callback did it) */
    for (int j = W.nlive - 1; j >= 0; j--)
        if (W.live[j].arena == k) {
            remember_freed(W.live[j].p);
            drop_block(j);
        }
    bury(a);
    s->a = NULL;
    s->offloaded = s->discarded = 0;
    s->live = 0;
    W.cb_destroys++;
}

/* One callback's action; `asker` is the slot of the arena whose call ran it
 * (-1: none in the model, as a new arena's CREATED event), `own` its handle. */
static void cb_act(int asker, cua_arena *own)
{
    W.cb_calls++;
    if (W.quiet || W.depth >= 2 || !W.in || !W.in->n) return;
    reader *r = W.in;
    unsigned k = u8(r);
    if (k % 16 < 10) return; /* mostly nothing, as most callbacks only log */
    int t = (int)(u8(r) % NARENAS);
    if (k % 16 == 15) t = asker;
    W.cb_actions++;
    W.touched = ~0u;
    W.depth++;
    if (t < 0) { /* the asker is not in the model (its creation): destroy it */
        if (own) cua_arena_destroy(own, 0);
    } else if (W.s[t].a && !(W.dying & (1u << t))) {
        switch (k % 16) {
        case 10: cb_alloc(r, t); break;
        case 11: cb_free(r); break;
        case 12: (void)cua_arena_trim(W.s[t].a, (size_t)(u8(r) % 8) * GRAN, NULL); break;
        case 13: cb_offload(r, t); break;
        default: cb_destroy(t); break;
        }
    }
    W.depth--;
}

static void on_event(const cua_arena_event *ev, void *user)
{
    (void)user;
    int asker = slot_of(ev->arena);
    cb_act(asker, asker < 0 && ev->kind == CUA_ARENA_CREATED ? ev->arena : NULL);
}

static size_t on_evict(int device, size_t need, void *user)
{
    (void)device;
    (void)need;
    (void)user;
    cb_act(W.s[W.asker].a ? W.asker : -2, NULL);
    return 0;
}

static void one_op(reader *r)
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

/* ---- one input ------------------------------------------------------------------ */

static void setup_once(void)
{
    if (W.host) return;
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = CAPACITY;
    hc.granularity = GRAN;
    hc.manual_events = 1;
    if (cua_backend_host_create(&hc, &W.host) || cua_backend_fault_create(W.host, &W.fault))
        die("creating the backends", NULL);
    if (cua_set_event_callback(on_event, NULL) || cua_add_evict_callback(on_evict, NULL, 0))
        die("setting the callbacks", NULL);
}

/* The backend holds no handle or mapping (and, after destroy, no reservation
 * or event but its staging area's). */
static void backend_empty(const char *when, int all)
{
    cua_backend_stats bs;
    cua_backend_get_stats(W.host, &bs);
    /* The backend's own staging area (two buffers, a copy stream, an event per
     * buffer: kept for the next offload) is not the arenas'. */
    uint64_t staging_events = bs.streams ? 2 : 0;
    if (bs.handles || bs.handle_bytes || bs.mappings || (all && (bs.reservations || bs.events > staging_events))) {
        char what[200];
        cua_backend_stats fs;
        cua_backend_get_stats(W.fault, &fs);
        snprintf(what, sizeof what, "%llu handles (%llu bytes), %llu mappings, %llu reservations, %llu events, "
                 "%llu releases pending",
                 (unsigned long long)bs.handles, (unsigned long long)bs.handle_bytes,
                 (unsigned long long)bs.mappings, (unsigned long long)bs.reservations,
                 (unsigned long long)bs.events, (unsigned long long)fs.pending_releases);
        die(when, what);
    }
}

/* An arena made and destroyed at once, without faults. */
static void create_scratch(cua_arena **a)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "scratch";
    cfg.backend = W.fault;
    cfg.va_size = (size_t)1 << 30;
    if (cua_arena_create(&cfg, a) != CUA_OK || cua_arena_destroy(*a, 0) != CUA_OK)
        die("a scratch arena without faults", NULL);
    W.creates++;
}

/* Releases a destroy left to the backend (the driver refused them): without
 * faults, the next reserve retries them, and they must all go. */
static void retry_pending(void)
{
    cua_backend_stats bs;
    cua_backend_get_stats(W.fault, &bs);
    if (!bs.pending_releases) return;
    cua_arena *scratch;
    create_scratch(&scratch);
    cua_backend_get_stats(W.fault, &bs);
    expect(bs.pending_releases == 0, "the backend retried the releases a destroy left");
}

/* Back to an empty state: no faults, every block freed, every arena restored,
 * trimmed and without limit or floor; the backend holds only what is mapped. */
static void settle(void)
{
    W.quiet++; /* no callback acts: the end must converge */
    cua_fault_fail_random(W.fault, 0, 0);
    for (int k = 0; k < CUA_CALL_COUNT; k++) cua_fault_fail_nth(W.fault, (cua_call)k, 0, CUA_ERR_BACKEND);
    for (int i = 0; i < NARENAS; i++)
        if (W.s[i].a && W.s[i].offloaded) restore_slot(i);
    while (W.nlive) {
        check_pattern(&W.live[W.nlive - 1]);
        free_live(W.live[W.nlive - 1].p);
        drop_block(W.nlive - 1);
    }
    /* A first trim lets frees whose streams could not be waited for record
     * their events now (as any later call does); then the streams' work ends. */
    for (int i = 0; i < NARENAS; i++)
        if (W.s[i].a && cua_arena_trim(W.s[i].a, 0, NULL) != CUA_OK) die("trim at the end", NULL);
    for (int s = 0; s < NSTREAMS; s++) cua_host_stream_complete(W.host, streams[s]);
    for (int i = 0; i < NARENAS; i++) {
        if (!W.s[i].a) continue;
        cua_arena_set_floor(W.s[i].a, 0);
        cua_arena_set_limit(W.s[i].a, 0);
        if (cua_arena_trim(W.s[i].a, 0, NULL) != CUA_OK) die("trim at the end", NULL);
        cua_stats st;
        cua_arena_get_stats(W.s[i].a, &st);
        if (st.live_bytes || st.mapped_bytes) die("an arena still maps memory after freeing all and trim(0)", NULL);
    }
    check_all();
    retry_pending();
    backend_empty("with every arena empty and trimmed", 0);
    for (int i = 0; i < NARENAS; i++)
        if (W.s[i].a) {
            if (trace_level() > 1) {
                cua_backend_stats bs;
                cua_backend_get_stats(W.host, &bs);
                fprintf(stderr, "settle: before destroying slot %d: %llu events\n", i, (unsigned long long)bs.events);
            }
            if (cua_arena_destroy(W.s[i].a, 0) != CUA_OK) die("destroy of an empty arena", NULL);
            bury(W.s[i].a);
            W.s[i].a = NULL;
        }
    retry_pending();
    backend_empty("after destroying every arena", 1);
    W.nfreed = 0;
    W.quiet--;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int nthreads = fuzz_mt_threads();
    if (nthreads) {
        fuzz_mt_input(data, size, nthreads);
        return 0;
    }
    setup_once();
    reader r = { data, size };
    W.in = &r;
    W.inputs++;
    W.ndead = 0; /* handles of earlier inputs: answered too, but kept out of the model */
    for (int i = 0; i < NARENAS; i++) {
        unsigned bits = u8(&r);
        create_slot(i, bits, u16(&r));
    }
    while (r.n) {
        one_op(&r);
        /* bad pointers, stream completion and faults reach any arena */
        check_arenas(W.ops % 16 == 0 || last_op % 12 == 5 || last_op % 12 == 10 ? ~0u : W.touched);
        if (trace_level() > 1) {
            cua_backend_stats bs;
            cua_backend_get_stats(W.host, &bs);
            fprintf(stderr, "op %llu: op byte %u, %llu events, %d live\n", (unsigned long long)W.ops, last_op,
                    (unsigned long long)bs.events, W.nlive);
        }
    }
    settle();
    W.in = NULL;
    return 0;
}

static void print_stats(void)
{
    uint64_t inputs, ops, creates;
    fuzz_mt_counts(&inputs, &ops, &creates);
    fprintf(stderr, "fuzz-api: %llu inputs, %llu operations, %llu arenas created, %llu callbacks "
            "(%llu acted, %llu destroys from a callback), 0 violations\n",
            (unsigned long long)(W.inputs + inputs), (unsigned long long)(W.ops + ops),
            (unsigned long long)(W.creates + creates), (unsigned long long)W.cb_calls,
            (unsigned long long)W.cb_actions, (unsigned long long)W.cb_destroys);
}

#ifdef CUA_FUZZ_MAIN
/* Without libFuzzer: run every file named, and every file in every directory named. */
#include <dirent.h>

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (getenv("CUA_FUZZ_TRACE")) fprintf(stderr, "input %s\n", path);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

int main(int argc, char **argv)
{
    int files = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (!d) {
            if (run_file(argv[i])) {
                fprintf(stderr, "fuzz-api-run: cannot read %s\n", argv[i]);
                return 2;
            }
            files++;
            continue;
        }
        struct dirent *e;
        char path[4096];
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            if (run_file(path) == 0) files++;
        }
        closedir(d);
    }
    print_stats();
    printf("%d inputs run, 0 violations\n", files);
    return files ? 0 : 2;
}
#else
__attribute__((constructor)) static void stats_at_exit(void)
{
    if (getenv("CUA_FUZZ_STATS")) atexit(print_stats);
}
#endif
