/*
 * Mock of TensorRT 8.6 NvInferRuntime.h (with what it takes from
 * NvInferRuntimeBase.h): only the GPU allocator interface, with TensorRT's
 * names and virtual signatures (tests/trt-mock/README.md).
 */
#ifndef NV_INFER_RUNTIME_H
#define NV_INFER_RUNTIME_H

#include "NvInferVersion.h"

#include <cstddef>
#include <cstdint>

typedef struct CUstream_st *cudaStream_t;

#if __cplusplus >= 201402L
#define TRT_DEPRECATED [[deprecated]]
#else
#define TRT_DEPRECATED __attribute__((deprecated))
#endif

namespace nvinfer1 {

enum class AllocatorFlag : int32_t {
    kRESIZABLE = 0,
};

using AllocatorFlags = uint32_t;

class IGpuAllocator {
public:
    virtual void *allocate(uint64_t const size, uint64_t const alignment,
                           AllocatorFlags const flags) noexcept = 0;

    TRT_DEPRECATED virtual void free(void *const memory) noexcept = 0;

    virtual ~IGpuAllocator() = default;
    IGpuAllocator() = default;

    virtual void *reallocate(void * /*baseAddr*/, uint64_t /*alignment*/,
                             uint64_t /*newSize*/) noexcept
    {
        return nullptr;
    }

    virtual bool deallocate(void *const memory) noexcept
    {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        this->free(memory);
#pragma GCC diagnostic pop
        return true;
    }

protected:
    IGpuAllocator(IGpuAllocator const &) = default;
    IGpuAllocator(IGpuAllocator &&) = default;
    IGpuAllocator &operator=(IGpuAllocator const &) & = default;
    IGpuAllocator &operator=(IGpuAllocator &&) & = default;
};

} // namespace nvinfer1

#endif /* NV_INFER_RUNTIME_H */
