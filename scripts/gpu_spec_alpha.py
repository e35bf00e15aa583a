#!/usr/bin/env python3
"""Speculative decoding's speedup against its acceptance rate alpha, beside the theory, on the GPU.

Random weights agree with nothing, so alpha is dialled honestly with an early-exit draft: the target is the
Llama-3-8B shape whose layers 2..31 have their o_proj and down_proj drawn `late_layer_scale` times smaller
(config.json's "ember_dummy" key, models/model_config.h), and the draft is the same shape cut to its first 2
layers (same dummy seed, so it holds exactly the target's embedding, first layers and LM head). The target still
runs all 32 layers at full cost; what its late layers add to the residual stream, and so how often its greedy token
differs from the draft's, grows with the scale. c (the draft's step cost over the target's) is measured from each
model decoding alone in the same run.

For each point: plain decoding and speculation (K tokens) in the same run, batch 1 and batch 8, greedy, 256 tokens;
speeds are steady decode rates: prefill excluded, and at batch 8 only while all 8 requests run (`ember generate`'s
steady rate; the rates with the tail and with the prefill are recorded beside).
alpha is fitted from the measured mean accepted tokens per verification (m = a (1 - a^K) / (1 - a), i.i.d.; m taken
as K times the acceptance rate, since fewer than K are proposed near max_tokens), and
the theory is (1 - a^(K+1)) / ((1 - a)(cK + 1)) (Leviathan et al. 2023); the i.i.d.-free form (1 + m) / (cK + 1)
is printed too. The theory prices the target's verify step (K + 1 tokens) like a decode step; its measured cost v
(in decode steps, from the point of least acceptance: there a step makes one token and costs cK + v) gives the
calibrated theory (1 - a^(K+1)) / ((1 - a)(cK + v)), printed beside.

usage: gpu_spec_alpha.py EMBER TOKENIZER OUTDIR
(EMBER_SPEC_ALPHA_BASE, _DEVICE and _TOKENS override the base config, the device and the 256 tokens, to try the
script on the CPU with a small shape; EMBER_SPEC_ALPHA_QUICK=1 runs 4 scales at batch 1, 3 at batch 8 and K = 4 only.)
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALES = [0.0, 0.02, 0.035, 0.05, 0.1, 0.2, 0.4, 1.0]
BATCH8_SCALES = [0.0, 0.035, 0.1, 1.0]
EXTRA_K = [2, 8]  # at scale 0, batch 1
if os.environ.get("EMBER_SPEC_ALPHA_QUICK"):
    SCALES, BATCH8_SCALES, EXTRA_K = [0.0, 0.035, 0.1, 1.0], [0.0, 0.1, 1.0], []
EXIT_LAYER = 2
PROMPTS8 = ["The history of the", "Once upon a time", "In the beginning", "The quick brown fox", "A long time ago",
            "The main reason", "First of all", "The results show"]


def write_configs(outdir):
    with open(os.environ.get("EMBER_SPEC_ALPHA_BASE", os.path.join(ROOT, "configs/models/llama-3-8b.json"))) as f:
        base = json.load(f)
    paths = {}
    for s in SCALES:
        c = dict(base, ember_dummy={"exit_layer": EXIT_LAYER, "late_layer_scale": s})
        paths[s] = os.path.join(outdir, f"target_scale_{s}.json")
        with open(paths[s], "w") as f:
            json.dump(c, f)
    draft = dict(base, num_hidden_layers=EXIT_LAYER)
    paths["draft"] = os.path.join(outdir, "draft_2_layers.json")
    with open(paths["draft"], "w") as f:
        json.dump(draft, f)
    return paths


def generate(ember, tokenizer, model, batch, outdir, name, spec=None):
    args = [ember, "generate", "--model", model, "--load-format", "dummy", "--tokenizer", tokenizer, "--device",
            os.environ.get("EMBER_SPEC_ALPHA_DEVICE", "cuda"), "--max-model-len", "2048", "--max-num-seqs", "8",
            "--max-tokens", os.environ.get("EMBER_SPEC_ALPHA_TOKENS", "256"), "--ignore-eos", "--temperature", "0"]
    if batch == 1:
        args += ["--prompt", PROMPTS8[0]]
    else:
        pf = os.path.join(outdir, "prompts8.txt")
        with open(pf, "w") as f:
            f.write("\n".join(PROMPTS8) + "\n")
        args += ["--prompts-file", pf]
    if spec:
        args += ["--speculative-config", json.dumps(spec)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    with open(os.path.join(outdir, name + ".log"), "w") as f:
        f.write(p.stderr)
    with open(os.path.join(outdir, name + ".out"), "w") as f:
        f.write(p.stdout)
    if p.returncode != 0:
        raise SystemExit(f"{name}: exit {p.returncode}\n{p.stderr[-2000:]}")
    last = p.stdout.strip().splitlines()[-1]
    # Decode rates in the steady state the theory describes: after the first token at batch 1; at batch 8 while all
    # 8 requests run (prefill excluded, and the tail left out where requests that accepted different numbers of
    # tokens finish apart and the last steps run fewer than 8). The batch's other rates are kept beside.
    if batch == 1:
        r = {"tok_per_s": float(re.search(r"decode: ([\d.]+) tokens/s", last).group(1))}
    else:
        r = {"tok_per_s": float(re.search(r"steady decode \(every request running\): ([\d.]+) tokens/s", last).group(1)),
             "decode_tok_per_s_with_tail": float(re.search(r"decode after every first token: ([\d.]+) tokens/s",
                                                           last).group(1)),
             "output_tok_per_s_with_prefill": float(re.search(r"([\d.]+) output tokens/s", last).group(1))}
    s = re.search(r"speculative decoding: (\d+) verification runs, (\d+) of (\d+) proposed", p.stderr)
    if s:
        r.update(verifications=int(s.group(1)), accepted=int(s.group(2)), proposed=int(s.group(3)))
    print(f"{name}: {r}", flush=True)
    return r


def fit_alpha(m, k):
    """a with a (1 - a^k) / (1 - a) = m (mean accepted per verification, 0 <= m <= k)."""
    if m <= 0:
        return 0.0
    if m >= k:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        a = (lo + hi) / 2
        if sum(a ** i for i in range(1, k + 1)) < m:
            lo = a
        else:
            hi = a
    return (lo + hi) / 2


def tokens_per_step(a, k):
    return k + 1 if a >= 1 else (1 - a ** (k + 1)) / (1 - a)


def theory(a, c, k):
    return tokens_per_step(a, k) / (c * k + 1)


def main():
    ember, tokenizer, outdir = sys.argv[1:4]
    os.makedirs(outdir, exist_ok=True)
    paths = write_configs(outdir)
    res = {"how": __doc__.split("usage:")[0].strip(), "exit_layer": EXIT_LAYER, "points": []}
    plain, draft_alone, c = {}, {}, {}
    for b in (1, 8):
        # Speed does not depend on the weights' values: one plain run per batch size.
        plain[b] = generate(ember, tokenizer, paths[SCALES[0]], b, outdir, f"plain_b{b}")
        draft_alone[b] = generate(ember, tokenizer, paths["draft"], b, outdir, f"draft_alone_b{b}")
        c[b] = plain[b]["tok_per_s"] / draft_alone[b]["tok_per_s"]
    res["plain_tok_per_s"] = {f"b{b}": plain[b]["tok_per_s"] for b in plain}
    res["draft_alone_tok_per_s"] = {f"b{b}": draft_alone[b]["tok_per_s"] for b in draft_alone}
    res["c"] = {f"b{b}": round(c[b], 4) for b in c}
    runs = [(s, 1, 4) for s in SCALES] + [(s, 8, 4) for s in BATCH8_SCALES] + [(s, 1, k) for k in EXTRA_K for s in (SCALES[0], SCALES[-1])]
    print(f"{'scale':>6} {'batch':>5} {'K':>2} {'alpha':>6} {'m':>5} {'c':>5} {'speedup':>8} {'theory':>7} "
          f"{'ratio':>6} {'(1+m)/(cK+1)':>13} {'v':>5} {'calib.':>8} {'ratio':>6}")
    rows = []
    verify_cost = {}
    for s, b, k in sorted(runs, key=lambda r: -r[0]):  # the least acceptance first: it gives v
        spec = {"method": "draft_model", "model": paths["draft"], "num_speculative_tokens": k}
        r = generate(ember, tokenizer, paths[s], b, outdir, f"spec_s{s}_b{b}_k{k}", spec)
        # Near max_tokens fewer than K are proposed: m as if every verification had K (K x the acceptance rate).
        m = k * r.get("accepted", 0) / max(r.get("proposed", 0), 1)
        a = fit_alpha(m, k)
        speedup = r["tok_per_s"] / plain[b]["tok_per_s"]
        th = theory(a, c[b], k)
        if (b, k) not in verify_cost:  # the highest scale of this batch and K: alpha ~ 0, a token per step
            verify_cost[(b, k)] = tokens_per_step(a, k) * plain[b]["tok_per_s"] / r["tok_per_s"] - c[b] * k
        v = verify_cost[(b, k)]
        calibrated = th * (c[b] * k + 1) / (c[b] * k + v)
        point = {"late_layer_scale": s, "batch": b, "k": k, "tok_per_s": r["tok_per_s"],
                 "plain_tok_per_s": plain[b]["tok_per_s"], "speedup": round(speedup, 3),
                 "acceptance_rate": round(r.get("accepted", 0) / max(r.get("proposed", 1), 1), 4),
                 "mean_accepted_per_verification": round(m, 3), "alpha_fit": round(a, 4), "c": round(c[b], 4),
                 "theory": round(th, 3), "speedup_over_theory": round(speedup / th, 3),
                 "verify_cost_v": round(v, 3), "theory_calibrated": round(calibrated, 3),
                 "speedup_over_calibrated": round(speedup / calibrated, 3),
                 "theory_from_m": round((1 + m) / (c[b] * k + 1), 3), **{x: r[x] for x in r if x != "tok_per_s"}}
        for key in ("output_tok_per_s_with_prefill", "decode_tok_per_s_with_tail"):
            if key in r:
                point["speedup_" + key] = round(r[key] / plain[b][key], 3)
        res["points"].append(point)
        rows.append(point)
        print(f"{s:>6} {b:>5} {k:>2} {a:6.3f} {m:5.2f} {c[b]:5.3f} {speedup:7.3f}x {th:6.3f}x {speedup / th:6.3f} "
              f"{point['theory_from_m']:12.3f}x {v:5.2f} {calibrated:7.3f}x {speedup / calibrated:6.3f}", flush=True)
    with open(os.path.join(outdir, "spec_alpha.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
