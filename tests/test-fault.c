/*
 * test-fault.c - the fault backend fails exactly the calls it is told to (the
 * nth of a kind, a run of them, at random), with no side effect on the
 * backend it wraps, and forwards everything else. Everything goes through
 * the _cua_bk_* wrappers.
 */
#include "test-backend.h"

/* ---- the fault backend ---------------------------------------------------------------------- */

/* What each kind of call acts on; a call whose failure was injected can be made again. */
struct fixture {
    cua_backend *host, *fault;
    uintptr_t base, spare, extra; /* base: 8 MiB with h1 mapped at base; spare: 2 MiB */
    cua_handle h1, h2, h3;        /* h1 mapped, h2 not, h3 made by the create call */
    cua_event e1, e2;             /* e1 recorded; e2 made by the event_create call */
    uintptr_t s1, s2;             /* whole segments: s1 from setup, s2 made by the alloc call */
    void *buf1, *buf2;            /* staging: buf1 from setup, buf2 made by the host_alloc call */
    cua_stream st1, st2;          /* streams: st1 from setup, st2 made by stream_create */
    bool h1_mapped, h2_mapped, h2_alive, spare_alive, e1_alive, s1_alive, buf1_alive, st1_alive;
};

static cua_status fixture_setup(struct fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    fx->host = host_make(64 * MiB, 2 * MiB, 0); /* 58 MiB free after setup */
    if (!fx->host) return CUA_ERR_NO_DEVICE;
    cua_status st = _cua_backend_fault_create(fx->host, &fx->fault);
    cua_backend *f = fx->fault;
    if (st == CUA_OK) st = _cua_bk_reserve(f, NULL, 8 * MiB, 2 * MiB, &fx->base);
    if (st == CUA_OK) st = _cua_bk_reserve(f, NULL, 2 * MiB, 2 * MiB, &fx->spare);
    if (st == CUA_OK) st = _cua_bk_create(f, NULL, 2 * MiB, &fx->h1);
    if (st == CUA_OK) st = _cua_bk_create(f, NULL, 2 * MiB, &fx->h2);
    if (st == CUA_OK) st = _cua_bk_map(f, NULL, fx->base, 2 * MiB, fx->h1);
    if (st == CUA_OK) st = _cua_bk_event_create(f, NULL, &fx->e1);
    if (st == CUA_OK) st = _cua_bk_event_record(f, NULL, fx->e1, 1);
    if (st == CUA_OK) st = _cua_bk_alloc(f, NULL, 2 * MiB, &fx->s1);
    if (st == CUA_OK) st = _cua_bk_set_access_own(f, NULL, fx->base, 2 * MiB);
    if (st == CUA_OK) st = _cua_bk_host_alloc(f, NULL, 4096, &fx->buf1);
    if (st == CUA_OK) st = _cua_bk_stream_create(f, NULL, &fx->st1);
    fx->h1_mapped = fx->h2_alive = fx->spare_alive = fx->e1_alive = fx->s1_alive = true;
    fx->buf1_alive = fx->st1_alive = true;
    return st;
}

static cua_status fixture_call(struct fixture *fx, cua_call kind)
{
    cua_backend *f = fx->fault;
    size_t fr, tot;
    cua_status st;
    switch (kind) {
    case CUA_CALL_RESERVE: return _cua_bk_reserve(f, NULL, 2 * MiB, 2 * MiB, &fx->extra);
    case CUA_CALL_UNRESERVE:
        st = _cua_bk_unreserve(f, NULL, fx->spare, 2 * MiB);
        fx->spare_alive = st != CUA_OK;
        return st;
    case CUA_CALL_CREATE: return _cua_bk_create(f, NULL, 2 * MiB, &fx->h3);
    case CUA_CALL_RELEASE:
        st = _cua_bk_release(f, NULL, fx->h2, 2 * MiB);
        fx->h2_alive = st != CUA_OK;
        return st;
    case CUA_CALL_MAP:
        st = _cua_bk_map(f, NULL, fx->base + 2 * MiB, 2 * MiB, fx->h2);
        fx->h2_mapped = st == CUA_OK;
        return st;
    case CUA_CALL_UNMAP:
        st = _cua_bk_unmap(f, NULL, fx->base, 2 * MiB, 1);
        fx->h1_mapped = st != CUA_OK;
        return st;
    case CUA_CALL_SET_ACCESS: return _cua_bk_set_access_own(f, NULL, fx->base, 2 * MiB);
    case CUA_CALL_MEM_INFO: return _cua_bk_mem_info(f, NULL, &fr, &tot);
    case CUA_CALL_EVENT_CREATE: return _cua_bk_event_create(f, NULL, &fx->e2);
    case CUA_CALL_EVENT_DESTROY:
        st = _cua_bk_event_destroy(f, NULL, fx->e1);
        fx->e1_alive = st != CUA_OK;
        return st;
    case CUA_CALL_EVENT_RECORD: return _cua_bk_event_record(f, NULL, fx->e1, 2);
    case CUA_CALL_EVENT_QUERY: return _cua_bk_event_query(f, NULL, fx->e1);
    case CUA_CALL_EVENT_SYNC: return _cua_bk_event_sync(f, NULL, fx->e1);
    case CUA_CALL_STREAM_SYNC: return _cua_bk_stream_sync(f, NULL, 1);
    case CUA_CALL_ALLOC: return _cua_bk_alloc(f, NULL, 4 * MiB, &fx->s2);
    case CUA_CALL_FREE:
        st = _cua_bk_free(f, NULL, fx->s1, 2 * MiB);
        fx->s1_alive = st != CUA_OK;
        return st;
    case CUA_CALL_HOST_ALLOC: return _cua_bk_host_alloc(f, NULL, 8192, &fx->buf2);
    case CUA_CALL_HOST_FREE:
        st = _cua_bk_host_free(f, NULL, fx->buf1, 4096);
        fx->buf1_alive = st != CUA_OK;
        return st;
    case CUA_CALL_STREAM_CREATE: return _cua_bk_stream_create(f, NULL, &fx->st2);
    case CUA_CALL_STREAM_DESTROY:
        st = _cua_bk_stream_destroy(f, NULL, fx->st1);
        fx->st1_alive = st != CUA_OK;
        return st;
    case CUA_CALL_COPY_TO_HOST: return _cua_bk_copy_to_host(f, NULL, fx->buf1, fx->base, 4096, fx->st1);
    case CUA_CALL_COPY_TO_DEVICE:
        return _cua_bk_copy_to_device(f, NULL, fx->base, fx->buf1, 4096, fx->st1);
    case CUA_CALL_FILL: return _cua_bk_fill(f, NULL, fx->base, 4096, 0xde, fx->st1);
    default: return CUA_ERR_INVALID_ARG;
    }
}

/* Undo everything through the fault backend; both backends' counts must be 0. */
static cua_status fixture_teardown(struct fixture *fx)
{
    cua_backend *f = fx->fault;
    cua_status st = CUA_OK;
    if (fx->h1_mapped && fx->h2_mapped)
        st = _cua_bk_unmap(f, NULL, fx->base, 4 * MiB, 2); /* a batch of two */
    else if (fx->h1_mapped)
        st = _cua_bk_unmap(f, NULL, fx->base, 2 * MiB, 1);
    else if (fx->h2_mapped)
        st = _cua_bk_unmap(f, NULL, fx->base + 2 * MiB, 2 * MiB, 1);
    if (st == CUA_OK) st = _cua_bk_release(f, NULL, fx->h1, 2 * MiB);
    if (st == CUA_OK && fx->h2_alive) st = _cua_bk_release(f, NULL, fx->h2, 2 * MiB);
    if (st == CUA_OK && fx->h3) st = _cua_bk_release(f, NULL, fx->h3, 2 * MiB);
    if (st == CUA_OK) st = _cua_bk_unreserve(f, NULL, fx->base, 8 * MiB);
    if (st == CUA_OK && fx->spare_alive) st = _cua_bk_unreserve(f, NULL, fx->spare, 2 * MiB);
    if (st == CUA_OK && fx->extra) st = _cua_bk_unreserve(f, NULL, fx->extra, 2 * MiB);
    if (st == CUA_OK && fx->e1_alive) st = _cua_bk_event_destroy(f, NULL, fx->e1);
    if (st == CUA_OK && fx->e2) st = _cua_bk_event_destroy(f, NULL, fx->e2);
    if (st == CUA_OK && fx->s1_alive) st = _cua_bk_free(f, NULL, fx->s1, 2 * MiB);
    if (st == CUA_OK && fx->s2) st = _cua_bk_free(f, NULL, fx->s2, 4 * MiB);
    if (st == CUA_OK && fx->buf1_alive) st = _cua_bk_host_free(f, NULL, fx->buf1, 4096);
    if (st == CUA_OK && fx->buf2) st = _cua_bk_host_free(f, NULL, fx->buf2, 8192);
    if (st == CUA_OK && fx->st1_alive) st = _cua_bk_stream_destroy(f, NULL, fx->st1);
    if (st == CUA_OK && fx->st2) st = _cua_bk_stream_destroy(f, NULL, fx->st2);
    if (st != CUA_OK) return st;
    if (!all_zero(fx->host) || !all_zero(fx->fault)) return CUA_ERR_CORRUPT;
    /* The inner backend cannot go first. */
    if (_cua_backend_destroy(fx->host) != CUA_ERR_BUSY) return CUA_ERR_CORRUPT;
    st = _cua_backend_destroy(fx->fault);
    return st == CUA_OK ? _cua_backend_destroy(fx->host) : st;
}

struct snapshot { uint64_t calls[CUA_CALL_COUNT]; int64_t live[8]; };

static void snap(cua_backend *b, struct snapshot *s)
{
    static const char *const what[8] = {"reservations", "handles", "mappings", "events",
                                        "handle_bytes", "host_buffers", "host_bytes", "streams"};
    for (int k = 0; k < CUA_CALL_COUNT; k++) s->calls[k] = atomic_load(&b->calls[k]);
    for (int i = 0; i < 8; i++) s->live[i] = live(b, what[i]);
}

TEST(fault_nth_every_kind)
{
    for (int k = 0; k < CUA_CALL_COUNT; k++) {
        struct fixture fx;
        CHECK_OK(fixture_setup(&fx));
        cua_status want = k == CUA_CALL_CREATE || k == CUA_CALL_RESERVE || k == CUA_CALL_ALLOC
                              ? CUA_ERR_OUT_OF_MEMORY
                              : CUA_ERR_BACKEND;
        CHECK_OK(cua_fault_fail_nth(fx.fault, (cua_call)k, 1, want));
        struct snapshot before, after;
        snap(fx.host, &before);
        CHECK_ST(fixture_call(&fx, (cua_call)k), want);
        CHECK(strstr(cua_last_error(), "injected") != NULL);
        CHECK(strstr(cua_last_error(), cua_call_name((cua_call)k)) != NULL);
        snap(fx.host, &after);
        CHECK(memcmp(&before, &after, sizeof before) == 0); /* the inner saw nothing */
        uint64_t n = 0;
        CHECK_OK(_cua_fault_injected(fx.fault, &n));
        CHECK(n == 1);
        CHECK_OK(fixture_call(&fx, (cua_call)k)); /* a rule fires once */
        CHECK(atomic_load(&fx.host->calls[k]) == before.calls[k] + 1);
        CHECK_OK(fixture_teardown(&fx));
    }
}

TEST(fault_nth_third_call)
{
    struct fixture fx;
    CHECK_OK(fixture_setup(&fx));
    size_t fr, tot;
    CHECK_OK(cua_fault_fail_nth(fx.fault, CUA_CALL_MEM_INFO, 3, CUA_ERR_BACKEND));
    CHECK_OK(_cua_bk_mem_info(fx.fault, NULL, &fr, &tot));
    CHECK(fr == 58 * MiB && tot == 64 * MiB && fx.fault->granularity == 2 * MiB &&
          fx.fault->total_bytes == 64 * MiB);
    CHECK_OK(_cua_bk_event_query(fx.fault, NULL, fx.e1)); /* other kinds do not count */
    CHECK_OK(_cua_bk_mem_info(fx.fault, NULL, &fr, &tot));
    CHECK_ST(_cua_bk_mem_info(fx.fault, NULL, &fr, &tot), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "call 3 of kind 'mem_info'") != NULL);
    for (int i = 0; i < 5; i++) CHECK_OK(_cua_bk_mem_info(fx.fault, NULL, &fr, &tot));
    /* Counted from when the rule is set; nth 0 clears it. */
    CHECK_OK(cua_fault_fail_nth(fx.fault, CUA_CALL_MEM_INFO, 2, CUA_ERR_OUT_OF_MEMORY));
    CHECK_OK(_cua_bk_mem_info(fx.fault, NULL, &fr, &tot));
    CHECK_ST(_cua_bk_mem_info(fx.fault, NULL, &fr, &tot), CUA_ERR_OUT_OF_MEMORY);
    CHECK_OK(cua_fault_fail_nth(fx.fault, CUA_CALL_MEM_INFO, 1, CUA_ERR_BACKEND));
    CHECK_OK(cua_fault_fail_nth(fx.fault, CUA_CALL_MEM_INFO, 0, CUA_OK));
    CHECK_OK(_cua_bk_mem_info(fx.fault, NULL, &fr, &tot));
    uint64_t n = 0;
    CHECK_OK(_cua_fault_injected(fx.fault, &n));
    CHECK(n == 2 && atomic_load(&fx.fault->failures) == 2);
    /* Bad rules. */
    CHECK_ST(cua_fault_fail_nth(fx.fault, CUA_CALL_COUNT, 1, CUA_ERR_BACKEND),
             CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_fault_fail_nth(fx.fault, CUA_CALL_MAP, 1, CUA_ERR_LIMIT), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_fault_fail_nth(fx.host, CUA_CALL_MAP, 1, CUA_ERR_BACKEND),
             CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_fault_injected(fx.host, &n), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_fault_injected(fx.fault, NULL), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_host_stream_complete(fx.fault, 1), CUA_ERR_INVALID_ARG);
    CHECK_OK(fixture_teardown(&fx));
}

TEST(fault_random)
{
    struct fixture fx;
    CHECK_OK(fixture_setup(&fx));
    cua_backend *f = fx.fault;
    size_t fr, tot;
    cua_handle h;
    uintptr_t a;
    cua_event e;
    CHECK_OK(_cua_fault_fail_random(f, 1.0, 1));
    struct snapshot before, after;
    snap(fx.host, &before);
    CHECK_ST(_cua_bk_create(f, NULL, 2 * MiB, &h), CUA_ERR_OUT_OF_MEMORY);
    CHECK_ST(_cua_bk_reserve(f, NULL, 2 * MiB, 2 * MiB, &a), CUA_ERR_OUT_OF_MEMORY);
    CHECK_ST(_cua_bk_mem_info(f, NULL, &fr, &tot), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "random") != NULL);
    CHECK_ST(_cua_bk_event_create(f, NULL, &e), CUA_ERR_BACKEND);
    CHECK_ST(_cua_bk_unmap(f, NULL, fx.base, 2 * MiB, 1), CUA_ERR_BACKEND);
    CHECK_ST(_cua_bk_release(f, NULL, fx.h2, 2 * MiB), CUA_ERR_BACKEND);
    CHECK_ST(_cua_bk_event_destroy(f, NULL, fx.e1), CUA_ERR_BACKEND);
    snap(fx.host, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    uint64_t n = 0;
    CHECK_OK(_cua_fault_injected(f, &n));
    CHECK(n == 7);
    CHECK_OK(_cua_fault_fail_random(f, 0.0, 1));
    for (int i = 0; i < 100; i++) CHECK_OK(_cua_bk_mem_info(f, NULL, &fr, &tot));
    /* p = 0.5: some of each, and the same seed draws the same sequence. */
    uint64_t pattern[2] = {0, 0};
    for (int round = 0; round < 2; round++) {
        CHECK_OK(_cua_fault_fail_random(f, 0.5, 99));
        for (int i = 0; i < 64; i++)
            if (_cua_bk_event_query(f, NULL, fx.e1) != CUA_OK) pattern[round] |= (uint64_t)1 << i;
    }
    CHECK(pattern[0] == pattern[1] && pattern[0] != 0 && pattern[0] != ~(uint64_t)0);
    CHECK_OK(_cua_fault_injected(f, &n));
    CHECK(n == 7 + 2 * (uint64_t)__builtin_popcountll(pattern[0]));
    CHECK_ST(_cua_fault_fail_random(f, 1.5, 1), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_fault_fail_random(f, -0.1, 1), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_fault_fail_random(f, __builtin_nan(""), 1), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_fault_fail_random(fx.host, 0.5, 1), CUA_ERR_INVALID_ARG);
    CHECK_OK(_cua_fault_fail_random(f, 0.0, 0));
    CHECK_OK(fixture_teardown(&fx));
}

/* An offset passed straight to the hook reaches the inner backend and is refused there. */
TEST(fault_forwards_offset)
{
    struct fixture fx;
    CHECK_OK(fixture_setup(&fx));
    CHECK_ST(fx.fault->ops->map(fx.fault, fx.base + 2 * MiB, 2 * MiB, 4096, fx.h2),
             CUA_ERR_NOT_SUPPORTED);
    CHECK(atomic_load(&fx.host->calls[CUA_CALL_MAP]) == 2); /* counted on the inner */
    CHECK_ST(cua_fault_fail_nth(fx.fault, CUA_CALL_CREATE, 1, CUA_OK), CUA_ERR_INVALID_ARG);
    CHECK_OK(fixture_teardown(&fx));
}
