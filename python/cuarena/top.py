"""python -m cuarena top [PID] - a live view of a running process's arenas.

The process publishes its device report into a small file every second
(cuarena.publish(), or CUARENA_PUBLISH=1 in its environment); this reads it
and shows, per device, the driver's figures and cuarena's sums, and per arena
what it holds live, maps and caches, its largest free block, fragmentation,
peak, limit, OOM answers and trims, refreshed every second. Without PID: every
process of this user that publishes. --once prints one view and exits (status
1 when no process publishes).
"""

import argparse
import json
import os
import sys
import time

import cuarena


def fmt_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024
    return "%.1f TiB" % n


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def published(directory):
    """(pid, path) of every process that publishes into directory and runs."""
    out = []
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for name in sorted(names):
        stem, ext = os.path.splitext(name)
        if ext == ".json" and stem.isdigit() and alive(int(stem)):
            out.append((int(stem), os.path.join(directory, name)))
    return out


def read_report(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None  # gone, or (never: the writer replaces it atomically) cut


COLUMNS = [("ARENA", 20), ("LIVE", 10), ("MAPPED", 10), ("CACHED", 10), ("LARGEST FREE", 12),
           ("FRAG", 5), ("PEAK MAPPED", 11), ("LIMIT", 10), ("OOMS", 5), ("TRIMS", 6)]


def row(cells):
    parts = []
    for (title, width), cell in zip(COLUMNS, cells):
        parts.append(str(cell).ljust(width) if title == "ARENA" else str(cell).rjust(width))
    return "  " + " ".join(parts)


def render(rep, now=None):
    """The view of one published report, as lines."""
    now = time.time() if now is None else now
    age = now - rep.get("time", now)
    interval = rep.get("interval") or 1.0
    cmd = " ".join(rep.get("argv") or []) or "?"
    head = "pid %s: %s  (cuarena %s, report %.1f s old%s)" % (
        rep.get("pid"), cmd[:60], rep.get("version", "?"), max(age, 0.0),
        ", stale" if age > 3 * interval else "")
    lines = [head]
    devices = rep.get("devices") or {}
    if not devices:
        lines.append("  no arena yet")
    for dev in sorted(devices, key=int):
        d = devices[dev]
        lines.append("device %s: driver used %s of %s; cuarena mapped %s (live %s, cached %s); "
                     "unaccounted %s; headroom %s; peak mapped %s" % (
                         dev, fmt_bytes(d.get("driver_used_bytes", 0)),
                         fmt_bytes(d.get("driver_total_bytes", 0)),
                         fmt_bytes(d.get("mapped_bytes", 0)), fmt_bytes(d.get("live_bytes", 0)),
                         fmt_bytes(d.get("cached_bytes", 0)),
                         fmt_bytes(d.get("unaccounted_bytes", 0)),
                         fmt_bytes(d.get("headroom_bytes", 0)),
                         fmt_bytes(d.get("peak_mapped_bytes", 0))))
        lines.append(row([t for t, _ in COLUMNS]))
        arenas = sorted(d.get("arenas", []), key=lambda a: -a.get("mapped_bytes", 0))
        for a in arenas:
            limit = a.get("limit_bytes", 0)
            lines.append(row([
                a.get("name", "?")[:20], fmt_bytes(a.get("live_bytes", 0)),
                fmt_bytes(a.get("mapped_bytes", 0)), fmt_bytes(a.get("cached_bytes", 0)),
                fmt_bytes(a.get("largest_free_bytes", 0)),
                "%d%%" % round(100 * a.get("free_fragmentation", 0.0)),
                fmt_bytes(a.get("peak_mapped_bytes", 0)), fmt_bytes(limit) if limit else "-",
                a.get("oom_count", 0), a.get("trim_count", 0)]))
    return lines


def view(args):
    """(lines, number of processes shown)."""
    directory = args.dir or cuarena.publish_dir()
    if args.pid is not None:
        path = cuarena.publish_path(args.pid) if not args.dir else \
            os.path.join(args.dir, "%d.json" % args.pid)
        if not alive(args.pid):
            return ["process %d is not running" % args.pid], 0
        rep = read_report(path)
        if rep is None:
            return ["process %d publishes no report in %s: start it with CUARENA_PUBLISH=1 in "
                    "its environment, or call cuarena.publish()" % (args.pid, directory)], 0
        return render(rep), 1
    lines, shown = [], 0
    for pid, path in published(directory):
        rep = read_report(path)
        if rep is None:
            continue
        if shown:
            lines.append("")
        lines += render(rep)
        shown += 1
    if not shown:
        lines = ["no process publishes its report in %s (start one with CUARENA_PUBLISH=1 in "
                 "its environment, or call cuarena.publish())" % directory]
    return lines, shown


def main(argv):
    p = argparse.ArgumentParser(prog="python -m cuarena top", description=__doc__.split("\n\n")[0])
    p.add_argument("pid", nargs="?", type=int, help="the process (default: every one that publishes)")
    p.add_argument("--once", action="store_true", help="print one view and exit")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between views (default 1)")
    p.add_argument("--dir", help="where the reports are (default: cuarena.publish_dir())")
    args = p.parse_args(argv)
    if args.once:
        lines, shown = view(args)
        print("\n".join(lines))
        return 0 if shown else 1
    tty = sys.stdout.isatty()
    try:
        while True:
            lines, shown = view(args)
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")  # home, clear
            sys.stdout.write("cuarena top, every %g s (Ctrl-C quits)  %s\n" % (
                args.interval, time.strftime("%H:%M:%S")))
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            if args.pid is not None and not shown and not alive(args.pid):
                return 1  # the process ended
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
