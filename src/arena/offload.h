/*
 * offload.h - an arena's live data leaves the device and comes back at the
 * same addresses (offload.c says how). Arena lock held.
 */
#ifndef CUA_ARENA_OFFLOAD_H
#define CUA_ARENA_OFFLOAD_H

#include "arena/types.h"

/* keep_data false: discard (the blocks stay live, their data is dropped). */
cua_status _cua_offload_locked(cua_arena *a, bool keep_data);
cua_status _cua_offload_restore_locked(cua_arena *a);
/* The bytes a restore maps: the pages its live blocks cover (blocks share
 * pages, and a block's first and last pages are whole). */
uint64_t _cua_offload_restore_need(const cua_arena *a);
/* Drop the image (destroy). */
void _cua_offload_image_free(cua_arena *a);
/* Forget one block's data (freed while offloaded). */
void _cua_offload_image_drop(cua_arena *a, uint64_t off);
/* Unmap the spare image (trim, destroy). */
void _cua_offload_drop_spare(cua_arena *a);

#endif /* CUA_ARENA_OFFLOAD_H */
