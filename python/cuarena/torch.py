"""cuarena as PyTorch's CUDA allocator.

    import cuarena, cuarena.torch
    cuarena.torch.install()                       # before the first CUDA tensor
    with cuarena.arena("text_encoder", limit="6G"):
        encoder = build_encoder().cuda()          # its memory: that arena

install() registers libcuarena.so's cua_torch_alloc / cua_torch_free as
torch's allocator, inside an allocator object built from _torch_shim.cpp that
also answers torch's statistics, snapshot and cache calls from cuarena's
figures (or, with full=False or without a compiler, through the plain
torch.cuda.memory.CUDAPluggableAllocator). Allocations go to the calling
thread's current arena (a ``with`` block) when it is on the tensor's device,
else to the device's default arena. Autograd's backward runs on threads of
its own: what it allocates goes to the default arena.

What the plain pluggable hook does not carry (torch 2.11 raises "does not yet
support" for them): torch.cuda.memory_stats(), max_memory_allocated(),
memory_snapshot(), and empty_cache() does nothing. The full install answers
them; this module's memory_stats(), max_memory_allocated(),
reset_peak_memory_stats() and empty_cache() work either way.
"""

import os

import cuarena

_installed = None


def _build_shim():
    """Compile _torch_shim.cpp against the installed torch (cached by torch
    under ~/.cache/torch_extensions) and return the module."""
    from torch.utils.cpp_extension import load

    here = os.path.dirname(os.path.abspath(__file__))
    include = os.environ.get("CUARENA_INCLUDE") or os.path.join(here, "..", "..", "include")
    libdir = os.path.dirname(os.path.realpath(cuarena.library_path))
    return load(name="cuarena_torch_shim", sources=[os.path.join(here, "_torch_shim.cpp")],
                extra_include_paths=[os.path.abspath(include)],
                extra_ldflags=["-L" + libdir, "-lcuarena", "-Wl,-rpath," + libdir],
                with_cuda=True, verbose=bool(os.environ.get("CUARENA_SHIM_VERBOSE")))


mode = None  # "full" (the shim) or "pluggable" (allocation and free only)


def install(conf=None, full=True):
    """Make cuarena torch's CUDA allocator. conf: CUARENA_CONF-style options
    for the default arenas (e.g. "release_threshold:512M"). full: install the
    allocator object of _torch_shim.cpp (needs a C++ compiler once), so that
    torch.cuda.memory_stats(), max_memory_allocated(), reset_peak_memory_stats(),
    memory_snapshot(), empty_cache(), set_per_process_memory_fraction(),
    record_stream() and cudnn's benchmark mode report and use cuarena; without
    it (or when it cannot be built: a warning says why) only allocation and
    free go through cuarena. Must run before torch allocates any CUDA memory;
    raises RuntimeError otherwise."""
    global _installed, mode
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
    if full:
        try:
            shim = _build_shim()
        except Exception as e:  # no compiler, no headers: the plain hook still works
            import warnings

            warnings.warn("cuarena.torch: the full allocator could not be built (%s); torch's "
                          "statistics calls will not see cuarena" % str(e).splitlines()[0])
        else:
            shim.install()
            _installed, mode = shim, "full"
            return shim
    alloc = torch.cuda.memory.CUDAPluggableAllocator(cuarena.library_path, "cua_torch_alloc",
                                                     "cua_torch_free")
    try:
        torch.cuda.memory.change_current_allocator(alloc)
    except RuntimeError as e:
        raise RuntimeError("cuarena.torch.install() must run before the first CUDA "
                           "allocation: %s" % e) from None
    _installed, mode = alloc, "pluggable"
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
