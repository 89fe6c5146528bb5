#!/usr/bin/env python3
"""All-reduce bandwidth on 2 GPUs (NCCL through torch.distributed), with
torch's own allocator and with cuarena installed in every rank, in one run.

    python3 tests/gpu/multi/allreduce.py [--json FILE]

launches `torchrun --nproc_per_node 2` twice (an allocator is chosen before a
process's first CUDA allocation, so each needs processes of its own) and prints
one table: for each size from 1 MiB to 1 GiB, the median time of an all-reduce
of float32 tensors, algorithm and bus bandwidth (busbw = algbw * 2(n-1)/n, as
nccl-tests), for both allocators, and the ratio. Each rank checks the sum.

    torchrun --nproc_per_node 2 tests/gpu/multi/allreduce.py --allocator cuarena --json F

runs one allocator (what the launcher does). Exit status: 0, 1 on a wrong sum
or a failed rank, 77 with fewer than 2 GPUs. CUARENA_LIB must name
libcuarena.so for the cuarena runs (python/ must be on PYTHONPATH).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

MiB = 1 << 20
SIZES = [MiB << k for k in range(11)]  # 1 MiB .. 1 GiB


def worker(args):
    import torch
    import torch.distributed as dist

    local = int(os.environ["LOCAL_RANK"])
    if args.allocator == "cuarena":
        import cuarena.torch

        cuarena.torch.install()  # before this process's first CUDA allocation
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    rank, world = dist.get_rank(), dist.get_world_size()
    results = []
    for size in SIZES:
        n = size // 4
        x = torch.full((n,), float(rank + 1), dtype=torch.float32, device="cuda")
        iters = 20 if size <= 64 * MiB else 8
        for _ in range(3):  # warm-up: NCCL's channels, the allocator's pages
            dist.all_reduce(x)
        x.fill_(float(rank + 1))
        dist.all_reduce(x)
        want = world * (world + 1) / 2
        ok = bool(torch.all(x == want).item())
        times = []
        for _ in range(iters):
            dist.barrier()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            dist.all_reduce(x)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        t = statistics.median(times)
        algbw = size / t / 1e9
        results.append({"bytes": size, "seconds": t, "algbw_gbs": algbw,
                        "busbw_gbs": algbw * 2 * (world - 1) / world, "correct": ok})
        del x
    allok = torch.tensor([all(r["correct"] for r in results)], device="cuda", dtype=torch.int32)
    dist.all_reduce(allok, op=dist.ReduceOp.MIN)
    mem = {}
    if args.allocator == "cuarena":
        import cuarena

        rep = cuarena.device_report(local)
        mem = {"cuarena_mapped_bytes": rep["mapped_bytes"], "arenas": len(rep["arenas"])}
    dist.destroy_process_group()
    if rank == 0:
        with open(args.json, "w") as f:
            json.dump({"allocator": args.allocator, "world": world, "sizes": results,
                       "all_correct": bool(allok.item()), **mem}, f)
    return 0 if allok.item() else 1


def gpu_count():
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def launch(args):
    if gpu_count() < 2:
        print("allreduce: skipped: needs 2 GPUs, found %d" % gpu_count())
        return 77
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for alloc in ("native", "cuarena"):
            out = os.path.join(tmp, alloc + ".json")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--master_port", str(29500 + (alloc == "cuarena")), os.path.abspath(__file__),
                   "--allocator", alloc, "--json", out]
            print("allreduce: " + " ".join(cmd), flush=True)
            r = subprocess.run(cmd)
            if r.returncode != 0 or not os.path.exists(out):
                print("allreduce: FAIL: the %s run exited %d" % (alloc, r.returncode))
                return 1
            with open(out) as f:
                runs[alloc] = json.load(f)
    nat, cua = runs["native"], runs["cuarena"]
    print("\n| size | native us | native busbw GB/s | cuarena us | cuarena busbw GB/s | cuarena/native |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for a, b in zip(nat["sizes"], cua["sizes"]):
        size = a["bytes"]
        label = "%d MiB" % (size // MiB) if size < 1024 * MiB else "%d GiB" % (size >> 30)
        print("| %s | %.1f | %.1f | %.1f | %.1f | %.3f |" % (
            label, a["seconds"] * 1e6, a["busbw_gbs"], b["seconds"] * 1e6, b["busbw_gbs"],
            b["busbw_gbs"] / a["busbw_gbs"] if a["busbw_gbs"] else 0.0))
    ok = nat["all_correct"] and cua["all_correct"]
    print("\nallreduce: sums %s; cuarena mapped %d bytes in %d arena(s) on rank 0 at the end"
          % ("correct" if ok else "WRONG", cua.get("cuarena_mapped_bytes", -1), cua.get("arenas", -1)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allocator", choices=["native", "cuarena"],
                    help="run as one torchrun rank with this allocator")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if args.allocator:
        if "LOCAL_RANK" not in os.environ:
            ap.error("--allocator is for ranks started by torchrun")
        if not args.json:
            ap.error("--allocator needs --json")
        return worker(args)
    return launch(args)


if __name__ == "__main__":
    sys.exit(main())
