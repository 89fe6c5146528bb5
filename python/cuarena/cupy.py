"""cuarena as CuPy's allocator.

    import cuarena, cuarena.cupy
    kv = cuarena.Arena("kv_cache", limit="20G")
    cuarena.cupy.install(kv)              # every CuPy allocation: that arena
    ...
    cuarena.cupy.uninstall()              # CuPy's own pool again

install() hands CuPy libcuarena.so's cua_cupy_malloc / cua_cupy_free through
cupy.cuda.memory.CFunctionAllocator (C function pointers, no ctypes call per
allocation; a small Python check turns a failed one into CuPy's
OutOfMemoryError, as CuPy itself does not look at a NULL from a C allocator)
and cupy.cuda.set_allocator(). CuPy's memory pool is then out of
the way: arrays take their memory from the arena, and give it back to it when
they are dropped, so the arena's statistics, limit, trim, offload and destroy
cover CuPy's memory like PyTorch's.

Which arena: ``arena`` an Arena, or a name (the arena of that name on
``device``, made if there is none), or None: at each allocation the calling
thread's current arena (a ``with arena:`` block) when it is on the device
CuPy allocates for, else that device's default arena, as cuarena.torch does.

Streams: CuPy's C hook passes no stream, so the blocks are allocated and freed
on stream 0, the legacy default stream, and a freed block is handed out again
at once. That is safe for CuPy work on one stream, or on the default stream
and one blocking stream; arrays shared by two other streams (two
cupy.cuda.Stream(non_blocking=True), say) must be synchronised before they
are dropped. install(stream_aware=True) instead allocates on CuPy's current
stream (cupy.cuda.get_current_stream()), so cuarena orders reuse by streams
as it does for PyTorch, at the cost of a ctypes call per allocation.
"""

import ctypes

import cuarena

__all__ = ["install", "uninstall", "installed", "allocator", "using"]

_lib = cuarena.library
_lib.cua_cupy_malloc.restype = ctypes.c_void_p
_lib.cua_cupy_malloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_lib.cua_cupy_free.restype = None
_lib.cua_cupy_free.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
_lib.cua_torch_alloc.restype = ctypes.c_void_p
_lib.cua_torch_alloc.argtypes = [ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]

_MALLOC = ctypes.cast(_lib.cua_cupy_malloc, ctypes.c_void_p).value
_FREE = ctypes.cast(_lib.cua_cupy_free, ctypes.c_void_p).value

_installed = None  # (the allocator installed, the one it replaced)


def _arena(arena, device):
    """None, or the Arena that ``arena`` names (an Arena is taken as it is:
    its own device counts, and cua_cupy_malloc refuses another)."""
    if arena is None or isinstance(arena, cuarena.Arena):
        return arena
    if isinstance(arena, str):
        return cuarena.arena(arena, device)
    raise TypeError("arena must be a cuarena.Arena, a name or None, not %r" % (arena,))


class _Owner:
    """Keeps the arena's Python object alive as long as CuPy keeps the allocator."""

    __slots__ = ("arena",)

    def __init__(self, arena):
        self.arena = arena


def allocator(arena=None, device=0, stream_aware=False):
    """The function cupy.cuda.set_allocator() / cupy.cuda.using_allocator()
    take (size -> MemoryPointer), over cuarena. See the module's comment for
    ``arena`` and ``stream_aware``."""
    import cupy

    a = _arena(arena, device)
    if not stream_aware:
        cfa = getattr(cupy.cuda.memory, "CFunctionAllocator", None) or cupy.cuda.CFunctionAllocator
        cmalloc = cfa(a.handle if a is not None else 0, _MALLOC, _FREE, _Owner(a)).malloc

        def malloc_checked(size):
            # CuPy's CFunctionAllocatorMemory takes a NULL from malloc as a
            # pointer (its kernels would then fault at address 0): a failed
            # allocation is turned into CuPy's out-of-memory error here.
            mp = cmalloc(size)
            if size and not mp.ptr:
                raise cupy.cuda.memory.OutOfMemoryError(size, 0, 0) from MemoryError(
                    "cuarena: " + (_lib.cua_last_error() or b"").decode())
            return mp

        return malloc_checked

    def malloc(size):
        dev = cupy.cuda.Device().id
        stream = cupy.cuda.get_current_stream().ptr
        n = max(int(size), 1)
        if a is not None and a.device != dev:
            raise ValueError("arena %r is on device %d, CuPy allocates on device %d"
                             % (a.name, a.device, dev))
        if a is not None:
            out = ctypes.c_void_p()
            st = _lib.cua_arena_alloc(a._h, n, stream, ctypes.byref(out))
            ptr = out.value if st == 0 else None
        else:
            ptr = _lib.cua_torch_alloc(n, dev, stream)  # the current arena, else the default
        if not ptr:  # CuPy's own error, so that code that catches it (and retries) works
            raise cupy.cuda.memory.OutOfMemoryError(n, 0, 0) from MemoryError(
                "cuarena: " + (_lib.cua_last_error() or b"").decode())
        mem = cupy.cuda.UnownedMemory(ptr, n, cuarena._Freer(ptr), dev)
        return cupy.cuda.MemoryPointer(mem, 0)

    return malloc


def install(arena=None, device=0, stream_aware=False):
    """Make cuarena CuPy's allocator for every thread (cupy.cuda.set_allocator).
    Arrays made before keep their memory from CuPy's pool; call
    cupy.get_default_memory_pool().free_all_blocks() once they are gone to
    give that back. Returns the allocator function."""
    global _installed
    import cupy

    get = getattr(cupy.cuda, "get_allocator", None)
    previous = _installed[1] if _installed else (get() if get else None)
    fn = allocator(arena, device, stream_aware)
    cupy.cuda.set_allocator(fn)
    _installed = (fn, previous)
    return fn


def uninstall():
    """Give CuPy back the allocator install() replaced (CuPy's default memory
    pool when it cannot tell). Arrays still alive keep their cuarena memory
    and free it into their arena when dropped."""
    global _installed
    import cupy

    if _installed is None:
        return
    previous = _installed[1]
    if previous is None:
        previous = cupy.get_default_memory_pool().malloc
    cupy.cuda.set_allocator(previous)
    _installed = None


def installed():
    """Whether install() is in effect."""
    return _installed is not None


def using(arena=None, device=0, stream_aware=False):
    """A ``with`` block in which this thread's CuPy allocations go to cuarena
    (cupy.cuda.using_allocator): ``with cuarena.cupy.using(enc): ...``."""
    import cupy

    return cupy.cuda.using_allocator(allocator(arena, device, stream_aware))
