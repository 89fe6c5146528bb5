#!/bin/sh
# Quick-start benchmark: build cuarena-replay (release) and replay the traces
# in bench/traces through cuarena, on the GPU when there is one and the CUDA
# backend is built, else on the host backend. Prints the Markdown table; the
# JSON lines go to build-bench/results.jsonl. Extra arguments go to
# cuarena-replay (e.g. --repeat 3). Run from anywhere; works on a fresh Debian.
set -eu
cd "$(dirname "$0")/.."

# Build tools, if missing.
if ! command -v meson >/dev/null || ! command -v ninja >/dev/null || ! command -v cc >/dev/null \
    || ! command -v pkg-config >/dev/null || ! pkg-config --exists zlib; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    $sudo apt-get install -y -q meson ninja-build gcc pkg-config zlib1g-dev
fi

# Link-time optimisation where the compiler can do it (not every gcc has its plugin).
lto=false
if echo 'int main(void){return 0;}' | ${CC:-cc} -flto -x c - -o build-bench-lto-probe 2>/dev/null; then lto=true; fi
rm -f build-bench-lto-probe
[ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release -Db_lto=$lto -Dtests=false
ninja -C build-bench bench/cuarena-replay >/dev/null
replay=build-bench/bench/cuarena-replay

backend=host
if nvidia-smi -L >/dev/null 2>&1 && "$replay" --backends | grep -qx cuda; then backend=cuda; fi
echo "backend: $backend"

status=0
"$replay" --backend "$backend" --budget-search --table "$@" bench/traces/*.catrace.gz \
    > build-bench/results.txt || status=$?
grep '^{' build-bench/results.txt > build-bench/results.jsonl || true
grep -v '^{' build-bench/results.txt || true
exit "$status"
