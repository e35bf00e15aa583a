"""Memory of `ember serve` under large requests that are rejected (issue 25, item 5): 42 concurrent requests, each a
~1 MB body with a 60,000-entry logit_bias (parsed whole, then refused with 400 for token ids beyond the vocabulary),
repeated in rounds on fresh connections. Prints the server's resident memory before and after, with ember's default
malloc arena cap (4) and with MALLOC_ARENA_MAX=64 (what glibc allows an 8-core machine by default), in one run.

    .venv/bin/python bench/http_memory_bench.py [--rounds 5] [--out bench/results/DATE-cpu-http-memory.json]
"""
import argparse
import concurrent.futures
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests/integration"))
from server_util import Server  # noqa: E402


def rss_mb(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(arena_env, rounds, concurrency):
    env = dict(os.environ)
    env.pop("MALLOC_ARENA_MAX", None)
    if arena_env:
        env["MALLOC_ARENA_MAX"] = arena_env
    old = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)
    try:
        s = Server("--max-model-len", "256", tiny=True)
    finally:
        os.environ.clear()
        os.environ.update(old)
    try:
        bias = "{" + ",".join(f'"{i}": 1' for i in range(60000)) + "}"
        body = '{"prompt": "x", "max_tokens": 1, "logit_bias": ' + bias + "}"
        before = rss_mb(s.proc.pid)
        peak = before
        for _ in range(rounds):
            with concurrent.futures.ThreadPoolExecutor(concurrency) as ex:
                codes = list(ex.map(lambda _: s.request("POST", "/v1/completions", body, timeout=120)[0],
                                    range(concurrency)))
            assert set(codes) == {400}, codes
            peak = max(peak, rss_mb(s.proc.pid))
        time.sleep(1)
        after = rss_mb(s.proc.pid)
        return {"malloc_arena_max": arena_env or "4 (ember's default)", "rss_before_mb": round(before, 1),
                "rss_peak_mb": round(peak, 1), "rss_after_mb": round(after, 1), "body_bytes": len(body)}
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=42)
    ap.add_argument("--out")
    a = ap.parse_args()
    results = [run(None, a.rounds, a.concurrency), run("64", a.rounds, a.concurrency)]
    for r in results:
        print(f"MALLOC_ARENA_MAX {r['malloc_arena_max']:>20}: RSS {r['rss_before_mb']:.0f} MB before, "
              f"{r['rss_peak_mb']:.0f} MB peak, {r['rss_after_mb']:.0f} MB after")
    ratio = results[0]["rss_after_mb"] / results[1]["rss_after_mb"]
    print(f"ember's default after / 64 arenas after: {ratio:.2f}x")
    if a.out:
        pathlib.Path(a.out).write_text(json.dumps({"rounds": a.rounds, "concurrency": a.concurrency,
                                                   "cpu_count": os.cpu_count(), "runs": results,
                                                   "after_ratio": round(ratio, 3)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
