/*
 * nvtx.h - NVTX memory-range registration (CUA_ARENA_NVTX): each segment of an
 * arena of whole segments (cuMemAlloc) is a heap of sub-allocations and each
 * live block a region in it, so that tools that read NVTX (compute-sanitizer
 * memcheck with --nvtx yes, Nsight Systems) see cuarena's blocks as separate
 * allocations: an access past the end of one block into its neighbour is
 * reported. Not over VMM mappings: compute-sanitizer 2025.3 refuses every heap
 * and region there ("one or more of the parameters is invalid", counted as an
 * error; tests/gpu/probe-nvtx.c), so CUA_ARENA_NVTX makes an arena of whole
 * segments. Only in builds with the CUDA toolkit's headers (nvtx3 is
 * header-only and loads a tool only when one is injected); elsewhere these are
 * empty.
 */
#ifndef CUA_NVTX_H
#define CUA_NVTX_H

#include "arena/types.h"

#if CUA_HAVE_CUDA
/* Decide whether the arena registers (a->nvtx_on): arenas of whole segments
 * with CUA_ARENA_NVTX, or any such arena while a tool injects NVTX. */
void _cua_nvtx_open(cua_arena *a, unsigned flags);
/* A segment of [addr, addr + len) came (returns its heap, NULL when off) or goes. */
void *_cua_nvtx_segment_open(const cua_arena *a, uintptr_t addr, size_t len);
void _cua_nvtx_segment_close(void *heap);
/* A block in the segment whose heap is `heap` was handed out / freed. */
void _cua_nvtx_alloc(void *heap, void *ptr, size_t size);
void _cua_nvtx_free(void *heap, void *ptr);
#else
static inline void _cua_nvtx_open(cua_arena *a, unsigned flags) { (void)a, (void)flags; }
static inline void *_cua_nvtx_segment_open(const cua_arena *a, uintptr_t addr, size_t len)
{
    (void)a, (void)addr, (void)len;
    return NULL;
}
static inline void _cua_nvtx_segment_close(void *heap) { (void)heap; }
static inline void _cua_nvtx_alloc(void *heap, void *ptr, size_t size) { (void)heap, (void)ptr, (void)size; }
static inline void _cua_nvtx_free(void *heap, void *ptr) { (void)heap, (void)ptr; }
#endif

#endif /* CUA_NVTX_H */
