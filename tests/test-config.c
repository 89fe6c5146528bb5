/*
 * test-config.c - the built-in defaults, the option string of CUARENA_CONF
 * (every key, units, words, separators, whitespace), its errors (each leaves
 * the config unchanged and names the key), and the environment variable.
 */
#include "api/config.h"

#include "test.h"

/* The flags an option string set: those beyond the defaults (a build of
 * debug_level 2 turns poisoning on by default). */
static unsigned set_flags(const cua_arena_config *cfg)
{
    cua_arena_config d;
    cua_arena_config_init(&d);
    return cfg->flags & ~d.flags;
}

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A config with every field off its default, to see what a parse changes. */
static cua_arena_config marked_config(void)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "marked";
    cfg.device = 7;
    cfg.limit = 1111 * 512;
    cfg.release_threshold = 2222 * 512;
    cfg.va_size = 3333 * 512;
    cfg.chunk_max = 4444 * 512;
    cfg.chunk_large = 4545 * 512;
    cfg.growth_slack = 5555 * 512;
    cfg.floor = 6666 * 512;
    cfg.priority = 3;
    cfg.idle_ms = 77;
    cfg.flags = CUA_ARENA_CHECK_ALWAYS;
    return cfg;
}

static int same_config(const cua_arena_config *a, const cua_arena_config *b)
{
    return a->name == b->name && a->backend == b->backend && a->device == b->device &&
           a->limit == b->limit && a->release_threshold == b->release_threshold &&
           a->va_size == b->va_size && a->chunk_max == b->chunk_max &&
           a->chunk_large == b->chunk_large &&
           a->growth_slack == b->growth_slack && a->floor == b->floor &&
           a->priority == b->priority && a->idle_ms == b->idle_ms && a->flags == b->flags &&
           a->peers == b->peers;
}

/* Parse `text` into a fresh default config and return its limit via *out. */
static cua_status parse_limit(const char *text, size_t *out)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cua_status st = cua_config_parse(text, &cfg);
    *out = cfg.limit;
    return st;
}

/* The text must be refused with CUA_ERR_CONFIG, leave cfg as it was, and
 * the message must contain `mention`. */
static int refused(const char *text, const char *mention)
{
    cua_arena_config cfg = marked_config(), before = cfg;
    cua_status st = cua_config_parse(text, &cfg);
    int ok = st == CUA_ERR_CONFIG && same_config(&cfg, &before) &&
             strstr(cua_last_error(), mention) != NULL;
    if (!ok)
        fprintf(stderr, "parse of \"%s\": %s, message \"%s\" (wanted CUA_ERR_CONFIG naming "
                "'%s', config unchanged: %s)\n",
                text, cua_status_name(st), cua_last_error(), mention,
                same_config(&cfg, &before) ? "yes" : "no");
    return ok;
}

/* A text to refuse, and what the message must name. */
typedef struct refusal {
    const char *text, *mention;
} refusal;

/* Each row of the table is refused (refused() says what went wrong). */
static int all_refused(const refusal *rows, size_t n)
{
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= refused(rows[i].text, rows[i].mention);
    return ok;
}
#define ALL_REFUSED(rows) all_refused(rows, sizeof rows / sizeof rows[0])

TEST(defaults)
{
    cua_arena_config cfg;
    memset(&cfg, 0xab, sizeof cfg);
    cua_arena_config_init(&cfg);
    CHECK(cfg.name == NULL);
    CHECK(cfg.backend == NULL);
    CHECK(cfg.device == 0);
    CHECK(cfg.limit == 0);
    CHECK(cfg.release_threshold == CUA_KEEP_ALL);
    CHECK(cfg.va_size == 0);
    CHECK(cfg.chunk_max == 0);
    CHECK(cfg.growth_slack == 0);
    CHECK(cfg.floor == 0 && cfg.priority == 0 && cfg.idle_ms == 0);
    CHECK(set_flags(&cfg) == 0);
    cua_arena_config_init(NULL); /* does nothing */
}

TEST(every_key)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    CHECK_OK(cua_config_parse("device:3,limit:8G,release_threshold:512M,va_size:1T,"
                              "chunk_max:64M,chunk_large:128M,growth_slack:2M,check:1,footprint_cap:0",
                              &cfg));
    CHECK(cfg.device == 3);
    CHECK(cfg.limit == (size_t)8 << 30);
    CHECK(cfg.release_threshold == (size_t)512 << 20);
    CHECK(cfg.va_size == (size_t)1 << 40);
    CHECK(cfg.chunk_max == (size_t)64 << 20);
    CHECK(cfg.chunk_large == (size_t)128 << 20);
    CHECK_OK(cua_config_parse("chunk_large:none", &cfg));
    CHECK(cfg.chunk_large == CUA_CHUNK_LARGE_NONE);
    CHECK(cfg.growth_slack == (size_t)2 << 20);
    CHECK(set_flags(&cfg) == (CUA_ARENA_CHECK_ALWAYS | CUA_ARENA_NO_FOOTPRINT_CAP));
    CHECK(cfg.name == NULL && cfg.backend == NULL);

    CHECK_OK(cua_config_parse("check:0", &cfg));
    CHECK(set_flags(&cfg) == CUA_ARENA_NO_FOOTPRINT_CAP);
    CHECK_OK(cua_config_parse("footprint_cap:1", &cfg));
    CHECK(set_flags(&cfg) == 0);
    CHECK_OK(cua_config_parse("footprint_cap:0,check:1", &cfg));
    CHECK(set_flags(&cfg) == (CUA_ARENA_CHECK_ALWAYS | CUA_ARENA_NO_FOOTPRINT_CAP));
    CHECK_OK(cua_config_parse("vmm:0", &cfg));
    CHECK(set_flags(&cfg) == (CUA_ARENA_CHECK_ALWAYS | CUA_ARENA_NO_FOOTPRINT_CAP | CUA_ARENA_NO_VMM));
    CHECK_OK(cua_config_parse("vmm:1", &cfg));
    CHECK(set_flags(&cfg) == (CUA_ARENA_CHECK_ALWAYS | CUA_ARENA_NO_FOOTPRINT_CAP));
    CHECK_OK(cua_config_parse("poison:1,scrub:1", &cfg));
    CHECK((cfg.flags & (CUA_ARENA_POISON | CUA_ARENA_SCRUB)) == (CUA_ARENA_POISON | CUA_ARENA_SCRUB));
    CHECK_OK(cua_config_parse("poison:0,scrub:0", &cfg));
    CHECK((cfg.flags & (CUA_ARENA_POISON | CUA_ARENA_SCRUB)) == 0);
    CHECK_OK(cua_config_parse("device:0", &cfg));
    CHECK(cfg.device == 0);
    CHECK_OK(cua_config_parse("device:2147483647", &cfg));
    CHECK(cfg.device == 2147483647);
    CHECK_OK(cua_config_parse("floor:1G,priority:5,idle_ms:2000", &cfg));
    CHECK(cfg.floor == (size_t)1 << 30 && cfg.priority == 5 && cfg.idle_ms == 2000);
    CHECK_OK(cua_config_parse("idle_ms:4294967295", &cfg));
    CHECK(cfg.idle_ms == 4294967295u);
}

TEST(parse_keeps_other_fields)
{
    cua_arena_config cfg = marked_config(), want = cfg;
    CHECK_OK(cua_config_parse("limit:4G", &cfg));
    want.limit = (size_t)4 << 30;
    CHECK(same_config(&cfg, &want));
    /* a later item overrides an earlier one */
    CHECK_OK(cua_config_parse("limit:1G,limit:2G", &cfg));
    CHECK(cfg.limit == (size_t)2 << 30);
}

TEST(size_units)
{
    static const struct { const char *text; size_t want; } cases[] = {
        {"limit:0", 0},
        {"limit:512", 512},
        {"limit:512B", 512},
        {"limit:512b", 512},
        {"limit:1k", 1024},
        {"limit:1K", 1024},
        {"limit:1KB", 1024},
        {"limit:1kib", 1024},
        {"limit:1KiB", 1024},
        {"limit:3M", (size_t)3 << 20},
        {"limit:3mb", (size_t)3 << 20},
        {"limit:2GiB", (size_t)2 << 30},
        {"limit:2g", (size_t)2 << 30},
        {"limit:1T", (size_t)1 << 40},
        {"limit:1tib", (size_t)1 << 40},
        {"limit:007M", (size_t)7 << 20},
        {"limit:16777215T", (size_t)16777215 << 40},
        {"limit:18446744073709551615", SIZE_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t got = 1;
        cua_status st = parse_limit(cases[i].text, &got);
        if (st != CUA_OK || got != cases[i].want)
            fprintf(stderr, "%s: %s, %zu\n", cases[i].text, cua_status_name(st), got);
        CHECK_OK(st);
        CHECK(got == cases[i].want);
    }
}

TEST(all_and_none)
{
    cua_arena_config cfg = marked_config();
    CHECK_OK(cua_config_parse("limit:none,release_threshold:all", &cfg));
    CHECK(cfg.limit == 0);
    CHECK(cfg.release_threshold == CUA_KEEP_ALL);
    cfg = marked_config();
    CHECK_OK(cua_config_parse("limit:all,release_threshold:none", &cfg));
    CHECK(cfg.limit == 0);
    CHECK(cfg.release_threshold == CUA_KEEP_ALL);
    CHECK_OK(cua_config_parse("release_threshold:0", &cfg));
    CHECK(cfg.release_threshold == 0);
    CHECK_OK(cua_config_parse("release_threshold:ALL", &cfg));
    CHECK(cfg.release_threshold == CUA_KEEP_ALL);
    /* the words belong to limit and release_threshold only */
}

TEST(separators_and_whitespace)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    CHECK_OK(cua_config_parse("limit=8G,device:1,check=1", &cfg));
    CHECK(cfg.limit == (size_t)8 << 30 && cfg.device == 1 && set_flags(&cfg) == CUA_ARENA_CHECK_ALWAYS);

    cua_arena_config_init(&cfg);
    CHECK_OK(cua_config_parse("  limit : 4G ,\tdevice= 2 ,\n va_size\t=\t2T  ", &cfg));
    CHECK(cfg.limit == (size_t)4 << 30 && cfg.device == 2 && cfg.va_size == (size_t)2 << 40);

    cua_arena_config before = marked_config();
    cfg = before;
    CHECK_OK(cua_config_parse("", &cfg));
    CHECK_OK(cua_config_parse("   ", &cfg));
    CHECK_OK(cua_config_parse(",", &cfg));
    CHECK_OK(cua_config_parse(" , ,", &cfg));
    CHECK(same_config(&cfg, &before));
    CHECK_OK(cua_config_parse("limit:1M,", &cfg));
    CHECK(cfg.limit == (size_t)1 << 20);
}

/* peers: device ordinals 0..63 joined by '+', or none. */
TEST(peers_list)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    CHECK(cfg.peers == 0);
    CHECK_OK(cua_config_parse("peers:1+2", &cfg));
    CHECK(cfg.peers == (CUA_PEER(1) | CUA_PEER(2)));
    CHECK_OK(cua_config_parse("peers = 0 + 63 ,device:1", &cfg));
    CHECK(cfg.peers == (CUA_PEER(0) | CUA_PEER(63)) && cfg.device == 1);
    CHECK_OK(cua_config_parse("peers:5", &cfg));
    CHECK(cfg.peers == CUA_PEER(5));
    CHECK_OK(cua_config_parse("peers:NONE", &cfg));
    CHECK(cfg.peers == 0);
}

/* Texts refused with CUA_ERR_CONFIG, the config left as it was, the message
 * naming what is wrong. */
TEST(refusals)
{
    static const refusal rows[] = {
        /* values out of range or of the wrong kind */
        {"idle_ms:4294967296", "too large"},
        {"idle_ms:-1", "idle_ms"},
        {"priority:x", "priority"},
        {"floor:all", "floor"},
        /* all and none belong to limit and release_threshold only */
        {"va_size:all", "va_size"},
        {"chunk_max:none", "chunk_max"},
        {"growth_slack:all", "growth_slack"},
        {"device:none", "device"},
        /* unknown keys */
        {"foo:1", "'foo'"},
        {"foo:1", "known: device, limit, release_threshold"},
        {"limit:8G, foo:1", "offset 10"},
        {"Limit:8G", "'Limit'"},
        {"lim:8G", "'lim'"},
        {"limit_:8G", "'limit_'"},
        {"limit 8G", "'limit 8G'"}, /* no separator: the whole item is the key */
        {":5", "missing key"},
        {"=5", "offset 0"},
        /* a good item before the bad one is not applied either */
        {"limit:8G,device:1,foo:1", "foo"},
        /* the list of known keys names every key */
        {"x:1", "growth_slack, floor, priority, idle_ms, backend, thread_cache, "
                "thread_cache_bytes, thread_cache_max, check, footprint_cap, mapped_placement, "
                "evict_fragments, delayed_unmap, keep_mapped, poison, scrub, nvtx, vmm, peers"},
        /* peers: ordinals 0..63 joined by '+' */
        {"peers:64", "peers"},
        {"peers:1+", "'1+'"},
        {"peers:+1", "ordinals"},
        {"peers:1+x", "ordinals"},
        {"peers:-1", "peers"},
        {"peers:1,2", "'2'"}, /* a comma ends the item */
        /* missing values */
        {"limit", "'limit'"},
        {"limit:", "'limit'"},
        {"limit=  ", "'limit'"},
        {"device:1,check", "'check'"},
        {"device:1,check:", "offset 9"},
        {"footprint_cap:,limit:1G", "missing value"},
        /* bad numbers */
        {"limit:x", "'limit'"},
        {"limit:1.5G", "'limit'"},
        {"limit:1.5G", "whole number"},
        {"limit:-1", "'limit'"},
        {"limit:+1", "'limit'"},
        {"limit:0x10", "'limit'"},
        {"limit:G", "'limit'"},
        {"limit:1iB", "'limit'"},
        {"limit:1P", "'limit'"},
        {"release_threshold:nothing", "'release_threshold'"},
        {"device:x", "'device'"},
        {"device:-1", "'device'"},
        {"device:1G", "'device'"},
        {"device:2147483648", "'device'"},
        {"check:2", "'check'"},
        {"check:yes", "'check'"},
        {"check:01", "'check'"},
        {"footprint_cap:true", "'footprint_cap'"},
        /* trailing junk */
        {"limit:8Gx", "'limit'"},
        {"limit:8GiBB", "'limit'"},
        {"limit:8 G", "'limit'"},
        {"limit:8G:9", "'limit'"},
        {"va_size:1T;chunk_max:2M", "'va_size'"},
        {"device:1x", "'device'"},
        {"check:1 1", "'check'"},
        {"chunk_max:2M=3", "offset 10"},
        /* overflow */
        {"limit:99999999999T", "'limit'"},
        {"limit:99999999999T", "too large"},
        {"limit:16777216T", "too large"}, /* 2^64 */
        {"limit:18446744073709551616", "too large"},
        {"va_size:99999999999999999999999999", "'va_size'"},
        {"growth_slack:17179869184G", "'growth_slack'"},
        {"device:99999999999999999999", "'device'"},
    };
    CHECK(ALL_REFUSED(rows));
}

TEST(null_arguments)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    CHECK_ST(cua_config_parse(NULL, &cfg), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_config_parse("limit:1G", NULL), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_config_from_env(NULL), CUA_ERR_INVALID_ARG);
    size_t v;
    CHECK_ST(_cua_config_parse_size(NULL, 0, &v), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_config_parse_size("1", 1, NULL), CUA_ERR_INVALID_ARG);
}

TEST(parse_size_helper)
{
    size_t v = 0;
    CHECK_OK(_cua_config_parse_size("512Mxxx", 4, &v)); /* reads only len bytes */
    CHECK(v == (size_t)512 << 20);
    CHECK_OK(_cua_config_parse_size(" 2GiB\t", 6, &v));
    CHECK(v == (size_t)2 << 30);
    CHECK_OK(_cua_config_parse_size("0", 1, &v));
    CHECK(v == 0);
    v = 99;
    CHECK_ST(_cua_config_parse_size("", 0, &v), CUA_ERR_CONFIG);
    CHECK_ST(_cua_config_parse_size("12X", 3, &v), CUA_ERR_CONFIG);
    CHECK(strstr(cua_last_error(), "12X") != NULL);
    CHECK_ST(_cua_config_parse_size("all", 3, &v), CUA_ERR_CONFIG);
    CHECK(v == 99); /* untouched on error */
}

/* An arena from a name and an option string (for bindings). */
TEST(arena_from_an_option_string)
{
    cua_arena *a;
    cua_stats st;
    const char *name;
    CHECK_OK(cua_arena_create_conf("enc", "limit:8M,release_threshold:0,backend:host,check:1", &a));
    CHECK_OK(cua_arena_get_stats(a, &st));
    CHECK(st.limit_bytes == (size_t)8 << 20);
    CHECK_OK(cua_arena_name(a, &name));
    CHECK(strcmp(name, "enc") == 0);
    void *p;
    CHECK_ST(cua_arena_alloc(a, (size_t)10 << 20, 0, &p), CUA_ERR_LIMIT);
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_ST(cua_arena_create_conf("x", "limit:lots", &a), CUA_ERR_CONFIG);
    CHECK(strstr(cua_last_error(), "limit") != NULL);
    CHECK_ST(cua_arena_create_conf("x", "backend:gpu", &a), CUA_ERR_CONFIG);
    CHECK_ST(cua_arena_create_conf("x", NULL, NULL), CUA_ERR_INVALID_ARG);
    /* backend:cuda is the device's shared backend, or no device at all */
    cua_backend *shared = NULL;
    cua_status have = cua_device_backend(0, &shared);
    cua_status got = cua_arena_create_conf("x", "backend:cuda", &a);
    /* (a build without the CUDA backend answers both with CUA_ERR_NOT_SUPPORTED) */
    CHECK(got == (have == CUA_OK || have == CUA_ERR_NOT_SUPPORTED ? have : CUA_ERR_NO_DEVICE));
    if (got == CUA_OK) {
        CHECK_ST(cua_backend_destroy(shared), CUA_ERR_BUSY); /* shared: never destroyed */
        CHECK_OK(cua_arena_destroy(a, 0));
    }
}

TEST(from_env)
{
    cua_arena_config cfg = marked_config(), before = cfg;
    CHECK(unsetenv("CUARENA_CONF") == 0);
    CHECK_OK(cua_config_from_env(&cfg));
    CHECK(same_config(&cfg, &before));

    CHECK(setenv("CUARENA_CONF", "", 1) == 0);
    CHECK_OK(cua_config_from_env(&cfg));
    CHECK(same_config(&cfg, &before));

    CHECK(setenv("CUARENA_CONF", "limit:1G, footprint_cap=0", 1) == 0);
    CHECK_OK(cua_config_from_env(&cfg));
    CHECK(cfg.limit == (size_t)1 << 30);
    CHECK(set_flags(&cfg) == (CUA_ARENA_CHECK_ALWAYS | CUA_ARENA_NO_FOOTPRINT_CAP));
    CHECK(cfg.device == before.device);

    /* read again on every call: a change is seen at once */
    CHECK(setenv("CUARENA_CONF", "limit:2G", 1) == 0);
    CHECK_OK(cua_config_from_env(&cfg));
    CHECK(cfg.limit == (size_t)2 << 30);

    before = cfg;
    CHECK(setenv("CUARENA_CONF", "limit:3G,bogus:1", 1) == 0);
    CHECK_ST(cua_config_from_env(&cfg), CUA_ERR_CONFIG);
    CHECK(same_config(&cfg, &before));
    CHECK(strstr(cua_last_error(), "CUARENA_CONF") != NULL);
    CHECK(strstr(cua_last_error(), "'bogus'") != NULL);
    CHECK(unsetenv("CUARENA_CONF") == 0);
}

/* ---- every option at its limits ------------------------------------------------------
 * Each key of the option string with 0, 1, its largest value and one less
 * (words and flags: each value they take), parsed, then an arena made with
 * it (or refused with INVALID_ARG, NOT_SUPPORTED, NO_DEVICE or
 * OUT_OF_MEMORY and a message), which then allocates, frees, trims and
 * reports: the checker passes and no figure wraps. The table must name
 * every key config.c knows. */

#define SMAX "18446744073709551615"
#define SMAX1 "18446744073709551614"
#define IMAX "2147483647"
#define IMAX1 "2147483646"
#define UMAX "4294967295"
#define UMAX1 "4294967294"
#define MiB ((size_t)1 << 20)

static const struct {
    const char *key;
    const char *values[4];
} limits[] = {
    {"device", {"0", "1", IMAX, IMAX1}},
    {"limit", {"0", "1", SMAX, SMAX1}},
    {"release_threshold", {"0", "1", SMAX, SMAX1}},
    {"va_size", {"0", "1", SMAX, SMAX1}},
    {"chunk_max", {"0", "1", SMAX, SMAX1}},
    {"chunk_large", {"0", "1", SMAX, SMAX1}},
    {"growth_slack", {"0", "1", SMAX, SMAX1}},
    {"floor", {"0", "1", SMAX, SMAX1}},
    {"priority", {"0", "1", IMAX, IMAX1}},
    {"idle_ms", {"0", "1", UMAX, UMAX1}},
    {"backend", {"host", "cuda", "auto", "host"}},
    {"thread_cache", {"auto", "on", "off", "on"}},
    {"thread_cache_bytes", {"0", "1", SMAX, SMAX1}},
    {"thread_cache_max", {"0", "1", SMAX, SMAX1}},
    {"check", {"0", "1", "1", "0"}},
    {"footprint_cap", {"0", "1", "1", "0"}},
    {"mapped_placement", {"0", "1", "1", "0"}},
    {"evict_fragments", {"0", "1", "1", "0"}},
    {"delayed_unmap", {"0", "1", "1", "0"}},
    {"keep_mapped", {"0", "1", "1", "0"}},
    {"poison", {"0", "1", "1", "0"}},
    {"scrub", {"0", "1", "1", "0"}},
    {"nvtx", {"0", "1", "1", "0"}},
    {"vmm", {"0", "1", "1", "0"}},
    {"peers", {"none", "0", "63", "62"}},
};

static int in_limits(const char *key)
{
    for (size_t i = 0; i < CUA_ARRAY_LEN(limits); i++)
        if (strcmp(limits[i].key, key) == 0) return 1;
    return 0;
}

/* An arena made with `item` works or was refused with words. */
static int arena_at_limit(const char *item)
{
    cua_arena *a = NULL;
    char conf[128];
    snprintf(conf, sizeof conf, "backend:host,va_size:1G,%s", item);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cua_status st = cua_arena_create_conf("limits", conf, &a);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* (a refusal costs no work of the size refused: va_size SIZE_MAX once
     * made a page table of 2^32 entries before the reservation failed, 4
     * minutes when malloc perturbs, as meson's MALLOC_PERTURB_ makes it) */
    if (t1.tv_sec - t0.tv_sec > 5) {
        fprintf(stderr, "  %s: the create took %lld s\n", item, (long long)(t1.tv_sec - t0.tv_sec));
        return 0;
    }
    if (st != CUA_OK) {
        int ok = (st == CUA_ERR_INVALID_ARG || st == CUA_ERR_NOT_SUPPORTED || st == CUA_ERR_NO_DEVICE ||
                  st == CUA_ERR_OUT_OF_MEMORY) && cua_last_error()[0] && !a;
        if (!ok) fprintf(stderr, "  %s: %s: %s\n", item, cua_status_name(st), cua_last_error());
        return ok;
    }
    void *p = NULL, *q = NULL;
    cua_status s1 = cua_arena_alloc(a, 4096, 0, &p), s2 = cua_arena_alloc(a, 3 * MiB, 0x100, &q);
    int ok = (s1 == CUA_OK || s1 == CUA_ERR_LIMIT) && (s2 == CUA_OK || s2 == CUA_ERR_LIMIT);
    cua_stats s;
    ok = ok && cua_arena_get_stats(a, &s) == CUA_OK && s.free_bytes <= s.mapped_bytes &&
         s.cached_bytes <= s.mapped_bytes && s.live_bytes <= s.mapped_bytes;
    if (p) ok = ok && cua_free(p) == CUA_OK;
    if (q) ok = ok && cua_free(q) == CUA_OK;
    size_t released = 0;
    ok = ok && cua_arena_check(a) == CUA_OK && cua_arena_trim(a, 0, &released) == CUA_OK;
    ok = ok && cua_arena_get_stats(a, &s) == CUA_OK && s.live_bytes == 0 && s.free_bytes <= s.mapped_bytes;
    ok = ok && cua_arena_destroy(a, 0) == CUA_OK;
    if (!ok) fprintf(stderr, "  %s: %s\n", item, cua_last_error());
    return ok;
}

TEST(every_option_at_its_limits)
{
    cua_option_info opt;
    for (size_t i = 0; _cua_config_option(i, &opt); i++) {
        if (!in_limits(opt.name)) fprintf(stderr, "  no limits for '%s'\n", opt.name);
        CHECK(in_limits(opt.name));
    }
    int ok = 1;
    for (size_t i = 0; i < CUA_ARRAY_LEN(limits); i++)
        for (int k = 0; k < 4; k++) {
            char item[96];
            cua_arena_config cfg;
            cua_arena_config_init(&cfg);
            snprintf(item, sizeof item, "%s:%s", limits[i].key, limits[i].values[k]);
            if (cua_config_parse(item, &cfg) != CUA_OK) {
                fprintf(stderr, "  %s does not parse: %s\n", item, cua_last_error());
                ok = 0;
                continue;
            }
            ok &= arena_at_limit(item);
        }
    CHECK(ok);
}

/* growth_slack = SIZE_MAX means "pass the demand peak by any amount": the
 * footprint cap never swaps cached pages (peak + slack must not wrap to
 * peak - 1, which made the cap fire on every growth). */
TEST(growth_slack_at_its_largest_means_any_amount)
{
    const char *slacks[] = {SMAX, SMAX1};
    for (int k = 0; k < 2; k++) {
        char conf[96];
        snprintf(conf, sizeof conf, "backend:host,va_size:1G,growth_slack:%s", slacks[k]);
        cua_arena *a = NULL;
        CHECK_OK(cua_arena_create_conf("slack", conf, &a));
        void *x, *y, *z;
        CHECK_OK(cua_arena_alloc(a, 8 * MiB, 0, &x));
        CHECK_OK(cua_arena_alloc(a, 2 * MiB, 0, &y));
        CHECK_OK(cua_free(x)); /* 8 MiB cached; the peak is 10 MiB */
        CHECK_OK(cua_arena_alloc(a, 16 * MiB, 0, &z)); /* does not fit x's room: grows */
        cua_stats s;
        CHECK_OK(cua_arena_get_stats(a, &s));
        CHECK(s.trim_count == 0 && s.cached_bytes == 8 * MiB); /* nothing swapped */
        CHECK_OK(cua_free(y));
        CHECK_OK(cua_free(z));
        CHECK_OK(cua_arena_destroy(a, 0));
    }
}

/* cua_arena_create refuses what the header says it refuses. */
TEST(create_refuses_values_out_of_range)
{
    cua_arena_config cfg;
    cua_arena *a = NULL;
    cua_arena_config_init(&cfg);
    cfg.thread_cache = 99;
    CHECK_ST(cua_arena_create(&cfg, &a), CUA_ERR_INVALID_ARG);
    CHECK(strstr(cua_last_error(), "thread_cache"));
    cfg.thread_cache = -1;
    CHECK_ST(cua_arena_create(&cfg, &a), CUA_ERR_INVALID_ARG);
    cua_arena_config_init(&cfg);
    cfg.flags = 0x4000;
    CHECK_ST(cua_arena_create(&cfg, &a), CUA_ERR_INVALID_ARG);
    CHECK(strstr(cua_last_error(), "flag"));
    cua_arena_config_init(&cfg);
    cfg.device = 64;
    CHECK_ST(cua_arena_create(&cfg, &a), CUA_ERR_INVALID_ARG);
    CHECK(strstr(cua_last_error(), "0..63") && a == NULL);
}
