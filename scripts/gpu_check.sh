#!/usr/bin/env bash
# Runs on the GPU machine, from the bundle scripts/gpu_bundle.sh made: the GPU
# tests (CUDA kernels against their CPU references, the CUDA runner against
# the CPU backend and Hugging Face), the kernel benchmarks beside their torch
# references, Llama-3-8B-shape decode and offline throughput, and `ember
# serve` on the GPU answering the openai client. Writes everything under $OUT
# (or ./gpu-results) and ends with a summary table. Fails loudly when there is
# no GPU: a GPU check never passes by skipping.
#   EMBER_GPU_STAGES="tests bench llama profile throughput async spec spec_alpha structured serve" picks stages
#   (default: all but profile and mma; `gemm` runs gemm_bench alone, `mma` compares EMBER_GEMV=mma with the default,
#   `fp8` compares --quantization fp8 with bf16, `fp8b8` 2-32 sequences' decode across the FP8 small-M kernels, `fp8prof` FP8's offline op profile and
#   offline throughput at 512 sequences, `fp8b1` batch-1 decode across the FP8 GEMV's launch shapes and
#   epilogues, `fp8split` batch-1 FP8 with the norms split across the GEMVs against the norm kernel, `fp8rope` offline FP8 with q/k/v's scales in the rope, `attnb1` batch-1 decode
#   with the decode attention's early key loads on and off, `fp8kv`
#   --kv-cache-dtype fp8 with the bf16 cache and serves the openai client with both). EMBER_GPU_TEST_FILTER narrows
#   the GPU tests; EMBER_GPU_RESULTS_DIR gathers the logs there (under $OUT: a run cut short still returns them);
#   EMBER_FP8_B1_VARIANTS ("0 1 2 3 4") and EMBER_FP8_B1_CHAIN=0 shorten stage fp8b1, EMBER_FP8_ROWS ("2 3 8 32") fp8b8; EMBER_FP8_SPLIT_ROUNDS (2) and
#   EMBER_FP8_SPLIT_FORMS (EMBER_FP8_NORM_SPLIT values, "0 1") shape stage fp8split.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$ROOT/.gpu-bundle"
# Results gather here and leave as one archive (the device tool returns few files).
DEST="${OUT:-$ROOT/gpu-results}"
# EMBER_GPU_RESULTS_DIR: gather there instead (e.g. under $OUT, so a run cut short still returns its logs).
R="${EMBER_GPU_RESULTS_DIR:-$(mktemp -d)}"
mkdir -p "$R"
mkdir -p "$DEST"
STAGES="${EMBER_GPU_STAGES:-tests bench llama throughput async spec spec_alpha structured fp8 fp8b8 fp8kv serve}"
export LD_LIBRARY_PATH="$BUNDLE/lib:/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
cd "$ROOT"
if [[ ! -d "$BUNDLE" && -f "$ROOT/.gpu-bundle.tar.xz" ]]; then tar -C "$ROOT" -xJf "$ROOT/.gpu-bundle.tar.xz"; fi

if ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$R/gpu.txt"; then
  echo "gpu_check: no GPU visible (nvidia-smi failed)"; exit 1
fi
[[ -x "$BUNDLE/ember_gpu_tests" ]] || { echo "gpu_check: run scripts/gpu_bundle.sh first and carry .gpu-bundle"; exit 1; }
status=0
run() {  # run NAME TIMEOUT CMD...: output to $R/NAME.log, failure recorded
  local name=$1 t=$2; shift 2
  echo "=== $name"
  timeout "$t" "$@" >"$R/$name.log" 2>&1
  local rc=$?
  tail -4 "$R/$name.log"
  [[ $rc -eq 0 ]] || { echo "!!! $name failed (exit $rc)"; status=1; }
  return $rc
}
has() { [[ " $STAGES " == *" $1 "* ]]; }

if has tests; then
  if [[ -z "${EMBER_GPU_TEST_FILTER:-}" ]]; then
    run hf_reference 180 python3 scripts/gpu_hf_reference.py /tmp/hf_ref
    python3 -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)"
    cat /tmp/hf_ref/config.json | tr -d '\n' | head -c 1500; echo
  fi
  # The Hugging Face tests in their own process: a crash there leaves the rest's results.
  # EMBER_GPU_TEST_FILTER narrows the first run (a gtest filter; the Hugging Face tests run apart either way).
  run gpu_tests 420 "$BUNDLE/ember_gpu_tests" --gtest_filter="${EMBER_GPU_TEST_FILTER:-*}:-*HuggingFace*" \
    --gtest_output="json:$R/gpu_tests.json"
  [[ -z "${EMBER_GPU_TEST_FILTER:-}" ]] && EMBER_HF_REF=/tmp/hf_ref run gpu_tests_hf 300 "$BUNDLE/ember_gpu_tests" --gtest_filter='*HuggingFace*' \
    --gtest_output="json:$R/gpu_tests_hf.json"
  grep -A30 "fatal signal" "$R/gpu_tests_hf.log" | head -40
  if [[ -n "${EMBER_GPU_TESTS_ONE_PROCESS:-}" ]]; then
    # Every test in one process (the order CI-less developers run them in).
    EMBER_HF_REF=/tmp/hf_ref run gpu_tests_all 420 "$BUNDLE/ember_gpu_tests" --gtest_output="json:$R/gpu_tests_all.json"
    grep -A30 "fatal signal" "$R/gpu_tests_all.log" | head -40
  fi
  grep -E "^\[  FAILED|worst|agree|rel_err" "$R/gpu_tests.log" | head -60
fi
if has gemm && ! has bench; then
  run gemm_bench 240 "$BUNDLE/gemm_bench"
fi
if has bench; then
  run attention_bench 240 "$BUNDLE/attention_bench"
  run sdpa_reference 240 python3 bench/cuda/sdpa_reference.py
  run gemm_bench 240 "$BUNDLE/gemm_bench"
  run gemm_reference 240 python3 bench/cuda/gemm_reference.py
  run sampler_bench 120 "$BUNDLE/sampler_bench"
fi
LLAMA=(--model configs/models/llama-3-8b.json --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json
       --device cuda --max-model-len 4096)
# The batch-8 and batch-32 prompts of the decode runs (any stage may be run alone).
printf 'The history of the\nOnce upon a time\nIn the beginning\nThe quick brown fox\nA long time ago\nThe main reason\nFirst of all\nThe results show\n' >/tmp/prompts8.txt
python3 -c 'for i in range(32): print(f"Request {i}: the history of the")' >/tmp/prompts32.txt
if has llama; then
  # Batch-1 decode: a short prompt, 256 greedy tokens through the whole engine.
  run llama_decode_b1 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 8 --prompt "The history of the" \
    --max-tokens 256 --ignore-eos --temperature 0
fi
if has mma; then
  # The tensor-core small-M kernel (EMBER_GEMV=mma) against the default dispatch, in the same run: batch-1 and
  # batch-8 decode, and a shorter offline run (400 requests, 512 / 128).
  for gemv in default mma; do
    EMBER_GEMV=$gemv run "mma_decode_b1_$gemv" 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 8 \
      --prompt "The history of the" --max-tokens 256 --ignore-eos --temperature 0
    EMBER_GEMV=$gemv run "mma_decode_b8_$gemv" 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 8 \
      --prompts-file /tmp/prompts8.txt --max-tokens 256 --ignore-eos --temperature 0
    EMBER_GEMV=$gemv run "mma_throughput_$gemv" 300 "$BUNDLE/ember" bench throughput \
      --model configs/models/llama-3-8b.json --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json \
      --device cuda --max-num-seqs 256 --num-prompts 400 --random-input-len 512 --random-output-len 128 \
      --result-json "$R/mma_throughput_$gemv.json"
  done
fi
if has profile; then
  # Where the time goes (EMBER_CUDA_PROFILE=1: per-op GPU time and per-step
  # wall time, printed at exit): batch-1 decode without graphs, and a shorter
  # offline run, also without graphs so that decode steps show in the op table.
  EMBER_CUDA_PROFILE=1 run profile_decode_b1 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 8 \
    --prompt "The history of the" --max-tokens 64 --ignore-eos --temperature 0 --enforce-eager
  grep -A40 "op profile" "$R/profile_decode_b1.log" | head -40
  EMBER_CUDA_PROFILE=1 run profile_throughput 420 "$BUNDLE/ember" bench throughput --model configs/models/llama-3-8b.json \
    --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-num-seqs 256 \
    --num-prompts 400 --random-input-len 512 --random-output-len 128 --enforce-eager
  grep -A50 "op profile" "$R/profile_throughput.log" | head -60
fi
if has throughput; then
  # Offline throughput: 1,000 requests, input 512, output 128 (ember bench throughput).
  run llama_throughput 420 "$BUNDLE/ember" bench throughput --model configs/models/llama-3-8b.json \
    --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-num-seqs 256 \
    --num-prompts 1000 --random-input-len 512 --random-output-len 128 --result-json "$R/llama_throughput.json"
  # The same with vLLM's offline defaults for 80 GB GPUs (512 sequences here: 1,000 x 640 tokens would not fit
  # the KV cache, and a scheduler that admits more than fits preempts).
  run llama_throughput_512 420 "$BUNDLE/ember" bench throughput --model configs/models/llama-3-8b.json \
    --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-num-seqs 512 \
    --max-num-batched-tokens 16384 --num-prompts 1000 --random-input-len 512 --random-output-len 128 \
    --result-json "$R/llama_throughput_512.json"
fi
if has async; then
  # Async scheduling against synchronous stepping, each measured in the same run: batch-1 decode and
  # the offline benchmark, then both once more with the step profile (EMBER_CUDA_PROFILE=steps: the
  # GPU's idle time before each step, from CUDA events).
  run llama_decode_b1_sync 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 8 --prompt "The history of the" \
    --max-tokens 256 --ignore-eos --temperature 0 --no-async-scheduling
  run llama_throughput_sync 420 "$BUNDLE/ember" bench throughput --model configs/models/llama-3-8b.json \
    --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-num-seqs 256 \
    --num-prompts 1000 --random-input-len 512 --random-output-len 128 --no-async-scheduling \
    --result-json "$R/llama_throughput_sync.json"
  for mode in async no-async; do
    EMBER_CUDA_PROFILE=steps run "steps_decode_b1_$mode" 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 8 \
      --prompt "The history of the" --max-tokens 128 --ignore-eos --temperature 0 "--$mode-scheduling"
    EMBER_CUDA_PROFILE=steps run "steps_throughput_$mode" 420 "$BUNDLE/ember" bench throughput \
      --model configs/models/llama-3-8b.json --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json \
      --device cuda --max-num-seqs 256 --num-prompts 400 --random-input-len 512 --random-output-len 128 \
      "--$mode-scheduling"
    grep -A8 "step profile" "$R/steps_decode_b1_$mode.log" "$R/steps_throughput_$mode.log"
  done
fi
if has spec; then
  # Speculative decoding, n-gram method, against plain decoding in the same run: batch-1 greedy decode of the
  # Llama-3-8B shape and a batch of 8, each with the greedy text compared (stdout apart from the logs).
  spec_run() {  # spec_run NAME ARGS...: stdout to NAME.out, logs to NAME.log
    local name=$1; shift
    echo "=== $name"
    timeout 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 8 --max-tokens 256 --ignore-eos --temperature 0 \
      "$@" >"$R/$name.out" 2>"$R/$name.log" || { echo "!!! $name failed"; status=1; }
    tail -1 "$R/$name.out"; grep -h "speculative decoding:" "$R/$name.log" | cut -c25-
  }
  same_text() {  # the completions without the closing statistics line
    if cmp -s <(head -n -1 "$R/$1.out") <(head -n -1 "$R/$2.out"); then echo "$2: greedy text identical to $1"
    else echo "!!! $2: greedy text differs from $1"; status=1; fi
  }
  ngram() { echo "{\"method\": \"ngram\", \"num_speculative_tokens\": $1, \"prompt_lookup_min\": 2, \"prompt_lookup_max\": 4}"; }
  spec_run spec_b1_plain --prompt "The history of the"
  for k in 2 4 8; do
    spec_run "spec_b1_ngram_k$k" --prompt "The history of the" --speculative-config "$(ngram $k)"
    same_text spec_b1_plain "spec_b1_ngram_k$k"
  done
  spec_run spec_b8_plain --prompts-file /tmp/prompts8.txt
  spec_run spec_b8_ngram_k4 --prompts-file /tmp/prompts8.txt --speculative-config "$(ngram 4)"
  # Batched greedy decoding of this random-weight model is not reproducible across processes by itself (measured
  # 2026-12-04: 2 of 5 plain runs gave another text; its logits have near-ties that bf16 GEMM algorithm choices
  # flip), so the batch-8 comparison is strict only when two plain runs agree.
  spec_run spec_b8_plain_again --prompts-file /tmp/prompts8.txt
  if cmp -s <(head -n -1 "$R/spec_b8_plain.out") <(head -n -1 "$R/spec_b8_plain_again.out"); then
    same_text spec_b8_plain spec_b8_ngram_k4
  else
    echo "spec_b8: two plain runs already differ; the speculative run is not compared"
  fi
  # Draft model, batch 1, K = 4: the target itself as draft (same dummy weights: everything accepted, c = 1, so
  # theory gives 1.0x: this measures the machinery's overhead), and a Llama-3.2-1B-shape draft (random weights:
  # almost nothing accepted; its own decode speed gives c).
  draft() { echo "{\"method\": \"draft_model\", \"model\": \"$1\", \"num_speculative_tokens\": 4}"; }
  # (Verify chunks run other kernels than plain decode steps, so on this random model the greedy text may part at
  # a near tie: spec_gap below is the check; these only say whether the texts happen to agree.)
  spec_run spec_b1_draft_self --prompt "The history of the" --speculative-config "$(draft configs/models/llama-3-8b.json)"
  spec_run spec_b1_draft_1b --prompt "The history of the" --speculative-config "$(draft configs/models/llama-3.2-1b.json)"
  for run in spec_b1_draft_self spec_b1_draft_1b; do
    cmp -s <(head -n -1 "$R/spec_b1_plain.out") <(head -n -1 "$R/$run.out") && echo "$run: greedy text identical" \
      || echo "$run: greedy text parts from plain (see spec_gap)"
  done
  echo "=== spec_b1_1b_alone"
  timeout 300 "$BUNDLE/ember" generate --model configs/models/llama-3.2-1b.json --load-format dummy \
    --tokenizer tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-model-len 4096 --max-num-seqs 8 \
    --prompt "The history of the" --max-tokens 256 --ignore-eos --temperature 0 >"$R/spec_b1_1b_alone.out" \
    2>"$R/spec_b1_1b_alone.log" || { echo "!!! spec_b1_1b_alone failed"; status=1; }
  tail -1 "$R/spec_b1_1b_alone.out"
  # Where a verify chunk's kernels part the greedy path from plain decoding: the plain run's top-2 gap there.
  echo "=== spec_gap"
  timeout 500 python3 scripts/gpu_spec_gap.py "$BUNDLE/ember" \
    '["--model", "configs/models/llama-3-8b-smollm2-vocab.json", "--load-format", "dummy", "--tokenizer", "'"$BUNDLE"'/smollm2-tokenizer.gguf", "--device", "cuda", "--max-model-len", "4096"]' \
    "$(draft configs/models/llama-3-8b-smollm2-vocab.json)" \
    '{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 1, "prompt_lookup_max": 2}' >"$R/spec_gap.log" 2>&1 || { echo "!!! spec_gap"; status=1; }
  cat "$R/spec_gap.log"
  # Sampled requests verify on the device too (seeded; their text differs from plain sampling by design).
  spec_run spec_b8_sampled_ngram_k4 --prompts-file /tmp/prompts8.txt --speculative-config "$(ngram 4)" \
    --temperature 0.7 --top-p 0.9 --sampling-seed 5
fi
if has spec_alpha; then
  # Speedup against acceptance rate beside the theory: an early-exit draft of the Llama-3-8B shape, alpha dialled
  # by how much the target's late layers add (scripts/gpu_spec_alpha.py says how).
  run spec_alpha 580 python3 scripts/gpu_spec_alpha.py "$BUNDLE/ember" tests/fixtures/tokenizer/bpe/llama3.json \
    "$R/spec_alpha"
  grep -A30 "^ scale" "$R/spec_alpha.log"
fi
if has fp8; then
  # FP8 weights (--quantization fp8) against bf16 in the same run: the linear layers (fp8_bench), batch-1 and
  # batch-32 decode, offline throughput (1,000 requests, 512 / 128).
  [[ -z "${EMBER_FP8_SKIP_BENCH:-}" ]] && run fp8_bench 300 "$BUNDLE/fp8_bench"  # (set: the end-to-end runs alone)
  for q in none fp8; do
    run "fp8_decode_b1_$q" 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 8 --prompt "The history of the" \
      --max-tokens 256 --ignore-eos --temperature 0 --quantization $q
    run "fp8_decode_b32_$q" 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 32 \
      --prompts-file /tmp/prompts32.txt --max-tokens 256 --ignore-eos --temperature 0 --quantization $q
    run "fp8_throughput_$q" 420 "$BUNDLE/ember" bench throughput --model configs/models/llama-3-8b.json \
      --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-num-seqs 256 \
      --num-prompts 1000 --random-input-len 512 --random-output-len 128 --quantization $q \
      --result-json "$R/fp8_throughput_$q.json"
    grep -h "GPU memory\|KV cache" "$R/fp8_decode_b1_$q.log" | head -3
  done
  # The same FP8 run with gate/up's scales in a pass of their own instead of in the SiLU, and with the activations
  # quantized by linear instead of by the norm and SiLU before it (neither fusion).
  for v in noscales:1:0 unfused:0:0; do
    IFS=: read -r name quant scales <<<"$v"
    EMBER_FP8_FUSED_QUANT=$quant EMBER_FP8_FUSED_SCALES=$scales run "fp8_throughput_fp8_$name" 420 "$BUNDLE/ember" \
      bench throughput --model configs/models/llama-3-8b.json --load-format dummy \
      --tokenizer tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-num-seqs 256 --num-prompts 1000 \
      --random-input-len 512 --random-output-len 128 --quantization fp8 --result-json "$R/fp8_throughput_fp8_$name.json"
  done
fi
if has fp8b1; then
  # Batch-1 decode's FP8 GEMV launch shapes (kernels/cuda/fp8.h kGemvFp8Variants; each writes the same bits): a
  # decode step's 128 linears in one CUDA graph per variant beside bf16 (fp8_bench --chain), then batch-1 decode
  # end to end, bf16 and FP8 with each variant (EMBER_FP8_GEMV_VARIANT; the epilogue forms off, so that every
  # projection takes the variant), then with the epilogue forms (the default).
  [[ "${EMBER_FP8_B1_CHAIN:-1}" == 1 ]] && run fp8_chain 240 "$BUNDLE/fp8_bench" --chain
  run fp8_b1_bf16 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 8 --prompt "The history of the" \
    --max-tokens 256 --ignore-eos --temperature 0
  for v in ${EMBER_FP8_B1_VARIANTS:-0 1 2 3 4}; do  # (fp8_chain times every shape's linears)
    EMBER_FP8_GEMV_EPILOGUES=0 EMBER_FP8_GEMV_VARIANT=$v run "fp8_b1_v$v" 300 "$BUNDLE/ember" generate \
      "${LLAMA[@]}" --max-num-seqs 8 --prompt "The history of the" --max-tokens 256 --ignore-eos --temperature 0 \
      --quantization fp8
  done
  # The rope and cache write and the SiLU in the q/k/v and gate/up GEMVs' epilogues (two launches a layer fewer).
  run fp8_b1_epilogues 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 8 \
    --prompt "The history of the" --max-tokens 256 --ignore-eos --temperature 0 --quantization fp8
  # With the LM head in FP8 too (EMBER_FP8_LM_HEAD=1; 1 GB of bf16 a token at 128k vocabulary).
  EMBER_FP8_LM_HEAD=1 run fp8_b1_epilogues_head 300 "$BUNDLE/ember" generate "${LLAMA[@]}" \
    --max-num-seqs 8 --prompt "The history of the" --max-tokens 256 --ignore-eos --temperature 0 --quantization fp8
  for f in "$R"/fp8_b1_*.log; do echo "$(basename "$f" .log): $(grep -h "decode" "$f" | head -2 | tr '\n' ' ')"; done
fi
if has fp8split; then
  # Batch-1 decode with the norms split across the FP8 GEMVs around them (the default) against the norm kernel
  # (EMBER_FP8_NORM_SPLIT=0), bf16 and FP8 in alternating rounds, with the bf16 and the FP8 KV cache; the greedy
  # text's md5 beside each (the split is not the norm kernel's bits, so the text may part).
  B1=(generate "${LLAMA[@]}" --max-num-seqs 8 --prompt "The history of the" --max-tokens 256 --ignore-eos
      --temperature 0)
  for round in $(seq "${EMBER_FP8_SPLIT_ROUNDS:-2}"); do
    run "fp8split_bf16_$round" 300 "$BUNDLE/ember" "${B1[@]}"
    for kv in auto fp8; do
      for split in ${EMBER_FP8_SPLIT_FORMS:-0 1}; do
        EMBER_FP8_NORM_SPLIT=$split run "fp8split_kv${kv}_split${split}_$round" 300 "$BUNDLE/ember" "${B1[@]}" \
          --quantization fp8 --kv-cache-dtype "$kv"
      done
    done
  done
  EMBER_FP8_LM_HEAD=1 run fp8split_kvauto_split1_head 300 "$BUNDLE/ember" "${B1[@]}" --quantization fp8
  for f in "$R"/fp8split_*.log; do
    echo "$(basename "$f" .log): $(grep -h "decode:" "$f" | tail -1) text md5 $(grep -v "tokens/s" "$f" |
      sed -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+ [a-z]+ .*//' | md5sum | cut -c1-8)"
  done
fi
if has attnb1; then
  # Decode attention's early key loads (EMBER_ATTN_EARLY_KV, the default) on and off: batch-1 decode, bf16, FP8 and
  # FP8 with the FP8 cache (EMBER_ATTN_DTYPES), forms alternating (EMBER_ATTN_FORMS: name:early ...;
  # EMBER_ATTN_ROUNDS rounds), then 8 sequences (EMBER_ATTN_B8_FORMS, EMBER_ATTN_B8_DTYPES); the greedy text's md5
  # beside each (the switch changes no bit: the same md5 in each dtype).
  B1=(generate "${LLAMA[@]}" --max-num-seqs 8 --prompt "The history of the" --max-tokens 256 --ignore-eos
      --temperature 0)
  for round in $(seq "${EMBER_ATTN_ROUNDS:-3}"); do
    for qkv in ${EMBER_ATTN_DTYPES:-none:auto fp8:auto fp8:fp8}; do  # weights:KV cache
      IFS=: read -r q kv <<<"$qkv"
      for v in ${EMBER_ATTN_FORMS:-off:0 early:1}; do
        IFS=: read -r name early <<<"$v"
        EMBER_ATTN_EARLY_KV=$early run "attn_b1_${q}_kv${kv}_${name}_$round" 300 \
          "$BUNDLE/ember" "${B1[@]}" --quantization "$q" --kv-cache-dtype "$kv"
      done
    done
  done
  for v in ${EMBER_ATTN_B8_FORMS:-off:0 early:1}; do
    IFS=: read -r name early <<<"$v"
    for q in ${EMBER_ATTN_B8_DTYPES:-none fp8}; do
      EMBER_ATTN_EARLY_KV=$early run "attn_b8_${q}_$name" 300 "$BUNDLE/ember" \
        generate "${LLAMA[@]}" --max-num-seqs 8 --prompts-file /tmp/prompts8.txt --max-tokens 256 --ignore-eos \
        --temperature 0 --quantization $q
    done
  done
  for f in "$R"/attn_b*.log; do
    echo "$(basename "$f" .log): $(grep -h "decode" "$f" | grep "tokens/s" | tail -1) text md5 $(grep -v "tokens/s" "$f" |
      sed -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+ [a-z]+ .*//' | md5sum | cut -c1-8)"
  done
fi
if has fp8rope; then
  # Offline FP8 (weights and KV cache) with q/k/v's scales applied by the rope (EMBER_FP8_QKV_SCALES_IN_ROPE=1)
  # against their scale pass, beside bf16, at vLLM's offline settings for 80 GB GPUs.
  for v in none:auto:0 fp8:fp8:0 fp8:fp8:1; do
    IFS=: read -r w kv rope <<<"$v"
    EMBER_FP8_QKV_SCALES_IN_ROPE=$rope run "fp8_throughput_512_${w}_kv${kv}_rope$rope" 420 "$BUNDLE/ember" \
      bench throughput --model configs/models/llama-3-8b.json --load-format dummy \
      --tokenizer tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-num-seqs 512 \
      --max-num-batched-tokens 16384 --num-prompts 1000 --random-input-len 512 --random-output-len 128 \
      --quantization "$w" --kv-cache-dtype "$kv" --result-json "$R/fp8_throughput_512_${w}_kv${kv}_rope$rope.json"
  done
fi
if has fp8prof; then
  # Where FP8's offline time goes (EMBER_CUDA_PROFILE=1, eager: per-op GPU time), and offline throughput for bf16,
  # FP8 weights and FP8 weights with the FP8 KV cache, at ember's default batch settings (256 sequences, 8,192 tokens a
  # step) and at vLLM's offline ones for 80 GB GPUs (512, 16,384).
  if [[ -z "${EMBER_FP8_SKIP_PROFILE:-}" ]]; then  # (set: the offline runs alone)
    EMBER_CUDA_PROFILE=1 run profile_throughput_fp8 420 "$BUNDLE/ember" bench throughput \
      --model configs/models/llama-3-8b.json --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json \
      --device cuda --max-num-seqs 256 --num-prompts 400 --random-input-len 512 --random-output-len 128 \
      --enforce-eager --quantization fp8
    grep -A50 "op profile" "$R/profile_throughput_fp8.log" | head -60
  fi
  for v in 256:8192 512:16384; do
    IFS=: read -r seqs batched <<<"$v"
    for q in none:auto fp8:auto fp8:fp8; do
      IFS=: read -r w kv <<<"$q"
      run "fp8_throughput_${seqs}_${w}_kv$kv" 420 "$BUNDLE/ember" bench throughput \
        --model configs/models/llama-3-8b.json --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json \
        --device cuda --max-num-seqs "$seqs" --max-num-batched-tokens "$batched" --num-prompts 1000 \
        --random-input-len 512 --random-output-len 128 --quantization "$w" --kv-cache-dtype "$kv" \
        --result-json "$R/fp8_throughput_${seqs}_${w}_kv$kv.json"
    done
  done
fi
if has fp8b8; then
  # Small-batch decode across the FP8 small-M kernels (kernels/cuda/fp8.h: 1-2 rows on the CUDA-core GEMV, 3-16 on the
  # tensor-core one, cuBLASLt above): steady decode at EMBER_FP8_ROWS sequences, bf16 once, then FP8 with the default
  # dispatch and FP8 with the nearest threshold moved across that size, alternating twice (logs fp8rows_*):
  # 1-2 sequences gemv1 (EMBER_FP8_GEMV_MAX_M=1: the tensor-core GEMV from 2 rows), 3-4 gemv4 (=4: the CUDA-core GEMV
  # and its epilogues up to 4 rows, as before 2026-12-06), 5-16 mma4 (EMBER_FP8_MMA_MAX_M=4: cuBLASLt instead of the
  # tensor-core GEMV), above mma32 (=32: the tensor-core GEMV up to 32 rows on every matrix).
  rows_decode() {  # rows_decode NAME SEQUENCES QUANTIZATION [ENV=VALUE]
    run "$1" 300 env ${4:-} "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 32 --prompts-file "/tmp/prompts_$2.txt" \
      --max-tokens 256 --ignore-eos --temperature 0 --quantization "$3"
    echo "$1: $(grep -o -E 'steady decode[^:]*: [0-9.]+' "$R/$1.log" | grep -o -E '[0-9.]+$') tok/s"
  }
  for n in ${EMBER_FP8_ROWS:-2 3 8 32}; do
    head -n "$n" /tmp/prompts32.txt >"/tmp/prompts_$n.txt"  # (at most 32, the decode runs' --max-num-seqs)
    if ((n <= 2)); then alt=gemv1:EMBER_FP8_GEMV_MAX_M=1; elif ((n <= 4)); then alt=gemv4:EMBER_FP8_GEMV_MAX_M=4
    elif ((n <= 16)); then alt=mma4:EMBER_FP8_MMA_MAX_M=4; else alt=mma32:EMBER_FP8_MMA_MAX_M=32; fi
    rows_decode "fp8rows_b${n}_bf16" "$n" none
    for r in 1 2; do
      rows_decode "fp8rows_b${n}_fp8_default_$r" "$n" fp8
      rows_decode "fp8rows_b${n}_fp8_${alt%%:*}_$r" "$n" fp8 "${alt#*:}"
    done
  done
fi
if has fp8kv; then
  # The FP8 KV cache (--kv-cache-dtype fp8): its GPU tests (cache write, attention, the runner against the bf16
  # cache), decode attention GB/s beside bf16 (attention_bench's decode_fp8 lines), batch-32 decode and offline
  # throughput on top of the FP8 weights (beside fp8_*_fp8 above), and the KV pool at 8k context with each cache
  # dtype (the "KV cache" line: tokens and concurrency that fit).
  run kv_fp8_tests 300 "$BUNDLE/ember_gpu_tests" --gtest_filter='KvFp8Gpu.*:*Fp8KvCache*' \
    --gtest_output="json:$R/kv_fp8_tests.json"
  grep -E "^\[  FAILED|rel_err|agree" "$R/kv_fp8_tests.log" | head -40
  if ! has bench; then run attention_bench 240 "$BUNDLE/attention_bench"; fi
  grep -h '"decode' "$R/attention_bench.log"
  run fp8_decode_b32_fp8kv 300 "$BUNDLE/ember" generate "${LLAMA[@]}" --max-num-seqs 32 \
    --prompts-file /tmp/prompts32.txt --max-tokens 256 --ignore-eos --temperature 0 --quantization fp8 \
    --kv-cache-dtype fp8
  run fp8_throughput_fp8kv 420 "$BUNDLE/ember" bench throughput --model configs/models/llama-3-8b.json \
    --load-format dummy --tokenizer tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-num-seqs 256 \
    --num-prompts 1000 --random-input-len 512 --random-output-len 128 --quantization fp8 --kv-cache-dtype fp8 \
    --result-json "$R/fp8_throughput_fp8kv.json"
  for kv in auto fp8; do
    run "kv_pool_8k_$kv" 300 "$BUNDLE/ember" generate --model configs/models/llama-3-8b.json --load-format dummy \
      --tokenizer tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-model-len 8192 \
      --prompt "The history of the" --max-tokens 16 --temperature 0 --kv-cache-dtype $kv
    grep -h "KV cache" "$R/kv_pool_8k_$kv.log" | head -1
  done
fi
# The Llama-3-8B shape with SmolLM2's vocabulary, so every sampled token decodes to text.
SERVE_MODEL=(--model configs/models/llama-3-8b-smollm2-vocab.json --load-format dummy
             --tokenizer "$BUNDLE/smollm2-tokenizer.gguf" --device cuda --max-model-len 4096
             --chat-template tests/fixtures/chat_templates/smollm2-135m-instruct.jinja)
if has structured || has serve || has fp8kv; then
  if ls "$BUNDLE"/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --target /tmp/pyopenai "$BUNDLE"/wheels/*.whl >/dev/null 2>&1
  fi
fi
if has structured; then
  # Structured outputs against free text at batch 32 (issue 27's goal: <= 10% loss), with async scheduling (the
  # default: steps with a grammar row still wait for their tokens) and without it (what the overlap is worth).
  for mode in async no-async; do
    args=$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${SERVE_MODEL[@]}" --max-num-seqs 64 \
      "--$mode-scheduling")
    PYTHONPATH=/tmp/pyopenai run "structured_$mode" 400 python3 bench/structured_throughput_bench.py \
      --ember "$BUNDLE/ember" --concurrency 32 --max-tokens 256 --server-args "$args" --out "$R/structured_$mode.json"
    cat "$R/structured_$mode.log"
  done
fi
if has fp8kv; then
  # The openai client through `ember serve --quantization fp8 --kv-cache-dtype fp8`.
  "$BUNDLE/ember" serve "${SERVE_MODEL[@]}" --port 18432 --max-num-seqs 64 --quantization fp8 --kv-cache-dtype fp8 \
    >"$R/serve_fp8.log" 2>&1 &
  SERVE=$!
  PYTHONPATH=/tmp/pyopenai run serve_client_fp8 240 python3 scripts/gpu_serve_client.py http://127.0.0.1:18432
  kill -TERM $SERVE; wait $SERVE; echo "serve exit: $?" >>"$R/serve_fp8.log"
fi
if has serve; then
  "$BUNDLE/ember" serve "${SERVE_MODEL[@]}" --port 18431 --max-num-seqs 64 >"$R/serve.log" 2>&1 &
  SERVE=$!
  PYTHONPATH=/tmp/pyopenai run serve_client 240 python3 scripts/gpu_serve_client.py http://127.0.0.1:18431
  # ember's load tester against it: Llama-3-8B shape, 400 requests in 512 / out 128, 64 at a time.
  run bench_serve 300 "$BUNDLE/ember" bench serve --base-url http://127.0.0.1:18431 --dataset random \
    --tokenizer "$BUNDLE/smollm2-tokenizer.gguf" --random-input-len 512 --random-output-len 128 \
    --num-prompts 400 --request-rate inf --max-concurrency 64 --no-progress \
    --result-json "$R/bench_serve.json" --report-html "$R/bench_serve.html"
  kill -TERM $SERVE; wait $SERVE; echo "serve exit: $?" >>"$R/serve.log"
  tail -3 "$R/serve.log"
fi

echo "=== summary"
python3 scripts/gpu_summary.py "$R" | tee "$R/summary.txt" || status=1
tar -C "$R" -czf "$DEST/gpu-results.tar.gz" .
exit $status
