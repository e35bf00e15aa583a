"""`ember bench serve` beside a peer load tester, GuideLLM (PyPI `guidellm`), on the same `ember serve` in one run:
is ember's clock right? Both send the same shape (chat completions, random prompts of --input-len tokens, exactly
--output-len tokens, one request at a time), alternating runs so that drift hits both. Prints TTFT, the gap between
tokens after the first (ember's TPOT, GuideLLM's ITL: both (latency - TTFT) / (tokens - 1)), end-to-end latency and
output throughput from each, and their ratios.

The referee is the server's own log (its TTFT and total time per request, from the engine's clock): on a small
machine a load tester's own CPU use slows a CPU server down, so the testers are compared through how far each reads
from what the server measured during that tester's own runs (`*_minus_server_ms`), not only with each other.

GuideLLM pulls in torch: install it in a venv of its own, and give this script its executable and a Hugging Face
tokenizer directory for the model (made from the GGUF if missing, with the same venv's transformers):
    python3 -m venv /tmp/peer && /tmp/peer/bin/pip install guidellm gguf
    .venv/bin/python bench/loadtester_vs_guidellm.py --guidellm /tmp/peer/bin/guidellm --out bench/results/X.json
"""
import argparse
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/integration"))
from server_util import BUILD, EMBER, MODEL, Server  # noqa: E402


SERVER_LINE = re.compile(r"request \S+: (\d+) prompt tokens .*, TTFT ([0-9.]+) s, total ([0-9.]+) s")


def server_side(server, skip):
    """The server's TTFT and total (ms, means) for the requests it logged after the first `skip` of them."""
    lines = (BUILD / f"serve-{server.port}.log").read_text().splitlines()
    found = [SERVER_LINE.search(line) for line in lines]
    found = [m for m in found if m][skip:]
    if not found:
        return 0, {}
    return len(found), {"server_ttft_ms": statistics.mean(float(m.group(2)) for m in found) * 1000,
                        "server_e2el_ms": statistics.mean(float(m.group(3)) for m in found) * 1000}


def refereed(run, server, before):
    n, s = server_side(server, before)
    run.update(s)
    run["ttft_minus_server_ms"] = run["ttft_ms"] - s["server_ttft_ms"]
    run["e2el_minus_server_ms"] = run["e2el_ms"] - s["server_e2el_ms"]
    return run


def logged(server):
    return server_side(server, 0)[0]


def ember_run(server, args, tmp):
    out = pathlib.Path(tmp) / "ember.json"
    p = subprocess.run([str(EMBER), "bench", "serve", "--no-progress", "--base-url", server.base_url,
                        "--endpoint", "/v1/chat/completions", "--tokenizer", str(MODEL),
                        "--num-prompts", str(args.requests), "--max-concurrency", "1",
                        "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len),
                        "--result-json", str(out)], capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr + p.stdout
    r = json.loads(out.read_text())
    ok = [q for q in r["requests"] if q["success"]]
    return {"ttft_ms": r["mean_ttft_ms"], "tpot_ms": r["mean_tpot_ms"], "e2el_ms": r["mean_e2el_ms"],
            "output_tok_s": r["output_throughput"], "input_tokens": statistics.mean(q["prompt_tokens"] for q in ok)}


def guidellm_run(server, args, tmp):
    out = pathlib.Path(tmp) / "guidellm.json"
    p = subprocess.run([args.guidellm, "run", f"--backend=kind=openai_http,target={server.base_url},model=test-model",
                        "--profile=kind=synchronous", f"--constraint=kind=max_requests,count={args.requests}",
                        f"--tokenizer=kind=hf_auto,model={args.processor}",
                        f"--data=kind=synthetic_text,prompt_tokens={args.input_len},output_tokens={args.output_len}",
                        f"--output=kind=json,path={out}", "--disable-console"],
                       capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:] + p.stdout[-3000:]
    m = json.loads(out.read_text())["benchmarks"][0]["metrics"]
    s = lambda k: m[k]["successful"]["mean"]  # noqa: E731
    return {"ttft_ms": s("time_to_first_token_ms"), "tpot_ms": s("inter_token_latency_ms"),
            "e2el_ms": s("request_latency") * 1000, "output_tok_s": s("output_tokens_per_second"),
            "input_tokens": s("prompt_token_count")}


def make_processor(guidellm, path):
    if (pathlib.Path(path) / "tokenizer.json").exists():
        return
    python = pathlib.Path(guidellm).parent / "python"
    subprocess.run([str(python), "-c", "import sys; from transformers import AutoTokenizer; "
                    "AutoTokenizer.from_pretrained(sys.argv[1], gguf_file=sys.argv[2]).save_pretrained(sys.argv[3])",
                    str(MODEL.parent), MODEL.name, path], check=True, timeout=600)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--guidellm", required=True)
    ap.add_argument("--processor", default="/tmp/ember-smollm2-tokenizer")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()
    make_processor(a.guidellm, a.processor)
    runs = {"ember bench": [], "guidellm": []}
    s = Server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(a.rounds):
                before = logged(s)
                runs["ember bench"].append(refereed(ember_run(s, a, tmp), s, before))
                before = logged(s)
                runs["guidellm"].append(refereed(guidellm_run(s, a, tmp), s, before))
    finally:
        s.stop()
    mean = {k: {m: statistics.mean(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    print(f"{'':14}{'TTFT ms':>10}{'TPOT ms':>10}{'E2E ms':>10}{'out tok/s':>11}{'input tok':>11}"
          f"{'TTFT-server':>13}{'E2E-server':>12}")
    for k, v in mean.items():
        print(f"{k:14}{v['ttft_ms']:10.1f}{v['tpot_ms']:10.2f}{v['e2el_ms']:10.1f}{v['output_tok_s']:11.2f}"
              f"{v['input_tokens']:11.1f}{v['ttft_minus_server_ms']:13.2f}{v['e2el_minus_server_ms']:12.2f}")
    ratio = {m: mean["ember bench"][m] / mean["guidellm"][m] for m in mean["guidellm"]}
    print("ember / guidellm: " + ", ".join(f"{m} {r:.3f}" for m, r in ratio.items()))
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps({"requests": a.requests, "input_len": a.input_len,
                                                   "output_len": a.output_len, "rounds": runs, "mean": mean,
                                                   "ratio_ember_over_guidellm": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()
