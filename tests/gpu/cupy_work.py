"""cupy_work.py - one workload of tests/gpu/test_cupy.py in a process of its
own (an allocator is installed once per process): CuPy with cuarena as its
allocator, alone or beside PyTorch. Prints one JSON line last.

    PYTHONPATH=python CUARENA_LIB=build-gpu/libcuarena.so \\
        python3 tests/gpu/cupy_work.py cupy|cupy_streams|mixed
"""

import ctypes
import gc
import json
import sys

import numpy as np

import cuarena
import cuarena.cupy


def owner(ptr):
    """The name of the arena that holds device address ptr ("" if none)."""
    a = ctypes.c_void_p()
    if cuarena.library.cua_ptr_info(ptr, ctypes.byref(a), None, None) != 0:
        return ""
    name = ctypes.c_char_p()
    cuarena.library.cua_arena_name.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p)]
    cuarena.library.cua_arena_name(a, ctypes.byref(name))
    return name.value.decode()


def close(x, y, tol=1e-3):
    return bool(np.allclose(x, y, rtol=tol, atol=tol * max(1.0, float(np.abs(y).max()))))


def numeric_work(cp, out, tag):
    """Arrays, matmul, elementwise, reductions on CuPy, each against numpy."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((768, 512)).astype(np.float32)
    b = rng.standard_normal((512, 640)).astype(np.float32)
    v = rng.standard_normal(1 << 20).astype(np.float32)
    A, B, V = cp.asarray(a), cp.asarray(b), cp.asarray(v)
    C = A @ B
    out[tag + "matmul"] = close(cp.asnumpy(C), a @ b)
    E = cp.exp(cp.tanh(A)) * 2.0 + cp.sqrt(cp.abs(A))
    out[tag + "elementwise"] = close(cp.asnumpy(E), np.exp(np.tanh(a)) * 2 + np.sqrt(np.abs(a)))
    out[tag + "reductions"] = (close(float(V.sum()), float(v.astype(np.float64).sum()), 1e-2)
                               and close(cp.asnumpy(C.max(axis=0)), (a @ b).max(axis=0))
                               and close(cp.asnumpy(A.mean(axis=1)), a.mean(axis=1))
                               and int(cp.argmax(V)) == int(np.argmax(v)))
    S = cp.sort(V[:100000])
    out[tag + "sort"] = bool(np.array_equal(cp.asnumpy(S), np.sort(v[:100000])))
    # many temporaries of many sizes, made and dropped
    acc = cp.zeros(4096, dtype=cp.float64)
    for i in range(200):
        t = cp.arange(4096 + i, dtype=cp.float64)[:4096] * (i % 7)
        acc += t
    want = np.arange(4096, dtype=np.float64) * sum(i % 7 for i in range(200))
    out[tag + "temporaries"] = close(cp.asnumpy(acc), want)
    return [A, B, V, C, E, S, acc]


def stats(arena):
    s = arena.stats()
    return {k: s[k] for k in ("live_bytes", "live_blocks", "mapped_bytes", "peak_live_bytes",
                              "alloc_count", "free_count")}


def work_cupy(stream_aware):
    import cupy as cp

    arena = cuarena.Arena("cupy_work")
    cuarena.cupy.install(arena, stream_aware=stream_aware)
    out = {"stream_aware": stream_aware}
    before = stats(arena)
    if stream_aware:
        with cp.cuda.Stream(non_blocking=True) as s:
            keep = numeric_work(cp, out, "")
            out["stream"] = s.ptr
            s.synchronize()
    else:
        keep = numeric_work(cp, out, "")
    cp.cuda.Device().synchronize()
    during = stats(arena)
    out["owner_of_array"] = owner(keep[0].data.ptr)
    out["pool_used_bytes"] = cp.get_default_memory_pool().used_bytes()
    del keep
    gc.collect()
    cp.cuda.Device().synchronize()
    after = stats(arena)
    out["released_by_trim"] = arena.trim(0)
    out["mapped_after_trim"] = arena.stats()["mapped_bytes"]
    # out of memory: CuPy's own error, never a NULL pointer
    small = cuarena.Arena("cupy_small", limit="64M")
    cuarena.cupy.install(small, stream_aware=stream_aware)
    try:
        cp.empty(256 << 20, dtype=cp.uint8)
        out["oom"] = "no error"
    except cp.cuda.memory.OutOfMemoryError as e:
        out["oom"] = "OutOfMemoryError: " + str(e.__cause__ or e)[:200]
    # uninstall: CuPy's pool again
    cuarena.cupy.uninstall()
    x = cp.ones(1 << 20, dtype=cp.float32)
    out["after_uninstall_owner"] = owner(x.data.ptr)
    out["after_uninstall_pool_used"] = cp.get_default_memory_pool().used_bytes()
    del x
    small.destroy()
    arena.destroy()
    out.update(before=before, during=during, after=after)
    return out


def work_mixed():
    import cupy as cp
    import torch

    cuarena.torch.install(full=False)
    # torch's cuBLAS workspace lives as long as its handle: make it now, in the
    # default arena, so that the arenas below end with nothing live.
    w = torch.ones(64, 64, device="cuda")
    (w @ w).sum().item()
    del w
    shared = cuarena.Arena("shared")
    tside, cside = cuarena.Arena("torch_side"), cuarena.Arena("cupy_side")
    out = {}

    # 1. one arena for both: torch in a `with` block, CuPy installed on it
    cuarena.cupy.install(shared)
    with shared:
        t = torch.randn(1024, 512, device="cuda")
        c = cp.from_dlpack(t)                      # zero-copy: torch's memory
        d = c.T @ c                                # CuPy's matmul, CuPy's memory
        t2 = torch.from_dlpack(d)                  # zero-copy back into torch
        ref = t.T @ t
        out["shared_same_pointer"] = c.data.ptr == t.data_ptr() and t2.data_ptr() == d.data.ptr
        out["shared_matmul_matches"] = bool(torch.allclose(t2, ref, rtol=1e-3, atol=1e-2))
        out["shared_owners"] = sorted({owner(t.data_ptr()), owner(d.data.ptr),
                                       owner(ref.data_ptr())})
        e = cp.tanh(c) + 1                         # elementwise on CuPy, reduced by torch
        got, want = torch.from_dlpack(e).sum(dim=0), (torch.tanh(t) + 1).sum(dim=0)
        out["shared_reduction_matches"] = bool(torch.allclose(got, want, rtol=1e-4, atol=1e-2))
        del got, want
    torch.cuda.synchronize()
    out["shared_live_during"] = shared.stats()["live_bytes"]
    del t, c, d, t2, ref, e

    # 2. an arena each, data through DLPack both ways
    cuarena.cupy.install(cside)
    rng = np.random.default_rng(3)
    host = rng.standard_normal((2048, 256)).astype(np.float32)
    x = cp.asarray(host)                           # cupy_side
    with tside:
        tx = torch.from_dlpack(x)                  # no copy: still cupy_side
        ty = torch.nn.functional.relu(tx) * 3      # torch_side
    y = cp.from_dlpack(ty)                         # no copy: torch_side
    z = y.sum(axis=0)                              # cupy_side
    torch.cuda.synchronize()
    out["split_owners"] = [owner(x.data.ptr), owner(tx.data_ptr()), owner(ty.data_ptr()),
                           owner(y.data.ptr), owner(z.data.ptr)]
    out["split_result_matches"] = close(cp.asnumpy(z), (np.maximum(host, 0) * 3).sum(axis=0))
    out["split_live_during"] = {"torch_side": tside.stats()["live_bytes"],
                                "cupy_side": cside.stats()["live_bytes"]}
    del x, tx, ty, y, z
    gc.collect()
    torch.cuda.synchronize()
    cp.cuda.Device().synchronize()

    cuarena.cupy.uninstall()
    out["pool_used_bytes"] = cp.get_default_memory_pool().used_bytes()
    out["end"] = {}
    for a in (shared, tside, cside):
        live = a.stats()["live_bytes"]
        released = a.trim(0)
        out["end"][a.name] = {"live": live, "released": released,
                              "mapped_after_trim": a.stats()["mapped_bytes"]}
        a.destroy()
    return out


def main():
    which = sys.argv[1]
    if which == "cupy":
        out = work_cupy(False)
    elif which == "cupy_streams":
        out = work_cupy(True)
    elif which == "mixed":
        import cuarena.torch  # noqa: F401 (install() in work_mixed)

        out = work_mixed()
    else:
        raise SystemExit("unknown workload " + which)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
