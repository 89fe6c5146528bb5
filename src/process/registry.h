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
 * has one), or a host backend of its own; registered. */
cua_status _cua_registry_create(const cua_arena_config *cfg, cua_arena **out);
/* The device's shared CUDA backend, made on first use. */
cua_status _cua_registry_device_backend(int device, cua_backend **out);
void _cua_registry_drop_default(cua_arena *a);
/* The device's default arena, making `candidate` the default when there is
 * none (NULL: only look). */
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
