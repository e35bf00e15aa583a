"""Reference chat-template rendering: python jinja2 set up exactly as transformers'
apply_chat_template sets it up (transformers/utils/chat_template_utils.py):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols]), transformers' tojson filter, and the globals
raise_exception, strftime_now, dict and namespace; render() passes tools=None and
documents=None unless given. strftime_now formats a fixed UTC time (`now`, seconds
since the epoch) so that renderings are stable; ember's ChatTemplateOptions has the
same knob (now_unix_seconds).

Used by scripts/make_chat_template_goldens.py and tests/integration/test_chat_template_parity.py.
"""
import json
from datetime import datetime, timezone

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

# BOS/EOS of each committed template (tests/fixtures/chat_templates/<name>.jinja),
# from the model's tokenizer_config.json / GGUF metadata.
TEMPLATE_TOKENS = {
    "llama-2-7b-chat": ("<s>", "</s>"),
    "llama-3-8b-instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama-3.1-8b-instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama-3.2-3b-instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral-7b-instruct-v0.1": ("<s>", "</s>"),
    "mistral-7b-instruct-v0.3": ("<s>", "</s>"),
    "qwen2-7b-instruct": ("", "<|im_end|>"),
    "qwen2.5-3b-instruct": ("", "<|im_end|>"),
    "smollm2-135m-instruct": ("<|im_start|>", "<|im_end|>"),
}


def make_environment(now):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.fromtimestamp(now, timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = dict
    env.globals["namespace"] = jinja2.utils.Namespace
    return env


def render(template_source, case):
    """{"ok": True, "text": ...} or {"ok": False, "error": message, "error_type": class name}."""
    env = make_environment(case.get("now", 0))
    kwargs = {"tools": None, "documents": None}
    kwargs.update(case.get("extra_context", {}))
    try:
        tpl = env.from_string(template_source)
        text = tpl.render(messages=case["messages"], add_generation_prompt=case.get("add_generation_prompt", False),
                          bos_token=case.get("bos_token", ""), eos_token=case.get("eos_token", ""), **kwargs)
        return {"ok": True, "text": text}
    except Exception as e:  # noqa: BLE001 - every failure is a golden "error"
        return {"ok": False, "error": str(e), "error_type": type(e).__name__}
