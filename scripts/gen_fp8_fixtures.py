#!/usr/bin/env python3
"""Writes tests/fixtures/hf_tiny_fp8/: the hf_tiny/gqa model as an FP8 checkpoint, in the layout vLLM reads.

Every layer's q/k/v/o/gate/up/down weight becomes F8_E4M3 codes plus a float32 `weight_scale`:
layer 0 per output channel (shape [rows, 1], compressed-tensors' "channel" strategy), layer 1 per tensor
(shape [], the "fp8" format's), with a static `input_scale` (read and not used by ember). The embedding, norms
and LM head stay as they are. FP8 KV-cache scales (used with --kv-cache-dtype fp8) in both spellings vLLM reads:
layer 0 `self_attn.k_scale` / `v_scale` (0.02 / 0.03), layer 1 compressed-tensors' `k_proj.output_scale` /
`v_proj.output_scale` (0.04 / 0.05). Alongside, `dequantized.safetensors` holds every quantized weight decoded to
float32 (code value * scale, rounded once) by this script, from the format's definition:
E4M3 = 1 sign, 4 exponent bits (bias 7), 3 mantissa bits, no infinities, 0x7F NaN, largest finite 448.
Quantization: scale = amax / 448 (float32), code = nearest E4M3 of w / scale, ties to even.

Run: .venv/bin/python scripts/gen_fp8_fixtures.py
"""
import json
import os
import struct

import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "tests", "fixtures", "hf_tiny", "gqa")
OUT = os.path.join(ROOT, "tests", "fixtures", "hf_tiny_fp8")

# The 127 non-negative finite E4M3 values, ascending with their codes.
E4M3 = np.array([(m / 8.0) * 2.0 ** -6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
                 for e in range(16) for m in range(8)][:127], dtype=np.float64)


def encode(v: np.ndarray) -> np.ndarray:
    """Nearest E4M3 codes of float32 values, ties to the even code, saturating at 448."""
    a = np.abs(v.astype(np.float64))
    lo = np.clip(np.searchsorted(E4M3, a, side="right") - 1, 0, 126)
    hi = np.minimum(lo + 1, 126)
    d_lo, d_hi = a - E4M3[lo], E4M3[hi] - a
    up = (d_hi < d_lo) | ((d_hi == d_lo) & (lo % 2 == 1))
    code = np.where(up & (hi != lo), hi, lo)
    code = np.where(a >= 448.0, 126, code)
    return (code | np.where(np.signbit(v), 0x80, 0)).astype(np.uint8)


def decode(codes: np.ndarray) -> np.ndarray:
    mag = E4M3[(codes & 0x7F).astype(np.int64)]
    return np.where(codes & 0x80, -mag, mag).astype(np.float32)


def read_safetensors(path):
    """name -> float32 array (F32 and BF16 tensors), read by hand (numpy has no bfloat16)."""
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = np.frombuffer(data[b:e], dtype={"F32": np.float32, "BF16": np.uint16}[t["dtype"]])
        if t["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[name] = raw.reshape(t["shape"]).astype(np.float32)
    return out


def write_raw_safetensors(path, arrays):
    """uint8 arrays as F8_E4M3, the rest as F32 (safetensors.numpy would write uint8 as U8): the header by hand."""
    tensors, offset, chunks = {}, 0, []
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        dtype = "F8_E4M3" if a.dtype == np.uint8 else "F32"
        payload = a.tobytes()
        tensors[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(payload)]}
        chunks.append(payload)
        offset += len(payload)
    header = json.dumps(tensors, separators=(",", ":")).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"".join(chunks))


def main():
    src = read_safetensors(os.path.join(SRC, "model.safetensors"))
    out, deq = {}, {}
    for name, w in sorted(src.items()):
        proj = name.split(".")[-2] if name.endswith(".weight") else ""
        if proj not in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            out[name] = w
            continue
        layer = int(name.split(".")[2])
        base = name[: -len(".weight")]
        if layer == 0:  # per output channel
            scale = (np.abs(w).max(axis=1, keepdims=True) / np.float32(448.0)).astype(np.float32)
            scale[scale == 0] = 1.0
            codes = encode(w / scale)
            out[base + ".weight_scale"] = scale
            deq[name] = (decode(codes) * scale).astype(np.float32)
        else:  # per tensor, with a static activation scale
            scale = np.float32(np.abs(w).max() / np.float32(448.0))
            codes = encode(w / scale)
            out[base + ".weight_scale"] = np.array(scale, dtype=np.float32)
            out[base + ".input_scale"] = np.array(0.05, dtype=np.float32)
            deq[name] = (decode(codes) * scale).astype(np.float32)
        out[name] = codes
    out["model.layers.0.self_attn.k_scale"] = np.array(0.02, dtype=np.float32)
    out["model.layers.0.self_attn.v_scale"] = np.array(0.03, dtype=np.float32)
    out["model.layers.1.self_attn.k_proj.output_scale"] = np.array([0.04], dtype=np.float32)
    out["model.layers.1.self_attn.v_proj.output_scale"] = np.array([0.05], dtype=np.float32)
    os.makedirs(OUT, exist_ok=True)
    write_raw_safetensors(os.path.join(OUT, "model.safetensors"), out)
    save_file(deq, os.path.join(OUT, "dequantized.safetensors"))
    config = json.load(open(os.path.join(SRC, "config.json")))
    config["quantization_config"] = {"quant_method": "fp8", "activation_scheme": "dynamic"}
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {OUT}: {len(deq)} FP8 matrices")
    write_fuzz_seed()


def write_fuzz_seed():
    """tests/fuzz/corpus/fp8_checkpoint/: model.safetensors files for fuzz_fp8_checkpoint's fixed tiny config
    (hidden 16, 1 layer, 2 heads, 1 KV head, MLP 32, vocab 32, tied): per-channel and per-tensor scales."""
    rng = np.random.default_rng(7)
    corpus = os.path.join(ROOT, "tests", "fuzz", "corpus", "fp8_checkpoint")
    os.makedirs(corpus, exist_ok=True)
    shapes = {"q_proj": (16, 16), "k_proj": (8, 16), "v_proj": (8, 16), "o_proj": (16, 16),
              "gate_proj": (32, 16), "up_proj": (32, 16), "down_proj": (16, 32)}
    for seed_name, per_channel in (("per_channel", True), ("per_tensor", False)):
        tensors = {"model.embed_tokens.weight": rng.standard_normal((32, 16)).astype(np.float32),
                   "model.norm.weight": np.ones(16, np.float32),
                   "model.layers.0.input_layernorm.weight": np.ones(16, np.float32),
                   "model.layers.0.post_attention_layernorm.weight": np.ones(16, np.float32)}
        for proj, shape in shapes.items():
            base = f"model.layers.0.{'self_attn' if proj.endswith(('q_proj', 'k_proj', 'v_proj', 'o_proj')) else 'mlp'}.{proj}"
            w = (0.1 * rng.standard_normal(shape)).astype(np.float32)
            if per_channel:
                scale = (np.abs(w).max(axis=1, keepdims=True) / np.float32(448.0)).astype(np.float32)
            else:
                scale = np.array(np.abs(w).max() / np.float32(448.0), dtype=np.float32)
            tensors[base + ".weight"] = encode(w / scale)
            tensors[base + ".weight_scale"] = scale
        if not per_channel:
            tensors["model.layers.0.self_attn.k_scale"] = np.array(0.5, dtype=np.float32)
            tensors["model.layers.0.self_attn.v_scale"] = np.array(0.25, dtype=np.float32)
        write_raw_safetensors(os.path.join(corpus, seed_name), tensors)
    print(f"wrote {corpus}")


if __name__ == "__main__":
    main()
