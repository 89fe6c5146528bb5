/*
 * registry.h - every arena of the process (registry.c): creation (the
 * backend each gets), the list that enumeration, lookup by name, the device
 * report and the relief of a device shortage walk, the default arena and
 * the shared CUDA backend of each device, and idle trims.
 */
#ifndef CUA_PROCESS_REGISTRY_H
#define CUA_PROCESS_REGISTRY_H

#include "arena/arena.h"

/* A new arena of `cfg` (complete) on its backend: cfg->backend, or the
 * device's shared CUDA backend (CUA_BACKEND_CUDA, or AUTO when the device
 * has one), or a host backend of its own; in memory of a destroyed arena or
 * new, registered, unlocked, its CREATED event delivered. *handle and *gen
 * are its handle and generation as made (another thread may destroy it as
 * soon as it is listed: compare with _cua_arena_same). */
cua_status _cua_registry_create(const cua_arena_config *cfg, cua_arena **out, cua_arena **handle,
                                uint32_t *gen);
/* The device's shared CUDA backend, made on first use. */
cua_status _cua_registry_device_backend(int device, cua_backend **out);
/* Destroy (the arena's lock held): a leaves the list of live arenas and the
 * defaults; its reserved range [base, base + size), unless base is 0, answers
 * for a destroyed arena until another arena reserves it. */
void _cua_registry_remove(cua_arena *a, uintptr_t base, size_t size);
/* Give a destroyed arena's memory (or one never handed out) to the pool. */
void _cua_registry_recycle(cua_arena *a);
/* The arena memory a handle names, and the handle's generation into *gen;
 * NULL when h is no handle (NULL, a pointer, garbage). A handle names a slot
 * of the registry's table and the generation of the arena in it: any value a
 * caller passes is decoded, never read from. */
cua_arena *_cua_arena_of(const cua_arena *h, uint32_t *gen);
/* Validate the handle in *pa and take its arena's lock (alive, of the
 * handle's generation); *pa becomes the arena. On failure (INVALID_ARG,
 * DESTROYED; the message says which) nothing is held and *pa stays. */
cua_status _cua_arena_enter(cua_arena **pa);
/* The handle of the device's default arena, making the arena of handle
 * `candidate` the default when there is none and it is alive (NULL: only
 * look); NULL when there is none. */
cua_arena *_cua_registry_default(int device, cua_arena *candidate);
/* The arenas alive on device (or all) in a malloc'ed array (NULL, 0: none). */
cua_status _cua_registry_snapshot(int device, cua_arena ***out, size_t *n);
/* The same, lowest priority first (creation order among equals). */
cua_status _cua_registry_by_priority(int device, cua_arena ***out, size_t *n);
/* What a new allocation on `device` could still get (cua_headroom). */
cua_status _cua_registry_headroom(int device, size_t *out);
/* Trim every arena of device (or all) idle for its idle_ms (cua_trim_idle). */
cua_status _cua_registry_trim_idle(int device, size_t *released);

#endif /* CUA_PROCESS_REGISTRY_H */
