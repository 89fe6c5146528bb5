/*
 * test-offload.c - offload, discard and restore on the host backend: data
 * byte-exact at the same addresses, pages really given back (the backend's
 * counts), what is refused while offloaded, frees meanwhile, bad calls, and
 * every backend call of an offload and a restore failed once (nothing lost).
 * The checker runs after every step (CUA_ARENA_CHECK_ALWAYS and explicitly).
 */
#include "test.h"

#include "arena/arena.h"
#include "arena/copy.h"

#include "test-internal.h"
#include <stdbool.h>
#include <stdlib.h>

#define NB 40

typedef struct world {
    cua_backend *bk, *inner;
    cua_arena *a;
    unsigned char *p[NB];
    size_t size[NB];
} world;

static unsigned char pat(int i, size_t k) { return (unsigned char)(i * 37 + k * 11 + 5); }

/* Blocks of many sizes (some sharing pages, some spanning many, one above the
 * 64 MiB staging buffer), each filled with its pattern; every third freed. */
static cua_status world_make(world *w, bool fault, bool big)
{
    memset(w, 0, sizeof *w);
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 512 * MiB;
    cua_status st = cua_backend_host_create(&hc, &w->inner);
    if (st) return st;
    w->bk = w->inner;
    if (fault && (st = cua_backend_fault_create(w->inner, &w->bk))) return st;
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "offload";
    cfg.backend = w->bk;
    cfg.flags = CUA_ARENA_CHECK_ALWAYS;
    if ((st = cua_arena_create(&cfg, &w->a))) return st;
    uint64_t rng = 7;
    for (int i = 0; i < NB; i++) {
        w->size[i] = i == 5 && big ? 70 * MiB : 512 + test_rand(&rng) % (i % 4 == 0 ? 5 * MiB : 200000);
        if ((st = cua_arena_alloc(w->a, w->size[i], 0, (void **)&w->p[i]))) return st;
        for (size_t k = 0; k < w->size[i]; k++) w->p[i][k] = pat(i, k);
    }
    for (int i = 0; i < NB; i += 3) {
        if ((st = cua_free(w->p[i]))) return st;
        w->p[i] = NULL;
    }
    return CUA_OK;
}

/* Every live block holds its pattern (the first bad index, or -1). */
static int world_bad(const world *w)
{
    for (int i = 0; i < NB; i++) {
        if (!w->p[i]) continue;
        for (size_t k = 0; k < w->size[i]; k++)
            if (w->p[i][k] != pat(i, k)) return i;
    }
    return -1;
}

/* Destroy all; the backends' destroy refuses (BUSY) while anything they made
 * is alive, the staging area aside, which is theirs to free. */
static cua_status world_end(world *w)
{
    cua_status st = cua_arena_destroy(w->a, CUA_DESTROY_FORCE);
    if (st) return st;
    cua_backend_stats s;
    cua_backend_get_stats(w->bk, &s);
    if (s.handles || s.mappings || s.reservations) return CUA_ERR_BUSY;
    if (w->bk != w->inner && (st = cua_backend_destroy(w->bk))) return st;
    return cua_backend_destroy(w->inner);
}

static uint64_t handles_of(cua_backend *b)
{
    cua_backend_stats s;
    cua_backend_get_stats(b, &s);
    return s.handle_bytes;
}

TEST(offload_gives_every_page_back_and_restore_brings_the_data_back_in_place)
{
    world w;
    CHECK_OK(world_make(&w, false, true));
    cua_stats s0, s1;
    CHECK_OK(cua_arena_get_stats(w.a, &s0));
    CHECK(s0.mapped_bytes > 70 * MiB && handles_of(w.bk) == s0.mapped_bytes);
    cua_backend_stats b0;
    CHECK_OK(cua_backend_get_stats(w.bk, &b0));
    unsigned char *before[NB];
    memcpy(before, w.p, sizeof before);
    CHECK_OK(cua_arena_offload(w.a));
    CHECK_OK(cua_arena_get_stats(w.a, &s1));
    CHECK(s1.mapped_bytes == 0 && handles_of(w.bk) == 0); /* every page went back */
    cua_backend_stats b1;
    CHECK_OK(cua_backend_get_stats(w.bk, &b1));
    /* Through two pinned buffers of 64 MiB, not one as large as the data;
     * the 70 MiB block took two copies. */
    CHECK(b1.host_buffers == 2 && b1.host_bytes == 128 * MiB);
    CHECK(b1.calls[CUA_CALL_COPY_TO_HOST] - b0.calls[CUA_CALL_COPY_TO_HOST] ==
          (uint64_t)(s0.live_blocks + 1));
    CHECK(s1.live_bytes == s0.live_bytes && s1.live_blocks == s0.live_blocks);
    CHECK_ARENA(w.a);
    CHECK_OK(cua_arena_restore(w.a));
    CHECK(memcmp(before, w.p, sizeof before) == 0); /* same pointers, of course */
    CHECK(world_bad(&w) == -1);                     /* and the same bytes behind them */
    CHECK_OK(cua_arena_get_stats(w.a, &s1));
    CHECK(s1.mapped_bytes <= s0.mapped_bytes && s1.live_bytes == s0.live_bytes);
    /* Business as usual afterwards. */
    void *q;
    CHECK_OK(cua_arena_alloc(w.a, 3 * MiB, 0, &q));
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_free(w.p[1]));
    w.p[1] = NULL;
    CHECK(world_bad(&w) == -1);
    CHECK_ARENA(w.a);
    CHECK_OK(world_end(&w));
}

TEST(while_offloaded_alloc_and_record_stream_are_refused_free_works)
{
    world w;
    CHECK_OK(world_make(&w, false, true));
    CHECK_OK(cua_arena_offload(w.a));
    void *q = (void *)1;
    CHECK_ST(cua_arena_alloc(w.a, 4096, 0, &q), CUA_ERR_OFFLOADED);
    CHECK(q == NULL && strstr(cua_last_error(), "restore") != NULL);
    CHECK_ST(cua_record_stream(w.p[1], 0x99), CUA_ERR_OFFLOADED);
    CHECK_ST(cua_arena_offload(w.a), CUA_ERR_OFFLOADED);   /* twice */
    CHECK_ST(cua_arena_discard(w.a), CUA_ERR_OFFLOADED);
    CHECK_OK(cua_free(w.p[2])); /* its copy goes; the rest comes back */
    w.p[2] = NULL;
    CHECK_ST(cua_free(w.p[1] + 8), CUA_ERR_INVALID_POINTER); /* interior, as ever */
    CHECK_ARENA(w.a);
    CHECK_OK(cua_arena_restore(w.a));
    CHECK(world_bad(&w) == -1);
    CHECK_ST(cua_arena_restore(w.a), CUA_ERR_INVALID_ARG); /* not offloaded any more */
    CHECK(strstr(cua_last_error(), "not offloaded") != NULL);
    CHECK_ARENA(w.a);
    /* Destroy while offloaded gives everything back too. */
    CHECK_OK(cua_arena_offload(w.a));
    CHECK_OK(world_end(&w));
}

TEST(discard_keeps_the_addresses_not_the_contents)
{
    world w;
    CHECK_OK(world_make(&w, false, true));
    cua_backend_stats b0, b1;
    CHECK_OK(cua_backend_get_stats(w.bk, &b0));
    CHECK_OK(cua_arena_discard(w.a));
    CHECK(handles_of(w.bk) == 0);
    CHECK_OK(cua_arena_restore(w.a));
    CHECK_OK(cua_backend_get_stats(w.bk, &b1));
    /* No copy either way. */
    CHECK(b1.calls[CUA_CALL_COPY_TO_HOST] == b0.calls[CUA_CALL_COPY_TO_HOST] &&
          b1.calls[CUA_CALL_COPY_TO_DEVICE] == b0.calls[CUA_CALL_COPY_TO_DEVICE]);
    for (int i = 0; i < NB; i++)
        if (w.p[i]) memset(w.p[i], 0xee, w.size[i]); /* the memory is there, writable */
    CHECK_ARENA(w.a);
    CHECK_OK(world_end(&w));
}

TEST(no_offload_for_whole_segments_and_bad_handles)
{
    cua_arena_config cfg;
    test_config(&cfg);
    cfg.flags = CUA_ARENA_NO_VMM;
    cua_arena *a;
    CHECK_OK(cua_arena_create(&cfg, &a));
    void *p;
    CHECK_OK(cua_arena_alloc(a, 4096, 0, &p));
    CHECK_ST(cua_arena_offload(a), CUA_ERR_NOT_SUPPORTED);
    CHECK_OK(cua_arena_check(a));
    CHECK_OK(cua_arena_destroy(a, CUA_DESTROY_FORCE));
    CHECK_ST(cua_arena_offload(a), CUA_ERR_DESTROYED);
    CHECK_ST(cua_arena_restore(a), CUA_ERR_DESTROYED);
    CHECK_ST(cua_arena_offload(NULL), CUA_ERR_INVALID_ARG);
}

/* Fail the n-th call of each kind an offload + restore makes: the status
 * says so, the data is intact afterwards (restored, or never gone), and
 * nothing leaks. */
TEST(every_call_of_offload_and_restore_can_fail)
{
    static const cua_call kinds[] = {CUA_CALL_HOST_ALLOC, CUA_CALL_STREAM_CREATE,
                                     CUA_CALL_EVENT_CREATE, CUA_CALL_COPY_TO_HOST,
                                     CUA_CALL_EVENT_RECORD, CUA_CALL_EVENT_SYNC,
                                     CUA_CALL_STREAM_SYNC, CUA_CALL_UNMAP, CUA_CALL_RELEASE,
                                     CUA_CALL_CREATE, CUA_CALL_MAP, CUA_CALL_SET_ACCESS,
                                     CUA_CALL_COPY_TO_DEVICE};
    int injected = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        for (uint64_t nth = 1; nth <= 3; nth++) {
            world w;
            CHECK_OK(world_make(&w, true, false));
            CHECK_OK(cua_fault_fail_nth(w.bk, kinds[k], nth, CUA_ERR_BACKEND));
            cua_status st = cua_arena_offload(w.a);
            CHECK(st == CUA_OK || st == CUA_ERR_BACKEND);
            CHECK_OK(cua_arena_check(w.a));
            /* Offloaded or not (a failed unmap still leaves it offloaded; a
             * failed copy leaves it as it was): restore until it is back. A
             * failed restore may be tried again; INVALID_ARG: not offloaded. */
            cua_status rs;
            int tries = 0;
            while ((rs = cua_arena_restore(w.a)) == CUA_ERR_BACKEND && ++tries < 3)
                CHECK_OK(cua_arena_check(w.a));
            CHECK(rs == CUA_OK || rs == CUA_ERR_INVALID_ARG);
            CHECK_OK(cua_arena_check(w.a));
            CHECK(world_bad(&w) == -1);
            uint64_t n = 0;
            CHECK_OK(cua_fault_injected(w.bk, &n));
            injected += (int)n;
            CHECK_OK(world_end(&w));
        }
    }
    printf("  %d failures injected into offload and restore, data intact every time\n", injected);
    CHECK(injected >= 20);
}

static int n_off, n_res;
static uint64_t off_bytes, res_bytes;
static char off_reason[16];

static void on_event(const cua_arena_event *e, void *user)
{
    (void)user;
    if (e->kind == CUA_ARENA_OFFLOADED) {
        n_off++;
        off_bytes = e->bytes;
        snprintf(off_reason, sizeof off_reason, "%s", e->reason);
    } else if (e->kind == CUA_ARENA_RESTORED) {
        n_res++;
        res_bytes = e->bytes;
    }
}

/* After a restore the image's pages are lazily freed and kept mapped for the
 * next offload of about the same size (no page faults there); a trim, a much
 * larger image and destroy unmap them. Data stays exact through reuse. */
TEST(the_next_offload_reuses_the_last_image)
{
    world w;
    CHECK_OK(world_make(&w, false, false));
    CHECK(test_mem(w.a)->spare_image == NULL);
    CHECK_OK(cua_arena_offload(w.a));
    unsigned char *first = test_mem(w.a)->image.data;
    CHECK(first && test_mem(w.a)->image.map_bytes >= test_mem(w.a)->image.bytes);
    CHECK_OK(cua_arena_restore(w.a));
    CHECK(test_mem(w.a)->image.data == NULL && test_mem(w.a)->spare_image == first);
    for (int round = 0; round < 2; round++) { /* offload again: the same mapping */
        CHECK_OK(cua_arena_offload(w.a));
        CHECK(test_mem(w.a)->image.data == first && test_mem(w.a)->spare_image == NULL);
        CHECK_OK(cua_arena_restore(w.a));
        CHECK(world_bad(&w) == -1);
    }
    size_t r;
    CHECK_OK(cua_arena_trim(w.a, 0, &r));
    CHECK(test_mem(w.a)->spare_image == NULL);
    CHECK_OK(cua_arena_offload(w.a)); /* a new mapping, data still exact */
    CHECK_OK(cua_arena_restore(w.a));
    CHECK(test_mem(w.a)->spare_image != NULL && world_bad(&w) == -1);
    /* An image more than twice as large takes a new mapping. */
    void *big;
    CHECK_OK(cua_arena_alloc(w.a, 3 * test_mem(w.a)->spare_bytes, 0, &big));
    size_t spare = test_mem(w.a)->spare_bytes;
    CHECK_OK(cua_arena_offload(w.a));
    CHECK(test_mem(w.a)->image.map_bytes > 3 * spare && test_mem(w.a)->spare_image == NULL);
    CHECK_OK(cua_arena_restore(w.a));
    CHECK_OK(cua_free(big));
    CHECK(world_bad(&w) == -1);
    CHECK_ARENA(w.a);
    CHECK_OK(world_end(&w));
}

/* The copies under offload and restore: every size and alignment, streamed
 * or not, alone or split among a crew, byte-exact and nothing written past
 * the end. */
TEST(crew_copies_are_exact_at_any_size_and_alignment)
{
    static const size_t sizes[] = {0, 1, 63, 255, 256, 4097, 3 * MiB + 17, 9 * MiB + 5};
    size_t cap = 9 * MiB + 64;
    unsigned char *src = malloc(cap), *dst = malloc(cap + 64);
    CHECK(src && dst);
    for (size_t k = 0; k < cap; k++) src[k] = (unsigned char)(k * 131 + 7);
    for (unsigned helpers = 0; helpers <= 3; helpers += 3) {
        cua_crew crew;
        _cua_crew_start(&crew, helpers);
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
            for (size_t so = 0; so < 3; so++)
                for (size_t dof = 0; dof < 20; dof += 7)
                    for (int stream = 0; stream < 2; stream++) {
                        size_t n = sizes[i];
                        memset(dst, 0xee, cap + 64);
                        _cua_crew_copy(&crew, dst + dof, src + so, n, stream);
                        CHECK(memcmp(dst + dof, src + so, n) == 0);
                        for (size_t k = 0; k < dof; k++) CHECK(dst[k] == 0xee);
                        for (size_t k = dof + n; k < dof + n + 32 && k < cap + 64; k++)
                            CHECK(dst[k] == 0xee);
                    }
        _cua_crew_stop(&crew);
        _cua_crew_stop(&crew); /* twice is harmless */
    }
    free(src);
    free(dst);
}

TEST(offload_and_restore_are_events)
{
    world w;
    CHECK_OK(world_make(&w, false, false));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(w.a, &s));
    CHECK_OK(cua_set_event_callback(on_event, NULL));
    CHECK_OK(cua_arena_offload(w.a));
    CHECK(n_off == 1 && off_bytes == s.live_bytes && !strcmp(off_reason, "offload"));
    CHECK_OK(cua_arena_restore(w.a));
    CHECK(n_res == 1 && res_bytes == s.live_bytes);
    CHECK_OK(cua_arena_discard(w.a));
    CHECK(n_off == 2 && !strcmp(off_reason, "discard"));
    CHECK_OK(cua_arena_restore(w.a));
    CHECK(n_res == 2 && res_bytes == 0); /* nothing copied back */
    CHECK_OK(cua_set_event_callback(NULL, NULL));
    CHECK_OK(world_end(&w));
}

/* CUA_ARENA_SCRUB: the data is back in place, and no copy of it stays in the
 * host image kept for the next offload, nor in the staging buffers. Without
 * the flag both still hold it (what the option is for). */
TEST(scrub_leaves_no_host_copy)
{
    for (int scrub = 0; scrub <= 1; scrub++) {
        world w;
        CHECK_OK(world_make(&w, false, false));
        if (scrub) test_mem(w.a)->cfg.flags |= CUA_ARENA_SCRUB;
        CHECK_OK(cua_arena_offload(w.a));
        size_t bytes = test_mem(w.a)->image.bytes;
        CHECK_OK(cua_arena_restore(w.a));
        CHECK(world_bad(&w) == -1);
        const unsigned char *img = test_mem(w.a)->spare_image;
        CHECK(img != NULL);
        size_t nonzero = 0;
        for (size_t k = 0; k < bytes; k += 61) nonzero += img[k] != 0;
        for (int i = 0; i < 2; i++)
            for (size_t k = 0; k < w.bk->stage_bytes; k += 4093) nonzero += ((unsigned char *)w.bk->stage[i])[k] != 0;
        CHECK(scrub ? nonzero == 0 : nonzero > 0);
        CHECK_OK(world_end(&w));
    }
}

/* CUA_ARENA_POISON: a block freed with no other stream using it reads 0xDE at
 * once (host backend); one used on another stream keeps its bytes until that
 * stream is done (poisoning it would race with the other stream's work). */
TEST(poison_fills_freed_blocks)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 64 * MiB;
    hc.manual_events = 1;
    cua_backend *bk;
    CHECK_OK(cua_backend_host_create(&hc, &bk));
    cua_arena *a;
    CHECK_OK(cua_arena_create_conf("poisoned", "poison:1", &a));
    CHECK_OK(cua_arena_destroy(a, 0));
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend = bk;
    cfg.flags = CUA_ARENA_POISON;
    CHECK_OK(cua_arena_create(&cfg, &a));
    unsigned char *p, *q;
    CHECK_OK(cua_arena_alloc(a, 100000, 0, (void **)&p));
    CHECK_OK(cua_arena_alloc(a, 100000, 0, (void **)&q));
    memset(p, 0x11, 100000);
    memset(q, 0x22, 100000);
    CHECK_OK(cua_record_stream(q, 0x100));
    cua_stats s0, s1;
    CHECK_OK(cua_arena_get_stats(a, &s0));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_arena_get_stats(a, &s1));
    CHECK(p[0] == CUA_POISON_BYTE && p[99999] == CUA_POISON_BYTE);
    CHECK(q[0] == 0x22 && q[99999] == 0x22);
    CHECK(s1.calls[CUA_CALL_FILL] == s0.calls[CUA_CALL_FILL] + 1);
    CHECK_ARENA(a);
    CHECK_OK(cua_host_stream_complete(bk, 0x100));
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_OK(cua_backend_destroy(bk));
}

/* A device of 64 MiB and two arenas on it, "encoder" and "other". */
static cua_status small_device_two_arenas(cua_backend **bk, cua_arena **enc, cua_arena **other)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 64 * MiB;
    cua_status st = cua_backend_host_create(&hc, bk);
    if (st != CUA_OK) return st;
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend = *bk;
    cfg.flags = 0;
    cfg.va_size = (size_t)1 << 30;
    cfg.name = "encoder";
    if ((st = cua_arena_create(&cfg, enc)) != CUA_OK) return st;
    cfg.name = "other";
    return cua_arena_create(&cfg, other);
}

/* A restore on a full device takes other arenas' cached memory first, as an
 * allocation does (the fuzzer's finding: it failed with the cache of another
 * arena holding every page). */
TEST(restore_on_a_full_device_takes_other_arenas_cache)
{
    cua_backend *bk;
    cua_arena *enc, *other;
    CHECK_OK(small_device_two_arenas(&bk, &enc, &other));
    unsigned char *p;
    CHECK_OK(cua_arena_alloc(enc, 20 * MiB, 0, (void **)&p));
    memset(p, 0x3c, 20 * MiB);
    CHECK_OK(cua_arena_offload(enc));
    void *q;
    CHECK_OK(cua_arena_alloc(other, 60 * MiB, 0, &q)); /* the device is full now */
    CHECK_OK(cua_free(q));                              /* and its pages stay cached there */
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(other, &s));
    CHECK(s.cached_bytes >= 60 * MiB);
    CHECK_OK(cua_arena_restore(enc));
    CHECK_ARENA(enc);
    CHECK_ARENA(other);
    int bad = 0;
    for (size_t i = 0; i < 20 * MiB; i += 4093) bad += p[i] != 0x3c;
    CHECK(bad == 0);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_destroy(enc, 0));
    CHECK_OK(cua_arena_destroy(other, 0));
    CHECK_OK(cua_backend_destroy(bk));
}

/* A restore asks the other arenas for the pages its blocks cover, not their
 * bytes: ten 1 MiB blocks on ten 2 MiB pages need 20 MiB (the fuzzer found a
 * restore that asked for its blocks' bytes and stayed short). */
TEST(restore_asks_for_the_pages_its_blocks_cover)
{
    cua_backend *bk;
    cua_arena *enc, *other;
    CHECK_OK(small_device_two_arenas(&bk, &enc, &other));
    unsigned char *p[20];
    for (int i = 0; i < 20; i++) CHECK_OK(cua_arena_alloc(enc, MiB, 0, (void **)&p[i]));
    for (int i = 1; i < 20; i += 2) CHECK_OK(cua_free(p[i])); /* one live block per page */
    for (int i = 0; i < 20; i += 2) memset(p[i], i + 1, MiB);
    CHECK_OK(cua_arena_offload(enc));
    void *q;
    CHECK_OK(cua_arena_alloc(other, 54 * MiB, 0, &q)); /* 10 MiB left at the driver */
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_arena_restore(enc));
    CHECK_ARENA(enc);
    CHECK_ARENA(other);
    int bad = 0;
    for (int i = 0; i < 20; i += 2)
        for (size_t k = 0; k < MiB; k += 4093) bad += p[i][k] != (unsigned char)(i + 1);
    CHECK(bad == 0);
    for (int i = 0; i < 20; i += 2) CHECK_OK(cua_free(p[i]));
    CHECK_OK(cua_arena_destroy(enc, 0));
    CHECK_OK(cua_arena_destroy(other, 0));
    CHECK_OK(cua_backend_destroy(bk));
}

/* The staging area's make fails half way (an event) and its cleanup fails
 * too (a pinned buffer the driver will not free): the area is not taken for
 * whole. The next offload makes what is missing and works; the buffer left
 * over goes with the backend. */
TEST(a_staging_area_built_half_way_is_not_used_as_whole)
{
    world w;
    CHECK_OK(world_make(&w, true, false));
    CHECK_OK(cua_fault_fail_nth(w.bk, CUA_CALL_EVENT_CREATE, 1, CUA_ERR_BACKEND));
    CHECK_OK(cua_fault_fail_nth(w.bk, CUA_CALL_HOST_FREE, 1, CUA_ERR_BACKEND));
    CHECK_ST(cua_arena_offload(w.a), CUA_ERR_BACKEND);
    CHECK(world_bad(&w) == -1);
    cua_backend_stats s;
    CHECK_OK(cua_backend_get_stats(w.inner, &s));
    CHECK(s.host_buffers == 1); /* the one the driver kept */
    CHECK_OK(cua_arena_offload(w.a));
    CHECK_OK(cua_arena_restore(w.a));
    CHECK(world_bad(&w) == -1);
    CHECK_OK(cua_backend_get_stats(w.inner, &s));
    CHECK(s.host_buffers == 2 && s.streams == 1 && s.events == 2);
    CHECK_ARENA(w.a);
    CHECK_OK(world_end(&w));
}

/* Note [pages a graph replays into] (src/arena/policy.c): an arena of
 * CUA_ARENA_KEEP_MAPPED on a 512 MiB host backend, every freed page given
 * back at once unless kept (release_threshold 0). */
static cua_status keep_world(unsigned flags, cua_backend **bk, cua_arena **a)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 512 * MiB;
    cua_status st = cua_backend_host_create(&hc, bk);
    if (st) return st;
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "graph_pool";
    cfg.backend = *bk;
    cfg.flags = flags | CUA_ARENA_CHECK_ALWAYS;
    cfg.release_threshold = 0;
    return cua_arena_create(&cfg, a);
}

static cua_status keep_world_end(cua_backend *bk, cua_arena *a)
{
    cua_status st = cua_arena_destroy(a, CUA_DESTROY_FORCE);
    cua_status bs = cua_backend_destroy(bk);
    return st ? st : bs;
}

TEST(keep_mapped_keeps_freed_pages_until_the_user_trims)
{
    for (int keep = 0; keep < 2; keep++) {
        cua_backend *bk;
        cua_arena *a;
        CHECK_OK(keep_world(keep ? CUA_ARENA_KEEP_MAPPED : 0, &bk, &a));
        void *p[3];
        static const size_t mib[3] = {40, 8, 20};
        for (int i = 0; i < 3; i++) CHECK_OK(cua_arena_alloc(a, mib[i] * MiB, 0, &p[i]));
        cua_stats s0, s1;
        CHECK_OK(cua_arena_get_stats(a, &s0));
        for (int i = 0; i < 3; i++) CHECK_OK(cua_free(p[i]));
        /* the release threshold (0: every idle page at once) and the idle trim */
        size_t idle = 0;
        CHECK_OK(cua_trim_idle(CUA_ALL_DEVICES, &idle));
        CHECK_OK(cua_arena_get_stats(a, &s1));
        if (keep) {
            CHECK(s1.mapped_bytes == s0.mapped_bytes && s1.unmapped_total_bytes == 0);
            CHECK(idle == 0);
        } else {
            CHECK(s1.mapped_bytes == 0);
        }
        /* the user's trim gives them back */
        size_t released = 0;
        CHECK_OK(cua_arena_trim(a, 0, &released));
        CHECK(released == (keep ? s0.mapped_bytes : 0));
        CHECK_OK(cua_arena_get_stats(a, &s1));
        CHECK(s1.mapped_bytes == 0);
        CHECK_OK(keep_world_end(bk, a));
    }
}

TEST(keep_mapped_restore_maps_every_page_again)
{
    for (int keep = 0; keep < 2; keep++) {
        cua_backend *bk;
        cua_arena *a;
        CHECK_OK(keep_world(keep ? CUA_ARENA_KEEP_MAPPED : 0, &bk, &a));
        unsigned char *live, *gone, *tail;
        CHECK_OK(cua_arena_alloc(a, 6 * MiB, 0, (void **)&live));
        CHECK_OK(cua_arena_alloc(a, 30 * MiB, 0, (void **)&gone));
        CHECK_OK(cua_arena_alloc(a, 10 * MiB, 0, (void **)&tail));
        for (size_t k = 0; k < 6 * MiB; k++) live[k] = pat(1, k);
        CHECK_OK(cua_free(gone)); /* freed, its pages still the graph's */
        cua_stats s0, s1;
        CHECK_OK(cua_arena_get_stats(a, &s0));
        CHECK(s0.mapped_bytes >= (keep ? 46 : 16) * MiB);
        CHECK_OK(cua_arena_offload(a));
        CHECK_OK(cua_arena_get_stats(a, &s1));
        CHECK(s1.mapped_bytes == 0);
        CHECK_OK(cua_arena_restore(a));
        CHECK_OK(cua_arena_get_stats(a, &s1));
        if (keep) { /* every page again, the freed block's too: the graph may write there */
            CHECK(s1.mapped_bytes == s0.mapped_bytes);
            memset(gone, 0x5a, 30 * MiB);
        } else {
            CHECK(s1.mapped_bytes < 46 * MiB);
        }
        bool same = true;
        for (size_t k = 0; k < 6 * MiB; k++) same = same && live[k] == pat(1, k);
        CHECK(same);
        CHECK_ARENA(a);
        CHECK_OK(cua_free(live));
        CHECK_OK(cua_free(tail));
        CHECK_OK(keep_world_end(bk, a));
    }
}
