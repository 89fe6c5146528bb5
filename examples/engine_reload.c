/*
 * engine_reload.c - a small engine of four component arenas, reloaded cycle
 * after cycle: what cuarena is for.
 *
 *   engine_reload [--cycles N] [--backend host|cuda] [--scale S] [--json]
 *
 * Each cycle loads the components (text_encoder, transformer, vae: weights
 * written with a pattern of the cycle), runs requests (activations allocated
 * and freed in the transformer and the vae), offloads the text encoder after
 * encoding and restores it for the next request (its weights checked byte for
 * byte, at the same addresses), sizes the kv_cache from cua_headroom(),
 * discards and restores the KV cache, then destroys every arena. The device's
 * used memory after the teardown must equal what it was before the cycle.
 * With --json one line per cycle; exit status 0 when every cycle held:
 * after_teardown_bytes == baseline_bytes, offload_restore_exact,
 * pointers_stable. 1 otherwise, 2 on usage errors, 77 when --backend cuda
 * finds no GPU.
 */
#include <cuarena.h>
#include <cuarena_backend.h> /* the host backend, for this example without a GPU */

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB ((size_t)1 << 20)

/* ---- reading and writing device memory ------------------------------------------- */

/* Host backend: the memory is host memory. CUDA: the driver's copies (the
 * backend made its context current on this thread). */
static int (*cu_htod)(uintptr_t, const void *, size_t);
static int (*cu_dtoh)(void *, uintptr_t, size_t);

static bool load_copies(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return false;
    cu_htod = (int (*)(uintptr_t, const void *, size_t))(uintptr_t)dlsym(lib, "cuMemcpyHtoD_v2");
    cu_dtoh = (int (*)(void *, uintptr_t, size_t))(uintptr_t)dlsym(lib, "cuMemcpyDtoH_v2");
    return cu_htod && cu_dtoh;
}

static unsigned char *scratch;
static size_t scratch_size;

static unsigned char pattern(uint64_t seed, size_t i) { return (unsigned char)((seed * 131 + i * 7) >> 3); }

static bool write_block(void *p, size_t n, uint64_t seed)
{
    unsigned char *dst = cu_htod ? scratch : p;
    for (size_t i = 0; i < n; i++) dst[i] = pattern(seed, i);
    return !cu_htod || cu_htod((uintptr_t)p, scratch, n) == 0;
}

static bool check_block(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *src = p;
    if (cu_dtoh) {
        if (cu_dtoh(scratch, (uintptr_t)p, n) != 0) return false;
        src = scratch;
    }
    for (size_t i = 0; i < n; i++)
        if (src[i] != pattern(seed, i)) return false;
    return true;
}

/* ---- the engine -------------------------------------------------------------------------- */

typedef struct options {
    int cycles, json, cuda;
    size_t scale;
} options;

typedef struct component {
    const char *name;
    size_t block, nblocks; /* weights: nblocks of block bytes (x scale) */
    cua_arena *arena;
    void *w[64];
} component;

static cua_backend *g_bk;
static int g_failed;

#define TRY(expr)                                                                          \
    do {                                                                                   \
        cua_status s_ = (expr);                                                            \
        if (s_ != CUA_OK) {                                                                \
            fprintf(stderr, "engine_reload: %s: %s\n", #expr, cua_last_error());           \
            return false;                                                                  \
        }                                                                                  \
    } while (0)

static uint64_t used_bytes(void)
{
    cua_backend_stats s;
    if (cua_backend_get_stats(g_bk, &s) != CUA_OK) return 0;
    return s.total_bytes - s.free_bytes;
}

static bool load(component *c, int cycle, uint64_t *peak)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = c->name;
    cfg.backend = g_bk;
    TRY(cua_arena_create(&cfg, &c->arena));
    for (size_t i = 0; i < c->nblocks; i++) {
        TRY(cua_arena_alloc(c->arena, c->block, 0, &c->w[i]));
        if (!write_block(c->w[i], c->block, (uint64_t)cycle * 1000 + i)) return false;
    }
    uint64_t u = used_bytes();
    if (u > *peak) *peak = u;
    return true;
}

static bool weights_intact(const component *c, int cycle)
{
    for (size_t i = 0; i < c->nblocks; i++)
        if (!check_block(c->w[i], c->block, (uint64_t)cycle * 1000 + i)) return false;
    return true;
}

/* The pointers the engine holds still name live blocks of their sizes. */
static bool pointers_resolve(const component *c)
{
    for (size_t i = 0; i < c->nblocks; i++) {
        cua_arena *a = NULL;
        void *base = NULL;
        size_t size = 0;
        if (cua_ptr_info(c->w[i], &a, &base, &size) != CUA_OK || a != c->arena ||
            base != c->w[i] || size != c->block)
            return false;
    }
    return true;
}

/* A request: activations in the transformer and the vae, freed at the end. */
static bool request(component *tr, component *vae, size_t scale, uint64_t *peak)
{
    void *act[8];
    for (int i = 0; i < 8; i++) TRY(cua_arena_alloc(i % 2 ? vae->arena : tr->arena, (size_t)(i + 1) * MIB * scale, 0, &act[i]));
    uint64_t u = used_bytes();
    if (u > *peak) *peak = u;
    for (int i = 7; i >= 0; i--) TRY(cua_free(act[i]));
    return true;
}

static bool cycle_run(const options *o, int cycle)
{
    size_t s = o->scale;
    component te = {"text_encoder", 8 * MIB * s, 8, NULL, {0}};
    component tr = {"transformer", 16 * MIB * s, 16, NULL, {0}};
    component vae = {"vae", 4 * MIB * s, 8, NULL, {0}};
    uint64_t baseline = used_bytes(), peak = baseline;
    bool exact = true, stable = true;
    size_t headroom = 0, kv_bytes = 0;
    if (!load(&te, cycle, &peak) || !load(&tr, cycle, &peak) || !load(&vae, cycle, &peak)) return false;
    for (int r = 0; r < 3; r++) {
        /* encode, then push the text encoder out while the transformer works */
        if (!weights_intact(&te, cycle)) exact = false;
        TRY(cua_arena_offload(te.arena));
        if (!request(&tr, &vae, s, &peak)) return false;
        TRY(cua_arena_restore(te.arena));
        if (!pointers_resolve(&te)) stable = false;
        if (!weights_intact(&te, cycle)) exact = false;
    }
    /* The KV cache: as large as a quarter of the headroom (at most 64 MiB x scale). */
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "kv_cache";
    cfg.backend = g_bk;
    cua_arena *kv;
    void *kvp;
    TRY(cua_arena_create(&cfg, &kv));
    TRY(cua_headroom(0, &headroom));
    kv_bytes = headroom / 4 < 64 * MIB * s ? headroom / 4 : 64 * MIB * s;
    kv_bytes &= ~(MIB - 1);
    TRY(cua_arena_alloc(kv, kv_bytes, 0, &kvp));
    uint64_t u = used_bytes();
    if (u > peak) peak = u;
    TRY(cua_arena_discard(kv)); /* the cache can be recomputed */
    TRY(cua_arena_restore(kv));
    if (!write_block(kvp, kv_bytes < 4 * MIB ? kv_bytes : 4 * MIB, 7)) return false; /* usable again */
    /* Teardown: every component goes, and all of its memory with it. */
    TRY(cua_arena_destroy(kv, CUA_DESTROY_FORCE));
    TRY(cua_arena_destroy(te.arena, CUA_DESTROY_FORCE));
    TRY(cua_arena_destroy(tr.arena, CUA_DESTROY_FORCE));
    TRY(cua_arena_destroy(vae.arena, CUA_DESTROY_FORCE));
    uint64_t after = used_bytes();
    bool ok = after == baseline && exact && stable;
    if (!ok) g_failed = 1;
    if (o->json)
        printf("{\"cycle\":%d,\"backend\":\"%s\",\"baseline_bytes\":%llu,\"peak_bytes\":%llu,"
               "\"after_teardown_bytes\":%llu,\"offload_restore_exact\":%s,\"pointers_stable\":%s,"
               "\"kv_bytes\":%zu,\"headroom_bytes\":%zu}\n",
               cycle, o->cuda ? "cuda" : "host", (unsigned long long)baseline,
               (unsigned long long)peak, (unsigned long long)after, exact ? "true" : "false",
               stable ? "true" : "false", kv_bytes, headroom);
    else
        printf("cycle %d: used %llu -> peak %llu -> %llu after teardown (%s); text encoder "
               "offload/restore %s, pointers %s; kv cache %zu of %zu headroom\n",
               cycle, (unsigned long long)baseline, (unsigned long long)peak,
               (unsigned long long)after, after == baseline ? "back to the baseline" : "NOT back",
               exact ? "byte-exact" : "NOT exact", stable ? "stable" : "MOVED", kv_bytes, headroom);
    fflush(stdout);
    return true;
}

static void usage(void)
{
    fputs("usage: engine_reload [--cycles N] [--backend host|cuda] [--scale S] [--json]\n", stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    options o = {.cycles = 5, .scale = 1};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) o.json = 1;
        else if (!strcmp(argv[i], "--cycles") && i + 1 < argc) o.cycles = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc) o.scale = (size_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            const char *b = argv[++i];
            if (!strcmp(b, "cuda")) o.cuda = 1;
            else if (strcmp(b, "host")) usage();
        } else usage();
    }
    if (o.cycles < 1 || o.scale < 1 || o.scale > 64) usage();
    cua_status st;
    if (o.cuda) {
        st = cua_backend_cuda_create(0, &g_bk);
        if (st == CUA_ERR_NO_DEVICE || st == CUA_ERR_NOT_SUPPORTED) {
            fprintf(stderr, "engine_reload: no GPU: %s\n", cua_last_error());
            return 77;
        }
        if (st == CUA_OK && !load_copies()) {
            fprintf(stderr, "engine_reload: the driver lacks cuMemcpyHtoD/DtoH\n");
            return 1;
        }
    } else {
        cua_host_config hc;
        cua_host_config_init(&hc);
        hc.capacity = 1024 * MIB * o.scale;
        st = cua_backend_host_create(&hc, &g_bk);
    }
    if (st != CUA_OK) {
        fprintf(stderr, "engine_reload: creating the backend: %s\n", cua_last_error());
        return 1;
    }
    scratch_size = 64 * MIB * o.scale;
    scratch = malloc(scratch_size);
    if (!scratch) return 1;
    for (int c = 0; c < o.cycles; c++)
        if (!cycle_run(&o, c)) {
            g_failed = 1;
            break;
        }
    free(scratch);
    if ((st = cua_backend_destroy(g_bk)) != CUA_OK) {
        fprintf(stderr, "engine_reload: cua_backend_destroy: %s\n", cua_last_error());
        g_failed = 1;
    }
    return g_failed;
}
