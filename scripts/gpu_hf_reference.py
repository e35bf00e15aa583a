#!/usr/bin/env python3
"""Makes the Hugging Face reference for tests/gpu/test_cuda_runner.cpp on the GPU machine.

A small random LlamaForCausalLM (GQA, head_dim 128, llama3 rope scaling) in bf16 on the GPU:
saved with save_pretrained (safetensors), its greedy continuation of a random prompt (ids.txt:
the prompt length, then every id) and its float32 logits at every position of prompt +
continuation from one forward pass (logits.f32, row-major [positions, vocab]).

usage: gpu_hf_reference.py OUT_DIR
"""
import os
import pathlib
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 256}
    common = dict(vocab_size=2048, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=128, max_position_embeddings=4096,
                  rms_norm_eps=1e-5, tie_word_embeddings=False)
    # transformers 5 spells rope settings rope_parameters (theta inside); 4.x rope_scaling + rope_theta.
    try:
        config = LlamaConfig(**common, rope_parameters={**rope, "rope_theta": 500000.0})
        assert config.rope_parameters["rope_type"] == "llama3"
    except (TypeError, AttributeError, AssertionError, KeyError):
        config = LlamaConfig(**common, rope_theta=500000.0, rope_scaling=rope)
    model = LlamaForCausalLM(config)
    # Non-trivial norms; matrices keep HF's initializer (std 0.02) except the LM head,
    # scaled so the logits have clear winners (greedy comparisons mean something only
    # away from ties) without making the layers chaotic (bf16 noise would then grow
    # through them and no two implementations could agree).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name == "lm_head.weight":
                p.normal_(0.0, float(os.environ.get("HEAD_STD", "0.1")))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(dtype=torch.bfloat16, device=device).eval()
    model.save_pretrained(out, safe_serialization=True)

    prompt = torch.randint(0, config.vocab_size, (1, 300), generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        gen = model.generate(prompt, max_new_tokens=64, do_sample=False, min_new_tokens=64,
                             pad_token_id=0, eos_token_id=None)
        logits = model(gen).logits[0].float().cpu()
        # The same (bf16-rounded) weights computed in float32: how far bf16 itself is.
        logits32 = model.float()(gen).logits[0].cpu()
    rel = ((logits - logits32).norm() / logits32.norm()).item()
    print(f"HF bf16 vs HF float32 on the same weights: relative error {rel:.2e}")
    ids = gen[0].tolist()
    (out / "ids.txt").write_text(f"{prompt.shape[1]}\n" + " ".join(map(str, ids)) + "\n")
    logits.numpy().astype("float32").tofile(out / "logits.f32")
    print(f"HF reference: {len(ids)} ids ({prompt.shape[1]} prompt), logits {tuple(logits.shape)} -> {out}")


if __name__ == "__main__":
    main()
