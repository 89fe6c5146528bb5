"""Record a PyTorch workload's allocations as a catrace file.

    python3 -m cuarena.record OUT.catrace.gz SCRIPT.py [ARGS...]

runs SCRIPT.py with cuarena installed as torch's allocator (the full
allocator object) and writes every allocation and free it made, in the
catrace v1 format of bench/traces (FORMAT.md): `a <id> <bytes> <stream>
<arena>` with the arena's name in the fifth field, `f <id>`, and `m <name>`
for the markers the script set with cuarena.record.marker(name). From a
program of your own: start(), marker(name), save(path).
"""

import gzip
import os
import runpy
import sys

def _shim():
    """The full allocator's module, kept by cuarena.torch (this file may run
    twice, as __main__ and as cuarena.record: the state lives there)."""
    import cuarena.torch as ct

    return ct._installed if ct.mode == "full" else None


def start():
    """Install cuarena (if it is not yet) and start recording."""
    import cuarena.torch as ct

    ct.install()
    if _shim() is None:
        raise RuntimeError("cuarena.record needs the full allocator object (a C++ compiler)")
    _shim().trace_start()


def marker(name):
    """A phase marker (a model loaded, a request done, a teardown)."""
    shim = _shim()
    if shim is not None:
        shim.trace_marker(str(name).replace(" ", "_"))


def catrace_lines(events, source):
    """The catrace v1 text of recorded events (op, ptr, size, stream, name):
    ids in the order of allocation, streams numbered in the order they first
    appear (the default stream, 0, stays 0), frees of unknown pointers dropped."""
    yield "# catrace v1"
    yield "# source: " + source
    live, streams = {}, {0: 0}
    next_id = 0
    for op, ptr, size, stream, name in events:
        if op == "a":
            sid = streams.setdefault(stream, len(streams))
            live[ptr] = next_id
            yield "a %d %d %d%s" % (next_id, size, sid, " " + name if name else "")
            next_id += 1
        elif op == "f":
            if ptr in live:
                yield "f %d" % live.pop(ptr)
        elif op == "m":
            yield "m " + name


def save(path, source=None):
    """Stop recording and write the file (gzip when the name ends in .gz);
    returns the number of events written."""
    shim = _shim()
    events = shim.trace_stop() if shim is not None else []
    opener = gzip.open if path.endswith(".gz") else open
    n = 0
    with opener(path, "wt") as f:
        for line in catrace_lines(events, source or "cuarena.record"):
            f.write(line + "\n")
            n += not line.startswith("#")
    return n


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out, script = argv[0], argv[1]
    start()
    sys.argv = [script] + argv[2:]
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        import torch

        torch.cuda.synchronize()
        n = save(out, "cuarena.record of %s" % " ".join([os.path.basename(script)] + argv[2:]))
        print("cuarena.record: %d events to %s" % (n, out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
