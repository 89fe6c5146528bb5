#!/usr/bin/env bash
# tools/check-abi.sh LIBRARY SYMBOL_LIST
#
# The functions LIBRARY (libcuarena.so) exports are exactly those of
# SYMBOL_LIST (tools/abi-symbols.txt, '#' lines are comments): prints what is
# missing and what is new, exit status 1 when they differ; 77 (skip) without nm.
set -euo pipefail
lib=${1:?usage: check-abi.sh LIBRARY SYMBOL_LIST}
list=${2:?usage: check-abi.sh LIBRARY SYMBOL_LIST}
command -v nm >/dev/null || { echo "nm is not installed: not checked"; exit 77; }
got=$(nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sort)
want=$(grep -v '^#' "$list" | grep . | sort)
missing=$(comm -13 <(echo "$got") <(echo "$want"))
new=$(comm -23 <(echo "$got") <(echo "$want"))
[[ -z $missing ]] || echo "removed from the library (an ABI break): "$missing
[[ -z $new ]] || echo "exported but not in $list (add them there): "$new
[[ -z $missing && -z $new ]] || exit 1
echo "$(echo "$got" | wc -l) exported functions, as $list says"
