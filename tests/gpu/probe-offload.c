/* probe-offload.c - offload and restore a 4 GiB arena a few times and print
 * the time of each (a measuring tool, not a test). */
#include "cuarena.h"

#include <stdio.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
    cua_backend *bk;
    cua_arena *a;
    if (cua_backend_cuda_create(0, &bk) != CUA_OK) return 77;
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend = bk;
    if (cua_arena_create(&cfg, &a) != CUA_OK) return 1;
    void *p[16];
    for (int i = 0; i < 16; i++)
        if (cua_arena_alloc(a, (size_t)256 << 20, 0, &p[i]) != CUA_OK) return 1;
    for (int c = 0; c < 3; c++) {
        double t0 = now();
        if (cua_arena_offload(a) != CUA_OK) return 1;
        double t1 = now();
        if (cua_arena_restore(a) != CUA_OK) return 1;
        double t2 = now();
        printf("cycle %d: offload %.1f ms (%.1f GB/s), restore %.1f ms (%.1f GB/s)\n", c,
               (t1 - t0) * 1e3, 4.294967296 / (t1 - t0), (t2 - t1) * 1e3, 4.294967296 / (t2 - t1));
    }
    cua_arena_destroy(a, CUA_DESTROY_FORCE);
    cua_backend_destroy(bk);
    return 0;
}
