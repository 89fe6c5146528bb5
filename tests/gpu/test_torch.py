"""test_torch.py - cuarena as PyTorch's allocator, on a GPU: each workload of
torch_work.py runs in a process with torch's own allocator and in one with
cuarena, and the results are compared. Run by tests/gpu/run.sh:

    CUARENA_LIB=build-gpu/libcuarena.so python3 -m pytest -q tests/gpu/test_torch.py

Skips without torch or without a CUDA device. Each test prints its figures
(pytest -s shows them; run.sh keeps them in the log).
"""

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device: the PyTorch tests need one", allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


# CUA_TORCH_INSTALLED=1: cuarena as installed into this Python (tests/gpu/wheel.sh: the
# wheel in a fresh venv), not the source tree's python/. CUA_TORCH_EXPECT: the mode the
# install must report, "full" or "full/prebuilt" (no compiler was needed).
INSTALLED = os.environ.get("CUA_TORCH_INSTALLED") == "1"
EXPECT = os.environ.get("CUA_TORCH_EXPECT", "")


def check_install(workload, result):
    """cuarena.torch.install() never falls back to the plain pluggable mode
    without a FallbackWarning, and gives the mode asked for by CUA_TORCH_EXPECT."""
    mode, source = result["cuarena_mode"], result["cuarena_source"]
    assert mode in ("full", "pluggable"), result
    if mode == "pluggable" or source == "built":
        assert result["cuarena_warned"], "%s: fell back to %s/%s without a FallbackWarning" % (
            workload, mode, source)
    if EXPECT:
        got = mode if "/" not in EXPECT else "%s/%s" % (mode, source)
        assert got == EXPECT, "%s: cuarena.torch installed %s, expected %s (%s)" % (
            workload, got, EXPECT, result["cuarena_how"])
    if INSTALLED:
        assert not os.path.realpath(result["cuarena_file"]).startswith(ROOT + os.sep), \
            "cuarena came from the source tree: %s" % result["cuarena_file"]


def run(workload, use):
    env = dict(os.environ)
    if not INSTALLED:
        env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, os.path.join(HERE, "torch_work.py"), workload, use],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, "%s/%s failed:\n%s\n%s" % (workload, use, p.stdout[-3000:],
                                                         p.stderr[-3000:])
    result = json.loads(p.stdout.strip().splitlines()[-1])
    if use == "cuarena":
        check_install(workload, result)
    print("torch:", workload, use, json.dumps(result)[:600])
    keep = os.environ.get("CUA_TORCH_RESULTS")  # for torch_table.py (run.sh sets it)
    if keep:
        with open(keep, "a") as f:
            f.write(json.dumps({"workload": workload, "use": use, "result": result}) + "\n")
    return result


def test_ops_identical_to_native():
    native, ours = run("ops", "native"), run("ops", "cuarena")
    assert ours["digest"] == native["digest"]
    assert ours["empty"] == 0


def test_gpt2_generate_identical_tokens():
    pytest.importorskip("transformers")
    native, ours = run("gpt2", "native"), run("gpt2", "cuarena")
    assert ours["tokens"] == native["tokens"]
    print("torch: gpt2 generate seconds native %.4f cuarena %.4f (ratio %.3f)"
          % (native["seconds"], ours["seconds"], ours["seconds"] / native["seconds"]))


def test_component_offload_keeps_outputs_and_pointers():
    r = run("offload", "cuarena")
    assert r["exact"] and r["pointers_stable"] and r["transformer_ran"]
    # every page of the encoder went back to the driver while it was offloaded
    assert r["driver_freed_by_offload"] >= r["encoder_mapped_bytes"] > 0


def test_reload_returns_to_baseline_every_cycle():
    native, ours = run("reload", "native"), run("reload", "cuarena")
    for n, o in zip(native["cycles"], ours["cycles"]):
        print("torch: reload cycle %d: after teardown over baseline native %d, cuarena %d bytes; "
              "peak over baseline native %d, cuarena %d (its arenas mapped %d); arenas still "
              "busy %d" % (n["cycle"], n["after_over_base"], o["after_over_base"],
                           n["peak_over_base"], o["peak_over_base"], o["cuarena_mapped_at_peak"],
                           o["busy_arenas"]))
    assert all(o["after_over_base"] == 0 for o in ours["cycles"])
    assert all(o["busy_arenas"] == 0 for o in ours["cycles"])
    assert all(o["cuarena_mapped_at_peak"] >= 256 << 20 for o in ours["cycles"])


def test_cuda_graph_pool_is_an_arena_that_can_be_offloaded():
    native, ours = run("graph", "native"), run("graph", "cuarena")
    assert native["replay_matches_eager"] and ours["replay_matches_eager"]
    assert native["record_stream_sum_ok"] and ours["record_stream_sum_ok"]
    assert ours["pool_arena"].startswith("torch_pool_") and ours["pool_mapped"] > 0
    assert ours["pool_mapped_offloaded"] == 0
    print("torch: graph pool arena %s mapped %d; the driver's used memory fell by %d at its "
          "offload (the first offload also makes the copy stream)" % (
              ours["pool_arena"], ours["pool_mapped"], ours["freed_by_offload"]))
    assert ours["replay_after_restore_matches"] and ours["replay_after_discard_matches"]
    assert ours["output_pointer_stable"]


def test_mempool_is_an_arena():
    native, ours = run("mempool", "native"), run("mempool", "cuarena")
    assert native["b_ok"] and ours["b_ok"]
    assert ours["pool_arena"].startswith("torch_pool_") and ours["pool_live"] >= 16 << 20
    assert ours["pool_mapped_offloaded"] == 0
    assert ours["same_bytes_after_restore"] and ours["pointer_stable"]
    assert ours["outside_not_in_pool"]
    assert ours["use_count"] == native["use_count"]
    print("torch: MemPool use count native %d cuarena %d; freed with the pool native %d "
          "cuarena %d bytes" % (native["use_count"], ours["use_count"],
                                native["freed_with_pool"], ours["freed_with_pool"]))


def test_reload_under_a_cap_with_a_cupy_engine():
    pytest.importorskip("cupy")
    native, ours = run("reload_cap", "native"), run("reload_cap", "cuarena")
    for rows, name in ((native["cycles"], "native"), (ours["cycles"], "cuarena")):
        for r in rows:
            print("torch: reload under a 1 GiB cap, an old engine still referenced, %s cycle %d: "
                  "%s, after teardown %d bytes over the baseline%s" % (
                      name, r["cycle"], "ok" if r["ok"] else "OUT OF MEMORY",
                      r["after_over_base"], "" if r["ok"] else ": " + r["error"]))
    assert len(ours["cycles"]) == 6 and all(r["ok"] for r in ours["cycles"])
    assert all(r["after_over_base"] == 0 for r in ours["cycles"])
    assert not all(r["ok"] for r in native["cycles"])  # the point of the scenario


def test_idle_janitor_trims_to_live():
    native, ours = run("janitor", "native"), run("janitor", "cuarena")
    print("torch: idle 1 s after a burst: native reserved %d (allocated %d) before, %d after; "
          "cuarena mapped %d (live %d) before, %d (live %d, %d blocks) after; device mapped "
          "after destroy %d; live at destroy %d" % (native["after_burst_mapped"], native["live"],
                                native["after_idle_mapped"], ours["after_burst_mapped"],
                                ours["live"], ours["after_idle_mapped"], ours["live_after"],
                                ours["live_blocks"], ours["after_destroy_mapped_device"],
                                ours["live_at_destroy"]))
    assert ours["after_idle_mapped"] < ours["after_burst_mapped"]
    # live + at most one partly used 2 MiB page per live block
    assert ours["after_idle_mapped"] <= ours["live_after"] + ours["live_blocks"] * (2 << 20)


def test_kv_cache_sized_from_headroom_fits_first_time():
    native, ours = run("kv", "native"), run("kv", "cuarena")
    for r, name in ((native, "native"), (ours, "cuarena")):
        print("torch: KV sizing %s: estimate %d, largest that fits %d (estimate/largest %.4f), "
              "fits on the first try: %s" % (name, r["estimate"], r["largest"],
                                              r["estimate_over_largest"], r["first_try_fits"]))
    assert ours["first_try_fits"]
    assert 0.99 <= ours["estimate_over_largest"] <= 1.0


def test_weight_updates_keep_mapped_over_live_flat():
    native, ours = run("weights", "native"), run("weights", "cuarena")
    for n, o in zip(native["cycles"], ours["cycles"]):
        print("torch: weight update cycle %2d: native reserved/allocated %.4f (%d / %d); cuarena "
              "mapped/live %.4f (%d / %d), trimmed %d this cycle" % (
                  n["cycle"], n["mapped_over_live"], n["mapped"], n["live"],
                  o["mapped_over_live"], o["mapped"], o["live"], o["trimmed_bytes"]))
    ratios = [o["mapped_over_live"] for o in ours["cycles"]]
    assert max(ratios) - min(ratios) < 0.02
    assert sum(o["trimmed_bytes"] for o in ours["cycles"]) > 0  # the events came through


def test_llama_training_losses_identical():
    pytest.importorskip("transformers")
    native, ours = run("llama", "native"), run("llama", "cuarena")
    print("torch: llama 30 steps, median step native %.2f ms, cuarena %.2f ms (cuarena/native "
          "%.3f); final loss %.6f / %.6f" % (native["median_step_s"] * 1e3,
                                            ours["median_step_s"] * 1e3,
                                            ours["median_step_s"] / native["median_step_s"],
                                            native["losses"][-1], ours["losses"][-1]))
    assert ours["losses"] == native["losses"]


RECORDED = """
import torch, cuarena, cuarena.record as rec
enc = cuarena.Arena("text_encoder")
with enc:
    w = torch.randn(1024, 1024, device="cuda")
rec.marker("model_loaded")
for i in range(3):
    x = torch.randn(64 + 64 * i, 1024, device="cuda")
    y = (x @ w).relu()
    del x, y
    rec.marker("request_%d" % i)
side = torch.cuda.Stream()
with torch.cuda.stream(side):
    z = torch.ones(1 << 20, device="cuda")
del z
"""


def test_record_a_workload_and_replay_it(tmp_path):
    script, out = tmp_path / "work.py", tmp_path / "work.catrace.gz"
    script.write_text(RECORDED)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "cuarena.record", str(out), str(script)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    import gzip

    lines = gzip.open(out, "rt").read().splitlines()
    allocs = [l.split() for l in lines if l.startswith("a ")]
    frees = [l for l in lines if l.startswith("f ")]
    markers = [l.split()[1] for l in lines if l.startswith("m ")]
    print("torch: recorded %d allocations, %d frees, markers %s, arenas %s, streams %s" % (
        len(allocs), len(frees), markers, sorted({a[4] for a in allocs if len(a) > 4}),
        sorted({a[3] for a in allocs})))
    assert lines[0] == "# catrace v1"
    assert markers == ["model_loaded", "request_0", "request_1", "request_2"]
    assert any(len(a) > 4 and a[4] == "text_encoder" for a in allocs)
    assert len({a[3] for a in allocs}) >= 2  # the side stream has its own number
    replay = os.path.join(ROOT, "build-gpu", "bench", "cuarena-replay")
    if os.path.exists(replay):
        r = subprocess.run([replay, "--backend", "host", str(out)], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        print("torch: replayed:", r.stdout.strip().splitlines()[-1][:300])


def test_torch_statistics_snapshot_and_cache_calls_work():
    r = run("stats", "cuarena")
    assert r["mode"] == "full"
    calls = [k for k in r if k.startswith(("torch.", "cudnn.", "tensor.", "set_per"))]
    failed = {k: r[k] for k in calls if r[k] != "ok"}
    assert not failed, failed
    assert r["torch_allocated"] == r["cuarena_allocated"] >= 4 << 20
    assert r["peak_before_reset"] >= r["torch_allocated"] + (16 << 20)
    assert r["peak_after_reset"] < r["peak_before_reset"]
    assert r["snapshot_segments"] > 0 and r["snapshot_allocated"] >= 4 << 20
    assert r["empty_cache_released"] >= 64 << 20
    assert r["compile_matches"] is True
    # allocations after _record_memory_history() are in cuarena's snapshot and
    # in torch's own _snapshot() (device_traces from cuarena's history), and
    # torch's memory_viz draws both
    assert r["dump_trace_events"] > 0, r
    assert r["torch_snapshot_trace_events"] > 0 and r["torch_snapshot_allocs"] > 0, r
    assert r["torch_trace_plot_chars"] > 1000, r
    assert r["segment_plot_chars"] > 1000 and r["trace_plot_chars"] > 1000, r
    print("torch: memory history: %d trace events in torch's snapshot, %d in cuarena.dump_snapshot's "
          "file; memory_viz segment_plot %d chars, trace_plot %d chars"
          % (r["torch_snapshot_trace_events"], r["dump_trace_events"], r["segment_plot_chars"],
             r["trace_plot_chars"]))
    # the fraction 0.5 of this device's memory (80 GB H100 or 141 GB H200), to a page
    assert abs(r["default_arena_limit"] - r["device_total"] // 2) <= 2 << 20, r


def test_torch_promises_hold_as_natively():
    """torch's out-of-memory words and observers and memory_stats' figures:
    every promise that holds with torch's own allocator holds with cuarena."""
    native, ours = run("fidelity", "native"), run("fidelity", "cuarena")
    differ = {k: (native[k], ours.get(k)) for k in native
              if k != "allocator" and native[k] is True and ours.get(k) is not True}
    for k in sorted(native):
        if k != "allocator":
            print("torch: fidelity %s: native %s, cuarena %s" % (k, native[k], ours.get(k)))
    assert not differ, differ


def test_compile_reduce_overhead_on_real_models():
    """torch.compile(mode="reduce-overhead") on GPT-2 (forward) and a Llama
    training step: the same outputs and losses as natively, and under cuarena
    the CUDA-graph trees' pools offloaded and restored between two runs, the
    runs after it unchanged. Step times are printed beside native's (a
    benchmark figure, not asserted)."""
    native, ours = run("compile_models", "native"), run("compile_models", "cuarena")
    for k in ("gpt2_step_s", "gpt2_step_s_after_restore", "llama_step_s",
              "llama_step_s_after_restore"):
        print("torch: compile %s: native %.6f, cuarena %.6f (ratio %.3f)"
              % (k, native[k], ours[k], ours[k] / native[k]))
    print("torch: compile losses: native %s, cuarena %s" % (native["llama_losses"][-3:],
                                                             ours["llama_losses"][-3:]))
    print("torch: compile pools: %s" % {k: v for k, v in ours.items() if "_pools" in k})
    assert native["gpt2_matches_eager"] is True and ours["gpt2_matches_eager"] is True
    assert abs(ours["gpt2_sum"] - native["gpt2_sum"]) <= 1e-3 * max(1.0, abs(native["gpt2_sum"]))
    assert native["gpt2_after_empty_cache_same"] is True
    assert ours["gpt2_after_empty_cache_same"] is True
    assert ours["gpt2_after_restore_same"] is True
    for a, b in zip(ours["llama_losses"] + ours["llama_losses_after_restore"],
                    native["llama_losses"] + native["llama_losses_after_restore"]):
        assert abs(a - b) <= 2e-2 * max(1.0, abs(b)), (a, b)
    for k in ("gpt2", "llama"):
        assert ours[k + "_pools"] >= 1 and ours[k + "_pools_mapped"] > 0, ours
        assert ours[k + "_pools_mapped_offloaded"] == 0, ours


def test_compile_reduce_overhead_runs_as_natively():
    """torch.compile(mode="reduce-overhead") (CUDA-graph trees over a private
    pool) gives the same outputs under cuarena as natively: one shape
    replayed, a second shape, and shapes back and forth (the tree switches
    paths and restores its pool's checkpoints)."""
    native, ours = run("compile_graphs", "native"), run("compile_graphs", "cuarena")
    print("torch: compile reduce-overhead: native %s / %s / %s, cuarena %s / %s / %s" % (
        native["one_shape_matches"], native.get("second_shape_matches"),
        native.get("alternating_matches"), ours["one_shape_matches"],
        ours.get("second_shape_matches"), ours.get("alternating_matches")))
    assert native["one_shape_matches"] is True
    for k in ("one_shape_matches", "second_shape_matches", "alternating_matches"):
        if native.get(k) is True:
            assert ours.get(k) is True, (k, ours.get(k))
    assert abs(ours["one_shape_sum"] - native["one_shape_sum"]) <= 1e-3 * max(1.0, abs(native["one_shape_sum"]))
