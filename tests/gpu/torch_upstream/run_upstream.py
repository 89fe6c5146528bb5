#!/usr/bin/env python3
"""run_upstream.py - PyTorch's own CUDA allocator tests (test_cuda.py and
test_cuda_multigpu.py beside this file, ported from PyTorch), run twice in one
GPU visit: with torch's own allocator, then with cuarena installed as torch's
allocator (conftest.py, CUA_UPSTREAM_USE=cuarena). Prints a table of every
test's outcome in both runs, the counts, and the tests that pass natively but
not under cuarena, each with the first line of its failure:

    CUARENA_LIB=$PWD/build-gpu/libcuarena.so python3 tests/gpu/torch_upstream/run_upstream.py \\
        [--json PATH] [--md PATH] [-k EXPR] [--timeout S] [--strict]

(CUARENA_LIB as for tests/gpu/torch_work.py; tests/gpu/run.sh's part `upstream`
runs this.) Each run is `python3 -m pytest -p no:cacheprovider -q -rA
--junitxml=...` in a process of its own, at most --timeout seconds (the cuarena
run's install - a shim compiled now, when there is no prebuilt one - is done
first, apart, within --install-timeout). A test that kills its process (a
crash) or runs past --test-timeout is marked so, and the run goes on in a new
process without the tests already done. The junit XML of each process gives
the outcomes; conftest.py's line-per-event file fills in for a process that
died before writing it.

Exit status: 0 whatever the tests did, so that run.sh keeps the table; 2 when
pytest itself could not run (no pytest, cuarena's install failed, pytest's own
error); with --strict, 1 when a test that passes natively does not pass under
cuarena and is not in KNOWN below (with its reason).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_FILES = ("test_cuda.py", "test_cuda_multigpu.py")
MODES = ("native", "cuarena")
MAX_PROCESSES = 12  # per mode: the first, and one more after each crash or hang

# Tests that pass natively and are known not to pass under cuarena, each with
# its reason: "Class::test_name": "why". --strict does not fail for these.
KNOWN = {
    "TestCuda::test_graph_memory_stats_and_use_result_after_destroy_graph":
        "predicts torch's segments (2 MiB small, 20 MiB large, a small and a large pool per "
        "graph pool); a pool arena grows by 2 MiB pages in one range (docs/from-pytorch.md)",
    "TestCuda::test_cuda_graph_allocator_propagates_stream":
        "expects a segment per stream; a pool arena's blocks of both streams share its one "
        "range (docs/from-pytorch.md)",
    "TestBlockStateAbsorption::test_allocate_in_thread_to_pool":
        "expects torch's 4 segments (one of 2 MiB, three of 20 MiB); the pool's arena is one "
        "mapped range (docs/from-pytorch.md)",
}

FAILING = ("failed", "error", "crashed", "timeout")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="PATH", help="write every outcome, the counts and the lists here")
    p.add_argument("--md", metavar="PATH", help="write the table and the counts here (markdown)")
    p.add_argument("-k", metavar="EXPR", dest="k", help="pytest -k: only the tests it selects")
    p.add_argument("--timeout", type=float, default=270,
                   help="seconds for each mode's tests, all its processes together (default 270)")
    p.add_argument("--test-timeout", type=float, default=180,
                   help="seconds one test may run before its process is ended (default 180; 0: none)")
    p.add_argument("--install-timeout", type=float, default=300,
                   help="seconds for the cuarena install before its run (a shim compiled now; default 300)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a test passing natively does not pass under cuarena (KNOWN aside)")
    p.add_argument("--only", choices=MODES, help="run one mode only")
    p.add_argument("--keep", metavar="DIR", help="keep the junit XML, event files and pytest output here")
    p.add_argument("--python", default=sys.executable, help="the Python that runs pytest")
    return p.parse_args(argv)


def test_id(nodeid):
    """"test_cuda.py::TestCuda::test_x" -> "TestCuda::test_x" (the table's id)."""
    parts = nodeid.split("::")
    return "::".join(parts[1:]) if len(parts) > 1 else parts[0]


def first_line(text):
    text = (text or "").strip()
    return text.splitlines()[0].strip() if text else ""


# ---- reading one pytest process's results ---------------------------------------------------

def read_junit(path):
    """{id: record} from a junit XML file; None when there is none (the process died)."""
    if not os.path.exists(path):
        return None
    try:
        tree = ET.parse(path)
    except ET.ParseError:
        return None
    out = {}
    for case in tree.iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        cls = classname.split(".")[-1] if classname else ""
        tid = "%s::%s" % (cls, name) if cls else name
        rec = {"outcome": "passed", "message": "", "seconds": float(case.get("time") or 0)}
        for child in case:
            tag = child.tag
            msg = first_line(child.get("message") or child.text or "")
            if tag == "failure":
                rec.update(outcome="failed", message=msg)
            elif tag == "error":
                if rec["outcome"] != "failed":  # (an error in teardown after a failure)
                    rec.update(outcome="error", message=msg)
            elif tag == "skipped":
                xfail = (child.get("type") or "") == "pytest.xfail"
                rec.update(outcome="xfailed" if xfail else "skipped", message=msg)
        out[tid] = rec
    return out


def read_events(path):
    events = []
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass  # (a line cut short by a crash)
    return events


def outcomes_from_events(events):
    """{nodeid: record} from conftest's report events, and the tests started but
    never finished (the process died in them)."""
    out, started, finished = {}, [], set()
    for e in events:
        kind = e.get("event")
        if kind == "start":
            started.append(e["nodeid"])
        elif kind == "finish":
            finished.add(e["nodeid"])
        elif kind == "report":
            rec = out.setdefault(e["nodeid"], {"outcome": "passed", "message": "", "seconds": 0.0})
            rec["seconds"] += e.get("duration") or 0
            when, outcome = e.get("when"), e.get("outcome")
            if outcome == "skipped" and e.get("xfail"):
                rec.update(outcome="xfailed", message=e.get("message", ""))
            elif when == "setup" and outcome == "failed":
                rec.update(outcome="error", message=e.get("message", ""))
            elif when == "setup" and outcome == "skipped":
                rec.update(outcome="skipped", message=e.get("message", ""))
            elif when == "call" and outcome in ("failed", "skipped"):
                rec.update(outcome=outcome, message=e.get("message", ""))
            elif when == "teardown" and outcome == "failed" and rec["outcome"] == "passed":
                rec.update(outcome="error", message="(teardown) " + e.get("message", ""))
    unfinished = [n for n in started if n not in finished]
    return out, unfinished


# ---- running one mode ---------------------------------------------------------------------

def env_for(mode, results=None, test_timeout=0):
    env = dict(os.environ)
    env["CUA_UPSTREAM_USE"] = mode
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("CUA_UPSTREAM_RESULTS", None)
    if results:
        env["CUA_UPSTREAM_RESULTS"] = results
    if test_timeout and test_timeout > 0:
        env["CUA_UPSTREAM_TEST_TIMEOUT"] = "%g" % test_timeout
    else:
        env.pop("CUA_UPSTREAM_TEST_TIMEOUT", None)
    return env


def run_process(cmd, env, timeout, cwd):
    """(returncode, output, timed_out, seconds); on a time-out: SIGINT first
    (pytest then writes its junit XML), SIGKILL 20 s later."""
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return None, "cannot start %s: %s\n" % (cmd[0], e), False, 0.0
    timed_out = False
    try:
        out, _ = p.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(p.pid, signal.SIGINT)
        except OSError:
            pass
        try:
            out, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            out, _ = p.communicate()
    return p.returncode, out.decode(errors="replace"), timed_out, time.monotonic() - t0


WARM_UP = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import conftest
conftest._install_cuarena()
print("cuarena install: " + json.dumps(conftest.INSTALL))
"""


def warm_up(args, workdir):
    """cuarena's install once before its timed run: a shim compiled now (no
    prebuilt one for this torch) is compiled here and cached by torch. None, or
    why the cuarena run cannot go."""
    print("== upstream cuarena: install first (%s)" % (os.environ.get("CUARENA_LIB") or
                                                      "CUARENA_LIB unset"), flush=True)
    rc, out, timed_out, secs = run_process([args.python, "-c", WARM_UP, HERE],
                                           env_for("cuarena"), args.install_timeout, workdir)
    sys.stdout.write(out)
    print("== upstream cuarena: install took %.0f s, exit %s" % (secs, rc), flush=True)
    if timed_out:
        return "cuarena.torch.install() took more than %g s (--install-timeout)" % args.install_timeout
    if rc != 0:
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        return "cuarena.torch.install() failed: %s" % (lines[-1] if lines else "exit %s" % rc)
    return None


def run_mode(mode, args, workdir):
    """Runs the tests in one mode; returns the mode's summary and {id: record}."""
    info = {"mode": mode, "processes": [], "install": None, "session": None, "error": None}
    results, nodeids = {}, {}
    t_start = time.monotonic()
    if mode == "cuarena":
        why = warm_up(args, workdir)
        if why:
            info["error"] = why
            info["seconds"] = time.monotonic() - t_start
            return info, results
    deadline = time.monotonic() + args.timeout
    deselect = []
    for n in range(1, MAX_PROCESSES + 1):
        left = deadline - time.monotonic()
        if left < 5:
            break
        xml = os.path.join(workdir, "%s-%d.xml" % (mode, n))
        events_path = os.path.join(workdir, "%s-%d.jsonl" % (mode, n))
        cmd = [args.python, "-m", "pytest"] + [os.path.join(HERE, f) for f in TEST_FILES]
        cmd += ["--rootdir", HERE, "-p", "no:cacheprovider", "-q", "-rA", "--junitxml=" + xml]
        if args.k:
            cmd += ["-k", args.k]
        for nodeid in deselect:
            cmd += ["--deselect", nodeid]
        test_timeout = min(args.test_timeout, left) if args.test_timeout > 0 else 0
        print("== upstream %s: pytest, process %d, %.0f s left%s" % (
            mode, n, left, ", %d tests done before" % len(deselect) if deselect else ""),
            flush=True)
        rc, out, timed_out, secs = run_process(cmd, env_for(mode, events_path, test_timeout),
                                               left, HERE)
        sys.stdout.write(out)
        with open(os.path.join(workdir, "%s-%d.log" % (mode, n)), "w") as f:
            f.write(out)
        print("== upstream %s: process %d exit %s after %.0f s%s" % (
            mode, n, rc, secs, " (the time limit ran out)" if timed_out else ""), flush=True)

        events = read_events(events_path)
        for e in events:
            if e.get("event") == "install":
                info["install"] = {k: v for k, v in e.items() if k not in ("event", "time")}
            elif e.get("event") == "session":
                info["session"] = {k: v for k, v in e.items() if k not in ("event", "time")}
            elif e.get("nodeid"):
                nodeids[test_id(e["nodeid"])] = e["nodeid"]
        from_events, unfinished = outcomes_from_events(events)
        junit = read_junit(xml)
        got = dict(junit or {})
        for nodeid, rec in from_events.items():
            got.setdefault(test_id(nodeid), rec)  # (the junit file first, where there is one)
        stacks = events_path + ".stacks"  # (conftest's watchdog: a test ran past --test-timeout)
        hung = os.path.exists(stacks) and os.path.getsize(stacks) > 0
        if hung:
            with open(stacks, errors="replace") as f:
                print("== upstream %s: a test ran past %g s; the stacks of its process:\n%s"
                      % (mode, test_timeout, f.read()), flush=True)
        for nodeid in unfinished:
            tid = test_id(nodeid)
            if timed_out:
                got[tid] = {"outcome": "timeout", "seconds": 0.0,
                            "message": "not finished when the run's %g s ran out (--timeout)"
                                       % args.timeout}
            elif hung:
                got[tid] = {"outcome": "timeout", "seconds": test_timeout,
                            "message": "still running after %g s: its process was ended "
                                       "(--test-timeout; the stacks are in the log)" % test_timeout}
            else:
                got[tid] = {"outcome": "crashed", "seconds": 0.0,
                            "message": "the process died in this test (exit status %s)" % rc}
        for tid, rec in got.items():
            rec["process"] = n
            results[tid] = rec
        info["processes"].append({"exit": rc, "seconds": round(secs, 1), "timed_out": timed_out,
                                  "tests": len(got), "unfinished": [test_id(u) for u in unfinished]})

        if rc is None or (rc not in (0, 1, 5) and not unfinished and not got):
            # pytest did not run the tests: no pytest, a usage error (a failed install), its own error
            lines = [ln for ln in out.strip().splitlines() if ln.strip()]
            info["error"] = "pytest could not run (exit %s): %s" % (rc, lines[-1] if lines else "")
            break
        if timed_out or not unfinished:
            break
        done = set(deselect) | {nodeids.get(t, t) for t in got} | set(unfinished)
        deselect = sorted(d for d in done if "::" in d)
    info["seconds"] = time.monotonic() - t_start
    for tid in results:
        results[tid]["nodeid"] = nodeids.get(tid)
    return info, results


# ---- the report ---------------------------------------------------------------------------

def counts(results, ids):
    c = {"passed": 0, "failed": 0, "skipped": 0, "not run": 0}
    for tid in ids:
        o = results.get(tid, {}).get("outcome")
        if o is None:
            c["not run"] += 1
        elif o in FAILING:
            c["failed"] += 1
        elif o in ("skipped", "xfailed"):
            c["skipped"] += 1
        else:
            c["passed"] += 1
    return c


def cell(rec):
    if rec is None:
        return "not run"
    o = rec["outcome"]
    return "**%s**" % o if o in FAILING else o


def mode_name(info):
    inst = (info or {}).get("install") or {}
    if info and info["mode"] == "cuarena" and inst.get("mode"):
        return "cuarena (%s%s)" % (inst["mode"], "/" + inst["source"] if inst.get("source") else "")
    return info["mode"] if info else "?"


def build_report(infos, results, args):
    ids = []
    for mode in MODES:
        for tid in results.get(mode, {}):
            if tid not in ids:
                ids.append(tid)
    nat, cua = results.get("native", {}), results.get("cuarena", {})
    regressions, improvements = [], []
    for tid in ids:
        n, c = nat.get(tid), cua.get(tid)
        if n and n["outcome"] == "passed" and "native" in infos and cua and \
                (c is None or c["outcome"] != "passed"):
            msg = (c or {}).get("message") or ""
            regressions.append({"id": tid, "cuarena": c["outcome"] if c else "not run",
                                "message": msg if c else "not run under cuarena",
                                "known": KNOWN.get(tid)})
        if c and c["outcome"] == "passed" and n and n["outcome"] in FAILING:
            improvements.append({"id": tid, "native": n["outcome"], "message": n.get("message", "")})
    summary = {}
    for mode in MODES:
        if mode in infos:
            summary[mode] = counts(results.get(mode, {}), ids)
    return ids, summary, regressions, improvements


def report_lines(infos, results, ids, summary, regressions, improvements):
    """The markdown report: the header, the table, the counts and the lists."""
    lines = ["## PyTorch's allocator tests (ported from test_cuda.py), natively and under cuarena", ""]
    sess = next((i["session"] for i in infos.values() if i.get("session")), None) or {}
    if sess.get("torch"):
        lines.append("torch %s, CUDA %s, %s (allocator backend natively: %s)" % (
            sess.get("torch"), sess.get("cuda"), sess.get("device"),
            ((infos.get("native") or {}).get("session") or {}).get("allocator_backend")))
    helpers = {m: ((infos[m].get("session") or {}).get("helpers")) for m in infos}
    same = len(set(h for h in helpers.values() if h)) == 1
    if same:
        lines.append(next(h for h in helpers.values() if h))
    for mode in MODES:
        info = infos.get(mode)
        if not info:
            continue
        inst = info.get("install") or {}
        if mode == "cuarena" and inst.get("how"):
            lines.append("cuarena: %s (library %s)" % (inst["how"], inst.get("library")))
        if helpers.get(mode) and not same:
            lines.append("%s run, %s" % (mode, helpers[mode]))
        if info.get("error"):
            lines.append("%s run: %s" % (mode, info["error"]))
    lines.append("")
    modes = [m for m in MODES if m in infos]
    lines.append("| test | " + " | ".join(modes) + " |")
    lines.append("|---|" + "---|" * len(modes))
    for tid in ids:
        lines.append("| %s | %s |" % (tid, " | ".join(cell(results.get(m, {}).get(tid)) for m in modes)))
    lines.append("")
    lines += count_lines(infos, summary, regressions, improvements)
    return lines


def count_lines(infos, summary, regressions, improvements):
    """The counts and the lists, each line beginning "upstream: " (run.sh greps them)."""
    out = []
    for mode in MODES:
        if mode in summary:
            c = summary[mode]
            out.append("upstream: %s: %d passed, %d failed, %d skipped, %d not run (%.0f s)%s" % (
                mode_name(infos[mode]), c["passed"], c["failed"], c["skipped"], c["not run"],
                infos[mode].get("seconds", 0),
                "; " + infos[mode]["error"] if infos[mode].get("error") else ""))
    if "native" in infos and "cuarena" in infos and infos["cuarena"].get("error") and \
            not any(p["tests"] for p in infos["cuarena"]["processes"]):
        out.append("upstream: passes natively, fails under cuarena: ? (the cuarena run could not run)")
    elif "native" in infos and "cuarena" in infos:
        known = sum(1 for r in regressions if r["known"])
        out.append("upstream: passes natively, fails under cuarena: %d%s" % (
            len(regressions), " (%d of them known)" % known if known else ""))
        for r in regressions:
            out.append("upstream:   %s [%s]: %s%s" % (r["id"], r["cuarena"], r["message"] or "-",
                                                     "  (known: %s)" % r["known"] if r["known"] else ""))
        out.append("upstream: fails natively, passes under cuarena: %d" % len(improvements))
        for r in improvements:
            out.append("upstream:   %s [native %s]: %s" % (r["id"], r["native"], r["message"] or "-"))
    return out


def main(argv=None):
    args = parse_args(argv)
    workdir = args.keep or tempfile.mkdtemp(prefix="cua-upstream-")
    os.makedirs(workdir, exist_ok=True)
    infos, results = {}, {}
    for mode in MODES:
        if args.only and mode != args.only:
            continue
        infos[mode], results[mode] = run_mode(mode, args, workdir)
    ids, summary, regressions, improvements = build_report(infos, results, args)
    lines = report_lines(infos, results, ids, summary, regressions, improvements)
    print("\n".join(lines), flush=True)
    if args.md:
        with open(args.md, "w") as f:
            f.write("\n".join(lines) + "\n")

    could_not_run = [m for m, i in infos.items() if i.get("error")]
    strict_failures = [r["id"] for r in regressions if not r["known"]]
    status = 0
    if could_not_run:
        status = 2
    elif args.strict and strict_failures:
        status = 1
    if args.json:
        doc = {
            "argv": sys.argv[1:], "known": KNOWN, "modes": infos, "counts": summary,
            "tests": [dict({"id": tid}, **{m: results.get(m, {}).get(tid) for m in infos}) for tid in ids],
            "regressions": regressions, "improvements": improvements,
            "strict_failures": strict_failures, "could_not_run": could_not_run,
            "exit_status": status, "workdir": workdir,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
            f.write("\n")
    if could_not_run:
        print("upstream: pytest could not run: %s" % ", ".join(
            "%s (%s)" % (m, infos[m]["error"]) for m in could_not_run), flush=True)
    if args.strict and strict_failures:
        print("upstream: --strict: %d test(s) pass natively and not under cuarena, not in KNOWN"
              % len(strict_failures), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
