"""Speculative decoding (n-gram method) on the CPU with the real SmolLM2-135M, through `ember generate`:
batch-1 greedy decode tokens/s with and without `--speculative-config ngram`, measured in the same run, on
tasks whose output repeats the input (editing code, extracting fields, copying a list) and on free text
(few proposals, most rejected: the overhead when little is accepted), plus a batch of 16 free-text prompts, and
the draft-model method with the model as its own draft (everything accepted at a draft/target cost ratio c = 1:
theory gives speedup (K + 1) / (cK + 1) = 1, so this measures the machinery's overhead).
Every pair must give the same text (greedy). Prints each speedup and writes a JSON record with --out.

    .venv/bin/python bench/cpu_spec_decode_bench.py [--out bench/results/DATE-cpu-spec-decode.json]
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
NGRAM = '{"method": "ngram", "num_speculative_tokens": %d, "prompt_lookup_min": 2, "prompt_lookup_max": 4}'
TASKS = {
    "edit code (rename a variable)": (
        "Rename the variable x to total in this code and print the whole code.\n\n"
        "def sum_list(values):\n    x = 0\n    for v in values:\n        x = x + v\n    return x\n\n"
        "def mean(values):\n    x = sum_list(values)\n    return x / len(values)\n\nRenamed code:\n\n"
        "def sum_list(values):\n    total = 0\n"),
    "extract fields": (
        "Invoice 2291 from Northwind Traders, dated 2024-03-15, billed to Contoso Ltd, 42 Harbour Road, Dublin. "
        "Items: 12 desk lamps at 19.99 each, 4 office chairs at 149.00 each. Total due: 835.88 EUR.\n"
        "Extract as JSON with keys invoice, seller, date, buyer, address, total:\n{\"invoice\": \"2291\", "),
    "copy a list": (
        "Copy this list exactly: Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune, Pluto, Ceres, "
        "Eris, Haumea, Makemake.\nCopy: Mercury, Venus,"),
    "free text": "Write a short story about a lighthouse keeper who finds a message in a bottle.",
}


def generate(*args):
    r = subprocess.run([str(EMBER), "generate", "--model", MODEL, "--device", "cpu", "--temperature", "0",
                        "--ignore-eos", *args],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, r.stderr


def acceptance(stderr):
    m = re.search(r"(\d+) of (\d+) proposed tokens accepted .*mean acceptance length ([0-9.]+)", stderr)
    return None if not m else {"accepted": int(m.group(1)), "proposed": int(m.group(2)),
                               "mean_acceptance_length": float(m.group(3))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--k", type=int, default=4)
    a = ap.parse_args()
    record = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "model": pathlib.Path(MODEL).name, "tokens": a.tokens, "k": a.k,
              "how": "ember generate, greedy, batch 1 per task; same run, plain then ngram, best of 2 each",
              "tasks": {}}
    for name, prompt in TASKS.items():
        best = {}
        texts = {}
        for mode in ("plain", "ngram"):
            extra = ["--speculative-config", NGRAM % a.k] if mode == "ngram" else []
            rates = []
            for _ in range(2):
                out, err = generate("--prompt", prompt, "-n", str(a.tokens), *extra)
                rates.append(float(re.search(r"decode: ([0-9.]+) tokens/s", out).group(1)))
                texts[mode] = out.rsplit("\n\nprompt tokens:", 1)[0]
                if mode == "ngram":
                    acc = acceptance(err)
            best[mode] = max(rates)
        same = texts["plain"] == texts["ngram"]
        rec = {"plain_tok_s": best["plain"], "ngram_tok_s": best["ngram"],
               "speedup": round(best["ngram"] / best["plain"], 3), "greedy_text_identical": same, "ngram": acc}
        record["tasks"][name] = rec
        print(f"{name:32s} plain {best['plain']:6.1f} tok/s  ngram {best['ngram']:6.1f} tok/s  "
              f"x{rec['speedup']:.2f}  identical={same}  {acc}")
    # A batch of 16 free-text prompts (continuous batching with speculation): output tokens/s.
    prompts = ["Tell me about the history of Rome.", "Explain how a rainbow forms.", "Describe a busy market.",
               "Why is the sky blue?", "Write about autumn leaves.", "How do airplanes fly?",
               "What makes a good friend?", "Describe the ocean at night.", "How does a compass work?",
               "Write about a mountain village.", "What is photosynthesis?", "Describe a thunderstorm.",
               "How are bridges built?", "Write about a city at dawn.", "What do bees do?", "Describe a desert."]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(prompts) + "\n")
    batch = {}
    for mode in ("plain", "ngram"):
        extra = ["--speculative-config", NGRAM % a.k] if mode == "ngram" else []
        out, err = generate("--prompts-file", f.name, "-n", str(a.tokens), *extra)
        batch[mode] = float(re.search(r"([0-9.]+) output tokens/s", out).group(1))
        batch[mode + "_text"] = out.split("requests: ")[0]
        if mode == "ngram":
            batch["ngram_acceptance"] = acceptance(err)
    record["batch16_free_text"] = {"plain_out_tok_s": batch["plain"], "ngram_out_tok_s": batch["ngram"],
                                   "ratio": round(batch["ngram"] / batch["plain"], 3),
                                   "greedy_text_identical": batch["plain_text"] == batch["ngram_text"],
                                   "ngram": batch["ngram_acceptance"]}
    print("batch 16 free text:", record["batch16_free_text"])
    # Draft model = the target itself, batch 1 on the list-copy task.
    prompt = TASKS["copy a list"]
    rates, acc = {}, None
    for mode in ("plain", "draft"):
        extra = ["--speculative-model", MODEL, "--num-speculative-tokens", str(a.k)] if mode == "draft" else []
        out, err = generate("--prompt", prompt, "-n", str(a.tokens), *extra)
        rates[mode] = float(re.search(r"decode: ([0-9.]+) tokens/s", out).group(1))
        if mode == "draft":
            acc = acceptance(err)
    record["draft_model_is_target"] = {"plain_tok_s": rates["plain"], "draft_tok_s": rates["draft"],
                                       "ratio": round(rates["draft"] / rates["plain"], 3), "theory_ratio": 1.0,
                                       "draft": acc}
    print("draft = target:", record["draft_model_is_target"])
    print(json.dumps(record, indent=1))
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
