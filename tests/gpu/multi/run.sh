#!/usr/bin/env bash
# tests/gpu/multi/run.sh - the 2-GPU visit: build cuarena with the CUDA
# backend, then run
#   peer          tests/gpu/multi/peer.c: GPU 1 reads GPU 0's cuarena blocks
#                 after cua_arena_grant_peer (and the other checks it lists)
#   allreduce     tests/gpu/multi/allreduce.py: NCCL all-reduce 1 MiB - 1 GiB,
#                 torch's allocator and cuarena in every rank
#   ddp_llama     tests/gpu/multi/ddp_llama.py: a tiny Llama trained with DDP,
#                 losses compared, driver-used memory back to its baseline
# and print a short table last. With fewer than 2 GPUs everything is skipped
# (exit 77).
#
#   bash tests/gpu/multi/run.sh      (from anywhere; logs in $OUT, else build-gpu/out-multi)
#
# Needs gcc, meson, ninja, the CUDA toolkit's headers, a driver, and for the
# Python parts torch (with NCCL) and transformers. Exit status: 0 when all
# that ran passed, 1 otherwise, 77 when skipped.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.." || exit 1

out=${OUT:-build-gpu/out-multi}
mkdir -p "$out"
log=$out/log.txt
: >"$log"

ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
if [ "${ngpu:-0}" -lt 2 ]; then
    echo "multi: skipped: needs 2 GPUs, found ${ngpu:-0}" | tee -a "$log"
    exit 77
fi
nvidia-smi -L | tee -a "$log"
nvidia-smi topo -m >>"$log" 2>&1 || true

if [ ! -f build-gpu/build.ninja ]; then
    meson setup build-gpu -Dcuda=enabled -Dbuildtype=release >>"$log" 2>&1 || {
        echo "multi: meson setup failed (see $log)"; exit 1; }
fi
ninja -C build-gpu >>"$log" 2>&1 || { echo "multi: build failed (see $log)"; exit 1; }

export CUARENA_LIB=$PWD/build-gpu/libcuarena.so
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
declare -A result secs

run() { # run NAME CMD...: its output into the log and NAME.txt, the status into result
    local name=$1 t0 rc
    shift
    echo "== $name: $*" | tee -a "$log"
    t0=$(date +%s)
    "$@" >"$out/$name.txt" 2>&1
    rc=$?
    cat "$out/$name.txt" >>"$log"
    secs[$name]=$(($(date +%s) - t0))
    case $rc in
        0) result[$name]=passed ;;
        77) result[$name]=skipped ;;
        124) result[$name]="FAILED (timed out)" ;;
        *) result[$name]="FAILED ($rc)" ;;
    esac
    echo "== $name: ${result[$name]}" | tee -a "$log"
}

run peer timeout 300 build-gpu/tests/gpu/peer
# The torch shim is built once here, not by two ranks at the same time.
python3 -c "import cuarena.torch as t; t._build_shim()" >>"$log" 2>&1 ||
    echo "multi: the torch shim did not build: the ranks use the plain hook" | tee -a "$log"
run allreduce timeout 900 python3 tests/gpu/multi/allreduce.py --json "$out/allreduce.json"
run ddp_llama timeout 900 python3 tests/gpu/multi/ddp_llama.py --json "$out/ddp_llama.json"

status=0
{
    echo
    echo "| test | result | seconds |"
    echo "| --- | --- | ---: |"
    for t in peer allreduce ddp_llama; do
        echo "| $t | ${result[$t]} | ${secs[$t]} |"
        case ${result[$t]} in passed | skipped) ;; *) status=1 ;; esac
    done
    echo
    grep -h '^peer: ' "$out/peer.txt" || true
    echo
    sed -n '/^| size /,/^$/p' "$out/allreduce.txt"
    grep -h '^allreduce: sums' "$out/allreduce.txt" || true
    echo
    grep -h -A 6 '^| allocator ' "$out/ddp_llama.txt" || true
    grep -h '^ddp_llama: largest\|^ddp_llama: passed\|^ddp_llama: FAIL' "$out/ddp_llama.txt" || true
} | tee "$out/table.md" | tee -a "$log"
exit $status
