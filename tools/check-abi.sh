#!/usr/bin/env bash
# tools/check-abi.sh LIBRARY SYMBOL_LIST [HEADER...]
#
# The functions LIBRARY (libcuarena.so) exports are exactly those of
# SYMBOL_LIST (tools/abi-symbols.txt, '#' lines are comments), and, when
# public headers are given, exactly the functions they declare CUA_API (a
# definition whose file does not see its header's declaration is hidden, and
# a header that promises a function the library lacks fails at link time in
# the user's build): prints what is missing and what is new, exit status 1
# when they differ; 77 (skip) without nm.
set -euo pipefail
usage="usage: check-abi.sh LIBRARY SYMBOL_LIST [HEADER...]"
lib=${1:?$usage}
list=${2:?$usage}
shift 2
command -v nm >/dev/null || { echo "nm is not installed: not checked"; exit 77; }
got=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sort)
want=$(grep -v '^#' "$list" | grep . | sort)
if (($#)); then
    # CUA_API <type> [*]name( ... on one line, as every public header writes it
    declared=$(grep -ho '^CUA_API [^(]*(' "$@" | sed -E 's/.*[ *]([a-z_0-9]+)\($/\1/' | sort -u)
    undeclared=$(comm -23 <(echo "$want") <(echo "$declared"))
    unlisted=$(comm -13 <(echo "$want") <(echo "$declared"))
    [[ -z $undeclared ]] || echo "in $list but declared CUA_API in no header: "$undeclared
    [[ -z $unlisted ]] || echo "declared CUA_API but not in $list: "$unlisted
    [[ -z $undeclared && -z $unlisted ]] || exit 1
fi
missing=$(comm -13 <(echo "$got") <(echo "$want"))
new=$(comm -23 <(echo "$got") <(echo "$want"))
[[ -z $missing ]] || echo "removed from the library (an ABI break): "$missing
[[ -z $new ]] || echo "exported but not in $list (add them there): "$new
[[ -z $missing && -z $new ]] || exit 1
echo "$(echo "$got" | wc -l) exported functions, as $list says"
