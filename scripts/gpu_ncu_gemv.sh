#!/usr/bin/env bash
# Runs on the GPU machine (after scripts/gpu_bundle.sh): the batch-1 decode
# GEMVs of the Llama-3-8B shape under Nsight Compute (fp8_bench --once: bf16's
# gemv_kernel, FP8's gemv_fp8_kernel and the tensor-core gemv_mma_kernel at
# M = 1), and the first two's SASS, into $OUT (or ./gpu-results): where FP8's
# GEMV loses its rate against bf16's.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B="$ROOT/.gpu-bundle"
D="${OUT:-$ROOT/gpu-results}"
mkdir -p "$D"
if [[ ! -d "$B" && -f "$ROOT/.gpu-bundle.tar.xz" ]]; then tar -C "$ROOT" -xJf "$ROOT/.gpu-bundle.tar.xz"; fi
export LD_LIBRARY_PATH="$B/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
CUOBJDUMP="$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)"
"$CUOBJDUMP" --dump-sass "$B/fp8_bench" |
  awk '/Function :/ {p = ($0 ~ /gemv_fp8_kernelILi1ELi2ELi4ELi4E|gemv_kernelILi1ELi2ELi4E/)} p' >"$D/gemv.sass"
echo "sass lines: $(wc -l <"$D/gemv.sass")"
timeout 300 "$NCU" --clock-control none -k regex:gemv --section SpeedOfLight --section SchedulerStats --section MemoryWorkloadAnalysis \
  --section WarpStateStats --section Occupancy --section LaunchStats \
  "$B/fp8_bench" --once >"$D/ncu.txt" 2>&1
echo "ncu exit $?: $(grep -c '^  void .*gemv' "$D/ncu.txt") kernels profiled"
