/*
 * test-cuda.c - the CUDA backend on a real GPU. Every case runs twice: with
 * expandable VMM segments (*_vmm), and with whole segments from cuMemAlloc
 * (CUA_ARENA_NO_VMM, the fallback: *_whole_segments). Each case ends with the
 * driver's free memory back where it was, to the byte.
 *
 *   data_integrity  data written by the GPU (kernel, cuMemsetD32/D8, copies
 *                   from the host) into every live block reads back intact
 *                   while neighbours are allocated, freed, split, coalesced
 *                   and trimmed over 2000 seeded steps; the checker after each
 *   cross_stream    a block freed on stream A while a long kernel on A still
 *                   writes it is not handed to stream B: B's data survives
 *   race_detector_works  the control: on A itself the block is handed out
 *                   again at once (legal in stream order); filling it from B
 *                   without ordering is a race, and the checksum sees it
 *   record_stream   a block used by a kernel on B (cua_record_stream) is not
 *                   handed out on A until B's kernel is done
 *   trim_destroy    cuMemGetInfo's free bytes rise by exactly what trim says
 *                   it released; after destroy they equal the baseline and the
 *                   backend holds no handle, mapping or reservation
 *   limit_release   a limit fails with CUA_ERR_LIMIT and a message; release
 *                   threshold 0 gives every page back at the free
 *   fast_path       a warm arena makes no driver call over 1000 rounds
 *   out_of_memory   filling the GPU with 1 GiB blocks ends in
 *                   CUA_ERR_OUT_OF_MEMORY with a report of what the driver has
 *                   free; everything comes back
 *   poison_fill     CUA_ARENA_POISON: of three neighbouring blocks written on
 *                   stream A, the middle one freed reads back as
 *                   CUA_POISON_BYTE (one fill call, cuMemsetD8Async on A);
 *                   its live neighbours keep every byte
 *
 * The driver is reached as the library reaches it (dlopen of libcuda.so.1 and
 * cuGetProcAddress_v2 at the 12.0 ABI), so the test links without it. Without
 * a device (cua_backend_cuda_create answers CUA_ERR_NO_DEVICE) it prints one
 * "skipped" line and exits 77; any other setup failure exits 1. Exit status:
 * 0 all passed, 1 a case or the final teardown failed, 77 skipped.
 *
 * The kernel, the driver and the setup every case uses are in
 * test-cuda-setup.c (shared declarations: test-cuda.h).
 *
 * The kernel is PTX text JIT-compiled by the driver (no nvcc at build time).
 * Check it after a change (meson's test 'ptx-assembles' does the same):
 *   CUA_TEST_PRINT_PTX=1 build/tests/gpu/test-cuda > /tmp/k.ptx &&
 *   /usr/local/cuda/bin/ptxas -arch=sm_90 /tmp/k.ptx -o /dev/null
 */
#include "test.h"
#include "test-cuda.h"

#include <time.h>

/* A driver call that must succeed; its error is printed by name. */
#define CHECK_CU(expr)                                                                     \
    do {                                                                                   \
        CUresult r_ = (expr);                                                              \
        if (r_ != CUDA_SUCCESS) {                                                          \
            fprintf(stderr, "%s:%d: %s failed: %s (%d)\n", __FILE__, __LINE__, #expr,      \
                    cu_name(r_), (int)r_);                                                 \
            test_failed_flag = 1;                                                          \
            return;                                                                        \
        }                                                                                  \
    } while (0)

/* Call a helper that reports through CHECK*; stop the case if it failed. */
#define CALL(f)                                                                            \
    do {                                                                                   \
        f;                                                                                 \
        if (test_failed_flag) return;                                                      \
    } while (0)

/* At the start of every case: the setup once, or the leftovers of a failed case. */
static void begin(void)
{
    if (!g_bk) setup_once();
    else if (!release_leftovers()) CHECK(!"leftovers of an earlier case could not be released");
}

/* The driver's free bytes once the GPU is idle. */
static void free_now(size_t *out)
{
    size_t total = 0;
    CHECK_CU(cu.CtxSynchronize());
    CHECK_CU(cu.MemGetInfo(out, &total));
}

/* The driver's free bytes must equal `want`. */
static void expect_free(size_t want, const char *when)
{
    size_t now = 0;
    CALL(free_now(&now));
    if (now != want)
        fprintf(stderr, "%s: the driver has %zu bytes free, expected %zu (%+lld)\n", when, now,
                want, (long long)now - (long long)want);
    CHECK(now == want);
}

static void expect_backend_empty(void)
{
    cua_backend_stats bs;
    CHECK_OK(cua_backend_get_stats(g_bk, &bs));
    if (bs.handles || bs.mappings || bs.reservations || bs.handle_bytes)
        fprintf(stderr, "the backend still holds %llu handles (%llu bytes), %llu mappings, "
                "%llu reservations\n", (unsigned long long)bs.handles,
                (unsigned long long)bs.handle_bytes, (unsigned long long)bs.mappings,
                (unsigned long long)bs.reservations);
    CHECK(bs.handles == 0 && bs.mappings == 0 && bs.reservations == 0 && bs.handle_bytes == 0);
}

/* Words [0, n) at p that are not `value`; `report`: print the first bad one. */
static void count_bad(const void *p, size_t n, uint32_t value, bool report, size_t *bad)
{
    static uint32_t buf[2u << 20]; /* 8 MiB: the largest block read whole */
    CHECK(n <= sizeof buf / sizeof buf[0]);
    CHECK_CU(cu.MemcpyDtoH(buf, (CUdeviceptr)p, n * 4));
    *bad = 0;
    for (size_t i = 0; i < n; i++)
        if (buf[i] != value && (*bad)++ == 0 && report)
            fprintf(stderr, "block %p: word %zu is %#x, expected %#x\n", p, i, buf[i], value);
}

/* ---- data integrity ----------------------------------------------------------------------- */

enum fill_how { BY_KERNEL, BY_MEMSET32, BY_MEMSET8, BY_COPY };
static const char *const how_name[] = {"the kernel", "cuMemsetD32Async", "cuMemsetD8Async",
                                       "cuMemcpyHtoD"};

typedef struct blk {
    void *p;
    size_t words;     /* whole 32-bit words of the request */
    uint32_t value;   /* word i holds value, or value ^ i when copied from the host */
    int how, id;
} blk;

#define COPY_MAX_WORDS ((size_t)1 << 18) /* blocks up to 1 MiB may be written by a copy */
static uint32_t host_buf[COPY_MAX_WORDS];

static uint32_t expected(const blk *b, size_t i)
{
    return b->how == BY_COPY ? b->value ^ (uint32_t)i : b->value;
}

static size_t pick_size(uint64_t *rng)
{
    uint64_t r = test_rand(rng) % 100;
    if (r < 70) return 512 + test_rand(rng) % (256 * 1024);        /* small */
    if (r < 95) return 256 * 1024 + test_rand(rng) % (4 * MiB);    /* a page or two */
    return 4 * MiB + test_rand(rng) % (20 * MiB);                  /* up to 24 MiB */
}

/* Write the block's pattern on the default stream, one of four ways. */
static void fill(blk *b)
{
    CUdeviceptr p = (CUdeviceptr)b->p;
    if (b->how == BY_COPY && b->words > COPY_MAX_WORDS) b->how = BY_MEMSET32;
    if (b->how == BY_MEMSET8) b->value = (b->value & 0xffu) * 0x01010101u;
    switch (b->how) {
    case BY_KERNEL: CHECK_CU(launch(b->p, b->words, 0, b->value, 0)); break;
    case BY_MEMSET32: CHECK_CU(cu.MemsetD32Async(p, b->value, b->words, 0)); break;
    case BY_MEMSET8: CHECK_CU(cu.MemsetD8Async(p, (unsigned char)b->value, b->words * 4, 0)); break;
    default:
        for (size_t i = 0; i < b->words; i++) host_buf[i] = expected(b, i);
        CHECK_CU(cu.MemcpyHtoD(p, host_buf, b->words * 4)); /* ordered on the default stream */
    }
}

/* Compare words [from, from + n) of the block with its pattern. */
static void verify_range(const blk *b, size_t from, size_t n, int step)
{
    static uint32_t buf[COPY_MAX_WORDS];
    CHECK(n <= COPY_MAX_WORDS && from + n <= b->words);
    CHECK_CU(cu.MemcpyDtoH(buf, (CUdeviceptr)b->p + from * 4, n * 4));
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == expected(b, from + i)) continue;
        fprintf(stderr, "step %d: block #%d (%p, %zu words, written by %s) lost its data: "
                "word %zu is %#x, expected %#x\n", step, b->id, b->p, b->words, how_name[b->how],
                from + i, buf[i], expected(b, from + i));
        CHECK(!"a live block's data changed");
    }
}

/* Small blocks whole; large ones: the first and last 16 Ki words and eight
 * random windows of 1 Ki words. */
static void verify(const blk *b, int step, uint64_t *rng)
{
    const size_t edge = 16 * 1024, win = 1024;
    if (b->words <= COPY_MAX_WORDS) {
        CALL(verify_range(b, 0, b->words, step));
        return;
    }
    CALL(verify_range(b, 0, edge, step));
    CALL(verify_range(b, b->words - edge, edge, step));
    for (int k = 0; k < 8; k++)
        CALL(verify_range(b, test_rand(rng) % (b->words - win), win, step));
}

static void data_integrity(unsigned flags)
{
    enum { STEPS = 2000, MAX_LIVE = 96 };
    begin();
    cua_arena *a;
    CHECK_OK(make_arena(flags | CUA_ARENA_CHECK_ALWAYS, 0, CUA_KEEP_ALL, &a));
    blk live[MAX_LIVE];
    int n = 0, trims = 0;
    uint64_t rng = 42 + flags, released_total = 0;
    for (int step = 0; step < STEPS; step++) {
        uint64_t r = test_rand(&rng) % 100;
        if (n < MAX_LIVE && (r < 55 || n == 0)) {
            blk *b = &live[n];
            size_t size = pick_size(&rng);
            b->words = size / 4;
            b->id = step;
            b->value = 0x9e3779b9u * (uint32_t)(step + 1);
            b->how = (int)(test_rand(&rng) % 4);
            CHECK_OK(cua_arena_alloc(a, size, 0, &b->p));
            n++;
            CALL(fill(b));
        } else if (r < 98) {
            int i = (int)(test_rand(&rng) % (uint64_t)n);
            CHECK_OK(cua_free(live[i].p));
            live[i] = live[--n];
        } else {
            size_t released = 0;
            CHECK_OK(cua_arena_trim(a, 0, &released));
            trims++;
            released_total += released;
        }
        CHECK_ARENA(a);
        if (step % 50 == 49 || step == STEPS - 1) {
            CHECK_CU(cu.CtxSynchronize());
            for (int i = 0; i < n; i++) CALL(verify(&live[i], step, &rng));
        }
    }
    printf("data: %s: %d blocks live at the end, %d trims released %llu bytes\n",
           flags & CUA_ARENA_NO_VMM ? "whole segments" : "vmm", n, trims,
           (unsigned long long)released_total);
    for (int i = 0; i < n; i++) CHECK_OK(cua_free(live[i].p));
    CHECK_OK(cua_arena_destroy(a, 0));
    CALL(expect_free(g_free0, "after destroy"));
}

/* ---- stream safety -------------------------------------------------------------------------- */

#define RACE_SIZE (8 * MiB)
#define FILL_A 0xaaaaaaaau
#define FILL_B 0x55555555u

/* X on stream A under a ~300 ms kernel that writes FILL_A at its end; X freed
 * on A; then Y on A (same_stream) or on B, filled with FILL_B on B without
 * waiting for A. Y must be intact (cross_stream), or, in the control, Y is X
 * and A's late writes show in the checksum. That A still ran when Y was
 * handed out is checked: otherwise the case would prove nothing. */
static void race(unsigned flags, bool same_stream)
{
    const size_t words = RACE_SIZE / 4;
    begin();
    cua_arena *a;
    void *x, *y;
    CHECK_OK(make_arena(flags | CUA_ARENA_CHECK_ALWAYS, 0, CUA_KEEP_ALL, &a));
    CHECK_OK(cua_arena_alloc(a, RACE_SIZE, (cua_stream)g_a, &x));
    CHECK_CU(launch(x, words, g_cycles, FILL_A, g_a));
    CHECK_OK(cua_free(x)); /* in A's order: A's kernel still uses it */
    CHECK_OK(cua_arena_alloc(a, RACE_SIZE, (cua_stream)(same_stream ? g_a : g_b), &y));
    CUresult running = cu.StreamQuery(g_a);
    CHECK_CU(cu.MemsetD32Async((CUdeviceptr)y, FILL_B, words, g_b));
    CHECK_CU(cu.StreamSynchronize(g_b));
    CHECK_CU(cu.StreamSynchronize(g_a));
    size_t bad = 0;
    CALL(count_bad(y, words, FILL_B, !same_stream, &bad));
    printf("race: %s, %s: X %p, Y %p, %zu of %zu words of Y overwritten\n",
           flags & CUA_ARENA_NO_VMM ? "whole segments" : "vmm",
           same_stream ? "control, Y on A" : "Y on B", x, y, bad, words);
    if (running != CUDA_ERROR_NOT_READY)
        fprintf(stderr, "stream A was %s when Y was handed out: the spin is too short\n",
                running == CUDA_SUCCESS ? "done" : cu_name(running));
    CHECK(running == CUDA_ERROR_NOT_READY);
    if (same_stream) {
        if (y != x)
            fprintf(stderr, "control inconclusive: on stream A the allocator did not hand X "
                    "out again at once\n");
        CHECK(y == x);
        CHECK(bad > 0); /* the checksum catches the race */
    } else {
        CHECK(y != x);  /* A's kernel still ran: X could not go to B */
        CHECK(bad == 0);
    }
    CHECK_OK(cua_free(y));
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_destroy(a, 0));
    CALL(expect_free(g_free0, "after destroy"));
}

static void cross_stream(unsigned flags) { race(flags, false); }
static void race_detector_works(unsigned flags) { race(flags, true); }

static void record_stream(unsigned flags)
{
    const size_t words = RACE_SIZE / 4;
    begin();
    cua_arena *a;
    void *x, *y;
    CHECK_OK(make_arena(flags | CUA_ARENA_CHECK_ALWAYS, 0, CUA_KEEP_ALL, &a));
    CHECK_OK(cua_arena_alloc(a, RACE_SIZE, (cua_stream)g_a, &x));
    CHECK_CU(launch(x, words, g_cycles, FILL_A, g_b)); /* used on B */
    CHECK_OK(cua_record_stream(x, (cua_stream)g_b));
    CHECK_OK(cua_free(x));
    CHECK_OK(cua_arena_alloc(a, RACE_SIZE, (cua_stream)g_a, &y));
    CUresult running = cu.StreamQuery(g_b);
    CHECK_CU(cu.MemsetD32Async((CUdeviceptr)y, FILL_B, words, g_a));
    CHECK_CU(cu.StreamSynchronize(g_a));
    CHECK_CU(cu.StreamSynchronize(g_b));
    size_t bad = 0;
    CALL(count_bad(y, words, FILL_B, true, &bad));
    printf("record_stream: %s: X %p, Y %p, %zu of %zu words of Y overwritten\n",
           flags & CUA_ARENA_NO_VMM ? "whole segments" : "vmm", x, y, bad, words);
    CHECK(running == CUDA_ERROR_NOT_READY); /* B's kernel ran when Y was handed out */
    CHECK(y != x);
    CHECK(bad == 0);
    CHECK_OK(cua_free(y));
    CHECK_OK(cua_arena_destroy(a, 0));
    CALL(expect_free(g_free0, "after destroy"));
}

/* ---- memory goes back to the driver ------------------------------------------------------ */

static void trim_destroy(unsigned flags)
{
    begin();
    cua_arena *a;
    void *p[64];
    CHECK_OK(make_arena(flags | CUA_ARENA_CHECK_ALWAYS, 0, CUA_KEEP_ALL, &a));
    uint64_t rng = 7;
    for (int i = 0; i < 64; i++) { /* ~1.3 GiB in all */
        size_t size = MiB + test_rand(&rng) % (40 * MiB);
        CHECK_OK(cua_arena_alloc(a, size, 0, &p[i]));
        CHECK_CU(cu.MemsetD32Async((CUdeviceptr)p[i], (unsigned)i, size / 4, 0));
    }
    for (int i = 0; i < 64; i += 2) CHECK_OK(cua_free(p[i]));
    size_t free1 = 0, free2 = 0, after = 0, released = 0;
    CALL(free_now(&free1));
    CHECK_OK(cua_arena_trim(a, 0, &released));
    CALL(free_now(&free2));
    for (int i = 1; i < 64; i += 2) CHECK_OK(cua_free(p[i]));
    CHECK_OK(cua_arena_destroy(a, 0));
    CALL(free_now(&after));
    printf("memory: %s: baseline %zu free; trim released %zu, the driver's free rose by %lld; "
           "after destroy %zu free (%+lld)\n", flags & CUA_ARENA_NO_VMM ? "whole segments" : "vmm",
           g_free0, released, (long long)free2 - (long long)free1, after,
           (long long)after - (long long)g_free0);
    CHECK(released > 0);
    CHECK(free2 >= free1 && free2 - free1 == released);
    CHECK(after == g_free0);
    CALL(expect_backend_empty());
}

static void limit_release(unsigned flags)
{
    begin();
    cua_arena *a;
    void *p[5];
    CHECK_OK(make_arena(flags | CUA_ARENA_CHECK_ALWAYS, 256 * MiB, CUA_KEEP_ALL, &a));
    for (int i = 0; i < 4; i++) CHECK_OK(cua_arena_alloc(a, 64 * MiB, 0, &p[i]));
    CHECK_ST(cua_arena_alloc(a, 64 * MiB, 0, &p[4]), CUA_ERR_LIMIT);
    CHECK(cua_last_error()[0] != '\0' && strstr(cua_last_error(), "limit") != NULL);
    for (int i = 0; i < 4; i++) CHECK_OK(cua_free(p[i]));
    CHECK_OK(cua_arena_destroy(a, 0));
    /* Release threshold 0: every page goes back at the free. */
    CHECK_OK(make_arena(flags | CUA_ARENA_CHECK_ALWAYS, 0, 0, &a));
    for (int i = 0; i < 3; i++) {
        size_t size = 30 * MiB + 4096 * (size_t)i;
        CHECK_OK(cua_arena_alloc(a, size, 0, &p[i]));
        CHECK_CU(cu.MemsetD32Async((CUdeviceptr)p[i], 7, size / 4, 0));
    }
    for (int i = 0; i < 3; i++) CHECK_OK(cua_free(p[i]));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    CHECK(s.mapped_bytes == 0);
    CALL(expect_free(g_free0, "with the arena alive and empty"));
    CHECK_OK(cua_arena_destroy(a, 0));
}

/* ---- the warm path --------------------------------------------------------------------------- */

static uint64_t driver_calls(void)
{
    cua_backend_stats s;
    uint64_t n = 0;
    if (cua_backend_get_stats(g_bk, &s) != CUA_OK) return UINT64_MAX;
    for (int k = 0; k < CUA_CALL_COUNT; k++) n += s.calls[k];
    return n;
}

static void fast_path(unsigned flags)
{
    static const size_t sizes[] = {512, 4096, 100000, MiB, 3 * MiB, 20 * MiB, 777, 65536};
    enum { N = sizeof sizes / sizeof sizes[0], ROUNDS = 1000 };
    begin();
    cua_arena *a;
    void *p[N];
    CHECK_OK(make_arena(flags, 0, CUA_KEEP_ALL, &a));
    uint64_t before = 0;
    for (int round = 0; round <= ROUNDS; round++) { /* round 0 warms the arena */
        if (round == 1) before = driver_calls();
        for (int i = 0; i < N; i++) CHECK_OK(cua_arena_alloc(a, sizes[i], 0, &p[i]));
        for (int i = N - 1; i >= 0; i--) CHECK_OK(cua_free(p[i]));
    }
    uint64_t after = driver_calls();
    printf("fast path: %s: %llu driver calls in %d warm rounds\n",
           flags & CUA_ARENA_NO_VMM ? "whole segments" : "vmm",
           (unsigned long long)(after - before), ROUNDS);
    CHECK(before != UINT64_MAX && after == before); /* warm: no driver call at all */
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_destroy(a, 0));
    CALL(expect_free(g_free0, "after destroy"));
}

/* ---- out of memory ------------------------------------------------------------------------- */

static void out_of_memory(unsigned flags)
{
    enum { CAP = 200 };
    begin();
    cua_arena *a;
    void *p[CAP];
    int n = 0;
    cua_status st = CUA_OK;
    size_t start = 0, after = 0;
    CALL(free_now(&start));
    CHECK_OK(make_arena(flags, 0, CUA_KEEP_ALL, &a));
    while (n < CAP && (st = cua_arena_alloc(a, GiB, 0, &p[n])) == CUA_OK) n++;
    printf("memory: %s: out of memory after %d GiB: %s\n",
           flags & CUA_ARENA_NO_VMM ? "whole segments" : "vmm", n,
           st == CUA_OK ? "(never)" : cua_last_error());
    CHECK_ST(st, CUA_ERR_OUT_OF_MEMORY);
    CHECK(n > 0 && strstr(cua_last_error(), "free") != NULL);
    CHECK_ARENA(a);
    for (int i = 0; i < n; i++) CHECK_OK(cua_free(p[i]));
    CHECK_OK(cua_arena_destroy(a, 0));
    CALL(free_now(&after));
    printf("memory: %s: after the out-of-memory case %zu free, %zu at its start, baseline %zu\n",
           flags & CUA_ARENA_NO_VMM ? "whole segments" : "vmm", after, start, g_free0);
    CALL(expect_backend_empty());
    CHECK(after == start);
}

/* ---- poison ------------------------------------------------------------------------------ */

#define POISON_BLOCK (256 * 1024)

static void poison_fill(unsigned flags)
{
    static const uint32_t pattern[3] = {0x11111111u, 0x22222222u, 0x33333333u};
    const size_t words = POISON_BLOCK / 4;
    const uint32_t poison = 0x01010101u * CUA_POISON_BYTE;
    begin();
    cua_arena *a;
    void *p[3];
    CHECK_OK(make_arena(flags | CUA_ARENA_POISON | CUA_ARENA_CHECK_ALWAYS, 0, CUA_KEEP_ALL, &a));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(cua_arena_alloc(a, POISON_BLOCK, (cua_stream)g_a, &p[i]));
        CHECK_CU(cu.MemsetD32Async((CUdeviceptr)p[i], pattern[i], words, g_a));
    }
    /* A fresh arena places them one after the other (so the fill of the
     * middle one would show at its neighbours' edges if it went too far). */
    if ((char *)p[1] != (char *)p[0] + POISON_BLOCK || (char *)p[2] != (char *)p[1] + POISON_BLOCK)
        fprintf(stderr, "blocks not neighbours: %p %p %p\n", p[0], p[1], p[2]);
    CHECK((char *)p[1] == (char *)p[0] + POISON_BLOCK && (char *)p[2] == (char *)p[1] + POISON_BLOCK);
    cua_backend_stats b0, b1;
    CHECK_OK(cua_backend_get_stats(g_bk, &b0));
    CHECK_OK(cua_free(p[1])); /* poisoned in A's order, after A's write */
    CHECK_OK(cua_backend_get_stats(g_bk, &b1));
    CHECK_CU(cu.CtxSynchronize());
    size_t bad_freed = 0, bad_before = 0, bad_after = 0;
    CALL(count_bad(p[1], words, poison, true, &bad_freed));
    CALL(count_bad(p[0], words, pattern[0], true, &bad_before));
    CALL(count_bad(p[2], words, pattern[2], true, &bad_after));
    printf("poison: %s: freed block %p: %zu of %zu words not %#x; live neighbours: %zu and %zu "
           "words changed; fill calls at the free: %llu\n",
           flags & CUA_ARENA_NO_VMM ? "whole segments" : "vmm", p[1], bad_freed, words, poison,
           bad_before, bad_after,
           (unsigned long long)(b1.calls[CUA_CALL_FILL] - b0.calls[CUA_CALL_FILL]));
    CHECK(b1.calls[CUA_CALL_FILL] - b0.calls[CUA_CALL_FILL] == 1);
    CHECK(bad_freed == 0);
    CHECK(bad_before == 0 && bad_after == 0);
    CHECK_OK(cua_free(p[0]));
    CHECK_OK(cua_free(p[2]));
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_destroy(a, 0));
    CALL(expect_free(g_free0, "after destroy"));
}

/* One test per case and mode. */
#define BOTH(name)                                                                         \
    TEST(name##_vmm) { name(0); }                                                          \
    TEST(name##_whole_segments) { name(CUA_ARENA_NO_VMM); }

BOTH(data_integrity)
BOTH(cross_stream)
BOTH(race_detector_works)
BOTH(record_stream)
BOTH(trim_destroy)
BOTH(limit_release)
BOTH(fast_path)
BOTH(out_of_memory)
BOTH(poison_fill)

/* ---- offload and restore of a 4 GiB arena (VMM only) ------------------------------------ */

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

#define OFF_BLOCKS 16
#define OFF_BLOCK (256 * MiB)
#define OFF_CYCLES 3

TEST(offload_restore_4gib_vmm)
{
    begin();
    cua_arena *a;
    /* A first small offload makes the backend's staging area (two pinned
     * buffers and a copy stream), which it keeps; the baseline comes after. */
    void *w;
    CHECK_OK(make_arena(0, 0, CUA_KEEP_ALL, &a));
    CHECK_OK(cua_arena_alloc(a, MiB, 0, &w));
    CHECK_OK(cua_arena_offload(a));
    CHECK_OK(cua_arena_restore(a));
    CHECK_OK(cua_arena_destroy(a, CUA_DESTROY_FORCE));
    size_t base = 0, end_free = 0;
    CALL(free_now(&base));
    unsigned char *pattern = malloc(OFF_BLOCK), *back = malloc(OFF_BLOCK);
    CHECK(pattern && back);
    uint64_t rng = 99;
    for (size_t i = 0; i < OFF_BLOCK; i += 8) {
        uint64_t v = test_rand(&rng);
        memcpy(pattern + i, &v, 8);
    }
    void *p[OFF_BLOCKS];
    CHECK_OK(make_arena(CUA_ARENA_CHECK_ALWAYS, 0, CUA_KEEP_ALL, &a));
    for (int i = 0; i < OFF_BLOCKS; i++) {
        CHECK_OK(cua_arena_alloc(a, OFF_BLOCK, 0, &p[i]));
        memcpy(pattern, &i, sizeof i); /* each block's own first bytes */
        CHECK_CU(cu.MemcpyHtoD((CUdeviceptr)p[i], pattern, OFF_BLOCK));
    }
    /* Three cycles: the first offload writes into fresh host pages (the
     * kernel zeroes each on first touch), later ones into the last image's
     * lazily freed pages. */
    double t_off[OFF_CYCLES], t_res[OFF_CYCLES];
    for (int c = 0; c < OFF_CYCLES; c++) {
        struct timespec t0;
        cua_stats s0, s1, s2;
        size_t off_free = 0;
        CHECK_OK(cua_arena_get_stats(a, &s0));
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_OK(cua_arena_offload(a));
        t_off[c] = seconds_since(&t0);
        CHECK_OK(cua_arena_get_stats(a, &s1));
        CALL(free_now(&off_free));
        CHECK(off_free == base); /* offloaded: every page back with the driver */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_OK(cua_arena_restore(a));
        t_res[c] = seconds_since(&t0);
        CHECK_OK(cua_arena_get_stats(a, &s2));
        /* Where the time went: driver calls per kind, in ms. */
        for (int pass = 0; pass < 2; pass++) {
            const cua_stats *x = pass ? &s1 : &s0, *y = pass ? &s2 : &s1;
            printf("offload: cycle %d %s driver time:", c, pass ? "restore" : "offload");
            for (int k = 0; k < CUA_CALL_COUNT; k++)
                if (y->calls[k] != x->calls[k])
                    printf(" %s %llu x %.1f ms", cua_call_name((cua_call)k),
                           (unsigned long long)(y->calls[k] - x->calls[k]),
                           (double)(y->call_ns[k] - x->call_ns[k]) / 1e6);
            printf("\n");
        }
    }
    size_t bad_blocks = 0;
    for (int i = 0; i < OFF_BLOCKS; i++) {
        CHECK_CU(cu.MemcpyDtoH(back, (CUdeviceptr)p[i], OFF_BLOCK));
        memcpy(pattern, &i, sizeof i);
        if (memcmp(back, pattern, OFF_BLOCK) != 0) bad_blocks++;
    }
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_destroy(a, CUA_DESTROY_FORCE));
    CALL(free_now(&end_free));
    free(pattern);
    free(back);
    double gb = (double)OFF_BLOCKS * OFF_BLOCK / 1e9;
    for (int c = 0; c < OFF_CYCLES; c++)
        printf("offload: %.1f GiB cycle %d: offload %.3f s (%.1f GB/s), restore %.3f s (%.1f GB/s)\n",
               gb * 1e9 / GiB, c, t_off[c], gb / t_off[c], t_res[c], gb / t_res[c]);
    printf("offload: blocks not byte-exact after %d cycles: %zu; driver free: before %zu, after "
           "destroy %zu\n", OFF_CYCLES, bad_blocks, base, end_free);
    CHECK(bad_blocks == 0);
    CHECK(end_free == base);
    CALL(expect_backend_empty());
}
