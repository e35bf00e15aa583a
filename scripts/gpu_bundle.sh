#!/usr/bin/env bash
# Builds the GPU binaries here (sm_90a: the H100/H200 the device tool lends)
# and gathers them, with the shared libraries the GPU machine lacks and the
# openai client's wheels, into .gpu-bundle/ (git-ignored), to be carried to
# the GPU machine and run there by scripts/gpu_check.sh:
#   scripts/gpu_bundle.sh && <device run, carry .gpu-bundle> bash scripts/gpu_check.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-gpu"
BUNDLE="$ROOT/.gpu-bundle"
export PATH="/usr/local/cuda/bin:$PATH"
if [[ ! -f "$BUILD/build.ninja" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a -DEMBER_BENCH=ON >/dev/null
fi
BINS=(ember ember_gpu_tests attention_bench gemm_bench sampler_bench fp8_bench)
ninja -C "$BUILD" "${BINS[@]}"
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/lib"
for b in "${BINS[@]}"; do cp "$BUILD/$b" "$BUNDLE/"; done
# Libraries outside glibc and the CUDA driver: Debian 12's builds run on the GPU
# machine's newer glibc, but its own versions of these differ or are missing.
for b in "${BINS[@]}"; do
  (ldd "$BUNDLE/$b" | awk '/=> \// {print $3}' | grep -v -E '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*|libcuda|libcudart|libcublas|libcublasLt|libnccl)\.so' || true) \
    | while read -r lib; do cp -L -n "$lib" "$BUNDLE/lib/"; done
done
# The official openai client for the serve check (the GPU machine has no internet).
if [[ -x "$ROOT/.venv/bin/pip" ]]; then
  "$ROOT/.venv/bin/pip" download -q -d "$BUNDLE/wheels" --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 openai >/dev/null 2>&1 \
    || echo "gpu_bundle: could not download the openai wheels (the serve check falls back to urllib)"
fi
# SmolLM2's tokenizer alone (the 98 MB model does not travel) for the serve benchmark.
MODEL="${EMBER_DEFAULT_MODEL:-$HOME/.cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
"$ROOT/.venv/bin/python" "$ROOT/scripts/make_tokenizer_gguf.py" "$MODEL" "$BUNDLE/smollm2-tokenizer.gguf"
strip "$BUNDLE"/ember "$BUNDLE"/*_bench  # the test binary keeps symbols for gdb
# Carried files are limited to 64 MiB: ship one archive (ICU's data alone is 30 MB).
tar -C "$ROOT" -cf - .gpu-bundle | xz -6 -T2 > "$ROOT/.gpu-bundle.tar.xz"
du -sh "$BUNDLE" "$ROOT/.gpu-bundle.tar.xz"
