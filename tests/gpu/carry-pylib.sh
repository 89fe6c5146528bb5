#!/bin/sh
# The GPU machine has no package registry and may lack meson-python. Run this
# here (Debian, apt reachable) before a GPU visit that builds the wheel (part
# wheel of tests/gpu/run.sh): it downloads Debian's python3-mesonpy and what it
# imports (pure Python) and unpacks them into .dev/pylib (ignored by git); pass
# `carry: [".dev"]` to the device run. tests/gpu/wheel.sh puts .dev/pylib on
# PYTHONPATH for the build only, when the machine's Python has no mesonpy.
set -eu
cd "$(dirname "$0")/../.."
d=.dev/pylib
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download python3-mesonpy python3-pyproject-metadata python3-packaging >/dev/null 2>&1) ||
    { echo "carry-pylib: apt-get download failed (no Debian registry?)" >&2; exit 1; }
for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/x"; done
rm -rf "$d"
mkdir -p "$d"
cp -r "$tmp"/x/usr/lib/python3/dist-packages/* "$d/"
mkdir -p .git/info; grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo '/.dev/' >> .git/info/exclude
echo "meson-python for the GPU run in $d: $(ls "$d" | tr '\n' ' ')"
