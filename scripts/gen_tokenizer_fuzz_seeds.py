"""Writes small tokenizer.json seeds for tests/fuzz/fuzz_tokenizer_json.cpp: the committed BPE fixtures cut down to
their first 300 tokens (and the merges among them), so every pre-tokenizer / normalizer / post-processor kind the
fixtures use is in the seed corpus while each seed stays a few KB."""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "tests/fixtures/tokenizer/bpe"
DST = ROOT / "tests/fuzz/corpus/tokenizer_json"
DST.mkdir(parents=True, exist_ok=True)
for name in ("llama3", "gpt2_digits", "qwen2", "gpt2_prefix"):
    j = json.loads((SRC / f"{name}.json").read_text())
    vocab = {t: i for t, i in j["model"]["vocab"].items() if i < 300}
    merges = []
    for m in j["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    j["model"]["vocab"] = vocab
    j["model"]["merges"] = merges
    kept = {t["id"] for t in j.get("added_tokens", [])}
    for t in j.get("added_tokens", []):
        t["id"] = 300 + sorted(kept).index(t["id"])
    ids = {t["content"]: t["id"] for t in j.get("added_tokens", [])}

    def remap(node):
        if isinstance(node, dict):
            for tok in (node.get("special_tokens") or {}).values():
                tok["ids"] = [ids.get(tok["id"], 300)]
            for v in node.values():
                remap(v)
        elif isinstance(node, list):
            for v in node:
                remap(v)

    remap(j.get("post_processor"))
    (DST / f"{name}.json").write_text(json.dumps(j, ensure_ascii=False, separators=(",", ":")))
    print(name, (DST / f"{name}.json").stat().st_size, "bytes")
