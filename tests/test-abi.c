/*
 * test-abi.c - the structures that cross the library's boundary grow
 * without breaking callers built with an older or a newer header
 * (docs/abi.md): configs carry their size, statistics and history entries
 * are copied to the caller's size.
 */
#include "test.h"

#include <string.h>

/* A caller built with a newer header: its config has a field more. */
typedef struct newer_config {
    cua_arena_config v1;
    uint64_t option_of_a_later_release;
} newer_config;

TEST(config_init_sets_its_size_and_the_auto_backend)
{
    cua_arena_config cfg;
    memset(&cfg, 0xab, sizeof cfg);
    cua_arena_config_init(&cfg);
    CHECK(cfg.struct_size == sizeof cfg);
    CHECK(cfg.backend_kind == CUA_BACKEND_AUTO);
    CHECK(cfg.backend == NULL && cfg.limit == 0 && cfg.release_threshold == CUA_KEEP_ALL);
}

TEST(a_config_not_initialised_is_refused)
{
    cua_arena_config cfg;
    memset(&cfg, 0, sizeof cfg); /* struct_size 0: made by hand */
    cfg.backend_kind = CUA_BACKEND_HOST;
    cua_arena *a = NULL;
    CHECK_ST(cua_arena_create(&cfg, &a), CUA_ERR_INVALID_ARG);
    CHECK(a == NULL && strstr(cua_last_error(), "cua_arena_config_init"));
    CHECK_ST(cua_config_parse("limit:1G", &cfg), CUA_ERR_INVALID_ARG);
}

TEST(a_newer_callers_config_works_while_its_new_fields_are_unset)
{
    newer_config n;
    cua_arena_config_init_sized(&n.v1, sizeof n);
    CHECK(n.v1.struct_size == sizeof n && n.option_of_a_later_release == 0);
    n.v1.backend_kind = CUA_BACKEND_HOST;
    n.v1.name = "newer";
    CHECK_OK(cua_config_parse("limit:64M", &n.v1));
    cua_arena *a = NULL;
    CHECK_OK(cua_arena_create(&n.v1, &a));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.limit_bytes == 64 * MiB);
    CHECK_OK(cua_arena_destroy(a, 0));
    /* a field this library does not know, set: refused, not ignored */
    n.option_of_a_later_release = 1;
    CHECK_ST(cua_arena_create(&n.v1, &a), CUA_ERR_NOT_SUPPORTED);
}

TEST(statistics_are_copied_to_the_callers_size)
{
    cua_backend *bk;
    CHECK_OK(test_host_backend(256 * MiB, 0, &bk));
    cua_arena *a;
    CHECK_OK(test_arena(bk, "abi", &a));
    void *p;
    CHECK_OK(cua_arena_alloc(a, MiB, 0, &p));
    struct { cua_stats v1; uint64_t later[4]; } big;
    memset(&big, 0xab, sizeof big);
    CHECK_OK(cua_arena_get_stats_sized(a, &big.v1, sizeof big));
    CHECK(big.v1.live_bytes == MiB && big.later[0] == 0 && big.later[3] == 0);
    cua_stats small;
    CHECK_ST(cua_arena_get_stats_sized(a, &small, sizeof small - 8), CUA_ERR_INVALID_ARG);
    struct { cua_backend_stats v1; uint64_t later; } bbig;
    memset(&bbig, 0xab, sizeof bbig);
    CHECK_OK(cua_backend_get_stats_sized(bk, &bbig.v1, sizeof bbig));
    CHECK(bbig.v1.handles > 0 && bbig.later == 0);
    CHECK_OK(cua_free(p));
    CHECK_OK(test_teardown(a, bk));
}

TEST(history_entries_keep_the_callers_stride)
{
    cua_backend *bk;
    CHECK_OK(test_host_backend(256 * MiB, 0, &bk));
    cua_arena *a = test_arena_with(bk, NULL, test_default_flags(), "device:5");
    CHECK(a);
    CHECK_OK(cua_history_enable(5, 16));
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, MiB, 0, &p));
    CHECK_OK(cua_arena_alloc(a, 2 * MiB, 0, &q));
    struct wide { cua_history_entry e; uint64_t later; } w[8];
    memset(w, 0xab, sizeof w);
    size_t n = 0;
    CHECK_OK(cua_history_read_sized(5, &w[0].e, 8, &n, sizeof w[0]));
    size_t allocs = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(w[i].later == 0);
        if (w[i].e.action == CUA_HISTORY_ALLOC) allocs++;
    }
    CHECK(allocs == 2 && w[n - 1].e.size == 2 * MiB);
    CHECK_ST(cua_history_read_sized(5, &w[0].e, 8, &n, sizeof w[0].e - 1), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_history_enable(5, 0));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
    CHECK_OK(test_teardown(a, bk));
}
