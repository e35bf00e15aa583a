#!/usr/bin/env python3
"""The summary table of scripts/gpu_check.sh: every figure next to its same-run reference."""
import json
import pathlib
import re
import sys

R = pathlib.Path(sys.argv[1]) if __name__ == "__main__" else None


def json_lines(path):
    """The JSON objects of a log, one per line that starts with '{' (other lines skipped)."""
    out = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def jsonl(name):
    return json_lines(R / f"{name}.log")


def main() -> int:
    ok = True
    for name in ("gpu_tests", "gpu_tests_hf", "kv_fp8_tests"):
        t = R / f"{name}.json"
        if t.exists():
            j = json.loads(t.read_text())
            failed = j["failures"] + j.get("errors", 0)
            print(f"{name}: {j['tests'] - failed} passed, {failed} failed")
            ok &= failed == 0
        elif (R / f"{name}.log").exists():
            print(f"{name}: no result (the binary died: see {name}.log)")
            ok = False
    for name in ("attention_bench", "sdpa_reference", "gemm_bench", "gemm_reference", "sampler_bench", "fp8_bench"):
        for row in jsonl(name):
            print(name, json.dumps(row))
    for name in ("llama_decode_b1", "llama_decode_b1_sync", "llama_throughput", "llama_throughput_sync",
                 "llama_throughput_512", "serve_client", "fp8_decode_b1_none", "fp8_decode_b1_fp8",
                 "fp8_decode_b32_none", "fp8_decode_b32_fp8", "fp8_throughput_none", "fp8_throughput_fp8", "fp8_throughput_fp8_unfused",
                 "serve_client_fp8", "fp8_decode_b32_fp8kv", "fp8_throughput_fp8kv", "kv_pool_8k_auto",
                 "kv_pool_8k_fp8"):
        p = R / f"{name}.log"
        if p.exists():
            lines = [l for l in p.read_text(errors="replace").splitlines()
                     if re.search(r"tok/s|tokens/s|throughput|KV cache|\{", l)]
            for l in lines[-6:]:
                print(f"{name}: {l.strip()[:300]}")
    for p in sorted(R.glob("fp8rows_*.log")):  # stage fp8b8: one steady decode rate a run
        rate = re.findall(r"steady decode[^:]*: ([0-9.]+)", p.read_text(errors="replace"))
        print(f"{p.stem}: {rate[-1] if rate else 'no result'} tok/s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
