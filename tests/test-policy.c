/*
 * test-policy.c - what the arena's policies (src/arena/policy.c, placement
 * in arena.c) do over warm runs: a steady workload maps its pages once.
 */
#include "test.h"

#define CUA_ARRAY_LEN(x) (sizeof(x) / sizeof((x)[0]))

/* One step of a workload: allocate `mib` MiB into slot `slot`, or free it (mib 0). */
typedef struct step {
    int slot, mib;
} step;

/* A workload whose blocks best fit alone places on other pages in every
 * warm run than the cold run left mapped (found by a search over random
 * workloads, host backend): with the footprint cap the warm runs then
 * unmap and map again what they use. */
static const step steady[] = {
    {0, 223}, {1, 72}, {2, 108}, {0, 0}, {3, 164}, {4, 144}, {5, 64},
    {5, 0},   {3, 0},  {4, 0},   {1, 0}, {2, 0},
};

/* The bytes unmapped over `warm` runs of the workload after one cold run. */
static cua_status warm_moves(unsigned flags, int warm, uint64_t *moved)
{
    cua_backend *bk;
    cua_status st = test_host_backend(16 * GiB, 0, &bk);
    if (st != CUA_OK) return st;
    cua_arena_config cfg;
    test_config(&cfg);
    cfg.backend = bk;
    cfg.flags = flags | CUA_ARENA_CHECK_ALWAYS;
    cfg.growth_slack = 2 * MiB;
    cua_arena *a;
    if ((st = cua_arena_create(&cfg, &a)) != CUA_OK) return st;
    void *p[6];
    cua_stats s;
    uint64_t before = 0;
    for (int run = 0; run <= warm && st == CUA_OK; run++) {
        if (run == 1 && (st = cua_arena_get_stats(a, &s)) == CUA_OK) before = s.unmapped_total_bytes;
        for (size_t i = 0; i < CUA_ARRAY_LEN(steady) && st == CUA_OK; i++)
            st = steady[i].mib ? cua_arena_alloc(a, (size_t)steady[i].mib * MiB, 0, &p[steady[i].slot])
                               : cua_free(p[steady[i].slot]);
    }
    if (st == CUA_OK && (st = cua_arena_get_stats(a, &s)) == CUA_OK)
        *moved = s.unmapped_total_bytes - before;
    cua_status ds = cua_arena_destroy(a, CUA_DESTROY_FORCE);
    if (st == CUA_OK) st = ds;
    if (st == CUA_OK && !test_backend_clean(bk)) st = CUA_ERR_BUSY;
    ds = cua_backend_destroy(bk);
    return st == CUA_OK ? ds : st;
}

TEST(a_steady_workload_maps_its_pages_once)
{
    uint64_t moved = 1;
    CHECK_OK(warm_moves(0, 3, &moved));
    CHECK(moved == 0);
}

TEST(blind_placement_moves_pages_in_every_warm_run)
{
    /* the same workload with best fit alone: what the default avoids */
    uint64_t moved = 0;
    CHECK_OK(warm_moves(CUA_ARENA_BLIND_PLACEMENT, 3, &moved));
    CHECK(moved >= 3 * 64 * MiB);
}
