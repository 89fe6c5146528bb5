#!/usr/bin/env python3
"""torch-replay: catrace files through PyTorch's CUDA caching allocator, with
the figures cuarena-replay gives (one JSON line per trace), for cuarena-bench.

    PYTORCH_CUDA_ALLOC_CONF=... python3 bench/torch-replay.py [options] FILE...

The events run in C++ (a small extension built with torch.utils.cpp_extension,
cached by torch) through c10::cuda::CUDACachingAllocator::raw_alloc /
raw_delete on the current stream, so that the figure is the allocator's and
not Python's. As for the other allocators: an untimed metrics run (peak
reserved = torch.cuda.max_memory_reserved; the timeline samples
memory_reserved every N events and at markers, where markers starting with
--trim-at get torch.cuda.empty_cache()), then one warm-up and --repeat timed
runs (ns per event = run time / (2 x allocations)), then with --budget-search
the smallest torch.cuda.set_per_process_memory_fraction (2 MiB steps) under
which the trace completes. --cap B replays under that cap, names the event
that fails and exits 1.

Exit status: 0 ok, 1 a replay failed, 2 usage error, 77 no torch with CUDA.
"""
import argparse
import gzip
import json
import os
import statistics
import sys

GRAN = 2 << 20

CPP = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <chrono>
#include <vector>

namespace alloc = c10::cuda::CUDACachingAllocator;

// Events [begin, end): op 0 alloc, 1 free, 2 marker. ptrs[slot] holds the
// pointer of a live slot. Returns {status, event, ns}: status 0 ok, 1 out of
// memory at `event`, 2 another error at `event`.
std::vector<int64_t> run(torch::Tensor ops, torch::Tensor slots, torch::Tensor sizes,
                         torch::Tensor ptrs, int64_t begin, int64_t end) {
    const int8_t *op = ops.data_ptr<int8_t>();
    const int64_t *slot = slots.data_ptr<int64_t>();
    const int64_t *size = sizes.data_ptr<int64_t>();
    int64_t *p = ptrs.data_ptr<int64_t>();
    auto t0 = std::chrono::steady_clock::now();
    int64_t i = begin;
    try {
        for (; i < end; i++) {
            if (op[i] == 0) {
                p[slot[i]] = reinterpret_cast<int64_t>(alloc::raw_alloc(static_cast<size_t>(size[i])));
            } else if (op[i] == 1) {
                alloc::raw_delete(reinterpret_cast<void *>(p[slot[i]]));
                p[slot[i]] = 0;
            }
        }
    } catch (const c10::OutOfMemoryError &) {
        return {1, i, 0};
    } catch (const c10::Error &) {
        return {2, i, 0};
    }
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    return {0, end, static_cast<int64_t>(ns)};
}

// Free every live slot; the ns it took.
int64_t free_all(torch::Tensor ptrs) {
    int64_t *p = ptrs.data_ptr<int64_t>();
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < ptrs.numel(); s++) {
        if (p[s]) alloc::raw_delete(reinterpret_cast<void *>(p[s]));
        p[s] = 0;
    }
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("run", &run);
    m.def("free_all", &free_all);
}
"""


def load_trace(path):
    """(ops, slots, sizes, streams, marker names by event, n_allocs, peak live)."""
    opener = gzip.open if path.endswith(".gz") else open
    ops, slots, sizes, marks = [], [], [], {}
    ids, live, peak = {}, 0, 0
    with opener(path, "rt") as f:
        if f.readline().strip() != "# catrace v1":
            raise ValueError("%s: not a catrace v1 file" % path)
        for line in f:
            fld = line.split()
            if not fld or fld[0] == "#":
                continue
            if fld[0] == "a":
                slot = len(ids)
                ids[fld[1]] = (slot, int(fld[2]))
                ops.append(0), slots.append(slot), sizes.append(int(fld[2]))
                live += int(fld[2])
                peak = max(peak, live)
            elif fld[0] == "f":
                slot, size = ids[fld[1]]
                ops.append(1), slots.append(slot), sizes.append(size)
                live -= size
            elif fld[0] == "m":
                marks[len(ops)] = fld[1] if len(fld) > 1 else ""
                ops.append(2), slots.append(0), sizes.append(0)
    return ops, slots, sizes, marks, len(ids), peak


def name_of(path):
    base = os.path.basename(path)
    for suffix in (".catrace.gz", ".catrace"):
        if base.endswith(suffix):
            return base[:-len(suffix)]
    return base


class Replay:
    def __init__(self, torch, ext, path):
        self.torch, self.ext = torch, ext
        ops, slots, sizes, self.marks, self.n_allocs, self.peak_live = load_trace(path)
        self.sizes_py, self.ops_py = sizes, ops
        self.ops = torch.tensor(ops, dtype=torch.int8)
        self.slots = torch.tensor(slots, dtype=torch.int64)
        self.sizes = torch.tensor(sizes, dtype=torch.int64)
        self.ptrs = torch.zeros(max(1, self.n_allocs), dtype=torch.int64)
        self.n = len(ops)

    def run(self, begin, end):
        st, event, ns = self.ext.run(self.ops, self.slots, self.sizes, self.ptrs, begin, end)
        return st, event, ns

    def free_all(self):
        return self.ext.free_all(self.ptrs)

    def failure(self, event, what):
        before = [m for e, m in self.marks.items() if e < event]
        return "event %d (%s of %d bytes on stream 0, %s): %s" % (
            event, "alloc" if self.ops_py[event] == 0 else "free", self.sizes_py[event],
            "after marker '%s'" % before[-1] if before else "before any marker", what)


def metrics(rp, timeline, trim_at):
    """The untimed run: peak reserved, the timeline. (row fields, error)."""
    torch = rp.torch
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    every = max(1, rp.n // timeline) if timeline else 0
    points, markers = [], []
    live, i = 0, 0
    # stops: every `every` events, each marker, the last event
    stops = sorted(set(list(range(every - 1, rp.n, every)) if every else []) | set(rp.marks) | {rp.n - 1})
    for stop in stops:
        st, event, _ = rp.run(i, stop + 1)
        if st:
            rp.free_all()
            return None, rp.failure(event, "out of memory" if st == 1 else "allocator error")
        for k in range(i, stop + 1):
            live += rp.sizes_py[k] if rp.ops_py[k] == 0 else -rp.sizes_py[k] if rp.ops_py[k] == 1 else 0
        i = stop + 1
        trim = stop in rp.marks and rp.marks[stop].startswith(trim_at)
        if not every:
            if trim:  # the trim happens with or without a timeline
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            continue
        reserved = torch.cuda.memory_reserved()
        points.append([stop, live, reserved])
        if stop in rp.marks:
            m = {"event": stop, "name": rp.marks[stop], "live": live, "mapped": reserved, "mapped_after_trim": None}
            if trim:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                m["mapped_after_trim"] = torch.cuda.memory_reserved()
                points.append([stop, live, m["mapped_after_trim"]])
            markers.append(m)
    rp.free_all()
    torch.cuda.synchronize()
    row = {"peak_mapped_bytes": torch.cuda.max_memory_reserved()}
    if every:
        row["timeline"] = {"every": every, "points": points, "markers": markers}
    return row, None


def timing(rp, repeat):
    ns = []
    for k in range(repeat + 1):
        st, event, t = rp.run(0, rp.n)
        if st:
            rp.free_all()
            return None, rp.failure(event, "out of memory" if st == 1 else "allocator error")
        t += rp.free_all()
        rp.torch.cuda.synchronize()
        if k:
            ns.append(t / (2.0 * max(1, rp.n_allocs)))
    return ns, None


def attempt(rp, cap, total, trim_at):
    """The whole trace under the cap, as metrics() replays it (empty_cache at
    the trim_at markers): whether it completed."""
    torch = rp.torch
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
    st, i = 0, 0
    for stop in sorted({e for e, name in rp.marks.items() if name.startswith(trim_at)} | {rp.n - 1}):
        st, event, _ = rp.run(i, stop + 1)
        if st:
            break
        i = stop + 1
        if stop in rp.marks and rp.marks[stop].startswith(trim_at):
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    rp.free_all()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(1.0)
    return st == 0


def budget(rp, peak_mapped, trim_at, step=GRAN):
    total = rp.torch.cuda.get_device_properties(0).total_memory
    lo = max(0, rp.peak_live // GRAN * GRAN - GRAN)
    hi = (peak_mapped + GRAN) // GRAN * GRAN + GRAN
    while not attempt(rp, hi, total, trim_at):
        if hi >= total:
            return None
        lo, hi = hi, min(total, hi * 2)
    step = max(GRAN, step // GRAN * GRAN)
    while hi - lo > step:
        mid = lo + (hi - lo) // GRAN // 2 * GRAN
        if attempt(rp, mid, total, trim_at):
            hi = mid
        else:
            lo = mid
    return hi


def main(argv):
    p = argparse.ArgumentParser(prog="torch-replay", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--timeline", type=int, default=0)
    p.add_argument("--trim-at", default="teardown")
    p.add_argument("--budget-search", action="store_true")
    p.add_argument("--budget-step", type=int, default=GRAN,
                   help="the bisection stops within this many bytes (default 2 MiB)")
    p.add_argument("--cap", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import torch
        from torch.utils.cpp_extension import load_inline
    except ImportError:
        print("torch-replay: no torch: skipped", file=sys.stderr)
        return 77
    if not torch.cuda.is_available():
        print("torch-replay: no CUDA device: skipped", file=sys.stderr)
        return 77
    ext = load_inline("cuarena_torch_replay", cpp_sources=CPP, extra_cflags=["-O2"], with_cuda=True,
                      verbose=False)
    torch.cuda.init()
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
    status = 0
    for path in args.files:
        rp = Replay(torch, ext, path)
        row = {"trace": name_of(path), "backend": "torch", "alloc_conf": conf, "events": rp.n,
               "allocs": rp.n_allocs, "peak_live_bytes": rp.peak_live, "repeat": args.repeat}
        total = torch.cuda.get_device_properties(0).total_memory
        if args.cap:
            torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap / total))
            row["cap_bytes"] = args.cap
        fields, err = metrics(rp, args.timeline, args.trim_at)
        ns = None
        if not err:
            row.update(fields)
            row["peak_mapped_over_live"] = row["peak_mapped_bytes"] / rp.peak_live if rp.peak_live else None
            if args.repeat > 0:
                ns, err = timing(rp, args.repeat)
        if not err and ns:
            row.update(ns_per_event=statistics.median(ns), ns_per_event_min=min(ns),
                       ns_per_event_max=max(ns), ns_per_event_runs=ns)
        if not err and args.budget_search and not args.cap:
            b = budget(rp, row["peak_mapped_bytes"], args.trim_at, args.budget_step)
            if b is None:
                err = "budget search: no fraction of the device completes the trace"
            else:
                row["min_budget_bytes"] = b
                row["min_budget_over_live"] = b / rp.peak_live if rp.peak_live else None
        if err:
            print("torch-replay: %s: %s" % (row["trace"], err), file=sys.stderr)
            status = 1
            continue
        print(json.dumps(row), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
