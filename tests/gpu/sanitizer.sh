#!/usr/bin/env bash
# tests/gpu/sanitizer.sh - compute-sanitizer memcheck and cuarena's NVTX
# registration (CUA_ARENA_NVTX), on a GPU machine: tests/gpu/oob.c writes one
# word past the end of block A into its freed neighbour B, three ways:
#
#   ok          NVTX on, the write in bounds      expected: 0 errors, exit 0
#   oob         NVTX on, one word past A's end    expected: "Invalid __global__ write",
#                                                 >= 1 error, the sanitizer's exit 86
#   oob-nonvtx  NVTX off, the same write          expected: 0 errors, exit 0 - not
#                                                 caught: to the driver the address is
#                                                 mapped memory (what NVTX adds)
#
#   bash tests/gpu/sanitizer.sh [BUILD_DIR]     (default build-gpu; made with
#                                                 -Dcuda=enabled when it does not exist)
#
# Prints each run's output, one "sanitizer: ..." line per case and
# "sanitizer: N of 3 as expected". Exit status: 0 all as expected, 1 not,
# 77 skipped (no GPU, no compute-sanitizer, or oob says there is no device).
# Each run is limited to CUA_SANITIZER_TIMEOUT seconds (default 45).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
build=${1:-build-gpu}
limit=${CUA_SANITIZER_TIMEOUT:-45}

cuda=${CUDA_HOME:-/usr/local/cuda}
cs=$(command -v compute-sanitizer 2>/dev/null)
for c in "$cuda/bin/compute-sanitizer" "$cuda/compute-sanitizer/compute-sanitizer"; do
    [[ -z $cs && -x $c ]] && cs=$c
done
if [[ -z $cs ]]; then
    echo "sanitizer: skipped: no compute-sanitizer (PATH, $cuda/bin, $cuda/compute-sanitizer)"
    exit 77
fi
if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "sanitizer: skipped: no GPU (nvidia-smi -L failed)"
    exit 77
fi
echo "sanitizer: $cs: $("$cs" --version 2>&1 | tail -1)"

if [[ ! -f $build/build.ninja ]]; then
    meson setup "$build" -Dcuda=enabled || { echo "sanitizer: FAIL: meson setup $build"; exit 1; }
fi
ninja -C "$build" tests/gpu/oob || { echo "sanitizer: FAIL: building $build/tests/gpu/oob"; exit 1; }
prog=$build/tests/gpu/oob

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
good=0
# case MODE EXPECT(caught|clean) LABEL
run_case() {
    local mode=$1 expect=$2 label=$3 rc errors verdict
    echo "---- compute-sanitizer --tool memcheck --nvtx yes ... oob $mode"
    timeout -k 5 "$limit" "$cs" --tool memcheck --nvtx yes --destroy-on-device-error kernel \
        --error-exitcode 86 --show-backtrace no "$prog" "$mode" >"$tmp" 2>&1
    rc=$?
    sed 's/^/    /' "$tmp"
    if grep -q '^oob: skipped' "$tmp"; then
        echo "sanitizer: skipped: $(grep '^oob: skipped' "$tmp")"
        exit 77
    fi
    errors=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$tmp" | grep -oE '[0-9]+$' | tail -1)
    if ((rc == 124 || rc == 137)); then
        verdict="UNEXPECTED: timed out after $limit s"
    elif [[ -z $errors ]]; then
        verdict="UNEXPECTED: no ERROR SUMMARY from the sanitizer (exit $rc)"
    elif [[ $expect == caught ]]; then
        if ((rc == 86 && errors >= 1)) && grep -q 'Invalid __global__ write' "$tmp"; then
            verdict="caught, as expected: Invalid __global__ write, $errors error(s), exit $rc"
            good=$((good + 1))
        else
            verdict="UNEXPECTED: not caught ($errors error(s), exit $rc; expected 'Invalid __global__ write' and exit 86)"
        fi
    else
        local landed=""
        grep -q 'the stray write landed' "$tmp" && landed="; the stray write landed in B"
        if ((rc == 0 && errors == 0)) && grep -q "^oob: $mode done" "$tmp"; then
            verdict="0 errors, as expected$landed"
            good=$((good + 1))
        else
            verdict="UNEXPECTED: $errors error(s), exit $rc (expected 0 errors, exit 0 and 'oob: $mode done')$landed"
        fi
    fi
    echo "sanitizer: $mode ($label): $verdict"
}

run_case ok clean "NVTX on, in bounds"
run_case oob caught "NVTX on, one word past A into freed B"
run_case oob-nonvtx clean "NVTX off, the same write: not caught"
echo "sanitizer: $good of 3 as expected"
((good == 3))
