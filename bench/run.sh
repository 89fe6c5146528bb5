#!/bin/sh
# Quick-start benchmark: build the replay tools (release) and run the harness
# (bench/cuarena-bench) over the bundled traces in bench/traces and the
# generated scenarios, through every allocator this machine has: cuarena on
# the GPU when there is one and the CUDA backend is built (else on the host
# backend), and on a GPU also cudaMalloc, cudaMallocAsync and PyTorch's
# allocator (when torch is installed). Prints the summary tables; the report
# (report.md, SVG plots, report.html, results.jsonl) goes to
# build-bench/report. Extra arguments go to cuarena-bench (e.g. --repeat 9,
# --scale 140, --allocators cuarena,cudaMallocAsync; --help lists them). Run
# from anywhere; works on a fresh Debian.
set -eu
cd "$(dirname "$0")/.."

# Build tools, if missing; the plotting library too (plots are skipped, and
# the report says so, when it cannot be installed).
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v meson >/dev/null || ! command -v ninja >/dev/null || ! command -v cc >/dev/null \
    || ! command -v pkg-config >/dev/null || ! pkg-config --exists zlib; then
    $sudo apt-get update -q
    $sudo apt-get install -y -q meson ninja-build gcc pkg-config zlib1g-dev python3
fi
if ! python3 -c 'import matplotlib' 2>/dev/null && ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null \
    && command -v apt-get >/dev/null; then
    $sudo apt-get install -y -q python3-matplotlib >/dev/null 2>&1 \
        || echo "bench/run.sh: could not install python3-matplotlib: the report will have no plots" >&2
fi

# Link-time optimisation where the compiler can do it (not every gcc has its plugin).
lto=false
if echo 'int main(void){return 0;}' | ${CC:-cc} -flto -x c - -o build-bench-lto-probe 2>/dev/null; then lto=true; fi
rm -f build-bench-lto-probe
[ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release -Db_lto=$lto -Dtests=false
ninja -C build-bench >/dev/null

exec python3 bench/cuarena-bench --build build-bench "$@"
