"""test_prometheus.py - cuarena.prometheus() (cua_device_report_prometheus)
scraped and read by the Prometheus text-format parser of prometheus_client
(Debian's python3-prometheus-client): every family with its type and help,
the figures of each arena and device as cua_stats and the JSON report give
them, counters that count, label values (quotes, backslashes, line feeds,
bytes that are no UTF-8, two arenas of one name) read back as written.

    CUARENA_LIB=build/libcuarena.so python3 tests/test_prometheus.py

The parser is asked of this Python, else of /usr/bin/python3 (Debian's
package serves that one), through a child process. Exits 77 (skipped) when
neither has prometheus_client. Prints "N passed, N failed".
"""

import ctypes
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import cuarena  # noqa: E402

MiB = 1 << 20

# Run by whichever Python has prometheus_client: the text on stdin, the
# families as JSON on stdout.
PARSE = r"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": fam.name, "type": fam.type, "help": fam.documentation,
                "samples": [[s.name, s.labels, s.value] for s in fam.samples]})
json.dump(out, sys.stdout)
"""


def parser_python():
    for py in (sys.executable, "/usr/bin/python3"):
        if os.access(py, os.X_OK) and subprocess.run(
                [py, "-c", "import prometheus_client.parser"], stderr=subprocess.DEVNULL).returncode == 0:
            return py
    return None


def parse(py, text):
    p = subprocess.run([py, "-c", PARSE], input=text, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "prometheus_client could not parse the text: %s" % p.stderr[-2000:]
    return json.loads(p.stdout)


def make_arena(name_bytes, conf):
    h = ctypes.c_void_p()
    st = cuarena._lib.cua_arena_create_conf(name_bytes, conf.encode(), ctypes.byref(h))
    assert st == 0, cuarena._lib.cua_last_error()
    return cuarena.Arena._wrap(h, name_bytes.decode(errors="replace"), 0)


def main():
    py = parser_python()
    if not py:
        print("SKIP: no prometheus_client for %s or /usr/bin/python3 (Debian: apt-get install "
              "python3-prometheus-client)" % sys.executable)
        return 77
    conf = "backend:host,va_size:1G"
    odd_name = 'kv "cache"\\ 2\nx'
    kv = make_arena(odd_name.encode(), conf + ",limit:16M")
    bad = make_arena(b"enc\xff\xfeoder", conf)
    twin1 = make_arena(b"twin", conf)
    twin2 = make_arena(b"twin", conf)
    p = kv.alloc(6 * MiB)
    q = kv.alloc(3 * MiB)
    r = kv.alloc(2 * MiB)
    try:
        kv.alloc(12 * MiB)        # over the limit: one OOM answer
        raise AssertionError("the limit let 12 MiB through")
    except cuarena.Error as e:
        assert e.status == "CUA_ERR_LIMIT", e
    cuarena.free(q)
    frag = make_arena(b"frag", conf)
    holes = [frag.alloc(MiB) for _ in range(6)]
    for h in holes[0::2]:         # free blocks between live ones: fragmentation above 0
        cuarena.free(h)
    t = twin2.alloc(MiB)
    cuarena.free(t)
    released = twin2.trim()       # one trim
    assert released > 0

    text = cuarena.prometheus(0)
    fams = {f["name"]: f for f in parse(py, text)}
    checks = []

    def check(what, cond):
        checks.append((what, bool(cond)))
        if not cond:
            print("FAIL %s" % what)

    def value(family, metric, **labels):
        for name, lab, v in fams[family]["samples"]:
            if name == metric and all(lab.get(k) == want for k, want in labels.items()):
                return v
        return None

    gauges = ["mapped_bytes", "live_bytes", "live_blocks", "cached_bytes", "free_bytes",
              "largest_free_bytes", "fragmentation_ratio", "reserved_bytes", "limit_bytes",
              "peak_live_bytes", "peak_mapped_bytes"]
    counters = ["allocations", "frees", "oom", "trims", "trimmed_bytes"]
    for g in gauges:
        f = fams.get("cuarena_arena_" + g)
        check("gauge cuarena_arena_%s with help" % g, f and f["type"] == "gauge" and f["help"])
    for c in counters:  # the parser names a counter's family without _total
        f = fams.get("cuarena_arena_" + c)
        check("counter cuarena_arena_%s_total" % c, f and f["type"] == "counter" and
              all(s[0] == "cuarena_arena_%s_total" % c for s in f["samples"]))
    for g in ("mapped_bytes", "live_bytes", "cached_bytes", "peak_mapped_bytes", "arenas",
              "driver_free_bytes", "driver_total_bytes", "headroom_bytes"):
        check("device gauge cuarena_device_%s" % g, "cuarena_device_" + g in fams and
              value("cuarena_device_" + g, "cuarena_device_" + g, device="0") is not None)
    check("build info names the version",
          value("cuarena_build_info", "cuarena_build_info", version=cuarena.__version__) == 1)

    # The figures are the arenas' own, under their names as written.
    st = kv.stats()
    for g in gauges:
        key = "free_fragmentation" if g == "fragmentation_ratio" else g
        v = value("cuarena_arena_" + g, "cuarena_arena_" + g, arena=odd_name, device="0")
        check("%s of the arena named with quotes, backslash, line feed" % g,
              v is not None and abs(v - st[key]) < 1e-6)
    check("live bytes", value("cuarena_arena_live_bytes", "cuarena_arena_live_bytes",
                              arena=odd_name) == 8 * MiB)
    fr = value("cuarena_arena_fragmentation_ratio", "cuarena_arena_fragmentation_ratio",
               arena="frag")
    check("fragmentation above 0, as cua_stats", fr > 0 and
          abs(fr - frag.stats()["free_fragmentation"]) < 1e-6)
    check("oom counter", value("cuarena_arena_oom", "cuarena_arena_oom_total", arena=odd_name) == 1)
    check("allocations counter", value("cuarena_arena_allocations", "cuarena_arena_allocations_total",
                                       arena=odd_name) == 3)
    check("trims counter", value("cuarena_arena_trims", "cuarena_arena_trims_total",
                                 arena="twin#2") == 1)
    check("trimmed bytes", value("cuarena_arena_trimmed_bytes", "cuarena_arena_trimmed_bytes_total",
                                 arena="twin#2") == released)
    check("bytes of no UTF-8 read back as U+FFFD",
          value("cuarena_arena_live_blocks", "cuarena_arena_live_blocks",
                arena="enc\ufffd\ufffdoder") == 0)
    check("a second arena of one name is NAME#2",
          value("cuarena_arena_mapped_bytes", "cuarena_arena_mapped_bytes", arena="twin") is not None
          and value("cuarena_arena_mapped_bytes", "cuarena_arena_mapped_bytes", arena="twin#2")
          is not None)
    rep = cuarena.device_report(0)
    for key in ("mapped_bytes", "live_bytes", "cached_bytes"):
        check("device %s as the JSON report" % key,
              value("cuarena_device_" + key, "cuarena_device_" + key, device="0") == rep[key])
    check("device arenas", value("cuarena_device_arenas", "cuarena_device_arenas", device="0") ==
          len(rep["arenas"]))
    # Every device at once: the same text when only device 0 has arenas.
    check("prometheus() of every device", cuarena.prometheus() == text)

    for ptr in [p, r] + holes[1::2]:
        cuarena.free(ptr)
    for a in (kv, bad, twin1, twin2, frag):
        a.destroy()
    passed = sum(1 for _, ok in checks if ok)
    print("  %d families parsed by %s's prometheus_client" % (len(fams), py))
    print("%d passed, %d failed" % (passed, len(checks) - passed))
    return 0 if passed == len(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
