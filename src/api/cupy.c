/*
 * cupy.c - the entry points CuPy's cupy.cuda.memory.CFunctionAllocator calls
 * (cuarena.h: cua_cupy_malloc, cua_cupy_free; python/cuarena/cupy.py installs
 * them). CuPy passes back the `param` it was given: an arena, or NULL for the
 * arena PyTorch's hook would pick (_cua_hook_arena). CuPy's hook carries no
 * stream, so every block is allocated on stream 0: see cuarena.h.
 */
#include "api/hooks.h"
#include "arena/events.h"
#include "process/registry.h"

void *cua_cupy_malloc(void *param, size_t size, int device)
{
    cua_arena *a = param;
    void *p = NULL;
    if (device < 0) {
        _cua_error(CUA_ERR_INVALID_ARG, "cua_cupy_malloc: device %d", device);
        return NULL;
    }
    if (a) {
        /* A wrong device would hand CuPy memory its kernels cannot reach. The
         * device of an arena never changes; cua_arena_alloc() answers a
         * handle that is not an arena, or a destroyed one. */
        cua_arena *in = a;
        if (_cua_arena_enter(&in) == CUA_OK) {
            int on = in->device;
            _cua_arena_unlock(in);
            if (on != device) {
                _cua_error(CUA_ERR_INVALID_ARG, "cua_cupy_malloc: the arena is on device %d, CuPy "
                           "asked for device %d", on, device);
                return NULL;
            }
        }
    } else if (!(a = _cua_hook_arena(device))) {
        return NULL; /* cua_last_error() says why; CuPy raises OutOfMemoryError */
    }
    /* a unique pointer for 0 bytes, as cudaMalloc-backed pools give */
    if (cua_arena_alloc(a, size ? size : 1, 0, &p) != CUA_OK) return NULL;
    return p;
}

void cua_cupy_free(void *param, void *ptr, int device)
{
    (void)param;  /* the block remembers its arena, */
    (void)device; /* its device and its stream */
    cua_free(ptr);
}
