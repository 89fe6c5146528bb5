/*
 * test-cupy.c - the entry points CuPy's CFunctionAllocator calls
 * (cua_cupy_malloc, cua_cupy_free) on the host backend, called the way CuPy
 * calls them: with an arena as param, and with NULL (the thread's current
 * arena on that device, else the device's default arena); wrong devices,
 * destroyed arenas and limits answer NULL with a message; a CuPy-like
 * workload ends with nothing live and trim returning every mapped byte.
 */
#include "test.h"

#include <stdint.h>


/* The default arenas of this process are host arenas, also on a GPU machine. */
#define TEST_ARGS_HOOK(argc, argv) setenv("CUARENA_CONF", "backend:host", 1)

/* What CuPy holds: the two function pointers, as CFunctionAllocator does. */
typedef void *(*cupy_malloc_fn)(void *param, size_t size, int device_id);
typedef void (*cupy_free_fn)(void *param, void *ptr, int device_id);
static const cupy_malloc_fn cupy_malloc = cua_cupy_malloc;
static const cupy_free_fn cupy_free = cua_cupy_free;

/* An arena on a host backend of its own, checked after every call, with the
 * options of `conf` (may be NULL). */
static cua_arena *make_arena(const char *name, const char *conf)
{
    return test_arena_with(NULL, name, CUA_ARENA_CHECK_ALWAYS, conf);
}

static cua_arena *owner(void *p)
{
    cua_arena *a = NULL;
    return cua_ptr_info(p, &a, NULL, NULL) == CUA_OK ? a : NULL;
}

TEST(arena_param_alloc_write_free)
{
    cua_arena *a = make_arena("cupy", NULL);
    CHECK(a);
    size_t sizes[6] = {1, 512, 4000, 1 * MiB + 3, 8 * MiB, 33 * MiB};
    unsigned char *p[6];
    uint64_t want = 0;
    for (int i = 0; i < 6; i++) {
        p[i] = cupy_malloc(a, sizes[i], 0);
        CHECK(p[i] != NULL);
        CHECK((uintptr_t)p[i] % CUA_ALIGNMENT == 0);
        CHECK(owner(p[i]) == a);
        memset(p[i], 0x40 + i, sizes[i]);
        want += sizes[i];
        CHECK(test_stats(a).live_bytes == want);
    }
    for (int i = 0; i < 6; i++) CHECK(p[i][sizes[i] - 1] == 0x40 + i);
    for (int i = 5; i >= 0; i--) cupy_free(a, p[i], 0);
    cua_stats s = test_stats(a);
    CHECK(s.live_bytes == 0 && s.live_blocks == 0 && s.alloc_count == 6 && s.free_count == 6);
    CHECK_ARENA(a);
    size_t released = 0;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    CHECK(released == s.mapped_bytes && released > 0);
    CHECK(test_stats(a).mapped_bytes == 0);
    CHECK_OK(cua_arena_destroy(a, 0));
}

TEST(zero_bytes_give_unique_pointers)
{
    cua_arena *a = make_arena("cupy-zero", NULL);
    CHECK(a);
    void *x = cupy_malloc(a, 0, 0), *y = cupy_malloc(a, 0, 0);
    CHECK(x && y && x != y);
    CHECK(test_stats(a).live_blocks == 2);
    cupy_free(a, x, 0);
    cupy_free(a, y, 0);
    CHECK(test_stats(a).live_blocks == 0);
    CHECK_OK(cua_arena_destroy(a, 0));
}

TEST(null_param_takes_the_current_arena_of_the_device)
{
    cua_arena *a = make_arena("current", NULL);
    CHECK(a);
    CHECK_OK(cua_arena_push(a));
    void *p = cupy_malloc(NULL, 3 * MiB, 0);
    CHECK_OK(cua_arena_pop());
    CHECK(p && owner(p) == a);
    CHECK(test_stats(a).live_bytes == 3 * MiB);
    cupy_free(NULL, p, 0);
    CHECK(test_stats(a).live_bytes == 0);
    CHECK_OK(cua_arena_destroy(a, 0));
}

TEST(null_param_without_a_current_arena_takes_the_default_arena)
{
    cua_arena *def = NULL;
    CHECK_OK(cua_arena_default(0, &def));
    uint64_t before = test_stats(def).live_bytes;
    void *p = cupy_malloc(NULL, 5000, 0);
    CHECK(p && owner(p) == def);
    CHECK(test_stats(def).live_bytes == before + 5000);
    /* a current arena of another device is not CuPy's device's: the default again */
    cua_arena *other = make_arena("device1", "device:1");
    CHECK(other);
    CHECK_OK(cua_arena_push(other));
    void *q = cupy_malloc(NULL, 7000, 0);
    void *r = cupy_malloc(NULL, 9000, 1); /* CuPy on device 1: the current arena */
    CHECK_OK(cua_arena_pop());
    CHECK(q && owner(q) == def);
    CHECK(r && owner(r) == other);
    cupy_free(NULL, p, 0);
    cupy_free(NULL, q, 0);
    cupy_free(NULL, r, 1);
    CHECK(test_stats(def).live_bytes == before);
    CHECK(test_stats(other).live_bytes == 0);
    CHECK_OK(cua_arena_destroy(other, 0));
}

TEST(failures_answer_null_with_a_message)
{
    cua_arena *a = make_arena("limited", "limit:4M");
    CHECK(a);
    /* the arena's device is not CuPy's */
    CHECK(cupy_malloc(a, 4096, 1) == NULL);
    CHECK(strstr(cua_last_error(), "device 0") && strstr(cua_last_error(), "device 1"));
    CHECK(test_stats(a).alloc_count == 0);
    CHECK(cupy_malloc(a, 4096, -1) == NULL);
    /* past the limit */
    CHECK(cupy_malloc(a, 16 * MiB, 0) == NULL);
    CHECK(strstr(cua_last_error(), "limit") != NULL);
    void *p = cupy_malloc(a, 1 * MiB, 0);
    CHECK(p != NULL);
    /* bad frees are ignored and said in words; NULL is nothing */
    cupy_free(a, (char *)p + 512, 0);
    CHECK(strstr(cua_last_error(), "interior") != NULL);
    CHECK(test_stats(a).live_blocks == 1);
    cupy_free(a, NULL, 0);
    cupy_free(a, p, 0);
    cupy_free(a, p, 0); /* double free: an answer, not a crash */
    CHECK(test_stats(a).live_blocks == 0 && test_stats(a).free_count == 1);
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_destroy(a, 0));
    /* a destroyed arena */
    CHECK(cupy_malloc(a, 4096, 0) == NULL);
    CHECK(strstr(cua_last_error(), "destroyed") != NULL);
}

/* What a CuPy program does: arrays of many sizes made and dropped in no
 * particular order (temporaries of elementwise ops, reductions, matmuls). */
TEST(cupy_like_workload_ends_at_zero)
{
    cua_arena *a = make_arena("workload", NULL);
    CHECK(a);
    enum { N = 64 };
    void *live[N] = {0};
    size_t size[N] = {0};
    uint64_t rng = 42, want = 0, peak = 0;
    for (int step = 0; step < 4000; step++) {
        int i = (int)(test_rand(&rng) % N);
        if (live[i]) {
            CHECK(((unsigned char *)live[i])[0] == (unsigned char)i);
            cupy_free(a, live[i], 0);
            want -= size[i];
            live[i] = NULL;
        } else {
            uint64_t r = test_rand(&rng);
            size[i] = r % 3 == 0 ? (size_t)(r >> 8) % (4 * MiB) : (size_t)(r >> 8) % 65536;
            live[i] = cupy_malloc(a, size[i], 0);
            CHECK(live[i] != NULL);
            if (!size[i]) size[i] = 1; /* a zero-size array holds one byte */
            ((unsigned char *)live[i])[0] = (unsigned char)i;
            want += size[i];
            if (want > peak) peak = want;
        }
        if (step % 500 == 0) CHECK(test_stats(a).live_bytes == want);
    }
    for (int i = 0; i < N; i++)
        if (live[i]) cupy_free(a, live[i], 0);
    cua_stats s = test_stats(a);
    CHECK(s.live_bytes == 0 && s.peak_live_bytes >= peak);
    size_t released = 0;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    CHECK(test_stats(a).mapped_bytes == 0 && released == s.mapped_bytes);
    CHECK_OK(cua_arena_destroy(a, 0));
}
