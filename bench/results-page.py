#!/usr/bin/env python3
"""results-page.py: docs/benchmarks.md, and README.md's results table, made
from the benchmark harness's reports (the last one of each scale).

    python3 bench/results-page.py [REPORT_DIR...]          print the page
    python3 bench/results-page.py --write [REPORT_DIR...]  write docs/benchmarks.md
                                                           and README.md's block
    python3 bench/results-page.py --check [REPORT_DIR...]  compare them with what
                                                           the reports make; ends
                                                           with "N passed, N failed"

REPORT_DIR: a directory cuarena-bench wrote (run.json, results.jsonl.gz or
results.jsonl, report.md, summary.svg); without one, every directory of
docs/reports that has a run.json. Reports are shown by scale, then date.
From run.json: the date, command, machine, commit, allocators and an
optional "note" (what the files cannot say, e.g. a commit the device's git
metadata got wrong); from the results: the summary tables of
bench/benchreport.py (the same as report.md's) and cuarena's driver calls.
README.md's block lies between "<!-- results:begin" and "<!-- results:end"
lines: the smallest scale's peak mapped / live with every allocator that is
not a cuarena variant. Links are relative to docs/ (the page) and to the
repository root (README.md). Standard library only.
"""
import gzip
import json
import os
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchreport  # noqa: E402  (bench/benchreport.py: the tables of report.md)

PAGE = os.path.join("docs", "benchmarks.md")
README = "README.md"
BEGIN, END = "<!-- results:begin", "<!-- results:end"
THIS = "bench/results-page.py"


# ---- reading a report ------------------------------------------------------------

def load(path):
    with open(os.path.join(path, "run.json")) as f:
        meta = json.load(f)
    gz, plain = os.path.join(path, "results.jsonl.gz"), os.path.join(path, "results.jsonl")
    opener = (lambda: gzip.open(gz, "rt")) if os.path.exists(gz) else (lambda: open(plain))
    with opener() as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {"path": path, "meta": meta, "rows": rows}


def report_dirs(args):
    if args:
        return args
    top = os.path.join(ROOT, "docs", "reports")
    return [os.path.join(top, d) for d in sorted(os.listdir(top))
            if os.path.exists(os.path.join(top, d, "run.json"))]


def link(path, base):
    """path (a file of a report) relative to the directory base, with '/'."""
    return os.path.relpath(os.path.abspath(path), os.path.join(ROOT, base)).replace(os.sep, "/")


def scale(meta):
    return "%g" % meta.get("scale", 1)


def commit(meta):
    return (meta.get("machine") or {}).get("commit") or "?"


def short_commit(meta):
    return commit(meta).split()[0]


def gpu(meta):
    g = (meta.get("machine") or {}).get("gpu")
    return g.split(",")[0] if g else "no GPU"


def rerun(meta):
    """The run's cuarena-bench arguments as a bench/run.sh command line
    (run.sh passes them on, with its own build directory and report)."""
    cmd = meta.get("command") or ""
    if " ; " in cmd:
        return None
    words = shlex.split(cmd)[1:]
    keep, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w in ("--build", "--out"):
            skip = True
        elif not w.startswith(("--build=", "--out=")):
            keep.append(w)
    return " ".join(["bash bench/run.sh"] + [shlex.quote(w) for w in keep])


# ---- tables ----------------------------------------------------------------------

def grouped(n):
    """1878 -> "1 878" (the docs' thousands)."""
    return "{:,}".format(n).replace(",", " ")


def calls_table(rows, meta):
    """cuarena's driver calls: metrics run, per timed run and its time."""
    traces, allocs = benchreport.order(rows, meta)
    idx = benchreport.index(rows)
    mine = [a for a in allocs if any((idx.get((t, a)) or {}).get("driver_calls") is not None
                                     for t in traces)]
    if not mine:
        return None
    body = []
    for t in traces:
        cells = [t]
        for a in mine:
            r = idx.get((t, a))
            if not benchreport.ok(r) or r.get("driver_calls") is None:
                cells.append("-")
                continue
            runs = r.get("repeat") or meta.get("repeat") or 1
            cell = grouped(r["driver_calls"])
            if r.get("timed_driver_calls") is not None:
                cell += " / %s" % grouped(round(r["timed_driver_calls"] / runs))
                if r.get("timed_driver_ns") is not None:
                    cell += " (%.2f ms)" % (r["timed_driver_ns"] / 1e6 / runs)
            cells.append(cell)
        body.append(cells)
    return ["trace"] + mine, body


def glance_table(rep):
    """Peak mapped / live of cuarena and every allocator that is not a
    cuarena variant, and the ns per event of cuarena and PyTorch's."""
    rows, meta = rep["rows"], rep["meta"]
    traces, allocs = benchreport.order(rows, meta)
    idx = benchreport.index(rows)
    shown = [a for a in allocs if a == "cuarena" or not a.startswith("cuarena")]
    timed = [a for a in ("cuarena", "torch") if a in allocs]
    body = []
    for t in traces:
        cells = [t]
        for keyset, get, spec in ((shown, lambda r: benchreport.ratio(r, "peak_mapped_bytes"), ".3f"),
                                  (timed, lambda r: r.get("ns_per_event") if benchreport.ok(r) else None,
                                   ".1f")):
            vals = [get(idx.get((t, a))) for a in keyset]
            have = [v for v in vals if v is not None]
            for v in vals:
                if v is None:
                    cells.append("-")
                else:
                    s = format(v, spec)
                    cells.append("**%s**" % s if len(have) > 1 and v == min(have) else s)
        body.append(cells)
    head = ["trace"] + shown + ["%s ns/event" % a for a in timed]
    return benchreport.md_table(head, body)


# ---- the page ----------------------------------------------------------------------

def about(rep):
    meta = rep["meta"]
    m = meta.get("machine") or {}
    lines = ["- command: `%s`" % meta.get("command"),
             "- date: %s; the run took %s s" % (meta.get("date"), meta.get("seconds")),
             "- machine: GPU %s; CPU %s, %s cores; %s" % (
                 m.get("gpu") or "none", m.get("cpu"), m.get("cores"), m.get("os")),
             "- commit: %s" % commit(meta),
             "- cuarena's backend: %s; %s timed runs per allocator and trace, after one warm-up; "
             "generated scenarios at scale %s, seed %s; minimum budgets bisected to within %g MiB" % (
                 meta.get("backend"), meta.get("repeat"), scale(meta), meta.get("seed"),
                 meta.get("budget_step", 2 << 20) / 2**20),
             "- allocators: " + "; ".join("`%s` (%s)" % (a, what)
                                          for a, what in meta.get("allocators", {}).items())]
    for a, why in meta.get("left_out", {}).items():
        lines.append("- left out: `%s` (%s)" % (a, why))
    if meta.get("note"):
        lines.append("- note: %s" % meta["note"])
    again = rerun(meta)
    if again:
        lines.append("- to run it again: `%s` (on a machine with the same GPU, and torch for "
                     "PyTorch's columns)" % again)
    return lines


def report_links(rep):
    p = rep["path"]
    parts = []
    for name, what in (("report.md", "the report"), ("report.html", "one page with the plots"),
                       ("summary.svg", "summary plot"), ("results.jsonl.gz", "raw results"),
                       ("run.json", "run.json")):
        if os.path.exists(os.path.join(p, name)):
            parts.append("[%s](%s)" % (what, link(os.path.join(p, name), "docs")))
    return ("Full report: " + ", ".join(parts) + " (per trace: the range of ns per event, peak "
            "MiB, mapped - live at each marker and after its trim, a timeline of mapped and live).")


def section(rep):
    rows, meta = rep["rows"], rep["meta"]
    out = ["## Scale %s: %s, %s" % (scale(meta), gpu(meta), (meta.get("date") or "?").split()[0]), ""]
    out += about(rep) + [""]
    if os.path.exists(os.path.join(rep["path"], "summary.svg")):
        out += ["![peak mapped / live and ns per event, per allocator and trace](%s)"
                % link(os.path.join(rep["path"], "summary.svg"), "docs"), ""]
    for _, title, head, body, _ in benchreport.summary_tables(rows, meta):
        if title.startswith("ns per event"):
            title = "ns per event, median of the %s timed runs (lower is better)" % meta.get("repeat")
        out += ["### %s" % title, "", benchreport.md_table(head, body), ""]
    dom = benchreport.dominance_table(rows, meta)
    if dom:
        out += ["### %s" % dom[1], "", "(%s)" % dom[4], "", benchreport.md_table(dom[2], dom[3]), ""]
        if os.path.exists(os.path.join(rep["path"], "dominance.svg")):
            out += ["![peak mapped / live against ns per event, per allocator and trace](%s)"
                    % link(os.path.join(rep["path"], "dominance.svg"), "docs"), ""]
    calls = calls_table(rows, meta)
    if calls:
        out += ["### Driver calls: in the metrics run / per timed run (driver time per timed run)", "",
                benchreport.md_table(*calls), ""]
    failed = benchreport.failures(rows)
    if failed:
        out += ["### Failed replays", ""] + ["- `%s` on %s: %s" % (r["allocator"], r["trace"], r["error"])
                                             for r in failed] + [""]
    out += [report_links(rep), ""]
    return out


HOW = """## How to reproduce

- `bash bench/run.sh [ARGS]` builds the tools (release, in `build-bench/`)
  and runs `bench/cuarena-bench --build build-bench ARGS`: the report goes
  to `build-bench/report/`. Without a GPU it runs cuarena on the host
  backend in its configurations; with one, every allocator the machine has
  (PyTorch's when torch with CUDA is installed). Each report's "to run it
  again" line above is its own command in that form.
- On the project's GPU machine the reports were made through
  `tests/gpu/run.sh`: `CUA_GPU_REPEAT=5 CUA_GPU_HARNESS=S bash
  tests/gpu/run.sh` (scale S; `CUA_GPU_ALLOCATORS=...` picks allocators,
  `CUA_GPU_HARNESS_SECONDS=N` stops a run in time to write its report),
  which returns `report-sS.tar.gz`.
- To publish a run: unpack it into `docs/reports/NAME/` (report.md,
  summary.svg, dominance.svg, the timelines, run.json and results.jsonl gzipped; not
  report.html, which repeats them), remove the older report of the same
  scale, run `python3 bench/results-page.py --write`, and add the run to
  CHANGELOG.md with what changed since the last one."""


def page(reps):
    reps = sorted(reps, key=lambda r: (r["meta"].get("scale", 1), r["meta"].get("date") or ""))
    out = ["# Benchmark results", "",
           "<!-- Made by %s from the reports in docs/reports/: do not edit. `python3 %s --write` "
           "writes this page and README.md's results table again; the test benchmarks-page fails "
           "when they differ from the reports. -->" % (THIS, THIS), "",
           "The last run of the fragmentation benchmark harness (`bench/cuarena-bench`) at each "
           "scale, as its report says (this page is made from the reports by `" + THIS + "`). "
           "What the columns mean, how the harness measures and where "
           "cuarena is not ahead, and why: [benchmark-method.md](benchmark-method.md). Earlier "
           "runs, and the measurements outside the harness (threads, offload and restore, PyTorch "
           "workloads, the engine example), with their machines, commits and commands: "
           "[CHANGELOG.md](../CHANGELOG.md) and [history/](history/README.md).", "",
           "| scale | machine | date | commit | traces | allocators | report |",
           "| ---: | --- | --- | --- | ---: | ---: | --- |"]
    for r in reps:
        traces, allocs = benchreport.order(r["rows"], r["meta"])
        out.append("| %s | %s | %s | %s | %d | %d | [%s](%s) |" % (
            scale(r["meta"]), gpu(r["meta"]), r["meta"].get("date"), short_commit(r["meta"]),
            len(traces), len(allocs), os.path.basename(os.path.normpath(r["path"])),
            link(os.path.join(r["path"], "report.md"), "docs")))
    out.append("")
    for r in reps:
        out += section(r)
    out += [HOW, ""]
    return "\n".join(out)


def readme_block(reps):
    rep = min(reps, key=lambda r: (r["meta"].get("scale", 1), r["meta"].get("date") or ""))
    meta = rep["meta"]
    text = ("The last run of the harness at scale %s (%s, %s, commit %s; every allocator in the "
            "same run): peak mapped / peak live, lower is better (PyTorch: its "
            "max_memory_reserved), and the median time per allocation or free." % (
                scale(meta), gpu(meta), (meta.get("date") or "?").split()[0], short_commit(meta)))
    block = "%s\n\n%s\n" % (text, glance_table(rep))
    svg = os.path.join(rep["path"], "summary.svg")
    if os.path.exists(svg):
        block += "\n![peak mapped / live and ns per event, per allocator and trace](%s)\n" % link(svg, ".")
    return block


# ---- README's block, --write and --check -----------------------------------------------

def split_block(text):
    """(before, block, after) of README's results block; None without one."""
    lines = text.splitlines(True)
    starts = [i for i, line in enumerate(lines) if line.startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.startswith(END)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        return None
    b, e = starts[0], ends[0]
    return "".join(lines[:b + 1]), "".join(lines[b + 1:e]), "".join(lines[e:])


def main(argv):
    mode = argv[0] if argv and argv[0] in ("--write", "--check") else None
    args = argv[1:] if mode else argv
    if any(a.startswith("-") for a in args):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    reps = [load(d) for d in report_dirs(args)]
    if not reps:
        sys.exit("results-page: no report (a directory with run.json)")
    want_page, want_block = page(reps), readme_block(reps)
    if not mode:
        sys.stdout.write(want_page)
        return 0
    page_path, readme_path = os.path.join(ROOT, PAGE), os.path.join(ROOT, README)
    with open(readme_path) as f:
        readme = f.read()
    parts = split_block(readme)
    if parts is None:
        print("FAIL: %s: no single block between '%s' and '%s' lines" % (README, BEGIN, END))
        return 1
    if mode == "--write":
        with open(page_path, "w") as f:
            f.write(want_page)
        with open(readme_path, "w") as f:
            f.write(parts[0] + want_block + parts[2])
        print("written: %s, %s's results block" % (PAGE, README))
        return 0
    passed = failed = 0
    have_page = open(page_path).read() if os.path.exists(page_path) else ""
    for what, have, want in ((PAGE, have_page, want_page),
                             (README + "'s results block", parts[1], want_block)):
        if have == want:
            passed += 1
            print("ok: %s is what the reports make" % what)
        else:
            failed += 1
            a, b = have.splitlines(), want.splitlines()
            n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
            print("FAIL: %s differs from what the reports make, from its line %d (python3 %s "
                  "--write)" % (what, n + 1, THIS))
            print("  has:  %s" % (a[n] if n < len(a) else "(end)"))
            print("  made: %s" % (b[n] if n < len(b) else "(end)"))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
