#!/usr/bin/env bash
# tools/fingerprint.sh BUILD_DIR [OUT]
#
# What the allocator does, to the byte, on the bundled traces and the
# generated scale-1 scenarios (seed 1) on the host backend: every figure of
# cuarena-replay but the times, for the default configuration and two others
# (footprint_cap:0, vmm:0). A refactoring must leave it unchanged:
#   tools/fingerprint.sh build-old > a; tools/fingerprint.sh build-new > b; diff a b
# Extra configurations: CUA_FP_CONFS="conf1;conf2" (CUARENA_CONF strings).
set -euo pipefail
build=${1:?usage: tools/fingerprint.sh BUILD_DIR}
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for s in reload rl_weight_update llm_serving lora_swap train_checkpointing; do
    python3 "$top/bench/cuarena-gen" --scenario "$s" --scale "${CUA_FP_SCALE:-1}" --seed 1 \
        -o "$work/$s.catrace.gz" 2>/dev/null
done
IFS=';' read -r -a confs <<<"${CUA_FP_CONFS:-;footprint_cap:0;vmm:0}"
for conf in "${confs[@]}"; do
    echo "# CUARENA_CONF=$conf"
    CUARENA_CONF=$conf "$build/bench/cuarena-replay" --repeat 1 --budget-search \
        "$top"/bench/traces/*.catrace.gz "$work"/*.catrace.gz |
        sed -E 's/"(ns_per_event[a-z_]*|timed_driver_ns)":[0-9.e+-]+/"\1":-/g; s/\[([0-9]+),[0-9]+\]/[\1]/g'
done
