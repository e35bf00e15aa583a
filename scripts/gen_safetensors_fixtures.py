#!/usr/bin/env python3
"""Writes the safetensors fixtures the unit tests load (tests/fixtures/safetensors/).

Two tiny Hugging Face model directories, written with the `safetensors` package
(the reference implementation), plus the values every tensor must decode to:

  single/   config.json, generation_config.json, tokenizer_config.json, model.safetensors
  sharded/  config.json, model.safetensors.index.json, model-0000{1,2}-of-00002.safetensors
  reference.json  per tensor: dtype, shape and the float32 bit pattern of every
                  element as numpy decodes it (bits, so inf/nan/-0 compare exactly)

Run: .venv/bin/python scripts/gen_safetensors_fixtures.py [--out DIR] [--seed N]
"""
import argparse
import json
import os

import numpy as np
from safetensors import serialize_file

try:
    from safetensors import TensorSpec
except ImportError:  # older packages: serialize_file takes plain dicts
    TensorSpec = None

# A tiny llama-shaped config: the directory loader validates it.
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8,
    "intermediate_size": 12,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vocab_size": 16,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (as torch does)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def spec(dtype_name: str, arr: np.ndarray):
    arr = np.ascontiguousarray(arr)
    if TensorSpec is not None:
        return TensorSpec(dtype=dtype_name, shape=arr.shape, data_ptr=arr.ctypes.data, data_len=arr.nbytes), arr
    return {"dtype": dtype_name, "shape": arr.shape, "data": arr.tobytes()}, arr


def make_tensors(rng: np.random.Generator):
    """name -> (safetensors dtype, numpy payload, float32 decoding or None)."""
    t = {}
    f32 = rng.standard_normal((16, 8)).astype(np.float32)
    t["model.embed_tokens.weight"] = ("float32", f32, f32)
    t["model.norm.weight"] = ("float32", (1 + 0.1 * rng.standard_normal(8)).astype(np.float32), None)
    h = rng.standard_normal((3, 5)).astype(np.float16)
    t["model.layers.0.input_layernorm.weight"] = ("float16", h, None)
    b = bf16_bits(rng.standard_normal((2, 3, 4)).astype(np.float32))
    t["model.layers.0.self_attn.q_proj.weight"] = ("bfloat16", b, None)
    # Edge values: infinities, nan, signed zero, subnormals, the extremes.
    special_f16 = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, -65504.0, 6.1e-5,
                            5.96e-8, -5.96e-8, 3.0e-6, 1.0, -2.5, 0.333], dtype=np.float16)
    special_f16 = np.concatenate([special_f16, np.array([0x7E01, 0xFC01, 0x0001, 0x03FF], dtype=np.uint16).view(np.float16)])
    t["special.f16"] = ("float16", special_f16, None)
    special_bf = np.array([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x7F7F, 0x0001, 0x807F, 0x3F80, 0xC020],
                          dtype=np.uint16)
    t["special.bf16"] = ("bfloat16", special_bf, None)
    t["extra.positions"] = ("int64", np.arange(4, dtype=np.int64), None)  # parsed, not convertible
    t["extra.empty"] = ("float32", np.zeros((0, 8), dtype=np.float32), None)
    out = {}
    for name, (dt, arr, _) in t.items():
        if dt == "bfloat16":
            ref = (arr.astype(np.uint32) << 16).view(np.float32)
        elif dt == "int64":
            ref = None
        else:
            ref = arr.astype(np.float32)
        out[name] = (dt, arr, ref)
    return out


ST_NAME = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64"}


def write_file(path, tensors, metadata):
    keep = []
    specs = {}
    for name, (dt, arr, _) in tensors.items():
        s, a = spec(dt, arr)
        keep.append(a)
        specs[name] = s
    serialize_file(specs, path, metadata=metadata)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "safetensors"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    tensors = make_tensors(rng)

    single = os.path.join(args.out, "single")
    os.makedirs(single, exist_ok=True)
    write_json(os.path.join(single, "config.json"), CONFIG)
    write_json(os.path.join(single, "generation_config.json"), {"bos_token_id": 1, "eos_token_id": [2, 3]})
    write_json(os.path.join(single, "tokenizer_config.json"), {"bos_token": "<s>", "eos_token": "</s>"})
    write_file(os.path.join(single, "model.safetensors"), tensors, {"format": "pt", "source": "ember fixture"})

    sharded = os.path.join(args.out, "sharded")
    os.makedirs(sharded, exist_ok=True)
    write_json(os.path.join(sharded, "config.json"), CONFIG)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for file, part in shards.items():
        write_file(os.path.join(sharded, file), {n: tensors[n] for n in part}, {"format": "pt"})
        weight_map.update({n: file for n in part})
    total = int(sum(tensors[n][1].nbytes for n in names))
    write_json(os.path.join(sharded, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map})

    ref = {}
    for name, (dt, arr, r) in tensors.items():
        entry = {"dtype": ST_NAME[dt], "shape": list(arr.shape)}
        if r is not None:
            entry["f32_bits"] = [int(x) for x in np.ascontiguousarray(r, dtype=np.float32).view(np.uint32).ravel()]
        ref[name] = entry
    write_json(os.path.join(args.out, "reference.json"), ref)
    print(f"wrote {single}, {sharded} and reference.json ({len(tensors)} tensors)")


if __name__ == "__main__":
    main()
