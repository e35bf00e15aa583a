"""Structured outputs against free text, in one run, through `ember serve` and the official openai client:
16 concurrent chat requests (greedy, 128 tokens at most) on the default model, once with a JSON schema in
response_format and once without; output tokens/s for each and their ratio (the issue's goal on the GPU: no more
than 10% loss at batch 32). Also the first request's time with a new schema (the grammar's compile) against a
repeat (the cache). On the CPU every step waits for its tokens anyway, so this measures the masks and the
per-token grammar work, not lost overlap.

    .venv/bin/python bench/structured_throughput_bench.py [--out bench/results/DATE-cpu-structured-throughput.json]

On a GPU (scripts/gpu_check.sh, stage `structured`): --concurrency 32 and --server-args with the model and
--device cuda; --no-async-scheduling among the server arguments measures what async scheduling would add to free
text (steps with a grammar row wait for their tokens either way: the next mask needs them).
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import socket
import subprocess
import time
import urllib.request

from openai import OpenAI

ROOT = pathlib.Path(__file__).resolve().parents[1]
EMBER = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", ROOT / "build")) / "ember"
MODEL = os.environ.get("EMBER_DEFAULT_MODEL",
                       str(pathlib.Path.home() / ".cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"},
    "hobbies": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
    "employed": {"type": "boolean"}}, "required": ["name", "age", "city", "hobbies", "employed"]}


def prompts(n):
    return [f"Describe person number {i}: their name, age, city, hobbies and whether they work. Answer in JSON."
            for i in range(n)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_batch(client, model, schema, max_tokens, regex=None, concurrency=16):
    def one(prompt):
        extra = {}
        if schema is not None:
            extra["response_format"] = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
        body = {}
        if regex is not None:  # equal lengths: both sides run to max_tokens
            body = {"ignore_eos": True}
            if regex:
                body["structured_outputs"] = {"regex": regex}
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                           max_tokens=max_tokens, temperature=0, extra_body=body, **extra)
        return r.usage.completion_tokens, r.choices[0].message.content, r.choices[0].finish_reason
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, prompts(concurrency)))
    wall = time.perf_counter() - t0
    tokens = sum(n for n, _, _ in results)
    if schema is not None:
        for _, text, finish in results:
            if finish == "stop":  # every finished structured answer parses (or the run is wrong)
                json.loads(text)
    return {"output_tokens": tokens, "seconds": wall, "output_tok_s": tokens / wall}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--ember", default=str(EMBER))
    ap.add_argument("--server-args", help="JSON list of `ember serve` arguments (default: the default model)")
    args = ap.parse_args()
    port = free_port()
    server_args = json.loads(args.server_args) if args.server_args else ["--model", MODEL]
    server = subprocess.Popen([args.ember, "serve", *server_args, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=600)
        model = client.models.list().data[0].id
        # Compile time as a client sees it: a new schema, then the same one again (cached).
        fresh = dict(SCHEMA, title="fresh")
        t0 = time.perf_counter()
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "p", "schema": fresh}})
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "p", "schema": fresh}})
        cached = time.perf_counter() - t0
        c = args.concurrency
        run_batch(client, model, None, 8, concurrency=c)  # warm-up
        free = run_batch(client, model, None, args.max_tokens, concurrency=c)
        structured = run_batch(client, model, SCHEMA, args.max_tokens, concurrency=c)
        ratio = structured["output_tok_s"] / free["output_tok_s"]
        # The same number of tokens on both sides: ignore_eos, 128 tokens each, a regex that never has to end.
        # The regex is new to the server here: its one compile (the requests that ask while it compiles wait for
        # it) is in the first run; the second meets it cached, so the two tell compile time from per-step time.
        loose = r"[A-Za-z0-9 ,.'\n-]+"
        free_equal = run_batch(client, model, None, args.max_tokens, regex="", concurrency=c)
        regex_equal = run_batch(client, model, None, args.max_tokens, regex=loose, concurrency=c)
        regex_cached = run_batch(client, model, None, args.max_tokens, regex=loose, concurrency=c)
        ratio_equal = regex_equal["output_tok_s"] / free_equal["output_tok_s"]
        ratio_cached = regex_cached["output_tok_s"] / free_equal["output_tok_s"]
        record = {
            "what": f"{c} concurrent greedy chat requests through ember serve: output tok/s "
                    "with a JSON schema in response_format against free text, same run (the lengths differ: JSON ends when the object closes), and "
                    "the same with equal lengths (ignore_eos, a regex constraint against none)",
            "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "server_args": server_args, "concurrency": c, "max_tokens": args.max_tokens,
            "free_text": free, "json_schema": structured, "ratio_structured_to_free": ratio,
            "first_request_new_schema_s": first, "same_schema_again_s": cached,
            "equal_length": {"free_text": free_equal, "regex": regex_equal, "ratio_regex_to_free": ratio_equal,
                             "regex_cached": regex_cached, "ratio_regex_cached_to_free": ratio_cached,
                             "note": "ignore_eos, every request runs to max_tokens on both sides; `regex` includes "
                                     "the regex's compile, `regex_cached` is the same batch again"},
        }
        print(f"free text      {free['output_tok_s']:8.1f} output tok/s ({free['output_tokens']} tokens)")
        print(f"json_schema    {structured['output_tok_s']:8.1f} output tok/s ({structured['output_tokens']} tokens)"
              f"  ratio {ratio:.3f}")
        print(f"equal lengths: free {free_equal['output_tok_s']:.1f}, regex {regex_equal['output_tok_s']:.1f} "
              f"output tok/s, ratio {ratio_equal:.3f}; regex cached {regex_cached['output_tok_s']:.1f}, "
              f"ratio {ratio_cached:.3f}")
        print(f"a new schema's first request {first * 1000:.0f} ms, the same schema again {cached * 1000:.0f} ms")
        if args.out:
            pathlib.Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
