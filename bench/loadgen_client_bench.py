#!/usr/bin/env python3
"""Is `ember bench` fast enough not to be the bottleneck? (issue 8)

Starts tests/tools/mock_sse_server (streams one token per chunk at a fixed rate per
stream) and runs `ember bench serve` against it with the client pinned to one core.
Reports the streamed tokens/s the client sustained, the client's CPU seconds per
1,000 tokens, and how far the client's inter-token gaps are from the gaps the mock
actually slept (mean of each, from the mock's GET /stats). Targets: >= 5,000 tokens/s
on one core; timestamps within 1 ms of the mock's.

  python3 bench/loadgen_client_bench.py --build-dir build [--streams 64] [--rate 200]
"""
import argparse
import json
import os
import pathlib
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.environ.get("EMBER_BUILD_DIR", ROOT / "build"))
    ap.add_argument("--streams", type=int, default=64, help="concurrent streams")
    ap.add_argument("--rate", type=float, default=200, help="tokens/s of each stream")
    ap.add_argument("--tokens", type=int, default=400, help="tokens per request")
    ap.add_argument("--requests", type=int, default=128)
    ap.add_argument("--client-cpu", default="0", help="taskset CPU list for the client")
    ap.add_argument("--mock-cpu", default="1", help="taskset CPU list for the mock server")
    args = ap.parse_args()
    build = pathlib.Path(args.build_dir)
    port = free_port()
    mock = subprocess.Popen(["taskset", "-c", args.mock_cpu, str(build / "mock_sse_server"), "--port", str(port),
                             "--tokens-per-s", str(args.rate), "--threads", str(args.streams + 8)],
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "r.json"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            p = subprocess.run(["taskset", "-c", args.client_cpu, str(build / "ember"), "bench", "serve",
                                "--no-progress", "--base-url", url, "--num-prompts", str(args.requests),
                                "--random-input-len", "16", "--random-output-len", str(args.tokens),
                                "--max-concurrency", str(args.streams), "--result-json", str(out)],
                               capture_output=True, text=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if p.returncode != 0:
                sys.exit(f"ember bench failed ({p.returncode}):\n{p.stderr[-3000:]}")
            r = json.loads(out.read_text())
        stats = json.loads(urllib.request.urlopen(url + "/stats", timeout=5).read())
    finally:
        mock.kill()
        mock.wait()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tokens = r["total_output_tokens"]
    itl_diff = abs(r["mean_itl_ms"] - stats["mean_gap_ms"])
    result = {
        "streams": args.streams, "rate_per_stream": args.rate, "offered_tokens_per_s": args.streams * args.rate,
        "completed": r["completed"], "failed": r["failed"], "tokens": tokens,
        "sustained_tokens_per_s": r["output_throughput"],
        "client_cpu_s": cpu, "client_cpu_ms_per_1k_tokens": 1e6 * cpu / max(tokens, 1),
        "tokens_per_client_cpu_s": tokens / cpu if cpu > 0 else None,
        "client_mean_itl_ms": r["mean_itl_ms"], "client_p99_itl_ms": r["p99_itl_ms"],
        "mock_mean_gap_ms": stats["mean_gap_ms"], "mock_max_gap_ms": stats["max_gap_ms"],
        "mean_itl_diff_ms": itl_diff,
    }
    print(json.dumps(result, indent=2))
    ok = r["failed"] == 0 and r["output_throughput"] >= 5000 and itl_diff < 1.0
    print("PASS" if ok else "FAIL: targets are >= 5000 tokens/s sustained and mean ITL within 1 ms of the mock's")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
