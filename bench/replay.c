/*
 * replay.c - cuarena-replay: replay catrace files through a cuarena arena and
 * print, per trace, one JSON line of memory and speed figures.
 *
 * Per trace, separate arenas (and backends) serve separate purposes, so that
 * one measurement does not disturb another:
 *   metrics  - one replay with trims at the --trim-at markers: peaks, driver
 *              calls, mapped bytes after teardown, leak check after destroy;
 *   timing   - one warm arena, a warm-up run and --repeat timed runs;
 *   budget   - with --budget-search, a fresh arena per tried limit;
 *   fault    - with --fault KIND:N, the metrics replay over a fault backend
 *              (instead of all of the above).
 *
 * Exit status: 0 ok, 1 a replay failed, 2 usage or input error.
 */
#include "pin.h" /* first: sched.h needs _GNU_SOURCE */
#include "replay.h"
#include "trace.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* State of one replay of a trace through its arenas: one, or with
 * --split-arenas one per arena name of the trace (arenas[0] takes the
 * allocations that name none, arenas[1 + i] those of name i). */
typedef struct replay {
    const trace *t;
    const char *name;
    cua_arena *arena;   /* arenas[0] */
    cua_arena **arenas;
    uint32_t narenas;
    void **ptrs;        /* slot -> live pointer */
    uint64_t live;      /* asked bytes live now */
    uint64_t peak_live;
    long last_marker;   /* marker index last passed, -1 none */
    cua_status st;      /* the first failure */
    size_t failed_event;
    char msg[1024];
} replay;

/* ---- backends ----------------------------------------------------------------- */

/* The one place that creates a backend of a kind. */
static cua_status make_backend(const char *kind, cua_backend **out)
{
    *out = NULL;
    if (strcmp(kind, "host") == 0) return cua_backend_host_create(NULL, out);
    return cua_backend_cuda_create(0, out); /* answers NOT_SUPPORTED when not built */
}

static cua_status open_arena(cua_backend *be, size_t limit, cua_arena **out)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "replay";
    cfg.backend = be;
    cua_status st = cua_config_from_env(&cfg); /* validated in main */
    if (st) return st;
    if (limit) cfg.limit = limit;
    return cua_arena_create(&cfg, out);
}

static void die_oom(void)
{
    fprintf(stderr, "cuarena-replay: out of host memory\n");
    exit(1);
}

static void die_lib(const char *what, cua_status st)
{
    fprintf(stderr, "cuarena-replay: %s: %s: %s\n", what, cua_status_name(st), cua_last_error());
    exit(1);
}

/* ---- replaying events ---------------------------------------------------------- */

/* The arenas of a replay: one, or (split) one per arena name of the trace
 * plus one for allocations that name none, each named as the trace names it. */
static cua_status open_arenas(cua_backend *be, const trace *t, int split, cua_arena ***out,
                              uint32_t *n)
{
    *n = split ? t->n_arena_names + 1 : 1;
    cua_arena **v = calloc(*n, sizeof *v);
    if (!v) die_oom();
    cua_status st = CUA_OK;
    for (uint32_t i = 0; i < *n && st == CUA_OK; i++) {
        cua_arena_config cfg;
        cua_arena_config_init(&cfg);
        cfg.backend = be;
        cfg.name = i ? t->pool + t->arena_names[i - 1] : "replay";
        st = cua_config_from_env(&cfg); /* validated in main */
        if (st == CUA_OK) st = cua_arena_create(&cfg, &v[i]);
    }
    *out = v;
    return st;
}

static void close_arenas(cua_arena **v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (v[i]) cua_arena_destroy(v[i], CUA_DESTROY_FORCE);
    free(v);
}

/* The arena of alloc event e. */
static inline cua_arena *arena_of(const replay *r, const trace_event *e)
{
    return r->narenas > 1 ? r->arenas[e->arena] : r->arena;
}

static int replay_init(replay *r, const trace *t, const char *name, cua_arena *arena)
{
    memset(r, 0, sizeof *r);
    r->t = t;
    r->name = name;
    r->arena = arena;
    r->arenas = &r->arena;
    r->narenas = 1;
    r->last_marker = -1;
    r->ptrs = calloc(t->n_allocs ? t->n_allocs : 1, sizeof *r->ptrs);
    return r->ptrs ? 0 : -1;
}

static cua_status replay_fail(replay *r, size_t i, cua_status st)
{
    r->st = st;
    r->failed_event = i;
    snprintf(r->msg, sizeof r->msg, "%s", cua_last_error());
    return st;
}

/* Run event i if it is an alloc or a free (markers are the caller's). */
static cua_status replay_event(replay *r, size_t i)
{
    const trace_event *e = &r->t->events[i];
    cua_status st = CUA_OK;
    if (e->op == TRACE_ALLOC) {
        st = cua_arena_alloc(arena_of(r, e), (size_t)e->size, (cua_stream)e->stream, &r->ptrs[e->slot]);
        if (!st && (r->live += e->size) > r->peak_live) r->peak_live = r->live;
    } else if (e->op == TRACE_FREE) {
        st = cua_free(r->ptrs[e->slot]);
        r->ptrs[e->slot] = NULL;
        r->live -= e->size;
    } else {
        r->last_marker = (long)e->slot;
    }
    return st ? replay_fail(r, i, st) : CUA_OK;
}

/* Free every allocation still live; the first failure is recorded. */
static cua_status replay_free_rest(replay *r)
{
    for (uint32_t s = 0; s < r->t->n_allocs; s++) {
        if (!r->ptrs[s]) continue;
        cua_status st = cua_free(r->ptrs[s]);
        r->ptrs[s] = NULL;
        if (st && !r->st) replay_fail(r, r->t->n_events, st);
    }
    r->live = 0;
    return r->st;
}

/* Say on stderr which event failed, and how. */
static void report_failure(const replay *r, const char *run)
{
    const trace *t = r->t;
    fprintf(stderr, "cuarena-replay: %s: %s run: ", r->name, run);
    if (r->failed_event < t->n_events) {
        const trace_event *e = &t->events[r->failed_event];
        fprintf(stderr, "event %zu (%s of %" PRIu64 " bytes on stream %" PRIu64 ", slot %" PRIu32,
                r->failed_event, e->op == TRACE_ALLOC ? "alloc" : "free", e->size, e->stream, e->slot);
    } else {
        fprintf(stderr, "freeing what the trace left live (at its end");
    }
    if (r->last_marker >= 0)
        fprintf(stderr, ", after marker '%s'", trace_marker_name(t, (uint32_t)r->last_marker));
    else
        fprintf(stderr, ", before any marker");
    fprintf(stderr, "): %s: %s\n", cua_status_name(r->st), r->msg);
}

/* The figures of every arena of the replay, added up (peaks: see take_stats). */
static cua_status replay_stats(const replay *r, cua_stats *sum)
{
    memset(sum, 0, sizeof *sum);
    for (uint32_t a = 0; a < r->narenas; a++) {
        cua_stats s;
        cua_status st = cua_arena_get_stats(r->arenas[a], &s);
        if (st) return st;
        sum->mapped_bytes += s.mapped_bytes;
        sum->live_bytes += s.live_bytes;
        sum->peak_live_bytes += s.peak_live_bytes;
        sum->peak_mapped_bytes += s.peak_mapped_bytes;
        sum->mapped_total_bytes += s.mapped_total_bytes;
        sum->unmapped_total_bytes += s.unmapped_total_bytes;
        for (int k = 0; k < CUA_CALL_COUNT; k++) {
            sum->calls[k] += s.calls[k];
            sum->call_ns[k] += s.call_ns[k];
        }
    }
    return CUA_OK;
}

static uint64_t sum_calls(const uint64_t calls[CUA_CALL_COUNT])
{
    uint64_t n = 0;
    for (int k = 0; k < CUA_CALL_COUNT; k++) n += calls[k];
    return n;
}

/* ---- the metrics run -------------------------------------------------------------- */

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* At a trim marker: trim everything cached, record mapped - live (and the
 * mapped bytes after the trim in the timeline's marker, when there is one). */
static cua_status trim_marker(replay *r, size_t i, const char *prefix, result *res)
{
    const char *mark = trace_marker_name(r->t, r->t->events[i].slot);
    size_t released = 0;
    cua_stats s;
    if (!starts_with(mark, prefix)) return CUA_OK;
    cua_status st = CUA_OK;
    for (uint32_t a = 0; a < r->narenas && !st; a++) st = cua_arena_trim(r->arenas[a], 0, &released);
    if (!st) st = replay_stats(r, &s);
    if (st) return replay_fail(r, i, st);
    uint64_t over = s.mapped_bytes > s.live_bytes ? s.mapped_bytes - s.live_bytes : 0;
    if (!res->has_teardown || over > res->mapped_after_teardown) res->mapped_after_teardown = over;
    res->has_teardown = 1;
    tl_marker *m = timeline_marker_at(&res->tl, i);
    if (m) {
        m->trimmed = 1;
        m->mapped_after_trim = s.mapped_bytes;
        if (timeline_point(&res->tl, i, r->live, s.mapped_bytes)) die_oom(); /* the drop, at the same event */
    }
    return CUA_OK;
}

/* The timeline's sample after event i: every tl->every events, the last
 * event, and every marker (whose trim, if any, comes after). */
static cua_status sample(replay *r, size_t i, result *res)
{
    timeline *tl = &res->tl;
    const trace_event *e = &r->t->events[i];
    int mark = e->op == TRACE_MARK;
    if (!tl->every || (!mark && i % tl->every && i + 1 != r->t->n_events)) return CUA_OK;
    cua_stats s;
    cua_status st = replay_stats(r, &s);
    if (st) return replay_fail(r, i, st);
    if (timeline_point(tl, i, r->live, s.mapped_bytes)) die_oom();
    if (mark && timeline_marker(tl, i, e->slot, r->live, s.mapped_bytes)) die_oom();
    return CUA_OK;
}

/* Replay every event with trims at markers (and the checker if asked). */
static cua_status replay_with_marks(replay *r, const options *o, result *res)
{
    for (size_t i = 0; i < r->t->n_events; i++) {
        cua_status st = replay_event(r, i);
        if (!st) st = sample(r, i, res);
        if (!st && r->t->events[i].op == TRACE_MARK) st = trim_marker(r, i, o->trim_at, res);
        int check = o->check && (i % (size_t)o->check == 0 || r->t->events[i].op == TRACE_MARK);
        for (uint32_t a = 0; !st && check && a < r->narenas; a++)
            if ((st = cua_arena_check(r->arenas[a]))) replay_fail(r, i, st);
        if (st) return st;
    }
    return replay_free_rest(r);
}

/* After destroy: nothing may be left in the backend. 0 when clean. */
static int check_backend_empty(cua_backend *be, const char *name, result *res)
{
    cua_backend_stats bs;
    cua_status st = cua_backend_get_stats(be, &bs);
    if (st) die_lib("cua_backend_get_stats", st);
    res->final_mapped = bs.handle_bytes;
    if (bs.events)
        fprintf(stderr, "cuarena-replay: %s: warning: %" PRIu64 " events left in the backend\n", name, bs.events);
    if (!bs.handle_bytes && !bs.handles && !bs.reservations && !bs.mappings) return 0;
    fprintf(stderr, "cuarena-replay: %s: after destroy the backend still holds %" PRIu64 " bytes in %" PRIu64
            " handles, %" PRIu64 " mappings, %" PRIu64 " reservations\n",
            name, bs.handle_bytes, bs.handles, bs.mappings, bs.reservations);
    return 1;
}

/* The arena's figures at the end of the metrics run. */
static void take_stats(replay *r, result *res)
{
    cua_stats s;
    cua_status st = replay_stats(r, &s);
    if (st) die_lib("cua_arena_get_stats", st);
    res->peak_live = r->peak_live;
    res->peak_mapped = s.peak_mapped_bytes;
    if (r->narenas > 1) { /* the arenas' peaks came at other times: the device's is the one */
        size_t peak = 0;
        if ((st = cua_device_peak(0, &peak, NULL))) die_lib("cua_device_peak", st);
        res->peak_mapped = peak;
        s.peak_live_bytes = r->peak_live; /* (likewise: the replay's own count) */
    }
    memcpy(res->calls, s.calls, sizeof res->calls);
    res->driver_calls = sum_calls(s.calls);
    if (s.peak_live_bytes != r->peak_live || s.live_bytes != 0)
        fprintf(stderr, "cuarena-replay: %s: warning: arena stats say peak live %" PRIu64 ", live %" PRIu64
                "; the replay counted peak %" PRIu64 ", live 0\n", r->name, s.peak_live_bytes, s.live_bytes, r->peak_live);
}

/* Returns 1 when the replay failed; a leak after destroy sets res->leaked. */
static int metrics_run(const options *o, const trace *t, result *res)
{
    cua_backend *be;
    cua_arena **arenas;
    uint32_t narenas;
    replay r;
    cua_status st = make_backend(o->backend, &be);
    if (st) die_lib("creating the backend", st);
    if ((st = open_arenas(be, t, o->split_arenas, &arenas, &narenas))) die_lib("cua_arena_create", st);
    if (replay_init(&r, t, res->name, arenas[0])) die_oom();
    r.arenas = arenas;
    r.narenas = narenas;
    res->arenas = narenas;
    if ((st = cua_device_reset_peak(0))) die_lib("cua_device_reset_peak", st);
    int failed = replay_with_marks(&r, o, res) != CUA_OK;
    if (failed) report_failure(&r, "metrics");
    else take_stats(&r, res);
    for (uint32_t a = 0; a < narenas; a++) {
        st = cua_arena_destroy(arenas[a], failed ? CUA_DESTROY_FORCE : 0);
        if (st) {
            fprintf(stderr, "cuarena-replay: %s: cua_arena_destroy: %s: %s\n", res->name, cua_status_name(st), cua_last_error());
            failed = 1;
        }
        arenas[a] = NULL;
    }
    free(arenas);
    res->leaked = check_backend_empty(be, res->name, res);
    if ((st = cua_backend_destroy(be)))
        fprintf(stderr, "cuarena-replay: %s: cua_backend_destroy: %s: %s\n", res->name, cua_status_name(st), cua_last_error());
    free(r.ptrs);
    return failed;
}

/* ---- timing ------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One timed run: every alloc and free, then the frees of what stays live
 * (`rest`, n_rest slots). Returns its nanoseconds, or 0 on failure (in r). */
static uint64_t timed_run(replay *r, const uint32_t *rest, uint32_t n_rest)
{
    const trace_event *ev = r->t->events;
    size_t n = r->t->n_events;
    void **ptrs = r->ptrs;
    cua_status st = CUA_OK;
    uint64_t t0 = now_ns();
    size_t i;
    for (i = 0; i < n; i++) {
        if (ev[i].op == TRACE_ALLOC)
            st = cua_arena_alloc(arena_of(r, &ev[i]), (size_t)ev[i].size, (cua_stream)ev[i].stream,
                                 &ptrs[ev[i].slot]);
        else if (ev[i].op == TRACE_FREE)
            st = cua_free(ptrs[ev[i].slot]);
        else
            r->last_marker = (long)ev[i].slot; /* for the report; no trim when timing */
        if (st) break;
    }
    for (uint32_t k = 0; k < n_rest && !st; k++) st = cua_free(ptrs[rest[k]]);
    uint64_t dt = now_ns() - t0;
    if (st) {
        replay_fail(r, i, st); /* i == n: freeing the rest */
        return 0;
    }
    return dt ? dt : 1;
}

/* The slots the trace never frees. */
static uint32_t *live_at_end(const trace *t, uint32_t *n)
{
    unsigned char *live = calloc(t->n_allocs ? t->n_allocs : 1, 1);
    uint32_t *rest = malloc((t->n_live_at_end ? t->n_live_at_end : 1) * sizeof *rest);
    if (!live || !rest) die_oom();
    for (size_t i = 0; i < t->n_events; i++)
        if (t->events[i].op != TRACE_MARK) live[t->events[i].slot] = t->events[i].op == TRACE_ALLOC;
    *n = 0;
    for (uint32_t s = 0; s < t->n_allocs; s++)
        if (live[s]) rest[(*n)++] = s;
    free(live);
    return rest;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void arena_stats(const replay *r, cua_stats *s)
{
    cua_status st = replay_stats(r, s);
    if (st) die_lib("cua_arena_get_stats", st);
}

/* Run 0 warms the arena up; runs 1..repeat are timed. */
static int timing_runs(const options *o, const trace *t, result *res)
{
    cua_backend *be;
    cua_arena **arenas;
    uint32_t narenas;
    replay r;
    uint32_t n_rest;
    uint32_t *rest = live_at_end(t, &n_rest);
    double *ns = calloc((size_t)o->repeat, sizeof *ns);
    uint64_t per_run = 2 * (uint64_t)t->n_allocs;
    cua_stats before = {0}, after;
    cua_status st = make_backend(o->backend, &be);
    if (st) die_lib("creating the backend", st);
    if ((st = open_arenas(be, t, o->split_arenas, &arenas, &narenas))) die_lib("cua_arena_create", st);
    if (bench_pin_thread("cuarena-replay")) exit(2);
    if (!ns || replay_init(&r, t, res->name, arenas[0])) die_oom();
    r.arenas = arenas;
    r.narenas = narenas;
    int failed = 0;
    for (int run = 0; run <= o->repeat && !failed; run++) {
        if (run == 1) arena_stats(&r, &before);
        uint64_t dt = timed_run(&r, rest, n_rest);
        if (!dt) failed = 1;
        else if (run > 0) ns[run - 1] = per_run ? (double)dt / (double)per_run : 0.0;
    }
    if (failed) {
        report_failure(&r, "timing");
    } else {
        arena_stats(&r, &after); /* what the timed runs made backend calls for */
        for (int k = 0; k < CUA_CALL_COUNT; k++) {
            res->timed_calls[k] = after.calls[k] - before.calls[k];
            res->timed_ns[k] = after.call_ns[k] - before.call_ns[k];
        }
        res->warm_mapped_bytes =
            (after.mapped_total_bytes - before.mapped_total_bytes) / (uint64_t)o->repeat;
        res->warm_unmapped_bytes =
            (after.unmapped_total_bytes - before.unmapped_total_bytes) / (uint64_t)o->repeat;
        res->timed_driver_calls = sum_calls(res->timed_calls);
        res->timed_driver_ns = sum_calls(res->timed_ns);
        qsort(ns, (size_t)o->repeat, sizeof *ns, cmp_double);
        int m = o->repeat / 2;
        res->ns_med = o->repeat % 2 ? ns[m] : (ns[m - 1] + ns[m]) / 2;
        res->ns_min = ns[0];
        res->ns_max = ns[o->repeat - 1];
        res->has_timing = 1;
        if (timing_spread_wide(res))
            fprintf(stderr, "cuarena-replay: %s: warning: the timed runs spread %.0f %% of their "
                    "median (min %.1f, median %.1f, max %.1f ns per event): a busy machine or too "
                    "few runs (--repeat)\n", res->name, 100 * (res->ns_max - res->ns_min) / res->ns_med,
                    res->ns_min, res->ns_med, res->ns_max);
    }
    bench_unpin_thread();
    close_arenas(arenas, narenas);
    cua_backend_destroy(be);
    free(r.ptrs);
    free(ns);
    free(rest);
    return failed;
}

/* ---- budget search ----------------------------------------------------------------------- */

/* Replay under `limit` on a fresh arena as the metrics run replays (trims at
 * the --trim-at markers included: without them a cache kept across a
 * teardown is laid out differently, and a trace that completed with a peak
 * mapped of P could need a limit above P): 1 completes, 0 runs out of its
 * limit or of memory, -1 fails otherwise (reported). */
static int budget_attempt(cua_backend *be, const trace *t, const char *name, size_t limit,
                          const char *trim_at)
{
    cua_arena *arena;
    replay r;
    cua_status st = open_arena(be, limit, &arena);
    if (st) die_lib("cua_arena_create", st);
    if (replay_init(&r, t, name, arena)) die_oom();
    for (size_t i = 0; i < t->n_events && !st; i++) {
        const trace_event *e = &t->events[i];
        st = replay_event(&r, i);
        if (!st && e->op == TRACE_MARK && starts_with(trace_marker_name(t, e->slot), trim_at)) {
            size_t released;
            if ((st = cua_arena_trim(arena, 0, &released))) replay_fail(&r, i, st);
        }
    }
    if (!st) st = replay_free_rest(&r);
    int outcome = st == CUA_OK ? 1 : (st == CUA_ERR_LIMIT || st == CUA_ERR_OUT_OF_MEMORY) ? 0 : -1;
    if (outcome < 0) report_failure(&r, "budget");
    if ((st = cua_arena_destroy(arena, CUA_DESTROY_FORCE))) die_lib("cua_arena_destroy", st);
    free(r.ptrs);
    return outcome;
}

/* Bisect, in granularity pages, the smallest limit that completes the trace.
 * Every limit under peak live fails; start above at peak mapped. */
static int budget_search(const options *o, const trace *t, result *res)
{
    cua_backend *be;
    size_t gran;
    cua_status st = make_backend(o->backend, &be);
    if (st) die_lib("creating the backend", st);
    if ((st = cua_backend_granularity(be, &gran))) die_lib("cua_backend_granularity", st);
    uint64_t live = res->peak_live, lo = 0, hi = 0;
    int ok = live == 0; /* nothing to allocate: a budget of 0 does */
    if (live) {
        lo = (live + gran - 1) / gran * gran - gran; /* the largest page multiple < live */
        hi = (res->peak_mapped + gran - 1) / gran * gran;
        if (hi <= lo) hi = lo + gran;
    }
    while (!ok) {
        if ((ok = budget_attempt(be, t, res->name, (size_t)hi, o->trim_at)) < 0) break;
        if (!ok) {
            if (hi > (UINT64_C(1) << 50)) break; /* 1 PiB: give up */
            lo = hi, hi *= 2;
        }
    }
    uint64_t step = o->budget_step > gran ? o->budget_step / gran * gran : gran;
    while (ok > 0 && hi - lo > step) {
        uint64_t mid = lo + (hi - lo) / gran / 2 * gran;
        int r = budget_attempt(be, t, res->name, (size_t)mid, o->trim_at);
        if (r < 0) ok = -1;
        else if (r) hi = mid;
        else lo = mid;
    }
    if (ok == 0) fprintf(stderr, "cuarena-replay: %s: budget search: no limit up to %" PRIu64 " bytes completes\n", res->name, hi);
    cua_backend_destroy(be);
    if (ok <= 0) return 1;
    res->min_budget = hi;
    res->has_budget = 1;
    return 0;
}

/* ---- fault mode --------------------------------------------------------------------------- */

typedef struct fault_report {
    const char *stage;   /* "create", "replay", "complete" */
    cua_status st, destroy_st;
    long event;          /* failed event, -1 none */
    char message[1024], check[1024];
    uint64_t injected;
    cua_backend_stats inner;
} fault_report;

static void fault_replay(const options *o, const trace *t, const char *name, cua_backend *fb, fault_report *fr)
{
    cua_arena *arena;
    replay r;
    result scratch = { 0 };
    fr->stage = "create";
    fr->event = -1;
    snprintf(fr->check, sizeof fr->check, "ok");
    if ((fr->st = open_arena(fb, 0, &arena))) {
        snprintf(fr->message, sizeof fr->message, "%s", cua_last_error());
        return;
    }
    if (replay_init(&r, t, name, arena)) die_oom();
    fr->st = replay_with_marks(&r, o, &scratch);
    fr->stage = fr->st ? "replay" : "complete";
    if (fr->st) {
        snprintf(fr->message, sizeof fr->message, "%s", r.msg);
        if (r.failed_event < t->n_events) fr->event = (long)r.failed_event;
    }
    if (cua_arena_check(arena)) snprintf(fr->check, sizeof fr->check, "%s", cua_last_error());
    fr->destroy_st = cua_arena_destroy(arena, CUA_DESTROY_FORCE);
    free(r.ptrs);
}

static int fault_run(const options *o, const trace *t, const char *name)
{
    cua_backend *inner, *fb;
    fault_report fr = { 0 };
    cua_status st = make_backend(o->backend, &inner);
    if (st) die_lib("creating the backend", st);
    if ((st = cua_backend_fault_create(inner, &fb))) die_lib("cua_backend_fault_create", st);
    cua_status fail = (o->fault_call == CUA_CALL_CREATE || o->fault_call == CUA_CALL_RESERVE)
                          ? CUA_ERR_OUT_OF_MEMORY : CUA_ERR_BACKEND;
    if ((st = cua_fault_fail_nth(fb, o->fault_call, o->fault_nth, fail))) die_lib("cua_fault_fail_nth", st);
    fault_replay(o, t, name, fb, &fr);
    cua_fault_injected(fb, &fr.injected);
    if ((st = cua_backend_get_stats(inner, &fr.inner))) die_lib("cua_backend_get_stats", st);
    printf("{\"trace\":");
    bench_json_string(name);
    printf(",\"backend\":");
    bench_json_string(o->backend);
    printf(",\"fault\":");
    bench_json_string(o->fault);
    printf(",\"stage\":\"%s\",\"status\":\"%s\",\"event\":", fr.stage, cua_status_name(fr.st));
    if (fr.event >= 0) printf("%ld", fr.event); else printf("null");
    printf(",\"message\":");
    bench_json_string(fr.message);
    printf(",\"injected\":%" PRIu64 ",\"check\":", fr.injected);
    bench_json_string(fr.check);
    printf(",\"destroy_status\":\"%s\",\"final_mapped_bytes\":%" PRIu64 ",\"leaked_handles\":%" PRIu64
           ",\"leaked_mappings\":%" PRIu64 ",\"leaked_reservations\":%" PRIu64 "}\n",
           cua_status_name(fr.destroy_st), fr.inner.handle_bytes, fr.inner.handles, fr.inner.mappings,
           fr.inner.reservations);
    fflush(stdout);
    int leaked = fr.inner.handle_bytes || fr.inner.handles || fr.inner.mappings || fr.inner.reservations;
    cua_backend_destroy(fb);
    if (!leaked) cua_backend_destroy(inner); /* with leaks it would answer BUSY */
    return strcmp(fr.check, "ok") != 0 || leaked;
}

/* ---- main ------------------------------------------------------------------ */

/* The file's base name without .catrace or .catrace.gz. */
static void trace_name(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    static const char *const suffixes[] = { ".catrace.gz", ".catrace" };
    for (int k = 0; k < 2; k++) {
        size_t s = strlen(suffixes[k]);
        if (n > s && strcmp(base + n - s, suffixes[k]) == 0) {
            n -= s;
            break;
        }
    }
    snprintf(out, cap, "%.*s", (int)n, base);
}

/* Load and replay one file. Returns the exit status it deserves. */
static int run_file(const options *o, const char *path, result *res)
{
    trace t;
    char err[1024];
    memset(res, 0, sizeof *res);
    trace_status ts = trace_load(path, &t, err, sizeof err);
    if (ts) {
        fprintf(stderr, "cuarena-replay: %s (%s)\n", err, trace_status_name(ts));
        return 2;
    }
    trace_name(path, res->name, sizeof res->name);
    res->events = t.n_events;
    res->allocs = t.n_allocs;
    res->markers = t.n_markers;
    res->trace = &t;
    if (o->timeline) res->tl.every = t.n_events / o->timeline ? t.n_events / o->timeline : 1;
    int failed;
    if (o->fault) {
        failed = fault_run(o, &t, res->name);
    } else {
        failed = metrics_run(o, &t, res);
        if (!failed && o->repeat > 0) failed = timing_runs(o, &t, res);
        if (!failed && o->budget_search) failed = budget_search(o, &t, res);
        if (!failed) report_json(o, res);
        res->printed = !failed;
        failed |= res->leaked;
    }
    timeline_free(&res->tl);
    res->trace = NULL;
    trace_free(&t);
    return failed;
}

int main(int argc, char **argv)
{
    options o;
    options_parse(argc, argv, &o);
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    result *results = calloc((size_t)o.n_files, sizeof *results);
    int usable = results != NULL;
    if (!options_backend_built(o.backend)) {
        fprintf(stderr, "cuarena-replay: %s backend not built (this build has: host)\n", o.backend);
        usable = 0;
    } else if (cua_config_from_env(&cfg)) { /* checked once here, applied per arena */
        fprintf(stderr, "cuarena-replay: %s\n", cua_last_error());
        usable = 0;
    }
    if (!usable) {
        free(results);
        free(o.files);
        return 2;
    }
    int status = 0, n_done = 0;
    for (int i = 0; i < o.n_files; i++) {
        int s = run_file(&o, o.files[i], &results[n_done]);
        if (results[n_done].printed) n_done++;
        if (s > status) status = s;
    }
    if (o.table && !o.fault) report_table(results, n_done);
    free(results);
    free(o.files);
    return status;
}
