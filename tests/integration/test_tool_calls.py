"""Tool calling through the official `openai` client against a real `ember serve`: request validation, tools reaching
the chat template (its own `tools`, or the system message of a template without them), tool_choice "required" and a
named function forced by a grammar, the model's calls parsed back into tool_calls (hermes, llama3_json, mistral) with
streamed calls adding up to the non-streamed ones, and a whole round trip (call, tool result, answer).

The default model (SmolLM2-135M) rarely calls tools on its own, so the "auto" parsing is driven deterministically:
structured_outputs' `choice` makes the model write one given text, which the server then parses as the model's own.
The parsers themselves are tested on every split of their input in tests/unit/test_tool_calls.cpp."""
import json
import sys

import jsonschema
import openai
import pytest

from server_util import ROOT, Server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string", "enum": ["Paris", "London", "Tokyo"]},
                                  "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The local time in a time zone",
    "parameters": {"type": "object",
                   "properties": {"zone": {"type": "string", "maxLength": 16},
                                  "hours_ahead": {"type": "integer", "minimum": 0, "maximum": 23}},
                   "required": ["zone", "hours_ahead"], "additionalProperties": False}}}
PING = {"type": "function", "function": {"name": "ping"}}  # no parameters: its arguments are "{}"
TOOLS = [WEATHER, TIME, PING]
SCHEMAS = {t["function"]["name"]: t["function"].get("parameters", {"type": "object", "additionalProperties": False})
           for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]


@pytest.fixture(scope="module")
def smol():
    s = Server()
    yield s
    assert s.stop() == 0, s.read_log()


def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)


def calls_of(message):
    return [(c.function.name, c.function.arguments) for c in message.tool_calls or []]


def collect(stream):
    """A stream added up as clients add it up: (content or None, [(name, arguments)], ids, finish_reason), checking
    that each call's first piece carries its id, type and name and later pieces only arguments."""
    content, calls, ids, finish = "", {}, {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for piece in choice.delta.tool_calls or []:
            if piece.index not in calls:
                assert piece.id and piece.type == "function" and piece.function.name, piece
                assert piece.index == len(calls)
                calls[piece.index] = [piece.function.name, piece.function.arguments or ""]
                ids[piece.index] = piece.id
            else:
                assert piece.id is None and piece.function.name is None, piece
                calls[piece.index][1] += piece.function.arguments
        if choice.finish_reason:
            finish = choice.finish_reason
    return content or None, [tuple(calls[i]) for i in sorted(calls)], [ids[i] for i in sorted(ids)], finish


def check_calls(calls, allowed=SCHEMAS):
    for name, arguments in calls:
        assert name in allowed, name
        jsonschema.validate(json.loads(arguments), allowed[name])


def both_ways(c, **kwargs):
    """The same greedy request non-streamed and streamed: the message, and what the stream adds up to."""
    args = {"model": "test-model", "temperature": 0, **kwargs}
    r = c.chat.completions.create(**args)
    streamed = collect(c.chat.completions.create(stream=True, **args))
    m = r.choices[0].message
    assert streamed[0] == (m.content or None)
    assert streamed[1] == calls_of(m)
    assert streamed[3] == r.choices[0].finish_reason
    return r


# ---- validation -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,param", [
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "code_interpreter", "function": {"name": "f"}}]}, "tools.[0].type"),
    ({"tools": [{"type": "function"}]}, "tools.[0].function"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools.[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "get weather"}}]}, "tools.[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "x" * 65}}]}, "tools.[0].function.name"),
    ({"tools": [WEATHER, {"type": "function", "function": {"name": "get_weather"}}]}, "tools.[1].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}, "tools.[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
     "tools.[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "f", "description": 5}}]}, "tools.[0].function.description"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": 3}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_stock_price"}}}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function"}}, "tool_choice.function"),
    ({"tools": TOOLS, "tool_choice": {"function": {"name": "ping"}}}, "tool_choice.type"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "ping"}}}, "tool_choice"),
    ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    # A schema the grammar compiler does not take, blamed on its function once tool_choice needs the grammar.
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"not": {"type": "string"}}}}}}],
      "tool_choice": "required"}, "tools.[0].function.parameters"),
])
def test_bad_tool_requests_are_400s_naming_the_field(smol, extra, param):
    status, body = smol.post("/v1/chat/completions", {"messages": ASK, "max_tokens": 1, **extra})
    assert status == 400, body
    assert body["error"]["param"] == param, body
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]


def test_the_client_sees_the_400s(smol):
    with pytest.raises(openai.BadRequestError) as e:
        client(smol).chat.completions.create(model="test-model", messages=ASK, tools=TOOLS,
                                             tool_choice={"type": "function", "function": {"name": "nope"}})
    assert e.value.param == "tool_choice" and "nope" in e.value.message


# ---- how the tools reach the model ---------------------------------------------------------------------------------

def test_a_template_without_tools_gets_them_in_its_system_message(smol):
    # SmolLM2's template never reads `tools`: ember writes them (and how to call them) into the system message, as
    # llama.cpp does; with tool_choice "none" it leaves them out.
    c = client(smol)
    plain = c.chat.completions.create(model="test-model", messages=ASK, max_tokens=1).usage.prompt_tokens
    tools = c.chat.completions.create(model="test-model", messages=ASK, max_tokens=1, tools=TOOLS).usage.prompt_tokens
    none = c.chat.completions.create(model="test-model", messages=ASK, max_tokens=1, tools=TOOLS,
                                     tool_choice="none").usage.prompt_tokens
    with_system = c.chat.completions.create(model="test-model", max_tokens=1, tools=TOOLS, messages=[
        {"role": "system", "content": "Be brief."}, *ASK]).usage.prompt_tokens
    assert tools > plain + 100 and none == plain and with_system > tools, (plain, tools, none, with_system)


def test_tokenize_renders_tools_as_the_chat_route_does(smol):
    # vLLM's /tokenize takes a chat request's tools: the count is the chat completion's prompt_tokens.
    c = client(smol)
    chat = c.chat.completions.create(model="test-model", messages=ASK, max_tokens=1, tools=TOOLS).usage.prompt_tokens
    status, tok = smol.post("/tokenize", {"model": "test-model", "messages": ASK, "tools": TOOLS})
    assert status == 200 and tok["count"] == chat, (tok, chat)
    status, plain = smol.post("/tokenize", {"model": "test-model", "messages": ASK})
    assert status == 200 and plain["count"] < chat
    status, err = smol.post("/tokenize", {"messages": ASK, "tools": [{"type": "function", "function": {}}]})
    assert status == 400 and err["error"]["param"].startswith("tools"), err


@pytest.mark.parametrize("template", ["qwen2.5-3b-instruct", "llama-3.1-8b-instruct"])
def test_a_template_with_tools_renders_them_as_jinja2_does(template):
    # The definitions reach the template's own `tools` as vLLM passes them: the prompt has exactly the tokens of
    # python jinja2's rendering with tools=[...] (keys in the order the client sent them).
    sys.path.insert(0, str(ROOT / "scripts"))
    from chat_template_reference import TEMPLATE_TOKENS, render
    path = ROOT / "tests/fixtures/chat_templates" / f"{template}.jinja"
    s = Server("--chat-template", str(path), tiny=True)
    try:
        bos, eos = TEMPLATE_TOKENS["smollm2-135m-instruct"]  # the server's tokenizer's special tokens
        want = render(path.read_text(), {"messages": ASK, "add_generation_prompt": True, "bos_token": bos,
                                         "eos_token": eos, "extra_context": {"tools": TOOLS}})
        assert want["ok"] and "get_weather" in want["text"], want
        status, ref = s.post("/tokenize", {"prompt": want["text"], "add_special_tokens": False})
        assert status == 200
        r = client(s).chat.completions.create(model="test-model", messages=ASK, tools=TOOLS, tool_choice="none",
                                              max_tokens=1)
        assert r.usage.prompt_tokens == ref["count"]
    finally:
        assert s.stop() == 0, s.read_log()


# ---- tool_choice forced by a grammar -------------------------------------------------------------------------------

def test_named_tool_choice_returns_that_call(smol):
    r = both_ways(client(smol), messages=ASK, tools=TOOLS, max_tokens=64,
                  tool_choice={"type": "function", "function": {"name": "get_weather"}})
    m = r.choices[0].message
    assert m.content is None and len(m.tool_calls) == 1
    call = m.tool_calls[0]
    assert call.type == "function" and call.id.startswith("chatcmpl-tool-") and call.function.name == "get_weather"
    check_calls(calls_of(m), {"get_weather": SCHEMAS["get_weather"]})
    assert r.choices[0].finish_reason == "tool_calls"


def test_named_tool_without_parameters(smol):
    r = both_ways(client(smol), messages=ASK, tools=TOOLS, max_tokens=16,
                  tool_choice={"type": "function", "function": {"name": "ping"}})
    assert [(n, json.loads(a)) for n, a in calls_of(r.choices[0].message)] == [("ping", {})]


def test_required_makes_one_call_without_parallel_calls(smol):
    r = both_ways(client(smol), messages=ASK, tools=TOOLS, max_tokens=96, tool_choice="required",
                  parallel_tool_calls=False)
    calls = calls_of(r.choices[0].message)
    assert len(calls) == 1 and r.choices[0].message.content is None
    check_calls(calls)
    assert r.choices[0].finish_reason == "tool_calls"


def test_required_with_parallel_calls(smol):
    r = both_ways(client(smol), messages=[{"role": "user", "content": "Weather in Paris and time in Tokyo?"}],
                  tools=TOOLS, max_tokens=160, tool_choice="required")
    calls = calls_of(r.choices[0].message)
    assert len(calls) >= 1
    if r.choices[0].finish_reason == "tool_calls":
        check_calls(calls)
    else:  # max_tokens cut the list: every call but the last is whole
        assert r.choices[0].finish_reason == "length"
        check_calls(calls[:-1])


def test_a_forced_tool_choice_wins_over_response_format(smol):
    r = client(smol).chat.completions.create(
        model="test-model", messages=ASK, tools=TOOLS, max_tokens=64, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer"}}})
    check_calls(calls_of(r.choices[0].message), {"get_weather": SCHEMAS["get_weather"]})


# ---- "auto": the model's own syntax parsed back ----------------------------------------------------------------------

def forced_text(text):
    """Makes the model write exactly `text` (vLLM's structured_outputs choice), as if it had chosen to."""
    return {"structured_outputs": {"choice": [text]}}


HERMES_CALL = ('Let me look that up.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
               '"unit": "celsius"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"zone": '
               '"Europe/Paris", "hours_ahead": 0}}\n</tool_call>')


def test_auto_parses_hermes_calls(smol):
    r = both_ways(client(smol), messages=ASK, tools=TOOLS, max_tokens=200, extra_body=forced_text(HERMES_CALL))
    m = r.choices[0].message
    assert m.content == "Let me look that up."
    assert [(n, json.loads(a)) for n, a in calls_of(m)] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_time", {"zone": "Europe/Paris", "hours_ahead": 0})]
    assert len({c.id for c in m.tool_calls}) == 2
    assert r.choices[0].finish_reason == "tool_calls"


def test_auto_keeps_text_that_is_no_call(smol):
    c = client(smol)
    for text in ['<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>',  # not one of the tools
                 "<tool_call>get_weather(Paris)</tool_call>"]:
        r = both_ways(c, messages=ASK, tools=TOOLS, max_tokens=200, extra_body=forced_text(text))
        assert r.choices[0].message.content == text and r.choices[0].message.tool_calls is None
        assert r.choices[0].finish_reason == "stop"
    # tool_choice "none": nothing is parsed.
    r = both_ways(c, messages=ASK, tools=TOOLS, max_tokens=200, tool_choice="none",
                  extra_body=forced_text(HERMES_CALL))
    assert r.choices[0].message.content == HERMES_CALL and r.choices[0].message.tool_calls is None


def test_auto_on_the_models_own_answer(smol):
    # Whatever the small model answers: text, or calls that name the tools with JSON arguments.
    r = both_ways(client(smol), messages=ASK, tools=TOOLS, max_tokens=64)
    m = r.choices[0].message
    assert m.content is not None or m.tool_calls
    for name, arguments in calls_of(m):
        assert name in SCHEMAS
        if r.choices[0].finish_reason == "tool_calls":
            json.loads(arguments)


@pytest.mark.parametrize("parser,text,content", [
    ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Tokyo", "unit": "celsius"}}; '
                    '{"name": "ping", "parameters": {}}', None),
    ("mistral", 'Sure.[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Tokyo", "unit": "celsius"}}, '
                '{"name": "ping", "arguments": {}}]', "Sure."),
])
def test_other_parsers(parser, text, content):
    s = Server("--tool-call-parser", parser)
    try:
        r = both_ways(client(s), messages=ASK, tools=TOOLS, max_tokens=200, extra_body=forced_text(text))
        m = r.choices[0].message
        assert m.content == content
        assert [(n, json.loads(a)) for n, a in calls_of(m)] == [
            ("get_weather", {"city": "Tokyo", "unit": "celsius"}), ("ping", {})]
        if parser == "mistral":  # Mistral's templates take 9 letters and digits as ids
            assert all(len(c.id) == 9 and c.id.isalnum() for c in m.tool_calls)
        # One call only without parallel tool calls.
        r = client(s).chat.completions.create(model="test-model", messages=ASK, tools=TOOLS, max_tokens=200,
                                              temperature=0, parallel_tool_calls=False, extra_body=forced_text(text))
        assert [n for n, _ in calls_of(r.choices[0].message)] == ["get_weather"]
    finally:
        assert s.stop() == 0, s.read_log()


def test_auto_tool_choice_can_be_turned_off(tmp_path):
    # (through a --config file, whose keys are the flags' names: false gives --no-enable-auto-tool-choice)
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"enable-auto-tool-choice": False, "tool-call-parser": "hermes"}))
    s = Server("--config", str(config), tiny=True)
    try:
        c = client(s)
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="test-model", messages=ASK, tools=TOOLS, max_tokens=1)
        assert e.value.param == "tool_choice" and "--enable-auto-tool-choice" in e.value.message
        r = c.chat.completions.create(model="test-model", messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=1)
        assert r.choices[0].message.tool_calls is None
    finally:
        assert s.stop() == 0, s.read_log()


# ---- a round trip ---------------------------------------------------------------------------------------------------

def test_round_trip_call_result_answer(smol):
    # The model calls get_weather, the client runs it and sends the result back, the model answers. With "auto" the
    # history (the assistant's call, the tool's result) reaches SmolLM2's template in hermes syntax after the tools;
    # with "none", as vLLM renders it (the template shows the result, not the call).
    c = client(smol)
    first = c.chat.completions.create(model="test-model", messages=ASK, tools=TOOLS, max_tokens=64, temperature=0,
                                      tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    history = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 18, "sky": "clear"})}]
    for choice in ("auto", "none"):
        final = c.chat.completions.create(model="test-model", messages=history, tools=TOOLS, tool_choice=choice,
                                          max_tokens=32, temperature=0)
        m = final.choices[0].message
        assert m.content is not None or m.tool_calls
        if choice == "auto":
            assert final.usage.prompt_tokens > first.usage.prompt_tokens
    # The same history streamed adds up to the same answer.
    both_ways(c, messages=history, tools=TOOLS, max_tokens=32)
