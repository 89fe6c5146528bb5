/*
 * test-stats.c - an arena's figures: live, mapped, cached, largest free block,
 * fragmentation, peaks and their reset, driver-call counts, JSON output.
 */
#include "test.h"


static cua_backend *bk;

static cua_arena *make(void)
{
    if (test_host_backend(512 * MiB, 0, &bk) != CUA_OK) return NULL;
    return test_arena_with(bk, "stats \"quoted\"", CUA_ARENA_NO_FOOTPRINT_CAP, "va_size:1G");
}

static cua_status done(cua_arena *a)
{
    return test_teardown(a, bk);
}

TEST_ON(figures_follow_allocations, make(), done)
{
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.live_bytes == 0 && s.mapped_bytes == 0 && s.reserved_bytes == ((size_t)1 << 30));
    CHECK(s.mapped_over_live == 0.0 && s.free_fragmentation == 0.0);
    void *p[4];
    for (int i = 0; i < 4; i++) CHECK_OK(cua_arena_alloc(a, 3 * MiB, 0, &p[i]));
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.live_bytes == 12 * MiB && s.live_blocks == 4 && s.allocated_bytes == 12 * MiB);
    CHECK(s.mapped_bytes == 12 * MiB && s.free_bytes == 0 && s.cached_bytes == 0);
    CHECK(s.alloc_count == 4 && s.peak_live_bytes == 12 * MiB);
    CHECK(s.calls[CUA_CALL_MAP] == 6 && s.calls[CUA_CALL_CREATE] == 6);
    CHECK(s.calls[CUA_CALL_SET_ACCESS] >= 1 && s.calls[CUA_CALL_RESERVE] == 1);
    CHECK(s.mapped_over_live == 1.0);
    /* Blocks [0,3) [3,6) [6,9) [9,12) MiB on 2 MiB pages. Free the 2nd and 4th:
     * 6 MiB free in two runs of 3 MiB; pages [4,6) and [10,12) hold no live
     * byte any more: 4 MiB cached. */
    CHECK_OK(cua_free(p[1]));
    CHECK_OK(cua_free(p[3]));
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.live_bytes == 6 * MiB && s.free_bytes == 6 * MiB);
    CHECK(s.largest_free_bytes == 3 * MiB);
    CHECK(s.free_fragmentation == 0.5);
    CHECK(s.cached_bytes == 4 * MiB);
    CHECK(s.free_count == 2);
    CHECK(s.peak_live_bytes == 12 * MiB && s.peak_mapped_bytes == 12 * MiB);
    CHECK(s.mapped_over_live == 2.0);
    CHECK_OK(cua_arena_reset_peaks(a));
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.peak_live_bytes == 6 * MiB);
    size_t released;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(released == 4 * MiB && s.trimmed_bytes == 4 * MiB && s.trim_count == 1);
    CHECK(s.mapped_bytes == 8 * MiB && s.calls[CUA_CALL_UNMAP] == 2); /* not adjacent */
    CHECK(s.calls[CUA_CALL_RELEASE] == 2);
}

TEST_ON(oom_is_counted, make(), done)
{
    CHECK_OK(cua_arena_set_limit(a, 4 * MiB));
    void *p;
    CHECK_ST(cua_arena_alloc(a, 5 * MiB, 0, &p), CUA_ERR_LIMIT);
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.oom_count == 1 && s.limit_bytes == 4 * MiB && s.alloc_count == 0);
}

TEST_ON(json_has_every_field_and_escapes_the_name, make(), done)
{
    void *p;
    CHECK_OK(cua_arena_alloc(a, 1000, 0, &p));
    size_t len = 0;
    CHECK_OK(cua_arena_stats_json(a, NULL, 0, &len));
    CHECK(len > 100);
    char *buf = malloc(len + 1);
    size_t len2 = 0;
    CHECK_OK(cua_arena_stats_json(a, buf, len + 1, &len2));
    CHECK(len2 == len && strlen(buf) == len);
    CHECK(buf[0] == '{' && buf[len - 1] == '}');
    const char *keys[] = {"\"name\":\"stats \\\"quoted\\\"\"", "\"live_bytes\":1000",
                          "\"mapped_bytes\":2097152", "\"peak_mapped_bytes\"",
                          "\"largest_free_bytes\"", "\"mapped_over_live\"",
                          "\"free_fragmentation\"", "\"calls\":{\"reserve\":1",
                          "\"call_ns\":{", "\"backend\":\"host\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (!strstr(buf, keys[i])) fprintf(stderr, "missing %s in %s\n", keys[i], buf);
        CHECK(strstr(buf, keys[i]) != NULL);
    }
    /* a short buffer is cut but terminated, and says how much is needed */
    char small[16];
    CHECK_OK(cua_arena_stats_json(a, small, sizeof small, &len2));
    CHECK(len2 == len && strlen(small) == sizeof small - 1);
    free(buf);
}

TEST_ON(backend_counts_calls_and_live_objects, make(), done)
{
    void *p;
    CHECK_OK(cua_arena_alloc(a, 7 * MiB, 0, &p));
    cua_backend_stats bs;
    CHECK_OK(cua_backend_get_stats(bk, &bs));
    CHECK(bs.handles == 4 && bs.mappings == 4 && bs.reservations == 1);
    CHECK(bs.handle_bytes == 8 * MiB && bs.total_bytes == 512 * MiB);
    CHECK(bs.free_bytes == 504 * MiB);
    CHECK(bs.calls[CUA_CALL_CREATE] == 4 && bs.failures == 0);
}

/* ---- snapshots: cua_arena_walk ---------------------------------------------------- */

typedef struct walk_seen {
    cua_arena *arena;
    size_t segments, seg_bytes, live_req, live_pieces, first_pieces;
    uintptr_t seg_end, next; /* the current segment's end, the next piece's address */
    int bad;                 /* pieces that do not tile their segment */
    int called_back;         /* cuarena calls made from the callback that worked */
} walk_seen;

static void on_region(const cua_region *r, void *user)
{
    walk_seen *w = user;
    if (r->kind == CUA_REGION_SEGMENT) {
        if (w->next != w->seg_end) w->bad++; /* the last segment was not covered */
        w->segments++;
        w->seg_bytes += r->size;
        w->next = r->address;
        w->seg_end = r->address + r->size;
        cua_stats s; /* the lock is not held: this must not deadlock */
        if (cua_arena_get_stats(w->arena, &s) == CUA_OK) w->called_back++;
        return;
    }
    if (r->address != w->next || r->address + r->size > w->seg_end) w->bad++;
    w->next = r->address + r->size;
    if (r->kind == CUA_REGION_LIVE) {
        w->live_pieces++;
        w->live_req += r->requested;
        if (r->requested) w->first_pieces++;
    }
}

TEST(walk_reports_segments_tiled_by_block_pieces)
{
    cua_arena *a = make();
    CHECK(a);
    void *small, *mid, *big, *gone;
    CHECK_OK(cua_arena_alloc(a, 1000, 0, &small));
    CHECK_OK(cua_arena_alloc(a, 3 * MiB + 5, 0, &gone));
    CHECK_OK(cua_arena_alloc(a, 5 * MiB, 0, &mid)); /* spans 2 MiB chunks: cut in pieces */
    CHECK_OK(cua_arena_alloc(a, 100 * MiB, 0, &big)); /* 32 MiB chunks */
    CHECK_OK(cua_free(gone));
    walk_seen w = {.arena = a};
    CHECK_OK(cua_arena_walk(a, on_region, &w));
    CHECK(w.next == w.seg_end && w.bad == 0);
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(w.seg_bytes == s.mapped_bytes && w.segments > 3 && w.called_back == (int)w.segments);
    CHECK(w.live_req == s.live_bytes && w.first_pieces == 3 && w.live_pieces > 3);
    CHECK_ST(cua_arena_walk(a, NULL, &w), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_arena_walk(NULL, on_region, &w), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_free(small));
    CHECK_OK(cua_free(mid));
    CHECK_OK(cua_free(big));
    size_t released;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    walk_seen empty = {.arena = a};
    CHECK_OK(cua_arena_walk(a, on_region, &empty));
    CHECK(empty.segments == 0);
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_ST(cua_arena_walk(a, on_region, &w), CUA_ERR_DESTROYED);
    CHECK_OK(cua_backend_destroy(bk));
}

/* Without VMM every segment is a whole backend allocation at an address of
 * its own; the walk still reports each with the pieces of its blocks. */
TEST(walk_reports_whole_segments_without_vmm)
{
    CHECK_OK(test_host_backend(256 * MiB, 0, &bk));
    cua_arena_config cfg;
    test_config(&cfg);
    cfg.backend = bk;
    cfg.flags = CUA_ARENA_NO_VMM | CUA_ARENA_CHECK_ALWAYS;
    cua_arena *a = test_create(&cfg);
    CHECK(a);
    void *p[4];
    size_t sizes[4] = {1000, 3 * MiB, 20 * MiB, 5000};
    for (int i = 0; i < 4; i++) CHECK_OK(cua_arena_alloc(a, sizes[i], 0, &p[i]));
    CHECK_OK(cua_free(p[1]));
    walk_seen w = {.arena = a};
    CHECK_OK(cua_arena_walk(a, on_region, &w));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(w.next == w.seg_end && w.bad == 0);
    CHECK(w.seg_bytes == s.mapped_bytes && w.live_req == s.live_bytes && w.first_pieces == 3);
    CHECK_OK(done(a));
}


/* The allocation history: allocations, frees (through the lock and through a
 * thread cache), mappings, unmappings and out-of-memory answers, in order,
 * in a ring that keeps the newest; off, it records nothing. */
TEST(history_records_the_events_of_a_device)
{
    size_t n = 1;
    CHECK_ST(cua_history_enable(-1, 10), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_history_read(0, NULL, 5, &n), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_history_enable(7, 64)); /* a device of its own: no other test's events */
    cua_arena_config cfg;
    test_config(&cfg);
    cfg.device = 7;
    cfg.flags = 0;
    cfg.limit = 8 * MiB;
    cfg.thread_cache = CUA_THREAD_CACHE_ON;
    cua_arena *a;
    CHECK_OK(cua_arena_create(&cfg, &a));
    void *p, *q, *r;
    CHECK_OK(cua_arena_alloc(a, 3000, 0, &p));
    CHECK_OK(cua_free(p));                       /* into the thread's cache */
    CHECK_OK(cua_arena_alloc(a, 2900, 0, &q));   /* from it */
    CHECK(q == p);
    CHECK_ST(cua_arena_alloc(a, 9 * MiB, 0, &r), CUA_ERR_LIMIT);
    CHECK_OK(cua_free(q));
    size_t released;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    CHECK_OK(cua_history_read(7, NULL, 0, &n));
    cua_history_entry e[16];
    CHECK(n == 7 && n <= 16);
    CHECK_OK(cua_history_read(7, e, 16, &n));
    int want[7] = {CUA_HISTORY_MAP, CUA_HISTORY_ALLOC, CUA_HISTORY_FREE, CUA_HISTORY_ALLOC,
                   CUA_HISTORY_OOM, CUA_HISTORY_FREE, CUA_HISTORY_UNMAP};
    for (size_t i = 0; i < n; i++) {
        CHECK(e[i].action == want[i]);
        CHECK(i == 0 || e[i].time_ns >= e[i - 1].time_ns);
    }
    CHECK(e[1].address == (uintptr_t)p && e[1].size == 3000 && !strcmp(e[1].arena, cfg.name ? cfg.name : "arena"));
    CHECK(e[3].address == (uintptr_t)p && e[3].size == 2900);
    CHECK(e[4].size == 9 * MiB && e[4].address == 0);
    CHECK(e[0].address == e[6].address && e[0].size == e[6].size && e[0].size > 0);
    /* the ring keeps the newest two */
    cua_history_entry last[2];
    CHECK_OK(cua_history_read(7, last, 2, &n));
    CHECK(n == 2 && last[0].action == CUA_HISTORY_FREE && last[1].action == CUA_HISTORY_UNMAP);
    CHECK_OK(cua_history_enable(7, 2));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(cua_arena_alloc(a, 1024, 0, &p));
        CHECK_OK(cua_free(p));
    }
    CHECK_OK(cua_history_read(7, e, 16, &n));
    CHECK(n == 2 && e[0].action == CUA_HISTORY_ALLOC && e[1].action == CUA_HISTORY_FREE);
    /* off: nothing more is recorded, what was recorded stays */
    CHECK_OK(cua_history_enable(7, 0));
    CHECK_OK(cua_arena_alloc(a, 1024, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_history_read(7, NULL, 0, &n));
    CHECK(n == 2);
    CHECK_OK(cua_arena_destroy(a, 0));
}

/* An offloaded arena's live blocks hold no pages: its free bytes are what is
 * mapped (nothing, after a clean offload), not mapped - allocated wrapped
 * around to 2^64 - something (stats, JSON, the device report). */
TEST(offloaded_arena_statistics_do_not_wrap)
{
    cua_arena *a = make();
    CHECK(a);
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, 5 * MiB, 0, &p));
    CHECK_OK(cua_arena_alloc(a, 3000, 0, &q));
    CHECK_OK(cua_arena_offload(a));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.mapped_bytes == 0 && s.free_bytes == 0 && s.live_bytes == 5 * MiB + 3000);
    CHECK(s.free_fragmentation >= 0.0 && s.free_fragmentation <= 1.0);
    char buf[4096];
    size_t len;
    CHECK_OK(cua_arena_stats_json(a, buf, sizeof buf, &len));
    CHECK(strstr(buf, "\"free_bytes\":0,"));
    CHECK_OK(cua_device_report_json(0, buf, sizeof buf, &len));
    CHECK(!strstr(buf, "18446744"));
    CHECK_OK(cua_arena_restore(a));
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.free_bytes <= s.mapped_bytes && s.live_bytes == 5 * MiB + 3000);
    CHECK_OK(done(a));
}

typedef struct order_seen {
    uintptr_t last;
    int segments, backwards;
} order_seen;

static void on_segment(const cua_region *r, void *user)
{
    order_seen *o = user;
    if (r->kind != CUA_REGION_SEGMENT) return;
    if (o->segments++ && r->address < o->last) o->backwards++;
    o->last = r->address;
}

/* cua_arena_walk reports in address order, also segments the driver placed
 * where it chose (no VMM): not in the order of the arena's offsets. */
TEST(walk_of_whole_segments_is_in_address_order)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 256 * MiB;
    CHECK_OK(cua_backend_host_create(&hc, &bk));
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend = bk;
    cfg.flags = CUA_ARENA_NO_VMM;
    cua_arena *a;
    CHECK_OK(cua_arena_create(&cfg, &a));
    void *p[6];
    for (int i = 0; i < 6; i++) CHECK_OK(cua_arena_alloc(a, (size_t)(3 + i) * MiB, 0, &p[i]));
    order_seen o = {0};
    CHECK_OK(cua_arena_walk(a, on_segment, &o));
    CHECK(o.segments >= 6);
    CHECK(o.backwards == 0);
    walk_seen w = {.arena = a};
    CHECK_OK(cua_arena_walk(a, on_region, &w)); /* still: each segment tiled by its pieces */
    CHECK(w.next == w.seg_end && w.bad == 0);
    CHECK_OK(cua_arena_destroy(a, CUA_DESTROY_FORCE));
    CHECK_OK(cua_backend_destroy(bk));
}
