/*
 * kv_sizing.c - size a KV cache the way serving engines do, from cuarena's
 * figures instead of a guessed memory fraction.
 *
 *   kv_sizing [--backend host|cuda|auto] [--scale S]
 *
 * 1. load the weights into an arena of their own;
 * 2. profile: reset the peaks, run the largest batch once through an
 *    activations arena, and read its peak of mapped bytes;
 * 3. give the activations' pages back (trim), ask cua_headroom() what the
 *    device can still give, keep the activation peak out of it, and allocate
 *    the KV cache in one try, in an arena whose limit is that size;
 * 4. serve one more largest batch with the cache live: it must fit.
 * Prints the numbers, one "kv_sizing: " line each. Exit status 0 when the
 * cache was allocated on the first try and the batch fitted beside it, 1
 * otherwise, 2 on usage errors, 77 when --backend cuda finds no GPU.
 * On the host backend the "device" is a simulated one of 1 GiB x scale.
 */
#include <cuarena.h>
#include <cuarena_backend.h> /* the host backend, for this example without a GPU */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB ((size_t)1 << 20)

#define TRY(expr)                                                                          \
    do {                                                                                   \
        cua_status s_ = (expr);                                                            \
        if (s_ != CUA_OK) {                                                                \
            fprintf(stderr, "kv_sizing: %s: %s\n", #expr, cua_last_error());               \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

static cua_backend *g_bk;
static int g_own_backend;

static cua_arena *arena(const char *name, size_t limit)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = name;
    cfg.backend = g_bk;
    cfg.limit = limit;
    cua_arena *a = NULL;
    if (cua_arena_create(&cfg, &a) != CUA_OK) {
        fprintf(stderr, "kv_sizing: creating arena %s: %s\n", name, cua_last_error());
        return NULL;
    }
    return a;
}

/* One forward pass of the largest batch: per layer, activations allocated,
 * the previous layer's freed (what a framework's allocator sees). */
static int forward(cua_arena *act, size_t scale)
{
    void *prev[3] = {0}, *cur[3];
    for (int layer = 0; layer < 24; layer++) {
        size_t sizes[3] = {24 * MIB * scale, 6 * MIB * scale + 4096 * (size_t)layer,
                           (size_t)(layer % 4 + 1) * MIB * scale};
        for (int i = 0; i < 3; i++) TRY(cua_arena_alloc(act, sizes[i], 0, &cur[i]));
        for (int i = 0; i < 3; i++) {
            TRY(cua_free(prev[i]));
            prev[i] = cur[i];
        }
    }
    for (int i = 0; i < 3; i++) TRY(cua_free(prev[i]));
    return 0;
}

static double mib(size_t b) { return (double)b / (double)MIB; }

int main(int argc, char **argv)
{
    const char *backend = "auto";
    size_t scale = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc) scale = (size_t)atoi(argv[++i]);
        else {
            fputs("usage: kv_sizing [--backend host|cuda|auto] [--scale S]\n", stderr);
            return 2;
        }
    }
    if (scale < 1 || scale > 64 || (strcmp(backend, "host") && strcmp(backend, "cuda") &&
                                     strcmp(backend, "auto"))) {
        fputs("usage: kv_sizing [--backend host|cuda|auto] [--scale S]\n", stderr);
        return 2;
    }
    cua_status st = CUA_ERR_NO_DEVICE;
    if (strcmp(backend, "host")) {
        st = cua_device_backend(0, &g_bk); /* shared with every arena of device 0 */
        if (st != CUA_OK && !strcmp(backend, "cuda")) {
            fprintf(stderr, "kv_sizing: no GPU: %s\n", cua_last_error());
            return 77;
        }
    }
    if (st != CUA_OK) {
        cua_host_config hc;
        cua_host_config_init(&hc);
        hc.capacity = 1024 * MIB * scale;
        TRY(cua_backend_host_create(&hc, &g_bk));
        g_own_backend = 1;
    }
    printf("kv_sizing: backend %s\n", g_own_backend ? "host (a simulated 1 GiB x scale device)"
                                                    : "cuda (device 0)");

    /* 1. weights */
    cua_arena *weights = arena("weights", 0), *act = arena("activations", 0);
    if (!weights || !act) return 1;
    void *w[8];
    for (int i = 0; i < 8; i++) TRY(cua_arena_alloc(weights, 40 * MIB * scale, 0, &w[i]));

    /* 2. profile the largest batch, peaks reset first */
    TRY(cua_arena_reset_peaks(act));
    TRY(cua_device_reset_peak(0));
    if (forward(act, scale)) return 1;
    cua_stats as;
    TRY(cua_arena_get_stats(act, &as));
    size_t act_peak = (size_t)as.peak_mapped_bytes;
    size_t dev_peak = 0;
    TRY(cua_device_peak(0, &dev_peak, NULL));
    printf("kv_sizing: weights %.1f MiB; profiling pass: activations peak %.1f MiB live, "
           "%.1f MiB mapped; device peak %.1f MiB mapped\n",
           mib(8 * 40 * MIB * scale), mib((size_t)as.peak_live_bytes), mib(act_peak),
           mib(dev_peak));

    /* 3. what is left, less the activations' peak: the KV cache, in one try */
    size_t released = 0, headroom = 0, gran = 0;
    TRY(cua_arena_trim(act, 0, &released));
    TRY(cua_headroom(0, &headroom));
    TRY(cua_backend_granularity(g_bk, &gran));
    if (headroom < act_peak + gran) {
        fprintf(stderr, "kv_sizing: headroom %zu leaves no room past the activations' %zu\n",
                headroom, act_peak);
        return 1;
    }
    size_t kv_bytes = (headroom - act_peak) / gran * gran;
    cua_arena *kv = arena("kv_cache", kv_bytes);
    if (!kv) return 1;
    void *cache = NULL;
    st = cua_arena_alloc(kv, kv_bytes, 0, &cache);
    int first_try = st == CUA_OK;
    printf("kv_sizing: trim gave back %.1f MiB; headroom %.1f MiB; KV cache %.1f MiB (%.1f%% of "
           "the headroom, the activations' peak kept out): %s\n",
           mib(released), mib(headroom), mib(kv_bytes),
           100.0 * (double)kv_bytes / (double)headroom,
           first_try ? "allocated on the first try" : cua_last_error());

    /* 4. a serving step beside the live cache: the activations fit again */
    int served = first_try && forward(act, scale) == 0;
    TRY(cua_arena_get_stats(act, &as));
    size_t left = 0;
    TRY(cua_headroom(0, &left));
    printf("kv_sizing: largest batch with the KV cache live: %s (activations mapped %.1f MiB); "
           "headroom left %.1f MiB\n",
           served ? "fits" : "DID NOT FIT", mib((size_t)as.mapped_bytes), mib(left));

    /* teardown: every arena, every byte */
    if (cache) TRY(cua_free(cache));
    for (int i = 0; i < 8; i++) TRY(cua_free(w[i]));
    TRY(cua_arena_destroy(kv, 0));
    TRY(cua_arena_destroy(act, 0));
    TRY(cua_arena_destroy(weights, 0));
    size_t mapped_now = 1;
    TRY(cua_device_peak(0, NULL, &mapped_now));
    printf("kv_sizing: after teardown the arenas of device 0 map %zu bytes\n", mapped_now);
    if (g_own_backend) TRY(cua_backend_destroy(g_bk));
    return first_try && served && mapped_now == 0 ? 0 : 1;
}
