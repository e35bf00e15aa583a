"""The OpenAI protocol layer against the official `openai` Python client, without a server.

The client talks to an httpx MockTransport: each request body the client builds is parsed by
ember_protocol_tool (server/openai_request.cpp), and the tool's built responses and SSE streams
(server/openai_response.cpp) are what the client reads back. So the client's own request encoding
must parse to the values it was given, and the client's own response decoding must accept ours;
the pydantic types (Completion, ChatCompletion, ChatCompletionChunk) validate every object.
"""
import json
import os
import pathlib
import subprocess

import httpx2 as httpx  # the HTTP library this openai release is built on
import openai
import pytest
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", ROOT / "build"))
TOOL = BUILD / "ember_protocol_tool"


def tool(mode, body):
    assert TOOL.exists(), f"{TOOL} not built (build the ember_protocol_tool target)"
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    r = subprocess.run([str(TOOL), mode], input=data if isinstance(data, bytes) else data.encode(),
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def parse(mode, body):
    return json.loads(tool(mode, body))


class Mock:
    """An httpx transport: parses each request with the tool, answers with `reply(parsed)`."""

    def __init__(self, reply):
        self.reply = reply
        self.parsed = []

    def __call__(self, request: httpx.Request):
        path = request.url.path
        if path.endswith("/models"):
            return httpx.Response(200, text=tool("build-models", "{}"), headers={"content-type": "application/json"})
        mode = "parse-chat" if path.endswith("/chat/completions") else "parse-completion"
        parsed = parse(mode, request.content)
        self.parsed.append(parsed)
        if not parsed["ok"]:
            return httpx.Response(parsed["status"], json=parsed["body"])
        kind, text = self.reply(parsed)
        ctype = "text/event-stream" if kind == "sse" else "application/json"
        return httpx.Response(200, text=text, headers={"content-type": ctype})


def client_for(mock):
    return openai.OpenAI(api_key="test", base_url="http://ember.test/v1", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(mock)))


def lp(token, logprob, top=()):
    return {"token": token, "logprob": logprob, "top": [list(t) for t in top]}


COMPLETION = {
    "id": "cmpl-0123456789abcdef0123456789abcdef", "created": 1700000000, "model": "smol",
    "choices": [{"index": 0, "text": " Paris", "finish_reason": "stop", "stop_reason": "\n",
                 "logprobs": [dict(lp(" Paris", -0.25, [(" Paris", -0.25), (" Lyon", -2.5)]), text_offset=0)]},
                {"index": 1, "text": " Rome is", "finish_reason": "length",
                 "logprobs": [dict(lp(" Rome", -1.5, [(" Paris", -0.25)]), text_offset=0),
                              dict(lp(" is", -0.5, [(" is", -0.5)]), text_offset=5)]}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "cached_tokens": 2},
}


def test_completion_request_round_trips_and_response_validates():
    mock = Mock(lambda p: ("json", tool("build-completion", COMPLETION)))
    client = client_for(mock)
    out = client.completions.create(
        model="smol", prompt="The capital of France is", max_tokens=7, temperature=0.3, top_p=0.9, n=2, stop=["\n"],
        seed=5, logprobs=3, echo=False, presence_penalty=0.1, frequency_penalty=-0.2, logit_bias={"11": -50},
        user="u1", best_of=2,
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "min_tokens": 2, "ignore_eos": True,
                    "stop_token_ids": [3, 4], "skip_special_tokens": False, "unknown_vllm_field": 1})
    p = mock.parsed[0]
    assert p["ok"], p
    assert p["model"] == "smol" and p["prompts"] == [{"text": "The capital of France is"}] and p["user"] == "u1"
    s = p["params"]
    assert (s["max_tokens"], s["n"], s["seed"], s["logprobs"], s["top_k"], s["min_tokens"]) == (7, 2, 5, 3, 20, 2)
    for key, want in [("temperature", 0.3), ("top_p", 0.9), ("presence_penalty", 0.1), ("frequency_penalty", -0.2),
                      ("min_p", 0.05), ("repetition_penalty", 1.1)]:
        assert s[key] == pytest.approx(want), key
    assert s["stop"] == ["\n"] and s["stop_token_ids"] == [3, 4] and s["logit_bias"] == {"11": -50.0}
    assert s["ignore_eos"] is True and s["echo"] is False and p["skip_special_tokens"] is False

    assert isinstance(out, Completion)
    assert [c.text for c in out.choices] == [" Paris", " Rome is"]
    assert [c.finish_reason for c in out.choices] == ["stop", "length"]
    assert out.choices[0].logprobs.tokens == [" Paris"]
    assert out.choices[0].logprobs.top_logprobs == [{" Paris": -0.25, " Lyon": -2.5}]
    assert out.choices[1].logprobs.text_offset == [0, 5]
    assert out.usage.total_tokens == 8 and out.usage.prompt_tokens_details.cached_tokens == 2
    assert out.choices[0].model_extra["stop_reason"] == "\n"  # vLLM's extra field survives the client
    # Strict validation of the raw object (the client itself constructs without validating).
    raw = json.loads(tool("build-completion", COMPLETION))
    v = Completion.model_validate(raw)
    assert v.object == "text_completion" and v.id == COMPLETION["id"] and v.created == 1700000000
    assert raw["choices"][0]["stop_reason"] == "\n" and raw["choices"][1]["stop_reason"] is None


@pytest.mark.parametrize("prompt,want", [
    (["one", "two"], [{"text": "one"}, {"text": "two"}]),
    ([1, 2, 3], [{"token_ids": [1, 2, 3]}]),
    ([[1, 2], [3]], [{"token_ids": [1, 2]}, {"token_ids": [3]}]),
])
def test_completion_prompt_shapes(prompt, want):
    mock = Mock(lambda p: ("json", tool("build-completion", COMPLETION)))
    client_for(mock).completions.create(model="smol", prompt=prompt)
    assert mock.parsed[0]["prompts"] == want
    assert mock.parsed[0]["params"]["max_tokens"] == 16  # OpenAI's default for completions


CHAT = {
    "id": "chatcmpl-0123456789abcdef0123456789abcdef", "created": 1700000001, "model": "smol",
    "choices": [{"index": 0, "content": "日本 is Japan.", "finish_reason": "stop",
                 "logprobs": [lp("日本", -0.1, [("日本", -0.1), ("中", -3.0)]), lp(" is", -0.2, [])]}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 2},
}


def test_chat_request_round_trips_and_response_validates():
    mock = Mock(lambda p: ("json", tool("build-chat", CHAT)))
    out = client_for(mock).chat.completions.create(
        model="smol",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "Where"}, {"type": "text", "text": "is it?"}]},
                  {"role": "assistant", "content": "Tokyo."}, {"role": "user", "content": "Again", "name": "bob"}],
        max_tokens=99, max_completion_tokens=12, logprobs=True, top_logprobs=2, n=1, stop="END", seed=9,
        temperature=0.0, top_p=0.5, presence_penalty=0.5, frequency_penalty=0.5, logit_bias={"5": 5},
        response_format={"type": "text"}, user="u2",
        extra_body={"top_k": 3, "add_generation_prompt": True, "chat_template_kwargs": {"enable_thinking": False}})
    p = mock.parsed[0]
    assert p["ok"], p
    assert p["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where\nis it?"},
                             {"role": "assistant", "content": "Tokyo."},
                             {"role": "user", "content": "Again", "name": "bob"}]
    s = p["params"]
    assert p["requested_max_tokens"] == 12 and s["max_tokens"] == 12  # max_completion_tokens wins
    assert (s["logprobs"], s["top_logprobs"], s["seed"], s["top_k"], s["temperature"]) == (2, 2, 9, 3, 0.0)
    assert s["stop"] == ["END"] and s["logit_bias"] == {"5": 5.0}
    assert p["chat_template_kwargs"] == {"enable_thinking": False} and p["user"] == "u2"

    assert isinstance(out, ChatCompletion)
    msg = out.choices[0].message
    assert msg.role == "assistant" and msg.content == "日本 is Japan."
    first = out.choices[0].logprobs.content[0]
    assert first.token == "日本" and first.bytes == list("日本".encode()) and first.logprob == pytest.approx(-0.1)
    assert [t.token for t in first.top_logprobs] == ["日本", "中"]
    assert out.usage.total_tokens == 14
    v = ChatCompletion.model_validate(json.loads(tool("build-chat", CHAT)))
    assert v.object == "chat.completion" and v.choices[0].finish_reason == "stop"


STREAM = {
    "id": "cmpl-stream", "created": 1700000002, "model": "smol", "include_usage": True,
    "usage": {"prompt_tokens": 4, "completion_tokens": 5},
    "choices": [{"index": 0, "pieces": [{"text": "Hel"}, {"text": "lo"}, {"text": " 🙂"}], "finish_reason": "stop"},
                {"index": 1, "pieces": [{"text": "Hi"}, {"text": "!"}], "finish_reason": "length"}],
}


def test_completion_stream_through_client():
    mock = Mock(lambda p: ("sse", tool("stream-completion", STREAM)))
    stream = client_for(mock).completions.create(model="smol", prompt="x", n=2, stream=True,
                                                 stream_options={"include_usage": True})
    assert mock.parsed[0]["stream"] == {"stream": True, "include_usage": True, "continuous_usage_stats": False}
    texts, finish, usage = {0: "", 1: ""}, {}, None
    for chunk in stream:
        assert chunk.object == "text_completion" and chunk.id == "cmpl-stream" and chunk.created == 1700000002
        raw = chunk.model_dump()
        for c in chunk.choices:
            texts[c.index] += c.text
            if c.finish_reason:
                finish[c.index] = c.finish_reason
                Completion.model_validate(raw)  # strict: finish_reason is required by the type
        if chunk.usage:
            assert chunk.choices == []
            usage = chunk.usage
    assert texts == {0: "Hello 🙂", 1: "Hi!"} and finish == {0: "stop", 1: "length"}
    assert usage.prompt_tokens == 4 and usage.completion_tokens == 5 and usage.total_tokens == 9


def test_chat_stream_through_client_and_sse_framing():
    sse = tool("stream-chat", dict(STREAM, id="chatcmpl-stream"))
    events = sse.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") and "\n" not in e for e in events[:-1])
    for e in events[:-2]:
        ChatCompletionChunk.model_validate(json.loads(e[len("data: "):]))
    mock = Mock(lambda p: ("sse", sse))
    stream = client_for(mock).chat.completions.create(model="smol", messages=[{"role": "user", "content": "hi"}],
                                                      n=2, stream=True, stream_options={"include_usage": True})
    content, roles, finish, usage = {0: "", 1: ""}, {}, {}, None
    for chunk in stream:
        assert isinstance(chunk, ChatCompletionChunk) and chunk.object == "chat.completion.chunk"
        for c in chunk.choices:
            if c.delta.role:
                assert content[c.index] == "", "role comes in a choice's first chunk"
                roles[c.index] = c.delta.role
            content[c.index] += c.delta.content or ""
            if c.finish_reason:
                finish[c.index] = c.finish_reason
        if chunk.usage:
            usage = chunk.usage
    assert roles == {0: "assistant", 1: "assistant"}
    assert content == {0: "Hello 🙂", 1: "Hi!"} and finish == {0: "stop", 1: "length"}
    assert usage.total_tokens == 9


@pytest.mark.parametrize("kwargs,param", [
    ({"temperature": -1}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"n": 0}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"logprobs": 30}, "logprobs"),
    ({"stop": ["a", ""]}, "stop"),
    ({"logit_bias": {"x": 1}}, "logit_bias"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"suffix": "end"}, "suffix"),
    ({"best_of": 4}, "best_of"),
    ({"extra_body": {"top_k": -5}}, "top_k"),
    ({"extra_body": {"repetition_penalty": 0}}, "repetition_penalty"),
    ({"extra_body": {"stop_token_ids": [10**6]}}, "stop_token_ids"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": [10**6]}, "prompt"),
])
def test_completion_errors_reach_the_client(kwargs, param):
    mock = Mock(lambda p: pytest.fail("accepted"))
    args = {"model": "smol", "prompt": "x", **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        client_for(mock).completions.create(**args)
    assert e.value.status_code == 400
    assert e.value.param == param and e.value.type == "invalid_request_error"
    assert set(e.value.body) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("kwargs,param", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
     "messages.[0].content.[0].type"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 25}, "top_logprobs"),
    ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ({"response_format": {"type": "json_yaml"}}, "response_format.type"),
    ({"tools": [{"type": "function", "function": {"name": "f g", "parameters": {}}}]}, "tools.[0].function.name"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
])
def test_chat_errors_reach_the_client(kwargs, param):
    mock = Mock(lambda p: pytest.fail("accepted"))
    args = {"model": "smol", "messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        client_for(mock).chat.completions.create(**args)
    assert e.value.param == param, e.value.message


def test_invalid_json_and_small_routes():
    bad = parse("parse-completion", b'{"prompt": "x",')
    assert bad["status"] == 400 and bad["body"]["error"]["param"] is None
    assert "JSON" in bad["body"]["error"]["message"]
    models = client_for(Mock(None)).models.list()
    assert [m.id for m in models.data] == ["smol"]
    Model.model_validate(json.loads(tool("build-models", "{}"))["data"][0])
    assert json.loads(tool("build-tokenize", "{}")) == {"count": 3, "max_model_len": 2048, "tokens": [1, 2, 3],
                                                          "token_strs": ["a", "b", "c"]}
    assert json.loads(tool("build-detokenize", "{}")) == {"prompt": "hello"}
    assert json.loads(tool("build-version", "{}"))["version"]
    tok = parse("parse-tokenize", {"prompt": "hi", "add_special_tokens": False})
    assert tok == {"ok": True, "prompt": "hi", "messages": [], "add_special_tokens": False}
    detok = parse("parse-detokenize", {"tokens": [1, 2]})
    assert detok == {"ok": True, "tokens": [1, 2]}
    ids = {json.loads(tool("new-id", "{}"))["id"] for _ in range(5)}
    assert len(ids) == 5 and all(i.startswith("chatcmpl-") and len(i) == 41 for i in ids)
