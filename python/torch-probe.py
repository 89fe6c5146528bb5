"""torch-probe.py - what python/meson.build needs to compile the PyTorch shim
(cuarena/_torch_shim.cpp) into the package, asked of the torch this Python
imports: one KEY=VALUE per line, the key padded to 8 characters (meson
reads the value from the tenth character on), lists joined by ';'.

    version=2.11.0+cu130     torch.__version__ ("" and why=... when no torch)
    cuda=13.0                torch.version.cuda ("" for a CPU-only torch)
    include=DIR;DIR          torch.utils.cpp_extension's include paths (CUDA's too)
    libdirs=DIR;DIR          its library paths
    libs=c10;torch;...       the libraries an extension links (cudart too)
    defines=NAME=VALUE;...   what cpp_extension defines for an extension (the C++
                             ABI and pybind11's ABI tags, so that the shim's
                             pybind11 types are torch's)

Always exits 0: meson decides what a missing torch means.
"""
import sys


def put(key, value):
    print("%-8s=%s" % (key, value))


def main():
    try:
        import torch
        import torch.utils.cpp_extension as ext
    except Exception as e:  # ImportError, or a torch that fails to import
        put("version", "")
        put("why", "torch cannot be imported by %s (%s)" % (
            sys.executable, str(e).splitlines()[0] if str(e) else type(e).__name__))
        return 0
    cuda = torch.version.cuda or ""

    def ask(fn):
        try:
            return fn(device_type="cuda")  # torch >= 2.6
        except TypeError:
            return fn(cuda=True)

    try:
        include = ask(ext.include_paths)
        libdirs = ask(ext.library_paths)
    except Exception as e:
        put("version", "")
        put("why", "torch %s: its extension paths are unknown (%s)" % (torch.__version__, e))
        return 0
    defines = ["_GLIBCXX_USE_CXX11_ABI=%d" % int(torch._C._GLIBCXX_USE_CXX11_ABI),
               "TORCH_API_INCLUDE_EXTENSION_H", "TORCH_EXTENSION_NAME=_torch_shim"]
    for name in ("COMPILER_TYPE", "STDLIB", "BUILD_ABI"):
        value = getattr(torch._C, "_PYBIND11_" + name, None)
        if value is not None:
            defines.append('PYBIND11_%s="%s"' % (name, value))
    put("version", torch.__version__)
    put("cuda", cuda)
    put("include", ";".join(include))
    put("libdirs", ";".join(libdirs))
    put("libs", ";".join(["c10", "torch", "torch_cpu", "torch_python"] +
                         (["c10_cuda", "torch_cuda", "cudart"] if cuda else [])))
    put("defines", ";".join(defines))
    if not cuda:
        put("why", "torch %s has no CUDA" % torch.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
