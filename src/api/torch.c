/*
 * torch.c - the entry points PyTorch's CUDAPluggableAllocator loads from this
 * library (cuarena.h: cua_torch_alloc, cua_torch_free). They hold no state of
 * their own: an allocation goes to the calling thread's current arena when it
 * is on the device torch asks for, else to the device's default arena
 * (_cua_hook_arena, which CuPy's entry points in cupy.c share).
 */
#include "api/hooks.h"
#include "arena/events.h"
#include "process/registry.h"

cua_arena *_cua_hook_arena(int device)
{
    cua_arena *a = NULL, *in;
    /* (the device of an arena never changes: read under its lock all the same) */
    if (cua_arena_current(&a) == CUA_OK && a && (in = a, _cua_arena_enter(&in) == CUA_OK)) {
        bool here = in->device == device;
        _cua_arena_unlock(in);
        if (here) return a;
    }
    if (cua_arena_default(device, &a) != CUA_OK) return NULL;
    return a;
}

void *cua_torch_alloc(size_t size, int device, void *stream)
{
    cua_arena *a = _cua_hook_arena(device);
    void *p = NULL;
    if (!a) return NULL; /* cua_last_error() says why; torch raises out of memory */
    /* torch asks for 0 bytes for empty tensors and wants a pointer all the same */
    if (cua_arena_alloc(a, size ? size : 1, (cua_stream)stream, &p) != CUA_OK) return NULL;
    return p;
}

void cua_torch_free(void *ptr, size_t size, int device, void *stream)
{
    (void)size;
    (void)device;
    (void)stream; /* the block remembers its stream and its arena */
    cua_free(ptr);
}
