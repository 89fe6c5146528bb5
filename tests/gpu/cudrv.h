/*
 * cudrv.h - how the GPU test programs reach the driver: as the library does,
 * libcuda.so.1 opened at run time and each entry point looked up with
 * cuGetProcAddress_v2 at the 12.0 ABI (cuCtxSynchronize is then the one
 * without a context argument, cuMemGetInfo, cuMemcpy* and cuStreamDestroy
 * their _v2). Each program lists the entry points it needs:
 *
 *     static const cudrv_sym syms[] = {CUDRV(cu, GetErrorName), CUDRV(cu, LaunchKernel)};
 *     const char *missing = cudrv_load(syms, sizeof syms / sizeof syms[0]);
 */
#ifndef CUA_TESTS_CUDRV_H
#define CUA_TESTS_CUDRV_H

#include <cuda.h>
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cudrv_sym {
    const char *name;
    void **fn;
} cudrv_sym;

/* An entry of the list: the table's member f is cu<f>. */
#define CUDRV(table, f) {"cu" #f, (void **)&(table).f}

/* NULL when every entry point was found, else the name of the first missing. */
static inline const char *cudrv_load(const cudrv_sym *syms, size_t n)
{
    typedef CUresult (*getproc_fn)(const char *, void **, int, cuuint64_t,
                                   CUdriverProcAddressQueryResult *);
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    getproc_fn gp = lib ? (getproc_fn)(uintptr_t)dlsym(lib, "cuGetProcAddress_v2") : NULL;
    if (!gp) return "libcuda.so.1 or its cuGetProcAddress_v2";
    for (size_t i = 0; i < n; i++) {
        CUdriverProcAddressQueryResult found;
        if (gp(syms[i].name, syms[i].fn, 12000, CU_GET_PROC_ADDRESS_DEFAULT, &found) !=
                CUDA_SUCCESS || !*syms[i].fn)
            return syms[i].name;
    }
    return NULL;
}

/* The name of a CUresult, through the program's cuGetErrorName (may be NULL). */
static inline const char *cudrv_error(CUresult (*get_name)(CUresult, const char **), CUresult r)
{
    const char *s = NULL;
    if (!get_name || get_name(r, &s) != CUDA_SUCCESS || !s) return "unknown CUresult";
    return s;
}

#endif /* CUA_TESTS_CUDRV_H */
