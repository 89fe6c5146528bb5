#!/usr/bin/env bash
# tests/install/test-install.sh - cuarena as its users get it.
#
#   bash tests/install/test-install.sh MODE SOURCE_ROOT VERSION
#
# MODE is one of
#   pkgconfig   install a plain build of SOURCE_ROOT into a temporary prefix
#               (every file there, the soname, only the public headers'
#               functions exported); build tests/install/consumer.c with `pkg-config cuarena`
#               (shared, and static with `pkg-config --static`), run both
#   cmake       install with --destdir, move the tree elsewhere (the CMake
#               package must be relocatable), build consumer.c with
#               find_package(cuarena) and cuarena::cuarena / cuarena::cuarena_static
#               (tests/install/cmake-consumer), run both
#   subproject  a meson project with SOURCE_ROOT as subprojects/cuarena and
#               dependency('cuarena', fallback: 'cuarena')
#               (tests/install/meson-consumer); build it and run its test
# Every consumer checks that cua_version() and CUA_VERSION are VERSION and
# allocates and frees a block on the host backend.
#
# The library is built again here, plain (no sanitizer: a consumer of an ASan
# build would need ASan's flags too), small (-Dtests=false -Dbench=false
# -Dcuda=disabled, -O0) and with -Dwerror=true, in a temporary directory that
# is removed at the end. Exit status 77 (skipped) when a tool the mode needs
# (meson, ninja, a C compiler, pkg-config, cmake) is missing.
set -euo pipefail

mode=${1:?usage: test-install.sh MODE SOURCE_ROOT VERSION}
src=$(cd "${2:?usage: test-install.sh MODE SOURCE_ROOT VERSION}" && pwd)
want=${3:?usage: test-install.sh MODE SOURCE_ROOT VERSION}
here=$src/tests/install
meson=${MESON:-meson}
cc=${CC:-cc}

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || skip "$1 is not installed: the $mode consumer test needs it"; }

need "$meson"
need ninja
need "${cc%% *}"
case $mode in
    pkgconfig) need pkg-config ;;
    cmake) need cmake ;;
    subproject) ;;
    *) fail "unknown mode '$mode' (pkgconfig, cmake or subproject)" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cuarena-$mode.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Options of the library's own build: plain, small, warnings are errors.
lib_opts=(-Dtests=false -Dbench=false -Dcuda=disabled -Dbuildtype=plain -Dwerror=true
          -Db_sanitize=none)

run() { echo "+ $*"; "$@"; }

# Build and install the library: install_lib DESTDIR_OR_EMPTY PREFIX
install_lib() {
    local destdir=$1 prefix=$2
    run "$meson" setup "$tmp/build" "$src" --prefix "$prefix" "${lib_opts[@]}" >"$tmp/setup.log" ||
        { cat "$tmp/setup.log"; fail "meson setup of the library failed"; }
    run ninja -C "$tmp/build" >"$tmp/build.log" || { cat "$tmp/build.log"; fail "the library's build failed"; }
    if [[ -n $destdir ]]; then
        DESTDIR=$destdir run "$meson" install -C "$tmp/build" --no-rebuild >"$tmp/install.log"
    else
        run "$meson" install -C "$tmp/build" --no-rebuild >"$tmp/install.log"
    fi || { cat "$tmp/install.log"; fail "meson install failed"; }
}

# The files an install must hold, under ROOT (the prefix); prints the libdir.
check_tree() {
    local root=$1 libdir
    libdir=$(dirname "$(find "$root" -name libcuarena.a | head -n 1)")
    [[ -d $libdir ]] || fail "no libcuarena.a under $root"
    local f
    for f in "$root/include/cuarena.h" "$root/include/cuarena_inspect.h" "$root/include/cuarena_backend.h" \
        "$root/include/cuarena_frameworks.h" "$root/include/cuarena.hpp" "$libdir/libcuarena.a" \
        "$libdir/libcuarena.so" "$libdir/libcuarena.so.${want%%.*}" "$libdir/libcuarena.so.$want" \
        "$libdir/pkgconfig/cuarena.pc" "$libdir/cmake/cuarena/cuarena-config.cmake" \
        "$libdir/cmake/cuarena/cuarena-config-version.cmake"; do
        [[ -e $f ]] || fail "not installed: ${f#"$root"/}"
    done
    if command -v readelf >/dev/null; then
        readelf -d "$libdir/libcuarena.so.$want" | grep -q "SONAME.*\[libcuarena.so.${want%%.*}\]" ||
            fail "libcuarena.so.$want has no soname libcuarena.so.${want%%.*}"
    fi
    # Hidden visibility: the library exports the headers' functions and nothing else.
    if command -v nm >/dev/null; then
        local sym exported=0
        for sym in $(nm -D --defined-only "$libdir/libcuarena.so.$want" | awk '{print $3}'); do
            [[ $sym == cua_* ]] || fail "libcuarena.so exports $sym, not a cua_ name"
            grep -q "CUA_API .*\b$sym(" "$root"/include/cuarena.h "$root"/include/cuarena_inspect.h \
                "$root"/include/cuarena_backend.h "$root"/include/cuarena_frameworks.h ||
                fail "libcuarena.so exports $sym, which no public header declares with CUA_API"
            exported=$((exported + 1))
        done
        ((exported > 0)) || fail "libcuarena.so exports nothing"
    fi
    echo "$libdir"
}

# needs_shared EXE yes|no: whether EXE links libcuarena.so dynamically
check_needed() {
    command -v readelf >/dev/null || return 0
    if readelf -d "$1" | grep -q 'NEEDED.*libcuarena'; then
        [[ $2 == yes ]] || fail "$1 was meant to link libcuarena.a, but needs libcuarena.so"
    else
        [[ $2 == no ]] || fail "$1 does not link libcuarena.so"
    fi
}

case $mode in
pkgconfig)
    prefix=$tmp/prefix
    install_lib "" "$prefix"
    libdir=$(check_tree "$prefix" | tail -n 1)
    export PKG_CONFIG_PATH=$libdir/pkgconfig
    [[ $(pkg-config --modversion cuarena) == "$want" ]] ||
        fail "pkg-config --modversion cuarena says $(pkg-config --modversion cuarena), not $want"
    pkg-config --exists "cuarena >= $want" || fail "pkg-config: cuarena >= $want not found"
    static_libs=$(pkg-config --static --libs cuarena)
    echo "pkg-config --static --libs cuarena: $static_libs"
    for l in -lcuarena -lm; do
        [[ " $static_libs " == *" $l "* ]] || fail "pkg-config --static --libs lacks $l"
    done
    [[ " $static_libs " == *" -pthread "* || " $static_libs " == *" -lpthread "* ]] ||
        fail "pkg-config --static --libs lacks threads"
    read -r -a cflags <<<"$(pkg-config --cflags cuarena)"
    read -r -a libs <<<"$(pkg-config --libs cuarena)"
    read -r -a slibs <<<"${static_libs//-lcuarena/-l:libcuarena.a}"
    run $cc -std=c11 -Wall -Wextra -Werror "${cflags[@]}" "$here/consumer.c" -o "$tmp/consumer" \
        "${libs[@]}" "-Wl,-rpath,$(pkg-config --variable=libdir cuarena)"
    run $cc -std=c11 -Wall -Wextra -Werror -DCUA_STATIC "${cflags[@]}" "$here/consumer.c" \
        -o "$tmp/consumer-static" "${slibs[@]}"
    check_needed "$tmp/consumer" yes
    check_needed "$tmp/consumer-static" no
    run "$tmp/consumer" "$want"
    run "$tmp/consumer-static" "$want"
    ;;
cmake)
    # Installed for /opt/cuarena, found after a move to $tmp/moved.
    install_lib "$tmp/dest" /opt/cuarena
    mv "$tmp/dest/opt/cuarena" "$tmp/moved"
    check_tree "$tmp/moved" >/dev/null
    generator=()
    command -v ninja >/dev/null && generator=(-G Ninja)
    run cmake -S "$here/cmake-consumer" -B "$tmp/cbuild" "${generator[@]}" \
        -DCMAKE_PREFIX_PATH="$tmp/moved" -DCUARENA_WANT="$want" \
        -DCONSUMER_SRC="$here/consumer.c" -DCMAKE_C_COMPILER="${cc%% *}" \
        -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >"$tmp/cmake.log" ||
        { cat "$tmp/cmake.log"; fail "cmake could not configure the consumer"; }
    run cmake --build "$tmp/cbuild" >"$tmp/cbuild.log" ||
        { cat "$tmp/cbuild.log"; fail "the CMake consumer did not build"; }
    check_needed "$tmp/cbuild/consumer" yes
    check_needed "$tmp/cbuild/consumer_static" no
    run "$tmp/cbuild/consumer" "$want"
    run "$tmp/cbuild/consumer_static" "$want"
    ;;
subproject)
    mkdir -p "$tmp/proj/subprojects"
    cp "$here/meson-consumer/meson.build" "$here/meson-consumer/meson_options.txt" \
        "$here/consumer.c" "$tmp/proj/"
    ln -s "$src" "$tmp/proj/subprojects/cuarena"
    run "$meson" setup "$tmp/pbuild" "$tmp/proj" --force-fallback-for=cuarena -Dwant="$want" \
        -Dbuildtype=plain -Db_sanitize=none >"$tmp/setup.log" ||
        { cat "$tmp/setup.log"; fail "meson setup of the consumer failed"; }
    run ninja -C "$tmp/pbuild" >"$tmp/build.log" ||
        { cat "$tmp/build.log"; fail "the meson consumer did not build"; }
    check_needed "$tmp/pbuild/consumer" yes
    run "$tmp/pbuild/consumer" "$want"
    ;;
esac
echo "PASS: $mode consumer"
