#!/usr/bin/env bash
# tests/gpu/run.sh - one visit to the GPU machine: build cuarena with the CUDA
# backend, run the GPU tests and the host tests there, then the GPU benchmark
# (the bundled traces through cuarena on the GPU, with VMM and without, and in
# the same run through cudaMalloc and cudaMallocAsync), and print a short table
# last.
#
#   bash tests/gpu/run.sh            (from anywhere; results in $OUT, else build-gpu/out)
#
# Environment:
#   OUT                where the logs, JSON lines and the table go
#   CUA_GPU_REPEAT     timed runs per trace and allocator (default 15: the median is
#                      reported; a llama_train run lasts only ~6 ms, so a few
#                      runs are at the mercy of the machine's noise); cudaMalloc,
#                      slow enough to time well, gets CUA_GPU_REPEAT_MALLOC (5)
#   CUA_GPU_SKIP_BENCH set to 1 to run the tests only
#   CUA_GPU_SKIP_HOST  set to 1 to leave out the host tests (CI runs them)
#   CUA_GPU_PARTS      comma-separated parts of the tests to run (default all):
#                      cuda, sanitizer, stress, host, reload, torch, upstream,
#                      cupy, examples, mt, nvtxprobe (and fuzz, only when named:
#                      CUA_GPU_FUZZ_SECONDS; wheel, only when named:
#                      tests/gpu/wheel.sh); with CUA_GPU_SKIP_BENCH=1 a visit can be
#                      split into commands of under 10 minutes each
#   CUA_GPU_TORCH_K    a pytest -k expression: only those tests of test_torch.py
#   CUA_GPU_UPSTREAM_K, CUA_GPU_UPSTREAM_TIMEOUT  part upstream: PyTorch's own
#                      allocator tests (tests/gpu/torch_upstream: ported from torch's
#                      test_cuda.py) natively and under cuarena, a table of both
#                      (upstream.json, upstream-table.md); a pytest -k expression, and
#                      the seconds of each of the two runs (default 270; natively
#                      on an H100, 68 of the tests took 140 s: give the part a
#                      command of its own, about 9 minutes with the build);
#                      CUA_GPU_UPSTREAM_TEST_TIMEOUT ends a test after that many
#                      seconds (default 60), CUA_GPU_UPSTREAM_ONLY=native|cuarena
#                      runs one of the two
#   CUA_GPU_MT_CONFS   the arena options the mt part runs cuarena-mt with (space-
#                      separated); CUA_GPU_MT_VARIANT="NAME:C_ARGS ..." adds builds with
#                      those C arguments (CUA_GPU_MT_VARIANT_CONFS), CUA_GPU_MT_BASELINES=0
#                      leaves out cudaMallocAsync and PyTorch; CUA_GPU_MT_ARGS adds
#                      arguments to cuarena-mt (e.g. "--cross 1": cross-thread frees)
#   CUA_GPU_STRESS_SECONDS, CUA_GPU_STRESS_THREADS  the thread stress on the GPU
#                      (tests/gpu/stress-cuda.c; default 60 s, 16 threads); the
#                      compute-sanitizer check (tests/gpu/sanitizer.sh) runs before it.
#                      Both write into log.txt only (no file of their own in $OUT);
#                      their result lines are printed with the tests' (whole seconds)
#   CUA_GPU_HARNESS    1, 140 or 1,140: build, then only the benchmark harness at
#                      those scales (bench/cuarena-bench: every allocator, the
#                      bundled traces at scale 1, the generated scenarios); each
#                      report comes back as report-sS.tar.gz; CUA_GPU_ALLOCATORS
#                      and CUA_GPU_SCENARIOS narrow it (cuarena-bench's --allocators,
#                      --scenarios), CUA_GPU_HARNESS_SECONDS stops each scale's run
#                      after that long with the allocators it finished,
#                      CUA_GPU_BUDGET_STEP sets --budget-step (default: 2 MiB at
#                      scale 1, 64 MiB above), CUA_GPU_NO_BUDGET=1 skips the
#                      minimum-budget bisection (--no-budget)
#   CUA_GPU_PROBE      set to 1 to measure what offload's copies are made of
#                      (tests/gpu/probe-copy.c, probe-offload.c)
#   CUA_GPU_PIN        CPU the timed replays' calling thread runs on (default 2;
#                      "none": not pinned), so that every allocator is timed on
#                      the same, quiet core; the CUDA driver's threads are not
#                      pinned with it (CUA_BENCH_PIN, bench/pin.h)
#
# $OUT keeps at most 8 files (what comes back from the GPU machine: run the part
# upstream, which adds upstream.json and upstream-table.md, in a visit of its
# own, CUA_GPU_PARTS=upstream CUA_GPU_SKIP_BENCH=1, when all 8 are made):
# log.txt (its first line names the GPU), engine_reload.jsonl,
# offload.txt, torch.jsonl, torch-table.md, mt.jsonl, and results.jsonl +
# table.md (not with CUA_GPU_SKIP_BENCH=1; then probe.txt with CUA_GPU_PROBE=1).
#
# The machine needs gcc, meson, ninja, the CUDA toolkit (cuda.h, libcudart)
# and a driver. Without zlib headers there, run tests/gpu/carry-zlib.sh on a
# machine that has them and carry .dev along. Exit status: 0 when every test
# passed and every benchmark ran.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

out=${OUT:-build-gpu/out}
mkdir -p "$out"
log=$out/log.txt
: >"$log"
repeat=${CUA_GPU_REPEAT:-15}
repeat_malloc=${CUA_GPU_REPEAT_MALLOC:-5}
status=0

say() { echo "== $*" | tee -a "$log"; }
# run NAME CMD...: run, keep its output in the log, remember a failure
run() {
    local name=$1 rc
    shift
    say "$name: $*"
    "$@" >>"$log" 2>&1
    rc=$?
    echo "$name exit $rc" >>"$log"
    if ((rc != 0 && rc != 77)); then status=1; fi
    return $rc
}

if ! pkg-config --exists zlib 2>/dev/null && [[ -f .dev/zlib/lib/pkgconfig/zlib.pc ]]; then
    export PKG_CONFIG_PATH=$PWD/.dev/zlib/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
fi
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"

# ---- build: release with the CUDA backend; the same tree serves tests and bench ----
# Link-time optimisation where the compiler can do it (it inlines across the
# layers' files); not every gcc installation has its LTO plugin.
# The first compiler of $CC, cc, gcc that links with -flto builds; else $CC without.
# The C++ tests link with -flto too: a C++ compiler whose lto-wrapper does not
# run (a second gcc installation earlier in PATH) turns LTO off for both.
lto=false
for c in ${CC:-} cc gcc; do
    if echo 'int main(void){return 0;}' | "$c" -flto -x c - -o build-gpu-lto-probe 2>/dev/null; then
        for cxx in ${CXX:-} c++ g++; do
            if echo 'int main(){return 0;}' | "$cxx" -flto -x c++ - -o build-gpu-lto-probe 2>/dev/null; then
                export CC=$c CXX=$cxx
                lto=true
                break 2
            fi
        done
    fi
done
rm -f build-gpu-lto-probe
say "link-time optimisation: $lto (compilers: ${CC:-default} ${CXX:-default})"
# A build tree made with another compiler or LTO setting is made again.
stamp="${CC:-default} ${CXX:-default} lto=$lto"
if [[ -f build-gpu/build.ninja && "$(cat build-gpu/cua-stamp 2>/dev/null)" != "$stamp" ]]; then
    rm -rf build-gpu
fi
if [[ ! -f build-gpu/build.ninja ]]; then
    run setup meson setup build-gpu --buildtype=release -Db_lto=$lto -Dcuda=enabled -Dwerror=true ||
        { tail -40 "$log"; exit 1; }
    echo "$stamp" >build-gpu/cua-stamp
fi
run build ninja -C build-gpu || { tail -40 "$log"; exit 1; }

# ---- the harness, alone ----------------------------------------------------------------
# CUA_GPU_HARNESS=1 or =140 (or 1,140): after the build, the benchmark harness
# (bench/cuarena-bench) instead of the tests and the table: every allocator
# over the bundled traces (scale 1 only) and the generated scenarios at that
# scale; each report comes back as $OUT/report-sS.tar.gz.
if [[ -n ${CUA_GPU_HARNESS:-} ]]; then
    export CUA_BENCH_PIN=${CUA_GPU_PIN:-2}
    for s in ${CUA_GPU_HARNESS//,/ }; do
        extra=(); [[ $s == 1 ]] || extra=(--no-bundled)
        # Budgets of a 60 GB run bisected to within 64 MiB (0.1 %): a page at a
        # time would cost 10 more replays per allocator and trace.
        bstep=${CUA_GPU_BUDGET_STEP:-}; [[ -z $bstep && $s != 1 ]] && bstep=$((64 << 20))
        [[ -n $bstep ]] && extra+=(--budget-step "$bstep")
        [[ -n ${CUA_GPU_ALLOCATORS:-} ]] && extra+=(--allocators "$CUA_GPU_ALLOCATORS")
        [[ ${CUA_GPU_NO_BUDGET:-0} == 1 ]] && extra+=(--no-budget)
        [[ -n ${CUA_GPU_SCENARIOS+x} ]] && extra+=(--scenarios "$CUA_GPU_SCENARIOS")
        # A time limit stops the harness with what it has (it writes its results
        # after each allocator); the report is then made again here with --report-only.
        lim=(); [[ -n ${CUA_GPU_HARNESS_SECONDS:-} ]] && lim=(timeout -s INT "$CUA_GPU_HARNESS_SECONDS")
        run harness-s"$s" "${lim[@]}" python3 bench/cuarena-bench --build build-gpu \
            --out build-gpu/report-s"$s" --scale "$s" --repeat "$repeat" "${extra[@]}"
        rm -rf build-gpu/report-s"$s"/traces
        tar -czf "$out/report-s$s.tar.gz" -C build-gpu report-s"$s"
    done
    grep -E '^\| |^(Peak|Minimum|ns per)' "$log" | tail -80
    echo "status: $status (log: $log)"
    exit $status
fi

# ---- tests ----------------------------------------------------------------------------
# part NAME: true when CUA_GPU_PARTS is unset or names it (a visit of 10 minutes
# at most per command: the parts split a full visit into several).
part() { [[ -z ${CUA_GPU_PARTS:-} || ",$CUA_GPU_PARTS," == *",$1,"* ]]; }
if part cuda; then
run test-cuda build-gpu/tests/gpu/test-cuda
grep -E '^(ok|FAIL|memory:|poison:)|passed,|skipped' "$log" | sed 's/^/   /' | tail -40
fi
if part sanitizer; then
# compute-sanitizer memcheck with cuarena's NVTX registration: a write past a
# block's end into its freed neighbour is reported with it, not without
# (tests/gpu/sanitizer.sh: three runs of tests/gpu/oob.c, each at most 25 s).
CUA_SANITIZER_TIMEOUT=25 run sanitizer timeout -k 5 100 bash tests/gpu/sanitizer.sh build-gpu
grep -E '^sanitizer: ' "$log" | sed 's/^/   /'
fi
if part nvtxprobe; then
# Which NVTX heap and region registrations compute-sanitizer accepts over VMM
# mappings (tests/gpu/probe-nvtx.c; each case at most 25 s).
# (the CUDA runtime initialised first; CUA_GPU_NVTX_CASES picks cases)
run probe-nvtx timeout -k 5 280 bash tests/gpu/probe-nvtx.sh build-gpu ${CUA_GPU_NVTX_CASES//,/ }
sed -n '/^probe-nvtx: ---- summary/,$p' "$log" | grep '^probe-nvtx: ' | sed 's/^/   /'
fi
if part stress; then
# Threads on streams of their own over shared and private arenas, every
# block's data verified before its free (tests/gpu/stress-cuda.c).
CUA_GPU_STRESS_SECONDS=${CUA_GPU_STRESS_SECONDS:-60} CUA_GPU_STRESS_THREADS=${CUA_GPU_STRESS_THREADS:-16} \
    run stress-cuda timeout -k 5 $((${CUA_GPU_STRESS_SECONDS:-60} + 30)) build-gpu/tests/gpu/stress-cuda --backend cuda
rc=$?
grep -E '^stress-cuda: ' "$log" | grep -v '^stress-cuda: backend ' | sed 's/^/   /' | tail -25
# A crash (killed by a signal): the same under ASan + UBSan, 20 s, for where.
if ((rc > 128 && rc != 137)); then
    run stress-cuda-asan timeout -k 5 120 bash tests/gpu/asan-rerun.sh tests/gpu/stress-cuda \
        --backend cuda --seconds 20 --threads "${CUA_GPU_STRESS_THREADS:-16}"
    grep -E -A40 'ERROR: AddressSanitizer|runtime error|^stress-cuda: .*(FAIL|PASS)' "$log" | head -60
fi
fi
# The API fuzzer on this machine's cores (part fuzz, not in the default set):
# the device has no clang, so the libFuzzer binary is built elsewhere
# (meson setup build-fuzz -Dfuzzer=true with clang; it needs only libc and
# libstdc++) and carried as build-fuzz/tests/fuzz/fuzz-api. One process per
# core for CUA_GPU_FUZZ_SECONDS (default 480) over the seed corpus.
if [[ ",${CUA_GPU_PARTS:-}," == *",fuzz,"* ]]; then
    if [[ -x build-fuzz/tests/fuzz/fuzz-api ]]; then
        run fuzz bash tests/fuzz/run-fuzz.sh build-fuzz/tests/fuzz/fuzz-api tests/fuzz/corpus \
            "${CUA_GPU_FUZZ_SECONDS:-480}" "$(nproc)"
        grep -E 'fuzzer processes|^[0-9]+ passed, [0-9]+ failed' "$log" | tail -2 | sed 's/^/   /'
    else
        say "fuzz: skipped (no build-fuzz/tests/fuzz/fuzz-api: build it with clang and carry it)"
    fi
fi
[[ ${CUA_GPU_SKIP_HOST:-0} == 1 ]] || ! part host ||
    run host-tests meson test -C build-gpu --suite host --num-processes 8 --print-errorlogs
if part reload; then
# The component-arena example on the GPU: 20 reload cycles, each back to the
# driver's baseline to the byte (the example's exit status says so).
run engine-reload build-gpu/examples/engine_reload --backend cuda --cycles 20 --scale 8 --json
grep '^{"cycle"' "$log" >"$out/engine_reload.jsonl" || true
python3 - "$out/engine_reload.jsonl" <<'PY' | tee -a "$log"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
back = sum(r["after_teardown_bytes"] == r["baseline_bytes"] for r in rows)
print("engine_reload (cuda): %d cycles, %d back to the baseline to the byte, offload/restore "
      "exact in %d, pointers stable in %d, peak %.2f GiB over a baseline of %.2f GiB"
      % (len(rows), back, sum(r["offload_restore_exact"] for r in rows),
         sum(r["pointers_stable"] for r in rows),
         max((r["peak_bytes"] for r in rows), default=0) / 2**30,
         rows[0]["baseline_bytes"] / 2**30 if rows else 0))
PY
fi

# PyTorch with cuarena as its allocator against torch's own, where torch is installed.
if ! part torch; then
    :
elif python3 -c 'import torch, pytest' 2>/dev/null; then
    rm -f "$out/torch.jsonl"
    CUARENA_LIB=$PWD/build-gpu/libcuarena.so CUA_TORCH_RESULTS=$(cd "$out" && pwd)/torch.jsonl \
        run torch python3 -m pytest -q -s tests/gpu/test_torch.py ${CUA_GPU_TORCH_K:+-k "$CUA_GPU_TORCH_K"}
    # (pytest -s prints its progress dots at the start of the tests' lines)
    sed -E 's/^[.sFE]+torch: /torch: /' "$log" | grep -E '^torch: |passed|failed|skipped' |
        grep -v '^torch: .*{'
    if [[ -s $out/torch.jsonl ]]; then
        python3 tests/gpu/torch_table.py "$out/torch.jsonl" >"$out/torch-table.md"
        cat "$out/torch-table.md"
    fi
else
    say "torch: skipped (no torch or pytest in python3)"
fi

# PyTorch's own allocator tests (tests/gpu/torch_upstream: ported from torch's
# test/test_cuda.py and test_cuda_multigpu.py), run natively and then with
# cuarena installed, each run at most CUA_GPU_UPSTREAM_TIMEOUT seconds (default
# 270; the cuarena run's install, a shim compiled now, comes before it): the table
# of both into upstream-table.md, everything into upstream.json, the counts and
# the tests that pass natively but not under cuarena onto the screen.
if ! part upstream; then
    :
elif python3 -c 'import torch, pytest' 2>/dev/null; then
    rm -f "$out/upstream.json" "$out/upstream-table.md"
    CUARENA_LIB=$PWD/build-gpu/libcuarena.so run upstream python3 tests/gpu/torch_upstream/run_upstream.py \
        --json "$out/upstream.json" --md "$out/upstream-table.md" \
        --timeout "${CUA_GPU_UPSTREAM_TIMEOUT:-270}" --test-timeout "${CUA_GPU_UPSTREAM_TEST_TIMEOUT:-60}" \
        ${CUA_GPU_UPSTREAM_ONLY:+--only "$CUA_GPU_UPSTREAM_ONLY"} ${CUA_GPU_UPSTREAM_K:+-k "$CUA_GPU_UPSTREAM_K"}
    grep -E '^upstream: ' "$log" | sed 's/^/   /'
    [[ -s $out/upstream-table.md ]] || say "upstream: no table (see the log)"
else
    say "upstream: skipped (no torch or pytest in python3)"
fi

# The wheel as a PyTorch user installs it (part wheel, only when named: it
# builds the package once more and runs test_torch.py again): pip wheel with
# the prebuilt shim, a fresh venv, install() in full mode with no compiler on
# PATH, test_torch.py against the installed package (tests/gpu/wheel.sh; carry
# .dev after tests/gpu/carry-pylib.sh where the machine lacks meson-python).
if [[ ",${CUA_GPU_PARTS:-}," == *",wheel,"* ]]; then
    from=$(($(wc -l <"$log") + 1))
    run wheel bash tests/gpu/wheel.sh "$out"
    tail -n +"$from" "$log" | sed -E 's/^[.sFE]+(torch|wheel): /\1: /' |
        grep -E '^wheel: |^torch: .*(mode|ratio)|passed|failed|skipped' | grep -v '^torch: .*{'
fi

# CuPy with cuarena as its allocator (tests/gpu/test_cupy.py: a CuPy workload in
# an arena, stream-aware on a non-blocking stream, and CuPy beside PyTorch
# through DLPack), where CuPy is installed; its result lines go to the log only.
if ! part cupy; then
    :
elif python3 -c 'import cupy, pytest' 2>/dev/null; then
    from=$(($(wc -l <"$log") + 1))
    CUARENA_LIB=$PWD/build-gpu/libcuarena.so run cupy python3 -m pytest -q -s tests/gpu/test_cupy.py
    tail -n +"$from" "$log" | sed -E 's/^[.sFE]+cupy: /cupy: /' |
        grep -E '^cupy: |passed|failed|skipped' | grep -v '^cupy: .*{'
else
    say "cupy: skipped (no cupy or pytest in python3)"
fi
# The integration examples (docs/integrations.md) on the GPU: C, C++ and the
# Python ones (each exits 77, skipped, without torch / CuPy); output to the log.
if part examples; then
run example-kv-sizing build-gpu/examples/kv_sizing --backend cuda
run example-cpp-raii build-gpu/examples/cpp_raii --backend cuda
CUARENA_LIB=$PWD/build-gpu/libcuarena.so PYTHONPATH=$PWD/python run example-pytorch-components \
    python3 examples/pytorch_components.py
CUARENA_LIB=$PWD/build-gpu/libcuarena.so PYTHONPATH=$PWD/python run example-cupy-arena \
    python3 examples/cupy_arena.py
grep -E '^(kv_sizing|cpp_raii|pytorch_components|cupy_arena): ' "$log" | sed 's/^/   /'
grep -E '^example-.* exit ' "$log" | sed 's/^/   /'
fi

# Offload and restore of a 4 GiB arena, three cycles (also inside test-cuda).
grep -E '^offload: .*(cycle [0-9]: offload|byte-exact)' "$log" | tee "$out/offload.txt"
# CUA_GPU_PROBE=1: the pieces an offload is made of, measured apart
# (tests/gpu/probe-copy.c), and offload/restore cycles of the library alone.
if [[ ${CUA_GPU_PROBE:-0} == 1 ]]; then
    cuda=${CUDA_HOME:-/usr/local/cuda}
    run probe-copy-build "${CC:-cc}" -O2 -I"$cuda/include" tests/gpu/probe-copy.c -o build-gpu/probe-copy \
        -L"$cuda/lib64/stubs" -lcuda -lpthread &&
        run probe-copy build-gpu/probe-copy 0 && run probe-copy-nt build-gpu/probe-copy 1
    run probe-offload-build "${CC:-cc}" -O2 -Iinclude tests/gpu/probe-offload.c -o build-gpu/probe-offload \
        -Lbuild-gpu -lcuarena -Wl,-rpath,"$PWD/build-gpu" && run probe-offload build-gpu/probe-offload
    grep -E '^(copy engine|unmap during|vmm |cpu threads|fault in|register|pipeline|non-temporal|cycle )' \
        "$log" >"$out/probe.txt"
fi

# Threads: alloc+free throughput of 1..16 threads, each on its own stream, one
# allocator (cuarena: one arena, its thread caches off, on, and as by default;
# cudaMallocAsync: the default pool; PyTorch's caching allocator), into mt.jsonl.
if [[ -x build-gpu/bench/cuarena-mt ]] && part mt; then
    mt=(build-gpu/bench/cuarena-mt --threads 1,2,4,8,16)
    read -ra mt_args <<<"${CUA_GPU_MT_ARGS:-}" # e.g. --cross 1 (cross-thread frees)
    mt+=("${mt_args[@]}")
    # (large: caches that keep blocks up to 16 MiB, 256 MiB per thread: the
    # bundled trace's sizes above 1 MiB, 6 % of them, then skip the lock too;
    # growth_slack: room above the demand peak, so that the footprint cap does
    # not swap pages under the lock when the streams' free blocks fragment)
    large=thread_cache:on,thread_cache_max:16M,thread_cache_bytes:256M
    confs=${CUA_GPU_MT_CONFS:-thread_cache:off thread_cache:on thread_cache:auto $large $large,growth_slack:256M}
    read -ra confs <<<"$confs" # (split on blanks, no file-name globbing)
    for conf in "${confs[@]}"; do
        run mt-cuarena-"${conf#*:}" "${mt[@]}" --backend cuda --ops 400000 --conf "$conf"
    done
    # CUA_GPU_MT_VARIANT="NAME:C_ARGS ...": the same library built again with
    # C_ARGS (comma-separated), one build per variant, e.g.
    # packed:-DCUA_BLOCK_ALIGN=8 (block descriptors packed instead of a
    # cache-line pair each), wake:-DCUA_LOCK_WAKE (a lock release that wakes a
    # napping taker), evlock:-DCUA_EVENTS_UNDER_LOCK (other streams' events
    # asked under the arena lock); each run with CUA_GPU_MT_VARIANT_CONFS
    # (default: the default arena) and labelled cuarena-NAME, beside the
    # build above in the same visit.
    read -ra variants <<<"${CUA_GPU_MT_VARIANT:-}"
    for variant in "${variants[@]}"; do
        vname=${variant%%:*} vargs=${variant#*:} vdir=build-gpu-${variant%%:*}
        vargs=${vargs//,/ } # (meson splits c_args on blanks, not on commas)
        [[ "$(cat "$vdir"/cua-stamp 2>/dev/null)" == "$stamp $vargs" ]] || rm -rf "$vdir"
        [[ -f $vdir/build.ninja ]] ||
            run setup-"$vname" meson setup "$vdir" --buildtype=release -Db_lto=$lto -Dcuda=enabled \
                -Dtests=false -Dc_args="$vargs" && echo "$stamp $vargs" >"$vdir"/cua-stamp
        run build-"$vname" ninja -C "$vdir" bench/cuarena-mt || continue
        read -ra vconfs <<<"${CUA_GPU_MT_VARIANT_CONFS:-thread_cache:auto}"
        for conf in "${vconfs[@]}"; do
            run mt-"$vname"-"${conf#*:}" "$vdir"/bench/cuarena-mt --threads 1,2,4,8,16 \
                --backend cuda --ops 400000 --conf "$conf" --label cuarena-"$vname" "${mt_args[@]}"
        done
    done
    if [[ ${CUA_GPU_MT_BASELINES:-1} == 1 ]]; then
        run mt-async "${mt[@]}" --mode async --ops 100000
        if python3 -c 'import torch' 2>/dev/null; then
            run mt-torch python3 bench/torch-mt.py --threads 1,2,4,8,16 --ops 100000
        fi
    fi
    grep '^{"allocator"' "$log" | grep '"threads"' >"$out/mt.jsonl"
    python3 - "$out/mt.jsonl" <<'PY' | tee -a "$log"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = sorted({(r["allocator"], r.get("conf", "")) for r in rows})
threads = sorted({r["threads"] for r in rows})
print("| allocator | " + " | ".join("%d thr (M ops/s)" % t for t in threads) +
      " | 16 vs 1 | driver calls at 16 | peak mapped / live at 1, at 16 |")
print("|---|" + "---|" * (len(threads) + 3))
for k in keys:
    by = {r["threads"]: r for r in rows if (r["allocator"], r.get("conf", "")) == k}
    cells = ["%.2f" % (by[t]["ops_per_s"] / 1e6) if t in by else "-" for t in threads]
    sp = by[max(by)]["speedup_over_one"] if by else 0
    top = by[max(by)] if by else {}
    calls = top.get("driver_calls")
    pm = lambda r: "-" if not r or r.get("peak_mapped_over_live") is None \
        else "%.3f" % r["peak_mapped_over_live"]
    print("| %s %s | %s | %.1fx | %s | %s, %s |" % (k[0], k[1], " | ".join(cells), sp,
                                                  "-" if calls is None else calls,
                                                  pm(by.get(min(by)) if by else None), pm(top)))
PY
fi

if [[ ${CUA_GPU_SKIP_BENCH:-0} == 1 ]]; then exit $status; fi


# ---- benchmark: one run, every allocator on the same traces -----------------------------
traces=(bench/traces/*.catrace.gz)
export CUA_BENCH_PIN=${CUA_GPU_PIN:-2}
say "timed runs: the calling thread pinned to CPU $CUA_BENCH_PIN"
replay=(build-gpu/bench/cuarena-replay)
run replay-cuda "${replay[@]}" --backend cuda --repeat "$repeat" --budget-search "${traces[@]}"
CUARENA_CONF=vmm:0 run replay-cuda-novmm "${replay[@]}" --backend cuda --repeat "$repeat" "${traces[@]}"
run replay-host "${replay[@]}" --backend host --repeat "$repeat" "${traces[@]}"
run baseline-async build-gpu/bench/cuarena-baseline --mode async --repeat "$repeat" "${traces[@]}"
run baseline-malloc build-gpu/bench/cuarena-baseline --mode malloc --repeat "$repeat_malloc" "${traces[@]}"
grep '^{' "$log" | grep '"trace"' >"$out/results.jsonl" || true

python3 tests/gpu/table.py "$out/results.jsonl" | tee "$out/table.md"
[[ -s $out/torch-table.md ]] && { echo; echo "PyTorch, native and cuarena:"; cat "$out/torch-table.md"; }
echo "status: $status (log: $log)"
exit $status
