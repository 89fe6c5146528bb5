/*
 * arena.h - an arena's life (arena.c): create, alloc, free, settings, trims
 * and destroy, for the layers above (the process-wide parts and the public
 * API). The arena's data is types.h; the lock is taken and `alive` checked
 * by the caller (_cua_arena_lock_alive), except for create.
 */
#ifndef CUA_ARENA_ARENA_H
#define CUA_ARENA_ARENA_H

#include "arena/place.h"
#include "arena/types.h"

/* Build an arena of `cfg` (complete: cua_arena_config_init's defaults and
 * the user's settings) on backend `bk` in memory `a` (cleared from `name` on,
 * its lock held: the registry's), and mark it alive; owns_bk: the arena
 * destroys bk with itself (and on failure here, which leaves `a` unbuilt).
 * Not yet registered anywhere but the address map. */
cua_status _cua_arena_create(cua_arena *a, const cua_arena_config *cfg, cua_backend *bk,
                             bool owns_bk);
cua_status _cua_arena_destroy_locked(cua_arena *a, unsigned flags);

/* final: a device out-of-memory is the answer (counted, reported, an event);
 * else it is returned quietly, for the caller to ask other arenas first.
 * *made (may be NULL) gets the block. run (may be NULL): the caller may
 * release the lock to ask other streams' events (place.h); CUA_ERR_BUSY with
 * run->ev.n jobs planned and run->ran false says it must: run them without
 * the lock (_cua_stream_run), take it again, _cua_stream_ran, set run->ran
 * and call again. */
cua_status _cua_arena_alloc_locked(cua_arena *a, size_t size, cua_stream stream, bool final,
                                   void **out, cua_block **made, cua_placerun *run);
/* The block [ptr, ptr + size) for `stream`, a range that is free there
 * (Note [a block at a given address] in arena.c). */
cua_status _cua_arena_alloc_at_locked(cua_arena *a, void *ptr, size_t size, cua_stream stream,
                                      void **out);
cua_status _cua_arena_free_locked(cua_arena *a, void *ptr);
/* Give back the idle pages above `keep` bytes (cua_arena_trim). */
cua_status _cua_arena_trim_locked(cua_arena *a, uint64_t keep, uint64_t *released);
/* Give back up to `want` cached bytes for another arena's allocation (the
 * floor stays). */
cua_status _cua_arena_trim_for_pressure_locked(cua_arena *a, uint64_t want, uint64_t *released);
/* If the arena has made no alloc or free since the last look and that is
 * idle_ms ago, trim it (threshold, floor); else note the time. */
cua_status _cua_arena_trim_if_idle_locked(cua_arena *a, uint64_t now_ns, uint64_t *released);

cua_status _cua_arena_set_limit_locked(cua_arena *a, size_t limit);
cua_status _cua_arena_set_release_locked(cua_arena *a, size_t bytes);
cua_status _cua_arena_set_floor_locked(cua_arena *a, size_t floor);
cua_status _cua_arena_grant_peer_locked(cua_arena *a, int device);
void _cua_arena_reset_peaks_locked(cua_arena *a);

/* The stream is about to be destroyed: wait for it now and never touch it
 * again (cua_stream_retire). CUA_OK also when the arena never saw it. */
cua_status _cua_arena_retire_stream_locked(cua_arena *a, cua_stream stream);
cua_status _cua_arena_record_stream_locked(cua_arena *a, void *ptr, cua_stream stream);
cua_status _cua_arena_ptr_info_locked(cua_arena *a, const void *ptr, void **base, size_t *size);
/* Find the live block of ptr, or explain why there is none. */
cua_status _cua_arena_lookup_live(cua_arena *a, const void *ptr, cua_block **out);

#endif /* CUA_ARENA_ARENA_H */
