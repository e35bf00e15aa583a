#!/usr/bin/env python3
"""Writes the GGUF test fixtures in tests/fixtures/gguf/ with gguf-py (llama.cpp's reference writer).

  dequant.gguf      one tensor per ggml type ember supports (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K),
                    metadata of every value type (nested arrays included), general.alignment = 64.
  golden/<t>.f32    gguf.quants.dequantize() of each tensor, raw little-endian float32 (the reference values).
  tiny_llama.gguf   llama-architecture metadata and tensors for model_config_from_gguf (untied, q/k/v biases,
                    linear rope scaling).
  tests/fuzz/corpus/gguf/  a few KB of seeds for tests/fuzz/fuzz_gguf.cpp (v3 and v2, every type, llama keys).

gguf-py quantizes F16/BF16/Q8_0/Q4_0/Q4_1 itself; it cannot quantize K-quants, so those blocks are random
bytes with sane fp16 scales patched in. Deterministic (fixed seed): rerunning reproduces the same bytes.
Run from the repo root with the project venv:  .venv/bin/python scripts/gen_gguf_fixtures.py
"""

import pathlib

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import quants

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "gguf"
QK_K = 256


def fp16_scales(rng, n, lo=1e-3, hi=0.1):
    """n random positive fp16 scales, as raw bytes (n, 2)."""
    return rng.uniform(lo, hi, size=n).astype(np.float16).view(np.uint8).reshape(n, 2)


def random_k_blocks(rng, qtype, rows, cols):
    """Random K-quant blocks (rows, cols / 256 * type_size) with finite fp16 scales."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = rows * cols // block_size
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if qtype == Q.Q4_K:  # d, dmin at the start
        blocks[:, 0:2] = fp16_scales(rng, n_blocks)
        blocks[:, 2:4] = fp16_scales(rng, n_blocks)
    elif qtype == Q.Q6_K:  # d at the end
        blocks[:, type_size - 2 : type_size] = fp16_scales(rng, n_blocks)
    return blocks.reshape(rows, -1)


def special_f16():
    """F16 edge values: zeros, subnormals, max, infinities, a quiet NaN."""
    bits = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00,
            0x3555, 0x0200, 0x8200]
    return np.array(bits, dtype=np.uint16).view(np.float16)


def dequant_tensors(rng):
    """(name, data to write, raw_dtype, golden float32) for every supported type."""
    out = []
    f32 = rng.standard_normal((2, 3, 4, 8)).astype(np.float32)  # 4-D: exercises GGML_MAX_DIMS
    out.append(("f32", f32, None, f32))
    f16 = np.concatenate([special_f16(), rng.standard_normal(48).astype(np.float16)]).reshape(2, 32)
    out.append(("f16", f16, None, quants.dequantize(f16, Q.F16)))
    bf16 = quants.quantize(rng.standard_normal((3, 64)).astype(np.float32) * 7, Q.BF16)
    out.append(("bf16", bf16, Q.BF16, quants.dequantize(bf16, Q.BF16)))
    for name, qtype in (("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1)):
        data = quants.quantize(rng.standard_normal((3, 128)).astype(np.float32), qtype)
        out.append((name, data, qtype, quants.dequantize(data, qtype)))
    for name, qtype in (("q4_k", Q.Q4_K), ("q6_k", Q.Q6_K)):
        data = random_k_blocks(rng, qtype, 2, 512)
        out.append((name, data, qtype, quants.dequantize(data, qtype)))
    return out


def add_every_metadata_type(w):
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", -2.5e300)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo, GGUF")
    w.add_key_value("test.arr_i32", [1, -2, 3], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.INT32)
    w.add_key_value("test.arr_u8", [0, 255], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT8)
    w.add_array("test.arr_f32", [0.5, -1.25])
    w.add_array("test.arr_bool", [True, False, True])
    w.add_array("test.arr_str", ["a", "", "ccc"])
    w.add_key_value("test.arr_nested", [[1, 2], [3]], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.ARRAY)


def write_dequant_fixture(rng):
    golden_dir = OUT / "golden"
    golden_dir.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(OUT / "dequant.gguf"), arch="test")
    w.add_custom_alignment(64)
    add_every_metadata_type(w)
    for name, data, raw_dtype, golden in dequant_tensors(rng):
        w.add_tensor(name, data, raw_dtype=raw_dtype)
        np.ascontiguousarray(golden, dtype=np.float32).tofile(golden_dir / f"{name}.f32")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tiny_llama(rng):
    """A 2-layer llama with every shape key ember reads, q/k/v biases and a separate output matrix."""
    hidden, heads, kv_heads, ffn, vocab, layers = 64, 4, 2, 128, 32, 2
    head_dim = hidden // heads
    w = gguf.GGUFWriter(str(OUT / "tiny_llama.gguf"), arch="llama")
    w.add_block_count(layers)
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(head_dim)
    w.add_key_length(head_dim)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(2.0)
    w.add_rope_scaling_orig_ctx_len(128)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>" for i in range(vocab)])  # no <arch>.vocab_size: the list length counts
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_eot_token_id(3)

    def t(name, *shape):  # numpy shape (outer..inner); ggml stores it reversed
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    t("token_embd.weight", vocab, hidden)
    for i in range(layers):
        t(f"blk.{i}.attn_norm.weight", hidden)
        t(f"blk.{i}.attn_q.weight", heads * head_dim, hidden)
        t(f"blk.{i}.attn_q.bias", heads * head_dim)
        t(f"blk.{i}.attn_k.weight", kv_heads * head_dim, hidden)
        t(f"blk.{i}.attn_k.bias", kv_heads * head_dim)
        t(f"blk.{i}.attn_v.weight", kv_heads * head_dim, hidden)
        t(f"blk.{i}.attn_v.bias", kv_heads * head_dim)
        t(f"blk.{i}.attn_output.weight", hidden, heads * head_dim)
        t(f"blk.{i}.ffn_norm.weight", hidden)
        t(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        t(f"blk.{i}.ffn_up.weight", ffn, hidden)
        t(f"blk.{i}.ffn_down.weight", hidden, ffn)
    t("output_norm.weight", hidden)
    t("output.weight", vocab, hidden)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_fuzz_seeds(rng):
    """Tiny seeds: the fuzzer mutates from valid structure, so every branch is a few bit flips away."""
    seeds = OUT.parents[1] / "fuzz" / "corpus" / "gguf"
    seeds.mkdir(parents=True, exist_ok=True)
    (seeds / "every_type.gguf").write_bytes((OUT / "dequant.gguf").read_bytes())
    w = gguf.GGUFWriter(str(seeds / "llama_v3.gguf"), arch="llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(8)
    w.add_key_length(8)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(4.0)
    w.add_vocab_size(2)
    w.add_token_list(["a", "b"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_tensor("token_embd.weight", quants.quantize(rng.standard_normal((2, 32)).astype(np.float32), Q.Q8_0),
                 raw_dtype=Q.Q8_0)
    w.add_tensor("blk.0.attn_q.bias", rng.standard_normal(8).astype(np.float32))
    w.add_tensor("blk.0.ffn_down.weight", random_k_blocks(rng, Q.Q6_K, 1, 256), raw_dtype=Q.Q6_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    v2 = bytearray((seeds / "llama_v3.gguf").read_bytes())
    v2[4] = 2  # v2 and v3 share the layout
    (seeds / "llama_v2.gguf").write_bytes(bytes(v2))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240601)
    write_dequant_fixture(rng)
    write_tiny_llama(rng)
    write_fuzz_seeds(rng)
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(OUT)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
