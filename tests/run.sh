#!/usr/bin/env bash
# tests/run.sh - build cuarena and run its tests.
#
#   bash tests/run.sh [BUILD_DIR]        (default: build)
#
# Installs meson, ninja, pkg-config, cmake (for the consumer test
# install-cmake), the zlib headers, and Debian's python3-mesonpy, -venv, -pip
# (install-pip) and python3-prometheus-client (test-prometheus) with apt-get
# when one is missing - saying so, and why when apt-get is busy or missing,
# then falling back to `pip install meson ninja` for the two it cannot do
# without; configures BUILD_DIR with -Dwerror=true (plus $CUA_MESON_ARGS),
# builds it with ninja, runs `meson test` one suite after another (host,
# install, gpu, ...: a line per test as it ends, a line per suite with its
# counts and seconds), and prints "N passed, N failed" (", N skipped" when
# some were skipped) as its last line. The quick suite leaves out the suite
# 'long' (the fault sweep with glibc's malloc fills: minutes); .ci/run adds
# it. The exit status is 0 only when the build succeeded and no test failed.
#
# Environment:
#   CUA_MESON_ARGS    more `meson setup` arguments, split on whitespace
#                     (e.g. "-Db_sanitize=address,undefined -Dbuildtype=debug")
#   CUA_TEST_JOBS     tests run at once (default 2)
#   CUA_TEST_ARGS     more `meson test` arguments, split on whitespace (e.g.
#                     "--suite fuzz" to run one suite); the tests then run in
#                     one `meson test`
#   CUA_TEST_LONG     1: the suite 'long' too
#   CUA_SUMMARY_FILE  if set, a line "PASSED FAILED SKIPPED" is appended to it
#                     (how .ci/run adds up several builds)
#   CC                the C compiler, read when BUILD_DIR is configured
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
build_dir=${1:-build}
read -r -a extra_args <<<"${CUA_MESON_ARGS:-}"

log() { echo "tests/run.sh: $*" >&2; }

# Print the result line, record it for .ci/run, and exit.
finish() {
    local passed=$1 failed=$2 skipped=$3
    if [[ -n ${CUA_SUMMARY_FILE:-} ]]; then
        echo "$passed $failed $skipped" >>"$CUA_SUMMARY_FILE"
    fi
    if ((skipped > 0)); then
        echo "$passed passed, $failed failed, $skipped skipped"
    else
        echo "$passed passed, $failed failed"
    fi
    ((failed == 0)) && exit 0
    exit 1
}

build_failed() {
    log "$*"
    finish 0 1 0
}

have_zlib() {
    pkg-config --exists zlib 2>/dev/null || [[ -f /usr/include/zlib.h ]]
}

tools_missing() {
    ! command -v meson >/dev/null || ! command -v ninja >/dev/null ||
        ! command -v pkg-config >/dev/null || ! command -v cmake >/dev/null || ! have_zlib
}

# The Python packages of install-pip and test-prometheus, for Debian's Python
# (which python3-* serve).
python_missing() {
    local py=/usr/bin/python3
    [[ -x $py ]] || return 1 # no Debian Python: nothing apt-get would fix
    ! "$py" -c 'import mesonpy, prometheus_client, venv, ensurepip' 2>/dev/null ||
        ! "$py" -m pip --version >/dev/null 2>&1
}

# apt-get what is missing; then, for meson and ninja, pip. Failures are said
# and left to the build (or the tests, which skip) to trip over.
install_tools() {
    # shellcheck source=tests/tools.sh
    . tests/tools.sh
    if tools_missing; then
        cua_apt_install tests/run.sh meson ninja-build zlib1g-dev pkg-config cmake ||
            log "going on with what is installed"
        if ! command -v meson >/dev/null || ! command -v ninja >/dev/null; then
            cua_pip_meson tests/run.sh || log "no meson or ninja: the build cannot start"
        fi
    fi
    if python_missing; then
        cua_apt_install tests/run.sh python3-mesonpy python3-venv python3-pip python3-prometheus-client ||
            log "install-pip and test-prometheus will skip"
    fi
}

configure() {
    local args=(-Dwerror=true "${extra_args[@]}")
    # Without zlib the replay tool and benchmarks cannot build; the tests can.
    if ! have_zlib; then
        log "no zlib headers: configuring with -Dbench=false"
        args+=(-Dbench=false)
    fi
    if [[ -f $build_dir/meson-private/coredata.dat ]]; then
        # Reconfigure only when asked for options; a plain rerun keeps the setup.
        ((${#extra_args[@]} == 0)) && return 0
        meson setup --reconfigure "$build_dir" "${args[@]}"
    else
        meson setup "$build_dir" "${args[@]}"
    fi
}

# Read meson test's summary ("Ok:  8", "Fail:  0", ...) from a log and print
# "PASSED FAILED SKIPPED". Fail, Timeout and Unexpected Pass count as failed.
# No summary at all (meson test itself broke) counts as one failure.
parse_summary() {
    awk '
        /^Ok:[ \t]+[0-9]+[ \t]*$/              { ok = $2; seen = 1 }
        /^Expected Fail:[ \t]+[0-9]+[ \t]*$/   { xfail = $3; seen = 1 }
        /^Fail:[ \t]+[0-9]+[ \t]*$/            { fail = $2; seen = 1 }
        /^Unexpected Pass:[ \t]+[0-9]+[ \t]*$/ { xpass = $3; seen = 1 }
        /^Skipped:[ \t]+[0-9]+[ \t]*$/         { skip = $2; seen = 1 }
        /^Timeout:[ \t]+[0-9]+[ \t]*$/         { timeout = $2; seen = 1 }
        END {
            if (!seen) { print 0, 1, 0; exit }
            print ok + xfail, fail + timeout + xpass, skip
        }' "$1"
}

# The suites to run one after another, in this order, then any other: a test
# in several suites runs with the first of them.
SUITE_ORDER=(host install gpu fuzz long)

# The suites to run: of each test of BUILD_DIR, its first suite in
# SUITE_ORDER (then by name); each once, in that order.
list_suites() {
    meson test -C "$build_dir" --list 2>/dev/null | awk -v order="${SUITE_ORDER[*]}" '
        BEGIN { n = split(order, o, " "); for (i = 1; i <= n; i++) rank[o[i]] = i }
        / \/ / {
            sub(/ \/ .*/, ""); sub(/^[^:]*:/, "")
            k = split($0, s, "+"); best = ""; br = 1000
            for (i = 1; i <= k; i++) { r = (s[i] in rank) ? rank[s[i]] : 100; if (r < br) { br = r; best = s[i] } }
            if (!(best in seen)) { seen[best] = br }
        }
        END { for (b in seen) print seen[b], b }' | sort -k1,1n -k2 | cut -d" " -f2
}

# Run `meson test` with ARGS; add its counts to the totals.
run_tests() {
    local test_log rc p f s
    test_log=$(mktemp) || build_failed "mktemp failed"
    meson test -C "$build_dir" --no-rebuild --print-errorlogs --num-processes "${CUA_TEST_JOBS:-2}" "$@" |
        tee "$test_log"
    rc=${PIPESTATUS[0]}
    read -r p f s < <(parse_summary "$test_log")
    rm -f "$test_log"
    # meson test failing with no failed test counted (it could not run them)
    if ((rc != 0 && f == 0)); then
        log "meson test exited with status $rc"
        f=1
    fi
    last_counts=("$p" "$f" "$s")
    ((total_passed += p, total_failed += f, total_skipped += s))
}

total_passed=0 total_failed=0 total_skipped=0

main() {
    install_tools
    command -v meson >/dev/null || build_failed "meson is not installed"
    command -v ninja >/dev/null || build_failed "ninja is not installed"
    log "configuring $build_dir"
    configure || build_failed "meson setup $build_dir failed"
    log "building $build_dir"
    ninja -C "$build_dir" || build_failed "the build in $build_dir failed"

    local test_args=() long=()
    read -r -a test_args <<<"${CUA_TEST_ARGS:-}"
    [[ ${CUA_TEST_LONG:-} == 1 || " ${test_args[*]} " == *" long "* ]] || long=(--no-suite long)
    if ((${#test_args[@]})); then
        log "meson test ${test_args[*]} ${long[*]}"
        run_tests "${test_args[@]}" "${long[@]}"
    else
        local suite done_suites=() t0
        while read -r suite; do
            [[ -n $suite ]] || continue
            if [[ $suite == long && ${#long[@]} -gt 0 ]]; then
                log "suite long: left out (the quick suite; CUA_TEST_LONG=1 or .ci/run runs it)"
                continue
            fi
            log "suite $suite"
            t0=$SECONDS
            run_tests --suite "$suite" "${done_suites[@]}" "${long[@]}"
            log "suite $suite: ${last_counts[0]} passed, ${last_counts[1]} failed, ${last_counts[2]} skipped in $((SECONDS - t0)) s"
            done_suites+=(--no-suite "$suite")
        done < <(list_suites)
    fi
    finish "$total_passed" "$total_failed" "$total_skipped"
}

# `bash tests/run.sh --parse-summary LOG` prints the counts of a saved log
# (for checking the parser without a build).
if [[ ${1:-} == --parse-summary ]]; then
    parse_summary "$2"
    exit 0
fi
main
