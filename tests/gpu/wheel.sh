#!/usr/bin/env bash
# tests/gpu/wheel.sh - the Python package as a PyTorch user on the GPU machine
# gets it (part wheel of tests/gpu/run.sh):
#   1. pip wheel --no-build-isolation of a clean copy of the tree, with the
#      Python that has torch: the wheel carries libcuarena.so and the PyTorch
#      shim compiled against that torch;
#   2. the wheel installed into a fresh virtual environment (system site
#      packages: torch, pytest);
#   3. outside the tree, with no compiler on PATH (a PATH that holds only the
#      venv's python) and no CUARENA_LIB or PYTHONPATH: cuarena.torch.install()
#      must report the full mode from the prebuilt shim, and a tensor's memory
#      must be in a cuarena arena;
#   4. tests/gpu/test_torch.py with the installed package (CUA_TORCH_INSTALLED=1,
#      CUA_TORCH_EXPECT=full/prebuilt).
#
#   bash tests/gpu/wheel.sh OUTDIR
#
# meson-python: the machine's, else .dev/pylib (tests/gpu/carry-pylib.sh,
# carried), on PYTHONPATH for the build only. Exit status 0 when every step
# passed, 77 when the machine cannot build wheels (no pip or no torch).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
root=$PWD
out=${1:-build-gpu/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)

say() { echo "wheel: $*"; }
fail() { say "FAIL: $*"; exit 1; }
py=$(command -v python3) || { say "SKIP: no python3"; exit 77; }
"$py" -c 'import torch' 2>/dev/null || { say "SKIP: $py has no torch"; exit 77; }
"$py" -m pip --version >/dev/null 2>&1 || { say "SKIP: $py has no pip"; exit 77; }
say "python $("$py" -c 'import sys; print(sys.version.split()[0])'), torch $("$py" -c 'import torch; print(torch.__version__)'), pip $("$py" -m pip --version | cut -d' ' -f2)"
buildpath=
if ! "$py" -c 'import mesonpy' 2>/dev/null; then
    [[ -d .dev/pylib/mesonpy ]] || { say "SKIP: no meson-python (run tests/gpu/carry-pylib.sh and carry .dev)"; exit 77; }
    buildpath=$root/.dev/pylib
    say "meson-python: carried (.dev/pylib)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cuarena-wheel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/src"
tar -C "$root" --exclude='./build*' --exclude='./.dev' --exclude='./.git' --exclude='./.mesonpy*' \
    --exclude='__pycache__' -cf - . | tar -C "$tmp/src" -xf -

# 1. the wheel
PYTHONPATH=$buildpath "$py" -m pip --disable-pip-version-check wheel --no-build-isolation \
    --no-index --no-deps -w "$tmp/wheel" "$tmp/src" >"$tmp/wheel.log" 2>&1 ||
    { tail -n 60 "$tmp/wheel.log"; fail "pip wheel failed"; }
grep -E "PyTorch shim" "$tmp/wheel.log" | sed 's/^ */wheel: /'
whl=$(ls "$tmp"/wheel/cuarena-*.whl | head -n 1)
say "built $(basename "$whl") ($(du -k "$whl" | cut -f1) KiB)"
"$py" - "$whl" <<'PY' || fail "the wheel lacks the prebuilt shim"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
shim = [n for n in names if n.startswith("cuarena/_torch_shim") and n.endswith(".so")]
print("wheel: files %d, shim %s" % (len(names), shim))
assert shim and "cuarena/libcuarena.so" in names
PY

# 2. a fresh venv; without ensurepip, one without pip that the system pip fills
if "$py" -m venv --system-site-packages "$tmp/venv" >"$tmp/venv.log" 2>&1; then
    pip=("$tmp/venv/bin/python" -m pip)
else
    rm -rf "$tmp/venv"
    "$py" -m venv --system-site-packages --without-pip "$tmp/venv" || fail "python3 -m venv failed"
    pip=("$py" -m pip --python "$tmp/venv/bin/python")
    say "venv without ensurepip: the system pip installs into it"
fi
# The Python with torch may itself be a venv (the GPU machine's is): a venv made
# from it sees only the base interpreter's packages, so its site-packages are
# named in a .pth file of the new one (as installing torch into it would do).
parent=$("$py" -c 'import sys, sysconfig
if sys.prefix != sys.base_prefix:
    print("\n".join(sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})))')
if [[ -n $parent ]]; then
    site=$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$parent" >"$site/zz-parent-venv.pth"
    say "torch's venv ($(dirname "$(dirname "$py")")) seen through $(basename "$site")/zz-parent-venv.pth"
fi
"$tmp/venv/bin/python" -c 'import torch' || fail "the fresh venv does not see torch"
"${pip[@]}" --disable-pip-version-check install --no-index --no-deps "$whl" >"$tmp/install.log" 2>&1 ||
    { tail -n 30 "$tmp/install.log"; fail "pip install of the wheel failed"; }
say "installed into a fresh venv"

# 3. outside the tree, no compiler on PATH
mkdir -p "$tmp/elsewhere" "$tmp/nocc"
# (a script, not a link: a venv's python is found as one by its own path)
printf '#!/bin/sh\nexec "%s" "$@"\n' "$tmp/venv/bin/python" >"$tmp/nocc/python"
chmod +x "$tmp/nocc/python"
(cd "$tmp/elsewhere" && env -u CUARENA_LIB -u PYTHONPATH -u CC -u CXX -u CUDA_HOME -u CUDA_PATH \
    PATH="$tmp/nocc" TORCH_EXTENSIONS_DIR="$tmp/ext" python - <<'PY') || fail "install() without a compiler"
import shutil, warnings
import torch
import cuarena, cuarena.torch
assert shutil.which("c++") is None and shutil.which("gcc") is None and shutil.which("nvcc") is None
with warnings.catch_warnings(record=True) as said:
    warnings.simplefilter("always")
    cuarena.torch.install()
x = torch.ones(64 << 20, device="cuda", dtype=torch.uint8)
torch.cuda.synchronize()
where = cuarena.arena_of(x.data_ptr())
print("wheel: cuarena %s from %s; torch %s; mode %s, source %s; tensor in arena %r; warnings %d"
      % (cuarena.__version__, cuarena.__file__, torch.__version__, cuarena.torch.mode,
         cuarena.torch.source, where, len(said)))
print("wheel: how: %s" % cuarena.torch.how)
assert cuarena.torch.mode == "full" and cuarena.torch.source == "prebuilt", cuarena.torch.how
assert where, "the tensor is not in a cuarena arena"
assert torch.cuda.memory_stats()["allocated_bytes.all.current"] >= 64 << 20
PY

# 4. the PyTorch tests with the installed package
(cd "$tmp/elsewhere" && env -u CUARENA_LIB -u PYTHONPATH CUA_TORCH_INSTALLED=1 \
    CUA_TORCH_EXPECT=full/prebuilt CUA_TORCH_RESULTS="$out/torch-wheel.jsonl" \
    "$tmp/venv/bin/python" -m pytest -q -s -p no:cacheprovider "$root/tests/gpu/test_torch.py" \
    ${CUA_GPU_TORCH_K:+-k "$CUA_GPU_TORCH_K"}) || fail "tests/gpu/test_torch.py with the wheel"
say "PASS: wheel built with the prebuilt shim, installed into a fresh venv, full mode without a compiler, test_torch.py passed"
