"""SmolLM2-135M on the CPU through `ember generate` (the engine, scheduler and
CPU backend of `ember serve`): batch-1 decode tokens/s, batch-16 output
tokens/s and prefill tokens/s (a ~1000-token and a ~512-token prompt). Prints
each figure with its ratio to batch-1 decode measured in the same run
(batching must pay off), for each --dtype given (auto: 8-bit activations;
float32: the exact mode), the modes interleaved --repeats times and the best
run of each kept, so a busy machine treats them alike; writes a JSON record
when --out is given.

    .venv/bin/python bench/cpu_generate_bench.py [--dtypes auto,float32] [--out bench/results/DATE-cpu-generate.json]
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


LONG_SENTENCE = "The history of science is a long story of curiosity and careful measurement."


def measure(dtype, tokens):
    """One run of every figure with --dtype `dtype`."""
    flags = ("--dtype", dtype)
    out = generate("--prompt", PROMPTS[0], "-n", str(tokens), "--ignore-eos", *flags)
    decode1 = float(re.search(r"decode: ([0-9.]+) tokens/s", out).group(1))

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(PROMPTS) + "\n")
        prompts_file = f.name
    out = generate("--prompts-file", prompts_file, "-n", str(tokens), "--ignore-eos", *flags)
    batch16 = float(re.search(r"([0-9.]+) output tokens/s", out).group(1))

    # Prefill: one output token; prompt tokens / time to first token.
    fig = {"batch1_decode_tok_s": decode1, "batch16_output_tok_s": batch16}
    for name, repeats in (("prefill", 70), ("prefill_512", 36)):
        out = generate("--prompt", " ".join([LONG_SENTENCE] * repeats), "-n", "1", "--max-num-batched-tokens", "2048",
                       *flags)
        m = re.search(r"prompt tokens: (\d+), generated tokens: \d+, time to first token: ([0-9.]+) s", out)
        fig[f"{name}_tok_s"] = int(m.group(1)) / float(m.group(2))
        fig[f"{name}_prompt_tokens"] = int(m.group(1))
    return fig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--dtypes", default="auto", help="comma-separated --dtype values to compare in this run")
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    dtypes = a.dtypes.split(",")

    best = {d: None for d in dtypes}
    for _ in range(a.repeats):
        for d in dtypes:
            fig = measure(d, a.tokens)
            best[d] = fig if best[d] is None else {k: max(v, best[d][k]) for k, v in fig.items()}

    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'})",
        "model": "SmolLM2-135M-Instruct Q4_1 (GGUF), CPU backend, greedy, ignore_eos",
        "tokens_per_request": a.tokens,
        "repeats": a.repeats,
        "by_dtype": {},
    }
    for d, f in best.items():
        record["by_dtype"][d] = dict(f, batch16_over_batch1=f["batch16_output_tok_s"] / f["batch1_decode_tok_s"])
        print(f"--dtype {d}:")
        print(f"  batch-1 decode:    {f['batch1_decode_tok_s']:8.1f} tok/s  (1.00x)")
        print(f"  batch-16 output:   {f['batch16_output_tok_s']:8.1f} tok/s  "
              f"({f['batch16_output_tok_s'] / f['batch1_decode_tok_s']:.2f}x batch-1)")
        for name in ("prefill", "prefill_512"):
            print(f"  {name + ' (' + str(f[name + '_prompt_tokens']) + ' tok):':19}{f[name + '_tok_s']:8.1f} tok/s")
    if len(dtypes) > 1:
        base = best[dtypes[-1]]
        for d in dtypes[:-1]:
            ratios = {k: best[d][k] / base[k] for k in base if k.endswith("_tok_s")}
            record[f"{d}_over_{dtypes[-1]}"] = ratios
            print(f"--dtype {d} / --dtype {dtypes[-1]}: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
