#!/usr/bin/env python3
"""Summarise the JSON lines of one GPU benchmark run (tests/gpu/run.sh) as a
Markdown table: per trace, cuarena on the GPU (VMM and whole segments), on the
host backend, and the cudaMalloc / cudaMallocAsync baselines of the same run.
Then the issue's two checks: cuarena's ns/event at most 1/10 of
cudaMallocAsync's, and its peak mapped / live on the GPU equal to the host
backend's. Standard library only.

    python3 tests/gpu/table.py results.jsonl
"""
import json
import sys


def label(r):
    b = r.get("backend", "?")
    if b in ("cuda", "host"):
        return "cuarena %s%s" % (b, "" if r.get("segments", "vmm") == "vmm" else " (whole segments)")
    return b


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "trace" in row:  # the log also holds other JSON (engine_reload's cycles)
                    rows.append(row)
    order = ["cuarena cuda", "cuarena cuda (whole segments)", "cuarena host",
             "cuarena host (whole segments)",
             "cudaMalloc", "cudaMallocAsync"]
    by = {}
    for r in rows:
        by[(r["trace"], label(r))] = r
    traces = sorted({r["trace"] for r in rows})
    print("| trace | allocator | ns/event (median) | peak mapped / live | min budget / live "
          "| peak mapped MiB | driver calls | timed driver calls / run | timed driver ms / run |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t in traces:
        for name in order:
            r = by.get((t, name))
            if not r:
                continue
            rep = r.get("repeat") or 0
            calls = r.get("timed_driver_calls")
            ns = r.get("timed_driver_ns")
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                t, name, fmt(r.get("ns_per_event"), ".1f"),
                fmt(r.get("peak_mapped_over_live"), ".3f"),
                fmt(r.get("min_budget_over_live"), ".4f"),
                fmt((r.get("peak_mapped_bytes") or 0) / 2**20, ".1f"),
                r.get("driver_calls", "-"),
                fmt(calls / rep if rep and calls is not None else None, ".0f"),
                fmt(ns / rep / 1e6 if rep and ns is not None else None, ".2f")))
    print()
    ok = True
    for t in traces:
        cu, host, asy = by.get((t, "cuarena cuda")), by.get((t, "cuarena host")), \
            by.get((t, "cudaMallocAsync"))
        if not (cu and asy and cu.get("ns_per_event") and asy.get("ns_per_event")):
            print("%s: missing figures for the checks" % t)
            ok = False
            continue
        speed = asy["ns_per_event"] / cu["ns_per_event"]
        same = host is not None and \
            abs(cu["peak_mapped_over_live"] - host["peak_mapped_over_live"]) < 5e-4
        ok &= speed >= 10 and same
        print("%s: cudaMallocAsync / cuarena ns per event = %.1fx (goal >= 10); peak mapped/live "
              "GPU %.4f vs host %s (%s)" % (
                  t, speed, cu["peak_mapped_over_live"],
                  "-" if host is None else "%.4f" % host["peak_mapped_over_live"],
                  "same" if same else "DIFFERENT"))
    print("checks: %s" % ("all met" if ok else "NOT all met"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build-gpu/out/results.jsonl")
