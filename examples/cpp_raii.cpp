/*
 * cpp_raii.cpp - cuarena from C++ (include/cuarena.hpp): an arena per
 * component, allocations that free themselves, a std::vector of device
 * pointers taken through device_allocator, and a teardown that leaves the
 * device as it found it.
 *
 *   cpp_raii [--backend host|cuda|auto] [--cycles N]
 *
 * Each cycle builds an "encoder" and a "decoder" (weights as owning
 * cuarena::allocation objects), runs requests whose scratch buffers live in a
 * scope, keeps a pool of decoder buffers in a std::vector<float *> filled by
 * device_allocator<float>, and lets everything go out of scope. After each
 * cycle the arenas of device 0 must map 0 bytes. Device memory is never
 * touched from the host, so it runs the same on the GPU. Exit status 0 when
 * every cycle ended at zero, 1 otherwise, 2 on usage errors, 77 when
 * --backend cuda finds no GPU. Prints "cpp_raii: " lines.
 */
#include "cuarena.hpp"
#include "cuarena_backend.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

const std::size_t MiB = std::size_t(1) << 20;

cua_backend *g_bk = nullptr; /* the device's shared CUDA backend, or a host one */

cuarena::arena make_arena(const char *name, std::size_t limit)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = name;
    cfg.backend = g_bk;
    cfg.limit = limit;
    cua_status st;
    cuarena::arena a = cuarena::arena::create(cfg, &st);
    if (!a) std::fprintf(stderr, "cpp_raii: arena %s: %s\n", name, cuarena::last_error());
    return a;
}

std::size_t mapped_on_device()
{
    std::size_t now = 0;
    return cua_device_peak(0, nullptr, &now) == CUA_OK ? now : std::size_t(-1);
}

/* A component: its arena and its weights, all released by the destructor
 * (the weights first: members die in reverse order). */
struct component {
    cuarena::arena mem;
    std::vector<cuarena::allocation> weights;

    bool load(const char *name, std::size_t n, std::size_t bytes)
    {
        mem = make_arena(name, 0);
        if (!mem) return false;
        for (std::size_t i = 0; i < n; i++) {
            cuarena::result<cuarena::allocation> r = mem.alloc(bytes);
            if (!r) {
                std::fprintf(stderr, "cpp_raii: %s weights: %s\n", name, cuarena::last_error());
                return false;
            }
            weights.push_back(r.take());
        }
        return true;
    }
    std::size_t live() const
    {
        cua_stats s;
        return mem.stats(&s) == CUA_OK ? std::size_t(s.live_bytes) : 0;
    }
};

bool request(component &enc, component &dec, int r)
{
    /* scratch for one request: freed at the end of the scope, whatever happens */
    cua_status st;
    cuarena::allocation tokens = enc.mem.alloc(64 * 1024 * std::size_t(r + 1), 0, &st);
    cuarena::allocation hidden = enc.mem.alloc(8 * MiB, 0, &st);
    cuarena::allocation logits = dec.mem.alloc(12 * MiB + 512 * std::size_t(r), 0, &st);
    return tokens && hidden && logits;
}

bool cycle(int c)
{
    std::size_t before = mapped_on_device();
    std::size_t peak_live = 0;
    {
        component enc, dec;
        if (!enc.load("encoder", 6, 16 * MiB) || !dec.load("decoder", 4, 24 * MiB)) return false;
        for (int r = 0; r < 4; r++)
            if (!request(enc, dec, r)) {
                std::fprintf(stderr, "cpp_raii: request: %s\n", cuarena::last_error());
                return false;
            }
        {
            /* a pool of device buffers: the vector holds device pointers (host
             * memory); device_allocator hands out the buffers from the decoder */
            cuarena::device_allocator<float> alloc(dec.mem);
            std::vector<float *> pool;
            for (int i = 0; i < 16; i++) {
                cua_status st;
                float *p = alloc.try_allocate(std::size_t(1) << (16 + i % 4), &st);
                if (!p) {
                    std::fprintf(stderr, "cpp_raii: pool: %s\n", cuarena::last_error());
                    return false;
                }
                pool.push_back(p);
            }
            peak_live = enc.live() + dec.live();
            for (float *p : pool) alloc.deallocate(p, 0);
        }
        /* the encoder's work is done: give its cache back now, keep the decoder */
        std::size_t released = 0;
        enc.mem.trim(0, &released);
        std::printf("cpp_raii: cycle %d: encoder live %.1f MiB, decoder live %.1f MiB, peak live "
                    "%.1f MiB, device mapped %.1f MiB\n",
                    c, double(enc.live()) / MiB, double(dec.live()) / MiB,
                    double(peak_live) / MiB, double(mapped_on_device()) / MiB);
    } /* dec and enc die here: weights freed, arenas destroyed */
    std::size_t after = mapped_on_device();
    std::printf("cpp_raii: cycle %d: after teardown the arenas of device 0 map %zu bytes (%zu "
                "before)\n", c, after, before);
    return after == 0 && before == 0;
}

} // namespace

int main(int argc, char **argv)
{
    const char *backend = "auto";
    int cycles = 3;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!std::strcmp(argv[i], "--cycles") && i + 1 < argc) cycles = std::atoi(argv[++i]);
        else {
            std::fputs("usage: cpp_raii [--backend host|cuda|auto] [--cycles N]\n", stderr);
            return 2;
        }
    }
    bool own = false;
    cua_status st = CUA_ERR_NO_DEVICE;
    if (std::strcmp(backend, "host")) {
        st = cua_device_backend(0, &g_bk);
        if (st != CUA_OK && !std::strcmp(backend, "cuda")) {
            std::fprintf(stderr, "cpp_raii: no GPU: %s\n", cuarena::last_error());
            return 77;
        }
    }
    if (st != CUA_OK) {
        if (cua_backend_host_create(nullptr, &g_bk) != CUA_OK) {
            std::fprintf(stderr, "cpp_raii: %s\n", cuarena::last_error());
            return 1;
        }
        own = true;
    }
    std::printf("cpp_raii: backend %s\n", own ? "host" : "cuda (device 0)");
    bool ok = cycles >= 1;
    for (int c = 0; c < cycles && ok; c++) ok = cycle(c);
    if (own && cua_backend_destroy(g_bk) != CUA_OK) ok = false;
    std::printf("cpp_raii: %s\n", ok ? "every cycle ended at zero" : "FAILED");
    return ok ? 0 : 1;
}
