/*
 * trace.c - the catrace v1 loader (see trace.h and bench/traces/FORMAT.md).
 *
 * Lines come from our own reader over gzread() (zlib reads plain text too):
 * it finds lines with memchr, so it sees NUL bytes and over-long lines, and
 * it checks zlib's error state at end of input, because gzread() reports a
 * truncated gzip stream as a plain end of file.
 *
 * Ids may be any 64-bit numbers; a temporary open-addressing hash table maps
 * them to dense slots while loading and is freed afterwards. Its hash is
 * keyed by a random seed per load, so that no file can make its ids collide
 * (with a fixed one, ids chosen to share the low bits made a load of 100,000
 * lines quadratic). Arena names have a table of the same kind.
 */
#include "trace.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

#define READ_CHUNK (1u << 20) /* bytes per gzread; also the longest line */
#define HEADER "# catrace v1"

/* ---- id -> slot hash table ------------------------------------------------ */

typedef struct id_entry {
    uint64_t id;
    uint32_t slot1; /* slot + 1; 0 = empty */
    uint32_t freed;
} id_entry;

typedef struct id_table {
    id_entry *e;
    size_t cap; /* a power of two */
    size_t count;
    uint64_t seed; /* the hash's key (random per load) */
} id_table;

/* A key for the load's hashes: random, or (no getrandom) the clock and an address. */
static uint64_t hash_seed(void)
{
    uint64_t seed = 0;
#if defined(__linux__)
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed) return seed | 1;
#endif
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&seed) | 1;
}

/* Keyed mix (murmur's finalizer around the key, twice): without the key, ids
 * that share the low bits of the hash cannot be chosen. */
static uint64_t mix(uint64_t x, uint64_t seed)
{
    x ^= seed;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x += seed * 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 29;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 32;
    return x;
}

static size_t id_hash(uint64_t id, const id_table *h) { return (size_t)mix(id, h->seed) & (h->cap - 1); }

/* The entry of `id`, or the empty entry where it would go. */
static id_entry *id_find(id_table *h, uint64_t id)
{
    size_t i = id_hash(id, h);
    while (h->e[i].slot1 && h->e[i].id != id) i = (i + 1) & (h->cap - 1);
    return &h->e[i];
}

static int id_grow(id_table *h)
{
    id_table n = { calloc(h->cap * 2, sizeof(id_entry)), h->cap * 2, h->count, h->seed };
    if (!n.e) return -1;
    for (size_t i = 0; i < h->cap; i++)
        if (h->e[i].slot1) *id_find(&n, h->e[i].id) = h->e[i];
    free(h->e);
    *h = n;
    return 0;
}

/* ---- the line reader ------------------------------------------------------- */

typedef struct reader {
    gzFile gz;
    char *buf;
    size_t start, end; /* unread bytes are buf[start, end) */
    int eof;
    size_t line_no;    /* number of the line last returned */
} reader;

/* Read more input, keeping the unread bytes. 0 ok (maybe at eof), or a status. */
static trace_status reader_fill(reader *r)
{
    memmove(r->buf, r->buf + r->start, r->end - r->start);
    r->end -= r->start;
    r->start = 0;
    if (r->end == READ_CHUNK) return TRACE_ERR_LINE;
    int n = gzread(r->gz, r->buf + r->end, (unsigned)(READ_CHUNK - r->end));
    int errnum = Z_OK;
    if (n > 0) {
        r->end += (size_t)n;
        return TRACE_OK;
    }
    r->eof = 1;
    gzerror(r->gz, &errnum);
    if (n < 0 || errnum != Z_OK) return errnum == Z_ERRNO ? TRACE_ERR_IO : TRACE_ERR_TRUNCATED;
    return TRACE_OK;
}

/* The next line without its end of line (and a trailing CR), NUL-terminated in
 * place; *line = NULL at the end of input. */
static trace_status reader_next(reader *r, char **line, size_t *len)
{
    for (;;) {
        char *p = r->buf + r->start;
        size_t avail = r->end - r->start;
        char *nl = memchr(p, '\n', avail);
        if (nl || (r->eof && avail)) {
            size_t n = nl ? (size_t)(nl - p) : avail;
            r->start += nl ? n + 1 : n;
            r->line_no++;
            if (n && p[n - 1] == '\r') n--;
            p[n] = '\0'; /* safe: nl, or eof left room since end < READ_CHUNK */
            if (memchr(p, '\0', n)) return TRACE_ERR_LINE;
            *line = p;
            *len = n;
            return TRACE_OK;
        }
        if (r->eof) {
            *line = NULL;
            return TRACE_OK;
        }
        trace_status st = reader_fill(r);
        if (st) {
            r->line_no++; /* the error belongs to the line being read */
            return st;
        }
    }
}

/* ---- the loader ------------------------------------------------------------ */

typedef struct loader {
    const char *path;
    trace *t;
    reader rd;
    id_table ids;
    uint32_t *names;    /* arena name -> its index + 1 (open addressing, 0: empty) */
    size_t names_cap;   /* a power of two, or 0 */
    size_t arena_names_cap, marker_names_cap; /* room in t's arrays (grown by doubling) */
    size_t *slot_event; /* slot -> index of its ALLOC event */
    size_t events_cap, slots_cap;
    uint64_t live;
    char *err;
    size_t errcap;
} loader;

static trace_status fail(loader *ld, trace_status st, const char *fmt, ...)
{
    if (!ld->err || !ld->errcap) return st;
    int n = snprintf(ld->err, ld->errcap, "%s:%zu: ", ld->path, ld->rd.line_no);
    if (n < 0 || (size_t)n >= ld->errcap) return st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err + n, ld->errcap - (size_t)n, fmt, ap);
    va_end(ap);
    return st;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 1024;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

static trace_event *push_event(loader *ld)
{
    trace *t = ld->t;
    if (grow((void **)&t->events, &ld->events_cap, t->n_events + 1, sizeof *t->events))
        return NULL;
    trace_event *e = &t->events[t->n_events++];
    memset(e, 0, sizeof *e);
    return e;
}

/* Copy a string into the pool; its offset in *off. */
static int pool_add(trace *t, const char *s, size_t n, uint32_t *off)
{
    if (t->pool_len + n + 1 > UINT32_MAX) return -1;
    if (grow((void **)&t->pool, &t->pool_cap, t->pool_len + n + 1, 1)) return -1;
    memcpy(t->pool + t->pool_len, s, n);
    t->pool[t->pool_len + n] = '\0';
    *off = (uint32_t)t->pool_len;
    t->pool_len += n + 1;
    return 0;
}

/* The next blank-separated token at *p, or 0 length at the end of the line. */
static size_t next_token(char **p, char **tok)
{
    char *s = *p;
    while (*s == ' ' || *s == '\t') s++;
    *tok = s;
    while (*s && *s != ' ' && *s != '\t') s++;
    *p = s;
    return (size_t)(s - *tok);
}

/* A decimal number of digits only (no sign, no blanks); -1 if not, -2 if too large. */
static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (d > 9) return -1;
        if (v > (UINT64_MAX - d) / 10) return -2;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Read a numeric field named `what` into *out. */
static trace_status number_field(loader *ld, char **p, const char *what, uint64_t *out)
{
    char *tok;
    size_t n = next_token(p, &tok);
    if (n == 0) return fail(ld, TRACE_ERR_FIELD, "missing field <%s>", what);
    int r = parse_u64(tok, n, out);
    if (r == -1) return fail(ld, TRACE_ERR_NUMBER, "<%s> is not a number: '%.*s'", what, (int)(n > 40 ? 40 : n), tok);
    if (r == -2) return fail(ld, TRACE_ERR_NUMBER, "<%s> does not fit in 64 bits: '%.*s'", what, (int)(n > 40 ? 40 : n), tok);
    return TRACE_OK;
}

static trace_status no_more_fields(loader *ld, char **p)
{
    char *tok;
    size_t n = next_token(p, &tok);
    if (n) return fail(ld, TRACE_ERR_FIELD, "too many fields: '%.*s'", (int)(n > 40 ? 40 : n), tok);
    return TRACE_OK;
}

static size_t name_hash(const char *s, size_t n, uint64_t seed, size_t cap)
{
    uint64_t h = seed;
    for (size_t i = 0; i < n; i++) h = mix(h ^ (unsigned char)s[i], seed);
    return (size_t)h & (cap - 1);
}

/* The name table's entry of tok[0..n): its index + 1, or the empty entry. */
static uint32_t *name_find(loader *ld, const char *tok, size_t n)
{
    const trace *t = ld->t;
    size_t i = name_hash(tok, n, ld->ids.seed, ld->names_cap);
    for (;; i = (i + 1) & (ld->names_cap - 1)) {
        uint32_t *e = &ld->names[i];
        if (!*e) return e;
        const char *s = t->pool + t->arena_names[*e - 1];
        if (strncmp(s, tok, n) == 0 && s[n] == '\0') return e;
    }
}

/* Room for one more name (the table at most half full). */
static int names_room(loader *ld)
{
    trace *t = ld->t;
    if (ld->names_cap && 2 * ((size_t)t->n_arena_names + 1) <= ld->names_cap) return 0;
    size_t cap = ld->names_cap ? 2 * ld->names_cap : 64;
    uint32_t *old = ld->names;
    size_t old_cap = ld->names_cap;
    if (!(ld->names = calloc(cap, sizeof *ld->names))) {
        ld->names = old;
        return -1;
    }
    ld->names_cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i]) continue;
        const char *s = t->pool + t->arena_names[old[i] - 1];
        *name_find(ld, s, strlen(s)) = old[i];
    }
    free(old);
    return 0;
}

/* 1 + index of the arena name tok[0..n), added to the table if new; 0 on failure. */
static uint32_t arena_index(loader *ld, const char *tok, size_t n)
{
    trace *t = ld->t;
    if (names_room(ld)) return 0;
    uint32_t *e = name_find(ld, tok, n);
    if (*e) return *e;
    if (t->n_arena_names >= UINT16_MAX) return 0;
    uint32_t off;
    /* (by doubling: one element more each time is quadratic where realloc
     * copies, as under ASan: 65,000 names took 61 s) */
    if (grow((void **)&t->arena_names, &ld->arena_names_cap, (size_t)t->n_arena_names + 1,
             sizeof *t->arena_names))
        return 0;
    if (pool_add(t, tok, n, &off)) return 0;
    t->arena_names[t->n_arena_names++] = off;
    *e = t->n_arena_names;
    return t->n_arena_names;
}

static trace_status parse_alloc(loader *ld, char *p)
{
    trace *t = ld->t;
    uint64_t id, size, stream;
    trace_status st;
    if ((st = number_field(ld, &p, "id", &id))) return st;
    if ((st = number_field(ld, &p, "bytes", &size))) return st;
    if ((st = number_field(ld, &p, "stream", &stream))) return st;
    if (size == 0) return fail(ld, TRACE_ERR_SIZE_ZERO, "allocation of 0 bytes (id %llu)", (unsigned long long)id);
    char *tok;
    size_t n = next_token(&p, &tok);
    uint32_t arena = 0;
    if (n) {
        if ((st = no_more_fields(ld, &p))) return st;
        arena = arena_index(ld, tok, n);
        if (!arena) return fail(ld, TRACE_ERR_LIMIT, "more than %u arena names, or out of memory", UINT16_MAX - 1);
    }
    if (t->n_allocs == UINT32_MAX) return fail(ld, TRACE_ERR_LIMIT, "more than %u allocations", UINT32_MAX - 1);
    if (ld->live > UINT64_MAX - size) return fail(ld, TRACE_ERR_NUMBER, "the sum of live sizes overflows 64 bits");
    if ((ld->ids.count + 1) * 2 > ld->ids.cap && id_grow(&ld->ids)) return fail(ld, TRACE_ERR_NOMEM, "out of memory");
    id_entry *h = id_find(&ld->ids, id);
    if (h->slot1) return fail(ld, TRACE_ERR_DUPLICATE_ID, "duplicate id %llu (allocated before)", (unsigned long long)id);
    if (grow((void **)&ld->slot_event, &ld->slots_cap, t->n_allocs + 1, sizeof *ld->slot_event))
        return fail(ld, TRACE_ERR_NOMEM, "out of memory");
    trace_event *e = push_event(ld);
    if (!e) return fail(ld, TRACE_ERR_NOMEM, "out of memory");
    *h = (id_entry){ id, t->n_allocs + 1, 0 };
    ld->ids.count++;
    ld->slot_event[t->n_allocs] = t->n_events - 1;
    *e = (trace_event){ .op = TRACE_ALLOC, .arena = (uint16_t)arena, .slot = t->n_allocs, .size = size, .stream = stream };
    t->n_allocs++;
    ld->live += size;
    if (ld->live > t->peak_live_bytes) {
        t->peak_live_bytes = ld->live;
        t->peak_live_event = t->n_events - 1;
    }
    return TRACE_OK;
}

static trace_status parse_free(loader *ld, char *p)
{
    trace *t = ld->t;
    uint64_t id;
    trace_status st;
    if ((st = number_field(ld, &p, "id", &id))) return st;
    if ((st = no_more_fields(ld, &p))) return st;
    id_entry *h = id_find(&ld->ids, id);
    if (!h->slot1) return fail(ld, TRACE_ERR_UNKNOWN_ID, "free of id %llu, which was never allocated", (unsigned long long)id);
    if (h->freed) return fail(ld, TRACE_ERR_DOUBLE_FREE, "free of id %llu, which is already freed", (unsigned long long)id);
    trace_event *e = push_event(ld);
    if (!e) return fail(ld, TRACE_ERR_NOMEM, "out of memory");
    const trace_event *a = &t->events[ld->slot_event[h->slot1 - 1]];
    *e = (trace_event){ .op = TRACE_FREE, .slot = a->slot, .size = a->size, .stream = a->stream };
    h->freed = 1;
    t->n_frees++;
    ld->live -= a->size;
    return TRACE_OK;
}

/* The marker's name is the rest of the line, without surrounding blanks. */
static trace_status parse_mark(loader *ld, char *p, char *end)
{
    trace *t = ld->t;
    while (*p == ' ' || *p == '\t') p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
    if (end == p) return fail(ld, TRACE_ERR_FIELD, "missing field <name>");
    uint32_t off;
    if (grow((void **)&t->marker_names, &ld->marker_names_cap, (size_t)t->n_markers + 1,
             sizeof *t->marker_names))
        return fail(ld, TRACE_ERR_NOMEM, "out of memory");
    if (t->n_markers == UINT32_MAX || pool_add(t, p, (size_t)(end - p), &off))
        return fail(ld, TRACE_ERR_NOMEM, "out of memory (marker names)");
    trace_event *e = push_event(ld);
    if (!e) return fail(ld, TRACE_ERR_NOMEM, "out of memory");
    *e = (trace_event){ .op = TRACE_MARK, .slot = t->n_markers };
    t->marker_names[t->n_markers++] = off;
    return TRACE_OK;
}

static trace_status parse_line(loader *ld, char *line, size_t len)
{
    char *p = line, *tok;
    size_t n = next_token(&p, &tok);
    if (n == 0 || tok[0] == '#') return TRACE_OK; /* blank line or comment */
    if (n == 1 && tok[0] == 'a') return parse_alloc(ld, p);
    if (n == 1 && tok[0] == 'f') return parse_free(ld, p);
    if (n == 1 && tok[0] == 'm') return parse_mark(ld, p, line + len);
    return fail(ld, TRACE_ERR_OP, "unknown op '%.*s' (expected a, f, m or #)", (int)(n > 40 ? 40 : n), tok);
}

static trace_status read_error(loader *ld, trace_status st)
{
    int errnum = Z_OK;
    const char *zmsg = gzerror(ld->rd.gz, &errnum);
    if (st == TRACE_ERR_LINE) return fail(ld, st, "line too long (over %u bytes) or contains a NUL byte", READ_CHUNK - 1);
    if (st == TRACE_ERR_IO) return fail(ld, st, "read error: %s", strerror(errno));
    size_t n = strlen(ld->path); /* zlib's message starts with "path: " */
    if (!zmsg) zmsg = "?";
    else if (strncmp(zmsg, ld->path, n) == 0 && strncmp(zmsg + n, ": ", 2) == 0) zmsg += n + 2;
    return fail(ld, st, "gzip data truncated or corrupt (zlib: %s)", zmsg);
}

static int is_header(const char *line)
{
    size_t n = strlen(HEADER);
    if (strncmp(line, HEADER, n) != 0) return 0;
    for (line += n; *line; line++)
        if (*line != ' ' && *line != '\t') return 0;
    return 1;
}

static trace_status load_lines(loader *ld)
{
    char *line;
    size_t len;
    trace_status st;
    while ((st = reader_next(&ld->rd, &line, &len)) == TRACE_OK && line) {
        if (ld->rd.line_no == 1 && !is_header(line))
            return fail(ld, TRACE_ERR_HEADER, "the first line must be '%s'", HEADER);
        if ((st = parse_line(ld, line, len))) return st;
    }
    if (st) return read_error(ld, st);
    if (ld->rd.line_no == 0) {
        ld->rd.line_no = 1;
        return fail(ld, TRACE_ERR_HEADER, "empty file: the first line must be '%s'", HEADER);
    }
    if (gzclose_r(ld->rd.gz) != Z_OK) {
        ld->rd.gz = NULL;
        ld->rd.line_no++;
        return fail(ld, TRACE_ERR_TRUNCATED, "gzip data truncated (at close)");
    }
    ld->rd.gz = NULL;
    return TRACE_OK;
}

trace_status trace_load(const char *path, trace *t, char *err, size_t errcap)
{
    loader ld = { .path = path, .t = t, .err = err, .errcap = errcap };
    memset(t, 0, sizeof *t);
    if (err && errcap) err[0] = '\0';
    errno = 0;
    ld.rd.gz = gzopen(path, "rb");
    if (!ld.rd.gz)
        return fail(&ld, TRACE_ERR_IO, "cannot open: %s", errno ? strerror(errno) : "out of memory");
    gzbuffer(ld.rd.gz, 1u << 18);
    ld.rd.buf = malloc(READ_CHUNK);
    ld.ids.cap = 1u << 12;
    ld.ids.e = calloc(ld.ids.cap, sizeof(id_entry));
    ld.ids.seed = hash_seed();
    trace_status st = (!ld.rd.buf || !ld.ids.e) ? fail(&ld, TRACE_ERR_NOMEM, "out of memory") : load_lines(&ld);
    if (ld.rd.gz) gzclose_r(ld.rd.gz);
    free(ld.rd.buf);
    free(ld.slot_event);
    if (st == TRACE_OK) {
        size_t live = 0;
        for (size_t i = 0; i < ld.ids.cap; i++) live += ld.ids.e[i].slot1 && !ld.ids.e[i].freed;
        t->n_live_at_end = (uint32_t)live;
    }
    free(ld.ids.e);
    free(ld.names);
    if (st) trace_free(t);
    return st;
}

void trace_free(trace *t)
{
    free(t->events);
    free(t->pool);
    free(t->marker_names);
    free(t->arena_names);
    memset(t, 0, sizeof *t);
}

const char *trace_marker_name(const trace *t, uint32_t i)
{
    return i < t->n_markers ? t->pool + t->marker_names[i] : "";
}

const char *trace_arena_name(const trace *t, const trace_event *e)
{
    if (e->op != TRACE_ALLOC || e->arena == 0 || e->arena > t->n_arena_names) return NULL;
    return t->pool + t->arena_names[e->arena - 1];
}

const char *trace_status_name(trace_status st)
{
    static const char *const names[] = {
        "TRACE_OK", "TRACE_ERR_IO", "TRACE_ERR_TRUNCATED", "TRACE_ERR_HEADER",
        "TRACE_ERR_OP", "TRACE_ERR_FIELD", "TRACE_ERR_NUMBER", "TRACE_ERR_SIZE_ZERO",
        "TRACE_ERR_DUPLICATE_ID", "TRACE_ERR_UNKNOWN_ID", "TRACE_ERR_DOUBLE_FREE",
        "TRACE_ERR_LINE", "TRACE_ERR_LIMIT", "TRACE_ERR_NOMEM",
    };
    if ((unsigned)st < sizeof names / sizeof names[0]) return names[st];
    return "TRACE_ERR_?";
}
