#!/usr/bin/env bash
# Runs on the GPU machine: the GPU tests (CUDA kernels against their CPU
# references) and the kernel benchmarks, from the bundle scripts/gpu_bundle.sh
# made. Writes JSON results under $OUT (or ./gpu-results) and ends with a summary.
# Fails loudly when there is no GPU: a GPU check never passes by skipping.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$ROOT/.gpu-bundle"
RESULTS="${OUT:-$ROOT/gpu-results}"
mkdir -p "$RESULTS"
export LD_LIBRARY_PATH="$BUNDLE/lib:${LD_LIBRARY_PATH:-}"

if ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$RESULTS/gpu.txt"; then
  echo "gpu_check: no GPU visible (nvidia-smi failed)"; exit 1
fi
[[ -x "$BUNDLE/ember_gpu_tests" ]] || { echo "gpu_check: run scripts/gpu_bundle.sh first and carry .gpu-bundle"; exit 1; }

status=0
"$BUNDLE/ember_gpu_tests" --gtest_output="json:$RESULTS/gpu_tests.json" 2>&1 | tee "$RESULTS/gpu_tests.log" | tail -30
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
"$BUNDLE/dequantize_bench" | tee "$RESULTS/dequantize_bench.jsonl" || status=1

echo "=== summary ==="
python3 - "$RESULTS" <<'PY'
import json, pathlib, sys
r = pathlib.Path(sys.argv[1])
t = json.loads((r / "gpu_tests.json").read_text())
print(f"GPU tests: {t['tests'] - t['failures'] - t.get('errors', 0)} passed, {t['failures']} failed")
for line in (r / "dequantize_bench.jsonl").read_text().splitlines():
    b = json.loads(line)
    print(f"dequantize {b['format']:5s} {b['gb_per_s']:8.1f} GB/s  copy {b['copy_gb_per_s']:8.1f} GB/s  ratio {b['ratio']:.2f}")
PY
exit $status
