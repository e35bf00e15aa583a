"""Structured outputs (response_format, vLLM's structured_outputs and guided_*) through the official openai client
and raw HTTP, against references: python `jsonschema` (with RFC 3339 checks for the formats it leaves to an
optional package), python `re`, and a recursive-descent parser for a GBNF grammar. The grammar forces validity
whatever the model, so most checks run on the tiny random model at temperature 1.0 (fast, and far from what a
trained model would write); a few run on the real SmolLM2. Also: the corpora the C++ tests rest on
(tests/fixtures/structured/) checked against the same references, streaming, logprobs, n, seeds, the 400s that
name the field, and hostile inputs answered quickly without leaking KV blocks."""
import concurrent.futures
import datetime
import json
import re
import time
import uuid

import jsonschema
import openai
import pytest

from server_util import ROOT, Server

SEEDS = (1, 2, 3)
N = 3
MAX_TOKENS = 400
CHAT = [{"role": "user", "content": "Answer in JSON."}]
PROMPT = "Output:"


@pytest.fixture(scope="module")
def tiny():
    s = Server(tiny=True)
    s.tiny = True
    yield s
    assert s.stop() == 0, s.read_log()


@pytest.fixture(scope="module")
def real():
    s = Server("--max-model-len", "2048")
    s.tiny = False
    yield s
    assert s.stop() == 0, s.read_log()


def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=120)


# --- the reference validator --------------------------------------------------------------------------------------

_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)(\.\d+)?([Zz]|([+-])([01]\d|2[0-3]):([0-5]\d))")


def _rfc3339_time(s):
    m = _TIME.fullmatch(s)
    if not m:
        return False
    if m.group(3) == "60":  # a leap second is 23:59:60 in UTC
        sign = 0 if m.group(5) in "Zz" else 1 if m.group(6) == "+" else -1
        offset = sign * (int(m.group(7) or 0) * 60 + int(m.group(8) or 0))
        return (int(m.group(1)) * 60 + int(m.group(2)) - offset) % 1440 == 23 * 60 + 59
    return True


def _rfc3339_date(s):
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        return False
    try:
        datetime.date.fromisoformat(s)
        return True
    except ValueError:
        return False


FORMATS = jsonschema.FormatChecker()
# jsonschema checks date, uuid, email and ipv4 itself; time and date-time need an optional package: RFC 3339 here.
FORMATS.checks("time")(lambda s: not isinstance(s, str) or _rfc3339_time(s))
FORMATS.checks("date-time")(lambda s: not isinstance(s, str) or (
    len(s) > 11 and s[10] in "Tt" and _rfc3339_date(s[:10]) and _rfc3339_time(s[11:])))
FORMATS.checks("date")(lambda s: not isinstance(s, str) or _rfc3339_date(s))


def validator(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=FORMATS)


def test_reference_format_checks():
    # The checks above are a reference too: they must tell these apart.
    v = validator({"type": "array", "prefixItems": [{"format": "time"}, {"format": "date-time"}, {"format": "date"},
                                                    {"format": "uuid"}]})
    assert v.is_valid(["23:59:60Z", "2024-02-29T12:00:00.5+01:00", "2024-02-29", str(uuid.UUID(int=7))])
    for bad in (["22:59:60Z"], ["12:34:56"], [None, "2023-02-29T00:00:00Z"], [None, "2024-01-15 10:30:00Z"],
                [None, None, "2023-02-29"], [None, None, "2023-1-01"], [None, None, None, "123e4567e89b12d3"]):
        assert not v.is_valid(bad), bad


# --- the corpora the C++ tests use, checked against the references ------------------------------------------------

def test_schema_corpus_agrees_with_jsonschema():
    corpus = json.loads((ROOT / "tests/fixtures/structured/schema_corpus.json").read_text())
    assert len(corpus) >= 40
    for entry in corpus:
        v = validator(entry["schema"])
        # valid_outside_grammar: valid JSON Schema instances the grammar leaves out by design (they stay valid).
        for x in entry["valid"] + entry.get("valid_outside_grammar", []):
            assert v.is_valid(x), (entry["description"], x)
        for x in entry["invalid"]:
            assert not v.is_valid(x), (entry["description"], x)
        assert entry["valid"], entry["description"]


def test_regex_corpus_agrees_with_python_re():
    corpus = json.loads((ROOT / "tests/fixtures/structured/regex_corpus.json").read_text())
    assert len(corpus) >= 40
    for entry in corpus:
        r = re.compile(entry["regex"])
        for text in entry["match"]:
            assert r.fullmatch(text), (entry["regex"], text)
        for text in entry["nomatch"]:
            assert not r.fullmatch(text), (entry["regex"], text)
        assert entry["match"], entry["regex"]


# --- JSON Schema ---------------------------------------------------------------------------------------------------

# name: (schema, how many of the choices must end within max_tokens): "all" where every string, array and number
# has a bounded length, "most" where only recursion or digits are unbounded, "some" where the random model writes
# free text (property names). Property orders differ from alphabetical on purpose (the order test below).
SCHEMAS = {
    "nested_objects": ({
        "type": "object", "additionalProperties": False, "required": ["user", "active"],
        "properties": {
            "user": {"type": "object", "additionalProperties": False, "required": ["name", "id"],
                     "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 8},
                                    "id": {"type": "integer", "minimum": 1, "maximum": 999}}},
            "active": {"type": "boolean"}}}, "all"),
    "array_bounds": ({"type": "array", "items": {"type": "integer", "minimum": -50, "maximum": 50},
                      "minItems": 2, "maxItems": 4}, "all"),
    "enums": ({"type": "object", "additionalProperties": False, "required": ["size", "color"],
               "properties": {"size": {"enum": [1, 2.5, None, True, "XL", [1, "a"], {"k": "v"}]},
                              "color": {"enum": ["red", "green", "blue"]}}}, "all"),
    "const": ({"type": "object", "additionalProperties": False, "required": ["version", "meta"],
               "properties": {"version": {"const": "v1"}, "meta": {"const": {"b": [1, 2], "a": None}}}}, "all"),
    "any_of": ({"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9},
                          {"type": "string", "pattern": "^[a-z]{2,4}$"},
                          {"type": "null"},
                          {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}]}, "all"),
    "one_of_objects": ({"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "integer", "minimum": 1,
                                                                            "maximum": 9}},
         "required": ["kind", "r"], "additionalProperties": False},
        {"type": "object", "properties": {"kind": {"const": "rect"}, "w": {"type": "integer", "minimum": 1,
                                                                          "maximum": 9},
                                          "h": {"type": "integer", "minimum": 1, "maximum": 9}},
         "required": ["kind", "w", "h"], "additionalProperties": False}]}, "all"),
    "defs_ref": ({
        "$defs": {"point": {"type": "object", "additionalProperties": False, "required": ["y", "x"],
                            "properties": {"y": {"type": "integer", "minimum": 0, "maximum": 100},
                                           "x": {"type": "integer", "minimum": 0, "maximum": 100}}}},
        "type": "object", "additionalProperties": False, "required": ["to", "from"],
        "properties": {"to": {"$ref": "#/$defs/point"}, "from": {"$ref": "#/$defs/point"}}}, "all"),
    "recursive_tree": ({
        "$defs": {"tree": {"type": "object", "additionalProperties": False, "required": ["value", "kids"],
                           "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 9},
                                          "kids": {"type": "array", "items": {"$ref": "#/$defs/tree"},
                                                   "maxItems": 2}}}},
        "$ref": "#/$defs/tree"}, "most"),
    "formats": ({"type": "object", "additionalProperties": False, "required": ["when", "id", "at", "stamp"],
                 "properties": {"when": {"type": "string", "format": "date"},
                                "id": {"type": "string", "format": "uuid"},
                                "at": {"type": "string", "format": "time"},
                                "stamp": {"type": "string", "format": "date-time"},
                                "ip": {"type": "string", "format": "ipv4"}}}, "most"),  # fractional seconds: unbounded
    "patterns": ({"type": "object", "additionalProperties": False, "required": ["zip", "code"],
                  "properties": {"zip": {"type": "string", "pattern": "^\\d{5}(-\\d{4})?$"},
                                 "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{2,4}$"},
                                 "greek": {"type": "string", "pattern": "^[α-ω]{1,3}é?$"}}}, "all"),
    "integer_ranges": ({"type": "object", "additionalProperties": False, "required": ["small", "excl", "big", "neg"],
                        "properties": {"small": {"type": "integer", "minimum": -5, "maximum": 12},
                                       "excl": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 100},
                                       "big": {"type": "integer", "minimum": 1000000, "maximum": 1000500},
                                       "neg": {"type": "integer", "maximum": -10, "minimum": -10000}}}, "all"),
    "required_subset": ({"type": "object", "additionalProperties": False, "required": ["d", "b"],
                         "properties": {"d": {"enum": ["p", "q"]}, "c": {"type": "integer", "minimum": 0,
                                                                         "maximum": 3},
                                        "b": {"type": "null"}, "a": {"type": "boolean"}}}, "all"),
    "prefix_items": ({"type": "array", "prefixItems": [{"const": "pt"}, {"type": "integer", "minimum": 0,
                                                                         "maximum": 9}, {"type": "boolean"}],
                      "items": False, "minItems": 2}, "all"),
    "nullable_and_lists": ({"type": "object", "additionalProperties": False, "required": ["tags", "maybe"],
                            "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b", "c"]},
                                                    "minItems": 1, "maxItems": 3},
                                           "maybe": {"type": ["integer", "null"], "minimum": 0, "maximum": 99}}},
                           "all"),
    "additional_true": ({"type": "object", "properties": {"z": {"type": "integer", "minimum": 0, "maximum": 9}},
                         "required": ["z"], "additionalProperties": True}, "some"),
    "additional_schema": ({"type": "object", "properties": {"name": {"enum": ["x", "y"]}}, "required": ["name"],
                           "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 9}}, "some"),
    "numbers": ({"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3}, "most"),
}
# Strings and formats the random model cannot end quickly: only the real model gets these.
REAL_SCHEMAS = {
    "person": {"type": "object", "additionalProperties": False, "required": ["name", "age", "email"],
               "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 130},
                              "email": {"type": "string", "format": "email"},
                              "hobbies": {"type": "array", "items": {"type": "string"}, "maxItems": 3}}},
    "free_strings": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
    "nested_objects": SCHEMAS["nested_objects"][0],
    "additional_true": SCHEMAS["additional_true"][0],
}


def _generate(server, schema, seeds, endpoint):
    """Every choice of n=N at temperature 1.0 for each seed: [(text, finish_reason)]."""
    c = client(server)
    out = []
    for seed in seeds:
        if endpoint == "chat":
            r = c.chat.completions.create(
                model="test-model", messages=CHAT, max_tokens=MAX_TOKENS, n=N, seed=seed, temperature=1.0,
                response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": schema,
                                                                        "strict": True}})
            out += [(ch.message.content, ch.finish_reason) for ch in r.choices]
        else:
            r = c.completions.create(model="test-model", prompt=PROMPT, max_tokens=MAX_TOKENS, n=N, seed=seed,
                                     temperature=1.0, extra_body={"structured_outputs": {"json": schema}})
            out += [(ch.text, ch.finish_reason) for ch in r.choices]
        assert len(r.choices) == N
    return out


_OUTPUTS = {}  # (server port, schema name, endpoint): _generate's outputs


def outputs(server, name, endpoint):
    """_generate's outputs for a named schema (SCHEMAS on the tiny model, REAL_SCHEMAS on the real one), made once
    for the tests that check them in different ways."""
    key = (server.port, name, endpoint)
    if key not in _OUTPUTS:
        _OUTPUTS[key] = (_generate(server, SCHEMAS[name][0], SEEDS, endpoint) if server.tiny else
                         _generate(server, REAL_SCHEMAS[name], (7,), endpoint))
    return _OUTPUTS[key]


def check_outputs(schema, outputs, ending):
    v = validator(schema)
    stopped = [text for text, finish in outputs if finish == "stop"]
    need = {"all": len(outputs), "most": (len(outputs) + 1) // 2, "some": 1}[ending]
    assert len(stopped) >= need, outputs
    for text in stopped:
        value = json.loads(text)
        errors = [e.message for e in v.iter_errors(value)]
        assert not errors, (text, errors)
    return [json.loads(t) for t in stopped]


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_outputs_validate_on_the_tiny_model(tiny, name, endpoint):
    schema, ending = SCHEMAS[name]
    values = check_outputs(schema, outputs(tiny, name, endpoint), ending)
    # Sampling at temperature 1.0 over 9 choices: not all the same value (as a mask that left one path would give),
    # except where the schema allows only a few.
    if ending != "some" and name not in ("const", "required_subset", "prefix_items", "enums", "any_of"):
        assert len({json.dumps(v) for v in values}) > 1, values


def _resolve(schema, root):
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        schema = root
        for part in ref.lstrip("#/").split("/") if ref != "#" else []:
            schema = schema[part]
    return schema


def property_order_errors(value, schema, root):
    """Where an object's schema-defined properties do not come in the order the schema lists them."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return []
    errors = []
    for alt in schema.get("anyOf", []) + schema.get("oneOf", []):
        if jsonschema.Draft202012Validator({**_resolve(alt, root), "$defs": root.get("$defs", {})}).is_valid(value):
            errors += property_order_errors(value, alt, root)
    if isinstance(value, dict) and "properties" in schema:
        names = list(schema["properties"])
        got = [k for k in value if k in names]
        if got != sorted(got, key=names.index):
            errors.append(f"{got} not in the schema's order {names}")
        for k, v in value.items():
            if k in schema["properties"]:
                errors += property_order_errors(v, schema["properties"][k], root)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for v in value:
            errors += property_order_errors(v, schema["items"], root)
    return errors


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize("name", [n for n in SCHEMAS if n not in ("array_bounds", "any_of", "prefix_items", "numbers")])
def test_properties_follow_the_schema_order(tiny, name, endpoint):
    # As OpenAI and vLLM (xgrammar) write them: in the order the schema lists its properties, not sorted by name.
    schema, ending = SCHEMAS[name]
    values = check_outputs(schema, outputs(tiny, name, endpoint), ending)
    errors = [e for v in values for e in property_order_errors(v, schema, schema)]
    assert not errors, errors


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize("name", REAL_SCHEMAS)
def test_schema_outputs_validate_on_the_real_model(real, name, endpoint):
    check_outputs(REAL_SCHEMAS[name], outputs(real, name, endpoint), "most")


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize("name", ["person", "nested_objects"])
def test_real_model_properties_follow_the_schema_order(real, name, endpoint):
    schema = REAL_SCHEMAS[name]
    values = check_outputs(schema, outputs(real, name, endpoint), "most")
    errors = [e for v in values for e in property_order_errors(v, schema, schema)]
    assert not errors, errors


def test_every_spelling_of_a_schema_is_the_same_constraint(tiny):
    # response_format, structured_outputs.json (object or JSON string) and guided_json compile to one grammar: the
    # same seeded request gives the same text whichever field carries the schema, on both endpoints.
    schema = SCHEMAS["nested_objects"][0]
    base = {"max_tokens": 200, "seed": 11, "temperature": 1.0}
    for path, extra in (("/v1/chat/completions", {"messages": CHAT}), ("/v1/completions", {"prompt": PROMPT})):
        texts = []
        for field in ({"response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": schema}}},
                      {"structured_outputs": {"json": schema}}, {"structured_outputs": {"json": json.dumps(schema)}},
                      {"guided_json": schema}):
            code, r = tiny.post(path, {**base, **extra, **field})
            assert code == 200, r
            ch = r["choices"][0]
            texts.append(ch["message"]["content"] if "message" in ch else ch["text"])
        assert len(set(texts)) == 1, texts
        validator(schema).validate(json.loads(texts[0]))


def test_json_object(tiny, real):
    # Any JSON object: on the real model through both endpoints and both spellings; on the tiny one, the outputs that
    # end (random strings rarely close) are objects too.
    for server, seeds in ((real, (1, 2)), (tiny, (1, 2, 3))):
        c = client(server)
        outputs = []
        for seed in seeds:
            r = c.chat.completions.create(model="test-model", messages=[
                {"role": "user", "content": "Describe a cat as a JSON object."}], max_tokens=MAX_TOKENS, n=N,
                seed=seed, temperature=1.0, response_format={"type": "json_object"})
            outputs += [(ch.message.content, ch.finish_reason) for ch in r.choices]
            r = c.completions.create(model="test-model", prompt="A cat as JSON:", max_tokens=MAX_TOKENS, n=N,
                                     seed=seed, temperature=1.0,
                                     extra_body={"structured_outputs": {"json_object": True}})
            outputs += [(ch.text, ch.finish_reason) for ch in r.choices]
        stopped = [t for t, f in outputs if f == "stop"]
        if server is real:
            assert len(stopped) * 2 >= len(outputs), outputs
        assert stopped, outputs
        for text in stopped:
            assert isinstance(json.loads(text), dict), text


# --- regex, choice, grammar ----------------------------------------------------------------------------------------

REGEXES = [
    r"\(\d{3}\) \d{3}-\d{4}",                                 # US phone number
    r"\+\d{1,3}( \d{2,4}){2,3}",                              # international phone number
    r"(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",     # date
    r"(cat|dog|bird)s?( and (cat|dog|bird)s?){0,2}",          # alternations
    r"[A-Z][a-z]{1,6}_[0-9a-f]{4}[^\sA-Za-z0-9]",            # classes, negated
    r"[α-ω]{2,4} 日本語? \u263A|[😀-😏]{1,3}",                 # unicode
    r"(yes|no|maybe)",
    r"-?(0|[1-9]\d{0,4})(\.\d{1,3})?",
    r"\w{3}\.\d\s\W",
]


# ECMAScript's classes (regex.h), spelled out for Python's re, which reads \d \w \s past ASCII and lets `.` take \r.
_ECMA_CLASSES = {"d": "0-9", "w": "A-Za-z0-9_",
                 "s": "\t\n\x0b\x0c\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"}


def python_regex(ecma):
    """`ecma` as Python's re must read it to match the same texts (for the forms REGEXES uses)."""
    out, i, in_class = [], 0, False
    while i < len(ecma):
        c = ecma[i]
        if c == "\\" and ecma[i + 1].lower() in _ECMA_CLASSES:
            e = ecma[i + 1]
            body = _ECMA_CLASSES[e.lower()]
            assert not in_class or e.islower(), ecma  # a negated class inside a class: not spelled out here
            out.append(body if in_class else ("[" if e.islower() else "[^") + body + "]")
            i += 2
            continue
        if c == "\\":
            out.append(ecma[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        elif c == "." and not in_class:
            c = "[^\n\r\u2028\u2029]"
        out.append(c)
        i += 1
    return "".join(out)


def test_python_regex_reference():
    r = python_regex(r"\w\s.\W[^\sx]\d")
    assert re.fullmatch(r, "a\u205fb\u662f\u00e97")
    for bad in ("\u00e9 bb!7", "a\rbb!7", "a b\rb!7", "a b_b!7", "a bb\u30007", "a bb!\u0667", "a bbx7"):
        assert not re.fullmatch(r, bad), bad


@pytest.mark.parametrize("regex", REGEXES)
def test_regex_outputs_fullmatch(tiny, regex):
    c = client(tiny)
    texts = []
    for seed in SEEDS:
        r = c.completions.create(model="test-model", prompt=PROMPT, max_tokens=100, n=N, seed=seed, temperature=1.0,
                                 extra_body={"structured_outputs": {"regex": regex}})
        texts += [(ch.text, ch.finish_reason) for ch in r.choices]
        r = c.chat.completions.create(model="test-model", messages=CHAT, max_tokens=100, n=N, seed=seed,
                                      temperature=1.0, extra_body={"guided_regex": regex})
        texts += [(ch.message.content, ch.finish_reason) for ch in r.choices]
    for text, finish in texts:
        assert finish == "stop" and re.fullmatch(python_regex(regex), text), (text, finish)
    assert len({t for t, _ in texts}) > 1, texts


def test_choice_outputs_are_one_of_the_choices(tiny):
    choices = ["yes", "yes sir", "no", "n/a", "perhaps \"quoted\"\n", "日本", "😀"]
    c = client(tiny)
    got = []
    for seed in range(1, 9):
        r = c.chat.completions.create(model="test-model", messages=CHAT, max_tokens=20, n=N, seed=seed,
                                      temperature=1.0, extra_body={"structured_outputs": {"choice": choices}})
        got += [(ch.message.content, ch.finish_reason) for ch in r.choices]
        r = c.completions.create(model="test-model", prompt=PROMPT, max_tokens=20, n=N, seed=seed, temperature=1.0,
                                 extra_body={"guided_choice": choices})
        got += [(ch.text, ch.finish_reason) for ch in r.choices]
    for text, finish in got:
        assert text in choices and finish == "stop", (text, finish)
    assert len({t for t, _ in got}) >= 3, got  # 48 samples, 7 choices


def arithmetic(depth=None):
    """GBNF for arithmetic expressions, parentheses nested at most `depth` deep (None: recursive, unbounded)."""
    rules = ['root ::= expr0', 'number ::= [0-9]{1,3} ( "." [0-9]{1,2} )?', 'ws ::= " "?']
    for d in range(1 if depth is None else depth + 1):
        inner = "expr0" if depth is None else f"expr{d + 1}"
        nested = "" if depth is not None and d == depth else f' | "(" ws {inner} ws ")"'
        rules += [f"expr{d} ::= term{d} ( ws [-+] ws term{d} ){{0,2}}",
                  f"term{d} ::= factor{d} ( ws [*/] ws factor{d} )?",
                  f'factor{d} ::= "-"? ( number{nested} )']
    return "\n".join(rules) + "\n"


ARITHMETIC = arithmetic(2)


def parse_arithmetic(text, depth=2):
    """A recursive-descent parser for arithmetic(depth): True iff the whole text is a sentence of it."""
    pos = 0
    level = 0

    def ws():
        nonlocal pos
        if text.startswith(" ", pos):
            pos += 1

    def number():
        nonlocal pos
        m = re.compile(r"[0-9]{1,3}(\.[0-9]{1,2})?").match(text, pos)
        if not m or m.end() < len(text) and text[m.end()].isdigit():
            return False
        pos = m.end()
        return True

    def factor():
        nonlocal pos, level
        if text.startswith("-", pos):
            pos += 1
        if text.startswith("(", pos):
            if depth is not None and level == depth:
                return False
            pos += 1
            level += 1
            ws()
            if not expr():
                return False
            ws()
            if not text.startswith(")", pos):
                return False
            pos += 1
            level -= 1
            return True
        return number()

    def repeated(item, ops, most):
        nonlocal pos
        if not item():
            return False
        for _ in range(most):
            save = pos
            ws()
            if pos < len(text) and text[pos] in ops:
                pos += 1
                ws()
                if item():
                    continue
            pos = save
            break
        return True

    def term():
        return repeated(factor, "*/", 1)

    def expr():
        return repeated(term, "-+", 2)

    return expr() and pos == len(text)


def test_arithmetic_parser_reference():
    for good in ("1", "1 + 2", "(1+2)*3", "-(4.5 / 2)-1", "12 * 3 - 5 + 6", "((1))", "-(-(1)*2)"):
        assert parse_arithmetic(good), good
    for bad in ("", "--1", "1 +", "1  + 2", "1+2+3+4", "1*2*3", "1234", "(1", "1.234", "a", "(((1)))", "1 2"):
        assert not parse_arithmetic(bad), bad
    assert parse_arithmetic("(((((1)))))", depth=None) and not parse_arithmetic("(((1)))", depth=2)


def test_grammar_outputs_parse(tiny):
    c = client(tiny)
    texts = []
    for seed in SEEDS:
        r = c.completions.create(model="test-model", prompt=PROMPT, max_tokens=MAX_TOKENS, n=N, seed=seed,
                                 temperature=1.0, extra_body={"structured_outputs": {"grammar": ARITHMETIC}})
        texts += [(ch.text, ch.finish_reason) for ch in r.choices]
        r = c.chat.completions.create(model="test-model", messages=CHAT, max_tokens=MAX_TOKENS, n=N, seed=seed,
                                      temperature=1.0, extra_body={"guided_grammar": ARITHMETIC})
        texts += [(ch.message.content, ch.finish_reason) for ch in r.choices]
    assert all(f == "stop" for _, f in texts), texts
    for text, _ in texts:
        assert parse_arithmetic(text), text
    assert len({t for t, _ in texts}) > 1, texts


def test_recursive_grammar_on_the_real_model(real):
    grammar = arithmetic()
    r = client(real).completions.create(model="test-model", prompt="Some arithmetic: 2 * (3 + 4) =", n=N, seed=5,
                                        max_tokens=100, temperature=1.0,
                                        extra_body={"structured_outputs": {"grammar": grammar}})
    stopped = [ch.text for ch in r.choices if ch.finish_reason == "stop"]
    assert stopped, r.choices
    for text in stopped:
        assert parse_arithmetic(text, depth=None), text


def test_response_format_text_is_unconstrained(tiny):
    body = {"messages": CHAT, "max_tokens": 12, "seed": 5, "temperature": 1.0}
    code, plain = tiny.post("/v1/chat/completions", body)
    code2, text = tiny.post("/v1/chat/completions", {**body, "response_format": {"type": "text"}})
    assert code == code2 == 200
    assert plain["choices"][0]["message"]["content"] == text["choices"][0]["message"]["content"]


# --- with the rest of the sampling surface -------------------------------------------------------------------------

def _sse(data):
    return [json.loads(line[6:]) for line in data.decode().split("\n\n") if line.startswith("data: {")]


@pytest.mark.parametrize("field", [
    {"response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": SCHEMAS["defs_ref"][0]}}},
    {"structured_outputs": {"regex": REGEXES[3]}},
    {"structured_outputs": {"grammar": ARITHMETIC}},
])
def test_streamed_deltas_add_up_to_the_text(tiny, field):
    for path, extra in (("/v1/chat/completions", {"messages": CHAT}), ("/v1/completions", {"prompt": PROMPT})):
        body = {**extra, **field, "max_tokens": 200, "seed": 21, "temperature": 1.0, "n": 2}
        code, whole = tiny.post(path, body)
        assert code == 200, whole
        code, _, data = tiny.request("POST", path, {**body, "stream": True})
        assert code == 200
        streamed, finish = {0: "", 1: ""}, {}
        for chunk in _sse(data):
            for ch in chunk["choices"]:
                streamed[ch["index"]] += (ch["delta"].get("content") or "") if "delta" in ch else ch["text"]
                if ch.get("finish_reason"):
                    finish[ch["index"]] = ch["finish_reason"]
        for ch in whole["choices"]:
            text = ch["message"]["content"] if "message" in ch else ch["text"]
            assert streamed[ch["index"]] == text, (path, streamed, text)
            assert finish[ch["index"]] == ch["finish_reason"] == "stop"


def test_streamed_through_the_client(tiny):
    c = client(tiny)
    kw = dict(model="test-model", messages=CHAT, max_tokens=200, seed=4, temperature=1.0,
              response_format={"type": "json_schema", "json_schema": {"name": "o", "schema": SCHEMAS["enums"][0]}})
    whole = c.chat.completions.create(**kw).choices[0].message.content
    text = "".join(chunk.choices[0].delta.content or "" for chunk in c.chat.completions.create(**kw, stream=True)
                   if chunk.choices)
    assert text == whole
    validator(SCHEMAS["enums"][0]).validate(json.loads(text))


def test_logprobs_with_structured_outputs(tiny):
    c = client(tiny)
    regex = REGEXES[2]
    r = c.completions.create(model="test-model", prompt=PROMPT, max_tokens=50, seed=3, temperature=1.0, logprobs=2,
                             extra_body={"structured_outputs": {"regex": regex}})
    ch = r.choices[0]
    assert re.fullmatch(python_regex(regex), ch.text) and ch.finish_reason == "stop"
    lp = ch.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens
    # The end-of-sequence token the grammar forced is a token of the output (as vLLM counts it), not of the text.
    assert lp.tokens[-1] == "<|im_end|>" and "".join(lp.tokens[:-1]) == ch.text
    assert all(x <= 0 for x in lp.token_logprobs) and all(1 <= len(t) <= 3 for t in lp.top_logprobs)
    r = c.chat.completions.create(model="test-model", messages=CHAT, max_tokens=200, seed=3, temperature=1.0,
                                  logprobs=True, top_logprobs=3,
                                  response_format={"type": "json_schema", "json_schema": {
                                      "name": "o", "schema": SCHEMAS["integer_ranges"][0]}})
    ch = r.choices[0]
    validator(SCHEMAS["integer_ranges"][0]).validate(json.loads(ch.message.content))
    content = ch.logprobs.content
    assert len(content) == r.usage.completion_tokens and ch.finish_reason == "stop"
    assert content[-1].token == "<|im_end|>" and "".join(t.token for t in content[:-1]) == ch.message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in content)


def test_n_gives_n_distinct_valid_outputs_and_seeds_repeat(tiny):
    c = client(tiny)
    schema = SCHEMAS["patterns"][0]
    kw = dict(model="test-model", prompt=PROMPT, max_tokens=200, n=6, seed=99, temperature=1.0,
              extra_body={"structured_outputs": {"json": schema}})
    first = c.completions.create(**kw)
    assert sorted(ch.index for ch in first.choices) == list(range(6))
    texts = [ch.text for ch in first.choices]
    for t in texts:
        validator(schema).validate(json.loads(t))
    assert len(set(texts)) >= 4, texts
    again = c.completions.create(**kw)
    assert [ch.text for ch in again.choices] == texts
    other = c.completions.create(**{**kw, "seed": 100})
    assert [ch.text for ch in other.choices] != texts


def test_constraints_stay_with_their_sequence_in_a_batch(tiny):
    # A constrained and an unconstrained request running together: each gets what it gets alone (the mask is per
    # sequence, rows of other requests untouched), and the constrained one still matches.
    plain = {"prompt": "Once upon a time", "max_tokens": 40, "seed": 8, "temperature": 1.0, "ignore_eos": True}
    digits = {"prompt": "Once upon a time", "max_tokens": 40, "seed": 8, "temperature": 1.0,
              "structured_outputs": {"regex": "[0-9]{30}"}}
    alone = [tiny.post("/v1/completions", b)[1]["choices"][0]["text"] for b in (plain, digits)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(tiny.post, "/v1/completions", b) for b in (plain, digits, plain, digits)]
        together = [f.result()[1]["choices"][0]["text"] for f in futures]
    assert re.fullmatch("[0-9]{30}", alone[1]) and not re.fullmatch("[0-9]*", alone[0])
    assert together == alone * 2


# --- errors --------------------------------------------------------------------------------------------------------

NESTED_200 = {"type": "string"}
for _ in range(200):
    NESTED_200 = {"type": "array", "items": NESTED_200}
REF_CHAIN_200 = {"$defs": {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(200)}, "$ref": "#/$defs/d0"}
REF_CHAIN_200["$defs"]["d200"] = {"type": "string"}


def rf(schema):
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": schema}}}


@pytest.mark.parametrize("fields,param,message", [
    (rf({"type": "object", "properties": {"a": {"type": "string", "fooBar": 1}}}),
     "response_format.json_schema.schema", r"'fooBar'.*/properties/a"),
    (rf({"type": "string", "contentEncoding": "base64"}), "response_format.json_schema.schema", "contentEncoding"),
    ({"structured_outputs": {"json": {"type": "integer", "minimum": 5, "maximum": 1}}}, "structured_outputs.json",
     r"."),
    ({"structured_outputs": {"json": "{not json"}}, "structured_outputs.json", "not JSON"),
    ({"structured_outputs": {"json": {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                                      "$ref": "#/$defs/a"}}}, "structured_outputs.json", r"\$ref"),
    ({"structured_outputs": {"regex": "(?=a)b"}}, "structured_outputs.regex", r"lookahead.*offset 0"),
    ({"guided_regex": "(a)\\1"}, "guided_regex", r"offset 3"),
    ({"structured_outputs": {"regex": "(ab"}}, "structured_outputs.regex", r"."),
    ({"structured_outputs": {"grammar": 'root ::= "a" (\n  "b"\n'}}, "structured_outputs.grammar",
     r"line \d+, column \d+"),
    ({"guided_grammar": 'root ::= "a" foo\n'}, "guided_grammar", r"line 1, column 14.*'foo' is not defined"),
    ({"structured_outputs": {"grammar": 'root ::= x\nx ::= y "a"\ny ::= x | "b"\n'}}, "structured_outputs.grammar",
     r"left recursion.*x -> y -> x"),
    ({"structured_outputs": {"grammar": 'start ::= "a"\n'}}, "structured_outputs.grammar", "root"),
    ({"response_format": {"type": "json_object"}, "structured_outputs": {"regex": "a"}}, "structured_outputs.regex",
     r"Only one kind.*response_format.*structured_outputs\.regex"),
    ({"guided_choice": ["a"], "guided_regex": "a"}, "guided_choice", "Only one kind.*guided_regex.*guided_choice"),
    ({"response_format": {"type": "foo"}}, "response_format.type", "'foo'"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "schema"),
    ({"structured_outputs": {"choice": []}}, "structured_outputs.choice", "list"),
    ({"guided_choice": ["a", 1]}, "guided_choice.[1]", "strings"),
    ({"structured_outputs": {"foo": "x"}}, "structured_outputs.foo", "foo"),
])
def test_bad_structured_outputs_are_400_naming_the_field(tiny, fields, param, message):
    for path, extra in (("/v1/chat/completions", {"messages": CHAT}), ("/v1/completions", {"prompt": PROMPT})):
        code, r = tiny.post(path, {**extra, **fields, "max_tokens": 5})
        assert code == 400, r
        assert r["error"]["type"] == "invalid_request_error" and r["error"]["param"] == param, r
        assert re.search(message, r["error"]["message"]), r


def test_errors_reach_the_openai_client(tiny):
    c = client(tiny)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="test-model", messages=CHAT, max_tokens=5, response_format={
            "type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "strin"}}})
    assert e.value.param == "response_format.json_schema.schema" and "'type'" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model="test-model", prompt=PROMPT, max_tokens=5,
                             extra_body={"structured_outputs": {"grammar": "root ::= [a-"}})
    assert e.value.param == "structured_outputs.grammar" and re.search(r"line 1, column \d+", e.value.message)


# --- hostile inputs: answered quickly, and the server goes on as before -------------------------------------------

# name: (fields, param, message, served). Past a documented bound: a 400 naming the field (served None). A legal
# language that is costly to compile: a 400, or served (its first tokens fullmatch `served`); either within 30 s.
HOSTILE = {
    "ref_chain_200": (rf(REF_CHAIN_200), "response_format.json_schema.schema", "deeper|depth", None),
    "enum_100k": (rf({"enum": [f"value-{i}" for i in range(100_000)]}), "response_format.json_schema.schema",
                  "enum", None),
    "grammar_2mb": ({"structured_outputs": {"grammar": 'root ::= "a"\n# ' + "x" * (2 << 20)}},
                    "structured_outputs.grammar", "longer than", None),
    "grammar_repetition_1e9": ({"structured_outputs": {"grammar": 'root ::= (("a"{1000}){1000}){1000}'}},
                               "structured_outputs.grammar", "too large", None),
    "schema_nested_min_items": ({"structured_outputs": {"json": {
        "type": "array", "minItems": 1000, "items": {"type": "array", "minItems": 1000, "items": {
            "type": "string", "minLength": 1000}}}}}, "structured_outputs.json", ".",
        r'\[\s*(\[\s*("([^"\\]|\\.)*)?)?'),
    "regex_dot_1000x1000": ({"structured_outputs": {"regex": "(.{1000}){1000}"}}, "structured_outputs.regex", ".",
                            "[^\n\r\u2028\u2029]*"),
    "regex_class_ranges": ({"structured_outputs": {"regex": "([a-z]{1,1000}){1,1000}"}}, "structured_outputs.regex",
                           ".", "[a-z]*"),
    "pattern_in_schema": ({"structured_outputs": {"json": {"type": "string", "pattern": "^(\\w{1,1000}){1,1000}$"}}},
                          "structured_outputs.json", ".", '"[A-Za-z0-9_]*'),
}


def _after_hostile(server):
    code, r = server.post("/v1/completions", {"prompt": "hi", "max_tokens": 4})
    assert code == 200 and r["usage"]["completion_tokens"] == 4, r
    code, r = server.post("/v1/completions", {"prompt": "hi", "max_tokens": 30,
                                              "structured_outputs": {"regex": "[a-z]{3}"}})
    assert code == 200 and re.fullmatch("[a-z]{3}", r["choices"][0]["text"]), r
    assert server.wait_metric("ember:kv_cache_usage_perc", 0.0), server.metrics()


def test_deeply_nested_schema_is_refused_quickly(tiny):
    # 200 levels of JSON: the body's own nesting bound refuses it before the schema is read.
    start = time.time()
    code, r = tiny.post("/v1/chat/completions", {"messages": CHAT, "max_tokens": 5, **rf(NESTED_200)}, timeout=30)
    assert code == 400 and "nested" in r["error"]["message"], r
    assert time.time() - start < 30
    _after_hostile(tiny)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_inputs_are_answered_quickly(name):
    # Each on its own server: one that hangs (or does not stop on SIGTERM) fails alone.
    fields, param, message, served = HOSTILE[name]
    s = Server(tiny=True)
    try:
        start = time.time()
        code, r = s.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 5, **fields}, timeout=30)
        took = time.time() - start
        if code == 200 and served:
            assert re.fullmatch(served, r["choices"][0]["text"]), r
        else:
            assert code == 400, r
            assert r["error"]["param"] == param and re.search(message, r["error"]["message"]), r
        assert took < 30, took
        _after_hostile(s)
    finally:
        assert s.stop(timeout=35) == 0, s.read_log()  # the server drains for up to 30 s


@pytest.mark.parametrize("fields,want", [
    # One sentence of a million a's: two small rules, nothing to refuse.
    ({"structured_outputs": {"regex": "(a{1000}){1000}"}}, "a+"),
    # 80,000 alternatives in 0.9 MB of grammar: a trie of digits.
    ({"structured_outputs": {"grammar": "root ::= " + " | ".join(f'"{i:07d}"' for i in range(80_000))}}, "0[0-9]{0,6}"),
])
def test_large_but_cheap_constraints_are_served(tiny, fields, want):
    start = time.time()
    code, r = tiny.post("/v1/completions", {"prompt": PROMPT, "max_tokens": 5, **fields}, timeout=30)
    assert code == 200 and time.time() - start < 30, r
    ch = r["choices"][0]
    assert ch["finish_reason"] == "length" and re.fullmatch(want, ch["text"]), ch
    _after_hostile(tiny)
