"""cuarena as PyTorch's CUDA allocator.

    import cuarena, cuarena.torch
    cuarena.torch.install()                       # before the first CUDA tensor
    with cuarena.arena("text_encoder", limit="6G"):
        encoder = build_encoder().cuda()          # its memory: that arena

install() registers libcuarena.so's cua_torch_alloc / cua_torch_free through
torch.cuda.memory.CUDAPluggableAllocator. Allocations go to the calling
thread's current arena (a ``with`` block) when it is on the tensor's device,
else to the device's default arena. Autograd's backward runs on threads of
its own: what it allocates goes to the default arena.

What the plain pluggable hook does not carry (torch 2.11 raises "does not yet
support" for them): torch.cuda.memory_stats(), max_memory_allocated(),
memory_snapshot(), and empty_cache() does nothing. Use this module's
memory_stats(), max_memory_allocated(), reset_peak_memory_stats() and
empty_cache() instead; they report cuarena's figures under torch's key names.
"""

import os

import cuarena

_installed = None


def install(conf=None):
    """Make cuarena torch's CUDA allocator. conf: CUARENA_CONF-style options
    for the default arenas (e.g. "release_threshold:512M"). Must run before
    torch allocates any CUDA memory; raises RuntimeError otherwise."""
    global _installed
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
    alloc = torch.cuda.memory.CUDAPluggableAllocator(cuarena.library_path, "cua_torch_alloc",
                                                     "cua_torch_free")
    try:
        torch.cuda.memory.change_current_allocator(alloc)
    except RuntimeError as e:
        raise RuntimeError("cuarena.torch.install() must run before the first CUDA "
                           "allocation: %s" % e) from None
    _installed = alloc
    return alloc


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
