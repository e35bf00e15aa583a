#!/usr/bin/env python3
"""Where speculative decoding's greedy text parts from plain decoding on the GPU, how close was it to a tie?

The target verifies proposals in a (K + 1)-token chunk, which runs other kernels than a plain decode step (the
prefill attention kernel, a GEMM instead of the small-batch GEMV), so on a random-weight model whose top-2 logits
are often within bf16 rounding of each other the greedy path may part. As the GPU tests do, the check is: identical
wherever the top-2 gap is clear. Starts `ember serve` once plain and once with each speculative config, asks each for
the same greedy completion with logprobs (top 2), and reports for each the first position where the tokens differ and
the plain run's top-2 logprob gap there (the logit gap), on several prompts; and, over the positions both runs still
share, how far the chosen token's logprob moves between the two kernel paths (the noise a tie is measured against).
Exits 1 when a divergence happens at a gap above both --clear and that measured noise.

usage: gpu_spec_gap.py EMBER MODEL_ARGS_JSON SPEC_CONFIG_JSON... [--clear 0.05]
"""
import json
import subprocess
import sys
import urllib.request

from gpu_serve_client import wait_ready  # (scripts/ is the script's directory, so on the path)

PORT = 18471

PROMPTS = ["The history of the", "Once upon a time", "The results show", "In the beginning"]


def completions(ember, model_args, spec, n):
    """Greedy completions of PROMPTS from one server: per prompt, its tokens and top-2 logprobs."""
    args = [ember, "serve", *model_args, "--port", str(PORT), "--max-num-seqs", "8"]
    if spec:
        args += ["--speculative-config", spec]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{PORT}"
    out = []
    try:
        wait_ready(base, 240.0, proc)
        for prompt in PROMPTS:  # one at a time: batch 1, as plain decoding's reference
            body = json.dumps({"prompt": prompt, "max_tokens": n, "temperature": 0, "logprobs": 2,
                               "ignore_eos": True}).encode()
            req = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=600) as r:
                lp = json.loads(r.read())["choices"][0]["logprobs"]
            out.append((lp["tokens"], lp["top_logprobs"]))
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def gap(top):
    v = sorted(top.values(), reverse=True)
    return v[0] - v[1] if len(v) > 1 else float("inf")


def main():
    argv = sys.argv[1:]
    clear = 0.05
    if "--clear" in argv:
        i = argv.index("--clear")
        clear = float(argv[i + 1])
        del argv[i:i + 2]
    ember, model_args, specs = argv[0], json.loads(argv[1]), argv[2:]
    n = 256
    plain = completions(ember, model_args, None, n)
    status = 0
    for spec in specs:
        runs = completions(ember, model_args, spec, n)
        # Over the positions where both runs still share their context: how far the chosen token's logprob moved
        # between the plain decode kernels and the verify kernels (the numerical noise a near tie is measured by).
        noise, gaps = [], []
        for (pt, ptop), (st, stop) in zip(plain, runs):
            first = next((i for i, (a, b) in enumerate(zip(pt, st)) if a != b), None)
            shared = len(pt) if first is None else first
            for i in range(shared):
                tok = pt[i]
                if tok in ptop[i] and tok in stop[i]:
                    noise.append(abs(ptop[i][tok] - stop[i][tok]))
            if first is not None:
                # The two candidates swapped: the logit difference moved by both runs' margins together.
                gaps.append((gap(ptop[first]), gap(stop[first]), first))
        worst_noise = max(noise) if noise else 0.0
        summary = f"{len(noise)} shared positions, chosen-token logprob moved by at most {worst_noise:.4f}"
        if not gaps:
            print(f"{spec}: identical on {len(plain)} prompts x {n} tokens; {summary}")
            continue
        smallest = min(g[0] for g in gaps)
        largest = max(g[0] for g in gaps)
        detail = "; ".join(f"token {f}: plain gap {p:.4f}, speculative gap {q:.4f}" for p, q, f in gaps)
        # A flip needs the two paths to move the candidates' difference by the gap; moves that large are measured
        # at positions that did not flip, so a gap within them (or within --clear) is a near tie.
        bound = max(clear, worst_noise)
        verdict = "near ties" if largest <= bound else "A CLEAR GAP"
        print(f"{spec}: {len(gaps)} of {len(plain)} prompts part ({detail}); smallest plain top-2 gap {smallest:.4f}, "
              f"largest {largest:.4f} ({verdict}: bound {bound:.4f}, the larger of --clear and the noise); {summary}")
        status |= largest > bound
    sys.exit(status)


if __name__ == "__main__":
    main()
