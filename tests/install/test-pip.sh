#!/usr/bin/env bash
# tests/install/test-pip.sh - the Python package as pip users get it.
#
#   bash tests/install/test-pip.sh SOURCE_ROOT VERSION
#
# From a clean copy of SOURCE_ROOT (the files git tracks, and those it does
# not ignore, as they are in the working tree: no build directory), in a new
# virtual environment (python3 -m venv --system-site-packages, so that
# Debian's meson-python is seen):
#   1. pip install --no-build-isolation --no-index COPY  (meson-python builds it)
#   2. in a new directory outside the copy, with no CUARENA_LIB and no
#      PYTHONPATH: python -c "import cuarena; print(cuarena.__version__)"
#      prints VERSION, the library is the one bundled with the package, and
#      an arena on the host backend allocates and frees; `python -m cuarena
#      info` runs
#   3. pip wheel --no-build-isolation --no-index COPY: the wheel holds the
#      package, its libcuarena.so (which needs no CUDA library) and
#      _build_info.py, and none of the C library's headers or CMake files.
# The Python is /usr/bin/python3 (Debian's, which python3-mesonpy serves),
# else python3. Exit status 77 (skipped) when it lacks meson-python, venv or
# pip (Debian: apt-get install python3-mesonpy python3-venv python3-pip;
# tests/run.sh and .ci/run install them); 1 on a failure.
set -euo pipefail

src=$(cd "${1:?usage: test-pip.sh SOURCE_ROOT VERSION}" && pwd)
want=${2:?usage: test-pip.sh SOURCE_ROOT VERSION}

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { echo "+ $*"; "$@"; }

py=/usr/bin/python3
[[ -x $py ]] || py=$(command -v python3) || skip "no python3"
missing=()
"$py" -c 'import mesonpy' 2>/dev/null || missing+=(python3-mesonpy)
"$py" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
"$py" -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if ((${#missing[@]})); then
    skip "$py lacks ${missing[*]} (Debian packages; apt-get install ${missing[*]}): cannot build the Python package with pip"
fi
command -v meson >/dev/null || skip "meson is not installed"
command -v ninja >/dev/null || skip "ninja is not installed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cuarena-pip.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The clean copy.
mkdir "$tmp/src"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$src" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -C "$tmp/src" -xf -
else
    tar -C "$src" --exclude='./build*' --exclude='./.mesonpy*' -cf - . | tar -C "$tmp/src" -xf -
fi
[[ -f $tmp/src/pyproject.toml ]] || fail "the copy has no pyproject.toml"

run "$py" -m venv --system-site-packages "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip --disable-pip-version-check)
unset CUARENA_LIB PYTHONPATH CUARENA_PUBLISH
run "${pip[@]}" install --no-build-isolation --no-index "$tmp/src" >"$tmp/install.log" 2>&1 ||
    { tail -n 60 "$tmp/install.log"; fail "pip install --no-build-isolation failed"; }
grep -E "PyTorch shim" "$tmp/install.log" | sed 's/^ */  /' || true

# Outside the copy: the installed package, its own library.
mkdir "$tmp/elsewhere"
cd "$tmp/elsewhere"
got=$(run "$tmp/venv/bin/python" -c "import cuarena; print(cuarena.__version__)") ||
    fail "import cuarena failed in $tmp/elsewhere"
echo "$got"
[[ $(tail -n 1 <<<"$got") == "$want" ]] || fail "cuarena.__version__ is '$got', not $want"
"$tmp/venv/bin/python" - "$tmp/venv" <<'EOF' || fail "the installed package does not work"
import os, sys
import cuarena
venv = os.path.realpath(sys.argv[1])
assert os.path.realpath(cuarena.__file__).startswith(venv), cuarena.__file__
assert cuarena.library_found_in == "bundled with the package", cuarena.library_found_in
assert os.path.dirname(os.path.realpath(cuarena.library_path)) == \
    os.path.dirname(os.path.realpath(cuarena.__file__)), cuarena.library_path
a = cuarena.Arena("pip_check", backend="host", va_size="1G")
p = a.alloc(1 << 20)
assert cuarena.arena_of(p) == "pip_check"
cuarena.free(p)
assert "cuarena_arena_live_bytes" in cuarena.prometheus()
a.destroy()
print("installed package: %s, library %s (%s)" % (cuarena.__version__, cuarena.library_path,
                                                   cuarena.library_found_in))
EOF
run "$tmp/venv/bin/python" -m cuarena info || fail "python -m cuarena info failed"

# The wheel.
run "${pip[@]}" wheel --no-build-isolation --no-index --no-deps -w "$tmp/wheel" "$tmp/src" \
    >"$tmp/wheel.log" 2>&1 || { tail -n 60 "$tmp/wheel.log"; fail "pip wheel failed"; }
whl=$(ls "$tmp"/wheel/cuarena-"$want"-*.whl 2>/dev/null | head -n 1)
[[ -f $whl ]] || fail "pip wheel made no cuarena-$want-*.whl"
"$py" - "$whl" <<'EOF' || fail "the wheel's contents are wrong"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for need in ("cuarena/__init__.py", "cuarena/libcuarena.so", "cuarena/_build_info.py",
             "cuarena/torch.py", "cuarena/top.py", "cuarena/_torch_shim.cpp",
             "cuarena/_torch_history.cpp", "cuarena/_torch_history.h",
             "cuarena/_torch_pools.h", "cuarena/_torch_capture.h",
             "cuarena/include/cuarena.h"):
    assert need in names, "%s is not in the wheel" % need
extra = [n for n in names if not n.startswith(("cuarena/", "cuarena-"))]
assert not extra, "the wheel holds more than the package: %s" % extra
print("wheel %s: %d files" % (sys.argv[1].rsplit("/", 1)[-1], len(names)))
EOF
# The library links no CUDA library: the driver is loaded at run time.
lib=$(cd "$tmp/elsewhere" && "$tmp/venv/bin/python" -c "import cuarena; print(cuarena.library_path)")
if command -v readelf >/dev/null; then
    needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    echo "libcuarena.so needs: $needed"
    [[ $needed != *cuda* ]] || fail "the bundled libcuarena.so links a CUDA library: $needed"
fi
echo "PASS: pip consumer (pip install, import outside the tree, pip wheel)"
