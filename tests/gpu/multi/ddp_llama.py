#!/usr/bin/env python3
"""A small Llama trained data-parallel on 2 GPUs (DDP over NCCL), with torch's
own allocator and with cuarena installed in every rank, in one run.

    python3 tests/gpu/multi/ddp_llama.py [--steps 20] [--json FILE]

launches `torchrun --nproc_per_node 2` twice (native, then cuarena). Each rank
builds the same tiny transformers LlamaConfig model from a fixed seed (random
init, float32, TF32 off, deterministic algorithms), trains --steps AdamW steps
on fixed random tokens of its own, and records the loss averaged over the
ranks at each step. After the run it frees the model and the optimizer,
destroys the process group, empties the cache (cuarena: trims every arena of
the device) and compares each device's driver-used memory
(torch.cuda.mem_get_info) with its baseline, taken after CUDA, cuBLAS and the
kernels were warmed up and before the process group existed.

Printed: the losses of both runs side by side, the largest difference
(relative), and each device's memory left over the baseline. Fails (1) when
the losses differ by more than --rtol (default 1e-3) at any step, or a device
keeps more than --slack MiB (default 64: NCCL and cuBLAS may keep a little).
Exit 77 with fewer than 2 GPUs or without transformers.

    torchrun --nproc_per_node 2 tests/gpu/multi/ddp_llama.py --allocator cuarena --json F

runs one allocator (what the launcher does).
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile

MiB = 1 << 20


def used(dev):
    import torch

    free, total = torch.cuda.mem_get_info(dev)
    return total - free


def empty(args, dev):
    import torch

    gc.collect()
    torch.cuda.synchronize(dev)
    try:
        torch._C._cuda_clearCublasWorkspaces()  # their blocks are live in either allocator
    except Exception:
        pass
    if args.allocator == "cuarena":
        import cuarena.torch

        cuarena.torch.empty_cache(dev)
    torch.cuda.empty_cache()


def worker(args):
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    local = int(os.environ["LOCAL_RANK"])
    if args.allocator == "cuarena":
        import cuarena.torch

        cuarena.torch.install()  # before this process's first CUDA allocation
    import torch.distributed as dist
    from transformers import LlamaConfig, LlamaForCausalLM
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.cuda.set_device(local)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Warm-up: context, cuBLAS, the kernels; then the baseline.
    w = torch.randn(256, 256, device="cuda")
    (w @ w).sum().item()
    del w
    empty(args, local)
    baseline = used(local)

    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = LlamaConfig(vocab_size=1024, hidden_size=256, intermediate_size=688,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=256)
    torch.manual_seed(1234)
    model = LlamaForCausalLM(cfg).to("cuda")
    ddp = DDP(model, device_ids=[local])
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
    gen = torch.Generator(device="cpu").manual_seed(1000 + rank)
    batches = [torch.randint(0, cfg.vocab_size, (8, 128), generator=gen) for _ in range(args.steps)]
    losses = []
    for step in range(args.steps):
        ids = batches[step].to("cuda")
        out = ddp(input_ids=ids, labels=ids)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        loss = out.loss.detach().clone()
        dist.all_reduce(loss)
        losses.append(loss.item() / world)
    peak = torch.cuda.max_memory_allocated(local)
    report = {}
    if args.allocator == "cuarena":
        import cuarena

        report = cuarena.device_report(local)
    del ddp, model, opt, out, loss, ids
    dist.destroy_process_group()
    empty(args, local)
    left = used(local) - baseline
    rec = {"allocator": args.allocator, "rank": rank, "losses": losses, "baseline_used": baseline,
           "left_over_baseline": left, "peak_allocated": peak,
           "cuarena_mapped_during": report.get("mapped_bytes")}
    with open("%s.rank%d" % (args.json, rank), "w") as f:
        json.dump(rec, f)
    return 0


def gpu_count():
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def launch(args):
    if gpu_count() < 2:
        print("ddp_llama: skipped: needs 2 GPUs, found %d" % gpu_count())
        return 77
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("ddp_llama: skipped: transformers is not installed")
        return 77
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for alloc in ("native", "cuarena"):
            out = os.path.join(tmp, alloc + ".json")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--master_port", str(29510 + (alloc == "cuarena")), os.path.abspath(__file__),
                   "--allocator", alloc, "--json", out, "--steps", str(args.steps)]
            print("ddp_llama: " + " ".join(cmd), flush=True)
            r = subprocess.run(cmd)
            ranks = []
            for k in range(2):
                try:
                    with open("%s.rank%d" % (out, k)) as f:
                        ranks.append(json.load(f))
                except OSError:
                    pass
            if r.returncode != 0 or len(ranks) != 2:
                print("ddp_llama: FAIL: the %s run exited %d (%d rank results)"
                      % (alloc, r.returncode, len(ranks)))
                return 1
            runs[alloc] = ranks
    nat, cua = runs["native"][0]["losses"], runs["cuarena"][0]["losses"]
    print("\n| step | native loss | cuarena loss | rel. diff |")
    print("| ---: | ---: | ---: | ---: |")
    worst = 0.0
    for i, (a, b) in enumerate(zip(nat, cua)):
        rel = abs(a - b) / max(abs(a), 1e-12)
        worst = max(worst, rel)
        print("| %d | %.6f | %.6f | %.2e |" % (i, a, b, rel))
    status = 0
    print("\nddp_llama: largest relative loss difference %.2e (tolerance %.0e)" % (worst, args.rtol))
    if worst > args.rtol or len(nat) != len(cua):
        status = 1
    print("\n| allocator | rank | peak allocated MiB | driver-used left over baseline MiB |")
    print("| --- | ---: | ---: | ---: |")
    for alloc in ("native", "cuarena"):
        for r in runs[alloc]:
            left = r["left_over_baseline"] / MiB
            print("| %s | %d | %.1f | %.1f |" % (alloc, r["rank"], r["peak_allocated"] / MiB, left))
            if left > args.slack:
                status = 1
    print("ddp_llama: %s" % ("passed" if status == 0 else "FAIL"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f)
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allocator", choices=["native", "cuarena"],
                    help="run as one torchrun rank with this allocator")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--slack", type=float, default=64.0, help="MiB a device may keep")
    args = ap.parse_args()
    if args.allocator:
        if "LOCAL_RANK" not in os.environ or not args.json:
            ap.error("--allocator is for ranks started by torchrun, with --json")
        return worker(args)
    return launch(args)


if __name__ == "__main__":
    sys.exit(main())
