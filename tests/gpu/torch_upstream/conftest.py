"""conftest.py - pytest set-up for PyTorch's own allocator tests ported here
(test_cuda.py, test_cuda_multigpu.py; run_upstream.py runs them twice).

CUA_UPSTREAM_USE=cuarena: before any test module is imported (pytest_configure),
cuarena is installed as torch's CUDA allocator the way tests/gpu/torch_work.py
does it for its cuarena mode: the source tree's python/ first on sys.path
(unless CUA_TORCH_INSTALLED=1: cuarena as installed), the library from
$CUARENA_LIB, cuarena.torch.install() with FallbackWarnings recorded. The mode
installed is printed in pytest's header and summary and kept for run_upstream.py.
An install that fails stops pytest (a usage error, exit status 4): the cuarena
run never quietly runs on torch's own allocator.
CUA_UPSTREAM_USE=native or unset: nothing is installed (torch's own allocator).

CUA_UPSTREAM_RESULTS=PATH: one JSON object a line is appended as each test
starts and ends and as each phase reports, so that run_upstream.py knows which
tests ran even when a test kills the process (a crash, or the watchdog below).
CUA_UPSTREAM_TEST_TIMEOUT=S: a test still running after S seconds has the
stacks of every thread dumped and the process ended (faulthandler); the stacks
go to CUA_UPSTREAM_RESULTS + ".stacks" (pytest captures stderr), else stderr.
"""

import faulthandler
import json
import os
import sys
import time
import warnings

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

USE = os.environ.get("CUA_UPSTREAM_USE", "native") or "native"
RESULTS = os.environ.get("CUA_UPSTREAM_RESULTS")
try:
    TEST_TIMEOUT = float(os.environ.get("CUA_UPSTREAM_TEST_TIMEOUT", "0") or 0)
except ValueError:
    TEST_TIMEOUT = 0.0

INSTALL = {"use": USE}
_stacks = None  # where the watchdog writes (kept open: faulthandler writes to its fd)


def _emit(obj):
    """One JSON line to CUA_UPSTREAM_RESULTS, written at once (a crash after it
    keeps it)."""
    if not RESULTS:
        return
    obj = dict(obj, time=time.time())
    line = (json.dumps(obj, default=str) + "\n").encode()
    fd = os.open(RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _install_cuarena():
    if os.environ.get("CUA_TORCH_INSTALLED") != "1":  # (else: cuarena as installed)
        sys.path.insert(0, os.path.join(ROOT, "python"))
    import cuarena.torch

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", cuarena.torch.FallbackWarning)
        cuarena.torch.install()
    import cuarena

    INSTALL.update({
        "mode": cuarena.torch.mode, "source": cuarena.torch.source, "how": cuarena.torch.how,
        "file": cuarena.__file__, "library": getattr(cuarena, "library_path", None),
        "warned": [str(w.message) for w in said
                   if issubclass(w.category, cuarena.torch.FallbackWarning)],
    })


def pytest_configure(config):
    if USE == "native":
        _emit({"event": "install", **INSTALL})
        return
    if USE != "cuarena":
        raise pytest.UsageError("CUA_UPSTREAM_USE=%r: native or cuarena" % USE)
    try:
        _install_cuarena()
    except BaseException as e:  # noqa: BLE001 (no torch, no library, no shim: say so and stop)
        INSTALL["error"] = "%s: %s" % (type(e).__name__, e)
        _emit({"event": "install", **INSTALL})
        raise pytest.UsageError("CUA_UPSTREAM_USE=cuarena: cuarena.torch.install() failed: %s"
                                % INSTALL["error"]) from None
    _emit({"event": "install", **INSTALL})


def _describe_install():
    if USE != "cuarena":
        return "torch's own CUDA allocator (CUA_UPSTREAM_USE=native)"
    return "cuarena, mode %s%s (%s)%s" % (
        INSTALL.get("mode"), "/" + INSTALL["source"] if INSTALL.get("source") else "",
        INSTALL.get("library"), "; FallbackWarning: " + " | ".join(INSTALL["warned"])
        if INSTALL.get("warned") else "")


def _describe_helpers():
    mod = sys.modules.get("upstream_common")
    return mod.describe() if mod is not None and hasattr(mod, "describe") else None


def pytest_report_header(config):
    return ["allocator: " + _describe_install()]


def pytest_runtest_logstart(nodeid, location):
    global _stacks
    _emit({"event": "start", "nodeid": nodeid})
    if TEST_TIMEOUT > 0:
        if _stacks is None:
            _stacks = open(RESULTS + ".stacks", "a") if RESULTS else sys.stderr
        faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True, file=_stacks)


def pytest_runtest_logfinish(nodeid, location):
    if TEST_TIMEOUT > 0:
        faulthandler.cancel_dump_traceback_later()
    _emit({"event": "finish", "nodeid": nodeid})


def _first_line(report):
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return crash.message.strip().splitlines()[0] if crash.message.strip() else ""
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:  # a skip
        return str(report.longrepr[2])
    text = str(report.longrepr or "").strip()
    return text.splitlines()[-1] if text else ""


def pytest_runtest_logreport(report):
    _emit({"event": "report", "nodeid": report.nodeid, "when": report.when,
           "outcome": report.outcome, "xfail": hasattr(report, "wasxfail"),
           "message": _first_line(report) if report.outcome != "passed" else "",
           "duration": round(report.duration, 3)})


def pytest_sessionfinish(session, exitstatus):
    info = {"event": "session", "exitstatus": int(exitstatus), "helpers": _describe_helpers()}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        try:
            if torch.cuda.is_available():
                info["device"] = torch.cuda.get_device_name(0)
                info["allocator_backend"] = torch.cuda.get_allocator_backend()
        except Exception as e:  # noqa: BLE001
            info["device"] = "? (%s)" % e
    _emit(info)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_line("allocator: " + _describe_install())
    helpers = _describe_helpers()
    if helpers:
        terminalreporter.write_line(helpers)
