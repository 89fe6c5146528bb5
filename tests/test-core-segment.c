/*
 * test-core-segment.c - the segment (src/core/segment.h) driven alone on a
 * host backend, without an arena: init and fini, acquire / missing / release,
 * mapping in chunks (chunk_max, chunk_large), the idle list and the order of
 * trims, keep_handles, adopt, the observer's callbacks and their figures,
 * segments without VMM and their fences, peers, and the driver's failures
 * through the fault backend. The segment's validator (_cua_seg_check) runs
 * after every step, with the busy counts of the blocks the test holds, and is
 * shown to catch each kind of damage.
 */
#include "backend/fault.h"
#include "backend/host.h"
#include "core/segment.h"
#include "test.h"

#define PAGE (64 * KiB) /* the host backend's granularity here */
#define NPAGES 64       /* the segment's pages */

static cua_backend *host, *fault, *bk; /* bk: the one the segment uses */
static cua_callstats cs;
static cua_segment seg;
static uint64_t seq;

/* The blocks the test holds, as an arena would: [off, off + len) in pages. */
static struct { uint64_t off, len; } held[NPAGES];
static size_t nheld;

/* What the observer was told. */
static struct {
    unsigned mapped, trimmed, changes[CUA_SEG_GONE + 1];
    int64_t mapped_sum;
    uintptr_t last_addr;
    int64_t last_delta;
    uint64_t trim_off, trim_len;
    bool refuse; /* the next CUA_SEG_CAME fails */
} told;

static void on_mapped(void *ctx, uintptr_t addr, int64_t delta)
{
    (void)ctx;
    told.mapped++;
    told.mapped_sum += delta;
    told.last_addr = addr;
    told.last_delta = delta;
}

static cua_status on_segment(void *ctx, cua_seg_change what, uintptr_t addr, size_t len,
                             void **tag)
{
    (void)ctx;
    told.changes[what]++;
    told.last_addr = addr;
    told.last_delta = (int64_t)len;
    if (what == CUA_SEG_CAME) *tag = &told;
    if (what == CUA_SEG_CAME && told.refuse)
        return _cua_error(CUA_ERR_BACKEND, "the observer refuses the segment");
    return CUA_OK;
}

static void on_trimmed(void *ctx, uint64_t off, uint64_t len)
{
    (void)ctx;
    told.trimmed++;
    told.trim_off = off;
    told.trim_len = len;
}

static const cua_seg_observer observer = {NULL, on_mapped, on_segment, on_trimmed};

/* A segment of NPAGES pages with chunks of at most chunk_max pages
 * (chunk_large pages in long runs; 0: none) on a fresh host backend of
 * `capacity` pages, seen through a fault backend when `faulty`. */
typedef struct setup {
    uint32_t chunk_max, chunk_large, capacity;
    bool faulty, novmm;
} setup;

static cua_status make(setup s)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = (s.capacity ? s.capacity : NPAGES) * PAGE;
    hc.granularity = PAGE;
    hc.no_vmm = s.novmm;
    hc.peer_mask = 1u << 1;
    memset(&told, 0, sizeof told);
    memset(&cs, 0, sizeof cs);
    seq = nheld = 0;
    fault = NULL;
    cua_status st = _cua_backend_host_create(&hc, &host);
    if (st == CUA_OK && s.faulty) st = _cua_backend_fault_create(host, &fault);
    if (st != CUA_OK) return st;
    bk = fault ? fault : host;
    size_t large = s.chunk_large ? s.chunk_large * PAGE : CUA_CHUNK_LARGE_NONE;
    return _cua_seg_init(&seg, bk, &cs, NPAGES * PAGE, PAGE, s.chunk_max * PAGE, large, s.novmm,
                         &observer);
}

/* fini, and the backend holds nothing any more (its graves retried first). */
static bool done(void)
{
    cua_status st = _cua_seg_fini(&seg);
    if (fault) _cua_backend_destroy(fault);
    _cua_bk_retry_graves(host);
    bool clean = st == CUA_OK && test_backend_clean(host);
    return _cua_backend_destroy(host) == CUA_OK && clean;
}

/* The validator, with the busy counts of the blocks held. */
static cua_status check(void)
{
    static uint32_t busy[NPAGES];
    memset(busy, 0, sizeof busy);
    for (size_t i = 0; i < nheld; i++) {
        cua_status st = _cua_seg_check_block(&seg, held[i].off * PAGE, held[i].len * PAGE, busy);
        if (st != CUA_OK) return st;
    }
    return _cua_seg_check(&seg, busy);
}

static bool refused(const char *what)
{
    cua_status st = check();
    if (st == CUA_ERR_CORRUPT && strstr(cua_last_error(), what)) return true;
    fprintf(stderr, "validator: %s (%s), expected \"%s\"\n", cua_status_name(st),
            cua_last_error(), what);
    return false;
}

/* A block of `len` pages at page `off`, as an arena's alloc takes it: acquire
 * the mapped chunks, map what is missing; on failure release them again. */
static cua_status take(uint64_t off, uint64_t len)
{
    uint64_t missing = _cua_seg_acquire(&seg, off * PAGE, len * PAGE);
    cua_status st = missing ? _cua_seg_map(&seg, off * PAGE, len * PAGE) : CUA_OK;
    if (st != CUA_OK) {
        _cua_seg_release(&seg, off * PAGE, len * PAGE, seq);
        return st;
    }
    held[nheld].off = off;
    held[nheld++].len = len;
    return CUA_OK;
}

/* The block taken at page `off` goes: its chunks may become idle. */
static void drop(uint64_t off)
{
    for (size_t i = 0; i < nheld; i++) {
        if (held[i].off != off) continue;
        _cua_seg_release(&seg, off * PAGE, held[i].len * PAGE, ++seq);
        held[i] = held[--nheld];
        return;
    }
}

static uint64_t trim(uint64_t want_pages, uint64_t safe_seq, cua_status *st)
{
    uint64_t released = 0;
    *st = _cua_seg_trim(&seg, want_pages * PAGE, safe_seq, false, &released);
    return released / PAGE;
}

static cua_backend_stats host_stats(void)
{
    cua_backend_stats s;
    memset(&s, 0, sizeof s);
    cua_backend_get_stats(host, &s);
    return s;
}

/* SEG_TEST's fixture: the segment of make(s), NULL when it could not be made. */
static cua_segment *made(setup s)
{
    return make(s) == CUA_OK ? &seg : NULL;
}

/* SEG_TEST's teardown: the validator once more, then done(). */
static cua_status finished(cua_segment *s)
{
    (void)s;
    cua_status st = check();
    if (!done() && st == CUA_OK) st = _cua_error(CUA_ERR_BUSY, "the backend is not empty");
    return st;
}

/* A test on a fresh segment (make with the setup fields given), validated
 * and torn down after. */
#define SEG_TEST(name, ...) TEST_WITH(name, cua_segment *, s, made((setup){__VA_ARGS__}), finished)

/* The chunk sizes along the page table, in pages, into n[] (at most max). */
static size_t chunk_sizes(uint32_t *n, size_t max)
{
    size_t k = 0;
    for (uint32_t p = 0; p < seg.npages && k < max; p++)
        if (seg.pages[p] && seg.pages[p]->first == p) n[k++] = seg.pages[p]->npages;
    return k;
}

SEG_TEST(init_and_fini_leave_nothing, .chunk_max = 1)
{
    CHECK(seg.npages == NPAGES && seg.gran == PAGE && seg.base % PAGE == 0);
    CHECK(seg.chunk_max_pages == 1 && !seg.chunk_large_pages && _cua_seg_chunk_cap(&seg) == 1);
    CHECK(host_stats().reservations == 1 && cs.calls[CUA_CALL_RESERVE] == 1);
}

SEG_TEST(acquire_counts_what_is_missing, .chunk_max = 4)
{
    CHECK(_cua_seg_missing(&seg, 0, 3 * PAGE) == 3 * PAGE);
    CHECK_OK(take(0, 3));
    CHECK(_cua_seg_missing(&seg, 0, 3 * PAGE) == 0);
    CHECK(_cua_seg_missing(&seg, 0, 5 * PAGE) == 2 * PAGE);
    CHECK(seg.mapped_bytes == 3 * PAGE && seg.nchunks == 1 && told.mapped == 1);
    CHECK(told.mapped_sum == 3 * (int64_t)PAGE && told.last_addr == seg.base);
    CHECK_OK(check());
    CHECK_OK(take(1, 1)); /* a second block on the same chunk */
    CHECK(seg.pages[0]->busy == 2 && seg.mapped_bytes == 3 * PAGE && told.mapped == 1);
    CHECK_OK(check());
    drop(0);
    CHECK(seg.pages[0]->busy == 1 && seg.idle_bytes == 0);
    CHECK_OK(check());
    drop(1);
    CHECK(seg.pages[0]->busy == 0 && seg.idle_bytes == 3 * PAGE && seg.pages[0]->idle_seq == seq);
    CHECK(seg.idle.idle_next == seg.pages[0]);
    CHECK_OK(check());
    CHECK_OK(take(2, 1)); /* leaves the idle list */
    CHECK(seg.idle_bytes == 0 && seg.idle.idle_next == &seg.idle);
}

SEG_TEST(maps_in_chunks_of_chunk_max, .chunk_max = 2)
{
    CHECK_OK(take(0, 5));
    uint32_t n[8];
    CHECK(chunk_sizes(n, 8) == 3 && n[0] == 2 && n[1] == 2 && n[2] == 1);
    CHECK(cs.calls[CUA_CALL_CREATE] == 3 && cs.calls[CUA_CALL_MAP] == 3);
    CHECK(cs.calls[CUA_CALL_SET_ACCESS] == 1); /* one call for the run */
    CHECK(seg.ends[0] == 2 && seg.ends[3] == 4 && seg.ends[4] == 5 && told.mapped == 3);
}

SEG_TEST(long_runs_take_large_chunks, .chunk_max = 1, .chunk_large = 4)
{
    CHECK(_cua_seg_chunk_cap(&seg) == 4);
    CHECK_OK(take(0, 10)); /* a run of 10: 4 + 4 + 2 */
    CHECK_OK(take(16, 3)); /* a run of 3: pages */
    uint32_t n[8];
    CHECK(chunk_sizes(n, 8) == 6 && n[0] == 4 && n[1] == 4 && n[2] == 2 && n[3] == 1);
}

SEG_TEST(a_large_chunk_refused_falls_back_to_small_ones, .chunk_max = 1, .chunk_large = 4,
         .faulty = true)
{
    CHECK_OK(_cua_fault_fail_calls(fault, CUA_CALL_CREATE, 1, 1, CUA_ERR_OUT_OF_MEMORY));
    CHECK_OK(take(0, 4));
    uint32_t n[8];
    CHECK(chunk_sizes(n, 8) == 4 && n[0] == 1 && n[3] == 1);
}

SEG_TEST(trims_take_the_oldest_idle_chunks_first, .chunk_max = 1)
{
    for (uint64_t p = 0; p < 8; p += 2) CHECK_OK(take(p, 1)); /* pages 0, 2, 4, 6 */
    drop(4);
    drop(0);
    drop(6);
    drop(2); /* idle, oldest first: 4 (seq 1), 0, 6, 2 (seq 4) */
    CHECK(seg.idle.idle_next == seg.pages[4] && seg.idle.idle_prev == seg.pages[2]);
    CHECK_OK(check());
    cua_status st;
    CHECK(trim(1, UINT64_MAX, &st) == 1 && st == CUA_OK && !seg.pages[4]);
    CHECK(trim(8, 2, &st) == 1 && !seg.pages[0] && seg.pages[6]); /* 6 is newer than seq 2 */
    CHECK(host_stats().mappings == 2 && seg.mapped_bytes == 2 * PAGE);
    CHECK(told.mapped_sum == 2 * (int64_t)PAGE && told.last_delta == -(int64_t)PAGE);
    CHECK(told.trimmed == 0); /* only segments without VMM tell their trims */
    CHECK_OK(check());
    CHECK(trim(8, UINT64_MAX, &st) == 2 && seg.mapped_bytes == 0 && seg.nchunks == 0);
}

SEG_TEST(adjacent_chunks_are_unmapped_in_one_call, .chunk_max = 1)
{
    CHECK_OK(take(8, 3));
    drop(8);
    CHECK_OK(check());
    uint64_t unmaps = cs.calls[CUA_CALL_UNMAP];
    cua_status st;
    CHECK(trim(3, UINT64_MAX, &st) == 3 && st == CUA_OK);
    CHECK(cs.calls[CUA_CALL_UNMAP] == unmaps + 1 && cs.calls[CUA_CALL_RELEASE] == 3);
    CHECK(host_stats().mappings == 0 && host_stats().handles == 0);
}

SEG_TEST(kept_handles_serve_the_next_chunks, .chunk_max = 1)
{
    CHECK_OK(take(0, 2));
    drop(0);
    CHECK_OK(_cua_seg_keep_handles(&seg, true));
    cua_status st;
    CHECK(trim(2, UINT64_MAX, &st) == 2 && st == CUA_OK);
    CHECK(seg.kept.n == 2 && host_stats().handles == 2 && host_stats().mappings == 0);
    CHECK(seg.mapped_bytes == 0); /* kept handles are in transit, not mapped */
    CHECK_OK(check());
    CHECK_OK(take(10, 1)); /* a kept handle moves there: no create */
    CHECK(cs.calls[CUA_CALL_CREATE] == 2 && seg.kept.n == 1);
    CHECK_OK(check());
    CHECK_OK(_cua_seg_keep_handles(&seg, false)); /* the rest goes back */
    CHECK(seg.kept.n == 0 && host_stats().handles == 1 && !seg.keep_handles);
}

TEST(adopted_handles_come_before_new_ones)
{
    CHECK_OK(make((setup){.chunk_max = 1}));
    cua_handle h[2];
    for (int i = 0; i < 2; i++) CHECK_OK(_cua_bk_create(bk, NULL, PAGE, &h[i]));
    CHECK_ST(_cua_seg_adopt(&seg, h[0], PAGE + 1), CUA_ERR_INVALID_ARG);
    CHECK_OK(_cua_seg_adopt(&seg, h[0], PAGE));
    CHECK_OK(_cua_seg_adopt(&seg, h[1], PAGE));
    CHECK(seg.adopted_bytes == 2 * PAGE && seg.adopted.n == 2);
    CHECK_OK(take(3, 1));
    CHECK(cs.calls[CUA_CALL_CREATE] == 0 && seg.adopted_bytes == PAGE && seg.adopted.n == 1);
    CHECK_OK(check());
    CHECK(done()); /* the one never mapped goes back too */
}

SEG_TEST(peers_get_every_mapping, .chunk_max = 1)
{
    CHECK_OK(take(0, 2));
    CHECK_ST(_cua_seg_grant_peer(&seg, 2), CUA_ERR_NOT_SUPPORTED); /* not in peer_mask */
    uint64_t calls = cs.calls[CUA_CALL_SET_ACCESS];
    CHECK_OK(_cua_seg_grant_peer(&seg, 1));
    CHECK(seg.naccess == 2 && seg.access[1] == 1);
    CHECK(cs.calls[CUA_CALL_SET_ACCESS] == calls + 1); /* one call for two adjacent chunks */
    CHECK_OK(_cua_seg_grant_peer(&seg, 1));
    CHECK(cs.calls[CUA_CALL_SET_ACCESS] == calls + 1);
    CHECK_OK(take(5, 1)); /* mapped later: the peer too */
    uint64_t mask = 0;
    CHECK_OK(_cua_host_access(host, seg.base + 5 * PAGE, &mask));
    CHECK(mask == 3);
}

/* ---- without VMM: whole segments --------------------------------------------- */

SEG_TEST(novmm_chunks_are_whole_segments, .chunk_max = 1, .novmm = true)
{
    CHECK(seg.novmm && !seg.base && host_stats().reservations == 0);
    CHECK_OK(take(0, 3)); /* one segment of 3 pages, whatever chunk_max says */
    const cua_chunk *c = seg.pages[0];
    CHECK(c && c->npages == 3 && seg.nchunks == 1 && seg.nbyaddr == 1);
    CHECK(cs.calls[CUA_CALL_ALLOC] == 1 && told.changes[CUA_SEG_CAME] == 1);
    CHECK(told.last_addr == c->addr && told.last_delta == 3 * (int64_t)PAGE);
    CHECK(_cua_seg_tag(&seg, PAGE) == &told && told.mapped == 1);
    uint64_t off = 0;
    CHECK(_cua_seg_addr(&seg, PAGE + 512) == c->addr + PAGE + 512);
    CHECK(_cua_seg_offset(&seg, c->addr + PAGE + 512, &off) && off == PAGE + 512);
    CHECK(!_cua_seg_offset(&seg, c->addr + 3 * PAGE, &off));
    CHECK_OK(take(3, 2)); /* the next pages: another segment */
    CHECK(seg.nchunks == 2 && seg.pages[3] != seg.pages[2]);
    CHECK(_cua_seg_fence(&seg, 3 * PAGE) && _cua_seg_fence(&seg, 5 * PAGE));
    CHECK(!_cua_seg_fence(&seg, PAGE) && !_cua_seg_fence(&seg, 0) && !_cua_seg_fence(&seg, 512));
    CHECK_OK(check());
    seg.nbyaddr--;
    CHECK(refused("1 segments indexed by address, 2 chunks"));
    seg.nbyaddr++;
    drop(0);
    cua_status st;
    CHECK(trim(8, UINT64_MAX, &st) == 3 && st == CUA_OK);
    CHECK(told.trimmed == 1 && told.trim_off == 0 && told.trim_len == 3 * PAGE);
    CHECK(told.changes[CUA_SEG_LEAVING] == 1 && told.changes[CUA_SEG_GONE] == 1);
    CHECK(seg.nbyaddr == 1 && seg.mapped_bytes == 2 * PAGE);
}

SEG_TEST(novmm_a_refused_segment_is_freed_again, .chunk_max = 1, .novmm = true)
{
    told.refuse = true;
    CHECK_ST(take(0, 2), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "refuses"));
    CHECK(cs.calls[CUA_CALL_FREE] == 1 && host_stats().handles == 0);
    CHECK(seg.nchunks == 0 && seg.nbyaddr == 0 && told.mapped == 0);
}

/* ---- the driver's failures ------------------------------------------------------ */

SEG_TEST(a_failed_create_leaves_nothing_mapped, .chunk_max = 1, .faulty = true)
{
    CHECK_OK(take(0, 1));
    CHECK_OK(_cua_fault_fail_calls(fault, CUA_CALL_CREATE, 3, 1, CUA_ERR_OUT_OF_MEMORY));
    CHECK_ST(take(1, 4), CUA_ERR_OUT_OF_MEMORY); /* two chunks made, the third refused */
    CHECK(seg.nchunks == 1 && host_stats().handles == 1 && host_stats().mappings == 1);
    CHECK(seg.pages[0]->busy == 1 && told.mapped_sum == (int64_t)PAGE);
}

SEG_TEST(a_failed_map_or_access_unmaps_the_new_chunks, .chunk_max = 1, .faulty = true)
{
    CHECK_OK(_cua_fault_fail_calls(fault, CUA_CALL_MAP, 2, 1, CUA_ERR_BACKEND));
    CHECK_ST(take(0, 2), CUA_ERR_BACKEND);
    CHECK(seg.nchunks == 0 && host_stats().handles == 0 && host_stats().mappings == 0);
    CHECK_OK(check());
    CHECK_OK(_cua_fault_fail_calls(fault, CUA_CALL_SET_ACCESS, 1, 1, CUA_ERR_BACKEND));
    CHECK_ST(take(0, 2), CUA_ERR_BACKEND);
    CHECK(seg.nchunks == 0 && host_stats().handles == 0 && seg.mapped_bytes == 0);
}

SEG_TEST(a_chunk_that_cannot_go_stays_without_access, .chunk_max = 1, .faulty = true)
{
    /* access refused for the run, then for the chunk; its unmap refused too */
    CHECK_OK(_cua_fault_fail_calls(fault, CUA_CALL_SET_ACCESS, 1, 2, CUA_ERR_BACKEND));
    CHECK_OK(_cua_fault_fail_calls(fault, CUA_CALL_UNMAP, 1, 1, CUA_ERR_BACKEND));
    CHECK_ST(take(0, 1), CUA_ERR_BACKEND);
    CHECK(seg.nchunks == 1 && seg.pages[0]->noaccess && seg.noaccess_chunks == 1);
    CHECK(seg.pages[0]->busy == 0 && _cua_seg_lacks_access(&seg, 0, PAGE));
    CHECK_OK(check());
    CHECK(_cua_seg_acquire(&seg, 0, PAGE) == 0); /* mapped, but a map must grant access */
    CHECK_OK(_cua_seg_map(&seg, 0, PAGE));
    held[nheld].off = 0;
    held[nheld++].len = 1;
    CHECK(!seg.pages[0]->noaccess && seg.noaccess_chunks == 0 && seg.pages[0]->busy == 1);
}

SEG_TEST(failed_trims_keep_their_chunks_and_retry_releases, .chunk_max = 1, .faulty = true)
{
    CHECK_OK(take(0, 2));
    drop(0);
    CHECK_OK(_cua_fault_fail_calls(fault, CUA_CALL_UNMAP, 1, 1, CUA_ERR_BACKEND));
    cua_status st;
    CHECK(trim(2, UINT64_MAX, &st) == 0 && st == CUA_ERR_BACKEND);
    CHECK(seg.nchunks == 2 && seg.idle_bytes == 2 * PAGE); /* back on the idle list */
    CHECK_OK(check());
    CHECK_OK(_cua_fault_fail_calls(fault, CUA_CALL_RELEASE, 1, 2, CUA_ERR_BACKEND));
    CHECK(trim(2, UINT64_MAX, &st) == 2 && st == CUA_ERR_BACKEND);
    CHECK(seg.nchunks == 0 && seg.zombies.n == 2 && host_stats().handles == 2);
    CHECK_OK(check());
    CHECK_OK(_cua_seg_retry_zombies(&seg));
    CHECK(seg.zombies.n == 0 && host_stats().handles == 0);
}

TEST(fini_hands_what_it_cannot_release_to_the_backend)
{
    CHECK_OK(make((setup){.chunk_max = 1, .faulty = true}));
    CHECK_OK(take(0, 1));
    CHECK_OK(_cua_fault_fail_calls(fault, CUA_CALL_UNMAP, 1, 2, CUA_ERR_BACKEND));
    CHECK_ST(_cua_seg_fini(&seg), CUA_ERR_BACKEND);
    cua_backend_stats s = host_stats(), f;
    CHECK_OK(cua_backend_get_stats(fault, &f));
    CHECK(f.pending_releases == 2 && s.mappings == 1 && s.reservations == 1);
    CHECK_OK(_cua_bk_retry_graves(fault)); /* the mapping, then its range */
    CHECK(test_backend_clean(host));
    CHECK_OK(_cua_backend_destroy(fault));
    CHECK_OK(_cua_backend_destroy(host));
}

/* ---- the validator catches each kind of damage ----------------------------------- */

SEG_TEST(the_validator_sees_a_broken_page_table, .chunk_max = 2)
{
    CHECK_OK(take(0, 3));
    cua_chunk *c = seg.pages[0];
    seg.pages[1] = seg.pages[2];
    CHECK(refused("page 1 is not in its chunk at 0"));
    seg.pages[1] = c;
    seg.ends[1] = 7;
    CHECK(refused("its end says 7, not 2"));
    seg.ends[1] = 2;
    seg.pages[5] = c;
    CHECK(refused("page 5 points to a chunk at page 0"));
    seg.pages[5] = NULL;
    c->busy++;
    CHECK(refused("chunk at page 0 counts 2 blocks, 1 overlap it"));
    c->busy--;
    nheld = 0;
    CHECK(refused("chunk at page 0 counts 1 blocks, 0 overlap it"));
    CHECK_ST(_cua_seg_check_block(&seg, 4 * PAGE, PAGE, (uint32_t[NPAGES]){0}), CUA_ERR_CORRUPT);
    CHECK(strstr(cua_last_error(), "covers unmapped page 4"));
    CHECK_OK(_cua_seg_check(&seg, NULL)); /* without busy counts */
    nheld = 1;
}

SEG_TEST(the_validator_sees_broken_counters_and_idle_list, .chunk_max = 1)
{
    CHECK_OK(take(0, 1));
    CHECK_OK(take(1, 1));
    drop(1);
    CHECK_OK(check());
    seg.mapped_bytes += PAGE;
    CHECK(refused("chunks map 131072 bytes (65536 idle, 2 chunks)"));
    seg.mapped_bytes -= PAGE;
    seg.noaccess_chunks = 1;
    CHECK(refused("0 chunks lack access, the segment counts 1"));
    seg.noaccess_chunks = 0;
    cua_chunk *idle = seg.pages[1];
    idle->busy = 1;
    nheld = 2; /* held[1] still says page 1 */
    CHECK(refused("busy 1 but on the idle list"));
    idle->busy = 0;
    nheld = 1;
    seg.pages[0]->noaccess = true;
    CHECK(refused("has blocks but no access"));
    seg.pages[0]->noaccess = false;
    idle->idle_next = idle;
    CHECK(refused("the idle list is broken"));
    idle->idle_next = &seg.idle;
}
