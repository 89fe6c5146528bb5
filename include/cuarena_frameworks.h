/*
 * cuarena_frameworks.h - the entry points frameworks load by name: PyTorch's
 * CUDAPluggableAllocator (python/cuarena/torch.py) and CuPy's
 * CFunctionAllocator (python/cuarena/cupy.py). A C or C++ engine uses
 * cuarena.h instead.
 */
#ifndef CUARENA_FRAMEWORKS_H
#define CUARENA_FRAMEWORKS_H

#include "cuarena.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* PyTorch                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * The allocation function of torch.cuda.memory.CUDAPluggableAllocator
 * (python/cuarena/torch.py installs it): `size` bytes on `device` for
 * `stream` (a cudaStream_t), from the calling thread's current arena when it
 * is on that device, else from the device's default arena. Returns the
 * pointer, or NULL (torch raises its out-of-memory error; cua_last_error()
 * on the same thread says why). A zero size gives a unique pointer.
 */
CUA_API void *cua_torch_alloc(size_t size, int device, void *stream);

/**
 * The free function of torch.cuda.memory.CUDAPluggableAllocator: torch 2.11
 * passes (ptr, size, device, stream); the block's own arena and stream are
 * used. A bad pointer is ignored (cua_last_error() says so).
 */
CUA_API void cua_torch_free(void *ptr, size_t size, int device, void *stream);

/* ------------------------------------------------------------------------ */
/* CuPy                                                                      */
/* ------------------------------------------------------------------------ */

/*
 * CuPy's cupy.cuda.memory.CFunctionAllocator(param, malloc_func, free_func,
 * owner) calls `void *malloc(void *param, size_t size, int device_id)` and
 * `void free(void *param, void *ptr, int device_id)` with the param it was
 * given; python/cuarena/cupy.py (cuarena.cupy.install()) passes these two.
 *
 * Streams: CuPy's hook passes no stream, and the current CuPy stream is not
 * visible from C, so every block is allocated, and freed, on stream 0: the
 * legacy default stream. A freed block is handed out again at once to the
 * next allocation, as CuPy's own pool does on its current stream. That is
 * safe while CuPy's work runs on one stream, or on the legacy default stream
 * and one blocking stream (the two are ordered with each other; the
 * per-thread stream of CUPY_CUDA_PER_THREAD_DEFAULT_STREAM is such a one).
 * Any other two streams are not ordered: an array freed while a kernel on one
 * still reads it may be handed to the other. There, synchronise before dropping such arrays, or
 * install with stream_aware=True (cuarena.cupy: a Python allocator that
 * allocates on CuPy's current stream).
 */

/**
 * The malloc function of CuPy's CFunctionAllocator: `size` bytes on stream 0
 * for device `device`, from `param` when it is an arena (it must be on
 * `device`), else (param NULL) from the calling thread's current arena when
 * it is on `device`, else from the device's default arena. Returns the
 * pointer, or NULL, with cua_last_error() on the same thread saying why (the
 * arena's limit, no memory, a destroyed arena, a device that is not the
 * arena's). CuPy itself does not check for NULL (it would hand out address
 * 0): cuarena.cupy's allocator raises CuPy's OutOfMemoryError on it; other
 * callers must check too. A zero size (CuPy never asks for one) gives a
 * unique pointer.
 */
CUA_API void *cua_cupy_malloc(void *param, size_t size, int device);

/**
 * The free function of CuPy's CFunctionAllocator: frees `ptr` (cua_free) in
 * the order of stream 0, into the arena it came from; `param` and `device`
 * are not needed (the block remembers both). A bad pointer is ignored
 * (cua_last_error() says so).
 */
CUA_API void cua_cupy_free(void *param, void *ptr, int device);

#ifdef __cplusplus
}
#endif

#endif /* CUARENA_FRAMEWORKS_H */
