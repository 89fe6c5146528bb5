/*
 * stats.h - an arena's figures, read into a cua_stats and written as JSON.
 */
#ifndef CUA_ARENA_STATS_H
#define CUA_ARENA_STATS_H

#include "arena/types.h"

/* Arena lock held. */
void _cua_stats_read(const cua_arena *a, cua_stats *out);
/* The figures as one JSON object; returns the length it needs (written up to cap). */
size_t _cua_stats_json(const cua_stats *s, const char *name, int device, const char *backend,
                       char *buf, size_t cap);

#endif /* CUA_ARENA_STATS_H */
