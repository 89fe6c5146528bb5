#!/usr/bin/env bash
# run-fuzz.sh FUZZER CORPUS SECONDS [JOBS] - fuzz the API for SECONDS from the
# seed corpus, as a series of fuzzer processes of at most 20 minutes each,
# JOBS at once (default 1), over one working corpus (a temporary copy of
# CORPUS that grows; each process first replays it). Prints the inputs and
# operations run, and "N passed, N failed": failed when a process found a
# crash, a leak or a checker violation (its output is shown; the input that
# did it is kept in $PWD as crash-*). libFuzzer's own leak check per input is
# off (-detect_leaks=0): an input may leave memory that later ones reuse (the
# arenas' memory pool, the backend's staging area), so it would rerun inputs
# under LSan; LeakSanitizer still checks each process at its exit.
set -uo pipefail
fuzzer=$1 corpus=$2 seconds=$3 jobs=${4:-1}
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
cp "$corpus"/* "$work"/ 2>/dev/null
export CUA_FUZZ_STATS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
end=$((SECONDS + seconds))
failed=0 runs=0 ops=0
while ((SECONDS < end && failed == 0)); do
    left=$((end - SECONDS)); ((left > 1200)) && left=1200
    pids=()
    for ((j = 0; j < jobs; j++)); do
        "$fuzzer" -max_total_time="$left" -max_len=4096 -timeout=60 -rss_limit_mb=4096 -detect_leaks=0 \
            -print_final_stats=1 "$work" >"$work.log$j" 2>&1 &
        pids+=($!)
    done
    for ((j = 0; j < jobs; j++)); do
        if ! wait "${pids[$j]}"; then
            failed=1
            tail -60 "$work.log$j"
        fi
        line=$(grep -h '^fuzz-api: ' "$work.log$j" | tail -1)
        echo "$line"
        n=$(sed -E 's/.* ([0-9]+) operations.*/\1/' <<<"$line")
        [[ $n =~ ^[0-9]+$ ]] && ops=$((ops + n))
        runs=$((runs + 1))
    done
    rm -f "$work".log*
done
echo "$runs fuzzer processes, $ops operations in all, corpus now $(ls "$work" | wc -l) inputs"
if ((failed)); then echo "0 passed, 1 failed"; exit 1; fi
echo "1 passed, 0 failed"
