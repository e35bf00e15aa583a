#!/usr/bin/env python3
"""Assembles bench/results/<date>-h100-cuda.json from the result archives that
scripts/gpu_check.sh leaves (gpu-results.tar.gz, unpacked). Later directories
win where two runs hold the same log, so a run of `bench` and a later run of
`tests llama throughput serve` combine into one record.

  scripts/gpu_results_json.py OUT.json DIR [DIR ...] [--how TEXT]

Rooflines use the highest ceilings measured in the given runs: device copy
bandwidth (attention_bench) over the bf16 weight bytes for batch-1 decode, and
the best cuBLASLt rate (gemm_bench: 8192^3 or a model GEMM) over 2 x
parameters FLOPs per token for offline throughput.
"""
import argparse
import datetime
import json
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gpu_summary import json_lines  # noqa: E402  (the log parser gpu_check's summary uses)

LLAMA3_8B_PARAMS = 8.03e9  # configs/models/llama-3-8b.json
# Peers measured on the H200 (../shared/GPU.md, 2026-12-04; the H100 figures were 2,158 and 148):
# HF generate and gpt-fast are not rerun on the device.
HF_STATIC_B256_OUTPUT_TOK_S = 3132
GPT_FAST_TOK_S = 199


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--how", default="scripts/gpu_bundle.sh on the dev machine, then scripts/gpu_check.sh on the "
                    "device; every reference measured in the same run unless noted")
    a = ap.parse_args()

    files = {}
    for d in map(pathlib.Path, a.dirs):
        for f in d.iterdir():
            files[f.name] = f  # later runs win

    def get(name):
        return files.get(name, pathlib.Path("/nonexistent"))

    rec = {"date": datetime.date.today().isoformat(), "how": a.how,
           "device": get("gpu.txt").read_text().strip() if get("gpu.txt").exists() else None}

    tests = {}
    for name in ("gpu_tests", "gpu_tests_hf"):
        if get(name + ".json").exists():
            j = json.loads(get(name + ".json").read_text())
            tests[name] = {"tests": j.get("tests"), "failures": j.get("failures"), "errors": j.get("errors")}
    rec["gpu_tests"] = tests
    errs = []
    for name in ("gpu_tests.log", "gpu_tests_hf.log"):
        if get(name).exists():
            for line in get(name).read_text(errors="replace").splitlines():
                if re.search(r"worst|agree|chi-square", line) and line not in errs:
                    errs.append(line.strip())
    rec["gpu_test_errors"] = errs

    for key, log in (("attention_bench", "attention_bench.log"), ("sdpa_reference_torch", "sdpa_reference.log"),
                     ("gemm_bench", "gemm_bench.log"), ("gemm_reference_torch", "gemm_reference.log"),
                     ("sampler_bench", "sampler_bench.log")):
        rec[key] = json_lines(get(log))

    # Ceilings: the highest seen in any of the given runs (a throttled or noisy
    # reading must not lower the roofline and flatter the fraction).
    copies, rates = [], []
    for d in map(pathlib.Path, a.dirs):
        copies += [r["gb_per_s"] for r in json_lines(d / "attention_bench.log") if r.get("name") == "copy"]
        rates += [r["tflops"] for r in json_lines(d / "gemm_bench.log")
                  if r.get("name") in ("cublaslt_8192_cubed", "prefill_linear")]
    copy = max(copies) if copies else None
    cublas = max(rates) if rates else None

    m = re.search(r"decode: ([0-9.]+) tokens/s", get("llama_decode_b1.log").read_text(errors="replace")
                  if get("llama_decode_b1.log").exists() else "")
    if m:
        tok = float(m.group(1))
        dec = {"command": "ember generate --model configs/models/llama-3-8b.json --load-format dummy --tokenizer "
                          "tests/fixtures/tokenizer/bpe/llama3.json --device cuda --max-model-len 4096 --prompt "
                          "'The history of the' --max-tokens 256 --ignore-eos --temperature 0",
               "tok_per_s": tok, "gpt_fast_tok_per_s": GPT_FAST_TOK_S, "gpt_fast_note": "from GPU.md"}
        if copy:
            roof = copy * 1e9 / (LLAMA3_8B_PARAMS * 2)
            dec.update(roofline_tok_per_s=round(roof, 1), fraction_of_roofline=round(tok / roof, 3),
                       roofline_basis=f"device copy {copy} GB/s (attention_bench, highest of these runs) / "
                                      f"{LLAMA3_8B_PARAMS * 2 / 1e9:.2f} GB of bf16 weights")
        rec["llama3_8b_shape_decode_batch1"] = dec

    for key, name, cfg in (("llama3_8b_shape_offline_throughput", "llama_throughput.json",
                            "--max-num-seqs 256 (max-num-batched-tokens 8192)"),
                           ("llama3_8b_shape_offline_throughput_512_seqs", "llama_throughput_512.json",
                            "--max-num-seqs 512 --max-num-batched-tokens 16384")):
        if not get(name).exists():
            continue
        t = json.loads(get(name).read_text())
        t["engine_settings"] = cfg
        if cublas:
            roof = cublas * 1e12 / (2 * LLAMA3_8B_PARAMS)
            t.update(compute_roofline_total_tok_per_s=round(roof),
                     compute_roofline_basis=f"cuBLASLt {cublas} TFLOP/s (gemm_bench: highest of 8192^3 and the "
                                            f"model GEMMs over these runs) / "
                                            f"(2 x {LLAMA3_8B_PARAMS / 1e9:.2f} GFLOP per token)",
                     fraction_of_compute_roofline=round(t["tokens_per_second"] / roof, 3))
        t.update(hf_transformers_static_b256_output_tok_per_s=HF_STATIC_B256_OUTPUT_TOK_S,
                 hf_note="HF figure from GPU.md (HF generate was not rerun on the device)",
                 output_tok_per_s_vs_hf=round(t["output_tokens_per_second"] / HF_STATIC_B256_OUTPUT_TOK_S, 2))
        rec[key] = t

    # Async scheduling against synchronous stepping (gpu_check's async stage), same run.
    def decode_tok_s(log):
        m = re.search(r"decode: ([0-9.]+) tokens/s", get(log).read_text(errors="replace")) if get(log).exists() else None
        return float(m.group(1)) if m else None

    def step_table(log):  # EMBER_CUDA_PROFILE=steps: {kind: {steps, host_ms, gpu_ms, idle_ms}}
        rows = {}
        if get(log).exists():
            for line in get(log).read_text(errors="replace").splitlines():
                m = re.match(r"\s+(decode b[<=>0-9]+|prefill only|prefill\+decode)\s+(\d+)\s+(\d+)\s+(\d+)\s+"
                             r"([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)", line)
                if m:
                    rows[m.group(1)] = {"steps": int(m.group(2)), "tokens": int(m.group(3)),
                                        "host_ms": float(m.group(5)), "gpu_ms": float(m.group(6)),
                                        "gpu_idle_ms": float(m.group(7))}
        return rows

    if get("llama_throughput_sync.json").exists() or get("llama_decode_b1_sync.log").exists():
        asy = {"note": "async scheduling (the default on a GPU) against --no-async-scheduling, same machine and run"}
        on, off = decode_tok_s("llama_decode_b1.log"), decode_tok_s("llama_decode_b1_sync.log")
        if on and off:
            asy["decode_batch1_tok_per_s"] = {"async": on, "sync": off, "ratio": round(on / off, 3)}
        if get("llama_throughput.json").exists() and get("llama_throughput_sync.json").exists():
            a_t = json.loads(get("llama_throughput.json").read_text())["tokens_per_second"]
            s_t = json.loads(get("llama_throughput_sync.json").read_text())["tokens_per_second"]
            asy["offline_1000x512_128_total_tok_per_s"] = {"async": a_t, "sync": s_t, "ratio": round(a_t / s_t, 3)}
        asy["step_profiles"] = {
            "command_note": "EMBER_CUDA_PROFILE=steps; decode: 128 greedy tokens at batch 1; throughput: 400 x "
                            "(512 in / 128 out), --max-num-seqs 256; gpu_idle_ms: from the previous step's last "
                            "copy to this step's first, CUDA events",
            **{name: step_table(f"steps_{name}.log") for name in
               ("decode_b1_async", "decode_b1_no-async", "throughput_async", "throughput_no-async")}}
        rec["async_scheduling"] = asy

    serve = json_lines(get("serve_client.log"))
    if serve:
        rec["serve_openai_client"] = serve[-1]
    if get("bench_serve.json").exists():
        serve = json.loads(get("bench_serve.json").read_text())
        # The summary only: per-request lists (records, lengths, TTFTs, ITLs, errors) stay in the run's own files.
        rec["bench_serve"] = {k: v for k, v in serve.items() if not (isinstance(v, list) and len(v) > 32)}

    pathlib.Path(a.out).write_text(json.dumps(rec, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
