#!/usr/bin/env python3
"""Where speculative decoding's greedy text parts from plain decoding on the GPU, how close was it to a tie?

The target verifies proposals in a (K + 1)-token chunk, which runs other kernels than a plain decode step (the
prefill attention kernel, a GEMM instead of the small-batch GEMV), so on a random-weight model whose top-2 logits
are often within bf16 rounding of each other the greedy path may part. As the GPU tests do, the check is: identical
wherever the top-2 gap is clear. Starts `ember serve` once plain and once with each speculative config, asks each for
the same greedy completion with logprobs (top 2), and reports for each the first position where the tokens differ and
the plain run's top-2 logprob gap there (the logit gap). Exits 1 when a divergence happens at a gap above --clear.

usage: gpu_spec_gap.py EMBER MODEL_ARGS_JSON SPEC_CONFIG_JSON... [--clear 0.05]
"""
import json
import subprocess
import sys
import time
import urllib.request

PORT = 18471


def wait_ready(base, proc, timeout=240.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(1)
    raise SystemExit("server not ready")


def completion(ember, model_args, spec, prompt, n):
    args = [ember, "serve", *model_args, "--port", str(PORT), "--max-num-seqs", "8"]
    if spec:
        args += ["--speculative-config", spec]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{PORT}"
    try:
        wait_ready(base, proc)
        body = json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0, "logprobs": 2,
                           "ignore_eos": True}).encode()
        req = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            lp = json.loads(r.read())["choices"][0]["logprobs"]
        return lp["tokens"], lp["top_logprobs"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main():
    argv = sys.argv[1:]
    clear = 0.05
    if "--clear" in argv:
        i = argv.index("--clear")
        clear = float(argv[i + 1])
        del argv[i:i + 2]
    ember, model_args, specs = argv[0], json.loads(argv[1]), argv[2:]
    prompt, n = "The history of the", 256
    plain_tokens, plain_top = completion(ember, model_args, None, prompt, n)
    status = 0
    for spec in specs:
        tokens, _ = completion(ember, model_args, spec, prompt, n)
        first = next((i for i, (a, b) in enumerate(zip(plain_tokens, tokens)) if a != b), None)
        if first is None:
            print(f"{spec}: identical over {len(tokens)} tokens")
            continue
        top = sorted(plain_top[first].values(), reverse=True)
        gap = top[0] - top[1] if len(top) > 1 else float("inf")
        verdict = "a near tie" if gap <= clear else "A CLEAR GAP"
        print(f"{spec}: first differs at token {first} of {len(tokens)}; plain top-2 logprob gap there {gap:.4f} "
              f"({verdict}, threshold {clear})")
        status |= gap > clear
    sys.exit(status)


if __name__ == "__main__":
    main()
