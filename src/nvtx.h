/*
 * nvtx.h - NVTX memory-range registration (CUA_ARENA_NVTX): an arena's address
 * range is a heap of sub-allocations and each live block a region in it, so
 * that tools that read NVTX (compute-sanitizer memcheck with --nvtx yes, Nsight
 * Systems) see cuarena's blocks as separate allocations: an access past the end
 * of one block into its neighbour is reported. Only in builds with the CUDA
 * toolkit's headers (nvtx3 is header-only and loads a tool only when one is
 * injected); elsewhere these are empty.
 */
#ifndef CUA_NVTX_H
#define CUA_NVTX_H

#include "arena.h"

#if CUA_HAVE_CUDA
/* Register the arena's range as a heap (VMM arenas with CUA_ARENA_NVTX). */
void _cua_nvtx_open(cua_arena *a);
/* Unregister the heap (and with it every region still in it). */
void _cua_nvtx_close(cua_arena *a);
void _cua_nvtx_alloc(cua_arena *a, void *ptr, size_t size);
void _cua_nvtx_free(cua_arena *a, void *ptr);
#else
static inline void _cua_nvtx_open(cua_arena *a) { (void)a; }
static inline void _cua_nvtx_close(cua_arena *a) { (void)a; }
static inline void _cua_nvtx_alloc(cua_arena *a, void *ptr, size_t size) { (void)a, (void)ptr, (void)size; }
static inline void _cua_nvtx_free(cua_arena *a, void *ptr) { (void)a, (void)ptr; }
#endif

#endif /* CUA_NVTX_H */
