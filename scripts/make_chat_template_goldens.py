#!/usr/bin/env python3
"""Writes tests/fixtures/chat_templates/goldens.json: every committed template
(tests/fixtures/chat_templates/*.jinja) rendered with python jinja2, set up as
transformers' apply_chat_template does (scripts/chat_template_reference.py), on
every conversation of tests/fixtures/chat_templates/conversations.json, with the
model's own BOS/EOS; and the single-feature templates of features.json (key "__features__"). A case that fails in jinja2 records its error message and type.

Usage: .venv/bin/python scripts/make_chat_template_goldens.py
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chat_template_reference import TEMPLATE_TOKENS, render  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests/fixtures/chat_templates"
FEATURE_NOW = 1726396200  # 2024-09-15 10:30 UTC, what strftime_now formats


def main():
    cases = json.loads((FIXTURES / "conversations.json").read_text(encoding="utf-8"))
    goldens = {}
    for name, (bos, eos) in sorted(TEMPLATE_TOKENS.items()):
        source = (FIXTURES / f"{name}.jinja").read_text(encoding="utf-8")
        goldens[name] = {}
        for case in cases:
            full = dict(case, bos_token=bos, eos_token=eos)
            goldens[name][case["name"]] = render(source, full)
    # Small single-feature templates (tests/fixtures/chat_templates/features.json), rendered with no messages.
    features = json.loads((FIXTURES / "features.json").read_text(encoding="utf-8"))
    goldens["__features__"] = {f["name"]: render(f["template"], {"messages": [], "now": FEATURE_NOW})
                               for f in features}
    (FIXTURES / "goldens.json").write_text(json.dumps(goldens, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    n_ok = sum(r["ok"] for t in goldens.values() for r in t.values())
    n_all = sum(len(t) for t in goldens.values())
    print(f"wrote {n_all} goldens ({n_ok} renderings, {n_all - n_ok} expected errors)")


if __name__ == "__main__":
    main()
