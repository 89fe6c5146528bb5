/*
 * cuarena_trt.hpp - an optional, header-only TensorRT GPU allocator over a
 * cuarena arena (C++11 or later; no exceptions, no RTTI needed).
 *
 *   #include <NvInferRuntime.h>       // or NvInfer.h: TensorRT's own headers
 *   #include <cuarena_trt.hpp>
 *
 *   cuarena::arena engine_mem = cuarena::arena::create("trt-engine", "limit:6G", &st);
 *   cuarena::trt::gpu_allocator alloc(engine_mem.get());
 *   runtime->setGpuAllocator(&alloc);   // or builder / IExecutionContext
 *   ...                                 // destroy TensorRT's objects, then
 *   engine_mem.destroy();               // every byte the engine had goes back
 *
 * TensorRT >= 10: cuarena::trt::gpu_allocator implements
 * nvinfer1::IGpuAsyncAllocator: allocateAsync(size, alignment, flags, stream)
 * takes `size` bytes from the arena on `stream` (nullptr: the default stream
 * 0), deallocateAsync(memory, stream) frees the block in the order of
 * `stream` (cua_record_stream when TensorRT frees on another stream than it
 * allocated on, so the block is handed out again only after that stream's
 * work queued before the free), and the deprecated allocate() / deallocate()
 * of IGpuAllocator are IGpuAsyncAllocator's (stream 0).
 * TensorRT 8.x: it implements nvinfer1::IGpuAllocator: allocate(), free()
 * and deallocate(), on stream 0.
 * reallocate() is not implemented: it returns nullptr, which TensorRT reads
 * as "not supported" (its documented default).
 *
 * Alignment: every block starts at a multiple of CUA_ALIGNMENT (512), and
 * TensorRT asks for 0 or a power of two not above cudaMalloc's 256, so those
 * are met as they are. A larger power of two is honoured by taking
 * alignment - 512 bytes more and returning the first aligned address in the
 * block; its free finds the block by that interior address (cua_ptr_info).
 * An alignment that is not a power of two (or past 1 GiB), a size of 0, a size that
 * overflows with the padding, and any allocation the arena refuses (its
 * limit, no memory) return nullptr, as TensorRT asks; cua_last_error() on
 * the calling thread says why. Every method is thread-safe (cuarena is).
 *
 * TESTED AGAINST A MOCK, NOT AGAINST TENSORRT: tests/trt-mock/ holds headers
 * that declare nvinfer1::IVersionedInterface, IGpuAllocator and
 * IGpuAsyncAllocator with the virtual signatures of TensorRT's
 * NvInferRuntime.h / NvInferRuntimeBase.h (10.x and 11.x; IGpuAllocator as in
 * 8.6), and tests/test-trt.cpp drives the adapter through them as TensorRT
 * would, on the host backend. Where TensorRT's NvInfer.h is found (meson
 * option tensorrt_include) the same test is built against it (test-trt-real);
 * it passed against the headers of TensorRT's open-source repository at 8.6,
 * 10.0, 10.16 and 11.1, without TensorRT's library: no TensorRT engine has
 * used this allocator yet (docs/integrations.md).
 */
#ifndef CUARENA_TRT_HPP
#define CUARENA_TRT_HPP

#include "cuarena.h"

#include <NvInferRuntime.h>

#include <cstddef>
#include <cstdint>

#if !defined(NV_TENSORRT_MAJOR)
#error "cuarena_trt.hpp: NV_TENSORRT_MAJOR is not defined (include TensorRT's NvInferRuntime.h)"
#endif

namespace cuarena {
namespace trt {

/** The largest alignment the allocator honours (it pads by alignment - 512 bytes). */
constexpr std::uint64_t max_alignment = std::uint64_t(1) << 30;

namespace detail {

inline bool is_pow2(std::uint64_t x) noexcept { return x && !(x & (x - 1)); }

/** Take `size` bytes aligned to `alignment` from `a` (NULL: cua_malloc) on `s`. */
inline void *alloc(cua_arena *a, std::uint64_t size, std::uint64_t alignment,
                   cua_stream s) noexcept
{
    if (size == 0) return nullptr; /* TensorRT: "a request of size 0 ... nullptr" */
    if (alignment != 0 && (!is_pow2(alignment) || alignment > max_alignment)) return nullptr;
    std::uint64_t pad = alignment > CUA_ALIGNMENT ? alignment - CUA_ALIGNMENT : 0;
    if (size > static_cast<std::uint64_t>(SIZE_MAX) - pad) return nullptr;
    void *p = nullptr;
    std::size_t n = static_cast<std::size_t>(size + pad);
    cua_status st = a ? cua_arena_alloc(a, n, s, &p) : cua_malloc(n, s, &p);
    if (st != CUA_OK) return nullptr;
    if (pad == 0) return p;
    std::uintptr_t u = reinterpret_cast<std::uintptr_t>(p);
    u = (u + static_cast<std::uintptr_t>(alignment) - 1) & ~static_cast<std::uintptr_t>(alignment - 1);
    return reinterpret_cast<void *>(u);
}

/** Free what alloc() returned, in the order of `s`. False: not a block of ours. */
inline bool free(void *memory, cua_stream s) noexcept
{
    if (!memory) return true; /* TensorRT may pass back a nullptr it got */
    void *base = nullptr;
    /* The block of an over-aligned allocation starts before `memory`: less
     * than its alignment before it, and `memory` is aligned to more than 512. */
    if (cua_ptr_info(memory, nullptr, &base, nullptr) != CUA_OK) return false;
    if (base != memory) {
        std::uintptr_t m = reinterpret_cast<std::uintptr_t>(memory);
        std::uintptr_t lowbit = m & (~m + 1);
        if (lowbit <= CUA_ALIGNMENT || m - reinterpret_cast<std::uintptr_t>(base) >= lowbit)
            return false; /* an interior pointer alloc() never returned */
    }
    /* Freed on another stream than allocated: the block must wait for it too
     * (a no-op on the block's own stream). */
    if (cua_record_stream(base, s) != CUA_OK) return false;
    return cua_free(base) == CUA_OK;
}

inline cua_stream stream_of(const void *stream) noexcept
{
    return reinterpret_cast<cua_stream>(stream);
}

} // namespace detail

#if NV_TENSORRT_MAJOR >= 10

/**
 * A TensorRT allocator (nvinfer1::IGpuAsyncAllocator) that takes device memory
 * from a cuarena arena. It does not own the arena: the arena must outlive the
 * allocator's blocks, and the allocator every TensorRT object given it (as
 * TensorRT asks). `arena` NULL: cua_malloc(), the calling thread's current
 * arena at each allocation, else device 0's default arena.
 */
class gpu_allocator : public nvinfer1::IGpuAsyncAllocator {
public:
    explicit gpu_allocator(cua_arena *arena = nullptr) noexcept : arena_(arena) {}
    ~gpu_allocator() override = default;

    void *allocateAsync(std::uint64_t const size, std::uint64_t const alignment,
                        nvinfer1::AllocatorFlags const flags, cudaStream_t stream) noexcept override
    {
        (void)flags; /* kRESIZABLE only allows reallocate(), which answers nullptr */
        return detail::alloc(arena_, size, alignment, detail::stream_of(stream));
    }

    bool deallocateAsync(void *const memory, cudaStream_t stream) noexcept override
    {
        return detail::free(memory, detail::stream_of(stream));
    }

    /** The arena (NULL: cua_malloc's). */
    cua_arena *arena() const noexcept { return arena_; }

private:
    cua_arena *arena_;
};

#else /* TensorRT 8.x */

/** As above, for TensorRT 8's nvinfer1::IGpuAllocator (no streams: stream 0). */
class gpu_allocator : public nvinfer1::IGpuAllocator {
public:
    explicit gpu_allocator(cua_arena *arena = nullptr) noexcept : arena_(arena) {}
    ~gpu_allocator() override = default;

    void *allocate(std::uint64_t const size, std::uint64_t const alignment,
                   nvinfer1::AllocatorFlags const flags) noexcept override
    {
        (void)flags;
        return detail::alloc(arena_, size, alignment, 0);
    }

    bool deallocate(void *const memory) noexcept override { return detail::free(memory, 0); }

    /* Deprecated in TensorRT 8 but still pure virtual there. */
    void free(void *const memory) noexcept override { (void)detail::free(memory, 0); }

    cua_arena *arena() const noexcept { return arena_; }

private:
    cua_arena *arena_;
};

#endif

} // namespace trt
} // namespace cuarena

#endif /* CUARENA_TRT_HPP */
