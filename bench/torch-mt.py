#!/usr/bin/env python3
"""torch-mt: PyTorch's CUDA caching allocator under threads, the workload of
bench/cuarena-mt (one JSON line per thread count, the same fields).

    PYTORCH_CUDA_ALLOC_CONF=... python3 bench/torch-mt.py [--threads 1,2,4,8,16]
        [--ops N] [--window W] [--sizes TRACE]

Each thread runs on a stream of its own (from torch's stream pool) and keeps a
window of W live blocks: it allocates a size drawn from the trace's allocation
sizes (the same per-thread xorshift sequence as cuarena-mt) and, once the
window is full, frees the oldest; one op = one alloc + one free. The loop is
C++ (a small extension built with torch.utils.cpp_extension, calling
c10::cuda::CUDACachingAllocator::raw_alloc_with_stream / raw_delete) with the
GIL released, so the figure is the allocator's. One warm-up run per thread
count, then the timed one.

Exit status: 0 ok, 1 an allocation failed, 2 usage error, 77 no torch with CUDA.
"""
import argparse
import gzip
import json
import os
import sys

CPP = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace alloc = c10::cuda::CUDACachingAllocator;

// ops/s of n threads, or -1 when an allocation failed.
double mt(torch::Tensor sizes_t, int64_t n, int64_t ops, int64_t window) {
    const int64_t *sizes = sizes_t.data_ptr<int64_t>();
    int64_t nsizes = sizes_t.numel();
    std::vector<c10::cuda::CUDAStream> streams;
    for (int64_t i = 0; i < n; i++) streams.push_back(c10::cuda::getStreamFromPool(false));
    std::atomic<int64_t> ready{0}, failures{0};
    std::atomic<bool> go{false};
    std::vector<int64_t> done(n, 0);
    py::gil_scoped_release nogil;
    std::vector<std::thread> th;
    for (int64_t t = 0; t < n; t++) {
        th.emplace_back([&, t] {
            c10::cuda::CUDAStream s = streams[t];
            std::vector<void *> ring(window, nullptr);
            uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1);
            ready++;
            while (!go.load()) {}
            try {
                for (int64_t i = 0; i < ops; i++) {
                    int64_t k = i % window;
                    if (ring[k]) alloc::raw_delete(ring[k]);
                    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                    ring[k] = alloc::raw_alloc_with_stream((size_t)sizes[x % (uint64_t)nsizes], s.stream());
                }
                for (auto p : ring) if (p) alloc::raw_delete(p);
            } catch (const c10::Error &) {
                failures++;
            }
            done[t] = std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::steady_clock::now().time_since_epoch()).count();
        });
    }
    while (ready.load() < n) {}
    int64_t t0 = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch()).count();
    go = true;
    for (auto &x : th) x.join();
    int64_t t1 = t0;
    for (auto d : done) t1 = d > t1 ? d : t1;
    if (failures.load()) return -1;
    return (double)ops * (double)n / ((double)(t1 - t0) * 1e-9);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("mt", &mt); }
"""


def load_sizes(path):
    opener = gzip.open if path.endswith(".gz") else open
    sizes = []
    with opener(path, "rt") as f:
        for line in f:
            fld = line.split()
            if len(fld) >= 3 and fld[0] == "a":
                sizes.append(int(fld[2]))
    return sizes


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(prog="torch-mt", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2,4,8,16")
    p.add_argument("--ops", type=int, default=200000)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--sizes", default=os.path.join(here, "traces", "gpt2_generate.catrace.gz"))
    args = p.parse_args(argv)
    try:
        import torch
        from torch.utils.cpp_extension import load_inline
    except ImportError:
        print("torch-mt: no torch", file=sys.stderr)
        return 77
    if not torch.cuda.is_available():
        print("torch-mt: no CUDA device", file=sys.stderr)
        return 77
    torch.cuda.init()
    torch.zeros(1, device="cuda")  # the caching allocator set up before the threads
    ext = load_inline(name="cuarena_torch_mt", cpp_sources=[CPP], with_cuda=True, verbose=False)
    sizes = torch.tensor(load_sizes(args.sizes), dtype=torch.int64)
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    base, status = 0.0, 0
    for n in [int(t) for t in args.threads.split(",")]:
        ext.mt(sizes, n, args.ops, args.window)  # warm-up: the pool's segments
        ops = ext.mt(sizes, n, args.ops, args.window)
        if ops < 0:
            status = 1
        if n == 1 or base == 0:
            base = ops / n
        print(json.dumps({"allocator": "torch", "conf": conf, "backend": "cuda", "threads": n,
                          "ops_per_s": round(ops), "ops_per_s_per_thread": round(ops / n),
                          "speedup_over_one": round(ops / base, 2) if base > 0 else 0,
                          "failures": 1 if ops < 0 else 0}), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
