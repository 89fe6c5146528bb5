/*
 * test-trt.cpp - include/cuarena_trt.hpp on the host backend, driven as
 * TensorRT drives a GPU allocator: through a pointer to nvinfer1's interface,
 * with the alignments and sizes TensorRT passes (0 and powers of two up to
 * 256) and larger ones, on several streams, freed on the stream of the
 * allocation and on others, from several threads; the refusals TensorRT
 * expects (size 0, a bad alignment, the arena's limit: nullptr); the frees it
 * may do (nullptr: true). Then the arena is destroyed without force and the
 * backend must hold nothing.
 *
 * Built against tests/trt-mock/v10 (TensorRT 10/11's IGpuAsyncAllocator) and
 * tests/trt-mock/v8 (TensorRT 8.6's IGpuAllocator): mock headers that follow
 * TensorRT's, not TensorRT itself; and against a real TensorRT's headers where
 * meson's tensorrt_include finds NvInferRuntime.h (test-trt-real).
 */
#include "cuarena_trt.hpp"
#include "cuarena_backend.h"
#include "test.hpp"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

static const std::uint64_t MiB = std::uint64_t(1) << 20;

/* What TensorRT holds: a pointer to its interface. */
using trt_allocator = nvinfer1::IGpuAllocator;

#if NV_TENSORRT_MAJOR >= 10
static void *trt_alloc(trt_allocator *a, std::uint64_t size, std::uint64_t align, cudaStream_t s)
{
    return a->allocateAsync(size, align, 0, s);
}
static bool trt_free(trt_allocator *a, void *p, cudaStream_t s) { return a->deallocateAsync(p, s); }
#else
static void *trt_alloc(trt_allocator *a, std::uint64_t size, std::uint64_t align, cudaStream_t)
{
    return a->allocate(size, align, 0);
}
static bool trt_free(trt_allocator *a, void *p, cudaStream_t) { return a->deallocate(p); }
#endif

static cudaStream_t stream(std::uintptr_t n) { return reinterpret_cast<cudaStream_t>(n); }

/* A host backend of 2 GiB (into *bk) and an arena on it, limited to `limit`
 * bytes (0: none), that checks itself after every call; NULL when either
 * could not be made. */
static cua_arena *make_arena(cua_backend **bk, std::size_t limit, int manual_events)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 2048 * MiB;
    hc.manual_events = manual_events;
    if (cua_backend_host_create(&hc, bk) != CUA_OK) return nullptr;
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "trt";
    cfg.backend = *bk;
    cfg.limit = limit;
    cfg.flags = CUA_ARENA_CHECK_ALWAYS;
    cua_arena *arena = nullptr;
    cua_arena_create(&cfg, &arena);
    return arena;
}

/* make_arena's arena, and the TensorRT allocator on it (alloc). */
struct fixture {
    cua_backend *bk = nullptr;
    cua_arena *arena;
    cuarena::trt::gpu_allocator alloc;
    explicit fixture(std::size_t limit = 0, int manual_events = 0)
        : arena(make_arena(&bk, limit, manual_events)), alloc(arena)
    {
    }
    ~fixture()
    {
        if (arena) cua_arena_destroy(arena, CUA_DESTROY_FORCE);
        if (bk) cua_backend_destroy(bk);
    }
    fixture(const fixture &) = delete;
    fixture &operator=(const fixture &) = delete;
    cua_stats stats() const
    {
        cua_stats s;
        std::memset(&s, 0, sizeof s);
        cua_arena_get_stats(arena, &s);
        return s;
    }
    /* Every stream done, no live block, the destroy refuses nothing, and the
     * backend holds nothing: what TensorRT's teardown must leave. */
    bool teardown()
    {
        for (std::uintptr_t s = 0; s < 8; s++) cua_host_stream_complete(bk, s * 0x10);
        if (stats().live_blocks != 0) return false;
        if (cua_arena_destroy(arena, 0) != CUA_OK) return false;
        arena = nullptr;
        cua_backend_stats b;
        if (cua_backend_get_stats(bk, &b) != CUA_OK) return false;
        return b.handles == 0 && b.mappings == 0 && b.reservations == 0 && b.handle_bytes == 0;
    }
};

static bool aligned(const void *p, std::uint64_t a)
{
    return a == 0 || reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

static void interface_and_alignments()
{
    fixture f;
    CHECK(f.arena);
    trt_allocator *trt = &f.alloc;
#if NV_TENSORRT_MAJOR >= 10
    nvinfer1::InterfaceInfo info = trt->getInterfaceInfo();
    CHECK(std::strcmp(info.kind, "IGpuAllocator") == 0 && info.major == 1);
#endif
    const std::uint64_t aligns[] = {0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096,
                                    65536, 2 * MiB, 64 * MiB};
    const std::uint64_t sizes[] = {1, 100, 512, 513, 4096, 1 * MiB + 1, 9 * MiB};
    std::vector<void *> ptrs;
    std::uint64_t want = 0;
    for (std::uint64_t a : aligns)
        for (std::uint64_t s : sizes) {
            void *p = trt_alloc(trt, s, a, stream(0x10 * (ptrs.size() % 3)));
            CHECK(p != nullptr);
            CHECK(aligned(p, a) && aligned(p, CUA_ALIGNMENT));
            std::memset(p, int(ptrs.size() & 0xff), s); /* host backend: host memory */
            ptrs.push_back(p);
            want += s;
        }
    /* the padding of large alignments is live too: at least what was asked */
    CHECK(f.stats().live_bytes >= want && f.stats().live_blocks == ptrs.size());
    for (std::size_t i = 0; i < ptrs.size(); i++)
        CHECK(static_cast<unsigned char *>(ptrs[i])[0] == (i & 0xff));
    for (std::size_t i = 0; i < ptrs.size(); i++)
        CHECK(trt_free(trt, ptrs[i], stream(0x10 * (i % 3))));
    CHECK(f.stats().live_bytes == 0);
    CHECK(f.teardown());
}

static void refusals_are_nullptr()
{
    fixture f(64 * MiB);
    CHECK(f.arena);
    trt_allocator *trt = &f.alloc;
    CHECK(trt_alloc(trt, 0, 0, nullptr) == nullptr);            /* size 0 */
    CHECK(trt_alloc(trt, 4096, 3, nullptr) == nullptr);         /* not a power of two */
    CHECK(trt_alloc(trt, 4096, 768, nullptr) == nullptr);
    CHECK(trt_alloc(trt, 4096, std::uint64_t(1) << 31, nullptr) == nullptr); /* past 1 GiB */
    CHECK(trt_alloc(trt, ~std::uint64_t(0), 0, nullptr) == nullptr);        /* too large */
    CHECK(trt_alloc(trt, ~std::uint64_t(0) - 100, 4096, nullptr) == nullptr); /* padding overflows */
    CHECK(trt_alloc(trt, 128 * MiB, 256, nullptr) == nullptr);  /* the arena's limit */
    CHECK(std::strstr(cua_last_error(), "limit") != nullptr);
    CHECK(f.stats().live_blocks == 0);
    /* frees: nullptr is fine, what was never handed out is not */
    CHECK(trt_free(trt, nullptr, nullptr));
    /* p is 1 MiB-aligned, so p + 512 is 512-aligned and p + 4096 4 KiB-aligned:
     * neither is what an allocation of this block returned. (The check is
     * stateless: a pointer that some alignment would have given, such as
     * p + 4096 in a block that starts 4 KiB before an 8 KiB boundary, passes;
     * TensorRT frees only what it got.) */
    void *p = trt_alloc(trt, 1 * MiB, 1 * MiB, nullptr);
    CHECK(p && aligned(p, 1 * MiB));
    CHECK(!trt_free(trt, static_cast<char *>(p) + 512, nullptr));
    CHECK(!trt_free(trt, static_cast<char *>(p) + 4096, nullptr));
    int on_stack = 0;
    CHECK(!trt_free(trt, &on_stack, nullptr));
    CHECK(f.stats().live_blocks == 1);
    CHECK(trt_free(trt, p, nullptr));
    CHECK(!trt_free(trt, p, nullptr)); /* twice */
    /* an over-aligned block frees by the address TensorRT got */
    void *q = trt_alloc(trt, 1000, 1 * MiB, nullptr);
    CHECK(q && aligned(q, 1 * MiB));
    CHECK(trt_free(trt, q, nullptr));
    CHECK(f.stats().live_blocks == 0);
    CHECK(f.teardown());
}

#if NV_TENSORRT_MAJOR >= 10
/* Freed on another stream than it was allocated on: not handed out again on
 * its own stream until that stream's work before the free is done. */
static void free_on_another_stream_waits_for_it()
{
    fixture f(0, /*manual_events*/ 1);
    CHECK(f.arena);
    trt_allocator *trt = &f.alloc;
    void *p = trt->allocateAsync(4 * MiB, 256, 0, stream(0x10));
    CHECK(p);
    CHECK(trt->deallocateAsync(p, stream(0x20)));
    CHECK(f.stats().pending_bytes >= 4 * MiB);
    void *q = trt->allocateAsync(4 * MiB, 256, 0, stream(0x10));
    CHECK(q && q != p);
    /* freed on its own stream: handed out again at once (p still waits) */
    CHECK(trt->deallocateAsync(q, stream(0x10)));
    void *r = trt->allocateAsync(4 * MiB, 0, 0, stream(0x10));
    CHECK(r == q);
    CHECK(cua_host_stream_complete(f.bk, 0x20) == CUA_OK);
    CHECK(trt->deallocateAsync(r, stream(0x10)));
    CHECK(f.teardown());
}

/* The deprecated synchronous pair still works (stream 0), as IGpuAsyncAllocator
 * defines it. */
static void deprecated_sync_calls()
{
    fixture f;
    CHECK(f.arena);
    trt_allocator *trt = &f.alloc;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    void *p = trt->allocate(3 * MiB, 4096, 0);
    CHECK(p && aligned(p, 4096));
    CHECK(trt->reallocate(p, 4096, 6 * MiB) == nullptr); /* not supported: TensorRT's default */
    CHECK(trt->deallocate(p));
#pragma GCC diagnostic pop
    CHECK(f.teardown());
}
#else
static void free_on_another_stream_waits_for_it() {}
static void deprecated_sync_calls()
{
    fixture f;
    CHECK(f.arena);
    trt_allocator *trt = &f.alloc;
    void *p = trt->allocate(3 * MiB, 4096, 0);
    CHECK(p && aligned(p, 4096));
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    trt->free(p);
#pragma GCC diagnostic pop
    CHECK(f.stats().live_blocks == 0);
    CHECK(f.teardown());
}
#endif

/* No arena: cua_malloc, the thread's current arena. */
static void current_arena_when_none_given()
{
    fixture f;
    CHECK(f.arena);
    cuarena::trt::gpu_allocator alloc;
    CHECK(alloc.arena() == nullptr);
    CHECK(cua_arena_push(f.arena) == CUA_OK);
    void *p = trt_alloc(&alloc, 2 * MiB, 256, nullptr);
    CHECK(cua_arena_pop() == CUA_OK);
    CHECK(p);
    cua_arena *owner = nullptr;
    CHECK(cua_ptr_info(p, &owner, nullptr, nullptr) == CUA_OK && owner == f.arena);
    CHECK(trt_free(&alloc, p, nullptr));
    CHECK(f.teardown());
}

/* What an engine's lifetime looks like to its allocator: a workspace and
 * weights that stay, activations that come and go on the enqueue streams of
 * several execution contexts (threads), with the alignments TensorRT uses. */
static void engine_like_workload_from_threads()
{
    fixture f;
    CHECK(f.arena);
    trt_allocator *trt = &f.alloc;
    std::vector<void *> weights;
    for (int i = 0; i < 16; i++) {
        void *w = trt_alloc(trt, (i + 1) * MiB, 256, nullptr);
        CHECK(w);
        weights.push_back(w);
    }
    std::atomic<int> bad(0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++)
        threads.emplace_back([&, t] {
            std::uint64_t rng = 0x9e3779b97f4a7c15ull * std::uint64_t(t + 1);
            const std::uint64_t aligns[] = {0, 128, 256, 256, 4096, 65536};
            cudaStream_t s = stream(0x10 * std::uintptr_t(t + 1)); /* its context's stream */
            struct live { unsigned char *p; std::uint64_t n; unsigned char tag; };
            std::vector<live> mine;
            for (int op = 0; op < 3000; op++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                if (!mine.empty() && (rng % 3 == 0 || mine.size() > 40)) {
                    std::size_t i = std::size_t(rng >> 8) % mine.size();
                    live b = mine[i];
                    if (b.p[0] != b.tag || b.p[b.n - 1] != b.tag) bad++;
                    if (!trt_free(trt, b.p, s)) bad++;
                    mine[i] = mine.back();
                    mine.pop_back();
                } else {
                    std::uint64_t n = 1 + (rng >> 16) % (rng % 8 == 0 ? 16 * MiB : 64 * 1024);
                    std::uint64_t a = aligns[(rng >> 40) % 6];
                    auto *p = static_cast<unsigned char *>(trt_alloc(trt, n, a, s));
                    if (!p || !aligned(p, a)) {
                        bad++;
                        continue;
                    }
                    unsigned char tag = static_cast<unsigned char>(rng >> 24);
                    p[0] = p[n - 1] = tag;
                    mine.push_back({p, n, tag});
                }
            }
            for (live &b : mine)
                if (!trt_free(trt, b.p, s)) bad++;
        });
    for (std::thread &th : threads) th.join();
    CHECK(bad.load() == 0);
    CHECK(cua_arena_check(f.arena) == CUA_OK);
    CHECK(f.stats().live_blocks == weights.size());
    for (void *w : weights) CHECK(trt_free(trt, w, nullptr));
    cua_stats s = f.stats();
    CHECK(s.live_bytes == 0 && s.alloc_count == s.free_count && s.alloc_count > 1000);
    std::printf("trt: %llu allocations from 4 threads, peak live %.1f MiB, peak mapped %.1f MiB\n",
                (unsigned long long)s.alloc_count, double(s.peak_live_bytes) / double(MiB),
                double(s.peak_mapped_bytes) / double(MiB));
    CHECK(f.teardown());
}

int main()
{
    static const test_case cases[] = {
        {"interface_and_alignments", interface_and_alignments},
        {"refusals_are_nullptr", refusals_are_nullptr},
        {"free_on_another_stream_waits_for_it", free_on_another_stream_waits_for_it},
        {"deprecated_sync_calls", deprecated_sync_calls},
        {"current_arena_when_none_given", current_arena_when_none_given},
        {"engine_like_workload_from_threads", engine_like_workload_from_threads},
    };
    std::printf("trt: TensorRT headers %d.%d (%s)\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR,
#ifdef CUA_TRT_MOCK
                "mock: tests/trt-mock"
#else
                "real"
#endif
    );
    return run_cases(cases);
}
