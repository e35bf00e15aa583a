"""SmolLM2-135M on the CPU through `ember generate` (the engine, scheduler and
CPU backend of `ember serve`): batch-1 decode tokens/s, batch-16 output
tokens/s and prefill tokens/s. Prints each figure with its ratio to batch-1
decode measured in the same run (batching must pay off), and writes a JSON
record when --out is given.

    .venv/bin/python bench/cpu_generate_bench.py [--out bench/results/DATE-cpu-generate.json]
"""
import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
EMBER = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", ROOT / "build")) / "ember"
MODEL = os.environ.get("EMBER_DEFAULT_MODEL",
                       str(pathlib.Path.home() / ".cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
PROMPTS = ["The capital of France is", "Once upon a time", "The best way to learn a language is",
           "Water boils at", "In the beginning", "My favourite food is", "The history of Rome",
           "A good night's sleep", "Python is a programming language that", "The moon orbits",
           "To make bread you need", "The quick brown fox", "Climate change is", "The first computer",
           "Music can", "On a rainy day"]


def generate(*args):
    r = subprocess.run([str(EMBER), "generate", "--model", MODEL, "--temperature", "0", *args],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--tokens", type=int, default=128)
    a = ap.parse_args()

    # Batch 1: one stream, the summary line gives decode tokens/s.
    out = generate("--prompt", PROMPTS[0], "-n", str(a.tokens), "--ignore-eos")
    decode1 = float(re.search(r"decode: ([0-9.]+) tokens/s", out).group(1))

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(PROMPTS) + "\n")
        prompts_file = f.name
    out = generate("--prompts-file", prompts_file, "-n", str(a.tokens), "--ignore-eos")
    batch16 = float(re.search(r"([0-9.]+) output tokens/s", out).group(1))

    # Prefill: a ~1000-token prompt, one output token; prompt tokens / time to first token.
    long_prompt = " ".join(["The history of science is a long story of curiosity and careful measurement."] * 70)
    out = generate("--prompt", long_prompt, "-n", "1", "--max-num-batched-tokens", "2048")
    m = re.search(r"prompt tokens: (\d+), generated tokens: \d+, time to first token: ([0-9.]+) s", out)
    prefill = int(m.group(1)) / float(m.group(2))

    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'})",
        "model": "SmolLM2-135M-Instruct Q4_1 (GGUF), CPU backend, greedy, ignore_eos",
        "batch1_decode_tok_s": decode1,
        "batch16_output_tok_s": batch16,
        "batch16_over_batch1": batch16 / decode1,
        "prefill_tok_s": prefill,
        "prefill_prompt_tokens": int(m.group(1)),
        "tokens_per_request": a.tokens,
    }
    print(f"batch-1 decode:    {decode1:8.1f} tok/s  (1.00x)")
    print(f"batch-16 output:   {batch16:8.1f} tok/s  ({batch16 / decode1:.2f}x batch-1)")
    print(f"prefill:           {prefill:8.1f} tok/s  ({prefill / decode1:.2f}x batch-1 decode)")
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
