#!/usr/bin/env bash
# Builds the GPU test and benchmark binaries here (sm_90a) and gathers them,
# with the shared libraries the GPU machine lacks, into .gpu-bundle/ (git-ignored),
# to be carried to the GPU machine and run there by scripts/gpu_check.sh:
#   scripts/gpu_bundle.sh && <device run, carry .gpu-bundle> bash scripts/gpu_check.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-gpu"
BUNDLE="$ROOT/.gpu-bundle"
export PATH="/usr/local/cuda/bin:$PATH"
if [[ ! -f "$BUILD/build.ninja" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a >/dev/null
fi
ninja -C "$BUILD" ember_gpu_tests dequantize_bench
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/lib"
cp "$BUILD/ember_gpu_tests" "$BUILD/dequantize_bench" "$BUNDLE/"
# Libraries outside glibc and the CUDA driver: Debian 12's builds run on the GPU
# machine's newer glibc, but its own versions of these differ or are missing.
for bin in "$BUNDLE"/ember_gpu_tests "$BUNDLE"/dequantize_bench; do
  ldd "$bin" | awk '/=> \// {print $3}' | grep -v -E '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so' \
    | while read -r lib; do cp -L -n "$lib" "$BUNDLE/lib/"; done
done
du -sh "$BUNDLE"
