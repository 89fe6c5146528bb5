"""test-gen.py - cuarena-gen's scenarios: deterministic for a seed, different
for another, valid catrace v1 with an arena on every allocation, replayed by
cuarena-replay with the checker every 16th event, and at scale 140 near 70 GB
of peak live memory. Prints "N passed, N failed".

    python3 bench/test-gen.py CUARENA-GEN CUARENA-REPLAY
"""

import hashlib
import os
import re
import subprocess
import sys
import tempfile

SCENARIOS = ["reload", "rl_weight_update", "llm_serving", "lora_swap", "train_checkpointing"]


def gen(tool, *args):
    p = subprocess.run([sys.executable, tool] + list(args), capture_output=True, text=True,
                       timeout=600)
    if p.returncode != 0:
        raise AssertionError("cuarena-gen %s: %s" % (" ".join(args), p.stderr))
    return p.stdout, p.stderr


def check_scenario(tool, replay, name, tmp):
    text, _ = gen(tool, "--scenario", name, "--seed", "1")
    again, _ = gen(tool, "--scenario", name, "--seed", "1")
    other, _ = gen(tool, "--scenario", name, "--seed", "2")
    assert hashlib.sha256(text.encode()).digest() == hashlib.sha256(again.encode()).digest(), \
        "not deterministic"
    assert text != other, "the seed changes nothing"
    lines = text.splitlines()
    assert lines[0] == "# catrace v1", lines[0]
    live = set()
    for line in lines[2:]:
        f = line.split()
        if f[0] == "a":
            assert len(f) == 5 and int(f[2]) % 512 == 0 and f[4], line
            live.add(f[1])
        elif f[0] == "f":
            live.remove(f[1])
        else:
            assert f[0] == "m" and len(f) == 2, line
    path = os.path.join(tmp, name + ".catrace")
    with open(path, "w") as out:
        out.write(text)
    # the checker every 16th event and at every marker (after every event it
    # took five minutes under ASan)
    r = subprocess.run([replay, "--backend", "host", "--repeat", "1", "--check-every", "16", path],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    _, err = gen(tool, "--scenario", name, "--scale", "140", "-o", path + ".gz")
    peak = float(re.search(r"peak live ([0-9.]+) MiB", err).group(1))
    assert peak >= 60 * 1024, "scale 140 peaks at %.0f MiB" % peak
    print("  %s: %d lines, %d left live at the end, %.0f MiB at scale 140" % (
        name, len(lines), len(live), peak))


def main(tool, replay):
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in SCENARIOS:
            try:
                check_scenario(tool, replay, name, tmp)
                print("ok   " + name)
                passed += 1
            except Exception as e:  # noqa: BLE001 - a test reports every failure
                print("FAIL %s: %s" % (name, e))
                failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
