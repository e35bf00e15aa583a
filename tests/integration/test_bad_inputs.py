"""Every bad input tried against a real `ember serve`, and ember's answer: OpenAI error objects for bad JSON fields,
strict HTTP framing (lengths, smuggling, methods, sizes), slow and greedy clients (slowloris, connection caps),
pipelining. The single-request cases and the scenarios are the table in docs/bad-inputs.md: this test writes it with
EMBER_UPDATE_DOCS=1 and otherwise checks that it matches what the server answered."""
import json
import os
import re
import socket
import threading
import time

import openai
import pytest

from server_util import ROOT, Server

DOC = ROOT / "docs/bad-inputs.md"
BIG_HEAD_FIELDS = "".join(f"X-F{i}: v\r\n" for i in range(101))


class Request(bytes):
    """A request's raw bytes; `summary` is how docs/bad-inputs.md shows it."""
    summary = None


def http(method, path, body=b"", headers=None, version="HTTP/1.1"):
    """A well-formed request as raw bytes (JSON bodies get their Content-Type and Content-Length)."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    hdrs = {"Host": "x", "Content-Type": "application/json"}
    hdrs.update(headers or {})
    if body or method == "POST":
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items() if v is not None)
    r = Request(head.encode() + b"\r\n" + body)
    extra = "".join(f" {k}: {v}" for k, v in (headers or {}).items())
    r.summary = f"{method} {path}{extra}" + (" " + body.decode("latin-1") if body else "")
    return r


def post(path, body, **kw):
    return http("POST", path, body, **kw)


CHAT = {"messages": [{"role": "user", "content": "hi"}]}

# (what, request bytes, status, the error's param or a phrase of its message, or None)
CASES = [
    # ---- JSON fields (OpenAI error objects naming the field) ----
    ("body is not JSON", post("/v1/completions", b"{not json"), 400, None),
    ("empty body", post("/v1/completions", b""), 400, None),
    ("body is an array", post("/v1/completions", b"[]"), 400, None),
    ("no prompt", post("/v1/completions", {"max_tokens": 5}), 400, "prompt"),
    ("empty prompt", post("/v1/completions", {"prompt": ""}), 400, "prompt"),
    ("empty prompt list", post("/v1/completions", {"prompt": []}), 400, "prompt"),
    ("prompt is a number", post("/v1/completions", {"prompt": 5}), 400, "prompt"),
    ("empty token list", post("/v1/completions", {"prompt": [[]]}), 400, "prompt"),
    ("negative token id", post("/v1/completions", {"prompt": [1, -1]}), 400, "prompt"),
    ("token id beyond the vocabulary", post("/v1/completions", {"prompt": [49152]}), 400, "prompt"),
    ("prompt longer than the context", post("/v1/completions", {"prompt": "word " * 400}), 400, "prompt"),
    ("negative temperature", post("/v1/completions", {"prompt": "x", "temperature": -1}), 400, "temperature"),
    ("temperature is a string", post("/v1/completions", {"prompt": "x", "temperature": "hot"}), 400, "temperature"),
    ("temperature 1e26", post("/v1/completions", {"prompt": "x", "temperature": 1e26}), 400, "temperature"),
    ("top_p 0", post("/v1/completions", {"prompt": "x", "top_p": 0}), 400, "top_p"),
    ("top_p 1.5", post("/v1/completions", {"prompt": "x", "top_p": 1.5}), 400, "top_p"),
    ("n 0", post("/v1/completions", {"prompt": "x", "n": 0}), 400, "n"),
    ("n 100000", post("/v1/completions", {"prompt": "x", "n": 100000}), 400, "n"),
    ("too many prompts", post("/v1/completions", {"prompt": ["a"] * 257, "max_tokens": 1}), 400, "prompt"),
    ("prompts x n too many", post("/v1/completions", {"prompt": ["a"] * 100, "n": 6}), 400, "n"),
    ("max_tokens 0", post("/v1/completions", {"prompt": "x", "max_tokens": 0}), 400, "max_tokens"),
    ("max_tokens -3", post("/v1/completions", {"prompt": "x", "max_tokens": -3}), 400, "max_tokens"),
    ("max_tokens beyond the context", post("/v1/completions", {"prompt": "x", "max_tokens": 100000}), 400,
     "max_tokens"),
    ("max_tokens 1.5", post("/v1/completions", {"prompt": "x", "max_tokens": 1.5}), 400, "max_tokens"),
    ("max_tokens 2^60", post("/v1/completions", {"prompt": "x", "max_tokens": 2**60}), 400, "max_tokens"),
    ("logprobs 50", post("/v1/completions", {"prompt": "x", "logprobs": 50}), 400, "logprobs"),
    ("presence_penalty 3", post("/v1/completions", {"prompt": "x", "presence_penalty": 3}), 400, "presence_penalty"),
    ("frequency_penalty -3", post("/v1/completions", {"prompt": "x", "frequency_penalty": -3}), 400,
     "frequency_penalty"),
    ("repetition_penalty 0", post("/v1/completions", {"prompt": "x", "repetition_penalty": 0}), 400,
     "repetition_penalty"),
    ("repetition_penalty 1e26", post("/v1/completions", {"prompt": "x", "repetition_penalty": 1e26}), 400,
     "repetition_penalty"),
    ("logit_bias key not a token id", post("/v1/completions", {"prompt": "x", "logit_bias": {"abc": 1}}), 400,
     "logit_bias"),
    ("logit_bias value 1000", post("/v1/completions", {"prompt": "x", "logit_bias": {"5": 1000}}), 400,
     "logit_bias"),
    ("logit_bias of 70,000 entries",
     post("/v1/completions", ('{"prompt": "x", "logit_bias": {' + ",".join(f'"{i}": 1' for i in range(70000)) +
                              "}}").encode()), 400, "members"),
    ("empty stop string", post("/v1/completions", {"prompt": "x", "stop": [""]}), 400, "stop"),
    ("stop is a number", post("/v1/completions", {"prompt": "x", "stop": 5}), 400, "stop"),
    ("stop token id beyond the vocabulary", post("/v1/completions", {"prompt": "x", "stop_token_ids": [99999999]}),
     400, "stop_token_ids"),
    ("seed is a string", post("/v1/completions", {"prompt": "x", "seed": "abc"}), 400, "seed"),
    ("seed below int64", post("/v1/completions", {"prompt": "x", "seed": -2**63 - 1}), 400, "seed"),
    ("min_p 2", post("/v1/completions", {"prompt": "x", "min_p": 2}), 400, "min_p"),
    ("stream is a string", post("/v1/completions", {"prompt": "x", "stream": "yes"}), 400, "stream"),
    ("stream_options without stream", post("/v1/completions", {"prompt": "x", "stream_options": {}}), 400,
     "stream_options"),
    ("unknown model", post("/v1/completions", {"prompt": "x", "model": "no-such-model"}), 404, None),
    ("JSON nested 10,000 deep", post("/v1/completions", b'{"prompt": ' + b"[" * 10000 + b"]" * 10000 + b"}"), 400,
     None),
    ("invalid UTF-8 in the prompt", post("/v1/completions", b'{"prompt": "\xff\xfe"}'), 400, None),
    ("no messages", post("/v1/chat/completions", {"messages": []}), 400, "messages"),
    ("messages is a string", post("/v1/chat/completions", {"messages": "hi"}), 400, "messages"),
    ("message without a role", post("/v1/chat/completions", {"messages": [{"content": "hi"}]}), 400, None),
    ("unknown role", post("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}), 400, None),
    ("content is a number", post("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}), 400, None),
    ("image content part", post("/v1/chat/completions",
                                {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}), 400, None),
    ("top_logprobs without logprobs", post("/v1/chat/completions", {**CHAT, "top_logprobs": 3}), 400, "top_logprobs"),
    ("max_completion_tokens 0", post("/v1/chat/completions", {**CHAT, "max_completion_tokens": 0}), 400, None),
    ("chat_template in the request (untrusted)",
     post("/v1/chat/completions", {**CHAT, "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}),
     400, "chat_template"),
    ("unknown model (chat)", post("/v1/chat/completions", {**CHAT, "model": "nope"}), 404, None),
    ("tokenize: broken JSON", post("/tokenize", b"{"), 400, None),
    ("detokenize: negative token", post("/detokenize", {"tokens": [-5]}), 400, "tokens"),
    ("detokenize: tokens is a string", post("/detokenize", {"tokens": "abc"}), 400, "tokens"),
    # ---- the request as a whole ----
    ("text/plain body (a browser's simple POST)",
     post("/v1/completions", {"prompt": "x"}, headers={"Content-Type": "text/plain"}), 415, "Content-Type"),
    ("no Content-Type", post("/v1/completions", {"prompt": "x"}, headers={"Content-Type": None}), 415,
     "Content-Type"),
    ("body of 17 MiB", post("/v1/completions", b"x" * (17 << 20)), 413, "larger than the limit"),
    ("unknown route", http("GET", "/v1/no-such-route"), 404, None),
    ("GET on a POST route", http("GET", "/v1/completions"), 405, "not allowed"),
    ("DELETE on a GET route", http("DELETE", "/v1/models"), 405, "not allowed"),
    ("QUERY method on a known route", http("QUERY", "/v1/models"), 405, "not allowed"),
    ("BREW method on an unknown route", http("BREW", "/pot"), 404, None),
    ("TRACE", http("TRACE", "/health"), 405, "not allowed"),
    # ---- HTTP framing (refused before routing; the connection is closed) ----
    ("Content-Length 10^12", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n",
     413, "larger than the limit"),
    ("Content-Length -5", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400,
     "decimal number"),
    ("Content-Length 5, 5", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400,
     "decimal number"),
    ("two Content-Lengths", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                            b"Content-Length: 6\r\n\r\nhello!", 400, "more than one Content-Length"),
    ("Content-Length and chunked", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "ambiguous framing"),
    ("Transfer-Encoding gzip, chunked", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                                        b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "not supported"),
    ("chunked in HTTP/1.0", b"POST /tokenize HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
     "HTTP/1.0"),
    ("malformed chunk size", b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "chunk size"),
    ("chunk larger than the body limit", b"POST /tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                         b"ffffffff\r\n", 413, "larger than the limit"),
    ("space before the colon", b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n", 400, "header name"),
    ("folded header line", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  more\r\n\r\n", 400, "folded"),
    ("bare LF line ends", b"GET /health HTTP/1.1\nHost: x\n\n", 400, "bare LF"),
    ("no Host in HTTP/1.1", b"GET /health HTTP/1.1\r\n\r\n", 400, "Host"),
    ("two Hosts", b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host"),
    ("HTTP/2.0 request line", b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505, "not supported"),
    ("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n", 400, "request line"),
    ("request line of 10 KB", ("GET /" + "a" * 10000 + " HTTP/1.1\r\nHost: x\r\n\r\n").encode(), 414, "too long"),
    ("head of 70 KB", ("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 70000 + "\r\n\r\n").encode(), 431,
     "too large"),
    ("101 header fields", ("GET /health HTTP/1.1\r\nHost: x\r\n" + BIG_HEAD_FIELDS + "\r\n").encode(), 431,
     "too many header fields"),
    ("Expect: 200-ok", b"POST /tokenize HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}", 417,
     "Expect"),
    # ---- answered normally ----
    ("chunked body", b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"pro\r\na;x=1\r\nmpt\": \"hi\"\r\n1\r\n}\r\n0\r\n\r\n",
     200, None),
    ("absolute-form target", b"GET http://x/health HTTP/1.1\r\nHost: x\r\n\r\n", 200, None),
    ("HTTP/1.0 without Host", b"GET /health HTTP/1.0\r\n\r\n", 200, None),
]

# Behaviour over time or over several connections: each has its own test below.
SCENARIOS = [
    ("300 connections trickling their heads a byte a second (slowloris)",
     "/health, /metrics and a completion answer at once throughout; each slow connection gets 408 once "
     "--http-read-timeout has passed since its first byte", "test_slowloris_starves_no_one"),
    ("more connections from one address than --max-connections-per-client, or in all than --max-connections",
     "the extra connection gets 503 with Retry-After and is closed; others from other addresses still get in",
     "test_connection_caps"),
    ("three requests pipelined in one write, then a fourth",
     "four answers, in order, on the same connection", "test_pipelined_requests_are_all_answered"),
    ("Expect: 100-continue", "100 Continue before the body is read, then the answer",
     "test_expect_continue_and_idle_keep_alive"),
    ("an idle kept-alive connection", "closed after --http-keep-alive-timeout",
     "test_expect_continue_and_idle_keep_alive"),
    ("a client that closes a stream, or a non-streaming request, mid-generation",
     "every sequence aborted, KV blocks freed (test_server.py)", "test_disconnects_abort_and_free_kv_blocks"),
    ("one request of n x prompts beyond the queue", "400 naming the bound, or 503 while the queue is full "
     "(test_server.py)", "test_one_request_cannot_fill_the_queue"),
    ("a chat_template in the request", "400 unless the server runs with --trust-request-chat-template; "
     "then rendered, its work bounded", "test_request_chat_template_needs_trust"),
]


def exchange(port, raw, timeout=10):
    """Sends `raw` on a new connection and reads one response: (status, headers, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(raw)
    except OSError:
        pass  # the server may answer and close before a large body is sent
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if
                      line.lower().startswith(b"content-length:")]
            if length and len(rest) >= length[0]:
                break
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def answer_of(status, body):
    if status < 400:
        return "served"
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    return err["message"] + (f" (param `{err['param']}`)" if err["param"] else "")


def shown(raw):
    text = getattr(raw, "summary", None) or raw.decode("latin-1")
    if len(text) > 90:
        text = text[:80] + f"... ({len(raw):,} bytes)"
    text = "".join(c if 0x20 <= ord(c) < 0x7f else {"\r": "\\r", "\n": "\\n"}.get(c, f"\\x{ord(c):02x}") for c in text)
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def render(rows):
    out = ["# Bad inputs and ember's answers", "",
           "Generated by `tests/integration/test_bad_inputs.py` against a real `ember serve` (the tiny dummy model, "
           "`--max-model-len 256`); the test fails when this file and the server's answers differ (rewrite it with "
           "`EMBER_UPDATE_DOCS=1`). Every error body is OpenAI's error object "
           "`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`. Framing errors close the connection; the "
           "server keeps serving, with no KV block held, after all of them.", "",
           "## Single requests", "", "| case | request (start) | status | ember's answer |", "|---|---|---|---|"]
    for what, raw, status, answer in rows:
        out.append(f"| {what} | {shown(raw)} | {status} | {answer.replace('|', '/')} |")
    out += ["", "## Scenarios", "", "| case | ember's behaviour | test |", "|---|---|---|"]
    for what, behaviour, test in SCENARIOS:
        out.append(f"| {what} | {behaviour} | `{test}` |")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def tiny():
    s = Server("--max-model-len", "256", tiny=True)
    yield s
    assert s.stop() == 0, s.read_log()


def test_every_bad_input_gets_its_answer_and_the_table_matches(tiny):
    rows = []
    for what, raw, status, detail in CASES:
        code, _, body = exchange(tiny.port, raw)
        assert code == status, (what, code, body[:300])
        answer = answer_of(code, body)
        if detail is not None:
            err = json.loads(body)["error"]
            assert err["param"] == detail or detail in err["message"] or (err["param"] or "").startswith(detail), \
                (what, err)
        rows.append((what, raw, code, answer))
    # Still serving, nothing leaked.
    r = openai.OpenAI(base_url=tiny.base_url + "/v1", api_key="x", max_retries=0).completions.create(
        model="test-model", prompt="ok", max_tokens=3)
    assert r.usage.completion_tokens == 3
    assert tiny.wait_metric("ember:kv_cache_usage_perc", 0.0)
    text = render(rows)
    if os.environ.get("EMBER_UPDATE_DOCS"):
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text)
    assert DOC.read_text() == text, "docs/bad-inputs.md is stale: run this test with EMBER_UPDATE_DOCS=1"
    names = {name for name in globals() if name.startswith("test_")}
    names |= {"test_disconnects_abort_and_free_kv_blocks", "test_one_request_cannot_fill_the_queue"}
    assert all(test in names for _, _, test in SCENARIOS)


def test_pipelined_requests_are_all_answered(tiny):
    s = socket.create_connection(("127.0.0.1", tiny.port), timeout=10)
    s.sendall(http("GET", "/health") + post("/tokenize", {"prompt": "hi"}) + http("GET", "/v1/models"))
    data = b""
    while data.count(b"HTTP/1.1 ") < 3 or not data.rstrip().endswith(b"}"):
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    s.sendall(http("GET", "/version", headers={"Connection": "close"}))
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    statuses = re.findall(rb"HTTP/1\.1 \d{3}", data)
    assert statuses == [b"HTTP/1.1 200"] * 4, data
    assert data.index(b'"tokens"') < data.index(b'"object":"list"') < data.index(b'"version"')


def test_expect_continue_and_idle_keep_alive():
    s = Server("--http-keep-alive-timeout", "1", tiny=True)
    try:
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        body = json.dumps({"prompt": "hi"}).encode()
        c.sendall(b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        assert c.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.sendall(body)
        # The whole response (headers and body may come in separate segments on a loaded machine).
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"Content-Length: (\d+)", data, re.I).group(1)):
            chunk = c.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"timeout=1" in data, data
        start = time.time()
        assert c.recv(100) == b""  # closed by the server once idle
        assert 0.5 < time.time() - start < 5
        c.close()
    finally:
        assert s.stop() == 0


def test_slowloris_starves_no_one():
    s = Server("--http-read-timeout", "4", tiny=True)
    try:
        slow = []
        for _ in range(300):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(b"POST /v1/completions HTTP/1.1\r\nHo")
            slow.append(c)
        opened = time.time()
        worst = 0.0
        while time.time() - opened < 3:
            for c in slow:
                c.send(b"s")  # one more byte each: each read restarts a per-read timeout, not this deadline
            for method, path, body in [("GET", "/health", None), ("GET", "/metrics", None),
                                       ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})]:
                t = time.time()
                assert s.request(method, path, body, timeout=5)[0] == 200
                worst = max(worst, time.time() - t)
            time.sleep(0.5)
        assert worst < 2.0, worst  # milliseconds when quiet; a starved server would time out (5 s)
        answers = set()
        for c in slow:
            data = b""
            while True:
                try:
                    chunk = c.recv(4096)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            answers.add(data.split(b"\r\n")[0])
            c.close()
        assert answers == {b"HTTP/1.1 408 Request Timeout"}, answers
        assert time.time() - opened < 4 + 5
        assert s.request("GET", "/health")[0] == 200
    finally:
        assert s.stop() == 0, s.read_log()


def test_connection_caps():
    # 127.0.0.2 and 127.0.0.3 are other client addresses on the loopback interface.
    s = Server("--max-connections-per-client", "4", "--max-connections", "6", tiny=True)

    def connect(source):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10, source_address=(source, 0))
        c.settimeout(0.5)
        return c

    def refused(c):
        try:
            data = c.recv(4096)
        except socket.timeout:
            return None  # admitted: waiting for a request
        return data

    try:
        a = [connect("127.0.0.2") for _ in range(4)]
        time.sleep(0.3)
        extra = connect("127.0.0.2")
        data = refused(extra)
        assert data and data.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in data, data
        assert b"--max-connections-per-client 4" in data
        assert all(refused(c) is None for c in a)
        b = [connect("127.0.0.3") for _ in range(2)]
        time.sleep(0.3)
        assert all(refused(c) is None for c in b)
        data = refused(connect("127.0.0.3"))
        assert data and data.startswith(b"HTTP/1.1 503") and b"--max-connections 6" in data, data
        for c in a + b:
            c.close()
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                if s.request("GET", "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        assert s.request("GET", "/health")[0] == 200
    finally:
        assert s.stop() == 0, s.read_log()


def test_request_chat_template_needs_trust():
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}"
    s = Server("--trust-request-chat-template", tiny=True)
    try:
        code, body = s.post("/tokenize", {"messages": [{"role": "user", "content": "hi"}], "add_special_tokens": False})
        assert code == 200
        code, _, data = s.request("POST", "/v1/chat/completions",
                                  {**CHAT, "chat_template": template, "max_tokens": 1})
        assert code == 200, data
        # The work bound still holds for a trusted template: quadratic list growth is cut off with a 400.
        bomb = "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}"
        code, _, data = s.request("POST", "/v1/chat/completions", {**CHAT, "chat_template": bomb, "max_tokens": 1},
                                  timeout=30)
        assert code == 400 and json.loads(data)["error"]["param"] == "messages", data
    finally:
        assert s.stop() == 0
