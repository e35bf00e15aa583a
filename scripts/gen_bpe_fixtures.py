#!/usr/bin/env python3
"""Trains the small byte-level BPE tokenizer.json fixtures of tests/fixtures/tokenizer/bpe/.

One tokenizer per pre-tokenizer family ember supports, each shaped like the real
model's tokenizer.json (only the vocabulary is small):
  llama3.json      Split(Llama 3 regex, Isolated) + ByteLevel(use_regex=False), ignore_merges,
                   TemplateProcessing "<|begin_of_text|> $A", special tokens after the vocab.
  gpt2_digits.json SmolLM2 / GPT-2 style: Digits(individual) + ByteLevel(use_regex=True),
                   special tokens first (ids 0..), a non-special added token.
  qwen2.json       NFC + Split(Qwen2 regex, Isolated) + ByteLevel(use_regex=False).
  gpt2_prefix.json ByteLevel(add_prefix_space=True) alone, merges in the older "a b" string form
                   (the others use the [a, b] pair form current tokenizers write),
                   an lstrip/rstrip special token (RoBERTa's <mask> style).
The training text is generated (seeded), mixing English, code, digits, Latin accents,
Cyrillic, Greek, Arabic, CJK, Hangul and emoji so merges cover multi-byte UTF-8.

Run: .venv/bin/python scripts/gen_bpe_fixtures.py
"""
import json
import random
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tokenizer" / "bpe"
VOCAB_SIZE = 3000

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by "
         "word but not what all were we when your can said there use an each which she do how their if will up "
         "other about out many then them these so some her would make like him into time has look two more write "
         "go see number no way could people my than first water been call who oil its now find long down day did "
         "get come made may part over new sound take only little work know place year live me back give most very "
         "after thing our just name good sentence man think say great where help through much before line right "
         "too mean old any same tell boy follow came want show also around form three small set put end does "
         "another well large must big even such because turn here why ask went men read need land different home "
         "us move try kind hand picture again change off play spell air away animal house point page letter "
         "mother answer found study still learn should America world hello quick brown fox jumps lazy dog").split()
CODE = ["def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
        "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
        "for (let i = 0; i < 10; i++) { console.log(`${i}`); }\n",
        "SELECT id, name FROM users WHERE age >= 21 ORDER BY name;\n",
        "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}\n",
        "if x != y:\n    raise ValueError('bad value')\n", "https://example.org/a/b?c=1&d=2#e\n"]
SCRIPTS = [(0x00C0, 0x00FF), (0x0400, 0x044F), (0x0391, 0x03C9), (0x0627, 0x064A), (0x3041, 0x3096),
           (0x30A1, 0x30FA), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0x0905, 0x0939)]
EMOJI = [0x1F600, 0x1F603, 0x1F604, 0x1F44D, 0x1F525, 0x1F389, 0x2764, 0x1F1EB, 0x1F1F7, 0x1F468, 0x200D, 0x1F3FD]


def training_text(seed=1234, lines=6000):
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        kind = rng.random()
        if kind < 0.45:
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
            if rng.random() < 0.3:
                words[0] = words[0].capitalize()
            sep = rng.choice([" ", " ", " ", "  ", "\t", "\n"])
            out.append(sep.join(words) + rng.choice([".", ",", "!", "?", "", "'s", " n't", "\n"]))
        elif kind < 0.6:
            out.append(rng.choice(CODE))
        elif kind < 0.7:
            out.append(" ".join(str(rng.randint(0, 10 ** rng.randint(1, 8))) for _ in range(rng.randint(1, 6))))
        elif kind < 0.92:
            lo, hi = rng.choice(SCRIPTS)
            word = lambda: "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 5)))
            out.append(" ".join(word() for _ in range(rng.randint(1, 8))))
        else:
            out.append(" ".join("".join(chr(rng.choice(EMOJI)) for _ in range(rng.randint(1, 3))) for _ in range(4)))
    return out


def train(pre_tokenizer, normalizer=None, special_first=()):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(special_first), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer=trainer)
    return tok


def save(tok, name, edit=None):
    j = json.loads(tok.to_str())
    if edit:
        edit(j)
    text = json.dumps(j, ensure_ascii=False, separators=(",", ":"))
    Tokenizer.from_str(text)  # the edited file must still load in HF
    path = OUT / name
    path.write_text(text, encoding="utf-8")
    print(f"{path}: {len(text.encode())} bytes, vocab {len(j['model']['vocab'])}, merges {len(j['model']['merges'])}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    split_then_bytes = lambda pattern: pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])

    # Llama 3: specials live after the vocabulary (128000+ in the real model).
    tok = train(split_then_bytes(LLAMA3_PATTERN))
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A:0 <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])

    def llama_edit(j):
        j["model"]["ignore_merges"] = True
    save(tok, "llama3.json", llama_edit)

    # SmolLM2 / GPT-2: specials trained in first, Digits before ByteLevel.
    tok = train(pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
                special_first=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.add_tokens([AddedToken("<tool_call>", special=False)])  # normalized=True: matched after normalization
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    save(tok, "gpt2_digits.json")

    # RoBERTa-like variant of the same vocabulary: add_prefix_space, [a, b] merges, <mask> with lstrip, "a b" merges.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, rstrip=False, normalized=False)])

    def prefix_edit(j):
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    save(tok, "gpt2_prefix.json", prefix_edit)

    # Qwen2: NFC, single-digit numbers, specials after the vocabulary.
    tok = train(split_then_bytes(QWEN2_PATTERN), normalizer=normalizers.NFC())
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    save(tok, "qwen2.json")


if __name__ == "__main__":
    main()
