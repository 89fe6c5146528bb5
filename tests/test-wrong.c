/*
 * test-wrong.c - bad input. Every case gets its status and a message in
 * words; the arena stays consistent (the checker passes) and live data is
 * untouched. Also: a failure injected into each kind of backend call.
 */
#include "test.h"


static cua_backend *bk;
static cua_arena *arena;
static unsigned char *live; /* a live block whose bytes must survive every case */

static cua_status setup(void)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 256 * MiB;
    cua_status st = cua_backend_host_create(&hc, &bk);
    if (st != CUA_OK) return st;
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "wrong";
    cfg.backend = bk;
    st = cua_arena_create(&cfg, &arena);
    if (st != CUA_OK) return st;
    st = cua_arena_alloc(arena, 3 * MiB, 0, (void **)&live);
    if (st == CUA_OK) memset(live, 0x5a, 3 * MiB);
    return st;
}

static int intact(void)
{
    for (size_t i = 0; i < 3 * MiB; i += 4093)
        if (live[i] != 0x5a) return 0;
    return live[3 * MiB - 1] == 0x5a;
}

static cua_status teardown(void)
{
    cua_status st = cua_arena_destroy(arena, CUA_DESTROY_FORCE);
    return st == CUA_OK ? cua_backend_destroy(bk) : st;
}

/* Each bad call: its status, a message, the arena consistent, the data there. */
#define WRONG(expr, want)                                                                  \
    do {                                                                                   \
        CHECK_ST(expr, want);                                                              \
        CHECK(strlen(cua_last_error()) > 10);                                              \
        CHECK_ARENA(arena);                                                                \
        CHECK(intact());                                                                   \
    } while (0)

TEST(bad_sizes_and_arguments)
{
    CHECK_OK(setup());
    void *p = (void *)1;
    WRONG(cua_arena_alloc(arena, 0, 0, &p), CUA_ERR_INVALID_ARG);
    CHECK(p == NULL);
    WRONG(cua_arena_alloc(arena, SIZE_MAX, 0, &p), CUA_ERR_INVALID_ARG);
    WRONG(cua_arena_alloc(arena, SIZE_MAX - 100, 0, &p), CUA_ERR_INVALID_ARG); /* overflows when aligned */
    WRONG(cua_arena_alloc(arena, (size_t)1 << 62, 0, &p), CUA_ERR_INVALID_ARG);
    WRONG(cua_arena_alloc(arena, 100, 0, NULL), CUA_ERR_INVALID_ARG);
    WRONG(cua_arena_alloc(NULL, 100, 0, &p), CUA_ERR_INVALID_ARG);
    WRONG(cua_arena_get_stats(arena, NULL), CUA_ERR_INVALID_ARG);
    WRONG(cua_arena_create(NULL, NULL), CUA_ERR_INVALID_ARG);
    WRONG(cua_arena_destroy(arena, 0x80), CUA_ERR_INVALID_ARG);
    WRONG(cua_arena_default(-1, (cua_arena **)&p), CUA_ERR_INVALID_ARG);
    WRONG(cua_arena_pop(), CUA_ERR_INVALID_ARG);
    WRONG(cua_backend_host_create(NULL, NULL), CUA_ERR_INVALID_ARG);
    WRONG(cua_fault_fail_nth(bk, CUA_CALL_MAP, 1, CUA_ERR_BACKEND), CUA_ERR_INVALID_ARG);
    /* Not an arena: a zeroed object of the right size has no magic. */
    static char fake[4096];
    WRONG(cua_arena_alloc((cua_arena *)fake, 100, 0, &p), CUA_ERR_INVALID_ARG);
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend = bk;
    cfg.chunk_max = 3 * MiB; /* not a multiple of 2 MiB */
    cua_arena *x;
    WRONG(cua_arena_create(&cfg, &x), CUA_ERR_INVALID_ARG);
    cfg.chunk_max = 0;
    cfg.chunk_large = 5 * MiB; /* nor this */
    WRONG(cua_arena_create(&cfg, &x), CUA_ERR_INVALID_ARG);
    CHECK_OK(teardown());
}

TEST(bad_pointers)
{
    CHECK_OK(setup());
    int on_stack;
    void *heap_ptr = malloc(64);
    WRONG(cua_free(&on_stack), CUA_ERR_INVALID_POINTER);
    WRONG(cua_free(heap_ptr), CUA_ERR_INVALID_POINTER);
    free(heap_ptr);
    WRONG(cua_free(live + 512), CUA_ERR_INVALID_POINTER);  /* interior, aligned */
    WRONG(cua_free(live + 1), CUA_ERR_INVALID_POINTER);    /* interior, unaligned */
    CHECK(strstr(cua_last_error(), "interior") != NULL);
    WRONG(cua_free(live + 100 * MiB), CUA_ERR_DOUBLE_FREE); /* in the range, never handed out */
    void *p;
    CHECK_OK(cua_arena_alloc(arena, 4096, 0, &p));
    CHECK_OK(cua_free(p));
    WRONG(cua_free(p), CUA_ERR_DOUBLE_FREE);
    CHECK(strstr(cua_last_error(), "double free") != NULL);
    WRONG(cua_record_stream(p, 5), CUA_ERR_DOUBLE_FREE);
    WRONG(cua_ptr_info(&on_stack, NULL, NULL, NULL), CUA_ERR_INVALID_POINTER);
    /* the live block is still there and frees normally */
    size_t size;
    CHECK_OK(cua_ptr_info(live + 5, NULL, NULL, &size));
    CHECK(size == 3 * MiB);
    CHECK_OK(teardown());
}

TEST(destroyed_arena_and_its_pointers)
{
    CHECK_OK(setup());
    void *p;
    WRONG(cua_arena_destroy(arena, 0), CUA_ERR_BUSY);
    CHECK_OK(cua_arena_alloc(arena, 4096, 0, &p));
    cua_arena *dead = arena;
    CHECK_OK(cua_arena_destroy(dead, CUA_DESTROY_FORCE));
    CHECK_ST(cua_arena_alloc(dead, 1, 0, &p), CUA_ERR_DESTROYED);
    CHECK_ST(cua_free(live), CUA_ERR_DESTROYED);
    CHECK_ST(cua_record_stream(live, 3), CUA_ERR_DESTROYED);
    CHECK_ST(cua_arena_destroy(dead, CUA_DESTROY_FORCE), CUA_ERR_DESTROYED);
    CHECK_ST(cua_arena_trim(dead, 0, NULL), CUA_ERR_DESTROYED);
    CHECK_ST(cua_arena_push(dead), CUA_ERR_DESTROYED);
    CHECK(strstr(cua_last_error(), "destroyed") != NULL);
    CHECK_OK(cua_backend_destroy(bk));
}

TEST(backend_destroy_while_in_use)
{
    CHECK_OK(setup());
    WRONG(cua_backend_destroy(bk), CUA_ERR_BUSY);
    CHECK_OK(teardown());
}

/* One failure of each kind of backend call during a workload: the status comes
 * back, the arena stays consistent, data survives, and nothing leaks. */
TEST(a_failure_of_every_call_kind)
{
    for (int kind = 0; kind < CUA_CALL_COUNT; kind++) {
        cua_host_config hc;
        cua_host_config_init(&hc);
        hc.capacity = 256 * MiB;
        cua_backend *host, *fault;
        CHECK_OK(cua_backend_host_create(&hc, &host));
        CHECK_OK(cua_backend_fault_create(host, &fault));
        cua_arena_config cfg;
        cua_arena_config_init(&cfg);
        cfg.backend = fault;
        cfg.release_threshold = 0; /* exercise unmap and release on free */
        cua_arena *a;
        cua_status st = CUA_OK;
        if (kind == CUA_CALL_RESERVE) {
            CHECK_OK(cua_fault_fail_nth(fault, (cua_call)kind, 1, CUA_ERR_OUT_OF_MEMORY));
            CHECK_ST(cua_arena_create(&cfg, &a), CUA_ERR_OUT_OF_MEMORY);
            CHECK(strstr(cua_last_error(), "injected") != NULL);
            CHECK_OK(cua_fault_fail_nth(fault, (cua_call)kind, 0, CUA_ERR_OUT_OF_MEMORY));
        }
        CHECK_OK(cua_arena_create(&cfg, &a));
        unsigned char *keep;
        CHECK_OK(cua_arena_alloc(a, 5 * MiB, 0, (void **)&keep));
        memset(keep, 0x77, 5 * MiB);
        CHECK_OK(cua_fault_fail_nth(fault, (cua_call)kind, 1,
                                    kind == CUA_CALL_CREATE ? CUA_ERR_OUT_OF_MEMORY
                                                            : CUA_ERR_BACKEND));
        int failures = 0;
        for (int round = 0; round < 4; round++) {
            void *p = NULL;
            st = cua_arena_alloc(a, (size_t)(round + 1) * 3 * MiB, (cua_stream)round, &p);
            if (st != CUA_OK) {
                failures++;
                CHECK(p == NULL && strlen(cua_last_error()) > 10);
            } else {
                st = cua_free(p);
                if (st != CUA_OK) failures++;
            }
            CHECK_OK(cua_arena_check(a));
            size_t rel;
            if (cua_arena_trim(a, 0, &rel) != CUA_OK) failures++;
            CHECK_OK(cua_arena_check(a));
        }
        CHECK(keep[0] == 0x77 && keep[5 * MiB - 1] == 0x77);
        CHECK_OK(cua_free(keep));
        cua_arena_destroy(a, CUA_DESTROY_FORCE); /* may report the injected failure */
        uint64_t injected = 0;
        CHECK_OK(cua_fault_injected(fault, &injected));
        cua_backend_stats s;
        CHECK_OK(cua_backend_get_stats(host, &s));
        /* Failed releases, unmaps and event destroys are retried: nothing leaks. */
        CHECK(s.handles == 0 && s.reservations == 0 && s.handle_bytes == 0 && s.events == 0);
        printf("  %-14s injected %llu, %d call(s) answered with an error\n",
               cua_call_name((cua_call)kind), (unsigned long long)injected, failures);
        CHECK_OK(cua_backend_destroy(fault));
        CHECK_OK(cua_backend_destroy(host));
    }
}

/* A fault backend over a host backend whose events wait for
 * cua_host_stream_complete(), and an arena on it (VMM, nothing cached). */
static void faulty_arena(cua_backend **host, cua_backend **fault, cua_arena **a)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 256 * MiB;
    hc.manual_events = 1;
    CHECK_OK(cua_backend_host_create(&hc, host));
    CHECK_OK(cua_backend_fault_create(*host, fault));
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend = *fault;
    cfg.release_threshold = 0;
    CHECK_OK(cua_arena_create(&cfg, a));
}

static void faulty_done(cua_backend *host, cua_backend *fault, cua_arena *a)
{
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_OK(cua_backend_destroy(fault)); /* with its staging area, if an offload made one */
    cua_backend_stats s;
    CHECK_OK(cua_backend_get_stats(host, &s));
    CHECK(s.handles == 0 && s.mappings == 0 && s.reservations == 0 && s.events == 0 &&
          s.host_buffers == 0 && s.streams == 0);
    CHECK_OK(cua_backend_destroy(host));
}

/* Found by the fuzzer: a block used on another stream, freed when neither an
 * event can be recorded nor the stream synchronised. The free answers BACKEND
 * and the block is free all the same (pending until the stream can be
 * synchronised), not live and missing from the pointer map. */
TEST(free_when_its_other_stream_cannot_be_waited_for)
{
    cua_backend *host, *fault;
    cua_arena *a;
    faulty_arena(&host, &fault, &a);
    void *p;
    CHECK_OK(cua_arena_alloc(a, 3 * MiB, 0, &p));
    CHECK_OK(cua_record_stream(p, 0x100));
    CHECK_OK(cua_fault_fail_nth(fault, CUA_CALL_EVENT_RECORD, 1, CUA_ERR_BACKEND));
    /* the stream's sync, then the device's (what a gone stream is waited with) */
    CHECK_OK(cua_fault_fail_calls(fault, CUA_CALL_STREAM_SYNC, 1, 2, CUA_ERR_BACKEND));
    CHECK_ST(cua_free(p), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "was freed") != NULL);
    CHECK_ARENA(a);
    CHECK(cua_ptr_info(p, NULL, NULL, NULL) != CUA_OK);
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.live_blocks == 0 && s.pending_bytes >= 3 * MiB);
    /* Another stream does not get it before the wait: it gets other memory. */
    void *q;
    CHECK_OK(cua_arena_alloc(a, 3 * MiB, 0x200, &q));
    CHECK(q != p);
    CHECK_OK(cua_free(q));
    /* The next call that polls records the event that failed at the free (it
     * orders after the same work); once the stream's work is done, the block
     * is free and its pages go with a trim. */
    size_t released;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.pending_bytes >= 3 * MiB);
    CHECK_OK(cua_host_stream_complete(host, 0x100));
    CHECK_OK(cua_arena_trim(a, 0, &released));
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.pending_bytes == 0 && s.mapped_bytes == 0);
    CHECK_ARENA(a);
    faulty_done(host, fault, a);
}

/* An offload whose page release fails after the copy: the arena is offloaded
 * (the message says so), restore brings the data back. */
TEST(offload_whose_unmap_fails)
{
    cua_backend *host, *fault;
    cua_arena *a;
    faulty_arena(&host, &fault, &a);
    unsigned char *p;
    CHECK_OK(cua_arena_alloc(a, 5 * MiB, 0, (void **)&p));
    memset(p, 0x3c, 5 * MiB);
    CHECK_OK(cua_fault_fail_nth(fault, CUA_CALL_UNMAP, 1, CUA_ERR_BACKEND));
    CHECK_ST(cua_arena_offload(a), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "is offloaded") != NULL);
    void *q = NULL;
    CHECK_ST(cua_arena_alloc(a, 64, 0, &q), CUA_ERR_OFFLOADED);
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_restore(a));
    CHECK(p[0] == 0x3c && p[5 * MiB / 2] == 0x3c && p[5 * MiB - 1] == 0x3c);
    CHECK_ARENA(a);
    CHECK_OK(cua_free(p));
    faulty_done(host, fault, a);
}

/* A growth that fails half way and cannot unmap what it mapped: the peak of
 * mapped bytes still counts those pages (the checker verifies it). */
TEST(peak_counts_pages_a_failed_growth_left)
{
    cua_backend *host, *fault;
    cua_arena *a;
    faulty_arena(&host, &fault, &a);
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.peak_mapped_bytes == 0);
    CHECK_OK(cua_fault_fail_nth(fault, CUA_CALL_MAP, 2, CUA_ERR_BACKEND));
    CHECK_OK(cua_fault_fail_nth(fault, CUA_CALL_UNMAP, 1, CUA_ERR_BACKEND));
    void *p = NULL;
    CHECK(cua_arena_alloc(a, 8 * MiB, 0, &p) != CUA_OK);
    CHECK(p == NULL);
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.peak_mapped_bytes >= s.mapped_bytes);
    size_t released;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    faulty_done(host, fault, a);
}

/* Found by the fuzzer: a growth whose access call fails, and whose undoing
 * unmap fails too, left mapped pages without access as idle cache; the next
 * allocation there got memory it could not touch (a crash on the host
 * backend, an illegal address on a GPU). Now access is granted before any
 * block lands on them. */
TEST(pages_left_without_access_are_not_handed_out)
{
    cua_backend *host, *fault;
    cua_arena *a;
    faulty_arena(&host, &fault, &a);
    CHECK_OK(cua_arena_set_release_threshold(a, CUA_KEEP_ALL));
    /* the growth's access call and the retry after its unmap failed */
    CHECK_OK(cua_fault_fail_calls(fault, CUA_CALL_SET_ACCESS, 1, 2, CUA_ERR_BACKEND));
    CHECK_OK(cua_fault_fail_nth(fault, CUA_CALL_UNMAP, 1, CUA_ERR_BACKEND));
    void *p = NULL;
    CHECK_ST(cua_arena_alloc(a, 4 * MiB, 0, &p), CUA_ERR_BACKEND);
    CHECK_ARENA(a);
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.mapped_bytes > 0 && s.live_bytes == 0); /* the pages that stayed */
    unsigned char *q;
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, 0, (void **)&q));
    memset(q, 0x11, 4 * MiB); /* would fault on pages without access */
    CHECK(q[4 * MiB - 1] == 0x11);
    CHECK_ARENA(a);
    CHECK_OK(cua_free(q));
    size_t released;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    faulty_done(host, fault, a);
}

/* Found by the fuzzer: what a destroy could not give back (the driver refused
 * the unmap, the release, the unreserve or the free twice) was dropped. Now
 * the backend keeps it and retries it before its next reserve, create or
 * alloc, at an explicit trim of any of its arenas, and at its destroy. */
TEST(releases_a_destroy_could_not_make_are_retried)
{
    for (int novmm = 0; novmm <= 1; novmm++) {
        cua_backend *host, *fault;
        cua_arena *a;
        faulty_arena(&host, &fault, &a);
        CHECK_OK(cua_arena_destroy(a, 0));
        cua_arena_config cfg;
        cua_arena_config_init(&cfg);
        cfg.backend = fault;
        cfg.flags = novmm ? CUA_ARENA_NO_VMM : 0;
        CHECK_OK(cua_arena_create(&cfg, &a));
        void *p;
        CHECK_OK(cua_arena_alloc(a, 6 * MiB, 0, &p));
        CHECK_OK(cua_free(p)); /* kept mapped: the cache */
        if (novmm) {
            CHECK_OK(cua_fault_fail_calls(fault, CUA_CALL_FREE, 1, 2, CUA_ERR_BACKEND));
        } else {
            /* the range is then buried too, never freed with the mapping in it */
            CHECK_OK(cua_fault_fail_calls(fault, CUA_CALL_UNMAP, 1, 2, CUA_ERR_BACKEND));
        }
        CHECK_ST(cua_arena_destroy(a, 0), CUA_ERR_BACKEND);
        cua_backend_stats s;
        CHECK_OK(cua_backend_get_stats(fault, &s));
        CHECK(s.pending_releases == (novmm ? 1u : 2u));
        CHECK_OK(cua_backend_get_stats(host, &s));
        CHECK(s.handles > 0 && (novmm || (s.mappings > 0 && s.reservations == 1)));
        /* the next arena's first driver call gives them back first */
        CHECK_OK(cua_arena_create(&cfg, &a));
        CHECK_OK(cua_arena_alloc(a, 1 * MiB, 0, &p));
        CHECK_OK(cua_backend_get_stats(fault, &s));
        CHECK(s.pending_releases == 0);
        CHECK_OK(cua_free(p));
        faulty_done(host, fault, a);
    }
}
