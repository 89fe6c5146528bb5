#!/bin/bash
# asan-rerun.sh TARGET [ARGS...]: build one test program of tests/gpu with the
# library under AddressSanitizer + UBSan (-O1 -g, no LTO) in build-gpu-asan
# and run it there, for a program that crashed in the release build: the
# report names the file and line of the bad access and where the memory came
# from. TARGET is a meson target path, e.g. tests/gpu/stress-cuda.
#
# The CUDA driver maps memory where ASan's shadow gap is by default
# (protect_shadow_gap=0), and its own allocations are not leaks of ours
# (detect_leaks=0). Exit status: the program's.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
target=$1
shift
if [[ ! -f build-gpu-asan/build.ninja ]]; then
    CC=${CC:-cc} meson setup build-gpu-asan --buildtype=debug -Doptimization=1 -Db_lto=false \
        -Db_sanitize=address,undefined -Dcuda=enabled >"${TMPDIR:-/tmp}/cua-asan-setup.log" 2>&1 ||
        { tail -20 "${TMPDIR:-/tmp}/cua-asan-setup.log"; exit 1; }
fi
ninja -C build-gpu-asan "$target" | tail -3 || exit 1
export ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=0:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"build-gpu-asan/$target" "$@"
