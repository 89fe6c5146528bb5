/*
 * replay.h - what cuarena-replay's parts share: the options of a run
 * (options.c parses them) and the figures of one trace (replay.c measures
 * them, report.c prints them).
 */
#ifndef CUA_BENCH_REPLAY_H
#define CUA_BENCH_REPLAY_H

#include "cuarena.h"
#include "cuarena_backend.h"
#include "timeline.h"

#include <stdint.h>

typedef struct options {
    const char *backend;
    int repeat;
    int budget_search;
    uint64_t budget_step;   /* --budget-step: bisection stops within this (0: a page) */
    const char *trim_at;
    int check;              /* run the checker every this many events (and at markers); 0 never */
    int table;
    int split_arenas;       /* --split-arenas: an arena per arena name of the trace */
    const char *fault;      /* the KIND:N text, or NULL */
    uint64_t timeline;      /* --timeline: about this many samples; 0 none */
    cua_call fault_call;
    uint64_t fault_nth;
    char **files;
    int n_files;
} options;

/* The figures of one trace. Optional ones have a `has_` flag (else null). */
typedef struct result {
    char name[128];
    uint64_t events, allocs, markers;
    uint64_t peak_live, peak_mapped;
    uint32_t arenas;        /* arenas the metrics run used */
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
    /* Bytes mapped and unmapped per timed (warm) run, on average: pages a
     * steady workload moves (0 when its warm runs reuse what is mapped). */
    uint64_t warm_mapped_bytes, warm_unmapped_bytes;
    uint64_t timed_calls[CUA_CALL_COUNT], timed_ns[CUA_CALL_COUNT]; /* per kind */
    timeline tl;
    const trace *trace;  /* for marker names while printing */
} result;

/* Timed runs whose max - min exceeds this share of their median: the table
 * marks them with '*' and stderr warns (a busy machine, or too few runs). */
#define TIMING_WIDE_SPREAD 0.25

static inline int timing_spread_wide(const result *r)
{
    return r->has_timing && r->ns_med > 0 && (r->ns_max - r->ns_min) / r->ns_med > TIMING_WIDE_SPREAD;
}

/* The command line into `o` (its files in o->files, to be freed); --help and
 * --backends print and exit 0, a usage error prints the usage and exits 2. */
void options_parse(int argc, char **argv, options *o);
/* Whether this build can create a backend of `kind` ("host", "cuda"). */
int options_backend_built(const char *kind);

/* One JSON line of a trace's figures (the options say how it was run). */
void report_json(const options *o, const result *r);
/* The Markdown table of n traces' figures. */
void report_table(const result *rs, int n);

#endif /* CUA_BENCH_REPLAY_H */
