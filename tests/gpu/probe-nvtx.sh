#!/usr/bin/env bash
# tests/gpu/probe-nvtx.sh - runs each case of tests/gpu/probe-nvtx.c under
# `compute-sanitizer --tool memcheck --nvtx yes`, one process per case, and
# says for each what the sanitizer made of it: which NVTX heaps over CUDA VMM
# memory it accepts, and whether it then reports writes outside the regions.
# A probe for the GPU machine, not a test: it prints findings, judges nothing.
#
#   bash tests/gpu/probe-nvtx.sh BUILD_DIR [CASE...]
#
# BUILD_DIR: a meson build with -Dcuda=enabled (set up there, with
# -Dbench=false, when it has no build.ninja); its tests/gpu/probe-nvtx is
# (re)built with ninja where ninja is found. CASE: some of `probe-nvtx --list`
# (default: all). compute-sanitizer is looked for in PATH, then in
# $CUDA_HOME/bin and $CUDA_HOME/compute-sanitizer (CUDA_HOME: /usr/local/cuda
# by default). Each case runs under `timeout 25` (PROBE_NVTX_TIMEOUT sets it).
#
# Output: each run's full output, indented, after a "---- ..." line, then one
# line per case:
#   probe-nvtx: CASE: N error(s); Invalid __global__ write: yes (K)|no;
#     nvtxMem warnings: FN xM, ...|none; writes: TAG REPORTED|clean, ...; exit RC
# where a write (announced by the program as "write TAG at 0xADDR") counts as
# REPORTED when the sanitizer names its address ("Address 0x..."). At the end
# the lines again, together. Exit status: 0 every case ran to its end, 1 not,
# 77 skipped (no compute-sanitizer, or the program found no CUDA device).
set -uo pipefail
build=$(realpath -m -- "${1:?usage: probe-nvtx.sh BUILD_DIR [CASE...]}")
shift
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
limit=${PROBE_NVTX_TIMEOUT:-25}

cuda=${CUDA_HOME:-/usr/local/cuda}
cs=$(command -v compute-sanitizer 2>/dev/null)
for c in "$cuda/bin/compute-sanitizer" "$cuda/compute-sanitizer/compute-sanitizer"; do
    [[ -z $cs && -x $c ]] && cs=$c
done
if [[ -z $cs ]]; then
    echo "probe-nvtx: skipped: no compute-sanitizer (PATH, $cuda/bin, $cuda/compute-sanitizer)"
    exit 77
fi

# The program: built here where meson and ninja can, else as it is.
if [[ ! -f $build/build.ninja ]] && command -v meson >/dev/null; then
    # -Dbench=false: the probe needs no zlib (the benchmarks do).
    meson setup "$build" -Dcuda=enabled -Dbench=false ||
        { echo "probe-nvtx: FAIL: meson setup $build"; exit 1; }
fi
if [[ -f $build/build.ninja ]] && command -v ninja >/dev/null; then
    ninja -C "$build" tests/gpu/probe-nvtx >/dev/null ||
        { echo "probe-nvtx: FAIL: building $build/tests/gpu/probe-nvtx"; exit 1; }
fi
prog=$build/tests/gpu/probe-nvtx
if [[ ! -x $prog ]]; then
    echo "probe-nvtx: FAIL: no $prog (a build with -Dcuda=enabled makes it)"
    exit 1
fi

# Without a device there is nothing to probe: the program says so with 77.
check=$("$prog" --check 2>&1)
rc=$?
if ((rc == 77)); then
    echo "probe-nvtx: skipped: ${check#probe-nvtx: skipped: }"
    exit 77
elif ((rc != 0)); then
    echo "$check"
    echo "probe-nvtx: FAIL: $prog --check: exit $rc"
    exit 1
fi
echo "probe-nvtx: $cs: $("$cs" --version 2>&1 | tail -1)"

cases=("$@")
((${#cases[@]})) || mapfile -t cases < <("$prog" --list)

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
summary=()
bad=0

# The sanitizer's addresses ("Address 0x..."), as decimal numbers, one a line.
reported_addresses() {
    local a
    grep -oiE 'Address 0x[0-9a-f]+' "$tmp" | sed 's/^[Aa]ddress 0x//' | while read -r a; do
        echo $((16#$a))
    done | sort -u
}

# Each "write TAG at 0xADDR" of the program: REPORTED when its address is
# among the sanitizer's; "(kernel: ERROR)" when its launch did not run clean.
writes_line() {
    local addrs tag hex out="" res err
    addrs=$(reported_addresses)
    while read -r tag hex; do
        res=clean
        grep -qx "$((16#${hex#0x}))" <<<"$addrs" && res=REPORTED
        err=$(grep -m1 "^probe-nvtx: write $tag: " "$tmp" | sed "s/^probe-nvtx: write $tag: //")
        [[ -n $err && $err != "kernel ran" ]] && res="$res (kernel: $err)"
        out+="${out:+, }$tag $res"
    done < <(sed -nE 's/^probe-nvtx: write ([^ ]+) at (0x[0-9a-fA-F]+) .*/\1 \2/p' "$tmp")
    echo "${out:-none}"
}

for case in "${cases[@]}"; do
    echo "---- $cs --tool memcheck --nvtx yes ... probe-nvtx $case"
    timeout -k 5 "$limit" "$cs" --tool memcheck --nvtx yes --destroy-on-device-error kernel \
        --error-exitcode 86 --show-backtrace no "$prog" "$case" >"$tmp" 2>&1
    rc=$?
    sed 's/^/    /' "$tmp"
    if grep -q '^probe-nvtx: skipped' "$tmp"; then
        echo "probe-nvtx: skipped: $(grep -m1 '^probe-nvtx: skipped' "$tmp")"
        exit 77
    fi
    errors=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$tmp" | grep -oE '[0-9]+$' | tail -1)
    invalid=$(grep -c 'Invalid __global__ write' "$tmp")
    warns=$(grep -oE 'nvtxMem[A-Za-z]+ failed' "$tmp" | sort | uniq -c |
        awk '{printf "%s%s x%d", s, $2, $1; s = ", "}')
    line="$case: ${errors:-no ERROR SUMMARY, ?} error(s);"
    line+=" Invalid __global__ write: $( ((invalid)) && echo "yes ($invalid)" || echo no);"
    line+=" nvtxMem warnings: ${warns:-none}; writes: $(writes_line); exit $rc"
    if ((rc == 124 || rc == 137)); then
        line+=" (timed out after $limit s)"
        bad=$((bad + 1))
    elif ! grep -q "^probe-nvtx: $case done" "$tmp"; then
        fail=$(grep -m1 '^probe-nvtx: FAIL' "$tmp" | sed 's/^probe-nvtx: //')
        line+=" (did not run to its end${fail:+: $fail})"
        bad=$((bad + 1))
    elif [[ -z $errors ]]; then
        bad=$((bad + 1))
    fi
    echo "probe-nvtx: $line"
    summary+=("$line")
done

echo "probe-nvtx: ---- summary ($cs)"
for line in "${summary[@]}"; do echo "probe-nvtx: $line"; done
echo "probe-nvtx: $((${#cases[@]} - bad)) of ${#cases[@]} case(s) ran to their end"
((bad == 0))
