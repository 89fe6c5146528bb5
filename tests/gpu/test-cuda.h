/*
 * test-cuda.h - what test-cuda.c's cases share with test-cuda-setup.c, which
 * reaches the driver and sets up once what every case uses: the backend, the
 * kernel, two streams and the driver's free bytes with no arena alive.
 */
#ifndef CUA_TESTS_GPU_TEST_CUDA_H
#define CUA_TESTS_GPU_TEST_CUDA_H

#include "cuarena.h"
#include "cuarena_backend.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include "cudrv.h"
#pragma GCC diagnostic pop

#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* The driver's entry points the test uses, loaded at run time (cudrv.h). */
typedef struct cuda_driver {
    CUresult (*GetErrorName)(CUresult, const char **);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceGetAttribute)(int *, CUdevice_attribute, CUdevice);
    CUresult (*CtxSynchronize)(void);
    CUresult (*MemGetInfo)(size_t *, size_t *);
    CUresult (*MemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
    CUresult (*MemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*StreamCreate)(CUstream *, unsigned);
    CUresult (*StreamDestroy)(CUstream);
    CUresult (*StreamQuery)(CUstream);
    CUresult (*StreamSynchronize)(CUstream);
    CUresult (*ModuleLoadData)(CUmodule *, const void *);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*ModuleUnload)(CUmodule);
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, CUstream, void **, void **);
} cuda_driver;
extern cuda_driver cu;

extern cua_backend *g_bk;
extern CUstream g_a, g_b;     /* two non-blocking streams */
extern uint64_t g_cycles;     /* clocks of a ~300 ms spin */
extern size_t g_free0;        /* the driver's free bytes with no arena alive */

/* A driver status by name. */
const char *cu_name(CUresult r);
/* Once, at the first case: the backend (exit 77 without a device), the driver,
 * the kernel, the streams, a warm-up and the baseline; the teardown at exit. */
void setup_once(void);
/* The kernel on `s`: spin for `cycles` clocks, then write `value` into `words`
 * words at p. */
CUresult launch(void *p, size_t words, uint64_t cycles, uint32_t value, CUstream s);
/* An arena on the CUDA backend, destroyed after a failed case if still alive. */
cua_status make_arena(unsigned flags, size_t limit, size_t release, cua_arena **out);
/* After a failed case: wait for the GPU and destroy what the case left alive;
 * false when something could not be released. */
bool release_leftovers(void);

#endif /* CUA_TESTS_GPU_TEST_CUDA_H */
