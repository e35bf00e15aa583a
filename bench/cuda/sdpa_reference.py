#!/usr/bin/env python3
"""torch SDPA timings for the shapes of bench/cuda/attention_bench.cu, as JSON lines.

Decode: q [B, 32, 1, 128] against contiguous K/V [B, 8, ctx, 128] (default backend,
enable_gqa), bytes = K + V + q + out. Prefill: one causal prompt, flash and cuDNN
backends, FLOPs = 4 s^2 D Hq / 2. Median of CUDA-event timings after warm-up; small
inputs rotate among copies so L2 does not serve them. Runs on the GPU machine.
"""
import json
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HQ, HKV, D = 32, 8, 128


def median_us(fn, reps, warmup=5):
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(i)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1000.0)
    return statistics.median(times)


def sdpa(q, k, v, causal):
    try:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    except RuntimeError:  # a backend without GQA support: expand K/V (the expansion is timed too)
        rep = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(
            q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), is_causal=causal)


def main():
    dev = "cuda"
    for batch, ctx in [(1, 4096), (32, 4096), (64, 2048), (8, 32768)]:
        kv_bytes = 2 * batch * ctx * HKV * D * 2
        copies = max(1, min(8, (128 << 20) // kv_bytes + 1))
        sets = [(torch.randn(batch, HQ, 1, D, device=dev, dtype=torch.bfloat16),
                 torch.randn(batch, HKV, ctx, D, device=dev, dtype=torch.bfloat16),
                 torch.randn(batch, HKV, ctx, D, device=dev, dtype=torch.bfloat16)) for _ in range(copies)]
        us = median_us(lambda i: sdpa(*sets[i % copies], False), 100)
        nbytes = kv_bytes + 2 * batch * HQ * D * 2
        print(json.dumps({"name": "sdpa_decode", "backend": "default", "batch": batch, "ctx": ctx, "hq": HQ,
                          "hkv": HKV, "d": D, "time_us": round(us, 2), "gb_per_s": round(nbytes / (us * 1e3), 1)}),
              flush=True)
    for seq in [1024, 4096, 16384]:
        q = torch.randn(1, HQ, seq, D, device=dev, dtype=torch.bfloat16)
        k = torch.randn(1, HKV, seq, D, device=dev, dtype=torch.bfloat16)
        v = torch.randn(1, HKV, seq, D, device=dev, dtype=torch.bfloat16)
        flops = 4.0 * seq * seq * D * HQ / 2
        for name, backend in [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]:
            try:
                with sdpa_kernel(backend):
                    us = median_us(lambda i: sdpa(q, k, v, True), 10 if seq >= 16384 else 30)
                rec = {"time_us": round(us, 2), "tflop_per_s": round(flops / (us * 1e6), 1)}
            except RuntimeError as e:
                rec = {"error": str(e).splitlines()[0][:200]}
            print(json.dumps({"name": "sdpa_prefill", "backend": name, "seq": seq, "hq": HQ, "hkv": HKV, "d": D,
                              **rec}), flush=True)


if __name__ == "__main__":
    main()
