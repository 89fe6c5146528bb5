"""test_cupy.py - cuarena as CuPy's allocator (python/cuarena/cupy.py), on a
GPU: each workload of cupy_work.py runs in a process of its own. Run by
tests/gpu/run.sh:

    CUARENA_LIB=build-gpu/libcuarena.so python3 -m pytest -q -s tests/gpu/test_cupy.py

Skips without CuPy or without a CUDA device (the mixed test also without
torch). Each test prints its figures on lines that start with "cupy: ".
"""

import json
import os
import subprocess
import sys

import pytest

cupy = pytest.importorskip("cupy")
try:
    _ndev = cupy.cuda.runtime.getDeviceCount()
except Exception:  # no driver
    _ndev = 0
if _ndev == 0:
    pytest.skip("no CUDA device: the CuPy tests need one", allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(workload):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, os.path.join(HERE, "cupy_work.py"), workload],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, "%s failed:\n%s\n%s" % (workload, p.stdout[-3000:],
                                                      p.stderr[-3000:])
    result = json.loads(p.stdout.strip().splitlines()[-1])
    print("cupy: %s %s" % (workload, json.dumps(result)[:900]))
    return result


def check_numeric(r):
    for key in ("matmul", "elementwise", "reductions", "sort", "temporaries"):
        assert r[key] is True, key
    # CuPy's memory went to the arena, none to CuPy's pool
    assert r["owner_of_array"] == "cupy_work"
    assert r["pool_used_bytes"] == 0
    b, d, a = r["before"], r["during"], r["after"]
    assert b["live_bytes"] == 0
    assert d["live_bytes"] >= 768 * 512 * 4 + 512 * 640 * 4 + (4 << 20)  # A, B and V at least
    assert d["alloc_count"] > 200                                        # the temporaries
    assert a["live_bytes"] == 0 and a["live_blocks"] == 0
    assert a["free_count"] == a["alloc_count"]
    assert r["released_by_trim"] == a["mapped_bytes"] > 0
    assert r["mapped_after_trim"] == 0
    assert r["oom"].startswith("OutOfMemoryError") and "limit" in r["oom"]
    assert r["after_uninstall_owner"] == "" and r["after_uninstall_pool_used"] > 0
    print("cupy: live bytes 0 -> %d (peak %d, %d allocations) -> %d; trim gave back %d, "
          "mapped after it %d; out of memory: %s" % (
              d["live_bytes"], d["peak_live_bytes"], d["alloc_count"], a["live_bytes"],
              r["released_by_trim"], r["mapped_after_trim"], r["oom"][:120]))


def test_cupy_workload_lands_in_the_arena():
    check_numeric(run("cupy"))


def test_cupy_stream_aware_on_a_non_blocking_stream():
    r = run("cupy_streams")
    assert r["stream_aware"] and r["stream"] != 0
    check_numeric(r)


def test_cupy_and_torch_share_arenas_through_dlpack():
    pytest.importorskip("torch")
    r = run("mixed")
    assert r["shared_same_pointer"] and r["shared_matmul_matches"]
    assert r["shared_reduction_matches"]
    assert r["shared_owners"] == ["shared"]
    assert r["shared_live_during"] > 0
    assert r["split_owners"] == ["cupy_side", "cupy_side", "torch_side", "torch_side",
                                 "cupy_side"]
    assert r["split_result_matches"]
    assert r["split_live_during"]["torch_side"] > 0 and r["split_live_during"]["cupy_side"] > 0
    assert r["pool_used_bytes"] == 0
    for name, e in r["end"].items():
        print("cupy: mixed, arena %s at the end: live %d, trim gave back %d, mapped after %d"
              % (name, e["live"], e["released"], e["mapped_after_trim"]))
        assert e["live"] == 0, name
        assert e["released"] > 0 and e["mapped_after_trim"] == 0, name
