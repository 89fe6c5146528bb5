"""cuarena from Python: component arenas over libcuarena.so, through ctypes.

    import cuarena
    enc = cuarena.Arena("text_encoder", limit="6G")
    with enc:                       # allocations of this thread go to `enc`
        ...
    enc.offload(); enc.restore()    # same addresses, same bytes
    cuarena.headroom()              # bytes this device can still give

PyTorch: ``cuarena.torch.install()`` (see cuarena/torch.py). Metrics:
``cuarena.prometheus()`` (Prometheus' text format); ``cuarena.publish()`` (or
CUARENA_PUBLISH=1) lets ``python -m cuarena top`` show this process's arenas
live. No third-party dependency. The library is, in this order: the one
installed in this package (a wheel, or a meson install with -Dpython=enabled),
$CUARENA_LIB, a build tree of the repository around this package (build-gpu,
build, build-bench), the system's library path. At import, cua_version() of
that library must equal __version__, else ImportError names both.
"""

import ctypes
import ctypes.util
import json
import os
import re
import threading
import warnings
import weakref

__all__ = [
    "__version__", "library_version", "prometheus", "publish", "publish_stop", "publish_path",
    "Error", "Arena", "arena", "library", "library_path", "headroom", "device_report",
    "memory_stats", "memory_summary", "reset_peak_stats", "on_event", "trim_idle",
    "arenas", "snapshot", "dump_snapshot", "free", "janitor_start", "janitor_stop",
    "cupy_allocator", "stream_retire",
]

_here = os.path.dirname(os.path.abspath(__file__))


def _find_library():
    """The library: this package's own, $CUARENA_LIB, a build tree of the
    repository, the system's library path. Returns (path, where found)."""
    own = os.path.join(_here, "libcuarena.so")
    if os.path.exists(own):
        return own, "bundled with the package"
    env = os.environ.get("CUARENA_LIB")
    if env:
        return env, "$CUARENA_LIB"
    root = os.path.dirname(os.path.dirname(_here))
    for build in ("build-gpu", "build", "build-bench"):
        path = os.path.join(root, build, "libcuarena.so")
        if os.path.exists(path):
            return path, "the repository's build tree"
    found = ctypes.util.find_library("cuarena")
    if found:
        return found, "the system's library path"
    raise ImportError("cuarena: libcuarena.so not found: not installed with this package (%s), "
                      "CUARENA_LIB unset, no build tree of the repository, none on the library "
                      "path; install the package (pip install .) or set CUARENA_LIB to its path"
                      % _here)


def _package_version():
    """The version meson wrote into _build_info.py when it installed the
    package; in a checkout of the repository (python/cuarena), meson.build's.
    None when neither is there (a copy of the package's files)."""
    try:
        from ._build_info import version
        return version
    except ImportError:
        pass
    import re

    try:
        with open(os.path.join(_here, "..", "..", "meson.build")) as f:
            m = re.search(r"project\('cuarena'.*?version:\s*'([^']+)'", f.read(), re.S)
    except OSError:
        return None
    return m.group(1) if m else None


library_path, library_found_in = _find_library()
# Global: the PyTorch shim (cuarena/torch.py) links the same library and must
# find this instance of it, with its arenas, not a second copy.
library = ctypes.CDLL(library_path, mode=ctypes.RTLD_GLOBAL)
_lib = library
_lib.cua_version.restype = ctypes.c_char_p
library_version = _lib.cua_version().decode()
__version__ = _package_version() or library_version
if __version__ != library_version:
    raise ImportError("cuarena: the Python package is version %s but the library it loaded, %s "
                      "(%s), is version %s: install both from one build (pip install .), or "
                      "point CUARENA_LIB at a libcuarena.so of version %s"
                      % (__version__, library_path, library_found_in, library_version,
                         __version__))

_c = ctypes.c_void_p
_lib.cua_status_name.restype = ctypes.c_char_p
_lib.cua_status_name.argtypes = [ctypes.c_int]
_lib.cua_last_error.restype = ctypes.c_char_p
_lib.cua_arena_create_conf.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_c)]
_lib.cua_arena_destroy.argtypes = [_c, ctypes.c_uint]
_lib.cua_arena_offload.argtypes = [_c]
_lib.cua_arena_discard.argtypes = [_c]
_lib.cua_arena_restore.argtypes = [_c]
_lib.cua_arena_trim.argtypes = [_c, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
_lib.cua_arena_push.argtypes = [_c]
_lib.cua_arena_reset_peaks.argtypes = [_c]
_lib.cua_arena_set_limit.argtypes = [_c, ctypes.c_size_t]
_lib.cua_arena_stats_json.argtypes = [_c, ctypes.c_char_p, ctypes.c_size_t,
                                      ctypes.POINTER(ctypes.c_size_t)]
_lib.cua_arena_list.argtypes = [ctypes.c_int, ctypes.POINTER(_c), ctypes.c_size_t,
                                ctypes.POINTER(ctypes.c_size_t)]
_lib.cua_arena_name.argtypes = [_c, ctypes.POINTER(ctypes.c_char_p)]
_lib.cua_arena_default.argtypes = [ctypes.c_int, ctypes.POINTER(_c)]
_lib.cua_headroom.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_size_t)]
_lib.cua_device_report_json.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_size_t)]
_lib.cua_device_report_prometheus.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                                              ctypes.POINTER(ctypes.c_size_t)]
_lib.cua_device_reset_peak.argtypes = [ctypes.c_int]
_lib.cua_trim_idle.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_size_t)]
_lib.cua_ptr_info.argtypes = [_c, ctypes.POINTER(_c), ctypes.POINTER(_c),
                              ctypes.POINTER(ctypes.c_size_t)]
_lib.cua_arena_alloc.argtypes = [_c, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(_c)]
_lib.cua_free.argtypes = [_c]
_lib.cua_janitor_start.argtypes = [ctypes.c_uint]
_lib.cua_arena_grant_peer.argtypes = [_c, ctypes.c_int]
_lib.cua_stream_retire.argtypes = [ctypes.c_int, _c]

CUA_DESTROY_FORCE = 1
_EVENT_KINDS = ["created", "destroyed", "trimmed", "out_of_memory", "offloaded", "restored"]


class Error(RuntimeError):
    """A cuarena call failed: `status` is its status name, the text says why."""

    def __init__(self, status, message):
        super().__init__("%s: %s" % (status, message))
        self.status = status


def _text(raw):
    """C text (a name, a message) as str: bytes that are no UTF-8 (an arena
    named so from C) become U+FFFD instead of raising for every caller."""
    return (raw or b"").decode("utf-8", errors="replace")


def _check(st):
    if st != 0:
        raise Error(_text(_lib.cua_status_name(st)), _text(_lib.cua_last_error()))


_U64 = (1 << 64) - 1


def _count(value, what):
    """A byte count, stream or ordinal for the C side: an int in 0 .. 2^64-1
    (ctypes would wrap -5 to 2^64-5 without a word)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise ValueError("%s must be an integer >= 0, not %r" % (what, value)) from None
    if value < 0 or value > _U64:
        raise ValueError("%s must be in 0 .. 2^64-1, not %d" % (what, value))
    return value


_KEY = re.compile(r"[a-z_][a-z0-9_]*\Z")
_VALUE = re.compile(r"[A-Za-z0-9_.+]+\Z")


def _option(key, value):
    """One `key:value` item of an option string, refused when the value would
    be read as more than one (a comma, a colon: "1G,floor:512M" must not set a
    floor nobody named) or the key is no option name."""
    if not _KEY.match(key):
        raise ValueError("option %r is not an option name" % (key,))
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        value = str(_count(value, "option %s" % key))
    elif isinstance(value, str):
        value = value.strip()
        if not _VALUE.match(value):
            raise ValueError("option %s: value %r is not one value (a size like 6G, a number or "
                             "a word)" % (key, value))
    else:
        raise ValueError("option %s: value %r is not an int or a str" % (key, value))
    return "%s:%s" % (key, value)


def _json_call(fn, *args):
    n = ctypes.c_size_t(0)
    _check(fn(*args, None, 0, ctypes.byref(n)))
    buf = ctypes.create_string_buffer(n.value + 1)
    _check(fn(*args, buf, n.value + 1, ctypes.byref(n)))
    return json.loads(_text(buf.value))


def _drop(handle, name):
    """An Arena created here was dropped without destroy(): destroy it now, as
    a file object dropped open is closed, with a ResourceWarning; one that
    still holds live blocks (tensors may use them) is kept, with a warning."""
    st = _lib.cua_arena_destroy(handle, 0)
    if st == 0:
        warnings.warn("cuarena.Arena %r was dropped without destroy(): destroyed now" % (name,),
                      ResourceWarning, stacklevel=2)
    elif _text(_lib.cua_status_name(st)) == "CUA_ERR_BUSY":
        warnings.warn("cuarena.Arena %r was dropped without destroy() and still has live blocks: "
                      "it stays (call destroy(force=True) when they are done)" % (name,),
                      ResourceWarning, stacklevel=2)


class Arena:
    """A component arena: its own address range, limit, statistics, and an
    offload/restore that keeps every pointer valid.

    Options are CUARENA_CONF's keys (limit, release_threshold, floor, priority,
    idle_ms, device, chunk_max, chunk_large, backend, ...), e.g.
    ``Arena("kv_cache", limit="20G", release_threshold=0)``.
    Used as a context manager it is the calling thread's current arena:
    cuarena.torch's allocations (and cua_malloc) made inside go to it.
    """

    def __init__(self, name, device=0, **options):
        if not isinstance(name, str) or "\0" in name:
            raise ValueError("an arena's name is a str without NUL, not %r" % (name,))
        options.setdefault("device", device)
        conf = ",".join(_option(k, v) for k, v in options.items())
        handle = _c()
        _check(_lib.cua_arena_create_conf(name.encode(), conf.encode(), ctypes.byref(handle)))
        self._h = handle
        self.name = name
        self.device = int(options["device"])
        # Owned: dropped without destroy(), it is destroyed (see _drop); not
        # at interpreter exit, when the process gives everything back anyway.
        self._finalizer = weakref.finalize(self, _drop, handle.value, name)
        self._finalizer.atexit = False

    @classmethod
    def _wrap(cls, handle, name, device):
        """A view of an arena made elsewhere: it owns nothing."""
        self = cls.__new__(cls)
        self._h, self.name, self.device = handle, name, device
        self._finalizer = None
        return self

    @property
    def handle(self):
        return self._h.value

    def __enter__(self):
        _check(_lib.cua_arena_push(self._h))
        return self

    def __exit__(self, *exc):
        _check(_lib.cua_arena_pop())
        return False

    def alloc(self, size, stream=0):
        """Raw device memory of `size` bytes for `stream` (a cudaStream_t as an
        int); returns the address. Free it with cuarena.free()."""
        ptr = _c()
        _check(_lib.cua_arena_alloc(self._h, _count(size, "size"), _count(stream, "stream"),
                                    ctypes.byref(ptr)))
        return ptr.value

    def offload(self):
        """Copy every live block to host memory and give every page back; the
        addresses stay reserved (allocations fail until restore)."""
        _check(_lib.cua_arena_offload(self._h))

    def discard(self):
        """As offload, without keeping the contents (a KV cache)."""
        _check(_lib.cua_arena_discard(self._h))

    def restore(self):
        """Map pages at the same addresses again and copy the data back."""
        _check(_lib.cua_arena_restore(self._h))

    def trim(self, keep=0):
        """Give cached pages back to the driver, keeping `keep` bytes; returns
        the bytes released."""
        released = ctypes.c_size_t(0)
        _check(_lib.cua_arena_trim(self._h, _count(keep, "keep"), ctypes.byref(released)))
        return released.value

    def set_limit(self, limit):
        _check(_lib.cua_arena_set_limit(self._h, _count(limit, "limit")))

    def grant_peer(self, device):
        """Let GPU `device` read and write this arena's memory, what is mapped
        now and what is mapped later (cua_arena_grant_peer); raises Error
        (CUA_ERR_NOT_SUPPORTED) when that device cannot reach this one."""
        _check(_lib.cua_arena_grant_peer(self._h, _count(device, "device")))

    def reset_peak_stats(self):
        _check(_lib.cua_arena_reset_peaks(self._h))

    def stats(self):
        """The arena's figures as a dict (cua_stats, in bytes)."""
        return _json_call(_lib.cua_arena_stats_json, self._h)

    def destroy(self, force=False):
        """Give every page, handle and the address range back. Live blocks make
        it fail (Error BUSY) unless force."""
        _check(_lib.cua_arena_destroy(self._h, CUA_DESTROY_FORCE if force else 0))
        if self._finalizer:
            self._finalizer.detach()

    def __repr__(self):
        return "<cuarena.Arena %r device %d>" % (self.name, self.device)


def free(ptr):
    """Free memory from Arena.alloc() (stream-ordered: see cua_free)."""
    _check(_lib.cua_free(_count(ptr, "ptr")))


def arena_of(ptr):
    """The name of the arena that holds the live block at address ptr (a
    tensor's data_ptr(), say); raises Error when cuarena did not hand it out."""
    a, name = _c(), ctypes.c_char_p()
    _check(_lib.cua_ptr_info(_count(ptr, "ptr"), ctypes.byref(a), None, None))
    _check(_lib.cua_arena_name(a, ctypes.byref(name)))
    return _text(name.value)


def janitor_start(period_ms=100):
    """Start the idle-trim thread: every period_ms it trims the arenas idle
    longer than their idle_ms (cua_janitor_start)."""
    _check(_lib.cua_janitor_start(_count(period_ms, "period_ms")))


def janitor_stop():
    _check(_lib.cua_janitor_stop())


class _Freer:
    """Owner of a CuPy allocation: frees it into its arena when CuPy drops it."""

    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr

    def __del__(self):
        try:
            _lib.cua_free(self.ptr)
        except Exception:  # interpreter shutdown
            pass


def cupy_allocator(arena_):
    """An allocator for cupy.cuda.set_allocator() (or cupy.cuda.using_allocator)
    that takes CuPy's device memory from `arena_` instead of CuPy's own pool:
    a library beside torch whose memory then leaves with the arena."""
    import cupy

    def alloc(size):
        ptr = arena_.alloc(max(int(size), 1))
        mem = cupy.cuda.UnownedMemory(ptr, size, _Freer(ptr), arena_.device)
        return cupy.cuda.MemoryPointer(mem, 0)

    return alloc


def arena(name, device=0, **options):
    """The arena of that name on that device if there is one, else a new one;
    use it in a ``with`` block."""
    for a in arenas(device):
        if a.name == name:
            return a
    return Arena(name, device, **options)


def arenas(device=0):
    """Every live arena of the device, in creation order (all of them: the
    list is sized by the library's count)."""
    n = ctypes.c_size_t(0)
    _check(_lib.cua_arena_list(device, None, 0, ctypes.byref(n)))
    while True:
        cap = n.value + 16  # (more may come meanwhile: then again)
        out = (_c * cap)()
        _check(_lib.cua_arena_list(device, out, cap, ctypes.byref(n)))
        if n.value <= cap:
            break
    result = []
    for i in range(n.value):
        name = ctypes.c_char_p()
        if _lib.cua_arena_name(out[i], ctypes.byref(name)) == 0:
            result.append(Arena._wrap(_c(out[i]), _text(name.value), device))
    return result


def headroom(device=0):
    """Bytes the device can still give: driver free + every arena's cache."""
    out = ctypes.c_size_t(0)
    _check(_lib.cua_headroom(device, ctypes.byref(out)))
    return out.value


def stream_retire(stream, device=-1):
    """Tell cuarena that `stream` (a cudaStream_t as an int, e.g. a CuPy
    stream's .ptr or torch's cuda_stream) is about to be destroyed: the arenas
    that know it wait for it now and never touch it again. Call it before
    destroying a stream you made and used with cuarena (cua_stream_retire)."""
    _check(_lib.cua_stream_retire(device, _count(stream, "stream")))


def device_report(device=0):
    """Where the device's memory went (cua_device_report_json) as a dict."""
    return _json_call(_lib.cua_device_report_json, device)


def prometheus(device=None):
    """The device report in Prometheus' text exposition format (a str, for a
    metrics endpoint to serve as it is): per arena (labels device, arena)
    mapped, live, cached, largest free block, fragmentation, peaks, OOM
    answers, trims; per device the sums, the driver's figures and the
    headroom. device None: every device that has an arena
    (cua_device_report_prometheus)."""
    n = ctypes.c_size_t(0)
    dev = -1 if device is None else int(device)
    _check(_lib.cua_device_report_prometheus(dev, None, 0, ctypes.byref(n)))
    while True:
        cap = n.value + 4096  # arenas made meanwhile
        buf = ctypes.create_string_buffer(cap)
        _check(_lib.cua_device_report_prometheus(dev, buf, cap, ctypes.byref(n)))
        if n.value < cap:
            return buf.value.decode()


# ---- publishing the report for `python -m cuarena top` ------------------------------------

def publish_dir():
    """Where processes publish their reports: $CUARENA_PUBLISH_DIR, else
    $XDG_RUNTIME_DIR/cuarena, else /dev/shm/cuarena-UID (memory, not disk),
    else the temporary directory's cuarena-UID."""
    env = os.environ.get("CUARENA_PUBLISH_DIR")
    if env:
        return env
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "cuarena")
    if os.path.isdir("/dev/shm"):
        return "/dev/shm/cuarena-%d" % os.getuid()
    import tempfile

    return os.path.join(tempfile.gettempdir(), "cuarena-%d" % os.getuid())


def publish_path(pid=None):
    """The file process `pid` (default this one) publishes its report into."""
    return os.path.join(publish_dir(), "%d.json" % (os.getpid() if pid is None else pid))


def _devices_with_arenas():
    devs = []
    n = ctypes.c_size_t(0)
    for d in range(64):  # CUA_MAX_DEVICES
        if _lib.cua_arena_list(d, None, 0, ctypes.byref(n)) == 0 and n.value:
            devs.append(d)
    return devs


def published_report():
    """What publish() writes: this process's pid, command line, time, library
    version and the device report of every device that has an arena."""
    import sys
    import time

    reports = {}
    for d in _devices_with_arenas():
        try:
            reports[str(d)] = device_report(d)
        except Error:
            pass  # an arena destroyed meanwhile, a driver query that failed: next time
    return {"pid": os.getpid(), "argv": list(sys.argv), "time": time.time(),
            "version": library_version, "interval": _publisher["interval"],
            "devices": reports}


_publisher = {"thread": None, "stop": None, "path": None, "interval": 1.0}
_publisher_lock = threading.Lock()


def _write_report(path):
    data = json.dumps(published_report())
    tmp = "%s.%d.tmp" % (path, threading.get_ident())
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)  # atomic: a reader sees the old report or the new one


def publish(interval=1.0, path=None):
    """Write this process's device report (cua_device_report_json of each
    device with an arena) into a small file every `interval` seconds, from a
    daemon thread, for ``python -m cuarena top`` to show: path defaults to
    publish_path() (a file named by the pid in publish_dir(), in memory where
    there is /dev/shm or $XDG_RUNTIME_DIR). Each write replaces the file
    atomically; it is removed at exit or by publish_stop(). Setting
    CUARENA_PUBLISH=1 in the environment starts it at import (a number other
    than 1 is the interval in seconds). Returns the path."""
    import atexit

    with _publisher_lock:
        if _publisher["thread"] is not None:
            return _publisher["path"]
        path = path or publish_path()
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        stop = threading.Event()
        _publisher.update(stop=stop, path=path, interval=float(interval))
        _write_report(path)

        def run():
            while not stop.wait(_publisher["interval"]):
                try:
                    _write_report(path)
                except Exception:  # a full disk, a removed directory: try again next time
                    pass

        t = threading.Thread(target=run, name="cuarena-publish", daemon=True)
        _publisher["thread"] = t
        t.start()
        if not _publisher.get("atexit"):
            atexit.register(publish_stop)
            _publisher["atexit"] = True
        return path


def publish_stop():
    """Stop publishing and remove the file."""
    with _publisher_lock:
        t, stop, path = _publisher["thread"], _publisher["stop"], _publisher["path"]
        if t is None:
            return
        stop.set()
        t.join()
        _publisher.update(thread=None, stop=None, path=None)
    try:
        os.remove(path)
    except OSError:
        pass


def trim_idle(device=0):
    """Trim the arenas idle longer than their idle_ms; returns bytes released."""
    out = ctypes.c_size_t(0)
    _check(_lib.cua_trim_idle(device, ctypes.byref(out)))
    return out.value


def reset_peak_stats(device=0):
    """Reset the peaks of every arena of the device and of the device."""
    for a in arenas(device):
        a.reset_peak_stats()
    _check(_lib.cua_device_reset_peak(device))


def memory_stats(device=0):
    """The device's figures under the key names torch.cuda.memory_stats() uses
    (allocated_bytes.all.current, reserved_bytes.all.peak, num_ooms, ...),
    plus cuarena's own per arena under "cuarena.<arena>.<figure>"."""
    rep = device_report(device)
    per = rep.get("arenas", [])
    live = sum(a["live_bytes"] for a in per)
    alloc = sum(a["allocated_bytes"] for a in per)
    mapped = sum(a["mapped_bytes"] for a in per)
    out = {
        "allocated_bytes.all.current": alloc,
        "allocated_bytes.all.peak": sum(a["peak_live_bytes"] for a in per),
        "requested_bytes.all.current": live,
        "reserved_bytes.all.current": mapped,
        "reserved_bytes.all.peak": rep.get("peak_mapped_bytes", 0),
        "active_bytes.all.current": alloc,
        "inactive_split_bytes.all.current": sum(a["free_bytes"] - a["cached_bytes"] for a in per),
        "allocation.all.current": sum(a["live_blocks"] for a in per),
        "num_alloc_retries": 0,
        "num_ooms": sum(a["oom_count"] for a in per),
        "num_device_alloc": sum(a["calls"].get("create", 0) + a["calls"].get("alloc", 0)
                                for a in per),
        "num_device_free": sum(a["calls"].get("release", 0) + a["calls"].get("free", 0)
                               for a in per),
        "cuarena.unaccounted_bytes": rep.get("unaccounted_bytes", 0),
        "cuarena.headroom_bytes": rep.get("headroom_bytes", 0),
    }
    for a in per:
        for key in ("live_bytes", "mapped_bytes", "cached_bytes", "largest_free_bytes",
                    "peak_mapped_bytes", "free_fragmentation", "trimmed_bytes"):
            out["cuarena.%s.%s" % (a["name"], key)] = a[key]
    return out


def memory_summary(device=0):
    """memory_stats as text: one line per arena."""
    rep = device_report(device)
    mib = 1 << 20
    lines = ["cuarena, device %d: driver used %.1f MiB, cuarena mapped %.1f MiB, unaccounted "
             "%.1f MiB, headroom %.1f MiB" % (device, rep.get("driver_used_bytes", 0) / mib,
                                              rep.get("mapped_bytes", 0) / mib,
                                              rep.get("unaccounted_bytes", 0) / mib,
                                              rep.get("headroom_bytes", 0) / mib)]
    for a in rep.get("arenas", []):
        lines.append("  %-20s live %10.1f MiB  mapped %10.1f MiB  cached %10.1f MiB  largest "
                     "free %10.1f MiB  peak mapped %10.1f MiB" % (
                         a["name"], a["live_bytes"] / mib, a["mapped_bytes"] / mib,
                         a["cached_bytes"] / mib, a["largest_free_bytes"] / mib,
                         a["peak_mapped_bytes"] / mib))
    return "\n".join(lines)


# ---- snapshots ---------------------------------------------------------------------------

class _Region(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("address", ctypes.c_size_t), ("size", ctypes.c_size_t),
                ("requested", ctypes.c_size_t), ("stream", ctypes.c_size_t)]


_RegionFn = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Region), _c)
_lib.cua_arena_walk.argtypes = [_c, _RegionFn, _c]
_STATES = {1: "active_allocated", 2: "inactive", 3: "active_pending_free"}


def _arena_segments(a, device):
    segments = []

    def on_region(rp, _user):
        r = rp.contents
        if r.kind == 0:
            segments.append({
                "device": device, "address": r.address, "total_size": r.size,
                "allocated_size": 0, "active_size": 0, "requested_size": 0, "stream": 0,
                "segment_type": "large" if r.size > (1 << 20) else "small",
                "segment_pool_id": (0, 0), "is_expandable": True, "frames": [],
                "arena": a.name, "blocks": []})
            return
        seg = segments[-1]
        state = _STATES.get(r.kind, "inactive")
        seg["blocks"].append({"address": r.address, "size": r.size,
                              "requested_size": r.requested if r.kind == 1 else 0,
                              "state": state, "frames": []})
        if r.kind in (1, 3):
            seg["active_size"] += r.size
        if r.kind == 1:
            seg["allocated_size"] += r.size
            seg["requested_size"] += r.requested
            seg["stream"] = seg["stream"] or r.stream

    _check(_lib.cua_arena_walk(a._h, _RegionFn(on_region), None))
    return segments


class _HistoryEntry(ctypes.Structure):
    _fields_ = [("action", ctypes.c_int), ("address", ctypes.c_size_t), ("size", ctypes.c_uint64),
                ("stream", ctypes.c_size_t), ("time_ns", ctypes.c_uint64),
                ("arena", ctypes.c_char * 32)]


_lib.cua_history_enable.argtypes = [ctypes.c_int, ctypes.c_size_t]
_lib.cua_history_read_sized.argtypes = [ctypes.c_int, ctypes.POINTER(_HistoryEntry),
                                        ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
                                        ctypes.c_size_t]
# cua_history_action -> the actions of torch's device_traces
_HISTORY_ACTIONS = {0: ["alloc"], 1: ["free_requested", "free_completed"], 2: ["segment_map"],
                    3: ["segment_unmap"], 4: ["oom"]}


def record_memory_history(enabled=True, max_entries=100000, device=0):
    """Record the device's allocation history (cua_history_enable): the last
    max_entries allocations, frees, mappings, unmappings and out-of-memory
    answers, which snapshot() and dump_snapshot() then carry in device_traces
    (torch.cuda.memory._record_memory_history does the same with cuarena
    installed). enabled=False stops recording and keeps what was recorded."""
    _check(_lib.cua_history_enable(device, int(max_entries) if enabled else 0))


def memory_history(device=0):
    """The recorded history of the device, oldest first, as the entries of
    torch's device_traces: action (alloc, free_requested, free_completed,
    segment_map, segment_unmap, oom), addr, size, stream, time_us, frames
    (empty: no Python stacks), and arena (cuarena's)."""
    n = ctypes.c_size_t(0)
    size = ctypes.sizeof(_HistoryEntry)
    _check(_lib.cua_history_read_sized(device, None, 0, ctypes.byref(n), size))
    buf = (_HistoryEntry * max(n.value, 1))()
    _check(_lib.cua_history_read_sized(device, buf, n.value, ctypes.byref(n), size))
    out = []
    for e in buf[:n.value]:
        for action in _HISTORY_ACTIONS.get(e.action, ["unknown"]):
            out.append({"action": action, "addr": e.address, "size": e.size, "stream": e.stream,
                        "time_us": e.time_ns // 1000, "frames": [],
                        "arena": e.arena.decode(errors="replace")})
    return out


def snapshot(device=0):
    """Every arena's mapped memory of the device in the format of
    torch.cuda.memory._snapshot(): segments (one per physical handle, with the
    arena's name) and the blocks in them, and in device_traces[device] the
    allocation history when it is recorded (record_memory_history)."""
    segments = []
    for a in arenas(device):
        try:
            segments += _arena_segments(a, device)
        except Error as e:
            if e.status != "CUA_ERR_DESTROYED":
                raise
    traces = [[] for _ in range(device + 1)]
    traces[device] = memory_history(device)
    return {"segments": segments, "device_traces": traces}


def dump_snapshot(path, device=0):
    """snapshot() pickled to `path`: the file opens in PyTorch's memory_viz page."""
    import pickle

    with open(path, "wb") as f:
        pickle.dump(snapshot(device), f)


# ---- events ------------------------------------------------------------------------------

class _Event(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("arena", _c), ("name", ctypes.c_char_p),
                ("device", ctypes.c_int), ("bytes", ctypes.c_uint64),
                ("reason", ctypes.c_char_p), ("mapped_bytes", ctypes.c_uint64),
                ("live_bytes", ctypes.c_uint64)]


_EventFn = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Event), _c)
_lib.cua_set_event_callback.argtypes = [_EventFn, _c]
_callbacks = []
_callbacks_lock = threading.Lock()


@_EventFn
def _deliver(ev, _user):
    e = ev.contents
    event = {
        "kind": _EVENT_KINDS[e.kind] if 0 <= e.kind < len(_EVENT_KINDS) else str(e.kind),
        "arena": _text(e.name), "device": e.device, "bytes": e.bytes,
        "reason": _text(e.reason), "mapped_bytes": e.mapped_bytes,
        "live_bytes": e.live_bytes,
    }
    with _callbacks_lock:
        fns = list(_callbacks)
    for fn in fns:
        try:
            fn(event)
        except Exception:  # a logging callback must not take the allocator down
            pass


def on_event(callback):
    """Call callback(event_dict) on every arena event (created, destroyed,
    trimmed, out_of_memory, offloaded, restored) with its bytes and reason.
    Returns a function that removes the callback."""
    with _callbacks_lock:
        first = not _callbacks
        _callbacks.append(callback)
    if first:
        _check(_lib.cua_set_event_callback(_deliver, None))

    def remove():
        with _callbacks_lock:
            if callback in _callbacks:
                _callbacks.remove(callback)

    return remove


_publish_env = os.environ.get("CUARENA_PUBLISH", "")
if _publish_env not in ("", "0"):
    try:
        publish(1.0 if _publish_env == "1" else float(_publish_env))
    except (ValueError, OSError) as _e:
        import warnings

        warnings.warn("cuarena: CUARENA_PUBLISH=%s: not publishing (%s)" % (_publish_env, _e))
