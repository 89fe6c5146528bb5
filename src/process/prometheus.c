/*
 * prometheus.c - the device report in Prometheus' text exposition format
 * (version 0.0.4): cua_device_report_prometheus().
 *
 * The figures are those of cua_device_report_json(): per arena (labels
 * device and arena) what it maps, holds live and caches, its largest free
 * block, fragmentation, peaks and its counters (allocations, frees, OOM
 * answers, trims); per device the sums, the driver's figures, the headroom
 * and the device's peak. Each metric family is written once, with its HELP
 * and TYPE lines, followed by the samples of every arena (the format wants a
 * family's samples together), so the arenas are read first: each under its
 * own lock, one at a time, as the JSON report does.
 *
 * Label values are escaped as the format says (backslash, double quote, line
 * feed), and arena names, which are the user's bytes, are made valid UTF-8
 * (each byte of an invalid sequence becomes U+FFFD). Two arenas of one name
 * on one device would give two series with the same labels, which a
 * Prometheus server rejects: the second is labelled "name#2", the third
 * "name#3", in creation order.
 */
#include "process/registry.h"
#include "arena/events.h"
#include "arena/stats.h"
#include "base/devstat.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One arena's figures, read under its lock. */
typedef struct prom_arena {
    int device;
    unsigned dup;            /* 1: first of its name on its device, 2: second, ... */
    char name[CUA_NAME_CAP];
    cua_stats s;
} prom_arena;

/* One device that has arenas: the sums, and the driver's figures as its first
 * arena's backend gives them. */
typedef struct prom_device {
    int device;
    size_t driver_free, driver_total, headroom;
    uint64_t mapped, live, cached, peak;
    size_t narenas;
} prom_device;

/* ---- text -------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one
 * (overlong forms, surrogates and code points past U+10FFFF are not). */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1fu;
    else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0fu;
    else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07u;
    else return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0; /* also stops at the terminating NUL */
        cp = cp << 6 | (s[k] & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A label value: escaped, valid UTF-8. */
static void put_label_value(char *buf, size_t cap, size_t *len, const char *value)
{
    const unsigned char *s = (const unsigned char *)value;
    while (*s) {
        if (*s == '\\' || *s == '"') {
            _cua_put(buf, cap, len, "\\%c", *s++);
        } else if (*s == '\n') {
            _cua_put(buf, cap, len, "\\n");
            s++;
        } else {
            size_t n = utf8_seq(s);
            if (n == 0) {
                _cua_put(buf, cap, len, "\xef\xbf\xbd"); /* U+FFFD for a byte of no sequence */
                s++;
            } else {
                _cua_put(buf, cap, len, "%.*s", (int)n, (const char *)s);
                s += n;
            }
        }
    }
}

static void put_family(char *buf, size_t cap, size_t *len, const char *name, const char *type,
                       const char *help)
{
    _cua_put(buf, cap, len, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* ---- the metrics ------------------------------------------------------------------------ */

/* An arena figure: its family name, type, help text and how to read it. */
typedef struct arena_metric {
    const char *name, *type, *help;
    size_t offset;  /* of a uint64_t in cua_stats, or of the double when is_double */
    bool is_double;
} arena_metric;

#define U64(field) offsetof(cua_stats, field), false
static const arena_metric arena_metrics[] = {
    { "cuarena_arena_mapped_bytes", "gauge", "Physical device memory the arena has mapped.",
      U64(mapped_bytes) },
    { "cuarena_arena_live_bytes", "gauge", "Bytes asked for by the arena's live blocks.",
      U64(live_bytes) },
    { "cuarena_arena_live_blocks", "gauge", "Live blocks of the arena.", U64(live_blocks) },
    { "cuarena_arena_cached_bytes", "gauge",
      "Mapped pages of the arena that hold no live block: what a trim gives back.",
      U64(cached_bytes) },
    { "cuarena_arena_free_bytes", "gauge", "Mapped bytes of the arena not in live blocks.",
      U64(free_bytes) },
    { "cuarena_arena_largest_free_bytes", "gauge",
      "The arena's largest free block that lies in mapped pages.", U64(largest_free_bytes) },
    { "cuarena_arena_fragmentation_ratio", "gauge",
      "1 - largest free block / free bytes of the arena (0 when nothing is free).",
      offsetof(cua_stats, free_fragmentation), true },
    { "cuarena_arena_reserved_bytes", "gauge", "Address space the arena has reserved.",
      U64(reserved_bytes) },
    { "cuarena_arena_limit_bytes", "gauge", "The arena's limit (0: none).", U64(limit_bytes) },
    { "cuarena_arena_peak_live_bytes", "gauge",
      "Highest live bytes of the arena since creation or its last peak reset.",
      U64(peak_live_bytes) },
    { "cuarena_arena_peak_mapped_bytes", "gauge",
      "Highest mapped bytes of the arena since creation or its last peak reset.",
      U64(peak_mapped_bytes) },
    { "cuarena_arena_allocations_total", "counter", "Successful allocations of the arena.",
      U64(alloc_count) },
    { "cuarena_arena_frees_total", "counter", "Successful frees of the arena.", U64(free_count) },
    { "cuarena_arena_oom_total", "counter",
      "Allocations of the arena that failed (its limit or the device's memory).",
      U64(oom_count) },
    { "cuarena_arena_trims_total", "counter",
      "Trims of the arena that gave pages back (asked for or by policy).", U64(trim_count) },
    { "cuarena_arena_trimmed_bytes_total", "counter",
      "Bytes the arena's trims gave back to the driver.", U64(trimmed_bytes) },
};
#undef U64

/* A device figure. */
typedef struct device_metric {
    const char *name, *help;
    size_t offset;  /* of a size_t (is_size) or uint64_t in prom_device */
    bool is_size;
} device_metric;

static const device_metric device_metrics[] = {
    { "cuarena_device_mapped_bytes", "Device memory the device's arenas map, together.",
      offsetof(prom_device, mapped), false },
    { "cuarena_device_live_bytes", "Bytes asked for by the live blocks of the device's arenas.",
      offsetof(prom_device, live), false },
    { "cuarena_device_cached_bytes", "What trims of the device's arenas would give back.",
      offsetof(prom_device, cached), false },
    { "cuarena_device_peak_mapped_bytes",
      "Most bytes the device's arenas mapped at once, since start or the last peak reset.",
      offsetof(prom_device, peak), false },
    { "cuarena_device_arenas", "Arenas alive on the device.", offsetof(prom_device, narenas),
      true },
    { "cuarena_device_driver_free_bytes", "Device memory the driver reports free.",
      offsetof(prom_device, driver_free), true },
    { "cuarena_device_driver_total_bytes", "Device memory the driver reports in total.",
      offsetof(prom_device, driver_total), true },
    { "cuarena_device_headroom_bytes",
      "What a new allocation could still get: driver free memory, less what mapping needs, "
      "plus every arena's cache (cua_headroom).",
      offsetof(prom_device, headroom), true },
};

static uint64_t device_value(const prom_device *d, const device_metric *m)
{
    const char *p = (const char *)d + m->offset;
    if (m->is_size) {
        size_t v;
        memcpy(&v, p, sizeof v);
        return (uint64_t)v;
    }
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- reading the arenas ------------------------------------------------------------------ */

/* The device's entry in devs[0..*ndev), added when new. */
static prom_device *device_entry(prom_device *devs, size_t *ndev, int device)
{
    for (size_t k = 0; k < *ndev; k++)
        if (devs[k].device == device) return &devs[k];
    prom_device *d = &devs[(*ndev)++];
    memset(d, 0, sizeof *d);
    d->device = device;
    return d;
}

/* Read every arena of v[0..n) (skipping those destroyed meanwhile) into out,
 * summing them per device; the driver's figures from each device's first
 * arena, under its lock so that its backend cannot go meanwhile. */
static cua_status read_arenas(int device, cua_arena **v, size_t n, prom_arena *out,
                              size_t *nout, prom_device *devs, size_t *ndev)
{
    *nout = *ndev = 0;
    for (size_t i = 0; i < n; i++) {
        cua_arena *a = v[i];
        if (!_cua_arena_lock_alive(a)) continue;
        /* (its memory may hold an arena of another device since the snapshot) */
        if (device != CUA_ALL_DEVICES && a->device != device) {
            _cua_arena_unlock(a);
            continue;
        }
        prom_arena *p = &out[*nout];
        p->device = a->device;
        memcpy(p->name, a->name, sizeof p->name);
        p->name[sizeof p->name - 1] = 0;
        _cua_stats_read(a, &p->s);
        prom_device *d = device_entry(devs, ndev, a->device);
        cua_status st = CUA_OK;
        if (d->narenas == 0)
            st = _cua_bk_mem_info(a->bk, NULL, &d->driver_free, &d->driver_total);
        _cua_arena_unlock(a);
        if (st != CUA_OK)
            return _cua_error_wrap(st, "cannot ask the driver what device %d has free",
                                   p->device);
        d->narenas++;
        d->mapped += p->s.mapped_bytes;
        d->live += p->s.live_bytes;
        d->cached += p->s.cached_bytes;
        p->dup = 1;
        for (size_t k = 0; k < *nout; k++)
            if (out[k].device == p->device && strcmp(out[k].name, p->name) == 0) p->dup++;
        (*nout)++;
    }
    return CUA_OK;
}

/* ---- writing ----------------------------------------------------------------------------- */

static void put_arena_labels(char *buf, size_t cap, size_t *len, const prom_arena *p)
{
    _cua_put(buf, cap, len, "{device=\"%d\",arena=\"", p->device);
    put_label_value(buf, cap, len, p->name);
    if (p->dup > 1) _cua_put(buf, cap, len, "#%u", p->dup);
    _cua_put(buf, cap, len, "\"}");
}

static void write_report(char *buf, size_t cap, size_t *len, const prom_arena *arenas,
                         size_t narenas, const prom_device *devs, size_t ndev)
{
    put_family(buf, cap, len, "cuarena_build_info", "gauge",
               "The cuarena library that writes these figures (the value is always 1).");
    _cua_put(buf, cap, len, "cuarena_build_info{version=\"%s\"} 1\n", CUA_PROJECT_VERSION);
    for (size_t m = 0; m < CUA_ARRAY_LEN(arena_metrics); m++) {
        const arena_metric *am = &arena_metrics[m];
        put_family(buf, cap, len, am->name, am->type, am->help);
        for (size_t i = 0; i < narenas; i++) {
            const char *field = (const char *)&arenas[i].s + am->offset;
            _cua_put(buf, cap, len, "%s", am->name);
            put_arena_labels(buf, cap, len, &arenas[i]);
            if (am->is_double) {
                double v;
                memcpy(&v, field, sizeof v);
                _cua_put(buf, cap, len, " %.6f\n", v);
            } else {
                uint64_t v;
                memcpy(&v, field, sizeof v);
                _cua_put(buf, cap, len, " %" PRIu64 "\n", v);
            }
        }
    }
    for (size_t m = 0; m < CUA_ARRAY_LEN(device_metrics); m++) {
        const device_metric *dm = &device_metrics[m];
        put_family(buf, cap, len, dm->name, "gauge", dm->help);
        for (size_t k = 0; k < ndev; k++)
            _cua_put(buf, cap, len, "%s{device=\"%d\"} %" PRIu64 "\n", dm->name, devs[k].device,
                     device_value(&devs[k], dm));
    }
}

cua_status cua_device_report_prometheus(int device, char *buf, size_t cap, size_t *len)
{
    if (!len || (!buf && cap) || device < CUA_ALL_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "len is NULL, buf is NULL with cap %zu, or "
                          "device %d is not an ordinal or CUA_ALL_DEVICES", cap, device);
    *len = 0;
    if (cap) buf[0] = 0;
    cua_arena **v;
    size_t n;
    cua_status st = _cua_registry_snapshot(device, &v, &n);
    if (st != CUA_OK) return st;
    prom_arena *arenas = n ? malloc(n * sizeof *arenas) : NULL;
    prom_device *devs = malloc((n ? n : 1) * sizeof *devs);
    size_t narenas = 0, ndev = 0;
    if ((n && !arenas) || !devs)
        st = _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for the report of %zu arenas", n);
    if (st == CUA_OK) st = read_arenas(device, v, n, arenas, &narenas, devs, &ndev);
    free(v);
    /* A device asked for by its ordinal is reported even with no arena (zeros). */
    if (st == CUA_OK && device != CUA_ALL_DEVICES && ndev == 0) device_entry(devs, &ndev, device);
    for (size_t k = 0; k < ndev && st == CUA_OK; k++) {
        prom_device *d = &devs[k];
        cua_devstat *ds = _cua_devstat_of(d->device);
        d->peak = ds ? atomic_load(&ds->peak) : 0;
        /* The headroom's formula is the registry's (what the driver needs to map
         * its free pages): asked for after the arenas' locks are released. */
        if (d->narenas) st = _cua_registry_headroom(d->device, &d->headroom);
    }
    if (st == CUA_OK) write_report(buf, cap, len, arenas, narenas, devs, ndev);
    free(arenas);
    free(devs);
    return st;
}
