#!/usr/bin/env python3
"""torch's bf16 matmul (cuBLAS through F.linear) at the shapes of gemm_bench.cu,
timed the same way: CUDA events around batches of back-to-back calls, median
of the batches, decode weights rotated over >= 256 MB so they stream from HBM.
Prints one JSON object per line, field names as gemm_bench's where they mean
the same. Run on the GPU machine: python3 bench/cuda/gemm_reference.py
"""
import json
import statistics

import torch
import torch.nn.functional as F

SHAPES = [(4096, 4096, "o_proj"), (6144, 4096, "qkv_proj"), (28672, 4096, "gate_up_proj"),
          (4096, 14336, "down_proj"), (128256, 4096, "lm_head")]


def median_us(call, reps, batches=15):
    for i in range(reps):
        call(i)
    torch.cuda.synchronize()
    times = []
    for b in range(batches):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(reps):
            call(b * reps + i)
        end.record()
        end.synchronize()
        times.append(1000.0 * start.elapsed_time(end) / reps)
    return statistics.median(times)


def main():
    if not torch.cuda.is_available():
        raise SystemExit("gemm_reference: no CUDA device")
    dev = "cuda"
    src = torch.empty(1 << 29, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)  # 1 GB
    dst = torch.empty_like(src)
    copy_us = median_us(lambda i: dst.copy_(src), 5)
    copy_gbs = 2.0 * src.numel() * 2 / (copy_us * 1e3)
    print(json.dumps({"name": "torch_d2d_copy", "time_us": round(copy_us, 1), "gb_per_s": round(copy_gbs, 1)}))
    del src, dst

    for n, k, what in SHAPES:
        w_bytes = n * k * 2
        buffers = max(2, (256 << 20) // w_bytes + 1)
        ws = [torch.empty(n, k, dtype=torch.bfloat16, device=dev).uniform_(-0.05, 0.05) for _ in range(buffers)]
        out_dtype = torch.float32 if n == 128256 else torch.bfloat16
        for m in (1, 2, 4, 8):
            x = torch.empty(m, k, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
            reps = max(3, int(2e8 // w_bytes))
            if out_dtype == torch.float32:
                # torch has no bf16-in/f32-out linear: the usual path is linear then .float().
                call = lambda i: F.linear(x, ws[i % buffers]).float()
            else:
                call = lambda i: F.linear(x, ws[i % buffers])
            us = median_us(call, reps)
            bytes_ = w_bytes + 2 * m * k + (4 if out_dtype == torch.float32 else 2) * m * n
            print(json.dumps({"name": "torch_decode_linear", "what": what, "m": m, "n": n, "k": k,
                              "time_us": round(us, 2), "gb_per_s": round(bytes_ / (us * 1e3), 1),
                              "copy_gb_per_s": round(copy_gbs, 1),
                              "vs_copy": round(bytes_ / (us * 1e3) / copy_gbs, 3)}), flush=True)
        del ws

    def tflops(m, n, k):
        x = torch.empty(m, k, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
        w = torch.empty(n, k, dtype=torch.bfloat16, device=dev).uniform_(-0.05, 0.05)
        flops = 2.0 * m * n * k
        us = median_us(lambda i: F.linear(x, w), max(3, int(2e12 // flops)), 9)
        return us, flops / (us * 1e6)

    c_us, ceiling = tflops(8192, 8192, 8192)
    print(json.dumps({"name": "torch_8192_cubed", "time_us": round(c_us, 1), "tflops": round(ceiling, 1)}))
    for n, k, what in SHAPES:
        if n in (4096, 6144) and k == 4096:
            continue
        for m in (512, 4096, 8192):
            us, tf = tflops(m, n, k)
            print(json.dumps({"name": "torch_prefill_linear", "what": what, "m": m, "n": n, "k": k,
                              "time_us": round(us, 1), "tflops": round(tf, 1), "ceiling_tflops": round(ceiling, 1),
                              "ratio": round(tf / ceiling, 3)}), flush=True)


if __name__ == "__main__":
    main()
