#!/bin/sh
# Quick-start benchmark: build the replay tools (release) and run the harness
# (bench/cuarena-bench) over the bundled traces in bench/traces and the
# generated scenarios, through every allocator this machine has: cuarena on
# the GPU when there is one and the CUDA backend is built (else on the host
# backend), and on a GPU also cudaMalloc, cudaMallocAsync and PyTorch's
# allocator (when torch is installed). Says what it does as it goes (the
# tools, the build, each allocator and trace), prints the summary tables with
# a line on what each column and allocator means and, without a GPU, where
# the repository's last GPU report compares cuarena with the others; the
# report (report.md, SVG plots, report.html, results.jsonl) goes to
# build-bench/report. Extra arguments go to cuarena-bench (e.g. --repeat 9,
# --scale 140, --allocators cuarena,cudaMallocAsync; --help lists them). Run
# from anywhere; works on a fresh Debian (apt-get; where apt-get is busy or
# missing it says so and takes meson and ninja from pip).
set -eu
cd "$(dirname "$0")/.."
. tests/tools.sh

say() { echo "bench/run.sh: $*" >&2; }

have_zlib() { pkg-config --exists zlib 2>/dev/null || [ -f /usr/include/zlib.h ]; }

# 1. Tools, if missing; the plotting library too (plots are skipped, and the
# report says so, when it cannot be installed).
missing=""
for tool in meson ninja cc pkg-config python3; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
have_zlib || missing="$missing zlib-headers"
if [ -n "$missing" ]; then
    say "[1/3] tools: missing$missing"
    cua_apt_install bench/run.sh meson ninja-build gcc pkg-config zlib1g-dev python3 || true
    command -v meson >/dev/null 2>&1 && command -v ninja >/dev/null 2>&1 || cua_pip_meson bench/run.sh || true
    for tool in meson ninja cc python3; do
        command -v "$tool" >/dev/null 2>&1 || { say "cannot go on without $tool"; exit 1; }
    done
    have_zlib || { say "cannot go on without zlib's headers (Debian: zlib1g-dev): the replay tool reads .catrace.gz"; exit 1; }
else
    say "[1/3] tools: meson, ninja, a C compiler, pkg-config, zlib and python3 are here"
fi
if ! python3 -c 'import matplotlib' 2>/dev/null && ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    say "      matplotlib (for the report's plots) is missing"
    cua_apt_install bench/run.sh python3-matplotlib ||
        say "      could not install python3-matplotlib: the report will have no plots"
fi

# 2. The build: release, link-time optimisation where the compiler can do it
# (not every gcc has its plugin).
lto=false
if echo 'int main(void){return 0;}' | ${CC:-cc} -flto -x c - -o build-bench-lto-probe 2>/dev/null; then lto=true; fi
rm -f build-bench-lto-probe
start=$(date +%s)
if [ -f build-bench/build.ninja ]; then
    say "[2/3] building the replay tools in build-bench (already configured)"
else
    say "[2/3] configuring and building the replay tools in build-bench (release, LTO $lto)"
    meson setup build-bench --buildtype=release -Db_lto=$lto -Dtests=false >build-bench-setup.log 2>&1 ||
        { cat build-bench-setup.log >&2; say "meson setup failed"; exit 1; }
    rm -f build-bench-setup.log
fi
ninja -C build-bench >build-bench/ninja.log 2>&1 || { cat build-bench/ninja.log >&2; say "the build failed"; exit 1; }
say "      built in $(($(date +%s) - start)) s"

# 3. The harness: it says which allocators and traces, and each replay as it ends.
say "[3/3] running the harness: bench/cuarena-bench --build build-bench $*"
exec python3 bench/cuarena-bench --build build-bench "$@"
