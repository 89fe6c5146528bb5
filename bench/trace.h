/*
 * trace.h - load a catrace v1 file (plain or gzip; see bench/traces/FORMAT.md)
 * into memory as a compact event array that replays without a hash map.
 *
 * Ids are remapped at load time to dense slots 0..n_allocs-1 (slot = order of
 * the `a` line). A free event carries the slot, size and stream of the
 * allocation it frees, so a replayer can keep live-byte counts without any
 * lookup. The loader validates the whole file; on malformed input it returns an
 * error code and a message "file:line: what was wrong", and never crashes.
 */
#ifndef CUA_BENCH_TRACE_H
#define CUA_BENCH_TRACE_H

#include <stddef.h>
#include <stdint.h>

typedef enum trace_op {
    TRACE_ALLOC = 0, /* slot: new slot; size, stream: as asked */
    TRACE_FREE = 1,  /* slot: the allocation's slot; size, stream: copied from it */
    TRACE_MARK = 2,  /* slot: index of the marker (trace_marker_name) */
} trace_op;

typedef struct trace_event {
    uint8_t op;      /* trace_op */
    uint8_t pad_;
    uint16_t arena;  /* ALLOC: 1 + index into the arena-name table; 0 = none */
    uint32_t slot;
    uint64_t size;
    uint64_t stream;
} trace_event;

typedef enum trace_status {
    TRACE_OK = 0,
    TRACE_ERR_IO,          /* cannot open or read the file */
    TRACE_ERR_TRUNCATED,   /* the gzip stream ends early or is corrupt */
    TRACE_ERR_HEADER,      /* the first line is not "# catrace v1" */
    TRACE_ERR_OP,          /* unknown op */
    TRACE_ERR_FIELD,       /* a field is missing, or there are too many */
    TRACE_ERR_NUMBER,      /* a field is not a decimal number, or overflows */
    TRACE_ERR_SIZE_ZERO,   /* an allocation of 0 bytes */
    TRACE_ERR_DUPLICATE_ID,/* an `a` line reuses an id */
    TRACE_ERR_UNKNOWN_ID,  /* an `f` line names an id never allocated */
    TRACE_ERR_DOUBLE_FREE, /* an `f` line names an id already freed */
    TRACE_ERR_LINE,        /* a line is too long or holds a NUL byte */
    TRACE_ERR_LIMIT,       /* too many allocations or arena names */
    TRACE_ERR_NOMEM,       /* out of host memory */
} trace_status;

typedef struct trace {
    trace_event *events;
    size_t n_events;         /* allocs + frees + markers */
    uint32_t n_allocs;       /* = number of slots */
    uint32_t n_frees;
    uint32_t n_markers;
    uint32_t n_live_at_end;  /* allocations the file never frees */
    uint64_t peak_live_bytes;/* highest sum of sizes of live allocations */
    size_t peak_live_event;  /* index of the event that first reached it */
    /* names: offsets into `pool` (NUL-terminated strings) */
    char *pool;
    size_t pool_len, pool_cap;
    uint32_t *marker_names;  /* n_markers offsets */
    uint32_t *arena_names;   /* n_arena_names offsets */
    uint32_t n_arena_names;
} trace;

/* Load `path` into *t (which is overwritten). On failure *t is empty, and
 * `err` (if not NULL) receives "path:line: message". */
trace_status trace_load(const char *path, trace *t, char *err, size_t errcap);

/* Free what trace_load allocated; *t is then empty. Safe on an empty trace. */
void trace_free(trace *t);

/* Name of a marker (0 <= i < n_markers). */
const char *trace_marker_name(const trace *t, uint32_t i);

/* Arena name of an ALLOC event, or NULL when the line had none. */
const char *trace_arena_name(const trace *t, const trace_event *e);

/* Name of a status, e.g. "TRACE_ERR_NUMBER". */
const char *trace_status_name(trace_status st);

#endif /* CUA_BENCH_TRACE_H */
