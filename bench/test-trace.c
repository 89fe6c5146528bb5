/*
 * test-trace.c - the catrace loader on good input (plain and gzip) and on
 * every kind of malformed input: each must give its own status and a message
 * "file:line: ..." naming the right line, and never crash.
 */
#include "test.h"
#include "trace.h"

#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* ---- helpers ---------------------------------------------------------------- */

/* Write `len` bytes to a new temp file (gzip-compressed when gz); its path in
 * path[64]. Returns 0 on success. */
static int write_temp(const char *data, size_t len, int gz, char *path)
{
    strcpy(path, "/tmp/cuarena-test-trace-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    if (!gz) {
        ssize_t n = write(fd, data, len);
        close(fd);
        return n == (ssize_t)len ? 0 : -1;
    }
    gzFile g = gzdopen(fd, "wb");
    if (!g) return -1;
    int n = len ? gzwrite(g, data, (unsigned)len) : 0;
    return (gzclose(g) == Z_OK && n == (int)len) ? 0 : -1;
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Load `len` bytes of text (via a temp file, gzipped when gz) and expect
 * status `want`; on an error also expect "path:line:" and `needle` in the
 * message. Returns 1 when all holds, else prints why and returns 0. */
static int expect_load(const char *text, size_t len, int gz, trace_status want, int line,
                       const char *needle)
{
    char path[64], err[512], where[128];
    trace t;
    if (write_temp(text, len, gz, path)) {
        fprintf(stderr, "cannot write a temp file\n");
        return 0;
    }
    trace_status st = trace_load(path, &t, err, sizeof err);
    unlink(path);
    snprintf(where, sizeof where, "%s:%d:", path, line);
    int ok = st == want;
    if (st == TRACE_OK) trace_free(&t);
    else ok = ok && strstr(err, where) == err && (!needle || strstr(err, needle));
    if (!ok)
        fprintf(stderr, "  input %.60s...\n  got %s '%s', want %s at %s with '%s'\n", text,
                trace_status_name(st), err, trace_status_name(want), where, needle ? needle : "");
    return ok;
}

#define EXPECT(text, want, line, needle) \
    CHECK(expect_load(text, strlen(text), 0, want, line, needle))
#define HDR "# catrace v1\n"

/* A good trace: comments, huge ids, arena names, CRLF, a blank line, two
 * allocations live at the end, a last line without a newline. */
static const char good_text[] =
    HDR
    "# source: test\r\n"
    "a 18446744073709551615 1024 0 text_encoder\r\n"
    "a 7 4096 3\n"
    "m model_loaded\n"
    "\n"
    "a 5 512 0 kv_cache\n"
    "f 18446744073709551615\n"
    "a 9 2048 3 text_encoder\n"
    "m  teardown 0 \n"
    "f 7";

static int check_good(const trace *t)
{
    const trace_event *e = t->events;
    return t->n_events == 8 && t->n_allocs == 4 && t->n_frees == 2 && t->n_markers == 2 &&
           t->n_live_at_end == 2 && t->peak_live_bytes == 4096 + 512 + 2048 &&
           t->peak_live_event == 5 &&
           e[0].op == TRACE_ALLOC && e[0].slot == 0 && e[0].size == 1024 &&
           strcmp(trace_arena_name(t, &e[0]), "text_encoder") == 0 &&
           e[1].op == TRACE_ALLOC && e[1].slot == 1 && e[1].stream == 3 &&
           trace_arena_name(t, &e[1]) == NULL &&
           e[2].op == TRACE_MARK && strcmp(trace_marker_name(t, e[2].slot), "model_loaded") == 0 &&
           strcmp(trace_arena_name(t, &e[3]), "kv_cache") == 0 &&
           e[4].op == TRACE_FREE && e[4].slot == 0 && e[4].size == 1024 && e[4].stream == 0 &&
           e[5].arena == e[0].arena && t->n_arena_names == 2 &&
           strcmp(trace_marker_name(t, e[6].slot), "teardown 0") == 0 &&
           e[7].op == TRACE_FREE && e[7].slot == 1 && e[7].size == 4096 && e[7].stream == 3;
}

static int load_good(int gz)
{
    char path[64], err[512];
    trace t;
    if (write_temp(good_text, strlen(good_text), gz, path)) return 0;
    trace_status st = trace_load(path, &t, err, sizeof err);
    unlink(path);
    if (st) {
        fprintf(stderr, "  %s\n", err);
        return 0;
    }
    int ok = check_good(&t);
    trace_free(&t);
    return ok && t.events == NULL;
}

/* A gzip file of many lines; returns its path (caller unlinks) and size. */
static int write_big_gz(char *path, long *size)
{
    size_t cap = 1u << 20, len = 0;
    char *text = malloc(cap);
    if (!text) return -1;
    len += (size_t)snprintf(text, cap, HDR);
    for (int i = 0; len + 64 < cap; i++)
        len += (size_t)snprintf(text + len, cap - len, "a %d %d 0\nf %d\n", i, 512 * (i % 97 + 1), i);
    int r = write_temp(text, len, 1, path);
    free(text);
    *size = file_size(path);
    return r || *size <= 0 ? -1 : 0;
}

/* ---- good input ------------------------------------------------------------- */

TEST(good_plain) { CHECK(load_good(0)); }
TEST(good_gzip) { CHECK(load_good(1)); }

TEST(header_only)
{
    CHECK(expect_load(HDR, strlen(HDR), 0, TRACE_OK, 0, NULL));
    CHECK(expect_load("# catrace v1", 12, 1, TRACE_OK, 0, NULL));
}

TEST(empty_trace_stats)
{
    char path[64], err[256];
    trace t;
    CHECK(write_temp(HDR "m only\n", strlen(HDR) + 7, 0, path) == 0);
    trace_status st = trace_load(path, &t, err, sizeof err);
    unlink(path);
    CHECK(st == TRACE_OK);
    CHECK(t.n_events == 1 && t.n_markers == 1 && t.n_allocs == 0 && t.peak_live_bytes == 0);
    trace_free(&t);
    trace_free(&t); /* twice is harmless */
}

TEST(no_error_buffer)
{
    char path[64];
    trace t;
    CHECK(write_temp("x", 1, 0, path) == 0);
    CHECK(trace_load(path, &t, NULL, 0) == TRACE_ERR_HEADER);
    unlink(path);
    CHECK(t.events == NULL && t.n_events == 0);
}

/* ---- malformed input -------------------------------------------------------- */

TEST(missing_header)
{
    EXPECT("a 1 512 0\n", TRACE_ERR_HEADER, 1, "catrace v1");
    EXPECT("# catrace v2\na 1 512 0\n", TRACE_ERR_HEADER, 1, "first line");
    EXPECT("\n# catrace v1\n", TRACE_ERR_HEADER, 1, NULL);
    EXPECT("", TRACE_ERR_HEADER, 1, "empty");
}

TEST(unknown_op)
{
    EXPECT(HDR "a 1 512 0\nx 1\n", TRACE_ERR_OP, 3, "unknown op 'x'");
    EXPECT(HDR "alloc 1 512 0\n", TRACE_ERR_OP, 2, "'alloc'");
    EXPECT(HDR "A 1 512 0\n", TRACE_ERR_OP, 2, NULL);
}

TEST(missing_field)
{
    EXPECT(HDR "a\n", TRACE_ERR_FIELD, 2, "<id>");
    EXPECT(HDR "a 1\n", TRACE_ERR_FIELD, 2, "<bytes>");
    EXPECT(HDR "a 1 512\n", TRACE_ERR_FIELD, 2, "<stream>");
    EXPECT(HDR "a 1 512 0\nf\n", TRACE_ERR_FIELD, 3, "<id>");
    EXPECT(HDR "m \n", TRACE_ERR_FIELD, 2, "<name>");
}

TEST(too_many_fields)
{
    EXPECT(HDR "a 1 512 0 enc extra\n", TRACE_ERR_FIELD, 2, "too many");
    EXPECT(HDR "a 1 512 0\nf 1 0\n", TRACE_ERR_FIELD, 3, "too many");
}

TEST(not_a_number)
{
    EXPECT(HDR "a x 512 0\n", TRACE_ERR_NUMBER, 2, "<id>");
    EXPECT(HDR "a 1 -512 0\n", TRACE_ERR_NUMBER, 2, "<bytes>");
    EXPECT(HDR "a 1 512k 0\n", TRACE_ERR_NUMBER, 2, "'512k'");
    EXPECT(HDR "a 1 0x200 0\n", TRACE_ERR_NUMBER, 2, NULL);
    EXPECT(HDR "a 1 512 s1\n", TRACE_ERR_NUMBER, 2, "<stream>");
    EXPECT(HDR "a 1 18446744073709551616 0\n", TRACE_ERR_NUMBER, 2, "64 bits");
    EXPECT(HDR "f 1.5\n", TRACE_ERR_NUMBER, 2, NULL);
    EXPECT(HDR "a 1 18446744073709551615 0\na 2 1 0\n", TRACE_ERR_NUMBER, 3, "overflow");
}

TEST(size_zero) { EXPECT(HDR "a 1 512 0\na 2 0 0\n", TRACE_ERR_SIZE_ZERO, 3, "0 bytes"); }

TEST(unknown_id) { EXPECT(HDR "a 1 512 0\nf 2\n", TRACE_ERR_UNKNOWN_ID, 3, "id 2"); }

TEST(double_free)
{
    EXPECT(HDR "a 1 512 0\nf 1\nm x\nf 1\n", TRACE_ERR_DOUBLE_FREE, 5, "already freed");
}

TEST(duplicate_id)
{
    EXPECT(HDR "a 1 512 0\na 1 512 0\n", TRACE_ERR_DUPLICATE_ID, 3, "duplicate id 1");
    EXPECT(HDR "a 1 512 0\nf 1\na 1 512 0\n", TRACE_ERR_DUPLICATE_ID, 4, NULL);
}

TEST(nul_byte)
{
    static const char text[] = HDR "a 1 512 0\nm a\0b\n";
    CHECK(expect_load(text, sizeof text - 1, 0, TRACE_ERR_LINE, 3, "NUL"));
}

TEST(line_too_long)
{
    size_t n = (2u << 20) + 64;
    char *text = malloc(n + 1);
    CHECK(text);
    strcpy(text, HDR "m ");
    memset(text + strlen(text), 'x', n - strlen(text));
    text[n] = '\0';
    int ok = expect_load(text, n, 0, TRACE_ERR_LINE, 2, "too long");
    free(text);
    CHECK(ok);
}

TEST(missing_file)
{
    trace t;
    char err[256];
    CHECK(trace_load("/nonexistent/dir/x.catrace", &t, err, sizeof err) == TRACE_ERR_IO);
    CHECK(strstr(err, "/nonexistent/dir/x.catrace:0: cannot open"));
}

/* Load raw bytes (written as they are) and return the status. */
static trace_status load_bytes(const char *data, size_t len, char *err, size_t cap)
{
    char path[64];
    trace t;
    if (write_temp(data, len, 0, path)) return TRACE_ERR_IO;
    trace_status st = trace_load(path, &t, err, cap);
    unlink(path);
    if (st == TRACE_OK) trace_free(&t);
    return st;
}

/* Cut a good gzip file at many points: every cut must say "truncated". */
TEST(truncated_gzip)
{
    char path[64], err[512];
    long size;
    CHECK(write_big_gz(path, &size) == 0);
    FILE *f = fopen(path, "rb");
    char *bytes = malloc((size_t)size);
    int read_ok = f && bytes && fread(bytes, 1, (size_t)size, f) == (size_t)size;
    if (f) fclose(f);
    unlink(path);
    CHECK(read_ok);
    CHECK(load_bytes(bytes, (size_t)size, err, sizeof err) == TRACE_OK);
    long cuts[] = { 20, size / 3, size / 2, size - 9, size - 4, size - 1 };
    int ok = 1;
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        trace_status st = load_bytes(bytes, (size_t)cuts[i], err, sizeof err);
        if (st != TRACE_ERR_TRUNCATED || !strstr(err, "truncated")) {
            fprintf(stderr, "  cut at %ld of %ld: %s '%s'\n", cuts[i], size, trace_status_name(st), err);
            ok = 0;
        }
    }
    /* a damaged checksum is caught too */
    bytes[size - 6] ^= 0x5a;
    trace_status st = load_bytes(bytes, (size_t)size, err, sizeof err);
    free(bytes);
    CHECK(ok);
    CHECK(st == TRACE_ERR_TRUNCATED && strstr(err, "corrupt"));
}

/* ---- costs that must not grow with the input's choice ------------------------------- *
 * The loads succeed and their times are printed: figures to read, not
 * assertions (a loaded machine would make a timed check flaky). */

static double load_seconds(const char *text, size_t len, trace_status *st)
{
    char path[64], err[512];
    trace t;
    *st = TRACE_ERR_IO;
    if (write_temp(text, len, 0, path)) return -1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    *st = trace_load(path, &t, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    unlink(path);
    if (*st == TRACE_OK) trace_free(&t);
    else fprintf(stderr, "  %s\n", err);
    return (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
}

/* The inverse of murmur's 64-bit finalizer (the loader's hash before it was
 * keyed): ids whose hashes share their low 40 bits, i.e. one bucket. */
static uint64_t unmix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0x4f74430c22a54005ull; /* the inverse of 0xff51afd7ed558ccd mod 2^64 */
    h ^= h >> 33;
    return h;
}

/* A trace of n allocations and their frees; ids from `id`, arena names from
 * `name` (NULL: none). */
static char *lines(size_t n, uint64_t (*id)(size_t), int names, size_t *len)
{
    size_t cap = 64 + n * 96;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t at = (size_t)snprintf(buf, cap, HDR);
    for (size_t i = 0; i < n; i++) {
        at += (size_t)snprintf(buf + at, cap - at, "a %llu 512 0", (unsigned long long)id(i));
        if (names) at += (size_t)snprintf(buf + at, cap - at, " arena_%zu", i);
        at += (size_t)snprintf(buf + at, cap - at, "\n");
    }
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(buf + at, cap - at, "f %llu\n", (unsigned long long)id(i));
    *len = at;
    return buf;
}

static uint64_t colliding_id(size_t i) { return unmix((uint64_t)(i + 1) << 40); }
static uint64_t plain_id(size_t i) { return (uint64_t)i * 7 + 1; }

TEST(colliding_ids_load_in_linear_time)
{
    size_t len, n = 100000;
    char *bad = lines(n, colliding_id, 0, &len);
    CHECK(bad);
    trace_status st;
    double t_bad = load_seconds(bad, len, &st);
    free(bad);
    CHECK(st == TRACE_OK);
    char *good = lines(n, plain_id, 0, &len);
    CHECK(good);
    double t_good = load_seconds(good, len, &st);
    free(good);
    CHECK(st == TRACE_OK);
    printf("  100000 allocations: %.3f s with ids chosen to collide, %.3f s with plain ids\n", t_bad,
           t_good);
}

TEST(many_arena_names_load_in_linear_time)
{
    size_t len;
    trace_status st;
    char *few = lines(6500, plain_id, 1, &len);
    CHECK(few);
    double t_few = load_seconds(few, len, &st);
    free(few);
    CHECK(st == TRACE_OK);
    char *many = lines(65000, plain_id, 1, &len);
    CHECK(many);
    double t_many = load_seconds(many, len, &st);
    free(many);
    CHECK(st == TRACE_OK);
    printf("  arena names: %.3f s for 6500, %.3f s for 65000\n", t_few, t_many);
}
