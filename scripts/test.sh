#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs ember's whole test suite:
#   1. C++ unit tests (GoogleTest through ctest)
#   2. Python parity and integration tests (pytest, against HF tokenizers,
#      sentencepiece, gguf, safetensors and goldens from scripts/gen_*.py)
#   3. libFuzzer smoke runs of the file parsers (clang + ASan/UBSan)
#   4. the unit tests and the server's integration tests again under ASan+UBSan and (the threaded
#      ones) under TSan, in their own gcc builds (EMBER_SANITIZERS=0 leaves this stage out)
# Ends with one line "tests: N passed, N failed, N skipped". GPU tests do not run
# here (no GPU in CI): scripts/gpu_check.sh runs them on a GPU machine.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${EMBER_BUILD_DIR:-$ROOT/build}"
FUZZ_DIR="${EMBER_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
FUZZ_SECONDS="${EMBER_FUZZ_SECONDS:-10}"
ASAN_DIR="${EMBER_ASAN_BUILD_DIR:-$ROOT/build-asan}"
TSAN_DIR="${EMBER_TSAN_BUILD_DIR:-$ROOT/build-tsan}"
REPORTS="$BUILD_DIR/test-reports"
export EMBER_BUILD_DIR="$BUILD_DIR"
export EMBER_DEFAULT_MODEL="${EMBER_DEFAULT_MODEL:-${EMBER_MODEL_DIR:-$HOME/.cache/ember/models}/SmolLM2-135M-Instruct.Q4_1.gguf}"
start=$(date +%s)
stage_start=$start
stages=""
stage_done() {  # stage_done NAME: how long the stage since the last one took, for the summary
  local now
  now=$(date +%s)
  stages+="$1 $((now - stage_start))s, "
  stage_start=$now
}

"$ROOT/scripts/setup.sh" || { echo "tests: 0 passed, 1 failed"; exit 1; }
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
status=0
stage_done "setup+build"

echo "=== C++ unit tests (ctest) ==="
(cd "$BUILD_DIR" && ctest --no-tests=error --output-on-failure -j"$(nproc)" --output-junit "$REPORTS/ctest.xml") || status=1

stage_done ctest
echo "=== Python tests (pytest) ==="
"$ROOT/.venv/bin/python" -m pytest -q "$ROOT/tests/integration" --junitxml="$REPORTS/pytest.xml" || status=1
stage_done pytest

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
stage_done fuzz

# The sanitizer stage costs about 15 min cold on 2 cores (tests/README.md); with it CI stays under 40 minutes.
if [[ "${EMBER_SANITIZERS:-1}" == 1 ]]; then
  echo "=== sanitizers (ASan+UBSan, TSan) ==="
  # Own gcc builds at -O1 -g1 (line tables for the reports; asserts on), each of only the targets it runs (cost on
  # 2 cores: tests/README.md). Any report fails the run: a test's own, or one that `ember serve` or a tool left in
  # $REPORTS/{asan,tsan}-report.<pid>. Code runs 5-25x slower here, so what bounds wall-clock time or is slow only runs
  # above. ASan+UBSan: every unit test but the 5 s bound on a template, the SmolLM2 parity with transformers and the
  # 8-bit agreement with its goldens (100 s and 45 s here; LlamaDecoder.SmolLM2* and the Int8Kernel tests run the same
  # code) and the MpiGroup tests (they start mpirun on themselves: Open MPI's leaks at exit, below); test_server.py and
  # test_openai_protocol.py against an ASan `ember serve` but the SIGTERM drain and the stall detector (time bounds),
  # the tensor-parallel serves (several real-model processes; Open MPI leaks at exit from plugins it has unloaded,
  # which no suppression can name) and schemathesis (minutes; the fuzzers above cover the parsers it reaches), and the
  # non-streaming disconnect (30 s: the streamed disconnect test runs the same abort path), and the FP8 KV cache's
  # two real-model serves (its ops run under ASan in the KvCacheFp8 unit tests).
  san_results="$REPORTS/sanitizers.txt"
  : > "$san_results"
  san_fail() { echo "$1 failed" | tee -a "$san_results"; status=1; }
  san_build() {  # san_build DIR address|thread TARGET...
    local dir="$1" kind="$2"; shift 2
    if [[ ! -f "$dir/build.ninja" ]]; then
      CC=gcc CXX=g++ cmake -S "$ROOT" -B "$dir" -G Ninja -DEMBER_SANITIZE="$kind" -DCMAKE_BUILD_TYPE=Debug \
        "-DCMAKE_C_FLAGS_DEBUG=-O1 -g1" "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" >/dev/null || return 1
    fi
    ninja -C "$dir" "$@"
  }
  san_check() {  # san_check NAME: NAME.xml was written, and no process left a sanitizer report
    local f
    [[ -f "$REPORTS/$1.xml" ]] || san_fail "$1 (no report)"
    for f in "$REPORTS/${1#*-}-report".*; do
      [[ -f "$f" ]] || continue
      san_fail "$1: $(basename "$f")"
      head -80 "$f"
    done
  }
  export UBSAN_OPTIONS="print_stacktrace=1"
  asan_options="check_initialization_order=1:strict_init_order=1"
  if san_build "$ASAN_DIR" address ember_unit_tests ember ember_protocol_tool; then
    (cd "$ASAN_DIR" && ASAN_OPTIONS="$asan_options" ctest --no-tests=error --output-on-failure -j"$(nproc)" --timeout 900 \
       -E '^(ChatTemplate\.QuadraticConcatenationIsBoundedByWork|HfParity\.SmolLM2(Int8)?Greedy[A-Za-z]*|MpiGroup\..*)$' \
       --output-junit "$REPORTS/ctest-asan.xml") || status=1
    san_check ctest-asan
    EMBER_BUILD_DIR="$ASAN_DIR" ASAN_OPTIONS="$asan_options:log_path=$REPORTS/asan-report" \
      UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$REPORTS/asan-report" "$ROOT/.venv/bin/python" -m pytest -q \
      "$ROOT/tests/integration/test_server.py" "$ROOT/tests/integration/test_openai_protocol.py" \
      -k "not stalled_engine and not sigterm and not tensor_parallel and not schemathesis and not non_streaming_request_is_aborted and not fp8_kv_cache" \
      --junitxml="$REPORTS/pytest-asan.xml" || status=1
    san_check pytest-asan
  else
    san_fail "asan build"
  fi
  stage_done asan
  # TSan: the unit tests whose code runs threads (the CPU thread pool, tensor-parallel groups, the engine thread with
  # its scheduler, the model runner's ranks), the loadgen units (the TSan build compiles only their files:
  # CMakeLists.txt), and `ember serve` / `ember bench` under concurrent
  # clients, aborts and overload (the server's and the load generator's threads). The disconnect test (2 min under
  # TSan, 80% of this list) is left out: the aborts it makes run the same code as the one-request-fills-the-queue test.
  tsan_options="second_deadlock_stack=1:suppressions=$ROOT/tests/tsan.supp"  # third-party false positives only
  tsan_units='^(ThreadPool|ThreadGroup|TcpGroup|ProcessGroup|CpuLinear|CpuTensorParallel|ModelRunnerTest|EngineTest|SpecEngineTest|Scheduler|SchedulerProperty|BlockManager|Loadgen[A-Za-z]*)\.'
  if san_build "$TSAN_DIR" thread ember_unit_tests ember; then
    (cd "$TSAN_DIR" && TSAN_OPTIONS="$tsan_options" ctest --no-tests=error --output-on-failure -j"$(nproc)" --timeout 900 \
       -R "$tsan_units" --output-junit "$REPORTS/ctest-tsan.xml") || status=1
    san_check ctest-tsan
    it="$ROOT/tests/integration"
    EMBER_BUILD_DIR="$TSAN_DIR" TSAN_OPTIONS="$tsan_options:log_path=$REPORTS/tsan-report" "$ROOT/.venv/bin/python" -m pytest -q \
      "$it/test_server.py::test_streamed_completion_text_equals_non_streamed" "$it/test_server.py::test_n_and_seed_reproducibility" \
      "$it/test_server.py::test_one_request_cannot_fill_the_queue" \
      "$it/test_server.py::test_overload_gets_503_and_admitted_requests_complete" \
      "$it/test_bench.py::test_bench_serve_against_ember" "$it/test_bench.py::test_bench_throughput_offline_engine" \
      --junitxml="$REPORTS/pytest-tsan.xml" || status=1
    san_check pytest-tsan
  else
    san_fail "tsan build"
  fi
  stage_done tsan
fi
echo "stages: ${stages%, }"

"$ROOT/.venv/bin/python" "$ROOT/scripts/summarize_tests.py" "$REPORTS" "$(( $(date +%s) - start ))" || status=1
exit $status
