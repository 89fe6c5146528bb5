/*
 * config.c - arena options: the built-in defaults, and the option string of
 * CUARENA_CONF ("release_threshold:512M,limit:8G").
 *
 * Syntax: comma-separated items `key:value` (or `key=value`); whitespace
 * around keys and values is ignored; empty items are skipped, so "" and a
 * trailing comma are fine. A later item overrides an earlier one. The string
 * is parsed into a copy of the config and copied back only when all of it is
 * good, so an error leaves the caller's config as it was.
 *
 * `options` below is the one list of the keys: the parser, the "known keys"
 * of error messages and the option tables of README.md and docs/tuning.md
 * (tools/options-doc, through _cua_config_option) are made from it.
 */
#include "api/config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The longest piece of the user's text quoted in a message. */
#define QUOTE_MAX 64

/* ---- the option table ------------------------------------------------------ */

enum opt_kind {
    OPT_INT,  /* an int field, decimal >= 0 */
    OPT_UINT, /* an unsigned field, decimal */
    OPT_SIZE, /* a size_t field, a byte count (see _cua_config_parse_size) */
    OPT_FLAG, /* a bit of `flags`, value 0 or 1 */
    OPT_WORD, /* an int field, one of `words` (its index) */
    OPT_DEVICES, /* a uint64_t field, a set of device ordinals 0..63 ("1+2", "none") */
};

struct option {
    const char *name;
    enum opt_kind kind;
    size_t offset;         /* OPT_INT, OPT_UINT, OPT_SIZE: the field in cua_arena_config */
    unsigned flag;         /* OPT_FLAG: the CUA_ARENA_* bit */
    bool flag_when_zero;   /* OPT_FLAG: value 0 sets the bit and 1 clears it */
    bool has_unbounded;    /* OPT_SIZE: the words "all" and "none" are accepted */
    size_t unbounded;      /* ... and stand for this value */
    const char *const *words; /* OPT_WORD: the values, NULL-terminated */
    const char *syntax;    /* the value, in words, for docs */
    const char *fallback;  /* the built-in default, in words, for docs */
    const char *help;      /* what it does, one sentence, for docs */
};

#define FIELD(f) offsetof(cua_arena_config, f)

/* backend_kind's words, in cua_backend_kind's order. */
static const char *const backend_words[] = {"host", "cuda", "auto", NULL};

/* thread_cache's words, in cua_thread_cache_mode's order. */
static const char *const thread_cache_words[] = {"auto", "on", "off", NULL};

static const struct option options[] = {
    {.name = "device", .kind = OPT_INT, .offset = FIELD(device),
     .syntax = "integer >= 0", .fallback = "0",
     .help = "device ordinal of the arena"},
    {.name = "limit", .kind = OPT_SIZE, .offset = FIELD(limit),
     .has_unbounded = true, .unbounded = 0,
     .syntax = "size, all or none", .fallback = "none",
     .help = "most bytes the arena may have mapped at once; 0, all or none: no limit"},
    {.name = "release_threshold", .kind = OPT_SIZE, .offset = FIELD(release_threshold),
     .has_unbounded = true, .unbounded = CUA_KEEP_ALL,
     .syntax = "size, all or none", .fallback = "all",
     .help = "cached free bytes kept after a free, the oldest above it are unmapped; "
             "all or none: no threshold, keep them all"},
    {.name = "va_size", .kind = OPT_SIZE, .offset = FIELD(va_size),
     .syntax = "size", .fallback = "0 (4 x device memory)",
     .help = "address space to reserve, rounded up to 1 GiB"},
    {.name = "chunk_max", .kind = OPT_SIZE, .offset = FIELD(chunk_max),
     .syntax = "size", .fallback = "0 (one granularity page)",
     .help = "largest physical handle, a multiple of the granularity"},
    {.name = "chunk_large", .kind = OPT_SIZE, .offset = FIELD(chunk_large),
     .has_unbounded = true, .unbounded = CUA_CHUNK_LARGE_NONE,
     .syntax = "size, all or none", .fallback = "0 (32 MiB)",
     .help = "runs of at least this many unmapped bytes map handles of this size; "
             "all or none: chunk_max everywhere"},
    {.name = "growth_slack", .kind = OPT_SIZE, .offset = FIELD(growth_slack),
     .syntax = "size", .fallback = "0 (1/128 of the demand peak, at least one page, at most 64 MiB)",
     .help = "bytes mapped past the demand peak before the footprint cap swaps cached pages"},
    {.name = "floor", .kind = OPT_SIZE, .offset = FIELD(floor),
     .syntax = "size", .fallback = "0",
     .help = "bytes kept mapped through trims (not through a trim that lets an allocation succeed); "
             "at most a non-zero limit"},
    {.name = "priority", .kind = OPT_INT, .offset = FIELD(priority),
     .syntax = "integer >= 0", .fallback = "0",
     .help = "lower priorities give cached memory first when cua_trim_idle or an out-of-memory "
             "needs some"},
    {.name = "idle_ms", .kind = OPT_UINT, .offset = FIELD(idle_ms),
     .syntax = "milliseconds", .fallback = "0 (never)",
     .help = "an arena without alloc or free for this long is trimmed by cua_trim_idle and the "
             "janitor"},
    {.name = "backend", .kind = OPT_WORD, .offset = FIELD(backend_kind), .words = backend_words,
     .syntax = "host, cuda or auto",
     .fallback = "host (default arenas, cua_arena_create_conf() and Python: auto)",
     .help = "where an arena created without a backend takes memory: a host backend of its "
             "own, the device's shared CUDA backend, or CUDA where the device exists"},
    {.name = "thread_cache", .kind = OPT_WORD, .offset = FIELD(thread_cache),
     .words = thread_cache_words, .syntax = "auto, on or off", .fallback = "auto",
     .help = "per-thread caches of freed small blocks, so threads sharing the arena scale; "
             "auto: on once threads wait for the arena's lock"},
    {.name = "thread_cache_bytes", .kind = OPT_SIZE, .offset = FIELD(thread_cache_bytes),
     .syntax = "size", .fallback = "0 (8 MiB)",
     .help = "most bytes one thread's cache holds for the arena"},
    {.name = "thread_cache_max", .kind = OPT_SIZE, .offset = FIELD(thread_cache_max),
     .syntax = "size", .fallback = "0 (1 MiB)",
     .help = "largest block a thread cache keeps"},
    {.name = "check", .kind = OPT_FLAG, .flag = CUA_ARENA_CHECK_ALWAYS,
     .syntax = "0 or 1", .fallback = "0",
     .help = "1: run cua_arena_check() after every alloc, free and trim (slow)"},
    {.name = "footprint_cap", .kind = OPT_FLAG, .flag = CUA_ARENA_NO_FOOTPRINT_CAP,
     .flag_when_zero = true, .syntax = "0 or 1", .fallback = "1",
     .help = "1: keep mapped bytes near the demand peak by giving back cached pages; "
             "0: never (sets CUA_ARENA_NO_FOOTPRINT_CAP)"},
    {.name = "mapped_placement", .kind = OPT_FLAG, .flag = CUA_ARENA_BLIND_PLACEMENT,
     .flag_when_zero = true, .syntax = "0 or 1", .fallback = "1",
     .help = "1: a block that best fit would put on unmapped pages goes where the fewest "
             "pages must be mapped; 0: best fit alone (sets CUA_ARENA_BLIND_PLACEMENT)"},
    {.name = "evict_fragments", .kind = OPT_FLAG, .flag = CUA_ARENA_EVICT_FRAGMENTS,
     .syntax = "0 or 1", .fallback = "0",
     .help = "1: the footprint cap and the limit give back the smallest idle fragments first, "
             "only what a growth needs; 0: the oldest idle pages, down to the demand peak "
             "(1 sets CUA_ARENA_EVICT_FRAGMENTS)"},
    {.name = "delayed_unmap", .kind = OPT_FLAG, .flag = CUA_ARENA_DELAYED_UNMAP,
     .syntax = "0 or 1", .fallback = "0",
     .help = "1: the old places of pages a growth moves are unmapped later (a trim, the idle "
             "trim, the janitor, or a growth over them); 0: in the growth (1 sets "
             "CUA_ARENA_DELAYED_UNMAP)"},
    {.name = "keep_mapped", .kind = OPT_FLAG, .flag = CUA_ARENA_KEEP_MAPPED,
     .syntax = "0 or 1", .fallback = "0",
     .help = "1: pages once mapped stay mapped until cua_arena_trim, an offload (whose restore "
             "maps them all again) or the destroy: memory a captured CUDA graph replays into "
             "(sets CUA_ARENA_KEEP_MAPPED)"},
    {.name = "poison", .kind = OPT_FLAG, .flag = CUA_ARENA_POISON,
     .syntax = "0 or 1", .fallback = "0 (1 in builds of debug_level 2)",
     .help = "1: fill freed blocks with 0xDE on their stream, so a use after free shows (sets "
             "CUA_ARENA_POISON; one driver call per free)"},
    {.name = "scrub", .kind = OPT_FLAG, .flag = CUA_ARENA_SCRUB,
     .syntax = "0 or 1", .fallback = "0",
     .help = "1: zero the host copies of an offloaded arena (its image, the staging buffers) "
             "once restored, so no copy of its data stays readable (sets CUA_ARENA_SCRUB)"},
    {.name = "nvtx", .kind = OPT_FLAG, .flag = CUA_ARENA_NVTX,
     .syntax = "0 or 1",
     .fallback = "0 (arenas of whole segments register anyway while NVTX_INJECTION64_PATH is set)",
     .help = "1: register the arena's segments and blocks with NVTX, so compute-sanitizer sees "
             "each block as an allocation; implies vmm:0 (sets CUA_ARENA_NVTX)"},
    {.name = "vmm", .kind = OPT_FLAG, .flag = CUA_ARENA_NO_VMM,
     .flag_when_zero = true, .syntax = "0 or 1", .fallback = "1",
     .help = "1: expandable segments on virtual memory management when the device has it; "
             "0: whole segments from cuMemAlloc (sets CUA_ARENA_NO_VMM)"},
    {.name = "peers", .kind = OPT_DEVICES, .offset = FIELD(peers),
     .syntax = "device ordinals joined by +, or none", .fallback = "none",
     .help = "other devices that may read and write the arena's memory (peer access: "
             "every mapping, now and after trims, regrowth and restores); refused when a "
             "device cannot reach the arena's"},
};

bool _cua_config_option(size_t i, cua_option_info *out)
{
    if (!out || i >= CUA_ARRAY_LEN(options)) return false;
    *out = (cua_option_info){options[i].name, options[i].syntax, options[i].fallback,
                             options[i].help};
    return true;
}

/* ---- defaults ------------------------------------------------------------------ */

static void config_defaults(cua_arena_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    cfg->name = NULL;
    cfg->backend = NULL;
    cfg->backend_kind = CUA_BACKEND_AUTO;
    cfg->device = 0;
    cfg->limit = 0;
    cfg->release_threshold = CUA_KEEP_ALL;
    cfg->va_size = 0;
    cfg->chunk_max = 0;
    cfg->chunk_large = 0;
    cfg->growth_slack = 0;
    cfg->thread_cache = CUA_THREAD_CACHE_AUTO;
#if CUA_DEBUG >= 2
    cfg->flags = CUA_ARENA_POISON; /* the full debug tier poisons freed memory */
#else
    cfg->flags = 0;
#endif
}

void cua_arena_config_init_sized(cua_arena_config *cfg, size_t size)
{
    if (!cfg || size < CUA_CONFIG_SIZE_V1) return;
    cua_arena_config d;
    config_defaults(&d);
    d.struct_size = size;
    /* An older caller's struct is a prefix of ours; a newer one's fields
     * after ours are zero (their defaults, in the release that added them). */
    memset(cfg, 0, size);
    memcpy(cfg, &d, _cua_min(size, sizeof d));
}

cua_status _cua_config_import(const cua_arena_config *in, cua_arena_config *out)
{
    if (in->struct_size < CUA_CONFIG_SIZE_V1)
        return _cua_error(CUA_ERR_INVALID_ARG, "the arena config says it has %zu bytes: fill it "
                          "with cua_arena_config_init() first", in->struct_size);
    config_defaults(out);
    memcpy(out, in, _cua_min(in->struct_size, sizeof *out));
    const unsigned char *extra = (const unsigned char *)in + sizeof *out;
    for (size_t i = 0; in->struct_size > sizeof *out && i < in->struct_size - sizeof *out; i++)
        if (extra[i])
            return _cua_error(CUA_ERR_NOT_SUPPORTED, "the arena config sets options this "
                              "library (%s) does not know: its header is newer", CUA_VERSION);
    out->struct_size = sizeof *out;
    return CUA_OK;
}

/* ---- small text helpers ---------------------------------------------------------- */

/* A piece of the text being parsed: `len` bytes from offset `at`. */
struct span {
    size_t at, len;
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static struct span trim(const char *text, struct span sp)
{
    while (sp.len && is_space(text[sp.at])) sp.at++, sp.len--;
    while (sp.len && is_space(text[sp.at + sp.len - 1])) sp.len--;
    return sp;
}

/* The length to give "%.*s" so that quotes of user text stay short. */
static int quote_len(size_t len) { return (int)(len < QUOTE_MAX ? len : QUOTE_MAX); }

static bool span_equals(const char *text, struct span sp, const char *word, bool any_case)
{
    size_t n = strlen(word);
    if (sp.len != n) return false;
    return any_case ? strncasecmp(text + sp.at, word, n) == 0
                    : strncmp(text + sp.at, word, n) == 0;
}

/* Read the decimal digits at s[*i..len) into *v; false if there are none or
 * they pass `max`. */
static bool read_decimal(const char *s, size_t len, size_t *i, uint64_t max, uint64_t *v,
                         bool *overflow)
{
    size_t start = *i;
    uint64_t x = 0;
    *overflow = false;
    for (; *i < len && is_digit(s[*i]); (*i)++) {
        unsigned d = (unsigned)(s[*i] - '0');
        if (x > (max - d) / 10) *overflow = true;
        if (!*overflow) x = x * 10 + d;
    }
    *v = x;
    return *i > start && !*overflow;
}

/* ---- sizes ------------------------------------------------------------------------ */

/* The shift of a unit letter (K, M, G, T, any case), or 0 if it is none. */
static unsigned unit_shift(char c)
{
    switch (c) {
    case 'k': case 'K': return 10;
    case 'm': case 'M': return 20;
    case 'g': case 'G': return 30;
    case 't': case 'T': return 40;
    default: return 0;
    }
}

/* Skip an optional "B", or "iB" after a unit letter, at s[*i]. */
static void skip_byte_suffix(const char *s, size_t len, size_t *i, bool after_unit)
{
    if (*i < len && (s[*i] == 'b' || s[*i] == 'B')) {
        (*i)++;
    } else if (after_unit && *i + 1 < len && (s[*i] == 'i' || s[*i] == 'I') &&
               (s[*i + 1] == 'b' || s[*i + 1] == 'B')) {
        *i += 2;
    }
}

cua_status _cua_config_parse_size(const char *s, size_t len, size_t *out)
{
    if (!s || !out) return _cua_error(CUA_ERR_INVALID_ARG, "_cua_config_parse_size: NULL argument");
    struct span sp = trim(s, (struct span){0, len});
    const char *t = s + sp.at;
    int q = quote_len(sp.len);
    if (sp.len == 0) return _cua_error(CUA_ERR_CONFIG, "the size is empty");

    size_t i = 0;
    uint64_t v;
    bool overflow;
    if (!read_decimal(t, sp.len, &i, SIZE_MAX, &v, &overflow)) {
        if (overflow) return _cua_error(CUA_ERR_CONFIG, "size '%.*s' is too large", q, t);
        return _cua_error(CUA_ERR_CONFIG,
                          "size '%.*s' does not start with a digit (a byte count like "
                          "4096, 512M or 2GiB)", q, t);
    }
    unsigned shift = i < sp.len ? unit_shift(t[i]) : 0;
    if (shift) i++;
    skip_byte_suffix(t, sp.len, &i, shift != 0);
    if (i < sp.len) {
        if (t[i] == '.' || t[i] == ',')
            return _cua_error(CUA_ERR_CONFIG, "size '%.*s' is not a whole number", q, t);
        return _cua_error(CUA_ERR_CONFIG,
                          "size '%.*s' has '%.*s' after the number (units: K, M, G, T, "
                          "optionally followed by B or iB)",
                          q, t, quote_len(sp.len - i), t + i);
    }
    if (v > (SIZE_MAX >> shift))
        return _cua_error(CUA_ERR_CONFIG, "size '%.*s' is too large", q, t);
    *out = (size_t)(v << shift);
    return CUA_OK;
}

/* ---- the option string -------------------------------------------------------------- */

/* What is being parsed, for messages: "CUARENA_CONF" or "option string". */
struct source {
    const char *name;
    const char *text;
};

static const struct option *find_option(const char *text, struct span key)
{
    for (size_t i = 0; i < CUA_ARRAY_LEN(options); i++)
        if (span_equals(text, key, options[i].name, false)) return &options[i];
    return NULL;
}

/* "device, limit, ..." into buf. */
static const char *known_keys(char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < CUA_ARRAY_LEN(options) && n < cap; i++) {
        int w = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", options[i].name);
        if (w < 0) break;
        n += (size_t)w;
    }
    return buf;
}

static cua_status bad_value(const struct source *src, const struct option *opt,
                            struct span val, const char *why)
{
    return _cua_error(CUA_ERR_CONFIG, "%s: bad value '%.*s' for '%s' at offset %zu: %s",
                      src->name, quote_len(val.len), src->text + val.at, opt->name, val.at,
                      why);
}

/* OPT_INT (at most INT_MAX) and OPT_UINT (at most UINT_MAX): a decimal >= 0. */
static cua_status apply_integer(const struct source *src, const struct option *opt,
                                struct span val, cua_arena_config *cfg)
{
    size_t i = 0;
    uint64_t v;
    bool overflow;
    uint64_t max = opt->kind == OPT_INT ? (uint64_t)INT_MAX : (uint64_t)UINT_MAX;
    if (!read_decimal(src->text + val.at, val.len, &i, max, &v, &overflow) || i != val.len)
        return bad_value(src, opt, val, overflow ? "too large" : "not an integer >= 0");
    if (opt->kind == OPT_INT) {
        int x = (int)v;
        memcpy((char *)cfg + opt->offset, &x, sizeof x);
    } else {
        unsigned x = (unsigned)v;
        memcpy((char *)cfg + opt->offset, &x, sizeof x);
    }
    return CUA_OK;
}

static cua_status apply_size(const struct source *src, const struct option *opt,
                             struct span val, cua_arena_config *cfg)
{
    size_t x;
    if (span_equals(src->text, val, "all", true) || span_equals(src->text, val, "none", true)) {
        if (!opt->has_unbounded)
            return bad_value(src, opt, val, "this option takes a byte count");
        x = opt->unbounded;
    } else if (_cua_config_parse_size(src->text + val.at, val.len, &x) != CUA_OK) {
        return _cua_error_wrap(CUA_ERR_CONFIG, "%s: bad value for '%s' at offset %zu",
                               src->name, opt->name, val.at);
    }
    memcpy((char *)cfg + opt->offset, &x, sizeof x);
    return CUA_OK;
}

static cua_status apply_flag(const struct source *src, const struct option *opt,
                             struct span val, cua_arena_config *cfg)
{
    bool one = span_equals(src->text, val, "1", false);
    if (!one && !span_equals(src->text, val, "0", false))
        return bad_value(src, opt, val, "expected 0 or 1");
    if (one != opt->flag_when_zero)
        cfg->flags |= opt->flag;
    else
        cfg->flags &= ~opt->flag;
    return CUA_OK;
}

static cua_status apply_word(const struct source *src, const struct option *opt,
                             struct span val, cua_arena_config *cfg)
{
    for (int i = 0; opt->words[i]; i++)
        if (span_equals(src->text, val, opt->words[i], true)) {
            memcpy((char *)cfg + opt->offset, &i, sizeof i);
            return CUA_OK;
        }
    return bad_value(src, opt, val, opt->syntax);
}

/* OPT_DEVICES: "none", or ordinals 0 .. CUA_MAX_DEVICES - 1 joined by '+' ("1+2"). */
_Static_assert(CUA_MAX_DEVICES == 64, "the message below says 0..63; a device mask is a uint64_t");
static cua_status apply_devices(const struct source *src, const struct option *opt,
                                struct span val, cua_arena_config *cfg)
{
    uint64_t mask = 0;
    if (!span_equals(src->text, val, "none", true)) {
        const char *t = src->text + val.at;
        for (size_t i = 0; i <= val.len;) {
            size_t n = 0;
            while (i + n < val.len && t[i + n] != '+') n++;
            struct span item = trim(src->text, (struct span){val.at + i, n});
            size_t j = 0;
            uint64_t d;
            bool overflow;
            if (!read_decimal(src->text + item.at, item.len, &j, CUA_MAX_DEVICES - 1, &d, &overflow) ||
                j != item.len)
                return bad_value(src, opt, val, "expected device ordinals 0..63 joined by +, "
                                 "or none");
            mask |= (uint64_t)1 << d;
            i += n + 1;
        }
    }
    memcpy((char *)cfg + opt->offset, &mask, sizeof mask);
    return CUA_OK;
}

static cua_status apply_option(const struct source *src, const struct option *opt,
                               struct span val, cua_arena_config *cfg)
{
    switch (opt->kind) {
    case OPT_INT:
    case OPT_UINT: return apply_integer(src, opt, val, cfg);
    case OPT_SIZE: return apply_size(src, opt, val, cfg);
    case OPT_FLAG: return apply_flag(src, opt, val, cfg);
    case OPT_WORD: return apply_word(src, opt, val, cfg);
    case OPT_DEVICES: return apply_devices(src, opt, val, cfg);
    }
    return _cua_error(CUA_ERR_CONFIG, "%s: option '%s' has no parser", src->name, opt->name);
}

/* The separator of a `key:value` item (':' or '='), or the item's end. */
static size_t find_separator(const char *text, struct span item)
{
    size_t i = item.at, end = item.at + item.len;
    while (i < end && text[i] != ':' && text[i] != '=') i++;
    return i;
}

/* Parse one item (the text between two commas) into cfg. */
static cua_status parse_item(const struct source *src, struct span item, cua_arena_config *cfg)
{
    const char *text = src->text;
    item = trim(text, item);
    if (item.len == 0) return CUA_OK;

    size_t sep = find_separator(text, item);
    struct span key = trim(text, (struct span){item.at, sep - item.at});
    if (key.len == 0)
        return _cua_error(CUA_ERR_CONFIG, "%s: missing key before '%c' at offset %zu", src->name,
                          text[sep], sep);

    const struct option *opt = find_option(text, key);
    if (!opt) {
        char known[512];
        return _cua_error(CUA_ERR_CONFIG, "%s: unknown key '%.*s' at offset %zu (known: %s)",
                          src->name, quote_len(key.len), text + key.at, key.at,
                          known_keys(known, sizeof known));
    }
    size_t item_end = item.at + item.len;
    struct span val = {sep, 0};
    if (sep < item_end) val = trim(text, (struct span){sep + 1, item_end - sep - 1});
    if (val.len == 0)
        return _cua_error(CUA_ERR_CONFIG, "%s: missing value for '%s' at offset %zu (expected %s)",
                          src->name, opt->name, key.at, opt->syntax);
    return apply_option(src, opt, val, cfg);
}

static cua_status parse_text(const struct source *src, cua_arena_config *cfg)
{
    cua_arena_config next = *cfg;
    size_t len = strlen(src->text);
    for (size_t at = 0; at <= len;) {
        size_t n = strcspn(src->text + at, ",");
        cua_status st = parse_item(src, (struct span){at, n}, &next);
        if (st != CUA_OK) return st;
        at += n + 1;
    }
    *cfg = next;
    return CUA_OK;
}

cua_status cua_config_parse(const char *text, cua_arena_config *cfg)
{
    if (!text || !cfg)
        return _cua_error(CUA_ERR_INVALID_ARG, "cua_config_parse: %s is NULL",
                          !text ? "text" : "cfg");
    if (cfg->struct_size < CUA_CONFIG_SIZE_V1)
        return _cua_error(CUA_ERR_INVALID_ARG, "cua_config_parse: the config says it has %zu "
                          "bytes: fill it with cua_arena_config_init() first", cfg->struct_size);
    struct source src = {"option string", text};
    return parse_text(&src, cfg);
}

cua_status cua_config_from_env(cua_arena_config *cfg)
{
    if (!cfg) return _cua_error(CUA_ERR_INVALID_ARG, "cua_config_from_env: cfg is NULL");
    if (cfg->struct_size < CUA_CONFIG_SIZE_V1)
        return _cua_error(CUA_ERR_INVALID_ARG, "cua_config_from_env: the config says it has "
                          "%zu bytes: fill it with cua_arena_config_init() first",
                          cfg->struct_size);
    /* Read on every call, not cached: a program (or a test) may change it. */
    const char *text = getenv("CUARENA_CONF");
    if (!text) return CUA_OK;
    struct source src = {"CUARENA_CONF", text};
    return parse_text(&src, cfg);
}
