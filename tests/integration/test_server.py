"""`ember serve` end to end on the CPU backend, through the official `openai`
client and raw HTTP: completions and chat (streamed and not), n, logprobs,
stop strings, seeds, usage against the tokenizer; client disconnects;
overload; API keys; SIGTERM draining. Bad input: test_bad_inputs.py."""
import http.client
import json
import re
import socket
import subprocess
import threading
import time

import openai
import pytest

from server_util import BUILD, EMBER, MODEL, TINY_CONFIG, Server, free_port, tcp_workers


@pytest.fixture(scope="module")
def smol():
    s = Server()
    yield s
    assert s.stop() == 0, s.read_log()


@pytest.fixture(scope="module")
def tiny():
    s = Server("--max-model-len", "256", tiny=True)
    yield s
    assert s.stop() == 0, s.read_log()


def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)


def tokenize(server, text, add_special_tokens=True):
    status, body = server.post("/tokenize", {"prompt": text, "add_special_tokens": add_special_tokens})
    assert status == 200, body
    return body["tokens"]


# ---- the official client ---------------------------------------------------------------

def test_completion_greedy_is_coherent_and_usage_matches_tokenizer(smol):
    r = client(smol).completions.create(model="test-model", prompt="The capital of France is", max_tokens=8,
                                        temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert "Paris" in r.choices[0].text
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(tokenize(smol, "The capital of France is"))
    assert r.usage.completion_tokens == 8
    # The completion's text is what its tokens decode to.
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streamed_equals_chat_not_streamed(smol):
    c = client(smol)
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France? Answer in one word."}]
    full = c.chat.completions.create(model="test-model", messages=messages, max_tokens=16, temperature=0)
    assert full.object == "chat.completion"
    assert full.choices[0].message.role == "assistant"
    assert "Paris" in full.choices[0].message.content
    chunks = list(c.chat.completions.create(model="test-model", messages=messages, max_tokens=16, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_streamed_completion_text_equals_non_streamed(tiny):
    c = client(tiny)
    full = c.completions.create(model="test-model", prompt="Hello there", max_tokens=20, temperature=0)
    parts = list(c.completions.create(model="test-model", prompt="Hello there", max_tokens=20, temperature=0,
                                      stream=True))
    assert "".join(p.choices[0].text for p in parts if p.choices) == full.choices[0].text
    assert parts[-1].choices[0].finish_reason == "length"


def test_n_and_seed_reproducibility(tiny):
    c = client(tiny)
    a = c.completions.create(model="test-model", prompt="Once upon a time", max_tokens=12, temperature=1.0, n=3,
                             seed=42)
    b = c.completions.create(model="test-model", prompt="Once upon a time", max_tokens=12, temperature=1.0, n=3,
                             seed=42)
    assert [ch.index for ch in a.choices] == [0, 1, 2]
    assert [ch.text for ch in a.choices] == [ch.text for ch in b.choices]
    assert len({ch.text for ch in a.choices}) > 1, "the n samples should differ"
    assert a.usage.completion_tokens == 36
    other = c.completions.create(model="test-model", prompt="Once upon a time", max_tokens=12, temperature=1.0,
                                 seed=43)
    assert other.choices[0].text != a.choices[0].text


def test_completion_logprobs(tiny):
    r = client(tiny).completions.create(model="test-model", prompt="abc", max_tokens=5, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 5 and len(lp.token_logprobs) == 5 and len(lp.top_logprobs) == 5
    for logprob, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert logprob <= 0
        assert len(top) >= 3
        # Greedy: the chosen token is the most likely one.
        assert abs(max(top.values()) - logprob) < 1e-4


def test_chat_logprobs_and_top_logprobs(smol):
    r = client(smol).chat.completions.create(model="test-model", messages=[{"role": "user", "content": "Hi"}],
                                             max_tokens=4, temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
        assert abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-4


def test_stop_string_cuts_the_text(smol):
    c = client(smol)
    free = c.completions.create(model="test-model", prompt="Count: 1, 2, 3,", max_tokens=12, temperature=0)
    text = free.choices[0].text
    assert " 5" in text, text
    stopped = c.completions.create(model="test-model", prompt="Count: 1, 2, 3,", max_tokens=12, temperature=0,
                                   stop=[" 5"])
    assert stopped.choices[0].text == text[:text.index(" 5")]
    assert stopped.choices[0].finish_reason == "stop"


def test_models_version_tokenize_detokenize(tiny):
    models = client(tiny).models.list()
    assert [m.id for m in models.data] == ["test-model"]
    status, _, body = tiny.request("GET", "/version")
    assert status == 200 and "version" in json.loads(body)
    ids = tokenize(tiny, "Hello world")
    status, body = tiny.post("/detokenize", {"tokens": ids})
    assert status == 200 and body["prompt"] == "Hello world"


# ---- load, disconnects, auth, shutdown -------------------------------------------------

def start_stream(port, body):
    """Opens a streaming request, reads its first chunk, returns the socket (left open)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    payload = json.dumps(body).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    data = b""
    while b"data:" not in data:
        chunk = s.recv(4096)
        assert chunk, "connection closed before the first chunk"
        data += chunk
    return s


def test_disconnects_abort_and_free_kv_blocks(tiny):
    body = {"prompt": "tell me a long story", "max_tokens": 200, "stream": True, "ignore_eos": True}
    socks = []
    lock = threading.Lock()

    def worker(k):
        for _ in range(k):
            s = start_stream(tiny.port, body)
            with lock:
                socks.append(s)

    threads = [threading.Thread(target=worker, args=(25,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(socks) == 200
    for s in socks:
        s.close()
    assert tiny.wait_metric("ember:kv_cache_usage_perc", 0.0), tiny.metrics()
    assert tiny.wait_metric("ember:num_requests_running", 0.0)
    aborted = tiny.metric("ember:request_success_total", 'finished_reason="abort"')
    assert aborted >= 100, aborted  # most were cut mid-stream
    r = client(tiny).completions.create(model="test-model", prompt="still here", max_tokens=2)
    assert r.usage.completion_tokens == 2


def test_overload_gets_503_and_admitted_requests_complete():
    s = Server("--max-queue-len", "2", "--max-num-seqs", "1", tiny=True)
    try:
        results = []
        lock = threading.Lock()

        def one():
            code, headers, data = s.request("POST", "/v1/completions",
                                            {"prompt": "x", "max_tokens": 150, "ignore_eos": True})
            with lock:
                results.append((code, headers, json.loads(data)))

        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = [c for c, _, _ in results]
        assert codes.count(503) >= 1, codes
        assert codes.count(200) >= 2, codes
        for code, headers, body in results:
            if code == 503:
                assert "retry-after" in headers and body["error"]["type"]
            else:
                assert code == 200 and body["usage"]["completion_tokens"] == 150
    finally:
        assert s.stop() == 0


def test_api_key_required_on_the_api_only():
    s = Server("--api-key", "sekrit", tiny=True)
    try:
        code, headers, data = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1})
        assert code == 401 and "didn't provide an API key" in json.loads(data)["error"]["message"]
        assert headers["www-authenticate"] == "Bearer"
        for wrong in ("Bearer wrong", "Bearer sekritX", "Bearer sekrit extra", "Basic sekrit", "sekrit"):
            code, _, data = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                                      headers={"Authorization": wrong})
            assert code == 401 and json.loads(data)["error"]["code"] == "invalid_api_key", wrong
        code, _, _ = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1},
                               headers={"Authorization": "Bearer sekrit"})
        assert code == 200
        assert s.request("GET", "/health")[0] == 200
        assert s.request("GET", "/metrics")[0] == 200
        with pytest.raises(openai.AuthenticationError):
            client(s).models.list()
    finally:
        assert s.stop() == 0


def test_sigterm_finishes_in_flight_requests_then_exits_0():
    s = Server(tiny=True)
    results = []

    def one():
        results.append(s.post("/v1/completions", {"prompt": "x", "max_tokens": 1500, "ignore_eos": True}))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 10
    running = 0
    while running == 0 and time.time() < deadline:
        running = s.metric("ember:num_requests_running")
        time.sleep(0.02)
    assert s.stop() == 0, s.read_log()
    for t in threads:
        t.join()
    assert running > 0, "the requests should still be running when SIGTERM arrives"
    assert [code for code, _ in results] == [200] * 4
    assert all(body["usage"]["completion_tokens"] == 1500 for _, body in results)


def test_schemathesis_finds_no_server_error(tiny):
    """A bounded property-based run over /openapi.json: no generated request may get a 5xx."""
    import pathlib
    import subprocess
    import sys
    exe = pathlib.Path(sys.executable).parent / "schemathesis"
    assert exe.exists(), "schemathesis is missing from the venv (scripts/requirements.txt)"
    r = subprocess.run([str(exe), "run", tiny.base_url + "/openapi.json", "--checks", "not_a_server_error",
                        "-n", "25", "--request-timeout", "60", "--seed", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:]
    assert "passed" in r.stdout
    assert tiny.wait_metric("ember:kv_cache_usage_perc", 0.0)
    assert tiny.request("GET", "/health")[0] == 200


def test_tensor_parallel_serve_answers_with_the_unsplit_greedy_text():
    # SmolLM2 (9 heads, 3 KV heads) over 3 ranks, as threads, as processes under mpirun and as processes meeting over
    # TCP (--nnodes): the openai client's greedy chat completions equal the unsplit server's. SIGTERM to rank 0 ends
    # every rank with status 0.
    from test_cli import mpirun  # (tests/integration is on the path)
    messages = [[{"role": "user", "content": "Name three colors."}],
                [{"role": "user", "content": "What is 2 + 2? Answer briefly."}]]

    def answers(server):
        c = client(server)
        out = []
        for m in messages:
            r = c.chat.completions.create(model="test-model", messages=m, max_tokens=24, temperature=0)
            out.append(r.choices[0].message.content)
        return out

    texts = {}
    for name, args, launcher in [("unsplit", [], ()), ("3 threads", ["-tp", "3"], ()),
                                 ("3 processes", ["-tp", "3", "--device", "cpu"], tuple(mpirun(3)))]:
        s = Server(*args, launcher=launcher)
        try:
            texts[name] = answers(s)
        finally:
            assert s.stop() == 0, s.read_log()
    port = free_port()
    workers = tcp_workers(3, port)
    s = Server("--nnodes", "3", "--node-rank", "0", "--master-port", str(port))
    try:
        texts["3 processes over TCP"] = answers(s)
    finally:
        assert s.stop() == 0, s.read_log()
        assert [w.wait(timeout=30) for w in workers] == [0, 0]
    assert all(len(t) > 0 for t in texts["unsplit"])
    assert texts["3 threads"] == texts["unsplit"]
    assert texts["3 processes"] == texts["unsplit"]
    assert texts["3 processes over TCP"] == texts["unsplit"]


def test_a_lost_tensor_parallel_rank_ends_every_rank_with_a_message():
    # Four ranks over TCP on the tiny model (4 heads). A worker killed while the server is idle: rank 0 sees its link
    # close and exits 1 at once with the rank named; the other workers see rank 0 go and exit 1 too. No process hangs.
    port = free_port()
    workers = tcp_workers(4, port, tiny=True)
    s = Server("--nnodes", "4", "--node-rank", "0", "--master-port", str(port), tiny=True)
    try:
        r = client(s).completions.create(model="test-model", prompt="hello", max_tokens=4)
        assert r.usage.completion_tokens == 4
        workers[1].kill()
        assert s.proc.wait(timeout=10) == 1
        assert "rank 2 closed its connection" in s.read_log()
        assert [workers[0].wait(timeout=10), workers[2].wait(timeout=10)] == [1, 1]
        assert "rank 0 closed the connection" in (BUILD / f"rank-{port}-1.log").read_text()
    finally:
        s.stop()
        for w in workers:
            if w.poll() is None:
                w.kill()
    # A rank that never arrives: rank 0 gives up with a clear message instead of waiting forever.
    lonely = subprocess.run([str(EMBER), "serve", "--nnodes", "2", "--node-rank", "1", "--master-port", str(port),
                             "--model", str(TINY_CONFIG), "--load-format", "dummy", "--tokenizer", str(MODEL),
                             "--rendezvous-timeout", "2"], capture_output=True, text=True, timeout=60)
    assert lonely.returncode == 2 and "cannot reach rank 0" in lonely.stderr, lonely.stderr[-2000:]


def test_one_request_cannot_fill_the_queue():
    # Bounds per request (prompts, prompts x n) are 400s naming the field; the queue bound counts sequences, so a
    # request's n counts against --max-queue-len, and an n the queue can never hold is a 400, not a 503.
    s = Server("--max-queue-len", "4", "--max-num-seqs", "1", "--max-prompts-per-request", "8",
               "--max-sequences-per-request", "16", "--max-model-len", "1024", tiny=True)
    try:
        code, _, data = s.request("POST", "/v1/completions", {"prompt": ["a"] * 9, "max_tokens": 1})
        assert code == 400 and json.loads(data)["error"]["param"] == "prompt", data
        assert b"--max-prompts-per-request" in data
        code, _, data = s.request("POST", "/v1/completions", {"prompt": ["a"] * 4, "n": 5, "max_tokens": 1})
        assert code == 400 and json.loads(data)["error"]["param"] == "n", data
        code, _, data = s.request("POST", "/v1/completions", {"prompt": "a", "n": 5, "max_tokens": 1})
        assert code == 400 and b"--max-queue-len" in data, data
        # One running sequence of n = 3 (max-num-seqs 1): 2 of its sequences wait. Another n = 3 would make 5 > 4.
        sock = start_stream(s.port, {"prompt": "tell me", "n": 3, "max_tokens": 900, "stream": True,
                                     "ignore_eos": True})
        deadline = time.time() + 20
        while s.metric("ember:num_requests_waiting") < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert s.metric("ember:num_requests_waiting") == 2
        code, headers, data = s.request("POST", "/v1/completions", {"prompt": "b", "n": 3, "max_tokens": 1})
        assert code == 503 and "retry-after" in headers and b"sequences are waiting" in data, (code, data)
        sock.close()
        assert s.wait_metric("ember:num_requests_running", 0.0)
        assert s.wait_metric("ember:num_requests_waiting", 0.0)
        assert s.wait_metric("ember:kv_cache_usage_perc", 0.0)
        code, _, data = s.request("POST", "/v1/completions", {"prompt": "b", "n": 3, "max_tokens": 1})
        assert code == 200 and len(json.loads(data)["choices"]) == 3
    finally:
        assert s.stop() == 0, s.read_log()


def test_non_streaming_request_is_aborted_when_its_client_goes():
    # A non-streaming request of 3 prompts that would run for a long time: its client closes the connection after 2 s.
    # Every sequence is aborted within seconds (the server probes the client once a second), and the KV blocks return.
    # The client accepts gzip, as httpx (the openai client) and Go's client do: a compressor must not swallow the probe.
    s = Server("--max-num-seqs", "4", "--max-model-len", "4096", tiny=True)
    try:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
        payload = json.dumps({"prompt": ["one", "two", "three"], "max_tokens": 4000, "ignore_eos": True}).encode()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Accept-Encoding: gzip, deflate\r\n"
                     b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        deadline = time.time() + 20
        while s.metric("ember:num_requests_running") < 3 and time.time() < deadline:
            time.sleep(0.05)
        assert s.metric("ember:num_requests_running") == 3
        time.sleep(2)
        sock.close()
        assert s.wait_metric("ember:num_requests_running", 0.0, timeout=10), s.metrics()
        assert s.wait_metric("ember:kv_cache_usage_perc", 0.0, timeout=5)
        assert s.metric("ember:request_success_total", 'finished_reason="abort"') == 3
        # A request that takes longer than the probe's second still answers with one JSON object. (4,000 tokens:
        # 1,500 took under a second on a fast, idle machine, and then no probe byte comes.)
        code, headers, data = s.request("POST", "/v1/completions",
                                        {"prompt": "long", "max_tokens": 4000, "ignore_eos": True}, timeout=120)
        assert code == 200, data
        assert headers.get("transfer-encoding") == "chunked" and data.startswith(b" "), (headers, data[:40])
        body = json.loads(data)
        assert body["usage"]["completion_tokens"] == 4000
        assert client(s).completions.create(model="test-model", prompt="short", max_tokens=1500,
                                            extra_body={"ignore_eos": True}).usage.completion_tokens == 1500
    finally:
        assert s.stop() == 0, s.read_log()


def test_a_second_server_on_a_taken_port_fails_to_start(tiny):
    # No SO_REUSEPORT: a second `ember serve` on the same port must not start and share the connections.
    second = subprocess.run([str(EMBER), "serve", "--model", str(TINY_CONFIG), "--load-format", "dummy",
                             "--tokenizer", str(MODEL), "--port", str(tiny.port)],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode != 0, second.stderr[-2000:]
    code, _, _ = tiny.request("GET", "/health")
    assert code == 200


def test_json_bodies_only_as_json_and_absurd_values_refused(tiny):
    # A browser's simple POST (text/plain, no preflight) must not reach the model: 415 unless the body is declared
    # JSON (parameters after ';' allowed). Temperatures and penalties of 1e26 and seeds beyond int64 are 400s naming
    # the field; seed -1 means no seed.
    body = json.dumps({"prompt": "x", "max_tokens": 1})
    for ctype, want in [("text/plain", 415), ("application/x-www-form-urlencoded", 415), ("", 415),
                        ("application/json; charset=utf-8", 200), ("Application/JSON", 200)]:
        code, headers, data = tiny.request("POST", "/v1/completions", body, headers={"Content-Type": ctype})
        assert code == want, (ctype, code, data)
        if want == 415:
            assert json.loads(data)["error"]["message"].startswith("Content-Type must be application/json")
    for field, value in [("temperature", 1e26), ("repetition_penalty", 1e26), ("seed", -2**63 - 1)]:
        code, _, data = tiny.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1, field: value})
        assert code == 400 and json.loads(data)["error"]["param"] == field, (field, data)
    texts = [client(tiny).completions.create(model="test-model", prompt="a", max_tokens=12, temperature=1.0,
                                             seed=-1).choices[0].text for _ in range(3)]
    assert len(set(texts)) > 1, texts  # unseeded: a random model's 12 draws do not repeat
    seeded = [client(tiny).completions.create(model="test-model", prompt="a", max_tokens=12, temperature=1.0,
                                              seed=-5).choices[0].text for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_non_loopback_without_a_key_warns():
    s = Server("--host", "0.0.0.0", tiny=True)
    try:
        assert "without --api-key" in s.read_log()
    finally:
        assert s.stop() == 0


def test_a_stalled_engine_is_not_healthy():
    # The real model on the CPU prefills a ~900-token prompt in one step of well over a second. With
    # --health-stall-timeout 0.3 /health answers 503 while that step runs (the engine has work and has completed no
    # step for longer than the bound) and 200 again once it completes. With --exit-on-stall the process exits (3).
    prompt = "The history of the river valley is long and full of change. " * 80
    for exit_on_stall in (False, True):
        args = ["--health-stall-timeout", "0.3", "--max-num-batched-tokens", "2048", "--no-enable-prefix-caching"]
        if exit_on_stall:
            args.append("--exit-on-stall")
        s = Server(*args)
        try:
            statuses = []
            done = threading.Event()

            def poll():
                while not done.is_set():
                    try:
                        statuses.append(s.request("GET", "/health", timeout=5)[0])
                    except OSError:
                        statuses.append(None)  # the process is gone
                    time.sleep(0.05)

            t = threading.Thread(target=poll)
            t.start()
            try:
                code, _, _ = s.request("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 2}, timeout=120)
            except OSError:
                code = None
            done.set()
            t.join()
            if not exit_on_stall:
                assert code == 200
                assert 503 in statuses, statuses
                assert s.request("GET", "/health")[0] == 200
                assert "without completing a step" in s.read_log()
            else:
                assert s.proc.wait(timeout=30) == 3
                assert "exiting (--exit-on-stall)" in s.read_log()
        finally:
            rc = s.stop()
            if not exit_on_stall:
                assert rc == 0


def test_an_oversized_logit_bias_is_refused_unbuilt(tiny):
    bias = "{" + ",".join(f'"{i}": 1' for i in range(70000)) + "}"
    body = '{"prompt": "x", "max_tokens": 1, "logit_bias": ' + bias + "}"
    code, _, data = tiny.request("POST", "/v1/completions", body)
    assert code == 400 and b"members" in data, data[:200]


def test_fp8_kv_cache_holds_four_times_the_tokens_and_answers_the_openai_client():
    # --kv-cache-dtype fp8 on the CPU: the same --kv-cache-memory-bytes holds 4x the float32 cache's tokens (the
    # start-up log's "KV cache:" line), and the official client's greedy answers follow the float32 cache's, with
    # the scales at 1 and calculated from the first request.
    def serve(*args):
        s = Server("--kv-cache-memory-bytes", str(16 << 20), *args)
        try:
            blocks = int(re.search(r"KV cache: (\d+) blocks", s.read_log()).group(1))
            r = client(s).completions.create(model="test-model", prompt="The capital of France is", max_tokens=8,
                                             temperature=0)
            chat = client(s).chat.completions.create(
                model="test-model", messages=[{"role": "user", "content": "Name three colors."}], max_tokens=16,
                temperature=0, stream=True)
            streamed = "".join(c.choices[0].delta.content or "" for c in chat if c.choices)
            return blocks, r.choices[0].text, r.usage.completion_tokens, streamed
        finally:
            assert s.stop() == 0, s.read_log()

    f32_blocks, f32_text, _, f32_chat = serve()
    fp8_blocks, fp8_text, fp8_tokens, fp8_chat = serve("--kv-cache-dtype", "fp8")
    assert fp8_blocks in range(4 * f32_blocks, 4 * f32_blocks + 4), (f32_blocks, fp8_blocks)
    assert fp8_tokens == 8 and "Paris" in fp8_text, fp8_text
    assert fp8_chat and fp8_chat.split()[:3] == f32_chat.split()[:3], (fp8_chat, f32_chat)
    assert fp8_text.split()[:3] == f32_text.split()[:3], (fp8_text, f32_text)
    # --calculate-kv-scales: the scales from the first request's prompt (vLLM's flag) instead of 1. That prompt's
    # five tokens set them here, the later request's values round otherwise than at scale 1, and its greedy text
    # may part from float32's at a near-tie: the answers' first words are compared (the logits' bound is
    # tests/unit/test_kv_fp8.cpp's).
    calc_blocks, calc_text, calc_tokens, calc_chat = serve("--kv-cache-dtype", "fp8", "--calculate-kv-scales")
    assert calc_blocks == fp8_blocks and calc_tokens == 8 and "Paris" in calc_text, calc_text
    assert calc_chat and calc_chat.split()[:1] == f32_chat.split()[:1], (calc_chat, f32_chat)
