"""python -m cuarena COMMAND

    top [PID] [--once]   a live view of a running process's arenas (cuarena/top.py)
    info                 the version, the library loaded and where it was found,
                         and the PyTorch shim this package was built with
"""

import sys


def info():
    import cuarena

    print("cuarena %s" % cuarena.__version__)
    print("library: %s (%s), version %s" % (cuarena.library_path, cuarena.library_found_in,
                                            cuarena.library_version))
    try:
        from cuarena import _build_info
    except ImportError:
        print("PyTorch shim: none prebuilt (not installed by meson)")
        return 0
    if _build_info.torch_version:
        print("PyTorch shim: prebuilt against torch %s (CUDA %s)" % (
            _build_info.torch_version, _build_info.torch_cuda or "?"))
    else:
        print("PyTorch shim: none prebuilt (%s)" % _build_info.torch_shim_note)
    return 0


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "top":
        from cuarena import top

        return top.main(rest)
    if cmd == "info":
        return info()
    print("python -m cuarena: unknown command %r\n\n%s" % (cmd, __doc__.strip()), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
