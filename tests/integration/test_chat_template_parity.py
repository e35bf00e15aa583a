"""Chat-template parity: ember_chat_template vs python jinja2 set up as transformers'
apply_chat_template (scripts/chat_template_reference.py), byte for byte.

For every committed template (tests/fixtures/chat_templates/*.jinja): the committed
conversations, and 200 seeded random conversations (roles that alternate or not,
optional system prompt, text with whitespace, quotes, template syntax and non-ASCII,
sometimes list-of-parts content, tools and tool calls, add_generation_prompt on/off).
A case that fails in jinja2 must fail in ember; raise_exception keeps its message.
"""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("EMBER_BUILD_DIR", REPO / "build"))
TOOL = BUILD / "ember_chat_template"
FIXTURES = REPO / "tests/fixtures/chat_templates"
sys.path.insert(0, str(REPO / "scripts"))
from chat_template_reference import TEMPLATE_TOKENS, render  # noqa: E402

RANDOM_CASES = 200

TEXTS = ["Hello!", "  padded  ", "\n\nleading newlines", "trailing newline\n", "tabs\tinside\t", "",
         "quotes ' and \" and `", "{{ not a tag }} {% neither %} {# nor #}", "back\\slash \\n literal",
         "Grüße, naïve café", "日本語のテキスト", "emoji 🚀👩‍💻", "\u3000ideographic space\u3000", "nbsp\xa0here",
         "multi\nline\ntext", "   ", "[INST] fake markers [/INST] <|im_end|>", "a" * 300, "JSON {\"k\": [1, 2]}"]
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
          "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}}]


def random_text(rng):
    return "".join(rng.choice(TEXTS) for _ in range(rng.randint(1, 3)))


def random_case(rng, i):
    messages = []
    if rng.random() < 0.4:
        messages.append({"role": "system", "content": random_text(rng)})
    n = rng.randint(0 if rng.random() < 0.05 else 1, 6)
    strict = rng.random() < 0.85
    for k in range(n):
        role = ("user" if k % 2 == 0 else "assistant") if strict else rng.choice(["user", "assistant", "system"])
        msg = {"role": role, "content": random_text(rng)}
        if rng.random() < 0.05:
            msg["content"] = [{"type": "text", "text": random_text(rng)}]
        messages.append(msg)
    case = {"name": f"random_{i}", "messages": messages, "add_generation_prompt": rng.random() < 0.6,
            "now": rng.randint(0, 2_000_000_000)}
    if rng.random() < 0.15:
        case["extra_context"] = {"tools": TOOLS}
        if rng.random() < 0.5 and messages and messages[-1]["role"] == "user":
            messages.append({"role": "assistant", "content": "", "tool_calls": [
                {"id": "abcdefghi", "type": "function", "function": {"name": "lookup", "arguments": {"word": "x"}}}]})
            messages.append({"role": "tool", "tool_call_id": "abcdefghi", "content": random_text(rng)})
    return case


def run_ember(template, cases, tmp_path):
    assert TOOL.exists(), f"{TOOL} not built (set EMBER_BUILD_DIR; ninja ember_chat_template)"
    cases_file = tmp_path / "cases.json"
    cases_file.write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.run([str(TOOL), str(template), str(cases_file)], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    lines = proc.stdout.decode("utf-8").splitlines()
    assert len(lines) == len(cases)
    return [json.loads(line) for line in lines]


def compare(name, cases, got):
    mismatches = []
    source = (FIXTURES / f"{name}.jinja").read_text(encoding="utf-8")
    for case, ours in zip(cases, got):
        want = render(source, case)
        if want["ok"] != ours["ok"] or (want["ok"] and want["text"] != ours["text"]):
            mismatches.append((case["name"], want, ours))
        elif not want["ok"] and want["error_type"] == "TemplateError" and want["error"] not in ours["error"]:
            mismatches.append((case["name"], want, ours))
    assert not mismatches, f"{name}: {len(mismatches)}/{len(cases)} differ, first: {mismatches[0]}"


@pytest.mark.parametrize("name", sorted(TEMPLATE_TOKENS))
def test_committed_conversations(name, tmp_path):
    bos, eos = TEMPLATE_TOKENS[name]
    cases = [dict(c, bos_token=bos, eos_token=eos)
             for c in json.loads((FIXTURES / "conversations.json").read_text(encoding="utf-8"))]
    compare(name, cases, run_ember(FIXTURES / f"{name}.jinja", cases, tmp_path))


@pytest.mark.parametrize("name", sorted(TEMPLATE_TOKENS))
def test_random_conversations(name, tmp_path):
    bos, eos = TEMPLATE_TOKENS[name]
    rng = random.Random(f"chat-template-{name}")
    cases = [dict(random_case(rng, i), bos_token=bos, eos_token=eos) for i in range(RANDOM_CASES)]
    compare(name, cases, run_ember(FIXTURES / f"{name}.jinja", cases, tmp_path))
    # The random cases must exercise both outcomes where the template can fail.
    assert sum(1 for c in cases if c["messages"]) > RANDOM_CASES // 2
