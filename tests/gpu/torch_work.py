"""torch_work.py - PyTorch workloads run once with torch's own allocator and
once with cuarena, each in a process of its own (an allocator is chosen once
per process); tests/gpu/test_torch.py compares what they print.

    python3 tests/gpu/torch_work.py WORKLOAD native|cuarena

Prints one JSON object on its last line.
"""

import hashlib
import json
import os
import sys
import time

if os.environ.get("CUA_TORCH_INSTALLED") != "1":  # (else: cuarena as installed, tests/gpu/wheel.sh)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

import torch  # noqa: E402

from torch_promises import (  # noqa: E402,F401 (work_*: by name, main)
    small_llama, train_llama, work_compile_graphs, work_compile_models, work_fidelity)

MiB = 1 << 20


def digest(*tensors):
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def driver_used():
    free, total = torch.cuda.mem_get_info()
    return total - free


def work_ops(use):
    """Matmuls, a convolution, softmax, a small MLP's forward and backward."""
    torch.manual_seed(0)
    a = torch.randn(1024, 1024, device="cuda")
    b = torch.randn(1024, 1024, device="cuda")
    c = (a @ b).relu().softmax(dim=-1)
    x = torch.randn(8, 3, 64, 64, device="cuda")
    conv = torch.nn.Conv2d(3, 16, 3).cuda()
    y = conv(x).mean()
    mlp = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.GELU(),
                              torch.nn.Linear(2048, 512)).cuda()
    inp = torch.randn(64, 512, device="cuda", requires_grad=True)
    loss = mlp(inp).pow(2).mean()
    loss.backward()
    empty = torch.empty(0, device="cuda")
    torch.cuda.synchronize()
    return {"digest": digest(c, y, loss, inp.grad, mlp[0].weight.grad), "empty": empty.numel()}


def work_gpt2(use):
    """GPT-2 (random weights, fp16), greedy generate() on a batch of 4."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).half().cuda().eval()
    ids = torch.randint(0, 50257, (4, 16), device="cuda")
    with torch.no_grad():
        model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=64, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t
    return {"tokens": out.tolist(), "seconds": seconds}


def encoder_and_transformer():
    torch.manual_seed(1)
    enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(512, 8, 2048,
                                                                       batch_first=True), 4)
    dec = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(512, 8, 2048,
                                                                       batch_first=True), 6)
    return enc, dec


def work_offload(use):
    """The text encoder's arena is offloaded while the transformer runs, then
    restored: its outputs bit-identical, its tensors at the same addresses."""
    import cuarena

    enc_arena = cuarena.Arena("text_encoder")
    dit_arena = cuarena.Arena("transformer")
    enc, dec = encoder_and_transformer()
    with enc_arena:
        enc = enc.cuda().eval()
    with dit_arena:
        dec = dec.cuda().eval()
    tokens = torch.randn(4, 77, 512, device="cuda")
    with torch.no_grad():
        with enc_arena:
            before = enc(tokens)
            before_digest = digest(before)
            del before
        ptrs = [p.data_ptr() for p in enc.parameters()]
        torch.cuda.synchronize()
        used0 = driver_used()
        enc_bytes = enc_arena.stats()["mapped_bytes"]
        enc_arena.offload()
        used_off = driver_used()
        with dit_arena:
            out = dec(torch.randn(4, 256, 512, device="cuda"))
        torch.cuda.synchronize()
        enc_arena.restore()
        with enc_arena:
            after = enc(tokens)
        torch.cuda.synchronize()
    return {
        "exact": digest(after) == before_digest,
        "pointers_stable": ptrs == [p.data_ptr() for p in enc.parameters()],
        "encoder_mapped_bytes": enc_bytes,
        "driver_freed_by_offload": used0 - used_off,
        "transformer_ran": bool(torch.isfinite(out).all()),
    }


def arena_chooser(arenas):
    """inside(name): the arena of that component, or no arena at all (native)."""
    return lambda name: arenas[name] if arenas else _Null()


def load_pipeline(inside):
    """The encoder and the transformer on the GPU, each in its component's arena."""
    enc, dec = encoder_and_transformer()
    with inside("text_encoder"):
        enc = enc.cuda().eval()
    with inside("transformer"):
        dec = dec.cuda().eval()
    return enc, dec


def reload_cycle(arenas):
    """Build the pipeline (in the arenas, if any), serve 3 requests, tear it
    down; returns driver-used at the peak and the arenas that refused a plain
    destroy (torch still held a block of them)."""
    import gc

    import cuarena

    inside = arena_chooser(arenas)
    enc, dec = load_pipeline(inside)
    with inside("engine"):
        engine = torch.empty(256 * MiB, dtype=torch.uint8, device="cuda")
    with torch.no_grad():
        for _ in range(3):
            with inside("text_encoder"):
                h = enc(torch.randn(4, 77, 512, device="cuda"))
            with inside("transformer"):
                out = dec(torch.cat([h, torch.randn(4, 179, 512, device="cuda")], 1))
    torch.cuda.synchronize()
    peak = driver_used()
    mapped = cuarena.device_report(0)["mapped_bytes"] if arenas else 0
    del enc, dec, engine, h, out
    gc.collect()
    torch.cuda.synchronize()
    busy = 0
    for a in arenas.values():
        try:
            a.destroy()  # refuses while torch still holds a block of it
        except cuarena.Error:
            busy += 1
            a.destroy(force=True)
    return peak, mapped, busy


def empty_cache(use):
    if use == "cuarena":
        import cuarena.torch as ct

        ct.empty_cache()
    else:
        torch.cuda.empty_cache()


def work_reload(use):
    """Build, serve and tear down an encoder + transformer pipeline 10 times,
    with a raw 256 MiB buffer (a stand-in for a TensorRT engine) beside it,
    each component in an arena of its own under cuarena."""
    import cuarena

    # One cycle first, outside any arena: what torch and CUDA keep for good
    # after a first use (cuBLAS workspaces, lazily loaded kernels) is made
    # there and counted in the baseline.
    reload_cycle({})
    empty_cache(use)
    base = driver_used()
    rows = []
    for cycle in range(10):
        arenas = {}
        if use == "cuarena":
            arenas = {n: cuarena.Arena(n) for n in ("text_encoder", "transformer", "engine")}
        peak, mapped, busy = reload_cycle(arenas)
        empty_cache(use)
        rows.append({"cycle": cycle, "peak_over_base": peak - base, "busy_arenas": busy,
                     "cuarena_mapped_at_peak": mapped,
                     "after_over_base": driver_used() - base})
    return {"base": base, "cycles": rows}


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def is_oom(e):
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def work_reload_cap(use):
    """Scenario 1 under a memory cap: each cycle builds the pipeline and an
    engine buffer made by CuPy (a stand-in for a TensorRT engine, 256 MiB),
    serves, and tears down with gc + empty_cache - but a registry of engines
    that nobody clears still holds the old engine object (the kind of stray
    reference that kept an old engine's memory alive in real reloads).
    Natively that memory stays and a later reload runs out of memory under the
    cap; under cuarena the engine's arena is destroyed (force) and gives its
    pages back whatever still points into it. The cap: a raw cudaMalloc
    ballast leaves 1 GiB above the baseline."""
    import gc

    import cupy

    import cuarena

    reload_cycle({})
    cupy.zeros(256 << 20, dtype=cupy.uint8)  # CuPy's context and kernels, before the baseline
    cupy.cuda.Device().synchronize()
    cupy.get_default_memory_pool().free_all_blocks()
    empty_cache(use)
    free, _ = torch.cuda.mem_get_info()
    ballast = cupy.cuda.runtime.malloc(free - (1 << 30))
    # The baseline: after the ballast, whose mapping costs the driver memory
    # of its own (1.8 MiB of page tables for ~78 GiB).
    base = driver_used()
    registry = []  # never cleared: the stray reference
    rows = []
    for cycle in range(6):
        arenas = {}
        if use == "cuarena":
            arenas = {n: cuarena.Arena(n) for n in ("text_encoder", "transformer", "engine")}
        row = {"cycle": cycle}
        try:
            inside = arena_chooser(arenas)
            enc, dec = load_pipeline(inside)
            if arenas:
                with cupy.cuda.using_allocator(cuarena.cupy_allocator(arenas["engine"])):
                    engine = cupy.zeros(256 << 20, dtype=cupy.uint8)
            else:
                engine = cupy.zeros(256 << 20, dtype=cupy.uint8)
            registry.append(engine)
            with torch.no_grad():
                with inside("text_encoder"):
                    h = enc(torch.randn(4, 77, 512, device="cuda"))
                with inside("transformer"):
                    out = dec(torch.cat([h, torch.randn(4, 179, 512, device="cuda")], 1))
            torch.cuda.synchronize()
            row["ok"] = True
            del enc, dec, h, out, engine
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            row["ok"] = False
            row["error"] = str(e).splitlines()[0][:200]
        gc.collect()
        torch.cuda.synchronize()
        for a in arenas.values():
            a.destroy(force=True)
        empty_cache(use)
        cupy.get_default_memory_pool().free_all_blocks()
        row["after_over_base"] = driver_used() - base
        rows.append(row)
        if not row["ok"]:
            break
    cupy.cuda.runtime.free(ballast)
    return {"base": base, "cycles": rows}


def work_janitor(use):
    """Scenario 2: after a burst of requests the serving arena sits idle; the
    janitor (idle_ms 300, every 50 ms) trims it to its live blocks. Natively
    the cache stays until someone calls empty_cache."""
    import cuarena

    enc, _ = encoder_and_transformer()
    serve = cuarena.Arena("serve", idle_ms=300) if use == "cuarena" else _Null()
    with serve:
        enc = enc.cuda().eval()
        with torch.no_grad():
            for i in range(40):  # requests of varying sizes
                enc(torch.randn(4, 32 + 16 * (i % 12), 512, device="cuda"))
    torch.cuda.synchronize()
    res = {}
    if use == "cuarena":
        st = serve.stats()
        res["after_burst_mapped"], res["live"] = st["mapped_bytes"], st["live_bytes"]
        cuarena.janitor_start(50)
        time.sleep(1.0)
        cuarena.janitor_stop()
        st = serve.stats()
        res["after_idle_mapped"], res["live_after"] = st["mapped_bytes"], st["live_bytes"]
        res["live_blocks"] = st["live_blocks"]
        del enc
        import gc

        gc.collect()
        torch.cuda.synchronize()
        res["live_at_destroy"] = serve.stats()["live_bytes"]
        serve.destroy(force=True)
        res["after_destroy_mapped_device"] = cuarena.device_report(0)["mapped_bytes"]
    else:
        res["after_burst_mapped"] = torch.cuda.memory_reserved()
        res["live"] = torch.cuda.memory_allocated()
        time.sleep(1.0)
        res["after_idle_mapped"] = torch.cuda.memory_reserved()
    return res


def work_kv(use):
    """Scenario 5: size a KV cache from what is left after a profiling forward
    pass, allocate it in one try, then find by bisection the largest KV cache
    with which the forward pass still runs."""
    import gc

    import cuarena

    _, dec = encoder_and_transformer()
    dec = dec.cuda().eval()
    batch = torch.randn(8, 512, 512, device="cuda")

    def forward():
        with torch.no_grad():
            out = dec(batch)
        torch.cuda.synchronize()
        del out

    forward()  # warm-up: workspaces, kernels
    if use == "cuarena":
        import cuarena.torch as ct

        ct.empty_cache()
        kv_arena = cuarena.Arena("kv_cache")
        mapped0 = cuarena.device_report(0)["mapped_bytes"]
        cuarena.reset_peak_stats()
        forward()
        act = cuarena.device_report(0)["peak_mapped_bytes"] - mapped0
        estimate = cuarena.headroom() - act
        inside, release = kv_arena, (lambda: kv_arena.trim(0))
    else:
        torch.cuda.empty_cache()
        alloc0 = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        forward()
        act = torch.cuda.max_memory_allocated() - alloc0
        free, _ = torch.cuda.mem_get_info()
        estimate = free + torch.cuda.memory_reserved() - torch.cuda.memory_allocated() - act
        inside, release = _Null(), torch.cuda.empty_cache

    def try_kv(size):
        """A KV cache of `size` bytes, then the forward pass: both fit?"""
        try:
            with inside:
                kv = torch.empty(size, dtype=torch.uint8, device="cuda")
            forward()
            del kv
            return True
        except Exception as e:  # noqa: BLE001
            if not is_oom(e):
                raise
            return False
        finally:
            gc.collect()
            release()

    first_try = try_kv(estimate)
    lo, hi = (estimate, estimate + (2 << 30)) if first_try else (estimate - (2 << 30), estimate)
    step = 1 << 20
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if try_kv(mid):
            lo = mid
        else:
            hi = mid
    return {"estimate": estimate, "first_try_fits": first_try, "largest": lo,
            "estimate_over_largest": estimate / lo, "activation_peak": act}


def work_weights(use):
    """Scenario 3: 20 cycles of serve / pause (KV cache dropped, cache
    emptied) / in-place weight update (new weights arrive as temporaries of
    every parameter's size, one small tensor per cycle is kept: a log) /
    resume (the KV cache again). Prints mapped (reserved) over live after
    each cycle; under cuarena each cycle's trims come through on_event."""
    import gc

    import cuarena

    torch.manual_seed(5)
    _, dec = encoder_and_transformer()
    trims = []
    if use == "cuarena":
        import cuarena.torch as ct

        weights, kv_arena = cuarena.Arena("weights"), cuarena.Arena("kv_cache")
        kinds = {}

        def on_event(e):
            kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
            if e["kind"] == "trimmed":
                trims.append(e["bytes"])

        cuarena.on_event(on_event)

        def usage():
            rep = cuarena.device_report(0)
            return rep["mapped_bytes"], rep["live_bytes"]

        empty = ct.empty_cache
    else:
        weights = kv_arena = _Null()

        def usage():
            return torch.cuda.memory_reserved(), torch.cuda.memory_allocated()

        empty = torch.cuda.empty_cache
    with weights:
        dec = dec.cuda().eval()
    with kv_arena:
        kv = torch.empty(512 * MiB, dtype=torch.uint8, device="cuda")
    kept, rows = [], []
    for cycle in range(20):
        with torch.no_grad():
            for i in range(3):  # serve
                dec(torch.randn(4, 64 + 32 * ((cycle + i) % 7), 512, device="cuda"))
        del kv  # pause
        gc.collect()
        before = len(trims)
        released = empty() or 0
        with weights, torch.no_grad():  # in-place update from temporaries
            for p in dec.parameters():
                new = torch.randn_like(p)
                p.copy_(new)
                del new
            kept.append(torch.zeros(256 * 1024 + cycle * 4096, device="cuda"))
        with kv_arena:  # resume
            kv = torch.empty(512 * MiB, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
        mapped, live = usage()
        rows.append({"cycle": cycle, "mapped": mapped, "live": live,
                     "mapped_over_live": mapped / live,
                     "trimmed_bytes": sum(trims[before:]), "released": released})
    return {"cycles": rows, "events": kinds if use == "cuarena" else {}}


def work_llama(use):
    """A small Llama (4 layers, hidden 512) trained 30 steps with bf16
    autocast and AdamW on fixed data, deterministic algorithms: the losses and
    the median step time."""
    torch.use_deterministic_algorithms(True)
    model = small_llama(7)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    data = torch.randint(0, 32000, (30, 8, 256), device="cuda")
    losses, times = train_llama(lambda x: model(input_ids=x, labels=x).loss, opt, data)
    steady = sorted(times[5:])
    return {"losses": losses, "median_step_s": steady[len(steady) // 2]}


def work_graph(use):
    """A CUDA graph captured and replayed on a side stream; under cuarena its
    memory pool is an arena, which is offloaded (and then discarded) and
    restored at the same addresses: the graph still replays correctly. Also
    record_stream across two streams."""
    torch.manual_seed(3)
    x = torch.randn(256, 1024, device="cuda")
    w = torch.randn(1024, 1024, device="cuda")

    def step():
        return ((x @ w).relu() @ w.t()).softmax(dim=-1)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up, as torch asks, before capture
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = step()
    x.copy_(torch.randn(256, 1024, device="cuda"))
    g.replay()
    torch.cuda.synchronize()
    want = step()
    res = {"replay_matches_eager": bool(torch.equal(y, want))}
    # record_stream: a tensor made on one stream, used and freed on another
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        t = torch.full((1 << 22,), 2.0, device="cuda")
    torch.cuda.current_stream().wait_stream(side)
    t.record_stream(torch.cuda.current_stream())
    total = float((t * 3).sum())
    del t
    res["record_stream_sum_ok"] = total == 6.0 * (1 << 22)
    if use == "cuarena":
        import cuarena.torch as ct

        pool = ct.pool_arena(g)
        y_ptr = y.data_ptr()
        res["pool_arena"] = pool.name
        res["pool_mapped"] = pool.stats()["mapped_bytes"]
        torch.cuda.synchronize()
        used0 = driver_used()
        pool.offload()
        res["freed_by_offload"] = used0 - driver_used()
        res["pool_mapped_offloaded"] = pool.stats()["mapped_bytes"]
        pool.restore()
        g.replay()
        torch.cuda.synchronize()
        res["replay_after_restore_matches"] = bool(torch.equal(y, step()))
        pool.discard()  # contents dropped: the graph rewrites its outputs anyway
        pool.restore()
        x.copy_(torch.randn(256, 1024, device="cuda"))
        g.replay()
        torch.cuda.synchronize()
        res["replay_after_discard_matches"] = bool(torch.equal(y, step()))
        res["output_pointer_stable"] = y.data_ptr() == y_ptr
    return res


def work_mempool(use):
    """torch.cuda.MemPool with use_mem_pool: the tensors made inside land in
    the pool (under cuarena: an arena of their own, which is offloaded and
    restored at the same addresses with the same bytes), those made outside do
    not; the pool's use count; and its memory goes back when it is gone."""
    torch.manual_seed(5)
    pool = torch.cuda.MemPool()
    with torch.cuda.use_mem_pool(pool):
        a = torch.randn(1 << 22, device="cuda")  # 16 MiB
    b = torch.randn(1 << 20, device="cuda")      # outside the pool
    want = a.clone()
    res = {"use_count": pool.use_count()}
    res["in_pool_snapshot"] = sum(seg["total_size"] for seg in pool.snapshot())
    if use == "cuarena":
        import cuarena.torch as ct

        arena = ct.pool_arena(pool)
        res["pool_arena"] = arena.name
        st = arena.stats()
        res["pool_live"] = st["live_bytes"]
        ptr = a.data_ptr()
        torch.cuda.synchronize()
        arena.offload()
        res["pool_mapped_offloaded"] = arena.stats()["mapped_bytes"]
        arena.restore()
        res["same_bytes_after_restore"] = bool(torch.equal(a, want))
        res["pointer_stable"] = a.data_ptr() == ptr
        import cuarena

        res["a_in"], res["b_in"] = cuarena.arena_of(a.data_ptr()), cuarena.arena_of(b.data_ptr())
        res["outside_not_in_pool"] = res["a_in"] == arena.name != res["b_in"]
    del a, want
    torch.cuda.synchronize()
    used = driver_used()
    del pool
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    res["freed_with_pool"] = used - driver_used()
    res["b_ok"] = bool(torch.isfinite(b).all())
    return res


def work_stats(use):
    """torch's own statistics, snapshot and cache calls with cuarena installed
    (the full allocator object), checked against cuarena's figures; cudnn's
    benchmark mode, torch.compile, record_stream and the memory fraction."""
    import cuarena
    import cuarena.torch as ct

    res = {"mode": ct.mode}
    x = torch.randn(1 << 20, device="cuda")  # 4 MiB
    torch.cuda.synchronize()

    def attempt(name, fn):
        try:
            value = fn()
            res[name] = "ok"
            return value
        except Exception as e:  # noqa: BLE001 - we report what torch says
            res[name] = "raises: " + str(e).splitlines()[0][:160]
            return None

    st = attempt("torch.memory_stats", torch.cuda.memory_stats) or {}
    res["torch_allocated"] = st.get("allocated_bytes.all.current", -1)
    res["cuarena_allocated"] = ct.memory_stats()["allocated_bytes.all.current"]
    res["torch_max_allocated"] = attempt("torch.max_memory_allocated",
                                         torch.cuda.max_memory_allocated)
    y = torch.randn(4 << 20, device="cuda")  # 16 MiB more, then gone
    del y
    res["peak_before_reset"] = attempt("torch.max_memory_allocated_2",
                                       torch.cuda.max_memory_allocated)
    attempt("torch.reset_peak_memory_stats", torch.cuda.reset_peak_memory_stats)
    res["peak_after_reset"] = torch.cuda.max_memory_allocated() if res["torch.memory_stats"] == "ok" else -1
    snap = attempt("torch.memory_snapshot", torch.cuda.memory_snapshot) or []
    res["snapshot_segments"] = len(snap)
    res["snapshot_allocated"] = sum(s.get("allocated_size", 0) for s in snap)
    attempt("torch._record_memory_history", lambda: torch.cuda.memory._record_memory_history())
    # empty_cache gives cached pages back to the driver
    z = torch.randn(16 << 20, device="cuda")  # 64 MiB
    del z
    torch.cuda.synchronize()
    before = driver_used()
    attempt("torch.empty_cache", torch.cuda.empty_cache)
    res["empty_cache_released"] = before - driver_used()
    # cudnn benchmark mode asks the allocator for its largest cached block
    torch.backends.cudnn.benchmark = True
    conv = torch.nn.Conv2d(16, 32, 3).cuda()
    res["cudnn_benchmark"] = attempt("cudnn.benchmark", lambda: float(
        conv(torch.randn(8, 16, 64, 64, device="cuda")).sum()))
    # record_stream: a tensor used on a side stream
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        w = torch.ones(1 << 20, device="cuda")
    attempt("tensor.record_stream", lambda: w.record_stream(torch.cuda.current_stream()))
    # torch.compile of a small function
    fn = torch.compile(lambda t: (t.sin() * 2 + 1).relu().sum())
    res["compile_matches"] = attempt("torch.compile", lambda: bool(torch.allclose(
        fn(x), (x.sin() * 2 + 1).relu().sum(), rtol=1e-4)))
    attempt("set_per_process_memory_fraction",
            lambda: torch.cuda.set_per_process_memory_fraction(0.5))
    res["default_arena_limit"] = next((a.stats()["limit_bytes"] for a in cuarena.arenas(0)
                                       if a.name == "default"), -1)
    res["device_total"] = torch.cuda.get_device_properties(0).total_memory
    # the history recorded since _record_memory_history(): in torch's own
    # snapshot, and in cuarena's file, which torch's memory_viz tooling draws
    tsnap = attempt("torch.memory._snapshot", torch.cuda.memory._snapshot) or {}
    res["torch_snapshot_trace_events"] = sum(len(t) for t in tsnap.get("device_traces", []))
    import pickle
    import tempfile
    from torch.cuda import _memory_viz
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "snap.pickle")
        cuarena.dump_snapshot(path, 0)
        with open(path, "rb") as f:
            data = pickle.load(f)
    res["dump_trace_events"] = sum(len(t) for t in data.get("device_traces", []))
    # torch's own snapshot draws too (what the profiler and memory_viz users read)
    tplot = attempt("torch.memory_viz.trace_plot of torch's _snapshot",
                    lambda: _memory_viz.trace_plot(tsnap))
    res["torch_trace_plot_chars"] = len(tplot or "")
    res["torch_snapshot_allocs"] = sum(1 for t in tsnap.get("device_traces", []) for e in t
                                       if e.get("action") == "alloc")
    seg_html = attempt("torch.memory_viz.segment_plot", lambda: _memory_viz.segment_plot(data))
    trace_html = attempt("torch.memory_viz.trace_plot", lambda: _memory_viz.trace_plot(data))
    # segsum and trace read the segments, blocks and events field by field
    # (segsum asserts that each segment's blocks add up to its size)
    attempt("torch.memory_viz.segsum", lambda: _memory_viz.segsum(data))
    attempt("torch.memory_viz.trace", lambda: _memory_viz.trace(data))
    res["segment_plot_chars"] = len(seg_html or "")
    res["trace_plot_chars"] = len(trace_html or "")
    del x, w
    torch.cuda.synchronize()
    res["released_by_empty_cache"] = ct.empty_cache()
    return res


def main():
    workload, use = sys.argv[1], sys.argv[2]
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    installed = {}
    if use == "cuarena":
        import warnings

        import cuarena.torch

        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always", cuarena.torch.FallbackWarning)
            cuarena.torch.install()
        # what was installed, and whether a fall-back was said (test_torch.py checks)
        installed = {"cuarena_mode": cuarena.torch.mode, "cuarena_source": cuarena.torch.source,
                     "cuarena_how": cuarena.torch.how, "cuarena_file": cuarena.__file__,
                     "cuarena_warned": [str(w.message) for w in said
                                        if issubclass(w.category, cuarena.torch.FallbackWarning)]}
    result = globals()["work_" + workload](use)
    result.update(installed)
    result["allocator"] = use
    print(json.dumps(result))


if __name__ == "__main__":
    main()
