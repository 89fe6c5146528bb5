/*
 * timeline.h - what the replay tools share beyond the trace: a replay's
 * samples over time, and JSON output. No cuarena code (cuarena-baseline uses
 * it too).
 */
#ifndef CUA_BENCH_TIMELINE_H
#define CUA_BENCH_TIMELINE_H

#include "trace.h"

#include <stddef.h>
#include <stdint.h>

/* A replay over time: live (asked) and mapped bytes after every `every`-th
 * event and the last, and at every marker (before and after its trim). */
typedef struct tl_point {
    uint64_t event, live, mapped;
} tl_point;

typedef struct tl_marker {
    uint64_t event, live, mapped;
    uint64_t mapped_after_trim; /* when trimmed */
    uint32_t name;              /* trace_marker_name index */
    int trimmed;
} tl_marker;

typedef struct timeline {
    uint64_t every;             /* 0: no timeline */
    tl_point *points;
    size_t n_points, cap_points;
    tl_marker *marks;
    size_t n_marks, cap_marks;
} timeline;

/* Append a sample or a marker; -1 when out of host memory. */
int timeline_point(timeline *tl, uint64_t event, uint64_t live, uint64_t mapped);
int timeline_marker(timeline *tl, uint64_t event, uint32_t name, uint64_t live, uint64_t mapped);
/* The last marker, when it was recorded at `event` (else NULL). */
tl_marker *timeline_marker_at(timeline *tl, uint64_t event);
void timeline_free(timeline *tl);

/* ,"timeline":{"every":N,"points":[[event,live,mapped],...],"markers":[{"event",
 * "name","live","mapped","mapped_after_trim"},...]} on stdout; t names the markers. */
void timeline_json(const timeline *tl, const trace *t);

/* s as a JSON string, quotes and escapes included, on stdout. */
void bench_json_string(const char *s);

#endif /* CUA_BENCH_TIMELINE_H */
