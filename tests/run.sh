#!/usr/bin/env bash
# tests/run.sh - build cuarena and run its tests.
#
#   bash tests/run.sh [BUILD_DIR]        (default: build)
#
# Installs meson, ninja, pkg-config, cmake (for the consumer test
# install-cmake) and the zlib headers with apt-get when one is missing,
# configures BUILD_DIR with -Dwerror=true (plus $CUA_MESON_ARGS), builds it
# with ninja, runs `meson test`, and prints "N passed, N failed"
# (", N skipped" when some were skipped) as its last line. The exit status is
# 0 only when the build succeeded and no test failed.
#
# Environment:
#   CUA_MESON_ARGS    more `meson setup` arguments, split on whitespace
#                     (e.g. "-Db_sanitize=address,undefined -Dbuildtype=debug")
#   CUA_TEST_JOBS     tests run at once (default 2)
#   CUA_TEST_ARGS     more `meson test` arguments, split on whitespace (e.g.
#                     "--suite fuzz" to run one suite)
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

# apt-get what is missing (as root, else through sudo); failures are reported
# and left to the build to trip over.
install_tools() {
    tools_missing || return 0
    local sudo=()
    if ((EUID != 0)); then
        if ! command -v sudo >/dev/null; then
            log "meson, ninja, pkg-config, cmake or zlib headers missing, and no sudo to install them"
            return 0
        fi
        sudo=(sudo)
    fi
    if ! command -v apt-get >/dev/null; then
        log "meson, ninja, pkg-config, cmake or zlib headers missing, and no apt-get to install them"
        return 0
    fi
    log "installing meson ninja-build zlib1g-dev pkg-config cmake"
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
    if ! "${apt[@]}" update -qq >&2 ||
        ! "${apt[@]}" install -y -qq meson ninja-build zlib1g-dev pkg-config cmake >&2; then
        log "apt-get failed; going on with what is installed"
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

main() {
    install_tools
    command -v meson >/dev/null || build_failed "meson is not installed"
    command -v ninja >/dev/null || build_failed "ninja is not installed"
    configure || build_failed "meson setup $build_dir failed"
    ninja -C "$build_dir" || build_failed "the build in $build_dir failed"

    local test_log rc passed failed skipped
    test_log=$(mktemp) || build_failed "mktemp failed"
    local test_args
    read -r -a test_args <<<"${CUA_TEST_ARGS:-}"
    meson test -C "$build_dir" --print-errorlogs --num-processes "${CUA_TEST_JOBS:-2}" "${test_args[@]}" |
        tee "$test_log"
    rc=${PIPESTATUS[0]}
    read -r passed failed skipped < <(parse_summary "$test_log")
    rm -f "$test_log"
    # meson test failing with no failed test counted (it could not run them)
    if ((rc != 0 && failed == 0)); then
        log "meson test exited with status $rc"
        failed=1
    fi
    finish "$passed" "$failed" "$skipped"
}

# `bash tests/run.sh --parse-summary LOG` prints the counts of a saved log
# (for checking the parser without a build).
if [[ ${1:-} == --parse-summary ]]; then
    parse_summary "$2"
    exit 0
fi
main
