/*
 * report.c - cuarena-replay's output: one JSON line per trace, and the
 * Markdown table of all of them.
 */
#include "replay.h"

#include <inttypes.h>
#include <stdio.h>

#define MIB (1024.0 * 1024.0)


static void json_ratio(const char *key, int has, uint64_t num, uint64_t den)
{
    if (has && den) printf(",\"%s\":%.4f", key, (double)num / (double)den);
    else printf(",\"%s\":null", key);
}

static void json_u64(const char *key, int has, uint64_t v)
{
    if (has) printf(",\"%s\":%" PRIu64, key, v);
    else printf(",\"%s\":null", key);
}

static void json_double(const char *key, int has, double v)
{
    if (has) printf(",\"%s\":%.4f", key, v);
    else printf(",\"%s\":null", key);
}

void report_json(const options *o, const result *r)
{
    printf("{\"trace\":");
    bench_json_string(r->name);
    printf(",\"backend\":");
    bench_json_string(o->backend);
    /* whole: segments from cuMemAlloc (no VMM), else expandable VMM segments */
    printf(",\"segments\":\"%s\"", r->calls[CUA_CALL_ALLOC] ? "whole" : "vmm");
    printf(",\"events\":%" PRIu64 ",\"allocs\":%" PRIu64 ",\"markers\":%" PRIu64 ",\"trim_at\":",
           r->events, r->allocs, r->markers);
    bench_json_string(o->trim_at);
    if (o->split_arenas) printf(",\"arenas\":%" PRIu32, r->arenas); /* --split-arenas */
    printf(",\"repeat\":%d,\"peak_live_bytes\":%" PRIu64 ",\"peak_mapped_bytes\":%" PRIu64,
           o->repeat, r->peak_live, r->peak_mapped);
    json_ratio("peak_mapped_over_live", 1, r->peak_mapped, r->peak_live);
    json_u64("min_budget_bytes", r->has_budget, r->min_budget);
    json_ratio("min_budget_over_live", r->has_budget, r->min_budget, r->peak_live);
    json_double("ns_per_event", r->has_timing, r->ns_med);
    json_double("ns_per_event_min", r->has_timing, r->ns_min);
    json_double("ns_per_event_max", r->has_timing, r->ns_max);
    printf(",\"driver_calls\":%" PRIu64 ",\"driver_calls_by_kind\":{", r->driver_calls);
    for (int k = 0; k < CUA_CALL_COUNT; k++)
        printf("%s\"%s\":%" PRIu64, k ? "," : "", cua_call_name((cua_call)k), r->calls[k]);
    putchar('}');
    json_u64("timed_driver_calls", r->has_timing, r->timed_driver_calls);
    json_u64("timed_driver_ns", r->has_timing, r->timed_driver_ns);
    json_u64("warm_mapped_bytes", r->has_timing, r->warm_mapped_bytes);
    json_u64("warm_unmapped_bytes", r->has_timing, r->warm_unmapped_bytes);
    if (r->has_timing) { /* per kind, the kinds called only */
        printf(",\"timed_driver_by_kind\":{");
        for (int k = 0, first = 1; k < CUA_CALL_COUNT; k++) {
            if (!r->timed_calls[k]) continue;
            printf("%s\"%s\":[%" PRIu64 ",%" PRIu64 "]", first ? "" : ",",
                   cua_call_name((cua_call)k), r->timed_calls[k], r->timed_ns[k]);
            first = 0;
        }
        putchar('}');
    }
    json_u64("mapped_after_teardown_bytes", r->has_teardown, r->mapped_after_teardown);
    if (r->tl.every) timeline_json(&r->tl, r->trace);
    printf(",\"final_mapped_bytes\":%" PRIu64 "}\n", r->final_mapped);
    fflush(stdout);
}

void report_table(const result *rs, int n)
{
    printf("\n| trace | events | peak live MiB | peak mapped / live | min budget / live |"
           " mapped after teardown MiB | final mapped | ns/event median (min-max) | driver calls |\n"
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        char budget[32] = "-", teardown[32] = "-", ns[64] = "-", ratio[32] = "-";
        if (r->peak_live) snprintf(ratio, sizeof ratio, "%.3f", (double)r->peak_mapped / (double)r->peak_live);
        if (r->has_budget && r->peak_live) snprintf(budget, sizeof budget, "%.3f", (double)r->min_budget / (double)r->peak_live);
        if (r->has_teardown) snprintf(teardown, sizeof teardown, "%.1f", (double)r->mapped_after_teardown / MIB);
        if (r->has_timing)
            snprintf(ns, sizeof ns, "%.1f (%.1f-%.1f)%s", r->ns_med, r->ns_min, r->ns_max,
                     timing_spread_wide(r) ? "*" : "");
        printf("| %s | %" PRIu64 " | %.1f | %s | %s | %s | %" PRIu64 " | %s | %" PRIu64 " |\n", r->name,
               r->events, (double)r->peak_live / MIB, ratio, budget, teardown, r->final_mapped, ns, r->driver_calls);
    }
    for (int i = 0; i < n; i++)
        if (timing_spread_wide(&rs[i])) {
            printf("\n\\* the timed runs spread over %.0f %% of their median (max - min): compare "
                   "these with care\n", 100 * TIMING_WIDE_SPREAD);
            break;
        }
}
