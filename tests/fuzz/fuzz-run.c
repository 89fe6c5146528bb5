/*
 * fuzz-run.c - one input of the API fuzzer from start to end (fuzz-api.c
 * describes the fuzzer): the backends and callbacks set up once, the arenas
 * created, the operations run with the checks after each, and everything
 * settled back to an empty backend; the libFuzzer entry point, and with
 * CUA_FUZZ_MAIN the main of fuzz-api-run, which runs files and directories.
 */
#include "fuzz-api.h"
#include "fuzz-mt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- one input ------------------------------------------------------------------ */

/* The supplier's segments: host memory, at most half the capacity, and a
 * failure (no segment) at the allocation supply_fail_at. */
static void *supply_alloc(size_t size, int device, void *ctx)
{
    (void)device, (void)ctx;
    W.supply_allocs++;
    if (W.supply_fail_at && W.supply_allocs == W.supply_fail_at) return NULL;
    if (W.supply_live + size > CAPACITY / 2) return NULL;
    void *p = aligned_alloc(4096, size);
    if (p) W.supply_live += size;
    return p;
}

static void supply_free(void *p, size_t size, int device, void *ctx)
{
    (void)device, (void)ctx;
    if (W.supply_live < size) die("the supplier got back more than it gave", NULL);
    W.supply_live -= size;
    free(p);
}

static void setup_once(void)
{
    if (W.host) return;
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = CAPACITY;
    hc.granularity = GRAN;
    hc.manual_events = 1;
    if (cua_backend_host_create(&hc, &W.host) || cua_backend_fault_create(W.host, &W.fault) ||
        cua_backend_supplier_create(W.fault, supply_alloc, supply_free, NULL, &W.supplied))
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
     * buffer: kept for the next offload) is not the arenas'. (The supplier
     * backend has none: its arenas of whole segments cannot offload.) */
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

/* What the supplier backend was left to retry (an event a destroy could not
 * give back, say): its next segment asked retries it, so one is asked. */
static void retry_pending_supplied(void)
{
    cua_backend_stats bs;
    cua_backend_get_stats(W.supplied, &bs);
    if (!bs.pending_releases) return;
    W.supply_fail_at = 0;
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "scratch-supplied";
    cfg.backend = W.supplied;
    cua_arena *a;
    void *p;
    if (cua_arena_create(&cfg, &a) != CUA_OK || cua_arena_alloc(a, GRAN, 0, &p) != CUA_OK ||
        cua_free(p) != CUA_OK || cua_arena_destroy(a, 0) != CUA_OK)
        die("a scratch arena on the supplier, without faults", NULL);
    W.creates++;
    cua_backend_get_stats(W.supplied, &bs);
    expect(bs.pending_releases == 0, "the supplier backend retried what a destroy left");
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
    retry_pending_supplied();
    backend_empty("after destroying every arena", 1);
    if (W.supply_live) die("after destroying every arena", "the supplier's segments are not all back");
    W.supply_fail_at = 0;
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
            "(%llu acted, %llu destroys from a callback), %llu supplier segments asked, "
            "0 violations\n",
            (unsigned long long)(W.inputs + inputs), (unsigned long long)(W.ops + ops),
            (unsigned long long)(W.creates + creates), (unsigned long long)W.cb_calls,
            (unsigned long long)W.cb_actions, (unsigned long long)W.cb_destroys,
            (unsigned long long)W.supply_allocs);
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
