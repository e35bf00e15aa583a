"""The OpenAI surface beyond generation, as third-party clients use it: model names (a readable default, the path
accepted, models.retrieve), CORS for browsers (vLLM's --allowed-origins), 405 with Allow."""
import json
import urllib.request

import openai
import pytest

from server_util import MODEL, Server


@pytest.fixture(scope="module")
def default_names():
    # No --served-model-name: the model's file name is its id (as llama-server), the path as given is accepted too.
    s = Server("--max-model-len", "512", served_name=None)
    yield s
    assert s.stop() == 0, s.read_log()


def test_default_model_name_is_readable_and_the_path_works(default_names):
    c = openai.OpenAI(base_url=default_names.base_url + "/v1", api_key="x", max_retries=0)
    ids = [m.id for m in c.models.list().data]
    assert ids == [MODEL.name], ids
    m = c.models.retrieve(MODEL.name)
    assert m.id == MODEL.name and m.object == "model"
    for name in (MODEL.name, str(MODEL)):
        r = c.completions.create(model=name, prompt="Hello", max_tokens=2)
        assert r.usage.completion_tokens == 2
    assert c.models.retrieve(str(MODEL)).id == str(MODEL)
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("no-such-model")
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="no-such-model", prompt="x", max_tokens=1)


def test_cors_default_allows_any_origin_and_answers_preflights(default_names):
    code, headers, _ = default_names.request(
        "OPTIONS", "/v1/chat/completions",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, authorization"})
    assert code == 200
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == "POST"
    assert headers["access-control-allow-headers"] == "content-type, authorization"
    code, headers, _ = default_names.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                                             headers={"Origin": "http://app.example"})
    assert code == 200 and headers["access-control-allow-origin"] == "*"
    code, headers, _ = default_names.request("GET", "/v1/models")
    assert "access-control-allow-origin" not in headers  # no Origin, no CORS headers


def test_cors_restricted_origins_and_wrong_methods():
    s = Server("--allowed-origins", '["http://good.example"]', "--api-key", "k", tiny=True)
    try:
        pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        code, headers, _ = s.request("OPTIONS", "/v1/completions", headers={"Origin": "http://good.example", **pre})
        assert code == 200 and headers["access-control-allow-origin"] == "http://good.example"
        assert headers["vary"] == "Origin"  # the answer depends on the Origin: caches must know
        code, headers, data = s.request("OPTIONS", "/v1/completions", headers={"Origin": "http://evil.example", **pre})
        assert code == 400 and "access-control-allow-origin" not in headers, data
        # The key is still needed on the real request; the refusal carries the CORS header so the page can read it.
        code, headers, data = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                                        headers={"Origin": "http://good.example"})
        assert code == 401 and headers["access-control-allow-origin"] == "http://good.example"
        code, headers, data = s.request("GET", "/v1/chat/completions", headers={"Authorization": "Bearer k"})
        assert code == 405 and headers["allow"] == "POST" and json.loads(data)["error"]["message"]
        code, headers, _ = s.request("PUT", "/v1/models", headers={"Authorization": "Bearer k"})
        assert code == 405 and headers["allow"] == "GET, HEAD"
    finally:
        assert s.stop() == 0, s.read_log()


# An agent framework's history: the assistant called a tool (no content), the tool answered; no `tools` sent.
AGENT_HISTORY = [
    {"role": "system", "content": "You answer with the help of tools."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"C\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 18}"},
]


@pytest.mark.parametrize("template", ["qwen2.5-3b-instruct", "llama-3.1-8b-instruct", "smollm2-135m-instruct"])
def test_tool_call_history_reaches_the_template_as_jinja2_renders_it(template):
    # The rendering of the history (through /tokenize, which renders as chat completions do) equals python jinja2's
    # with the arguments as a JSON object (vLLM hands templates the parsed arguments), token for token.
    import sys
    from server_util import ROOT
    sys.path.insert(0, str(ROOT / "scripts"))
    from chat_template_reference import TEMPLATE_TOKENS, render
    source = (ROOT / "tests/fixtures/chat_templates" / f"{template}.jinja").read_text()
    s = Server("--chat-template", str(ROOT / "tests/fixtures/chat_templates" / f"{template}.jinja"), tiny=True)
    try:
        reference_messages = json.loads(json.dumps(AGENT_HISTORY))
        reference_messages[2]["content"] = ""  # as vLLM hands an absent content over
        call = reference_messages[2]["tool_calls"][0]["function"]
        call["arguments"] = json.loads(call["arguments"])
        bos, eos = TEMPLATE_TOKENS["smollm2-135m-instruct"]  # the server's tokenizer's (SmolLM2's) special tokens
        want = render(source, {"messages": reference_messages, "add_generation_prompt": True, "bos_token": bos,
                               "eos_token": eos})
        assert want["ok"], want
        if template != "smollm2-135m-instruct":  # (SmolLM2's template writes contents only)
            assert "get_weather" in want["text"] and "Paris" in want["text"]
        code, got = s.post("/tokenize", {"messages": AGENT_HISTORY, "add_generation_prompt": True,
                                         "add_special_tokens": False})
        assert code == 200, got
        code, ref = s.post("/tokenize", {"prompt": want["text"], "add_special_tokens": False})
        assert code == 200 and got["tokens"] == ref["tokens"]
        c = openai.OpenAI(base_url=s.base_url + "/v1", api_key="x", max_retries=0)
        r = c.chat.completions.create(model="test-model", messages=AGENT_HISTORY, max_tokens=3)
        assert r.choices[0].message.tool_calls is None and r.usage.completion_tokens == 3
    finally:
        assert s.stop() == 0, s.read_log()


def test_response_shapes_as_openai_sends_them():
    # system_fingerprint on every object; with include_usage, "usage": null on each chunk before the usage chunk;
    # no empty tool_calls list on a plain answer.
    s = Server(tiny=True)
    try:
        c = openai.OpenAI(base_url=s.base_url + "/v1", api_key="x", max_retries=0)
        r = c.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert r.system_fingerprint and r.system_fingerprint.startswith("fp_ember_")
        assert r.choices[0].message.tool_calls is None
        code, _, data = s.request("POST", "/v1/chat/completions",
                                  {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True,
                                   "stream_options": {"include_usage": True}})
        chunks = [json.loads(line[6:]) for line in data.decode().split("\n\n")
                  if line.startswith("data: {")]
        assert code == 200 and len(chunks) >= 4
        assert all("usage" in ch and ch["usage"] is None for ch in chunks[:-1]), chunks
        assert chunks[-1]["usage"]["completion_tokens"] == 3 and chunks[-1]["choices"] == []
        assert all(ch["system_fingerprint"].startswith("fp_ember_") for ch in chunks)
        code, _, data = s.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2, "stream": True})
        chunks = [json.loads(line[6:]) for line in data.decode().split("\n\n") if line.startswith("data: {")]
        assert all("usage" not in ch for ch in chunks)  # not asked for: no usage key at all
    finally:
        assert s.stop() == 0, s.read_log()


def test_responses_api_through_the_openai_client(default_names):
    # POST /v1/responses through client.responses.create: the greedy text equals chat completions' on the same
    # conversation (instructions = the system message); streamed events come in OpenAI's order and add up to it.
    c = openai.OpenAI(base_url=default_names.base_url + "/v1", api_key="x", max_retries=0)
    model = MODEL.name
    chat = c.chat.completions.create(model=model, temperature=0, max_tokens=16, messages=[
        {"role": "system", "content": "Answer in one sentence."}, {"role": "user", "content": "What is a river?"}])
    r = c.responses.create(model=model, instructions="Answer in one sentence.", input="What is a river?",
                           max_output_tokens=16, temperature=0, metadata={"k": "v"})
    assert r.object == "response" and r.id.startswith("resp")
    assert r.output_text == chat.choices[0].message.content
    assert r.usage.input_tokens == chat.usage.prompt_tokens and r.usage.output_tokens == chat.usage.completion_tokens
    if chat.choices[0].finish_reason == "length":
        assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    else:
        assert r.status == "completed"
    assert r.metadata == {"k": "v"} and r.instructions == "Answer in one sentence."
    # Message items with content parts, and an assistant turn in the history.
    items = [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
             {"role": "user", "content": "What is 2 + 2?"}]
    r2 = c.responses.create(model=model, input=items, max_output_tokens=8, temperature=0)
    chat2 = c.chat.completions.create(model=model, temperature=0, max_tokens=8, messages=[
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2 + 2?"}])
    assert r2.output_text == chat2.choices[0].message.content
    # Streamed.
    stream = c.responses.create(model=model, instructions="Answer in one sentence.", input="What is a river?",
                                max_output_tokens=16, temperature=0, stream=True)
    events = list(stream)
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"], types
    assert types[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == r.output_text == events[-1].response.output_text
    # What the Responses API has that ember does not keep: clear 400s naming the field.
    for kwargs, param in [({"previous_response_id": "resp_x"}, "previous_response_id"),
                          ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "tools"),
                          ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
                           "input[0].content[0].type"),
                          ({"max_output_tokens": 0}, "max_output_tokens")]:
        args = {"model": model, "input": "x", **kwargs}
        with pytest.raises(openai.BadRequestError) as e:
            c.responses.create(**args)
        assert e.value.body["param"] == param, e.value.body


def test_skip_special_tokens_false_keeps_special_tokens_text(default_names):
    """vLLM's skip_special_tokens: by default a special token's text never reaches the output; false keeps it.
    A logit_bias makes the model emit <|im_start|> (a special token of SmolLM2's vocabulary, id 1) at once."""
    c = openai.OpenAI(base_url=default_names.base_url + "/v1", api_key="x", max_retries=0)
    req = urllib.request.Request(default_names.base_url + "/tokenize", method="POST",
                                 data=json.dumps({"prompt": "<|im_start|>", "add_special_tokens": False}).encode(),
                                 headers={"Content-Type": "application/json"})
    tok = json.loads(urllib.request.urlopen(req, timeout=30).read())
    assert tok["tokens"] == [1], tok
    for endpoint in ("completions", "chat"):
        texts = {}
        for skip in (True, False):
            kw = dict(model=MODEL.name, max_tokens=2, temperature=0, logit_bias={"1": 100},
                      extra_body={"skip_special_tokens": skip})
            if endpoint == "completions":
                r = c.completions.create(prompt="Hello", **kw)
                texts[skip] = r.choices[0].text
            else:
                r = c.chat.completions.create(messages=[{"role": "user", "content": "Hi"}], **kw)
                texts[skip] = r.choices[0].message.content or ""
            assert r.usage.completion_tokens == 2
        assert "<|im_start|>" not in texts[True], texts
        assert texts[False] == "<|im_start|>" * 2, texts
