/*
 * test-badinput.c - the bad-input matrix as a table: each row is a wrong
 * call, the status it must get, and words its message must hold. Every row
 * runs against a world of two arenas holding live blocks with known bytes;
 * after it the checker must pass on both and every live byte must be intact.
 *
 *   test-badinput                 run the table ("N passed, N failed")
 *   test-badinput --markdown      print it as the Markdown table of docs/bad-input.md
 *   test-badinput --doc FILE      also check that FILE holds every row as printed
 *
 * Rows not here: malformed and truncated trace files are bench/test-trace.c's
 * table (test-trace-errors); option strings beyond these rows test-config's.
 */
#include <stdatomic.h>
#include <string.h>

static int markdown(void);
static const char *doc_path;

/* --markdown prints the table; --doc FILE checks FILE too. */
#define TEST_ARGS_HOOK(argc, argv)                                                         \
    do {                                                                                   \
        if ((argc) > 1 && strcmp((argv)[1], "--markdown") == 0) return markdown();         \
        if ((argc) > 2 && strcmp((argv)[1], "--doc") == 0) {                               \
            doc_path = (argv)[2];                                                          \
            (argv) += 2;                                                                   \
            (argc) -= 2;                                                                   \
        }                                                                                  \
    } while (0)

#include "test.h"

#include <pthread.h>


typedef struct world {
    cua_backend *host, *fault;
    cua_arena *a, *b, *dead, *off; /* off: offloaded; dead: destroyed */
    unsigned char *keep_a, *keep_b;
    void *freed, *dead_ptr;
} world;

static world W;

static void fill(unsigned char *p, size_t n, unsigned char v) { memset(p, v, n); }

static int intact(void)
{
    for (size_t i = 0; i < 2 * MiB; i += 4099)
        if (W.keep_a[i] != 0xa1 || W.keep_b[i] != 0xb2) return 0;
    return 1;
}

static cua_arena *make(const char *name, unsigned flags)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = name;
    cfg.backend = W.fault;
    cfg.flags = flags;
    cua_arena *a = NULL;
    return cua_arena_create(&cfg, &a) == CUA_OK ? a : NULL;
}

static int setup(void)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 512 * MiB;
    if (cua_backend_host_create(&hc, &W.host) || cua_backend_fault_create(W.host, &W.fault)) return -1;
    W.a = make("matrix_a", 0);
    W.b = make("matrix_b", CUA_ARENA_NO_VMM);
    W.dead = make("matrix_dead", 0);
    W.off = make("matrix_offloaded", 0);
    if (!W.a || !W.b || !W.dead || !W.off) return -1;
    if (cua_arena_alloc(W.a, 2 * MiB, 0, (void **)&W.keep_a) ||
        cua_arena_alloc(W.b, 2 * MiB, 0, (void **)&W.keep_b) || cua_arena_alloc(W.a, 4096, 0, &W.freed) ||
        cua_free(W.freed) || cua_arena_alloc(W.dead, 4096, 0, &W.dead_ptr))
        return -1;
    fill(W.keep_a, 2 * MiB, 0xa1);
    fill(W.keep_b, 2 * MiB, 0xb2);
    void *q;
    if (cua_arena_alloc(W.off, 4096, 0, &q) || cua_arena_offload(W.off)) return -1;
    return cua_arena_destroy(W.dead, CUA_DESTROY_FORCE) ? -1 : 0;
}

/* ---- the rows ----------------------------------------------------------------------- */

static int on_stack;

static cua_status double_free(void) { return cua_free(W.freed); }
static cua_status never_returned_stack(void) { return cua_free(&on_stack); }
static cua_status never_returned_heap(void)
{
    void *p = malloc(64);
    cua_status st = cua_free(p);
    free(p);
    return st;
}
static cua_status interior(void) { return cua_free(W.keep_a + 4096); }
static cua_status interior_unaligned(void) { return cua_free(W.keep_b + 3); }
static cua_status destroyed_ptr(void) { return cua_free(W.dead_ptr); }
static cua_status destroyed_handle(void)
{
    void *p;
    return cua_arena_alloc(W.dead, 64, 0, &p);
}
static cua_status destroy_twice(void) { return cua_arena_destroy(W.dead, 0); }
static cua_status null_arena(void)
{
    void *p;
    return cua_arena_alloc(NULL, 64, 0, &p);
}
static cua_status null_out(void) { return cua_arena_alloc(W.a, 64, 0, NULL); }
static cua_status size_zero(void)
{
    void *p;
    return cua_arena_alloc(W.a, 0, 0, &p);
}
static cua_status size_max(void)
{
    void *p;
    return cua_arena_alloc(W.a, SIZE_MAX, 0, &p);
}
static cua_status size_overflows_alignment(void)
{
    void *p;
    return cua_arena_alloc(W.a, SIZE_MAX - 100, 0, &p);
}
static cua_status size_beyond_address_range(void)
{
    void *p;
    return cua_arena_alloc(W.a, (size_t)1 << 50, 0, &p);
}
/* A stream the driver does not know: its event record fails as CUDA's does
 * (CUDA_ERROR_INVALID_HANDLE), injected here; the block keeps its old uses. */
static cua_status invalid_stream(void)
{
    cua_fault_fail_nth(W.fault, CUA_CALL_EVENT_RECORD, 1, CUA_ERR_BACKEND);
    /* the stream's sync, then the device's (what a gone stream is waited with) */
    cua_fault_fail_calls(W.fault, CUA_CALL_STREAM_SYNC, 1, 2, CUA_ERR_BACKEND);
    void *p;
    cua_status st = cua_arena_alloc(W.a, 4096, 0, &p);
    if (st) return st;
    cua_record_stream(p, 0xdead0000);
    st = cua_free(p);
    cua_fault_fail_nth(W.fault, CUA_CALL_EVENT_RECORD, 0, CUA_ERR_BACKEND);
    cua_fault_fail_nth(W.fault, CUA_CALL_STREAM_SYNC, 0, CUA_ERR_BACKEND);
    return st;
}
/* The stream a block was used on was destroyed without cua_stream_retire:
 * its free waits for the whole device instead (it cannot be asked). */
static cua_status gone_stream(void)
{
    void *p;
    cua_status st = cua_arena_alloc(W.a, 4096, 0, &p);
    if (st) return st;
    cua_record_stream(p, 0x6011e000);
    cua_host_stream_destroy(W.host, 0x6011e000);
    return cua_free(p);
}
static cua_status not_a_handle(void)
{
    void *p;
    return cua_arena_alloc((cua_arena *)&on_stack, 64, 0, &p);
}
static cua_status create_with(int thread_cache, unsigned flags, int device)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend = W.fault;
    cfg.thread_cache = thread_cache;
    cfg.flags |= flags;
    cfg.device = device;
    cua_arena *a = NULL;
    return cua_arena_create(&cfg, &a);
}
static cua_status bad_thread_cache(void) { return create_with(99, 0, 0); }
static cua_status unknown_flags(void) { return create_with(0, 0x4000, 0); }
static cua_status device_64(void) { return create_with(0, 0, 64); }

/* Callbacks that destroy the arena whose call ran them (cuarena.h, "Callbacks"). */
static cua_arena *victim;
static size_t evict_victim(int device, size_t need, void *user)
{
    (void)device, (void)need, (void)user;
    if (victim) cua_arena_destroy(victim, CUA_DESTROY_FORCE);
    victim = NULL;
    return 0;
}
static cua_status evict_destroys_asker(void)
{
    cua_arena *a = victim = make("matrix_victim", 0);
    if (!a) return CUA_ERR_OUT_OF_MEMORY;
    cua_add_evict_callback(evict_victim, NULL, 0);
    void *p;
    cua_status st = cua_arena_alloc(a, 600 * MiB, 0, &p); /* more than the device has */
    cua_remove_evict_callback(evict_victim, NULL);
    if (victim) cua_arena_destroy(victim, CUA_DESTROY_FORCE); /* (the callback did not run) */
    /* the handle answers as the allocation did (and leaves the message) */
    cua_status again = cua_arena_alloc(a, 64, 0, &p);
    return st == again ? st : CUA_ERR_CORRUPT;
}
static void destroy_new(const cua_arena_event *ev, void *user)
{
    (void)user;
    if (ev->kind == CUA_ARENA_CREATED) cua_arena_destroy(ev->arena, 0);
}
static cua_status created_destroys(void)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "matrix_short_lived";
    cfg.backend = W.fault;
    cua_arena *a = NULL;
    cua_set_event_callback(destroy_new, NULL);
    cua_status st = cua_arena_create(&cfg, &a);
    cua_set_event_callback(NULL, NULL);
    return st;
}
static cua_status alloc_offloaded(void)
{
    void *p;
    return cua_arena_alloc(W.off, 64, 0, &p);
}
static cua_status offload_twice(void) { return cua_arena_offload(W.off); }
static cua_status restore_without_offload(void) { return cua_arena_restore(W.a); }
static cua_status offload_whole_segments(void) { return cua_arena_offload(W.b); }
static cua_status limit_below_floor(void)
{
    cua_status st = cua_arena_set_floor(W.a, 8 * MiB);
    if (st) return st;
    st = cua_arena_set_limit(W.a, 4 * MiB);
    cua_arena_set_floor(W.a, 0);
    return st;
}
static cua_status record_freed(void) { return cua_record_stream(W.freed, 7); }
static cua_status info_wild(void) { return cua_ptr_info((void *)0x1000, NULL, NULL, NULL); }
static cua_status conf_unknown_key(void)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    return cua_config_parse("release_treshold:1G", &cfg);
}
static cua_status conf_bad_suffix(void)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    return cua_config_parse("limit:12Q", &cfg);
}
static cua_status conf_overflow(void)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    return cua_config_parse("limit:99999999999999999999G", &cfg);
}
static cua_status conf_env(void)
{
    cua_arena_config cfg;
    test_config(&cfg);
    setenv("CUARENA_CONF", "idle_ms:soon", 1);
    cua_status st = cua_config_from_env(&cfg);
    unsetenv("CUARENA_CONF");
    return st;
}
static cua_status create_conf_bad(void)
{
    cua_arena *a = NULL;
    return cua_arena_create_conf("matrix_conf", "vmm:perhaps", &a);
}

/* Destroy while another thread allocates: the allocator gets blocks or
 * CUA_ERR_DESTROYED, never a crash; the destroy gets BUSY (blocks live) and,
 * forced, OK. */
static cua_arena *racing;
static _Atomic int race_bad;

static void *race_alloc(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        void *p;
        cua_status st = cua_arena_alloc(racing, 256 + (size_t)(i % 64) * 512, 0, &p);
        if (st == CUA_ERR_DESTROYED) break;
        if (st != CUA_OK) atomic_store(&race_bad, 1);
    }
    return NULL;
}

static cua_status destroy_while_allocating(void)
{
    racing = make("matrix_race", 0);
    if (!racing) return CUA_ERR_OUT_OF_MEMORY;
    pthread_t t;
    pthread_create(&t, NULL, race_alloc, NULL);
    void *p;
    while (cua_arena_alloc(racing, 64, 0, &p) == CUA_OK && cua_free(p) == CUA_OK) {
        cua_stats s;
        if (cua_arena_get_stats(racing, &s) == CUA_OK && s.live_blocks > 100) break;
    }
    cua_status busy = cua_arena_destroy(racing, 0);
    cua_status forced = busy == CUA_ERR_BUSY ? cua_arena_destroy(racing, CUA_DESTROY_FORCE) : busy;
    pthread_join(t, NULL);
    if (forced != CUA_OK || atomic_load(&race_bad)) return CUA_ERR_CORRUPT;
    return busy;
}

typedef struct row {
    const char *input, *call;
    cua_status (*fn)(void);
    cua_status want;
    const char *words; /* the message holds these */
} row;

static const row rows[] = {
    { "double free", "cua_free", double_free, CUA_ERR_DOUBLE_FREE, "double free" },
    { "pointer on the stack", "cua_free", never_returned_stack, CUA_ERR_INVALID_POINTER, "not" },
    { "pointer from malloc", "cua_free", never_returned_heap, CUA_ERR_INVALID_POINTER, "not" },
    { "interior pointer (aligned)", "cua_free", interior, CUA_ERR_INVALID_POINTER, "interior" },
    { "interior pointer (unaligned, whole segments)", "cua_free", interior_unaligned, CUA_ERR_INVALID_POINTER, "interior" },
    { "pointer of a destroyed arena", "cua_free", destroyed_ptr, CUA_ERR_DESTROYED, "destroyed" },
    { "handle of a destroyed arena", "cua_arena_alloc", destroyed_handle, CUA_ERR_DESTROYED, "destroyed" },
    { "destroying twice", "cua_arena_destroy", destroy_twice, CUA_ERR_DESTROYED, "destroyed" },
    { "NULL arena", "cua_arena_alloc", null_arena, CUA_ERR_INVALID_ARG, "NULL" },
    { "NULL out", "cua_arena_alloc", null_out, CUA_ERR_INVALID_ARG, "NULL" },
    { "size 0", "cua_arena_alloc", size_zero, CUA_ERR_INVALID_ARG, "0 bytes" },
    { "size SIZE_MAX", "cua_arena_alloc", size_max, CUA_ERR_INVALID_ARG, "address range" },
    { "size that overflows with alignment", "cua_arena_alloc", size_overflows_alignment, CUA_ERR_INVALID_ARG, "address range" },
    { "size beyond the address range (1 PiB)", "cua_arena_alloc", size_beyond_address_range, CUA_ERR_INVALID_ARG, "address range" },
    { "stream the driver refuses, and the device cannot be waited for", "cua_free", invalid_stream, CUA_ERR_BACKEND, "was freed" },
    { "stream destroyed without cua_stream_retire", "cua_free", gone_stream, CUA_OK, "" },
    { "alloc in an offloaded arena", "cua_arena_alloc", alloc_offloaded, CUA_ERR_OFFLOADED, "restore" },
    { "offload of an offloaded arena", "cua_arena_offload", offload_twice, CUA_ERR_OFFLOADED, "already" },
    { "restore without offload", "cua_arena_restore", restore_without_offload, CUA_ERR_INVALID_ARG, "not offloaded" },
    { "offload of whole segments", "cua_arena_offload", offload_whole_segments, CUA_ERR_NOT_SUPPORTED, "whole segments" },
    { "limit below the floor", "cua_arena_set_limit", limit_below_floor, CUA_ERR_INVALID_ARG, "floor" },
    { "record_stream of a freed block", "cua_record_stream", record_freed, CUA_ERR_DOUBLE_FREE, "free" },
    { "pointer info of a wild pointer", "cua_ptr_info", info_wild, CUA_ERR_INVALID_POINTER, "not" },
    { "unknown option key", "cua_config_parse", conf_unknown_key, CUA_ERR_CONFIG, "release_treshold" },
    { "bad size suffix", "cua_config_parse", conf_bad_suffix, CUA_ERR_CONFIG, "12Q" },
    { "size that overflows", "cua_config_parse", conf_overflow, CUA_ERR_CONFIG, "limit" },
    { "malformed CUARENA_CONF", "cua_config_from_env", conf_env, CUA_ERR_CONFIG, "idle_ms" },
    { "malformed options at create", "cua_arena_create_conf", create_conf_bad, CUA_ERR_CONFIG, "vmm" },
    { "destroy while another thread allocates", "cua_arena_destroy", destroy_while_allocating, CUA_ERR_BUSY, "live" },
    { "a value that is no arena handle", "cua_arena_alloc", not_a_handle, CUA_ERR_INVALID_ARG, "not an arena handle" },
    { "thread_cache out of range (99)", "cua_arena_create", bad_thread_cache, CUA_ERR_INVALID_ARG, "thread_cache" },
    { "unknown flag bits", "cua_arena_create", unknown_flags, CUA_ERR_INVALID_ARG, "flag" },
    { "device 64", "cua_arena_create", device_64, CUA_ERR_INVALID_ARG, "0..63" },
    { "eviction callback destroys the arena that asked", "cua_arena_alloc", evict_destroys_asker, CUA_ERR_DESTROYED, "destroyed" },
    { "event callback destroys the arena it was created with", "cua_arena_create", created_destroys, CUA_ERR_DESTROYED, "destroyed" },
};
#define NROWS (sizeof rows / sizeof rows[0])

/* The row's Markdown line (without the message, which names addresses). */
static void row_line(const row *r, char *out, size_t cap)
{
    snprintf(out, cap, "| %s | `%s` | `%s` | %s |", r->input, r->call, cua_status_name(r->want), r->words);
}

static char messages[NROWS][512];

TEST(every_row_answers_with_its_status_and_loses_nothing)
{
    CHECK(setup() == 0);
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &rows[i];
        cua_status st = r->fn();
        snprintf(messages[i], sizeof messages[i], "%s", cua_last_error());
        if (st != r->want || !strstr(messages[i], r->words)) {
            fprintf(stderr, "row '%s': %s (%s), expected %s with '%s'\n", r->input, cua_status_name(st),
                    messages[i], cua_status_name(r->want), r->words);
            CHECK(0);
        }
        CHECK_ARENA(W.a);
        CHECK_ARENA(W.b);
        CHECK(intact());
    }
    CHECK_OK(cua_arena_restore(W.off));
    CHECK_OK(cua_arena_destroy(W.off, CUA_DESTROY_FORCE));
    CHECK_OK(cua_free(W.keep_a));
    CHECK_OK(cua_free(W.keep_b));
    CHECK_OK(cua_arena_destroy(W.a, 0));
    CHECK_OK(cua_arena_destroy(W.b, 0));
    CHECK_OK(cua_backend_destroy(W.fault));
    CHECK_OK(cua_backend_destroy(W.host)); /* nothing left: BUSY otherwise */
    printf("  %zu bad inputs, each answered with its status and words, nothing lost\n", NROWS);
}

TEST(the_doc_holds_every_row)
{
    if (!doc_path) return;
    FILE *f = fopen(doc_path, "r");
    CHECK(f != NULL);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    for (size_t i = 0; i < NROWS; i++) {
        char line[512];
        row_line(&rows[i], line, sizeof line);
        if (!strstr(text, line)) fprintf(stderr, "%s lacks the row:\n%s\n", doc_path, line);
        CHECK(strstr(text, line) != NULL);
    }
}

static int markdown(void)
{
    puts("| bad input | call | status | the message says |\n| --- | --- | --- | --- |");
    for (size_t i = 0; i < NROWS; i++) {
        char line[512];
        row_line(&rows[i], line, sizeof line);
        puts(line);
    }
    return 0;
}
