#!/usr/bin/env python3
"""Generates the small SentencePiece fixtures under tests/fixtures/tokenizer/spm/.

  .venv/bin/python scripts/gen_spm_fixtures.py

Outputs (all committed, ~100 KB together):
  tokenizer.model      Llama-style SentencePiece BPE (byte_fallback, split_digits,
                       identity normalization, dummy prefix, no whitespace removal),
                       trained with `spm_train` (Debian package sentencepiece, the
                       same library ember links) on generated multilingual text.
  vocab.gguf           the same vocabulary as a GGUF "llama" tokenizer (tokens,
                       scores, token_type, bos/eos/unk ids, add_bos/add_eos,
                       add_space_prefix) and one tiny tensor, for ember's own SPM
                       implementation (models/tokenizer/tokenizer_spm_gguf.cpp).
  hf_llama/            a Llama-2-like Hugging Face directory (tokenizer.model +
                       tokenizer_config.json) for load_tokenizer_from_dir.
  hf_llama_eos/        the same with add_bos_token=false, add_eos_token=true.
  hf_reference.json    the Hugging Face fast tokenizer that transformers builds
                       from hf_llama/ (LlamaTokenizer, legacy=false), saved so the
                       parity test needs only `tokenizers` (building it needs
                       transformers + protobuf, which only this script uses).

Training data is generated from a fixed seed, so reruns give the same text; the
trainer is run single-threaded so the model is reproducible.
"""

import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import sentencepiece as spm

import gguf

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "tokenizer" / "spm"
VOCAB_SIZE = 1200
USER_DEFINED = ["<|im_start|>", "<|im_end|>"]

WORDS = {
    "en": "the quick brown fox jumps over lazy dog hello world model token server stream request "
          "response number value string function return print while for if else class struct "
          "memory cache batch attention layer weight tensor kernel thread block warp".split(),
    "fr": "le la les un une bonjour monde café naïve résumé façade être avoir très élève".split(),
    "de": "der die das und ist nicht Straße größer schön über Mädchen Ångström".split(),
    "ru": "привет мир это русский текст модель данные сервер время".split(),
    "el": "γειά σου κόσμε καλημέρα ευχαριστώ".split(),
    "ja": "日本 東京 テキスト です の は 首都 言語 モデル".split(),
    "zh": "中文 文本 测试 你好 世界 模型 数据".split(),
    "ko": "한국어 텍스트 테스트 입니다".split(),
    "ar": "مرحبا بالعالم هذا نص عربي".split(),
    "code": ["def", "fib(n):", "return", "{", "}", "i++", "==", "!=", "->", "::", "0x1F", "#include",
             "<stdio.h>", "printf(\"hi\\n\");", "SELECT", "*", "FROM", "WHERE", "`${i}`"],
}
# Weighted so Latin text dominates and most CJK/Arabic characters fall below
# the character coverage and are encoded through byte fallback.
LANG_WEIGHTS = {"en": 40, "fr": 8, "de": 8, "ru": 6, "el": 2, "ja": 2, "zh": 2, "ko": 1, "ar": 1, "code": 10}


def training_lines(n: int) -> list[str]:
    rng = random.Random(1234)
    langs = list(LANG_WEIGHTS)
    weights = [LANG_WEIGHTS[k] for k in langs]
    lines = []
    for _ in range(n):
        lang = rng.choices(langs, weights)[0]
        words = [rng.choice(WORDS[lang]) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), str(rng.randint(0, 99999)))
        sep = rng.choice([" ", " ", " ", "  ", "\t"])
        line = sep.join(words)
        if rng.random() < 0.5:
            line = line[0].upper() + line[1:] + rng.choice([".", "!", "?", ",", ";", ":"])
        if rng.random() < 0.1:
            line = "    " + line  # indentation: whitespace-only pieces
        lines.append(line)
    return lines


def train(workdir: Path) -> Path:
    data = workdir / "train.txt"
    data.write_text("\n".join(training_lines(6000)) + "\n", encoding="utf-8")
    prefix = workdir / "spm"
    # Relative paths (run in `workdir`): the model proto records them, so the
    # committed file does not depend on the temporary directory's name.
    cmd = [
        "spm_train", "--input=train.txt", "--model_prefix=spm", "--model_type=bpe",
        f"--vocab_size={VOCAB_SIZE}", "--byte_fallback=true", "--split_digits=true",
        "--allow_whitespace_only_pieces=true", "--normalization_rule_name=identity",
        "--add_dummy_prefix=true", "--remove_extra_whitespaces=false",
        f"--user_defined_symbols={','.join(USER_DEFINED)}", "--character_coverage=0.995",
        "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=-1", "--num_threads=1",
        "--max_sentence_length=8192", "--minloglevel=2",
    ]
    subprocess.run(cmd, check=True, cwd=workdir)
    return prefix.with_suffix(".model")


def piece_type(sp: spm.SentencePieceProcessor, i: int) -> int:
    # gguf.TokenType numbering, which is sentencepiece's piece type numbering
    # (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    if sp.is_unknown(i):
        return 2
    if sp.is_control(i):
        return 3
    if sp.is_unused(i):
        return 5
    if sp.is_byte(i):
        return 6
    if sp.id_to_piece(i) in USER_DEFINED:
        return 4
    return 1


def write_gguf(model_path: Path, out: Path) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    n = sp.get_piece_size()
    tokens = [sp.id_to_piece(i) for i in range(n)]
    scores = [sp.get_score(i) for i in range(n)]
    types = [piece_type(sp, i) for i in range(n)]
    w = gguf.GGUFWriter(str(out), arch="llama")
    w.add_name("ember-spm-fixture")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)  # trained with --add_dummy_prefix=true
    w.add_tensor("tiny", np.zeros((4,), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_hf_dir(model_path: Path, out: Path, add_bos: bool, add_eos: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_path, out / "tokenizer.model")
    added = {
        "0": {"content": "<unk>", "special": True},
        "1": {"content": "<s>", "special": True},
        "2": {"content": "</s>", "special": True},
    }
    for i, s in enumerate(USER_DEFINED):
        added[str(3 + i)] = {"content": s, "special": True}
    for v in added.values():
        v.update({"lstrip": False, "rstrip": False, "normalized": False, "single_word": False})
    config = {
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "added_tokens_decoder": added,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "legacy": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "tokenizer_class": "LlamaTokenizer",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = train(Path(tmp))
        shutil.copy(model, OUT / "tokenizer.model")
    model = OUT / "tokenizer.model"
    write_gguf(model, OUT / "vocab.gguf")
    write_hf_dir(model, OUT / "hf_llama", add_bos=True, add_eos=False)
    write_hf_dir(model, OUT / "hf_llama_eos", add_bos=False, add_eos=True)
    from transformers import AutoTokenizer  # late: slow to import, prints a torch warning

    hf = AutoTokenizer.from_pretrained(str(OUT / "hf_llama"))
    hf.backend_tokenizer.save(str(OUT / "hf_reference.json"))
    sp = spm.SentencePieceProcessor(model_file=str(model))
    print(f"vocab {sp.vocab_size()}:", sp.encode("Hello world 日本 😀", out_type=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
