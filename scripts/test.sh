#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs ember's whole test suite:
#   1. C++ unit tests (GoogleTest through ctest)
#   2. Python parity and integration tests (pytest, against HF tokenizers,
#      sentencepiece, gguf, safetensors and goldens from scripts/gen_*.py)
#   3. libFuzzer smoke runs of the file parsers (clang + ASan/UBSan)
# Ends with one line "tests: N passed, N failed, N skipped". GPU tests do not run
# here (no GPU in CI): scripts/gpu_check.sh runs them on a GPU machine.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${EMBER_BUILD_DIR:-$ROOT/build}"
FUZZ_DIR="${EMBER_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
FUZZ_SECONDS="${EMBER_FUZZ_SECONDS:-30}"
REPORTS="$BUILD_DIR/test-reports"
export EMBER_BUILD_DIR="$BUILD_DIR"
export EMBER_DEFAULT_MODEL="${EMBER_DEFAULT_MODEL:-${EMBER_MODEL_DIR:-$HOME/.cache/ember/models}/SmolLM2-135M-Instruct.Q4_1.gguf}"
start=$(date +%s)

"$ROOT/scripts/setup.sh" || { echo "tests: 0 passed, 1 failed"; exit 1; }
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
status=0

echo "=== C++ unit tests (ctest) ==="
(cd "$BUILD_DIR" && ctest --no-tests=error --output-on-failure -j"$(nproc)" --output-junit "$REPORTS/ctest.xml") || status=1

echo "=== Python tests (pytest) ==="
"$ROOT/.venv/bin/python" -m pytest -q "$ROOT/tests/integration" --junitxml="$REPORTS/pytest.xml" || status=1

echo "=== fuzz smoke runs (${FUZZ_SECONDS}s each) ==="
if [[ ! -f "$FUZZ_DIR/build.ninja" ]]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$ROOT" -B "$FUZZ_DIR" -G Ninja -DEMBER_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
fuzz_results="$REPORTS/fuzz.txt"
: > "$fuzz_results"
if ninja -C "$FUZZ_DIR"; then
  for bin in "$FUZZ_DIR"/fuzz_*; do
    [[ -x "$bin" ]] || continue
    name="$(basename "$bin")"
    corpus="$ROOT/tests/fuzz/corpus/${name#fuzz_}"
    work="$(mktemp -d)"
    if "$bin" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
         -artifact_prefix="$REPORTS/$name-" "$work" "$corpus" >"$REPORTS/$name.log" 2>&1; then
      echo "$name passed" | tee -a "$fuzz_results"
      grep -E "stat::number_of_executed_units|cov:" "$REPORTS/$name.log" | tail -2
    else
      echo "$name failed (see $REPORTS/$name.log)" | tee -a "$fuzz_results"
      tail -40 "$REPORTS/$name.log"
      status=1
    fi
    rm -rf "$work"
  done
else
  echo "fuzz build failed" | tee -a "$fuzz_results"
  status=1
fi

if (( $(grep -c . "$fuzz_results") < 3 )); then
  echo "expected at least 3 fuzz targets" | tee -a "$fuzz_results"
  status=1
fi

"$ROOT/.venv/bin/python" "$ROOT/scripts/summarize_tests.py" "$REPORTS" "$(( $(date +%s) - start ))" || status=1
exit $status
