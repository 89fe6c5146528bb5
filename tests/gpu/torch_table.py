"""torch_table.py - one Markdown table of the PyTorch workloads, native next
to cuarena, from the JSON lines test_torch.py keeps in $CUA_TORCH_RESULTS.

    python3 tests/gpu/torch_table.py RESULTS.jsonl
"""

import json
import sys

MiB = 1 << 20


def mib(n):
    return "%.1f MiB" % (n / MiB)


def describe(workload, by_use):
    """The table rows (what, native, cuarena) of one workload's results."""
    out = []
    n, c = by_use.get("native"), by_use.get("cuarena")

    def both(fn, what):
        out.append((what, fn(n) if n else "-", fn(c) if c else "-"))

    if workload == "ops":
        same = n and c and n["digest"] == c["digest"]
        out.append(("ops: sha256 of the results", n["digest"][:12] if n else "-",
                    ("identical" if same else "DIFFERENT") if c else "-"))
    elif workload == "gpt2":
        same = n and c and n["tokens"] == c["tokens"]
        both(lambda x: "%.2f s" % x["seconds"], "gpt2 generate: one timed run")
        out.append(("gpt2 generate: tokens", "-", "identical" if same else "DIFFERENT"))
    elif workload == "llama":
        same = n and c and n["losses"] == c["losses"]
        both(lambda x: "%.2f ms" % (x["median_step_s"] * 1e3), "llama train: median step")
        out.append(("llama train: 30 losses", "-", "identical" if same else "DIFFERENT"))
    elif workload == "reload":
        both(lambda x: "%d of %d cycles at 0" % (sum(r["after_over_base"] == 0 for r in x["cycles"]),
                                                 len(x["cycles"])), "reload: back to baseline")
    elif workload == "reload_cap":
        def cap(x):
            bad = [r["cycle"] for r in x["cycles"] if not r["ok"]]
            worst = max(r["after_over_base"] for r in x["cycles"])
            return ("OOM at cycle %d" % bad[0] if bad else "%d cycles ok" % len(x["cycles"])) + \
                ", worst after teardown " + mib(worst)
        both(cap, "reload under a 1 GiB cap, stray engine reference")
    elif workload == "janitor":
        both(lambda x: "%s -> %s (live %s)" % (mib(x["after_burst_mapped"]),
                                              mib(x["after_idle_mapped"]), mib(x["live"])),
             "idle 1 s after a burst: mapped")
    elif workload == "kv":
        both(lambda x: "%.5f, first try %s" % (x["estimate_over_largest"],
                                              "fits" if x["first_try_fits"] else "fails"),
             "KV estimate / largest that fits")
    elif workload == "weights":
        both(lambda x: "%.4f - %.4f" % (min(r["mapped_over_live"] for r in x["cycles"]),
                                        max(r["mapped_over_live"] for r in x["cycles"])),
             "20 weight updates: mapped / live range")
    elif workload == "graph":
        both(lambda x: "replay %s" % ("ok" if x["replay_matches_eager"] else "WRONG"),
             "CUDA graph capture and replay")
        if c and "pool_arena" in c:
            out.append(("graph pool offloaded, discarded, restored", "-",
                        "replays %s" % ("ok" if c["replay_after_restore_matches"] and
                                        c["replay_after_discard_matches"] else "WRONG")))
    elif workload == "offload":
        out.append(("encoder offloaded while the transformer runs", "-",
                    "%s, pointers %s" % ("exact" if c["exact"] else "NOT exact",
                                         "stable" if c["pointers_stable"] else "MOVED")))
    elif workload == "stats":
        calls = {k: v for k, v in c.items() if k.startswith(("torch.", "cudnn.", "tensor.",
                                                              "set_per"))}
        ok = sum(v == "ok" for v in calls.values())
        out.append(("torch's statistics / snapshot / cache calls", "-",
                    "%d of %d work" % (ok, len(calls))))
    return out


def main(path):
    results = {}
    for line in open(path):
        if line.strip():
            r = json.loads(line)
            results.setdefault(r["workload"], {})[r["use"]] = r["result"]
    print("| workload | native | cuarena |")
    print("| --- | --- | --- |")
    for workload in results:
        for what, n, c in describe(workload, results[workload]):
            print("| %s | %s | %s |" % (what, n, c))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build-gpu/out/torch.jsonl")
