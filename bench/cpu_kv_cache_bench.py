"""The FP8 KV cache on the CPU (--kv-cache-dtype fp8) beside the float32 one, through `ember generate` on the
default model (SmolLM2-135M Q4_1, --dtype auto): time to first token and decode tokens/s for one sequence with a
short prompt and with a long one (~2,900 tokens, where attention reads the most cache), and how many tokens the same
--kv-cache-memory-bytes holds. The two caches alternate --rounds times and each keeps its best figure, so a busy
machine treats them alike; prints each FP8 figure with its ratio to float32 and writes a JSON record with --out.

    .venv/bin/python bench/cpu_kv_cache_bench.py [--rounds 2] [--out bench/results/DATE-cpu-kv-fp8.json]
"""
import argparse
import json
import os
import pathlib
import platform
import random
import re
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
EMBER = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", ROOT / "build")) / "ember"
MODEL = os.environ.get("EMBER_DEFAULT_MODEL",
                       str(pathlib.Path.home() / ".cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
WORDS = "the of and to in is was for on that with as by at from his her an which were are this be or had".split()


def generate(kv, prompt, tokens):
    r = subprocess.run([str(EMBER), "generate", "--model", MODEL, "--kv-cache-dtype", kv, "--temperature", "0",
                        "--ignore-eos", "--max-tokens", str(tokens), "--kv-cache-memory-bytes", str(256 << 20),
                        "--prompt", prompt], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    m = re.search(r"prompt tokens: (\d+), generated tokens: (\d+), time to first token: ([\d.]+) s, "
                  r"decode: ([\d.]+) tokens/s", out)
    pool = re.search(r"KV cache: \d+ blocks of \d+ tokens \([\d.]+ MB, (\d+) tokens", out)
    assert m and pool, out[-2000:]
    return {"prompt_tokens": int(m.group(1)), "ttft_s": float(m.group(3)), "decode_tok_s": float(m.group(4)),
            "pool_tokens": int(pool.group(1))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    rng = random.Random(1)
    cases = {"short": ("The capital of France is", 256),
             "long": (" ".join(rng.choice(WORDS) for _ in range(2900)), 256)}
    best = {}
    for _ in range(args.rounds):
        for case, (prompt, tokens) in cases.items():
            for kv in ("auto", "fp8"):
                r = generate(kv, prompt, tokens)
                b = best.setdefault((case, kv), r)
                b["ttft_s"] = min(b["ttft_s"], r["ttft_s"])
                b["decode_tok_s"] = max(b["decode_tok_s"], r["decode_tok_s"])
    record = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "model": pathlib.Path(MODEL).name, "dtype": "auto", "rounds": args.rounds,
              "kv_cache_memory_bytes": 256 << 20, "cases": {}}
    for case in cases:
        f32, fp8 = best[(case, "auto")], best[(case, "fp8")]
        row = {"prompt_tokens": f32["prompt_tokens"], "float32": f32, "fp8": fp8,
               "decode_ratio": round(fp8["decode_tok_s"] / f32["decode_tok_s"], 3),
               "ttft_ratio": round(fp8["ttft_s"] / f32["ttft_s"], 3),
               "pool_tokens_ratio": round(fp8["pool_tokens"] / f32["pool_tokens"], 3)}
        record["cases"][case] = row
        print(f"{case:5s} ({f32['prompt_tokens']} prompt tokens): decode {f32['decode_tok_s']:.1f} -> "
              f"{fp8['decode_tok_s']:.1f} tok/s ({row['decode_ratio']:.2f}x), TTFT {f32['ttft_s']:.3f} -> "
              f"{fp8['ttft_s']:.3f} s ({row['ttft_ratio']:.2f}x), pool {f32['pool_tokens']} -> "
              f"{fp8['pool_tokens']} tokens ({row['pool_tokens_ratio']:.2f}x)")
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
