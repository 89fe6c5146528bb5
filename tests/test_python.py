"""test_python.py - the cuarena Python package (python/cuarena) on the host
backend, no torch needed: arenas, limits and their errors, offload and restore
at the same addresses with the same bytes, statistics under torch's key
names, the text summary, snapshots in torch's format (segments, blocks, and
device_traces from the allocation history), events with their byte deltas,
headroom and peaks. Run by meson (suite host) with CUARENA_LIB set:

    CUARENA_LIB=build/libcuarena.so PYTHONPATH=python python3 tests/test_python.py
"""

import ctypes
import os
import pickle
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import cuarena  # noqa: E402

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
    unittest.main(verbosity=2)
