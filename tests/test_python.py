"""test_python.py - the cuarena Python package (python/cuarena) on the host
backend, no torch needed: arenas, limits and their errors, offload and restore
at the same addresses with the same bytes, statistics under torch's key
names, the text summary, snapshots in torch's format (segments, blocks, and
device_traces from the allocation history), events with their byte deltas,
headroom and peaks; the library found (the package's own first, then
CUARENA_LIB) and its version checked at import; the report published for
`python -m cuarena top`, and top --once against a publishing process;
cuarena.torch.install()'s three ways (prebuilt shim, shim compiled now, plain
allocator) against a fake torch, each said. Run by meson (suite host) with
CUARENA_LIB set:

    CUARENA_LIB=build/libcuarena.so PYTHONPATH=python python3 tests/test_python.py
"""

import ctypes
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import types
import unittest
import warnings

PYTHON_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
sys.path.insert(0, PYTHON_DIR)
import cuarena  # noqa: E402
import cuarena.torch  # noqa: E402

MiB = 1 << 20


def arena(name, **options):
    options.setdefault("backend", "host")
    options.setdefault("va_size", "1G")
    return cuarena.Arena(name, **options)


class ArenaTest(unittest.TestCase):
    def test_alloc_free_stats_and_arena_of(self):
        a = arena("py_enc")
        p = a.alloc(3 * MiB)
        q = a.alloc(1000)
        st = a.stats()
        self.assertEqual(st["live_bytes"], 3 * MiB + 1000)
        self.assertEqual(st["live_blocks"], 2)
        self.assertGreaterEqual(st["mapped_bytes"], 3 * MiB)
        self.assertEqual(cuarena.arena_of(p), "py_enc")
        self.assertEqual(cuarena.arena_of(q), "py_enc")
        cuarena.free(p)
        cuarena.free(q)
        with self.assertRaises(cuarena.Error) as e:
            cuarena.free(q)
        self.assertEqual(e.exception.status, "CUA_ERR_DOUBLE_FREE")
        self.assertEqual(a.stats()["live_bytes"], 0)
        self.assertGreater(a.trim(), 0)
        self.assertEqual(a.stats()["mapped_bytes"], 0)
        a.destroy()

    def test_stream_retire(self):
        a = arena("py_streams")
        p = a.alloc(MiB, stream=0x51)
        cuarena.free(p)
        cuarena.stream_retire(0x51)  # known to the arena: waited for, forgotten
        cuarena.stream_retire(0x52)  # never seen: nothing to do
        with self.assertRaises(cuarena.Error) as e:
            cuarena.stream_retire(0x51, device=-7)
        self.assertEqual(e.exception.status, "CUA_ERR_INVALID_ARG")
        q = a.alloc(MiB, stream=0x53)  # the retired stream's block serves another
        self.assertEqual(q, p)
        cuarena.free(q)
        a.destroy()

    def test_limit_answers_with_an_error_and_an_event(self):
        events = []
        remove = cuarena.on_event(events.append)
        try:
            a = arena("py_limited", limit="8M")
            p = a.alloc(6 * MiB)
            with self.assertRaises(cuarena.Error) as e:
                a.alloc(4 * MiB)
            self.assertEqual(e.exception.status, "CUA_ERR_LIMIT")
            self.assertIn("py_limited", str(e.exception))
            cuarena.free(p)
            released = a.trim()
            a.destroy()
        finally:
            remove()
        kinds = [(ev["kind"], ev["arena"]) for ev in events]
        self.assertIn(("out_of_memory", "py_limited"), kinds)
        trims = [ev for ev in events if ev["kind"] == "trimmed" and ev["arena"] == "py_limited"]
        self.assertTrue(trims and sum(ev["bytes"] for ev in trims) == released)
        self.assertIn(("destroyed", "py_limited"), kinds)

    def test_offload_restore_keeps_addresses_and_bytes(self):
        a = arena("py_offload")
        p = a.alloc(2 * MiB + 123)
        ctypes.memset(p, 0x5C, 2 * MiB + 123)
        a.offload()
        self.assertEqual(a.stats()["mapped_bytes"], 0)
        with self.assertRaises(cuarena.Error) as e:
            a.alloc(100)
        self.assertEqual(e.exception.status, "CUA_ERR_OFFLOADED")
        a.restore()
        data = ctypes.string_at(p, 2 * MiB + 123)
        self.assertEqual(data, b"\x5c" * (2 * MiB + 123))
        cuarena.free(p)
        a.destroy()


    def test_grant_peer_answers_for_an_unreachable_device(self):
        a = arena("py_peer")
        a.grant_peer(0)  # its own device: nothing to do
        with self.assertRaises(cuarena.Error) as e:
            a.grant_peer(1)  # a host backend of its own reaches no other device
        self.assertEqual(e.exception.status, "CUA_ERR_NOT_SUPPORTED")
        with self.assertRaises(cuarena.Error) as e:
            a.grant_peer(64)
        self.assertEqual(e.exception.status, "CUA_ERR_INVALID_ARG")
        a.destroy()


class StatsAndSnapshotTest(unittest.TestCase):
    def test_memory_stats_has_torch_keys_and_arena_figures(self):
        a = arena("py_stats")
        p = a.alloc(5 * MiB)
        ms = cuarena.memory_stats(0)
        for key in ("allocated_bytes.all.current", "allocated_bytes.all.peak",
                    "reserved_bytes.all.current", "reserved_bytes.all.peak",
                    "requested_bytes.all.current", "num_alloc_retries", "num_ooms",
                    "allocation.all.current"):
            self.assertIn(key, ms)
        self.assertGreaterEqual(ms["requested_bytes.all.current"], 5 * MiB)
        self.assertGreaterEqual(ms["reserved_bytes.all.current"], ms["allocated_bytes.all.current"])
        self.assertEqual(ms["cuarena.py_stats.live_bytes"], 5 * MiB)
        for key in ("mapped_bytes", "cached_bytes", "largest_free_bytes", "free_fragmentation"):
            self.assertIn("cuarena.py_stats." + key, ms)
        self.assertIn("py_stats", cuarena.memory_summary(0))
        self.assertGreater(cuarena.headroom(0), 0)
        cuarena.free(p)
        a.reset_peak_stats()
        self.assertEqual(a.stats()["peak_live_bytes"], 0)
        a.destroy()

    def test_snapshot_segments_blocks_and_history(self):
        cuarena.record_memory_history(True, max_entries=64)
        a = arena("py_snap")
        p = a.alloc(3 * MiB)
        q = a.alloc(4096)
        cuarena.free(q)
        snap = cuarena.snapshot(0)
        cuarena.record_memory_history(False)
        segs = [s for s in snap["segments"] if s["arena"] == "py_snap"]
        self.assertTrue(segs)
        blocks = [b for s in segs for b in s["blocks"]]
        live = [b for b in blocks if b["state"] == "active_allocated"]
        # a block across two physical handles shows as a piece in each segment
        self.assertEqual(live[0]["address"], p)
        self.assertEqual(live[0]["requested_size"], 3 * MiB)
        self.assertGreaterEqual(sum(b["size"] for b in live), 3 * MiB)
        for x, y in zip(live, live[1:]):
            self.assertEqual(x["address"] + x["size"], y["address"])
        self.assertEqual(sum(s["total_size"] for s in segs), a.stats()["mapped_bytes"])
        for s in segs:  # the blocks tile their segment
            self.assertEqual(sum(b["size"] for b in s["blocks"]), s["total_size"])
        trace = [e for e in snap["device_traces"][0] if e["arena"] in ("py_snap", "")]
        actions = [(e["action"], e["addr"], e["size"]) for e in trace]
        self.assertIn(("alloc", p, 3 * MiB), actions)
        self.assertIn(("alloc", q, 4096), actions)
        self.assertIn(("free_completed", q, 4096), actions)
        self.assertTrue(any(e["action"] == "segment_map" for e in trace))
        times = [e["time_us"] for e in snap["device_traces"][0]]
        self.assertEqual(times, sorted(times))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "snap.pickle")
            cuarena.dump_snapshot(path, 0)
            with open(path, "rb") as f:
                back = pickle.load(f)
            self.assertEqual(set(back), {"segments", "device_traces"})
        cuarena.free(p)
        a.destroy()

    def test_history_ring_keeps_the_newest(self):
        cuarena.record_memory_history(True, max_entries=4)
        a = arena("py_ring")
        ptrs = [a.alloc(512 * (i + 1)) for i in range(6)]
        hist = [e for e in cuarena.memory_history(0) if e["action"] == "alloc"]
        cuarena.record_memory_history(False)
        self.assertEqual([e["addr"] for e in hist], ptrs[-len(hist):])
        self.assertLessEqual(len(hist), 4)
        for p in ptrs:
            cuarena.free(p)
        a.destroy()


class VersionAndLibraryTest(unittest.TestCase):
    """The library is the package's own first, then $CUARENA_LIB; its version
    must be the package's."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cuarena-pytest-")
        self.pkg = os.path.join(self.tmp, "site", "cuarena")
        shutil.copytree(os.path.join(PYTHON_DIR, "cuarena"), self.pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        self.elsewhere = os.path.join(self.tmp, "elsewhere")
        os.mkdir(self.elsewhere)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_py(self, code, **env):
        e = dict(os.environ, PYTHONPATH=os.path.dirname(self.pkg))
        e.pop("CUARENA_PUBLISH", None)
        for k, v in env.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        return subprocess.run([sys.executable, "-c", code], env=e, cwd=self.elsewhere,
                              capture_output=True, text=True, timeout=60)

    def test_version_is_meson_builds_and_the_librarys(self):
        self.assertEqual(cuarena.__version__, cuarena.library_version)
        with open(os.path.join(PYTHON_DIR, "..", "meson.build")) as f:
            self.assertIn("version: '%s'" % cuarena.__version__, f.read())

    def test_bundled_library_comes_before_cuarena_lib(self):
        shutil.copy(cuarena.library_path, os.path.join(self.pkg, "libcuarena.so"))
        code = "import cuarena; print(cuarena.library_found_in); print(cuarena.library_path)"
        p = self.run_py(code, CUARENA_LIB="/nonexistent/libcuarena.so")
        self.assertEqual(p.returncode, 0, p.stderr)
        found, path = p.stdout.split("\n")[:2]
        self.assertEqual(found, "bundled with the package")
        self.assertEqual(os.path.dirname(path), self.pkg)
        os.remove(os.path.join(self.pkg, "libcuarena.so"))
        p = self.run_py(code, CUARENA_LIB=cuarena.library_path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split("\n")[0], "$CUARENA_LIB")

    def test_a_version_mismatch_fails_the_import_naming_both(self):
        with open(os.path.join(self.pkg, "_build_info.py"), "w") as f:
            f.write('version = "9.9.9"\ntorch_version = None\n')
        p = self.run_py("import cuarena", CUARENA_LIB=cuarena.library_path)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("ImportError", p.stderr)
        self.assertIn("9.9.9", p.stderr)
        self.assertIn("version %s" % cuarena.library_version, p.stderr)
        self.assertIn(cuarena.library_path, p.stderr)

    def test_no_library_at_all_says_where_it_looked(self):
        p = self.run_py("import cuarena", CUARENA_LIB=None, LD_LIBRARY_PATH=None)
        if p.returncode == 0:
            self.skipTest("a libcuarena.so is on this system's library path")
        self.assertIn("libcuarena.so not found", p.stderr)
        self.assertIn("CUARENA_LIB", p.stderr)


class PublishAndTopTest(unittest.TestCase):
    """A process publishes its report (CUARENA_PUBLISH); `python -m cuarena
    top --once` shows its arenas; the file goes when the process ends."""

    def test_top_once_shows_a_publishing_process(self):
        d = tempfile.mkdtemp(prefix="cuarena-publish-")
        env = dict(os.environ, CUARENA_PUBLISH="0.2", CUARENA_PUBLISH_DIR=d,
                   PYTHONPATH=PYTHON_DIR)
        child_code = (
            "import sys, cuarena\n"
            "a = cuarena.Arena('py_top_kv', backend='host', va_size='1G', limit='64M')\n"
            "p = a.alloc(5 << 20)\n"
            "b = cuarena.Arena('py_top_enc', backend='host', va_size='1G')\n"
            "q = b.alloc(1 << 20)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n")
        child = subprocess.Popen([sys.executable, "-c", child_code], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(child.stdout.readline().strip(), "ready")
            top_env = dict(env)
            top_env.pop("CUARENA_PUBLISH")
            path = os.path.join(d, "%d.json" % child.pid)
            deadline = time.time() + 20
            out = ""
            while time.time() < deadline:  # the arenas are in a report 0.2 s later
                p = subprocess.run([sys.executable, "-m", "cuarena", "top", "--once",
                                    str(child.pid)], env=top_env, capture_output=True,
                                   text=True, timeout=60)
                out = p.stdout
                if p.returncode == 0 and "py_top_enc" in out:
                    break
                time.sleep(0.2)
            self.assertIn("pid %d" % child.pid, out)
            lines = {l.split()[0]: l for l in out.splitlines() if l.startswith("  py_top")}
            self.assertIn("5.0 MiB", lines["py_top_kv"])      # live
            self.assertIn("64.0 MiB", lines["py_top_kv"])     # limit
            self.assertIn("1.0 MiB", lines["py_top_enc"])
            self.assertIn("device 0:", out)
            with open(path) as f:
                rep = json.load(f)
            self.assertEqual(rep["pid"], child.pid)
            self.assertEqual(rep["version"], cuarena.__version__)
            self.assertEqual(sorted(a["name"] for a in rep["devices"]["0"]["arenas"]),
                             ["py_top_enc", "py_top_kv"])
            self.assertFalse([n for n in os.listdir(d) if n.endswith(".tmp")])
            # every publishing process, when no pid is given
            p = subprocess.run([sys.executable, "-m", "cuarena", "top", "--once"], env=top_env,
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("pid %d" % child.pid, p.stdout)
        finally:
            child.stdin.close()
            child.wait(timeout=30)
            child.stdout.close()
        self.assertFalse(os.path.exists(path), "the report outlived its process")
        p = subprocess.run([sys.executable, "-m", "cuarena", "top", "--once", str(child.pid)],
                           env=top_env, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not running", p.stdout)
        p = subprocess.run([sys.executable, "-m", "cuarena", "top", "--once"], env=top_env,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no process publishes", p.stdout)
        shutil.rmtree(d, ignore_errors=True)

    def test_publish_in_process_writes_and_stops(self):
        d = tempfile.mkdtemp(prefix="cuarena-publish-")
        try:
            a = arena("py_publish_here")
            p = a.alloc(MiB)
            path = cuarena.publish(0.05, path=os.path.join(d, "me.json"))
            self.assertEqual(cuarena.publish(), path)  # one publisher per process
            with open(path) as f:
                rep = json.load(f)
            names = [x["name"] for x in rep["devices"]["0"]["arenas"]]
            self.assertIn("py_publish_here", names)
            cuarena.publish_stop()
            self.assertFalse(os.path.exists(path))
            cuarena.free(p)
            a.destroy()
        finally:
            cuarena.publish_stop()
            shutil.rmtree(d, ignore_errors=True)


# ---- cuarena.torch.install() against a fake torch -------------------------------------------

class FakeShim(types.ModuleType):
    def __init__(self, name):
        super().__init__(name)
        self.installed = 0

    def install(self):
        self.installed += 1


def fake_torch(version, build=None):
    """A torch module as much as cuarena.torch.install() uses of it. build:
    what torch.utils.cpp_extension.load returns (an exception to raise)."""
    torch = types.ModuleType("torch")
    torch.__version__ = version
    cuda = types.ModuleType("torch.cuda")
    memory = types.ModuleType("torch.cuda.memory")
    torch.changed = []

    class CUDAPluggableAllocator:
        def __init__(self, path, alloc, free):
            self.args = (path, alloc, free)

    memory.CUDAPluggableAllocator = CUDAPluggableAllocator
    memory.change_current_allocator = torch.changed.append
    memory.memory_reserved = lambda: 0
    cuda.memory = memory
    cuda.is_initialized = lambda: False
    torch.cuda = cuda
    utils = types.ModuleType("torch.utils")
    ext = types.ModuleType("torch.utils.cpp_extension")

    def load(**kwargs):
        torch.load_args = kwargs
        if isinstance(build, BaseException):
            raise build
        return build

    ext.load = load
    utils.cpp_extension = ext
    torch.utils = utils
    return {"torch": torch, "torch.cuda": cuda, "torch.cuda.memory": memory,
            "torch.utils": utils, "torch.utils.cpp_extension": ext}


class TorchInstallTest(unittest.TestCase):
    """Which allocator install() puts in, and that a fallback is never silent."""

    def setUp(self):
        self.saved = {k: sys.modules.get(k) for k in (
            "torch", "torch.cuda", "torch.cuda.memory", "torch.utils",
            "torch.utils.cpp_extension", "cuarena._build_info", "cuarena._torch_shim")}
        self.reset()

    def tearDown(self):
        for k, v in self.saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
        self.reset()

    def reset(self):
        ct = cuarena.torch
        ct._installed = ct.mode = ct.source = ct.how = None

    def use(self, version, build=None, prebuilt_for=None):
        mods = fake_torch(version, build)
        sys.modules.update(mods)
        sys.modules.pop("cuarena._build_info", None)
        sys.modules.pop("cuarena._torch_shim", None)
        shim = None
        if prebuilt_for is not None:
            info = types.ModuleType("cuarena._build_info")
            info.version, info.torch_version, info.torch_cuda = cuarena.__version__, prebuilt_for, "13.0"
            info.torch_shim_note = "compiled against torch " + prebuilt_for
            shim = FakeShim("cuarena._torch_shim")
            sys.modules["cuarena._build_info"] = info
            sys.modules["cuarena._torch_shim"] = shim
        return mods["torch"], shim

    def install(self, **kw):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            cuarena.torch.install(**kw)
        return [x for x in w if issubclass(x.category, cuarena.torch.FallbackWarning)]

    def test_prebuilt_shim_of_the_same_torch_is_used_quietly(self):
        torch, shim = self.use("2.11.0+cu130", build=AssertionError("must not compile"),
                               prebuilt_for="2.11.0+cu130")
        said = self.install()
        self.assertEqual((cuarena.torch.mode, cuarena.torch.source), ("full", "prebuilt"))
        self.assertEqual(shim.installed, 1)
        self.assertFalse(said)
        self.assertFalse(hasattr(torch, "load_args"))
        self.assertIn("prebuilt", cuarena.torch.how)

    def test_another_torch_compiles_the_shim_and_says_so(self):
        built = FakeShim("cuarena_torch_shim")
        torch, prebuilt = self.use("2.12.0+cu130", build=built, prebuilt_for="2.11.0+cu130")
        said = self.install()
        self.assertEqual((cuarena.torch.mode, cuarena.torch.source), ("full", "built"))
        self.assertEqual((built.installed, prebuilt.installed), (1, 0))
        self.assertEqual(len(said), 1)
        text = str(said[0].message)
        self.assertIn("2.11.0+cu130", text)
        self.assertIn("2.12.0+cu130", text)
        self.assertIn("compiled now", text)
        self.assertIn("-lcuarena", torch.load_args["extra_ldflags"])

    def test_falling_back_to_the_plain_allocator_is_never_silent(self):
        torch, _ = self.use("2.11.0+cu130", build=RuntimeError("Ninja is required to load C++ "
                                                                "extensions"))
        said = self.install()
        self.assertEqual((cuarena.torch.mode, cuarena.torch.source), ("pluggable", None))
        self.assertEqual(len(torch.changed), 1)
        self.assertEqual(torch.changed[0].args,
                         (cuarena.library_path, "cua_torch_alloc", "cua_torch_free"))
        self.assertEqual(len(said), 1, "cuarena.torch fell back to the plain allocator silently")
        text = str(said[0].message)
        for feature in ("memory_stats()", "max_memory_allocated()", "memory_snapshot()",
                        "empty_cache()", "will not see cuarena", "Ninja is required",
                        "not installed by its build"):
            self.assertIn(feature, text)
        self.assertEqual(cuarena.torch.how, text[len("cuarena.torch: "):])

    def test_plain_allocator_asked_for_is_not_a_fallback(self):
        torch, _ = self.use("2.11.0+cu130", build=AssertionError("must not compile"),
                            prebuilt_for="2.11.0+cu130")
        said = self.install(full=False)
        self.assertEqual(cuarena.torch.mode, "pluggable")
        self.assertFalse(said)
        self.assertIn("asked for", cuarena.torch.how)


def main():
    result = unittest.main(verbosity=2, exit=False).result
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    print("%d passed, %d failed" % (result.testsRun - failed - len(result.skipped), failed))
    return 1 if failed else 0

class ArgumentTest(unittest.TestCase):
    """The package checks what it hands to C: no number wraps through ctypes,
    no option value reads as two options, no name is cut by a NUL; every
    arena is listed; an Arena dropped without destroy() does not stay."""

    def test_arenas_lists_every_arena_not_256(self):
        made = [arena("py_many_%d" % i) for i in range(300)]
        names = {a.name for a in cuarena.arenas(0)}
        self.assertTrue(all(a.name in names for a in made))
        again = cuarena.arena("py_many_299", backend="host", va_size="1G")
        self.assertEqual(again.handle, made[-1].handle)  # found, not made twice
        for a in made:
            a.destroy()

    def test_negative_numbers_are_refused_not_wrapped(self):
        a = arena("py_negative")
        for call in (lambda: a.set_limit(-5), lambda: a.alloc(10, stream=-1),
                     lambda: a.alloc(-1), lambda: a.trim(-1), lambda: cuarena.free(-8),
                     lambda: a.set_limit(1 << 64), lambda: cuarena.stream_retire(-3)):
            with self.assertRaises(ValueError):
                call()
        self.assertEqual(a.stats()["limit_bytes"], 0)
        a.destroy()

    def test_option_values_are_not_pasted_into_the_option_string(self):
        for bad in ({"limit": "1G,floor:512M"}, {"limit": "1G:2"}, {"limit": "1G floor"},
                    {"floor,limit": "1G"}, {"limit": -1}, {"limit": 1.5}):
            with self.assertRaises(ValueError):
                arena("py_injected", **bad)
        self.assertNotIn("py_injected", [x.name for x in cuarena.arenas(0)])
        a = arena("py_options", limit="1G", floor=512 * MiB, priority=2)
        st = a.stats()
        self.assertEqual(st["limit_bytes"], 1 << 30)
        a.destroy()

    def test_a_nul_in_a_name_is_refused(self):
        with self.assertRaises(ValueError):
            arena("py_nul\0hidden")

    def test_a_dropped_arena_is_destroyed_with_a_warning(self):
        import gc
        import warnings

        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            a = arena("py_dropped")
            del a
            gc.collect()
            self.assertNotIn("py_dropped", [x.name for x in cuarena.arenas(0)])
            self.assertTrue(any(issubclass(w.category, ResourceWarning) for w in seen))
            b = arena("py_dropped_busy")
            p = b.alloc(MiB)  # a live block (a tensor may use it): kept, with a warning
            handle = b.handle
            del b
            gc.collect()
            self.assertIn("py_dropped_busy", [x.name for x in cuarena.arenas(0)])
        cuarena.free(p)
        cuarena.Arena._wrap(ctypes.c_void_p(handle), "py_dropped_busy", 0).destroy()

    def test_names_cut_on_a_character_boundary(self):
        name = "\u00e9" * 40  # 80 bytes of UTF-8: cut to 63 bytes, 31 characters
        a = arena(name)
        listed = [x.name for x in cuarena.arenas(0) if x.handle == a.handle]
        self.assertEqual(listed, ["\u00e9" * 31])
        self.assertIn("\u00e9" * 31, [x["name"] for x in cuarena.device_report(0)["arenas"]])
        a.destroy()


if __name__ == "__main__":
    sys.exit(main())
