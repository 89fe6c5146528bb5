"""benchreport: the report of a cuarena-bench run - report.md (tables), SVG
plots (matplotlib, when installed) and report.html (one self-contained page:
the same tables, the plots inline). Rows are the JSON lines of results.jsonl,
one per trace and allocator; meta is run.json. Standard library only, plus
matplotlib where it is installed.
"""
import html
import json
import os
import re

MIB = 1024.0 * 1024.0

try:
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "cuarena"  # the same run draws the same file
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt
    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False

NO_PLOTS = ("plots skipped: matplotlib is not installed "
            "(on Debian: apt-get install python3-matplotlib)")


def load_rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def slug(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def order(rows, meta):
    """Traces in the order first seen, allocators in the run's order."""
    traces = []
    for r in rows:
        if r["trace"] not in traces:
            traces.append(r["trace"])
    allocs = list(meta.get("allocators", {}))
    for r in rows:
        if r["allocator"] not in allocs:
            allocs.append(r["allocator"])
    return traces, allocs


def index(rows):
    return {(r["trace"], r["allocator"]): r for r in rows}


def ok(r):
    return r is not None and not r.get("error")


def ratio(r, key):
    if not ok(r) or not r.get("peak_live_bytes") or r.get(key) is None:
        return None
    return r[key] / r["peak_live_bytes"]


def fmt(v, spec, dash="-"):
    return dash if v is None else format(v, spec)


# Timed runs whose max - min exceeds this share of their median are marked:
# a busy machine or too few runs (--repeat), and medians to compare with care.
WIDE_SPREAD = 0.25
WIDE_NOTE = ("* the timed runs spread over %d %% of their median (max - min): the machine was "
             "busy or the runs too few (--repeat); compare these with care" % round(100 * WIDE_SPREAD))


def spread(r):
    """(max - min) / median of the row's timed runs, or None."""
    if not ok(r):
        return None
    med, lo, hi = r.get("ns_per_event"), r.get("ns_per_event_min"), r.get("ns_per_event_max")
    if not med or lo is None or hi is None:
        return None
    return (hi - lo) / med


def wide(r):
    s = spread(r)
    return s is not None and s > WIDE_SPREAD


def ns_cell(r):
    """median (min-max), * when the spread is wide; '-' without timing."""
    ns = r.get("ns_per_event") if ok(r) else None
    if ns is None:
        return "-"
    return "%.1f (%s-%s)%s" % (ns, fmt(r.get("ns_per_event_min"), ".1f"),
                               fmt(r.get("ns_per_event_max"), ".1f"), "*" if wide(r) else "")


def wide_rows(rows):
    return [r for r in rows if wide(r)]


def moved_gib(r):
    """GiB a warm run mapped (page moves; cuarena's replay reports it), or None."""
    b = r.get("warm_mapped_bytes") if ok(r) else None
    return None if b is None else b / 2**30


def marker_gaps(r):
    """(worst mapped - live at a marker, worst after the marker's trim), bytes."""
    marks = (r.get("timeline") or {}).get("markers") or []
    before = [m["mapped"] - m["live"] for m in marks]
    after = [m["mapped_after_trim"] - m["live"] for m in marks if m.get("mapped_after_trim") is not None]
    return (max(before) if before else None, max(after) if after else None)


# ---- tables: (id, title, header, rows of cells, note) ------------------------------

def summary_tables(rows, meta):
    traces, allocs = order(rows, meta)
    idx = index(rows)
    out = []
    for tid, title, get, spec, better in (
            ("summary-ratio", "Peak mapped / peak live (lower is better)",
             lambda r: ratio(r, "peak_mapped_bytes"), ".3f", min),
            ("summary-budget", "Minimum budget / peak live (lower is better)",
             lambda r: ratio(r, "min_budget_bytes"), ".3f", min),
            ("summary-ns", "ns per event, median (min-max) of the timed runs (lower is better)",
             lambda r: r.get("ns_per_event") if ok(r) else None, ".1f", min),
            ("summary-moved", "GiB mapped again per warm run: page moves (cuarena's own figure; "
             "lower is better)", moved_gib, ".2f", min)):
        body = []
        marked = False
        for t in traces:
            vals = [get(idx.get((t, a))) for a in allocs]
            have = [v for v in vals if v is not None]
            best = better(have) if have else None
            cells = []
            for a, v in zip(allocs, vals):
                r = idx.get((t, a))
                if r is not None and r.get("error"):
                    cells.append("failed")
                elif v is None:
                    cells.append("-")
                else:
                    s = format(v, spec)
                    if tid == "summary-ns":
                        med, rest = ns_cell(r).split(" ", 1)
                        s, marked = med, marked or wide(r)
                        cells.append(("**%s** %s" if v == best and len(have) > 1 else "%s %s")
                                     % (s, rest))
                        continue
                    cells.append("**%s**" % s if v == best and len(have) > 1 else s)
            body.append([t] + cells)
        out.append((tid, title, ["trace"] + allocs, body, WIDE_NOTE if marked else None))
    return out


def trace_table(trace, rows, meta):
    _, allocs = order(rows, meta)
    idx = index(rows)
    body = []
    marked = False
    for a in allocs:
        r = idx.get((trace, a))
        if r is None:
            continue
        if r.get("error"):
            body.append([a, "failed: " + r["error"]] + [""] * 9)
            continue
        marked = marked or wide(r)
        before, after = marker_gaps(r)
        timed = r.get("timed_driver_ns")
        runs = r.get("repeat") or meta.get("repeat") or 1
        body.append([a, ns_cell(r), fmt(r.get("peak_live_bytes", 0) / MIB, ".1f"),
                     fmt(r["peak_mapped_bytes"] / MIB if r.get("peak_mapped_bytes") is not None else None, ".1f"),
                     fmt(ratio(r, "peak_mapped_bytes"), ".3f"), fmt(ratio(r, "min_budget_bytes"), ".3f"),
                     fmt(before / MIB if before is not None else None, ".1f"),
                     fmt(after / MIB if after is not None else None, ".1f"),
                     fmt(r.get("driver_calls"), "d"),
                     fmt(timed / 1e6 / runs if timed is not None else None, ".2f"),
                     fmt(moved_gib(r), ".2f")])
    head = ["allocator", "ns/event median (min-max)", "peak live MiB", "peak mapped MiB",
            "peak mapped / live", "min budget / live", "worst mapped - live at a marker MiB",
            "after its trim MiB", "driver calls (metrics run)", "driver ms per timed run",
            "GiB mapped per warm run"]
    return ("trace-" + slug(trace), "Trace %s" % trace, head, body, WIDE_NOTE if marked else None)


def marker_table(trace, rows, meta):
    """mapped - live (MiB) at each marker per allocator; after the trim in ()."""
    _, allocs = order(rows, meta)
    idx = index(rows)
    have = [a for a in allocs if ok(idx.get((trace, a))) and (idx[(trace, a)].get("timeline") or {}).get("markers")]
    if not have:
        return None
    ref = idx[(trace, have[0])]["timeline"]["markers"]
    step = max(1, len(ref) // 24)  # at most about 24 rows
    body = []
    for k in range(0, len(ref), step):
        cells = [ref[k]["name"]]
        for a in have:
            marks = idx[(trace, a)]["timeline"]["markers"]
            if k >= len(marks):
                cells.append("-")
                continue
            m = marks[k]
            s = "%.1f" % ((m["mapped"] - m["live"]) / MIB)
            if m.get("mapped_after_trim") is not None:
                s += " (%.1f)" % ((m["mapped_after_trim"] - m["live"]) / MIB)
            cells.append(s)
        body.append(cells)
    note = None if step == 1 else "every %d-th of %d markers" % (step, len(ref))
    return ("markers-" + slug(trace), "Mapped - live at the markers of %s, MiB (after the trim)" % trace,
            ["marker"] + have, body, note)


# The default configuration against the allocators a user would replace with
# it: better when it is no worse on both axes (peak mapped / live, ns/event)
# and better on one; else which axis it loses, with the share of its timed
# runs spent in driver calls (page moves: the usual reason at scale).
DEFAULT = "cuarena"
RIVALS = ("torch-expandable", "cudaMallocAsync")


def verdict(mine, theirs):
    """'better on both' / 'tighter, slower' / 'faster, looser' / 'worse on both'
    / 'equal', from (ratio, ns) pairs; None when a figure is missing."""
    if None in mine or None in theirs:
        return None
    tight = mine[0] <= theirs[0] + 5e-4  # (the ratios are printed to 3 digits)
    fast = mine[1] <= theirs[1]
    if tight and fast:
        return "better on both"
    if tight:
        return "tighter, slower"
    if fast:
        return "faster, looser"
    return "worse on both"


def driver_share(r):
    """(driver ms per timed run, its share of the run's time), or (None, None)."""
    timed, ns, events = r.get("timed_driver_ns"), r.get("ns_per_event"), r.get("events")
    runs = r.get("repeat") or 1
    if timed is None or not ns or not events:
        return None, None
    ms = timed / 1e6 / runs
    return ms, ms / (ns * events / 1e6)


def dominance_table(rows, meta):
    traces, allocs = order(rows, meta)
    rivals = [a for a in RIVALS if a in allocs]
    if DEFAULT not in allocs or not rivals:
        return None
    idx = index(rows)
    body = []
    for t in traces:
        r = idx.get((t, DEFAULT))
        if not ok(r):
            continue
        mine = (ratio(r, "peak_mapped_bytes"), r.get("ns_per_event"))
        cells = [t, "%s / %s" % (fmt(mine[0], ".3f"), fmt(mine[1], ".1f"))]
        for a in rivals:
            q = idx.get((t, a))
            theirs = (ratio(q, "peak_mapped_bytes"), q.get("ns_per_event") if ok(q) else None)
            cells += ["%s / %s" % (fmt(theirs[0], ".3f"), fmt(theirs[1], ".1f")),
                      verdict(mine, theirs) or "-"]
        ms, share = driver_share(r)
        cells.append("-" if ms is None else "%.1f (%d %%)" % (ms, round(100 * share)))
        body.append(cells)
    head = ["trace", "%s: peak mapped / live, ns/event" % DEFAULT]
    for a in rivals:
        head += [a, "%s against %s" % (DEFAULT, a)]
    head.append("%s driver ms per run (share of its time)" % DEFAULT)
    note = ("better on both: no higher peak mapped / live (to the printed digit) and no more "
            "ns/event; where %s is slower, the last column says how much of its time went to "
            "driver calls (page moves): the mean driver time of its timed runs against their "
            "median run, so over 100 %% where the runs spread" % DEFAULT)
    return ("dominance", "The default against %s (peak mapped / live, ns/event)"
            % " and ".join(rivals), head, body, note)


def all_tables(rows, meta):
    traces, _ = order(rows, meta)
    tables = summary_tables(rows, meta)
    d = dominance_table(rows, meta)
    if d:
        tables.append(d)
    for t in traces:
        tables.append(trace_table(t, rows, meta))
        m = marker_table(t, rows, meta)
        if m:
            tables.append(m)
    return tables


# ---- plots ---------------------------------------------------------------------------

def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)
    return True


def plot_timeline(trace, rows, meta, path):
    _, allocs = order(rows, meta)
    idx = index(rows)
    series = [(a, idx[(trace, a)]["timeline"]["points"]) for a in allocs
              if ok(idx.get((trace, a))) and (idx[(trace, a)].get("timeline") or {}).get("points")]
    if not series:
        return False
    top = max(max(p[2] for p in pts) for _, pts in series)
    unit, div = ("GiB", 1024.0 ** 3) if top >= 4 * 1024.0 ** 3 else ("MiB", MIB)
    fig, ax = plt.subplots(figsize=(9, 4))
    live = series[0][1]
    ax.plot([p[0] for p in live], [p[1] / div for p in live], color="black", lw=1.2, label="live (asked)")
    for a, pts in series:
        ax.step([p[0] for p in pts], [p[2] / div for p in pts], where="post", lw=1.0, label=a + " mapped")
    ax.set_xlabel("event")
    ax.set_ylabel(unit)
    ax.set_title("%s: mapped and live over the trace" % trace)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return save(fig, path)


def plot_summary(rows, meta, path):
    traces, allocs = order(rows, meta)
    idx = index(rows)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(1, len(allocs))
    for k, a in enumerate(allocs):
        xs = [i + (k - (len(allocs) - 1) / 2) * width for i in range(len(traces))]
        rat = [ratio(idx.get((t, a)), "peak_mapped_bytes") or 0 for t in traces]
        ns = [(idx.get((t, a)) or {}).get("ns_per_event") or 0 for t in traces]
        a1.bar(xs, rat, width, label=a)
        a2.bar(xs, ns, width, label=a)
    for ax, title in ((a1, "peak mapped / live"), (a2, "ns per event (log)")):
        ax.set_xticks(range(len(traces)))
        ax.set_xticklabels(traces, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    low = [v for v in (ratio(r, "peak_mapped_bytes") for r in rows) if v]
    if low:  # the differences are in the second and third digit: start near the lowest
        a1.set_ylim(bottom=min(1.0, min(low)) * 0.98)
    a2.set_yscale("log")
    a1.legend(fontsize=8)
    return save(fig, path)


def plot_dominance(rows, meta, path):
    """Peak mapped / live against ns/event (log), one point per allocator and
    trace: the lower left corner is better on both."""
    traces, allocs = order(rows, meta)
    idx = index(rows)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    marks = "os^vD<>ph*"
    drawn = False
    for k, a in enumerate(allocs):
        pts = [(idx[(t, a)]["ns_per_event"], ratio(idx[(t, a)], "peak_mapped_bytes"), t)
               for t in traces if ok(idx.get((t, a))) and idx[(t, a)].get("ns_per_event")
               and ratio(idx[(t, a)], "peak_mapped_bytes")]
        if not pts:
            continue
        drawn = True
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marks[k % len(marks)],
                   s=46 if a == DEFAULT else 30, label=a, zorder=3 if a == DEFAULT else 2)
        if a == DEFAULT:
            for x, y, t in pts:
                ax.annotate(t, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xscale("log")
    ax.set_xlabel("ns per event (log; lower is better)")
    ax.set_ylabel("peak mapped / peak live (lower is better)")
    ax.set_title("Memory against time, one point per allocator and trace")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def write_plots(out, rows, meta):
    """(id, title, file) of each plot drawn."""
    if not HAVE_MPL:
        return []
    traces, _ = order(rows, meta)
    plots = []
    if plot_summary(rows, meta, os.path.join(out, "summary.svg")):
        plots.append(("plot-summary", "Peak mapped / live and ns per event", "summary.svg"))
    if dominance_table(rows, meta) and plot_dominance(rows, meta, os.path.join(out, "dominance.svg")):
        plots.append(("plot-dominance", "Peak mapped / live against ns per event", "dominance.svg"))
    for t in traces:
        name = "timeline-%s.svg" % slug(t)
        if plot_timeline(t, rows, meta, os.path.join(out, name)):
            plots.append(("plot-timeline-" + slug(t), "%s over time" % t, name))
    return plots


# ---- Markdown and HTML ---------------------------------------------------------------

def md_table(head, body):
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def about_lines(meta):
    m = meta.get("machine", {})
    lines = ["- date: %s; command: `%s`" % (meta.get("date"), meta.get("command")),
             "- machine: %s, %s cores, %s; GPU: %s; commit %s" % (
                 m.get("cpu"), m.get("cores"), m.get("os"), m.get("gpu") or "none", m.get("commit")),
             "- cuarena backend: %s; timed runs per allocator and trace: %s (after one warm-up); "
             "generated scenarios at scale %s, seed %s" % (
                 meta.get("backend"), meta.get("repeat"), meta.get("scale"), meta.get("seed"))]
    step = meta.get("budget_step", 2 << 20)
    lines.append("- minimum budgets bisected to within %s MiB" % ("%g" % (step / 2**20)))
    for a, what in meta.get("allocators", {}).items():
        lines.append("- `%s`: %s" % (a, what))
    for a, why in meta.get("left_out", {}).items():
        lines.append("- left out: `%s` (%s)" % (a, why))
    return lines


METHOD = ("Peak mapped is what the allocator held from the driver at its highest (cuarena: its "
          "mapped bytes; cudaMalloc: the rise of the driver's used memory; cudaMallocAsync: the "
          "pool's reserved high watermark; PyTorch: max_memory_reserved), peak live the highest "
          "sum of the trace's live request sizes. The minimum budget is the smallest cap under "
          "which the whole trace replays, found by bisection, each attempt with the same trims at "
          "the teardown markers as the run that measures the peaks. Mapped - live at a marker is taken "
          "before the marker's trim; the trim (teardown markers) is the allocator's own: "
          "cua_arena_trim, cudaMemPoolTrimTo, torch.cuda.empty_cache; cudaMalloc has none.")


def failures(rows):
    return [r for r in rows if r.get("error")]


def write_markdown(out, rows, meta, tables, plots):
    lines = ["# %s" % meta.get("title", "cuarena-bench"), ""] + about_lines(meta) + ["", METHOD, ""]
    if not HAVE_MPL:
        lines += ["**%s**" % NO_PLOTS, ""]
    for pid, title, name in plots:
        if pid == "plot-summary":
            lines += ["![%s](%s)" % (title, name), ""]
    for tid, title, head, body, note in tables:
        lines += ["## %s" % title, ""]
        if note:
            lines += ["(%s)" % note, ""]
        lines += [md_table(head, body), ""]
        if tid == "dominance":
            for pid, ptitle, name in plots:
                if pid == "plot-dominance":
                    lines += ["![%s](%s)" % (ptitle, name), ""]
        if tid.startswith("trace-"):
            for pid, ptitle, name in plots:
                if pid == "plot-timeline-" + tid[len("trace-"):]:
                    lines += ["![%s](%s)" % (ptitle, name), ""]
    bad = failures(rows)
    if bad:
        lines += ["## Failed replays", ""] + ["- `%s` on %s: %s" % (r["allocator"], r["trace"], r["error"])
                                              for r in bad] + [""]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))


def inline_svg(path):
    with open(path) as f:
        text = f.read()
    start = text.find("<svg")
    return text[start:] if start >= 0 else ""


def html_cell(c):
    s = html.escape(str(c))
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)


def write_html(out, rows, meta, tables, plots):
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", "<title>%s</title>" % e(meta.get("title", "")),
             "<style>body{font-family:sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;"
             "margin:0.5em 0 1.5em}td,th{border:1px solid #bbb;padding:0.2em 0.6em;text-align:right}"
             "td:first-child,th:first-child{text-align:left}figure{margin:1em 0}svg{max-width:100%;height:auto}"
             "</style></head><body>",
             "<h1>%s</h1>" % e(meta.get("title", "")), "<ul>"]
    for line in about_lines(meta):
        parts.append("<li>%s</li>" % e(line[2:].replace("`", "")))
    parts += ["</ul>", "<p>%s</p>" % e(METHOD)]
    if not HAVE_MPL:
        parts.append("<p id='no-plots'><b>%s</b></p>" % e(NO_PLOTS))
    svgs = {pid: (title, inline_svg(os.path.join(out, name))) for pid, title, name in plots}

    def figure(pid):
        title, svg = svgs[pid]
        return "<figure id='%s'>%s<figcaption>%s</figcaption></figure>" % (e(pid), svg, e(title))

    if "plot-summary" in svgs:
        parts.append(figure("plot-summary"))
    for tid, title, head, body, note in tables:
        parts.append("<h2>%s</h2>" % e(title))
        if note:
            parts.append("<p>(%s)</p>" % e(note))
        parts.append("<table id='table-%s'><tr>%s</tr>" % (e(tid), "".join("<th>%s</th>" % e(h) for h in head)))
        for row in body:
            parts.append("<tr>%s</tr>" % "".join("<td>%s</td>" % html_cell(c) for c in row))
        parts.append("</table>")
        if tid == "dominance" and "plot-dominance" in svgs:
            parts.append(figure("plot-dominance"))
        pid = "plot-timeline-" + tid[len("trace-"):]
        if tid.startswith("trace-") and pid in svgs:
            parts.append(figure(pid))
    bad = failures(rows)
    if bad:
        parts.append("<h2>Failed replays</h2><ul id='failures'>")
        parts += ["<li>%s on %s: %s</li>" % (e(r["allocator"]), e(r["trace"]), e(r["error"])) for r in bad]
        parts.append("</ul>")
    parts.append("</body></html>")
    with open(os.path.join(out, "report.html"), "w") as f:
        f.write("\n".join(parts))


def write_all(out, rows, meta):
    """report.md, the plots and report.html; a manifest of what is in them
    (report.json: table and plot ids) for the tests."""
    tables = all_tables(rows, meta)
    plots = write_plots(out, rows, meta)
    write_markdown(out, rows, meta, tables, plots)
    write_html(out, rows, meta, tables, plots)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"tables": ["table-" + t[0] for t in tables], "plots": [p[0] for p in plots],
                   "plots_skipped": not HAVE_MPL}, f, indent=1)


def summary_text(rows, meta):
    """The three summary tables, for the terminal."""
    text = []
    for _, title, head, body, note in summary_tables(rows, meta):
        text += ["", title, md_table(head, body).replace("**", "")]
        if note:
            text.append(note)
    return "\n".join(text)


def main(argv):
    """python3 benchreport.py DIR: the report of DIR/results.jsonl and DIR/run.json."""
    out = argv[0]
    with open(os.path.join(out, "run.json")) as f:
        meta = json.load(f)
    write_all(out, load_rows(os.path.join(out, "results.jsonl")), meta)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv[1:]))
