/*
 * stats.c - an arena's figures: read into a cua_stats, and written as JSON.
 * The fields are declared once, in the table below, for the JSON writer.
 */
#include "arena/stats.h"
#include "arena/tcache.h"

#include <stdio.h>
#include <string.h>

/* The counters of cua_stats, in output order (the doubles and arrays follow). */
#define CUA_STATS_U64(X)                                                               \
    X(live_bytes) X(live_blocks) X(allocated_bytes) X(mapped_bytes) X(reserved_bytes)  \
    X(free_bytes) X(cached_bytes) X(pending_bytes) X(largest_free_bytes) X(free_blocks) \
    X(peak_live_bytes) X(peak_mapped_bytes) X(alloc_count) X(free_count) X(oom_count)   \
    X(trim_count) X(trimmed_bytes) X(limit_bytes) X(adopted_bytes) X(tcache_allocs)        \
    X(tcache_frees) X(tcache_bytes) X(mapped_total_bytes) X(unmapped_total_bytes)

/* Longest run of free bytes that lies in mapped pages (adjacent free blocks count
 * together). One walk over the blocks, and in each free block over its mapped
 * chunks (a step each: `ends`) and its unmapped pages - none above the
 * highest block ever handed out (only blocks map pages), so the free tail of
 * a vast range costs nothing (64 GiB of 4 KiB pages: 87 ms a call before). */
static uint64_t largest_free_mapped(const cua_arena *a)
{
    const cua_segment *seg = &a->seg;
    uint64_t top = ((a->top_used + seg->gran - 1) >> seg->gshift) << seg->gshift;
    uint64_t run = 0, best = 0;
    for (const cua_block *b = a->heap.first; b && b->off < top; b = b->next) {
        if (b->state != CUA_BLOCK_FREE) {
            run = 0;
            continue;
        }
        uint64_t pos = b->off, end = _cua_min(b->off + b->size, top);
        while (pos < end) {
            uint32_t page = _cua_seg_page(seg, pos);
            /* a mapped page: on to its chunk's end; an unmapped one: its own */
            bool mapped = _cua_seg_page_mapped(seg, page);
            uint64_t step_end = (uint64_t)(mapped ? seg->ends[page] : page + 1) << seg->gshift;
            step_end = _cua_min(end, step_end);
            if (mapped) {
                run += step_end - pos;
                if (run > best) best = run;
            } else {
                run = 0;
            }
            pos = step_end;
        }
    }
    return best;
}

void _cua_stats_read(const cua_arena *a, cua_stats *out)
{
    memset(out, 0, sizeof *out);
    /* The heap counts blocks in threads' caches as live; the caches keep the
     * corrections (tcache.h), summed under each cache's lock. */
    cua_tc_sums tc;
    _cua_tc_sums_locked(a, &tc);
    int64_t live = (int64_t)a->live_bytes + tc.live, blocks = (int64_t)a->live_blocks + tc.blocks;
    int64_t alloc = (int64_t)a->allocated_bytes + tc.alloc;
    out->live_bytes = live > 0 ? (uint64_t)live : 0;
    out->live_blocks = blocks > 0 ? (uint64_t)blocks : 0;
    out->allocated_bytes = alloc > 0 ? (uint64_t)alloc : 0;
    if (out->allocated_bytes > a->allocated_bytes) out->allocated_bytes = a->allocated_bytes;
    out->mapped_bytes = a->seg.mapped_bytes;
    out->reserved_bytes = a->seg.novmm ? 0 : a->seg.size; /* novmm: nothing is reserved */
    out->pending_bytes = a->streams.pending_bytes;
    /* Offloaded, the live blocks hold no pages: whatever is mapped is free
     * (pages an unmap left). Else mapped less what blocks hold, which the
     * caches' corrections can make pass it for a moment: never below 0. */
    uint64_t held = a->offloaded ? 0 : out->allocated_bytes + a->streams.pending_bytes;
    out->free_bytes = a->seg.mapped_bytes > held ? a->seg.mapped_bytes - held : 0;
    out->cached_bytes = a->seg.idle_bytes;
    out->largest_free_bytes = largest_free_mapped(a);
    for (uint32_t t = 0; t < a->heap.ntags; t++) out->free_blocks += a->heap.idx[t]->count;
    out->peak_live_bytes = _cua_max(a->peak_live, out->live_bytes);
    out->peak_mapped_bytes = a->peak_mapped;
    out->alloc_count = a->alloc_count + tc.allocs;
    out->free_count = a->free_count + tc.frees;
    out->tcache_allocs = tc.allocs + a->tc_gone_allocs;
    out->tcache_frees = tc.frees + a->tc_gone_frees;
    out->tcache_bytes = tc.cached_bytes;
    out->oom_count = a->oom_count;
    out->trim_count = a->trim_count;
    out->trimmed_bytes = a->trimmed_bytes;
    out->limit_bytes = a->cfg.limit;
    out->adopted_bytes = a->seg.adopted_bytes;
    out->mapped_total_bytes = a->seg.mapped_total;
    out->unmapped_total_bytes = a->seg.unmapped_total;
    memcpy(out->calls, a->cs.calls, sizeof a->cs.calls);
    memcpy(out->call_ns, a->cs.call_ns, sizeof a->cs.call_ns);
    out->mapped_over_live =
        out->live_bytes ? (double)a->seg.mapped_bytes / (double)out->live_bytes : 0.0;
    out->free_fragmentation =
        out->free_bytes ? 1.0 - (double)out->largest_free_bytes / (double)out->free_bytes : 0.0;
}

static void put_calls(char *buf, size_t cap, size_t *len, const char *key,
                      const uint64_t *v)
{
    _cua_put(buf, cap, len, ",\"%s\":{", key);
    for (int k = 0; k < CUA_CALL_COUNT; k++)
        _cua_put(buf, cap, len, "%s\"%s\":%llu", k ? "," : "", cua_call_name((cua_call)k),
            (unsigned long long)v[k]);
    _cua_put(buf, cap, len, "}");
}

/* Names come from users: keep JSON valid whatever they hold. */
static void put_string(char *buf, size_t cap, size_t *len, const char *s)
{
    _cua_put(buf, cap, len, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            _cua_put(buf, cap, len, "\\%c", c);
        else if (c < 0x20)
            _cua_put(buf, cap, len, "\\u%04x", c);
        else
            _cua_put(buf, cap, len, "%c", c);
    }
    _cua_put(buf, cap, len, "\"");
}

size_t _cua_stats_json(const cua_stats *s, const char *name, int device, const char *backend,
                       char *buf, size_t cap)
{
    size_t len = 0;
    if (cap) buf[0] = 0;
    _cua_put(buf, cap, &len, "{\"name\":");
    put_string(buf, cap, &len, name);
    _cua_put(buf, cap, &len, ",\"device\":%d,\"backend\":", device);
    put_string(buf, cap, &len, backend);
#define X(field) _cua_put(buf, cap, &len, ",\"" #field "\":%llu", (unsigned long long)s->field);
    CUA_STATS_U64(X)
#undef X
    _cua_put(buf, cap, &len, ",\"mapped_over_live\":%.6f,\"free_fragmentation\":%.6f",
        s->mapped_over_live, s->free_fragmentation);
    put_calls(buf, cap, &len, "calls", s->calls);
    put_calls(buf, cap, &len, "call_ns", s->call_ns);
    _cua_put(buf, cap, &len, "}");
    return len;
}
