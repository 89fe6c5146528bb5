#!/bin/sh
# The GPU machine has no package registry and may lack zlib's headers. Run this
# here (Debian, zlib1g-dev installed) before a GPU run: it copies zlib's headers
# and static library into .dev/zlib (ignored by git) with a pkg-config file;
# pass `carry: [".dev"]` to the device run and tests/gpu/run.sh uses it when
# the machine has no zlib of its own.
set -eu
cd "$(dirname "$0")/../.."
d=.dev/zlib
mkdir -p "$d/include" "$d/lib/pkgconfig"
cp /usr/include/zlib.h /usr/include/zconf.h "$d/include/"
cp "$(gcc -print-file-name=libz.a)" "$d/lib/"
cat > "$d/lib/pkgconfig/zlib.pc" <<PC
prefix=\${pcfiledir}/../..
Name: zlib
Description: zlib (static, carried for the GPU run)
Version: $(pkg-config --modversion zlib)
Cflags: -I\${prefix}/include
Libs: \${prefix}/lib/libz.a
PC
mkdir -p .git/info; grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo '/.dev/' >> .git/info/exclude
echo "zlib for the GPU run in $d"
