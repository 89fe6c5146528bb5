"""cuarena as PyTorch's CUDA allocator.

    import cuarena, cuarena.torch
    cuarena.torch.install()                       # before the first CUDA tensor
    with cuarena.arena("text_encoder", limit="6G"):
        encoder = build_encoder().cuda()          # its memory: that arena

install() registers libcuarena.so's cua_torch_alloc / cua_torch_free as
torch's allocator, inside an allocator object built from _torch_shim.cpp that
also answers torch's statistics, snapshot and cache calls from cuarena's
figures. That object comes, in this order, from:
  1. the shim compiled when the package was built (pip install / a wheel),
     when the torch found then is the torch imported now (same version);
  2. compiling _torch_shim.cpp now against the torch imported now
     (torch.utils.cpp_extension: needs a C++ compiler, torch's headers and a
     CUDA toolkit; cached under ~/.cache/torch_extensions);
  3. neither: the plain torch.cuda.memory.CUDAPluggableAllocator, with a
     warning that names what will not see cuarena.
`mode` says which allocator is installed ("full" or "pluggable"), `source`
where the full one came from ("prebuilt" or "built"), `how` the whole story
in words. Allocations go to the calling thread's current arena (a ``with``
block) when it is on the tensor's device, else to the device's default
arena. Autograd's backward runs on threads of its own: what it allocates goes
to the default arena.

What the plain pluggable hook does not carry (torch 2.11 raises "does not yet
support" for them): torch.cuda.memory_stats(), max_memory_allocated(),
memory_snapshot(), and empty_cache() does nothing. The full install answers
them; this module's memory_stats(), max_memory_allocated(),
reset_peak_memory_stats() and empty_cache() work either way.

With nothing installed but libcuarena.so, the plain route is two lines:

    alloc = torch.cuda.memory.CUDAPluggableAllocator(
        "/path/to/libcuarena.so", "cua_torch_alloc", "cua_torch_free")
    torch.cuda.memory.change_current_allocator(alloc)
"""

import os
import warnings

import cuarena

_installed = None

# What the plain pluggable allocator leaves out: torch's calls that will not
# see cuarena (the warning of a fallback names them).
PLAIN_MODE_MISSES = ("torch.cuda.memory_stats(), memory_allocated(), max_memory_allocated(), "
                     "memory_reserved(), reset_peak_memory_stats(), memory_snapshot() and "
                     "empty_cache(), set_per_process_memory_fraction(), Tensor.record_stream(), "
                     "cudnn's benchmark mode, CUDA graph and MemPool arenas (pool_arena)")


class FallbackWarning(UserWarning):
    """cuarena.torch installed less than asked for: the plain allocator
    instead of the full one, or a shim compiled now instead of the prebuilt."""


def _include_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    for d in (os.environ.get("CUARENA_INCLUDE"), os.path.join(here, "include"),
              os.path.join(here, "..", "..", "include")):
        if d and os.path.exists(os.path.join(d, "cuarena.h")):
            return os.path.abspath(d)
    raise RuntimeError("cuarena.h not found (set CUARENA_INCLUDE to its directory)")


def _build_shim():
    """Compile _torch_shim.cpp (and _torch_history.cpp, its history of
    allocations) against the installed torch (cached by torch under
    ~/.cache/torch_extensions) and return the module."""
    from torch.utils.cpp_extension import load

    here = os.path.dirname(os.path.abspath(__file__))
    libdir = os.path.dirname(os.path.realpath(cuarena.library_path))
    sources = [os.path.join(here, f) for f in ("_torch_shim.cpp", "_torch_history.cpp")]
    return load(name="cuarena_torch_shim", sources=sources,
                extra_include_paths=[_include_dir()],
                extra_ldflags=["-L" + libdir, "-lcuarena", "-Wl,-rpath," + libdir],
                with_cuda=True, verbose=bool(os.environ.get("CUARENA_SHIM_VERBOSE")))


def _prebuilt_shim(torch):
    """(the shim compiled with the package, None) when it matches this torch,
    else (None, why not)."""
    try:
        from cuarena import _build_info
    except ImportError:
        return None, "this copy of cuarena was not installed by its build (no prebuilt shim)"
    built_for = getattr(_build_info, "torch_version", None)
    if not built_for:
        return None, "the package was built without torch (%s)" % getattr(
            _build_info, "torch_shim_note", "no torch then")
    if built_for != torch.__version__:
        return None, "the prebuilt shim is for torch %s, this is torch %s" % (
            built_for, torch.__version__)
    try:
        from cuarena import _torch_shim
    except ImportError as e:
        return None, "the prebuilt shim for torch %s does not load (%s)" % (built_for, e)
    return _torch_shim, None


mode = None    # "full" (the shim) or "pluggable" (allocation and free only)
source = None  # the full allocator's shim: "prebuilt" (with the package) or "built" (now)
how = None     # the above in words, with the reasons


def install(conf=None, full=True):
    """Make cuarena torch's CUDA allocator. conf: CUARENA_CONF-style options
    for the default arenas (e.g. "release_threshold:512M"). full: install the
    allocator object of _torch_shim.cpp - the one built with the package when
    it matches this torch, else compiled now (a FallbackWarning says so) -
    so that torch.cuda.memory_stats(), max_memory_allocated(),
    reset_peak_memory_stats(), memory_snapshot(), empty_cache(),
    set_per_process_memory_fraction(), record_stream() and cudnn's benchmark
    mode report and use cuarena. Without it (full=False, or when there is
    neither: a FallbackWarning says why and names what torch will not see)
    only allocation and free go through cuarena. Sets `mode`, `source` and
    `how`. Must run before torch allocates any CUDA memory; raises
    RuntimeError otherwise."""
    global _installed, mode, source, how
    import torch

    if _installed is not None:
        return _installed
    if torch.cuda.is_initialized() and torch.cuda.memory.memory_reserved() > 0:
        raise RuntimeError("cuarena.torch.install() must run before the first CUDA allocation: "
                           "torch's own allocator already holds %d bytes"
                           % torch.cuda.memory.memory_reserved())
    if conf:
        merged = os.environ.get("CUARENA_CONF", "")
        os.environ["CUARENA_CONF"] = merged + ("," if merged else "") + conf
    why_plain = "asked for (full=False)"
    if full:
        shim, why_not_prebuilt = _prebuilt_shim(torch)
        if shim is not None:
            shim.install()
            _installed, mode, source = shim, "full", "prebuilt"
            how = "full allocator, shim prebuilt with the package for torch %s" % torch.__version__
            return shim
        try:
            shim = _build_shim()
        except Exception as e:  # no compiler, no headers: the plain hook still works
            lines = str(e).strip().splitlines() or [type(e).__name__]
            why_plain = "no prebuilt shim (%s) and none could be compiled (%s)" % (
                why_not_prebuilt, lines[0])
        else:
            shim.install()
            _installed, mode, source = shim, "full", "built"
            how = ("full allocator, shim compiled now against torch %s: %s"
                   % (torch.__version__, why_not_prebuilt))
            warnings.warn("cuarena.torch: " + how, FallbackWarning, stacklevel=2)
            return shim
    alloc = torch.cuda.memory.CUDAPluggableAllocator(cuarena.library_path, "cua_torch_alloc",
                                                     "cua_torch_free")
    try:
        torch.cuda.memory.change_current_allocator(alloc)
    except RuntimeError as e:
        raise RuntimeError("cuarena.torch.install() must run before the first CUDA "
                           "allocation: %s" % e) from None
    _installed, mode, source = alloc, "pluggable", None
    how = ("plain pluggable allocator (allocation and free only), %s; %s will not see cuarena "
           "(cuarena.torch.memory_stats() and friends do)" % (why_plain, PLAIN_MODE_MISSES))
    if full:
        warnings.warn("cuarena.torch: " + how, FallbackWarning, stacklevel=2)
    return alloc


def pool_arena(pool):
    """The arena that holds a private memory pool's memory (full install):
    pool is a torch.cuda.CUDAGraph (its pool()), a torch.cuda.MemPool or a
    pool id tuple. Offload or discard it and restore it like any arena; a
    captured graph replays at the same addresses afterwards, a MemPool's
    tensors keep their data pointers."""
    import torch

    if isinstance(pool, torch.cuda.CUDAGraph):
        pool = pool.pool()
    elif hasattr(pool, "id"):
        pool = pool.id
    name = "torch_pool_%d_%d" % tuple(pool)
    for dev in range(torch.cuda.device_count()):
        for a in cuarena.arenas(dev):
            if a.name == name:
                return a
    raise KeyError("no cuarena arena for memory pool %r (is the full allocator installed?)"
                   % (tuple(pool),))


def installed():
    return _installed is not None


def _device(device):
    import torch

    if device is None:
        return torch.cuda.current_device()
    return torch.device(device).index if not isinstance(device, int) else device


def memory_stats(device=None):
    """torch.cuda.memory_stats()'s keys with cuarena's figures (see cuarena.memory_stats)."""
    return cuarena.memory_stats(_device(device))


def memory_allocated(device=None):
    return memory_stats(device)["allocated_bytes.all.current"]


def max_memory_allocated(device=None):
    return memory_stats(device)["allocated_bytes.all.peak"]


def memory_reserved(device=None):
    return memory_stats(device)["reserved_bytes.all.current"]


def max_memory_reserved(device=None):
    return memory_stats(device)["reserved_bytes.all.peak"]


def reset_peak_memory_stats(device=None):
    cuarena.reset_peak_stats(_device(device))


def empty_cache(device=None):
    """Give every arena's cached pages on the device back to the driver (what
    torch.cuda.empty_cache() does for torch's own allocator); waits for the
    device first, as torch does. Returns the bytes released."""
    import torch

    dev = _device(device)
    torch.cuda.synchronize(dev)
    return sum(a.trim(0) for a in cuarena.arenas(dev))
