"""torch_promises.py - workloads that ask what torch's own allocator promises
(its words, statistics and CUDA-graph trees), of whichever allocator
torch_work.py installed; test_torch.py compares cuarena's answers with
native's."""

import re
import time

import torch


def work_fidelity(use):
    """What torch's own allocator promises, asked of whichever is installed
    (test_torch.py compares cuarena with native): the out-of-memory words,
    the observers of an out-of-memory, and memory_stats' accumulated figures
    and keys."""
    res = {}
    x = torch.zeros(1024, device="cuda")
    # out of memory: torch's words first, then a kernel still runs
    try:
        torch.empty(1024 * 1024 * 1024 * 800000000, dtype=torch.int8, device="cuda")
        res["oom_words"] = "no error"
    except RuntimeError as e:
        want = "Tried to allocate 800000000.00 GiB. GPU %d has a total capacity of" % x.device.index
        res["oom_words"] = bool(re.search(re.escape(want), str(e)))
        res["oom_is_out_of_memory_error"] = isinstance(e, torch.OutOfMemoryError)
    try:
        torch.empty(1024 * 1024 * 1024 * 8000000000, dtype=torch.int8, device="cuda")
        res["oom_exabyte"] = "no error"
    except RuntimeError as e:
        res["oom_exabyte"] = "Tried to allocate more than 1EB memory" in str(e)
    x.fill_(1)
    res["kernel_after_oom"] = bool((x == 1).all())
    # an observer hears of the next out-of-memory: device, size, total, free
    heard = []
    torch._C._cuda_attach_out_of_memory_observer(lambda *a: heard.append(a))
    try:
        torch.empty(1 << 50, dtype=torch.int8, device="cuda")
    except RuntimeError:
        pass
    res["observer_called"] = len(heard) == 1 and heard[0][0] == x.device.index and \
        heard[0][1] >= 1 << 50
    # memory_stats: keys, and what the accumulated figures count
    torch.cuda.synchronize()
    torch.cuda.reset_accumulated_memory_stats()
    keys = ("active_bytes.all.current", "active_bytes.all.freed", "allocated_bytes.all.allocated",
            "allocation.all.allocated", "allocation.all.freed", "requested_bytes.all.freed",
            "reserved_bytes.all.current", "num_ooms")
    st = torch.cuda.memory_stats()
    res["stats_keys"] = all(k in st for k in keys)
    before = st.get("active_bytes.all.current", 0)
    t = torch.randn(256, device="cuda")  # 1 KiB
    st = torch.cuda.memory_stats()
    res["active_grows_by_the_block"] = st.get("active_bytes.all.current", 0) - before == 1024
    res["allocated_counts_it"] = st.get("allocation.all.allocated", 0) >= 1
    del t
    st = torch.cuda.memory_stats()
    res["freed_counts_it"] = st.get("active_bytes.all.freed", 0) >= 1024 and \
        st.get("allocation.all.freed", 0) >= 1
    res["active_back"] = st.get("active_bytes.all.current", -1) == before
    # the cuBLAS workspace is one of torch's allocations (test_cuda.py's
    # test_cublas_workspace_explicit_allocation): after clearing the
    # workspaces, one matmul's allocated bytes grow by the workspace
    # (CUBLAS_WORKSPACE_CONFIG :4096:8, 32 MiB; main sets it)
    a = torch.randn(7, 7, device="cuda")
    torch._C._cuda_clearCublasWorkspaces()
    start = torch.cuda.memory_stats().get("active_bytes.all.allocated", 0)
    with torch.no_grad():
        torch.matmul(a, a)
    grew = torch.cuda.memory_stats().get("active_bytes.all.allocated", 0) - start
    res["cublas_workspace_counted"] = abs(grew - (32 << 20)) < (512 << 10)
    res.update(fraction_promises())
    res.update(mempool_allocator_promises())
    try:
        acc = torch.accelerator.memory_stats()
        res["accelerator_stats_keys"] = "active_bytes.all.current" in acc
    except Exception as e:  # noqa: BLE001 - reported as what it says
        res["accelerator_stats_keys"] = "raises: " + str(e).splitlines()[0][:120]
    return res


def mempool_allocator_promises():
    """torch.cuda.MemPool with an allocator of its own (test_cuda.py's
    test_mempool_with_allocator; NCCL's symmetric memory works so): the
    pool's tensors live in memory from that allocator, hold their data, and
    the pool's memory goes back to it with the pool. The allocator here is
    libcuarena.so's plain entry points through CUDAPluggableAllocator: an
    allocator other than the installed one, under both."""
    import cuarena

    res = {}
    try:
        plug = torch.cuda.memory.CUDAPluggableAllocator(cuarena.library_path, "cua_torch_alloc",
                                                        "cua_torch_free")
        pool = torch.cuda.MemPool(plug.allocator())
        with torch.cuda.use_mem_pool(pool):
            a = torch.arange(1 << 20, device="cuda", dtype=torch.float32)
        res["mempool_allocator_holds_data"] = bool((a[-3:] == torch.tensor(
            [(1 << 20) - 3, (1 << 20) - 2, (1 << 20) - 1], device="cuda")).all())
        where = cuarena.arena_of(a.data_ptr())
        res["mempool_allocator_memory"] = bool(where)  # (libcuarena's: some arena of it)
        res["mempool_allocator_in_snapshot"] = sum(s["total_size"] for s in pool.snapshot()) >= 4 << 20
        del a
        torch.cuda.synchronize()
        del pool
        torch.cuda.empty_cache()
        res["mempool_allocator_released"] = True
    except Exception as e:  # noqa: BLE001 - reported as torch says it
        res["mempool_allocator_holds_data"] = "raises: " + str(e).splitlines()[0][:200]
    return res


def fraction_promises():
    """set_per_process_memory_fraction as test_cuda.py uses it: what torch
    reports leaves room below the fraction, which is granted; past the
    fraction is refused."""
    res = {}
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(0.5, 0)
    try:
        room = int(total * 0.499) - torch.cuda.max_memory_reserved()
        res["fraction_room_reported"] = room > 0
        try:
            t = torch.empty(max(room, 1), dtype=torch.int8, device="cuda")
            del t
            res["fraction_below_granted"] = True
        except RuntimeError:
            res["fraction_below_granted"] = False
        torch.cuda.empty_cache()
        try:
            t = torch.empty(int(total * 0.5), dtype=torch.int8, device="cuda")
            del t
            res["fraction_above_refused"] = False
        except RuntimeError:
            res["fraction_above_refused"] = True
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()
    return res


def work_compile_graphs(use):
    """torch.compile(mode="reduce-overhead"): CUDA-graph trees record the
    model's graphs into a private pool, check the pool's live blocks and take
    checkpoints of it. The same shape several times (one graph, replayed),
    then a second shape (a second graph in the tree)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(),
                                torch.nn.Linear(1024, 256)).cuda().eval()
    compiled = torch.compile(model, mode="reduce-overhead")
    res = {}

    def step(batch, runs):
        x = torch.randn(batch, 256, device="cuda", generator=torch.Generator("cuda").manual_seed(batch))
        with torch.no_grad():
            want = model(x)
            outs = [compiled(x).clone() for _ in range(runs)]
        torch.cuda.synchronize()
        return all(torch.allclose(o, want, rtol=1e-3, atol=1e-3) for o in outs), \
            float(outs[-1].double().sum())

    try:
        res["one_shape_matches"], res["one_shape_sum"] = step(32, 4)
    except Exception as e:  # noqa: BLE001 - reported as torch says it
        res["one_shape_matches"] = "raises: " + str(e).splitlines()[0][:200]
    try:
        res["second_shape_matches"], res["second_shape_sum"] = step(64, 3)
    except Exception as e:  # noqa: BLE001
        res["second_shape_matches"] = "raises: " + str(e).splitlines()[0][:200]
    try:  # back and forth: the tree switches paths (a pool checkpoint restored)
        res["alternating_matches"] = all(step(b, 2)[0] for b in (32, 64, 32, 64, 16, 32))
    except Exception as e:  # noqa: BLE001
        res["alternating_matches"] = "raises: " + str(e).splitlines()[0][:200]
    return res


def _median(v):
    v = sorted(v)
    return v[len(v) // 2]


def _pool_arenas():
    """cuarena's arenas of torch's private pools (CUDA-graph trees record
    into one), by name."""
    import cuarena

    return [a for a in cuarena.arenas(0) if a.name.startswith("torch_pool_")]


def small_llama(seed):
    """The small Llama of the training workloads (4 layers, hidden 512, a
    32,000-token vocabulary), its weights from `seed`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=8, vocab_size=32000,
                      max_position_embeddings=512)
    return LlamaForCausalLM(cfg).cuda()


def train_llama(loss_of, opt, batches, mark_steps=False):
    """A training step per batch, bf16 autocast: loss_of(batch), backward,
    opt.step(). mark_steps: each step begins with CUDA-graph trees' step mark.
    The losses and the step times."""
    losses, times = [], []
    for x in batches:
        if mark_steps:
            torch.compiler.cudagraph_mark_step_begin()
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_of(x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return losses, times


def _offload_pools(use, res, key):
    """Under cuarena: every graph pool's arena offloaded (its pages given
    back) and restored at the same addresses, between two runs."""
    if use != "cuarena":
        return
    torch.cuda.synchronize()
    pools = _pool_arenas()
    res[key + "_pools"] = len(pools)
    res[key + "_pools_mapped"] = sum(a.stats()["mapped_bytes"] for a in pools)
    for a in pools:
        a.offload()
    res[key + "_pools_mapped_offloaded"] = sum(a.stats()["mapped_bytes"] for a in pools)
    for a in pools:
        a.restore()


def work_compile_models(use):
    """torch.compile(mode="reduce-overhead") on real models: GPT-2 (random
    weights, fp16) forward over a batch of 4 x 128 tokens, and a small Llama's
    training step (forward and backward compiled, AdamW eager). Outputs and
    losses, median step times; under cuarena the graph pools are offloaded
    and restored between the two runs of each."""
    from transformers import GPT2Config, GPT2LMHeadModel

    res = {}
    torch.manual_seed(0)
    gpt = GPT2LMHeadModel(GPT2Config()).half().cuda().eval()
    fwd = torch.compile(gpt, mode="reduce-overhead")
    ids = torch.randint(0, 50257, (4, 128), device="cuda")

    def gpt_run(n):
        times, out = [], None
        with torch.no_grad():
            for _ in range(n):
                torch.cuda.synchronize()
                t = time.perf_counter()
                out = fwd(input_ids=ids).logits.clone()
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
        return out, times

    with torch.no_grad():
        want = gpt(input_ids=ids).logits
    out, times = gpt_run(25)
    res["gpt2_matches_eager"] = bool(torch.allclose(out.float(), want.float(), rtol=2e-2, atol=2e-2))
    res["gpt2_sum"] = float(out.double().sum())
    res["gpt2_step_s"] = _median(times[5:])
    # empty_cache between replays: the graphs' pool must keep the pages they
    # write into (Note [pages a graph replays into], src/arena/policy.c)
    torch.cuda.empty_cache()
    res["gpt2_after_empty_cache_same"] = bool(torch.equal(out, gpt_run(3)[0]))
    _offload_pools(use, res, "gpt2")
    out2, times2 = gpt_run(10)
    res["gpt2_after_restore_same"] = bool(torch.equal(out, out2))
    res["gpt2_step_s_after_restore"] = _median(times2[2:])
    del fwd, gpt, out, out2, want
    torch._dynamo.reset()

    model = small_llama(7)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, foreach=False)
    step_fn = torch.compile(lambda x: model(input_ids=x, labels=x).loss, mode="reduce-overhead")
    data = torch.randint(0, 32000, (40, 8, 256), device="cuda")

    losses, times = train_llama(step_fn, opt, data[:30], mark_steps=True)
    res["llama_losses"] = losses
    res["llama_step_s"] = _median(times[5:])
    _offload_pools(use, res, "llama")
    losses2, times2 = train_llama(step_fn, opt, data[30:], mark_steps=True)
    res["llama_losses_after_restore"] = losses2
    res["llama_step_s_after_restore"] = _median(times2[2:])
    return res
