"""cupy_arena.py - CuPy taking its memory from a cuarena arena (cuarena.cupy).

    PYTHONPATH=python CUARENA_LIB=build/libcuarena.so python3 examples/cupy_arena.py

A CuPy "engine" (a matmul chain) runs with cuarena installed as CuPy's
allocator on an arena with a limit: the arena's figures show CuPy's memory
rise and fall, a request past the limit gets CuPy's OutOfMemoryError, and
after the arrays are dropped a trim gives every mapped byte back. Prints
"cupy_arena: " lines. Exit status 0 when all held, 1 otherwise, 77 (skipped)
without CuPy or a CUDA device.
"""

import sys

try:
    import cupy as cp
except ImportError:
    print("cupy_arena: skipped: cupy is not installed")
    sys.exit(77)
try:
    if cp.cuda.runtime.getDeviceCount() == 0:
        raise RuntimeError("no device")
except Exception as e:  # no driver, no device
    print("cupy_arena: skipped: no CUDA device (%s)" % e)
    sys.exit(77)

import numpy as np

import cuarena
import cuarena.cupy

MIB = 1 << 20


def main():
    engine = cuarena.Arena("cupy_engine", limit="1G")
    cuarena.cupy.install(engine)
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    x = cp.asarray(a)
    for _ in range(8):
        x = cp.tanh(x @ x.T / 2048.0)
    ref = a
    for _ in range(8):
        ref = np.tanh(ref @ ref.T / 2048.0)
    ok = bool(np.allclose(cp.asnumpy(x), ref, rtol=1e-3, atol=1e-4))
    s = engine.stats()
    print("cupy_arena: result %s; arena live %.1f MiB, peak live %.1f MiB, mapped %.1f MiB, "
          "%d allocations" % ("matches numpy" if ok else "DIFFERS", s["live_bytes"] / MIB,
                              s["peak_live_bytes"] / MIB, s["mapped_bytes"] / MIB,
                              s["alloc_count"]))
    try:
        cp.empty(2 << 30, dtype=cp.uint8)
        oom = False
    except cp.cuda.memory.OutOfMemoryError as e:
        oom = True
        print("cupy_arena: 2 GiB past the 1 GiB limit: OutOfMemoryError (%s)"
              % str(e.__cause__)[:160])
    del x
    cp.cuda.Device().synchronize()
    live = engine.stats()["live_bytes"]
    released = engine.trim()
    mapped = engine.stats()["mapped_bytes"]
    cuarena.cupy.uninstall()
    engine.destroy()
    print("cupy_arena: after the arrays are gone: live %d bytes, trim gave back %.1f MiB, "
          "mapped %d bytes; arena destroyed" % (live, released / MIB, mapped))
    ok = ok and oom and live == 0 and mapped == 0 and released > 0
    print("cupy_arena: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
