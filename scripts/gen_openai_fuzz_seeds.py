"""Writes the seed corpus of tests/fuzz/fuzz_openai_request.cpp: request bodies for /v1/completions,
/v1/chat/completions, /tokenize and /detokenize that touch every field the parsers read, plus a deeply nested
array and a body with invalid UTF-8 (both must be refused as invalid JSON)."""
import json
import pathlib

DST = pathlib.Path(__file__).resolve().parents[1] / "tests/fuzz/corpus/openai_request"
DST.mkdir(parents=True, exist_ok=True)
SEEDS = {
    "completion_min.json": {"model": "smol", "prompt": "Hello"},
    "completion_full.json": {
        "model": "smol", "prompt": ["a", "b"], "max_tokens": 8, "temperature": 0.5, "top_p": 0.9, "n": 2,
        "stream": True, "stream_options": {"include_usage": True}, "logprobs": 2, "echo": True, "stop": ["\n", "END"],
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "repetition_penalty": 1.1,
        "logit_bias": {"11": -100, "12": 5}, "seed": 42, "top_k": 5, "min_p": 0.1, "min_tokens": 1,
        "ignore_eos": False, "stop_token_ids": [2], "best_of": 2, "user": "u", "cache_salt": "s"},
    "completion_ids.json": {"prompt": [[1, 2, 3], [4, 5]], "max_tokens": 4.0},
    "chat_min.json": {"model": "smol", "messages": [{"role": "user", "content": "Hi"}]},
    "chat_full.json": {
        "model": "smol",
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "日本"}],
                      "name": "b"},
                     {"role": "assistant", "content": None}, {"role": "tool", "content": "1", "tool_call_id": "c"}],
        "max_completion_tokens": 20, "logprobs": True, "top_logprobs": 3, "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True}, "response_format": {"type": "text"},
        "tools": [], "tool_choice": "none", "chat_template_kwargs": {"x": [1, {"y": None}]},
        "add_generation_prompt": False, "continue_final_message": False},
    "chat_bad_part.json": {"messages": [{"role": "user",
                                         "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    "tokenize.json": {"model": "smol", "prompt": "hi", "add_special_tokens": False, "return_token_strs": True},
    "detokenize.json": {"tokens": [1, 2, 3]},
}
for name, body in SEEDS.items():
    (DST / name).write_text(json.dumps(body, ensure_ascii=False))
(DST / "deep.json").write_text("[" * 100 + "]" * 100)
(DST / "bad_utf8.json").write_bytes(b'{"prompt": "\xff\xfe", "stop": "\xc0"}')
