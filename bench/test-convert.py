"""test-convert.py - catrace-convert on a PyTorch memory snapshot and an RMM
log made here (the same structure as the real ones): the allocations and
frees come out in order with dense ids, frees of earlier memory are dropped,
streams are renumbered, the result replays through cuarena-replay, and bad
input (a pickle with a class in it, a CSV without RMM's columns) is refused
with a message. Prints "N passed, N failed".

    python3 bench/test-convert.py CATRACE-CONVERT CUARENA-REPLAY
"""

import collections
import os
import pickle
import subprocess
import sys
import tempfile


def convert(tool, *args):
    return subprocess.run([sys.executable, tool] + list(args), capture_output=True, text=True,
                          timeout=120)


def snapshot_case(tool, replay, tmp):
    ev = [
        {"action": "free_requested", "addr": 0x900, "size": 512, "stream": 0},  # before the log
        {"action": "segment_alloc", "addr": 0x7000, "size": 2 << 20, "stream": 0},
        {"action": "alloc", "addr": 0x7000, "size": 1024, "stream": 0, "frames": []},
        {"action": "alloc", "addr": 0x8000, "size": 4096, "stream": 139901, "frames": []},
        {"action": "free_requested", "addr": 0x7000, "size": 1024, "stream": 0},
        {"action": "free_completed", "addr": 0x7000, "size": 1024, "stream": 0},
        {"action": "alloc", "addr": 0x7000, "size": 2048, "stream": 0, "frames": []},
    ]
    snap = {"segments": [], "device_traces": [ev]}
    path = os.path.join(tmp, "snap.pickle")
    with open(path, "wb") as f:
        pickle.dump(snap, f)
    out = os.path.join(tmp, "snap.catrace")
    p = convert(tool, "torch-snapshot", path, "-o", out)
    assert p.returncode == 0, p.stderr
    lines = open(out).read().splitlines()
    assert lines[0] == "# catrace v1"
    assert lines[2:] == ["a 0 1024 0", "a 1 4096 1", "f 0", "a 2 2048 0"], lines
    assert "1 frees of earlier memory dropped" in p.stderr, p.stderr
    r = subprocess.run([replay, "--backend", "host", "--repeat", "1", "--check", out],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # A pickle that names a class is not read (it could run code).
    bad = os.path.join(tmp, "bad.pickle")
    with open(bad, "wb") as f:
        pickle.dump(collections.OrderedDict(device_traces=[ev]), f)
    p = convert(tool, "torch-snapshot", bad)
    assert p.returncode == 1 and "only plain data" in p.stderr, p.stderr
    p = convert(tool, "torch-snapshot", path, "--device", "3")
    assert p.returncode == 1 and "device 3" in p.stderr, p.stderr


def rmm_case(tool, replay, tmp):
    path = os.path.join(tmp, "rmm.csv")
    with open(path, "w") as f:
        f.write("Thread,Time,Action,Pointer,Size,Stream\n"
                "140,10:00:00.000001,allocate,0x7f0000000000,1048576,0x0\n"
                "140,10:00:00.000002,allocate,0x7f0000100000,512,0x5555\n"
                "140,10:00:00.000003,allocate failure,0x0,99999999999,0x0\n"
                "140,10:00:00.000004,free,0x7f0000000000,1048576,0x0\n"
                "141,10:00:00.000005,free,0x7f00deadbeef,512,0x0\n")
    out = os.path.join(tmp, "rmm.catrace.gz")
    p = convert(tool, "rmm-csv", path, "-o", out)
    assert p.returncode == 0, p.stderr
    import gzip

    lines = gzip.open(out, "rt").read().splitlines()
    assert lines[2:] == ["a 0 1048576 0", "a 1 512 1", "f 0"], lines
    r = subprocess.run([replay, "--backend", "host", "--repeat", "1", out],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    bad = os.path.join(tmp, "bad.csv")
    with open(bad, "w") as f:
        f.write("when,what\n1,2\n")
    p = convert(tool, "rmm-csv", bad)
    assert p.returncode == 1 and "expected RMM log columns" in p.stderr, p.stderr


def main(tool, replay):
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in (snapshot_case, rmm_case):
            try:
                case(tool, replay, tmp)
                print("ok   " + case.__name__)
                passed += 1
            except Exception as e:  # noqa: BLE001 - a test reports every failure
                print("FAIL %s: %s" % (case.__name__, e))
                failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
