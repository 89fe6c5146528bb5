/*
 * Mock of TensorRT 10.x / 11.x NvInferRuntime.h (with what it takes from
 * NvInferRuntimeBase.h): only the GPU allocator interfaces, with TensorRT's
 * names, namespaces and virtual signatures (tests/trt-mock/README.md).
 */
#ifndef NV_INFER_RUNTIME_H
#define NV_INFER_RUNTIME_H

#include "NvInferVersion.h"

#include <cstddef>
#include <cstdint>

/* TensorRT includes cuda_runtime_api.h; this is its cudaStream_t. */
typedef struct CUstream_st *cudaStream_t;

#if __cplusplus >= 201402L
#define TRT_DEPRECATED [[deprecated]]
#else
#define TRT_DEPRECATED __attribute__((deprecated))
#endif

namespace nvinfer1 {

using InterfaceKind = char const *;

/* Version information associated with a TensorRT interface. */
class InterfaceInfo {
public:
    InterfaceKind kind;
    int32_t major;
    int32_t minor;
};

enum class APILanguage : int32_t { kCPP = 0, kPYTHON = 1 };

class IVersionedInterface {
public:
    virtual APILanguage getAPILanguage() const noexcept { return APILanguage::kCPP; }
    virtual InterfaceInfo getInterfaceInfo() const noexcept = 0;
    virtual ~IVersionedInterface() noexcept = default;

protected:
    IVersionedInterface() = default;
    IVersionedInterface(IVersionedInterface const &) = default;
    IVersionedInterface(IVersionedInterface &&) = default;
    IVersionedInterface &operator=(IVersionedInterface const &) & = default;
    IVersionedInterface &operator=(IVersionedInterface &&) & = default;
};

enum class AllocatorFlag : int32_t {
    kRESIZABLE = 0, /* TensorRT may call reallocate() on this allocation */
};

using AllocatorFlags = uint32_t;

namespace v_1_0 {

class IGpuAllocator : public IVersionedInterface {
public:
    TRT_DEPRECATED virtual void *allocate(uint64_t const size, uint64_t const alignment,
                                          AllocatorFlags const flags) noexcept = 0;

    ~IGpuAllocator() override = default;
    IGpuAllocator() = default;

    virtual void *reallocate(void *const /*baseAddr*/, uint64_t /*alignment*/,
                             uint64_t /*newSize*/) noexcept
    {
        return nullptr;
    }

    TRT_DEPRECATED virtual bool deallocate(void *const memory) noexcept = 0;

    virtual void *allocateAsync(uint64_t const size, uint64_t const alignment,
                                AllocatorFlags const flags, cudaStream_t /*stream*/) noexcept
    {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        return allocate(size, alignment, flags);
#pragma GCC diagnostic pop
    }

    virtual bool deallocateAsync(void *const memory, cudaStream_t /*stream*/) noexcept
    {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        return deallocate(memory);
#pragma GCC diagnostic pop
    }

    InterfaceInfo getInterfaceInfo() const noexcept override { return {"IGpuAllocator", 1, 0}; }

protected:
    IGpuAllocator(IGpuAllocator const &) = default;
    IGpuAllocator(IGpuAllocator &&) = default;
    IGpuAllocator &operator=(IGpuAllocator const &) & = default;
    IGpuAllocator &operator=(IGpuAllocator &&) & = default;
};

class IGpuAsyncAllocator : public IGpuAllocator {
public:
    IGpuAsyncAllocator() = default;
    ~IGpuAsyncAllocator() override = default;

    void *allocateAsync(uint64_t const size, uint64_t const alignment, AllocatorFlags const flags,
                        cudaStream_t /*stream*/) noexcept override = 0;

    bool deallocateAsync(void *const memory, cudaStream_t /*stream*/) noexcept override = 0;

    TRT_DEPRECATED void *allocate(uint64_t const size, uint64_t const alignment,
                                  AllocatorFlags const flags) noexcept override
    {
        return allocateAsync(size, alignment, flags, nullptr);
    }

    TRT_DEPRECATED bool deallocate(void *const memory) noexcept override
    {
        return deallocateAsync(memory, nullptr);
    }

    InterfaceInfo getInterfaceInfo() const noexcept override { return {"IGpuAllocator", 1, 0}; }
};

} // namespace v_1_0

using IGpuAllocator = v_1_0::IGpuAllocator;
using IGpuAsyncAllocator = v_1_0::IGpuAsyncAllocator;

} // namespace nvinfer1

#endif /* NV_INFER_RUNTIME_H */
