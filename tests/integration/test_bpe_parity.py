"""Byte-level BPE parity: ember_tokenize vs Hugging Face `tokenizers`.

For every fixture tokenizer.json (tests/fixtures/tokenizer/bpe/, made by
scripts/gen_bpe_fixtures.py) and for the real SmolLM2 GGUF vocabulary, every case
of the shared corpus and of the BPE extra corpus must give HF's ids, HF's decode,
and a streamed decode equal to the whole decode, with and without special tokens.
Inputs given as "hex" (possibly invalid UTF-8) are compared against HF on
bytes.decode("utf-8", errors="replace"), which is what ember does to them first.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("EMBER_BUILD_DIR", REPO / "build"))
TOOL = BUILD / "ember_tokenize"
DEFAULT_MODEL = Path(os.environ.get("EMBER_DEFAULT_MODEL",
                                    Path.home() / ".cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
FIXTURES = REPO / "tests/fixtures/tokenizer/bpe"
CORPORA = [REPO / "tests/fixtures/tokenizer/corpus.jsonl", FIXTURES / "extra_corpus.jsonl"]
JSON_FIXTURES = ["llama3.json", "gpt2_digits.json", "qwen2.json", "gpt2_prefix.json"]


def load_cases(path):
    cases = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            j = json.loads(line)
            cases.append(bytes.fromhex(j["hex"]).decode("utf-8", errors="replace") if "hex" in j else j["text"])
    return cases


def run_ember(tokenizer_path, corpus, add_special):
    assert TOOL.exists(), f"{TOOL} not built (set EMBER_BUILD_DIR; ninja ember_tokenize)"
    cmd = [str(TOOL), str(tokenizer_path), str(corpus)] + ([] if add_special else ["--no-special"])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed: {proc.stderr}"
    return [json.loads(line) for line in proc.stdout.split("\n") if line]  # not splitlines(): U+2028 is data


def check_parity(hf, tokenizer_path, add_special):
    failures, total = [], 0
    for corpus in CORPORA:
        cases = load_cases(corpus)
        outputs = run_ember(tokenizer_path, corpus, add_special)
        assert len(outputs) == len(cases), f"{corpus}: {len(outputs)} outputs for {len(cases)} cases"
        for text, out in zip(cases, outputs):
            total += 1
            ids = hf.encode(text, add_special_tokens=add_special).ids
            decoded = hf.decode(ids, skip_special_tokens=False)
            if out["ids"] != ids:
                failures.append(f"ids differ for {text!r}:\n  ember {out['ids']}\n  hf    {ids}")
            elif out["decoded"] != decoded:
                failures.append(f"decode differs for {text!r}: ember {out['decoded']!r} hf {decoded!r}")
            elif out["streamed"] != out["decoded"]:
                failures.append(f"streamed differs for {text!r}: {out['streamed']!r} vs {out['decoded']!r}")
    assert not failures, f"{len(failures)}/{total} cases differ:\n" + "\n".join(failures[:10])


@pytest.mark.parametrize("add_special", [True, False], ids=["special", "no-special"])
@pytest.mark.parametrize("name", JSON_FIXTURES)
def test_tokenizer_json_parity(name, add_special):
    path = FIXTURES / name
    assert path.exists(), f"{path} missing: run scripts/gen_bpe_fixtures.py"
    check_parity(Tokenizer.from_file(str(path)), path, add_special)


def hf_tokenizer_from_gguf(path):
    """The HF reference for a "smollm" GGUF vocabulary, built from the GGUF itself.

    transformers' GGUF loader needs torch, so the tokenizer is assembled directly with
    the pre-tokenizer, decoder and special tokens of SmolLM2's published tokenizer.json:
    normalizer null, pre_tokenizer Sequence[Digits(individual_digits=True),
    ByteLevel(add_prefix_space=False, use_regex=True)], decoder ByteLevel, and the 17
    control tokens (<|endoftext|>, <|im_start|>, ...) as special added tokens.
    """
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def strings(key):
        f = reader.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    def scalar(key):
        f = reader.fields[key]
        return f.parts[f.data[0]]

    assert bytes(scalar("tokenizer.ggml.model")).decode() == "gpt2"
    assert bytes(scalar("tokenizer.ggml.pre")).decode() == "smollm"
    assert not bool(scalar("tokenizer.ggml.add_bos_token")[0])  # so add_special adds nothing
    tokens = strings("tokenizer.ggml.tokens")
    types_field = reader.fields["tokenizer.ggml.token_type"]
    types = [int(types_field.parts[i][0]) for i in types_field.data]
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    return tok


@pytest.mark.parametrize("add_special", [True, False], ids=["special", "no-special"])
def test_smollm2_gguf_parity(add_special):
    assert DEFAULT_MODEL.exists(), f"default model {DEFAULT_MODEL} missing (set EMBER_DEFAULT_MODEL)"
    check_parity(hf_tokenizer_from_gguf(DEFAULT_MODEL), DEFAULT_MODEL, add_special)


def write_tiny_gguf(path, pre, tokens=("a", "b", "ab", "<|eos|>"), merges=("a b",)):
    """A GGUF holding only a 4-token "gpt2" vocabulary (no tensors)."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(list(tokens))
    w.add_token_types([1, 1, 1, 3][:len(tokens)])
    w.add_token_merges(list(merges))
    w.add_eos_token_id(3)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_tiny_vocab_and_errors(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "ab<|eos|>ba"}) + "\n")
    good = tmp_path / "good.gguf"
    write_tiny_gguf(good, "gpt-2")
    assert run_ember(good, corpus, True) == [{"ids": [2, 3, 1, 0], "decoded": "ab<|eos|>ba", "streamed": "ab<|eos|>ba"}]
    for name, kwargs, message in [
        ("unknown_pre.gguf", {"pre": "no-such-pre"}, 'tokenizer.ggml.pre "no-such-pre" is not supported'),
        ("bad_merge.gguf", {"pre": "smollm", "merges": ("a c",)}, "not in the vocab"),
        ("bad_merge_form.gguf", {"pre": "smollm", "merges": ("ab",)}, 'is not "a b"'),
    ]:
        path = tmp_path / name
        write_tiny_gguf(path, **kwargs)
        proc = subprocess.run([str(TOOL), str(path), str(corpus)], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and message in proc.stderr, (name, proc.returncode, proc.stderr)
