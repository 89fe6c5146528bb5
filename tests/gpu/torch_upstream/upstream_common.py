"""upstream_common.py - what the ported PyTorch tests (test_cuda.py,
test_cuda_multigpu.py beside this file) import from torch.testing._internal:
taken from there where this torch ships it, else small stand-ins written after
PyTorch's own (common_utils.py, common_cuda.py) that do the same for what these
tests use. HELPERS says which were used (conftest.py prints it at the end of pytest's
output); CUA_UPSTREAM_LOCAL_HELPERS=1 uses the stand-ins alone.

torch's pip wheel ships torch/testing/_internal, but common_utils imports the
`expecttest` package, which torch does not depend on: where it is missing, a
stub of its TestCase (assertExpectedInline skips) is put in sys.modules first,
so that torch's own TestCase, assertEqual included, can still be used.

Parts of this file are derived from PyTorch (torch/testing/_internal/common_utils.py:
get_cycles_per_ms, setBlasBackendsToDefaultFinally, the non-default stream
policy, parametrize's naming), under the license below.
"""
#
# PyTorch's license (BSD-3-Clause), which these ported tests keep:
#
# From PyTorch:
#
# Copyright (c) 2016-     Facebook, Inc            (Adam Paszke)
# Copyright (c) 2014-     Facebook, Inc            (Soumith Chintala)
# Copyright (c) 2011-2014 Idiap Research Institute (Ronan Collobert)
# Copyright (c) 2012-2014 Deepmind Technologies    (Koray Kavukcuoglu)
# Copyright (c) 2011-2012 NEC Laboratories America (Koray Kavukcuoglu)
# Copyright (c) 2011-2013 NYU                      (Clement Farabet)
# Copyright (c) 2006-2010 NEC Laboratories America (Ronan Collobert, Leon Bottou, Iain Melvin, Jason Weston)
# Copyright (c) 2006      Idiap Research Institute (Samy Bengio)
# Copyright (c) 2001-2004 Idiap Research Institute (Ronan Collobert, Samy Bengio, Johnny Mariethoz)
#
# From Caffe2:
#
# Copyright (c) 2016-present, Facebook Inc. All rights reserved.
#
# All contributions by Facebook:
# Copyright (c) 2016 Facebook Inc.
#
# All contributions by Google:
# Copyright (c) 2015 Google Inc.
# All rights reserved.
#
# All contributions by Yangqing Jia:
# Copyright (c) 2015 Yangqing Jia
# All rights reserved.
#
# All contributions from Caffe:
# Copyright(c) 2013, 2014, 2015, the respective contributors
# All rights reserved.
#
# All other contributions:
# Copyright(c) 2015, 2016 the respective contributors
# All rights reserved.
#
# Caffe2 uses a copyright model similar to Caffe: each contributor holds
# copyright over their contributions to Caffe2. The project versioning records
# all such contribution and copyright details. If a contributor wants to further
# mark their specific copyright on a particular contribution, they should
# indicate their copyright solely in the commit message of the change when it is
# committed.
#
# All rights reserved.
#
# Redistribution and use in source and binary forms, with or without
# modification, are permitted provided that the following conditions are met:
#
# 1. Redistributions of source code must retain the above copyright
#    notice, this list of conditions and the following disclaimer.
#
# 2. Redistributions in binary form must reproduce the above copyright
#    notice, this list of conditions and the following disclaimer in the
#    documentation and/or other materials provided with the distribution.
#
# 3. Neither the names of Facebook, Deepmind Technologies, NYU, NEC Laboratories America
#    and IDIAP Research Institute nor the names of its contributors may be
#    used to endorse or promote products derived from this software without
#    specific prior written permission.
#
# THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
# AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
# IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE
# ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE
# LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
# CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
# SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
# INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
# CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
# ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
# POSSIBILITY OF SUCH DAMAGE.

import functools
import importlib
import os
import platform
import statistics
import sys
import types
import unittest

import torch

HELPERS = {}  # name -> "torch" (torch.testing._internal) or "local" (the stand-in here)


def _stub_expecttest():
    """A stand-in for the expecttest package, only where it is not installed."""
    try:
        importlib.import_module("expecttest")
        return
    except ImportError:
        pass
    stub = types.ModuleType("expecttest")

    class TestCase(unittest.TestCase):
        longMessage = True

        def assertExpectedInline(self, *args, **kwargs):
            raise unittest.SkipTest("expecttest is not installed")

        def assertExpectedRaisesInline(self, *args, **kwargs):
            raise unittest.SkipTest("expecttest is not installed")

    stub.TestCase = TestCase
    stub.ACCEPT = False
    sys.modules["expecttest"] = stub
    HELPERS["expecttest"] = "local stub"


def _import(name):
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 (a partial torch.testing: the stand-ins below)
        HELPERS[name + " (import failed)"] = "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return None


if os.environ.get("CUA_UPSTREAM_LOCAL_HELPERS") == "1":  # the stand-ins only (a check of them)
    _cu = _cc = _atl = None
    HELPERS["torch.testing._internal"] = "not used (CUA_UPSTREAM_LOCAL_HELPERS=1)"
else:
    _stub_expecttest()
    _cu = _import("torch.testing._internal.common_utils")
    _cc = _import("torch.testing._internal.common_cuda") if _cu is not None else None
    _atl = _import("torch.testing._internal.autocast_test_lists") if _cu is not None else None


def _pick(module, name, local):
    if module is not None and hasattr(module, name):
        HELPERS[name] = "torch"
        return getattr(module, name)
    HELPERS[name] = "local"
    return local


# ---- flags ---------------------------------------------------------------------------
TEST_CUDA = _pick(_cu, "TEST_CUDA", torch.cuda.is_available())
IS_WINDOWS = _pick(_cu, "IS_WINDOWS", sys.platform == "win32")
IS_LINUX = _pick(_cu, "IS_LINUX", sys.platform.startswith("linux"))
IS_X86 = _pick(_cu, "IS_X86", platform.machine() in ("x86_64", "i386"))
IS_JETSON = _pick(_cu, "IS_JETSON", False)
IS_FBCODE = _pick(_cu, "IS_FBCODE", os.getenv("PYTORCH_TEST_FBCODE") == "1")
IS_SANDCASTLE = _pick(_cu, "IS_SANDCASTLE", os.getenv("SANDCASTLE") == "1"
                      or os.getenv("TW_JOB_USER") == "sandcastle")
TEST_WITH_ROCM = _pick(_cu, "TEST_WITH_ROCM", torch.version.hip is not None)
TEST_NUMPY = _pick(_cu, "TEST_NUMPY", importlib.util.find_spec("numpy") is not None)
TEST_CUDA_GRAPH = _pick(_cu, "TEST_CUDA_GRAPH", TEST_CUDA
                        and os.getenv("PYTORCH_TEST_SKIP_CUDAGRAPH", "0") != "1"
                        and (torch.version.cuda is not None or torch.version.hip is not None))
TEST_CUDAMALLOCASYNC = _pick(_cu, "TEST_CUDAMALLOCASYNC", TEST_CUDA
                             and torch.cuda.get_allocator_backend() == "cudaMallocAsync")
_conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "") + "," + os.environ.get("PYTORCH_ALLOC_CONF", "")
EXPANDABLE_SEGMENTS = _pick(_cu, "EXPANDABLE_SEGMENTS", "expandable_segments:True" in _conf)
MI200_ARCH = _pick(_cu, "MI200_ARCH", ("gfx90a", "gfx942"))
MI300_ARCH = _pick(_cu, "MI300_ARCH", ("gfx942",))
TEST_MULTIGPU = _pick(_cc, "TEST_MULTIGPU", TEST_CUDA and torch.cuda.device_count() >= 2)
TEST_CUDNN = _pick(_cc, "TEST_CUDNN", TEST_CUDA and torch.backends.cudnn.is_available())


# ---- decorators ----------------------------------------------------------------------
def _serialTest(condition=True):
    def decorator(fn):
        return fn
    return decorator


def _markDynamoStrictTest(cls_or_func=None, nopython=False):
    if cls_or_func is None:
        return lambda c: c
    return cls_or_func


def _skipIfRocm(func=None, *, msg="test doesn't currently work on the ROCm stack"):
    def dec(fn):
        return unittest.skipIf(TEST_WITH_ROCM, msg)(fn)
    return dec(func) if func is not None else dec


def _skipIfRocmArch(arch):
    def dec(fn):
        return unittest.skipIf(TEST_WITH_ROCM, "skipped on ROCm %s" % (arch,))(fn)
    return dec


def _skipCUDAMemoryLeakCheckIf(condition):
    def dec(fn):
        if getattr(fn, "_do_cuda_memory_leak_check", True):
            fn._do_cuda_memory_leak_check = not condition
        return fn
    return dec


def _skipCUDANonDefaultStreamIf(condition):
    def dec(fn):
        if getattr(fn, "_do_cuda_non_default_stream", True):
            fn._do_cuda_non_default_stream = not condition
        return fn
    return dec


def _setBlasBackendsToDefaultFinally(fn):
    @functools.wraps(fn)
    def _fn(*args, **kwargs):
        _preferred_backend = torch.backends.cuda.preferred_blas_library()
        try:
            fn(*args, **kwargs)
        finally:
            torch.backends.cuda.preferred_blas_library(_preferred_backend)
    return _fn


class _parametrize:
    """@parametrize("name", values) / ("a,b", [(1, 2), ...]): test_x_name_value."""

    def __init__(self, arg_str, arg_values, name_fn=None):
        self.arg_names = [s.strip() for s in arg_str.split(",") if s.strip()]
        self.arg_values = list(arg_values)
        self.name_fn = name_fn

    def __call__(self, fn):
        fn._cua_parametrize = getattr(fn, "_cua_parametrize", []) + [self]
        return fn

    def cases(self):
        for value in self.arg_values:
            values = value if len(self.arg_names) > 1 else (value,)
            if self.name_fn is not None:
                name = self.name_fn(*values)
            else:
                name = "_".join("%s_%s" % (n, v) for n, v in zip(self.arg_names, values))
            yield name, dict(zip(self.arg_names, values))


def _instantiate_parametrized_tests(cls):
    for attr, fn in list(vars(cls).items()):
        params = getattr(fn, "_cua_parametrize", None)
        if not params:
            continue
        delattr(cls, attr)
        combos = [("", {})]
        for p in reversed(params):  # the decorator nearest the function first
            combos = [(a + "_" + n if a else n, dict(ka, **kb)) for a, ka in combos
                      for n, kb in p.cases()]
        for suffix, kwargs in combos:
            def test(self, _fn=fn, _kwargs=kwargs):
                return _fn(self, **_kwargs)
            test.__name__ = "%s_%s" % (attr, suffix)
            test.__doc__ = fn.__doc__
            for key, value in vars(fn).items():
                if key != "_cua_parametrize":
                    setattr(test, key, value)
            setattr(cls, test.__name__, test)
    return cls


@functools.lru_cache(maxsize=None)
def _get_cycles_per_ms() -> float:
    """Approximate number of cycles per millisecond for torch.cuda._sleep"""

    def measure() -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(1000000)
        end.record()
        end.synchronize()
        cycles_per_ms = 1000000 / start.elapsed_time(end)
        return cycles_per_ms

    # Get 10 values and remove the 2 max and 2 min and return the avg.
    # This is to avoid system disturbance that skew the results, e.g.
    # the very first cuda call likely does a bunch of init, which takes
    # much longer than subsequent calls.
    num = 10
    vals = []
    for _ in range(num):
        vals.append(measure())
    vals = sorted(vals)
    return statistics.mean(vals[2: num - 2])


class _CudaNonDefaultStream:
    """Runs a test with a new, non-default current stream on every device
    (common_utils.CudaNonDefaultStream)."""

    def __enter__(self):
        beforeDevice = torch.cuda.current_device()
        self.beforeStreams = []
        for d in range(torch.cuda.device_count()):
            self.beforeStreams.append(torch.cuda.current_stream(d))
            deviceStream = torch.cuda.Stream(device=d)
            self.beforeStreams[-1].synchronize()
            torch.cuda.set_stream(deviceStream)
        torch.cuda.set_device(beforeDevice)

    def __exit__(self, exc_type, exc_value, traceback):
        beforeDevice = torch.cuda.current_device()
        for d in range(torch.cuda.device_count()):
            torch.cuda.set_stream(self.beforeStreams[d])
        torch.cuda.set_device(beforeDevice)


def _has_tensor(x):
    if isinstance(x, torch.Tensor):
        return True
    if isinstance(x, (list, tuple)):
        return any(_has_tensor(v) for v in x)
    if isinstance(x, dict):
        return any(_has_tensor(v) for v in x.values())
    return False


class _TestCase(unittest.TestCase):
    """unittest.TestCase with common_utils.TestCase's assertEqual for tensors
    (through torch.testing.assert_close) and its non-default stream policy."""

    _do_cuda_memory_leak_check = False
    _do_cuda_non_default_stream = False

    def __init__(self, methodName="runTest"):
        super().__init__(methodName)
        test_method = getattr(self, methodName, None)
        if test_method is None:
            return
        self._do_cuda_non_default_stream &= getattr(test_method, "_do_cuda_non_default_stream", True)
        fullname = self.id().lower()
        if (self._do_cuda_non_default_stream and TEST_CUDA and not IS_WINDOWS
                and ("gpu" in fullname or "cuda" in fullname)):
            @functools.wraps(test_method)
            def wrapper(*args, **kwargs):
                with _CudaNonDefaultStream():
                    return test_method(*args, **kwargs)
            setattr(self, methodName, wrapper)

    def assertEqual(self, x, y, msg=None, *, atol=None, rtol=None, equal_nan=True,
                    exact_dtype=True, exact_device=False, **kwargs):
        if not (_has_tensor(x) or _has_tensor(y)):
            return super().assertEqual(x, y, msg)
        if isinstance(x, torch.Tensor) and not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y, dtype=x.dtype, device=x.device)
            exact_dtype = False
        elif isinstance(y, torch.Tensor) and not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x, dtype=y.dtype, device=y.device)
            exact_dtype = False
        if atol is None or rtol is None:
            atol = rtol = None
        torch.testing.assert_close(x, y, atol=atol, rtol=rtol, equal_nan=equal_nan,
                                   check_dtype=exact_dtype, check_device=exact_device,
                                   msg=msg)

    def assertNotEqual(self, x, y, msg=None, *, atol=None, rtol=None, **kwargs):
        if not (_has_tensor(x) or _has_tensor(y)):
            return super().assertNotEqual(x, y, msg)
        try:
            self.assertEqual(x, y, atol=atol, rtol=rtol, **kwargs)
        except AssertionError:
            return
        raise AssertionError(msg or "Tensors are equal")

    def assertLeaksNoCudaTensors(self, name=None):
        raise unittest.SkipTest("needs torch.testing._internal.common_utils (its CUDA leak check)")

    def wrap_with_cuda_memory_check(self, method):
        raise unittest.SkipTest("needs torch.testing._internal.common_utils (its CUDA leak check)")


TestCase = _pick(_cu, "TestCase", _TestCase)
serialTest = _pick(_cu, "serialTest", _serialTest)
markDynamoStrictTest = _pick(_cu, "markDynamoStrictTest", _markDynamoStrictTest)
# (the stand-ins always: on a CUDA build torch's skip nothing either, and their
# signatures changed between versions - skipIfRocm(msg=...))
skipIfRocm = _pick(None, "skipIfRocm", _skipIfRocm)
skipIfRocmArch = _pick(None, "skipIfRocmArch", _skipIfRocmArch)
skipCUDAMemoryLeakCheckIf = _pick(_cu, "skipCUDAMemoryLeakCheckIf", _skipCUDAMemoryLeakCheckIf)
skipCUDANonDefaultStreamIf = _pick(_cu, "skipCUDANonDefaultStreamIf", _skipCUDANonDefaultStreamIf)
setBlasBackendsToDefaultFinally = _pick(_cu, "setBlasBackendsToDefaultFinally",
                                        _setBlasBackendsToDefaultFinally)
get_cycles_per_ms = _pick(_cu, "get_cycles_per_ms", _get_cycles_per_ms)
# parametrize and instantiate_parametrized_tests go together: both torch's or both local
if _cu is not None and hasattr(_cu, "parametrize") and hasattr(_cu, "instantiate_parametrized_tests"):
    parametrize = _pick(_cu, "parametrize", None)
    instantiate_parametrized_tests = _pick(_cu, "instantiate_parametrized_tests", None)
else:
    parametrize = _pick(None, "parametrize", _parametrize)
    instantiate_parametrized_tests = _pick(None, "instantiate_parametrized_tests",
                                           _instantiate_parametrized_tests)

# TestCudaAutocast's base and lists (the ported autocast tests use neither list)
if _atl is not None and hasattr(_atl, "AutocastTestLists") and hasattr(_atl, "TestAutocast"):
    AutocastTestLists = _pick(_atl, "AutocastTestLists", None)
    TestAutocast = _pick(_atl, "TestAutocast", None)
else:
    AutocastTestLists = _pick(None, "AutocastTestLists", None)
    TestAutocast = _pick(None, "TestAutocast", TestCase)


def describe():
    """One line: which helpers came from torch and which are the stand-ins."""
    local = sorted(k for k, v in HELPERS.items() if v != "torch")
    return "helpers from torch.testing._internal: %d, local: %s" % (
        sum(v == "torch" for v in HELPERS.values()),
        ", ".join("%s=%s" % (k, HELPERS[k]) for k in local) or "none")
