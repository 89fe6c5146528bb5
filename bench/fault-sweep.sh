#!/bin/sh
# Fault sweep over a replay: for every kind of backend call and a few ordinals,
# fail that one call during a replay of TRACE and report what the replay saw:
# the status it got, whether the checker passed afterwards, and what was left
# in the backend after the arena was destroyed. Prints a Markdown table.
# alloc and free (whole segments) are swept with CUARENA_CONF=vmm:0.
#   bash bench/fault-sweep.sh [REPLAY] [TRACE]
set -eu
cd "$(dirname "$0")/.."
replay=${1:-build-bench/bench/cuarena-replay}
trace=${2:-bench/traces/reload_cycles.catrace.gz}
kinds="reserve unreserve create release map unmap set_access mem_info event_create
event_destroy event_record event_query event_sync stream_sync alloc free"
echo "| call | N | injected | status | checker | left after destroy (handles, mappings, reservations) |"
echo "| --- | ---: | ---: | --- | --- | --- |"
runs=0 bad=0
for k in $kinds; do
    for n in 1 2 50; do
        conf=${CUARENA_CONF:-}
        case $k in alloc | free) conf=${conf:+$conf,}vmm:0 ;; esac
        line=$(CUARENA_CONF=$conf "$replay" --fault "$k:$n" "$trace" 2>/dev/null | grep '^{') || true
        runs=$((runs + 1))
        printf '%s\n' "$line" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read() or "{}")
if not d: print("| %s | %s | - | replay failed to report | - | - |" % (sys.argv[1], sys.argv[2])); sys.exit(1)
left = (d["leaked_handles"], d["leaked_mappings"], d["leaked_reservations"])
print("| %s | %s | %d | %s | %s | %d, %d, %d |" % (sys.argv[1], sys.argv[2], d["injected"],
      d["status"], d["check"], *left))
sys.exit(0 if d["check"] == "ok" and left == (0, 0, 0) else 1)' "$k" "$n" || bad=$((bad + 1))
    done
done
echo
echo "$runs runs, $bad with a failed check or a leak"
[ "$bad" -eq 0 ]
