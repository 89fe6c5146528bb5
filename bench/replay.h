/*
 * replay.h - what cuarena-replay's parts share: the options of a run and the
 * figures of one trace (replay.c measures them, report.c prints them).
 */
#ifndef CUA_BENCH_REPLAY_H
#define CUA_BENCH_REPLAY_H

#include "cuarena.h"

#include <stdint.h>

typedef struct options {
    const char *backend;
    int repeat;
    int budget_search;
    const char *trim_at;
    int check;
    int table;
    const char *fault;      /* the KIND:N text, or NULL */
    uint64_t timeline;      /* --timeline: about this many samples; 0 none */
    cua_call fault_call;
    uint64_t fault_nth;
    char **files;
    int n_files;
} options;

/* The metrics run over time: live (asked) and mapped bytes after every
 * `every`-th event, and at every marker (before and after its trim). */
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

/* The figures of one trace. Optional ones have a `has_` flag (else null). */
typedef struct result {
    char name[128];
    uint64_t events, allocs, markers;
    uint64_t peak_live, peak_mapped;
    int has_budget;
    uint64_t min_budget;
    int has_teardown;
    uint64_t mapped_after_teardown;
    uint64_t final_mapped;
    uint64_t calls[CUA_CALL_COUNT], driver_calls;
    int printed;        /* its JSON line was printed */
    int leaked;         /* the backend held something after the metrics arena's destroy */
    int has_timing;
    double ns_med, ns_min, ns_max;
    uint64_t timed_driver_calls, timed_driver_ns; /* over all timed runs */
    uint64_t timed_calls[CUA_CALL_COUNT], timed_ns[CUA_CALL_COUNT]; /* per kind */
    timeline tl;
    const struct trace *trace; /* for marker names while printing */
} result;

/* s as a JSON string, quotes and escapes included, on stdout. */
void report_json_string(const char *s);
/* One JSON line of a trace's figures (the options say how it was run). */
void report_json(const options *o, const result *r);
/* Append a sample or a marker; -1 when out of host memory. */
int timeline_point(timeline *tl, uint64_t event, uint64_t live, uint64_t mapped);
int timeline_marker(timeline *tl, uint64_t event, uint32_t name, uint64_t live, uint64_t mapped);
void timeline_free(timeline *tl);

/* The Markdown table of n traces' figures. */
void report_table(const result *rs, int n);

#endif /* CUA_BENCH_REPLAY_H */
