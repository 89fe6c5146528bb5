#!/bin/sh
# check-torch-shim.sh - compile the PyTorch shim (python/cuarena/_torch_shim.cpp
# and _torch_history.cpp, with their headers) against a torch's headers, with
# -fsyntax-only: no torch library, no GPU and no Python package needed, so a
# change to the shim can be checked on a machine without torch before a GPU
# visit. TORCH_SDK names a directory holding torch's `include` folder and a
# Python's headers, made once on a machine with torch (the GPU machine):
#
#   T=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
#   P=$(python3 -c 'import sysconfig;print(sysconfig.get_paths()["include"])')
#   tar -C "$T" -cJf $OUT/torch-include.tar.xz include
#   tar -C "$(dirname "$P")" -cJf $OUT/py-include.tar.xz "$(basename "$P")"
#
# then here: unpack both into $TORCH_SDK (the Python headers as
# $TORCH_SDK/python3.X; Debian's multiarch pyconfig.h, if missing, as
# $TORCH_SDK/x86_64-linux-gnu/python3.X/pyconfig.h from a local Python).
# Usage: TORCH_SDK=DIR sh tools/check-torch-shim.sh  (exit 0: both compile)
set -eu
cd "$(dirname "$0")/.."
sdk=${TORCH_SDK:?set TORCH_SDK to the directory with torch\'s include folder}
py=$(ls -d "$sdk"/python3.* 2>/dev/null | head -1)
[ -n "$py" ] || { echo "check-torch-shim: no python3.X headers in $sdk" >&2; exit 2; }
cuda=${CUDA_HOME:-/usr/local/cuda}
for f in python/cuarena/_torch_shim.cpp python/cuarena/_torch_history.cpp; do
    g++ -std=c++17 -fsyntax-only -w -DTORCH_EXTENSION_NAME=_cuarena_torch \
        -DTORCH_API_INCLUDE_EXTENSION_H -I"$sdk/include" \
        -I"$sdk/include/torch/csrc/api/include" -I"$py" -I"$sdk" -I"$cuda/include" \
        -Iinclude "$f"
    echo "check-torch-shim: $f compiles"
done
