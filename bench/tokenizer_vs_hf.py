"""Encode throughput of ember's tokenizers next to Hugging Face `tokenizers` on the same text, in one run.

Runs build/tokenizer_bench (Google Benchmark, one thread) and times HF tokenizers' single-threaded encode of
the same ~1 MiB text (tests/fixtures/tokenizer/corpus.jsonl joined by newlines, repeated), then prints one JSON
object with MiB/s for both and their ratio. Usage: .venv/bin/python bench/tokenizer_vs_hf.py [--out FILE]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import gguf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", ROOT / "build"))
MODEL = pathlib.Path(os.environ.get("EMBER_DEFAULT_MODEL",
                                    pathlib.Path.home() / ".cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf"))


def bench_text() -> str:
    once = ""
    for line in (ROOT / "tests/fixtures/tokenizer/corpus.jsonl").read_text().splitlines():
        j = json.loads(line)
        if "text" in j:
            once += j["text"] + "\n"
    text = ""
    while len(text.encode()) < (1 << 20):
        text += once
    return text


def smollm2_reference() -> Tokenizer:
    # The same reference the parity test uses: SmolLM2's published pre-tokenizer over the GGUF's vocabulary.
    r = gguf.GGUFReader(str(MODEL))
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    merges = [tuple(m.split(" ", 1)) for m in r.fields["tokenizer.ggml.merges"].contents()]
    tok = Tokenizer(models.BPE({t: i for i, t in reversed(list(enumerate(tokens)))}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    return tok


def hf_mib_per_s(tok: Tokenizer, text: str, repeats: int = 5) -> float:
    os.environ["RAYON_NUM_THREADS"] = "1"
    tok.encode(text)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        tok.encode(text, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
    return len(text.encode()) / best / 2**20


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    args = ap.parse_args()
    env = dict(os.environ, EMBER_DEFAULT_MODEL=str(MODEL))
    r = subprocess.run([str(BUILD / "tokenizer_bench"), "--benchmark_format=json"], env=env, capture_output=True,
                       text=True, check=True)
    ember = {b["name"].split("/")[-1]: b["bytes_per_second"] / 2**20 for b in json.loads(r.stdout)["benchmarks"]}
    text = bench_text()
    fixtures = ROOT / "tests/fixtures/tokenizer/bpe"
    refs = {"smollm2_gguf": smollm2_reference(), "llama3_fixture": Tokenizer.from_file(str(fixtures / "llama3.json")),
            "qwen2_fixture": Tokenizer.from_file(str(fixtures / "qwen2.json"))}
    rows = []
    for name, tok in refs.items():
        hf = hf_mib_per_s(tok, text)
        rows.append({"tokenizer": name, "ember_mib_s": round(ember[name], 2), "hf_tokenizers_mib_s": round(hf, 2),
                     "ratio": round(ember[name] / hf, 2)})
        print(f"{name:16s} ember {ember[name]:6.2f} MiB/s   HF tokenizers (1 thread) {hf:6.2f} MiB/s   ratio {ember[name] / hf:.2f}")
    result = {"text_bytes": len(text.encode()), "threads": 1, "results": rows}
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
