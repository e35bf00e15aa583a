"""`ember bench`: runs against a real `ember serve` (tiny dummy model), against a mock SSE
server whose misbehaviours are known, and against a port with no server; the HTML report
is rendered in headless Chromium. Every field of --result-json is checked for consistency."""
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from server_util import BUILD, EMBER, MODEL, Server, free_port

MOCK = BUILD / "mock_sse_server"
DISTRIBUTIONS = ("ttft", "tpot", "itl", "e2el")


def bench(*args, timeout=60):
    assert EMBER.exists(), f"{EMBER} is not built"
    return subprocess.run([str(EMBER), "bench", "serve", "--no-progress", *args], capture_output=True, text=True,
                          timeout=timeout)


def check_result(r, num_prompts, percentiles=("p90", "p95", "p99")):
    """Every field present, and the numbers agree with one another."""
    assert r["num_prompts"] == num_prompts
    assert r["completed"] + r["failed"] == num_prompts
    for key in ("date", "backend", "base_url", "endpoint", "model_id", "dataset", "request_rate", "burstiness",
                "max_concurrency", "seed", "duration", "total_input_tokens", "total_output_tokens",
                "usage_from_server", "request_throughput", "request_goodput", "output_throughput",
                "total_token_throughput", "max_output_tokens_per_s", "max_concurrent_requests", "failure_reasons",
                "input_lens", "output_lens", "ttfts", "itls", "errors", "requests"):
        assert key in r, key
    for d in DISTRIBUTIONS:
        for stat in ("mean", "median", "std", "min", "max", *percentiles):
            assert f"{stat}_{d}_ms" in r, f"{stat}_{d}_ms"
    reqs = r["requests"]
    assert len(reqs) == num_prompts
    assert [q["index"] for q in reqs] == list(range(num_prompts))
    ok = [q for q in reqs if q["success"]]
    assert len(ok) == r["completed"]
    assert sum(1 for q in reqs if not q["success"]) == r["failed"]
    assert sum(q["output_tokens"] for q in ok) == r["total_output_tokens"] == sum(r["output_lens"])
    assert sum(q["prompt_tokens"] for q in ok) == r["total_input_tokens"]
    assert r["errors"] == [q["error"] for q in reqs]
    reasons = {}
    for q in reqs:
        if not q["success"]:
            assert q["error"], q
            reasons[q["error"]] = reasons.get(q["error"], 0) + 1
    assert r["failure_reasons"] == reasons
    for q in ok:
        assert 0 <= q["ttft_s"] <= q["latency_s"], q
        assert q["error"] == ""
        assert len(q["itl_s"]) == q["content_chunks"] - 1
        # The chunks tile the stream: TTFT + every gap ends at the last chunk, before the stream ends.
        assert q["ttft_s"] + sum(q["itl_s"]) <= q["latency_s"] + 1e-6
        if q["output_tokens"] > 1:
            assert q["tpot_s"] == pytest.approx((q["latency_s"] - q["ttft_s"]) / (q["output_tokens"] - 1))
    if r["completed"]:
        d = r["duration"]
        assert d > 0
        assert r["request_throughput"] == pytest.approx(r["completed"] / d)
        assert r["output_throughput"] == pytest.approx(r["total_output_tokens"] / d)
        assert r["total_token_throughput"] == pytest.approx((r["total_input_tokens"] + r["total_output_tokens"]) / d)
        ttfts = sorted(q["ttft_s"] * 1000 for q in ok)
        assert r["min_ttft_ms"] == pytest.approx(ttfts[0]) and r["max_ttft_ms"] == pytest.approx(ttfts[-1])
        assert r["mean_ttft_ms"] == pytest.approx(sum(ttfts) / len(ttfts))
        assert r["min_ttft_ms"] <= r["median_ttft_ms"] <= r["p99_ttft_ms"] <= r["max_ttft_ms"]
        assert r["mean_e2el_ms"] == pytest.approx(sum(q["latency_s"] for q in ok) * 1000 / len(ok))
        assert 1 <= r["max_concurrent_requests"] <= num_prompts
        for q in ok:  # every request ran inside the run
            assert q["start_s"] >= 0 and q["start_s"] + q["latency_s"] <= d + 1e-3


@pytest.fixture(scope="module")
def tiny():
    s = Server(tiny=True)
    yield s
    s.stop()


def test_bench_serve_against_ember(tiny, tmp_path):
    gen_before = tiny.metric("ember:generation_tokens_total")
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    p = bench("--base-url", tiny.base_url, "--model", "test-model", "--num-prompts", "12", "--random-input-len", "24",
              "--random-output-len", "6", "--max-concurrency", "4", "--percentiles", "50,99.9", "--goodput",
              "ttft:60000", "--goodput", "e2el:60000", "--result-json", str(out_json), "--report-html", str(out_html))
    assert p.returncode == 0, p.stderr + p.stdout
    assert "Serving Benchmark Result" in p.stdout and "Mean TTFT (ms):" in p.stdout
    r = json.loads(out_json.read_text())
    check_result(r, 12, percentiles=("p50", "p90", "p95", "p99", "p99.9"))
    assert r["completed"] == 12 and r["failed"] == 0
    assert r["usage_from_server"] is True
    assert r["max_concurrency"] == 4 and r["max_concurrent_requests"] <= 4
    # ignore_eos: outputs are exactly as long as asked; prompts exactly as long as asked under the
    # server's tokenizer (usage.prompt_tokens, counted by the server itself).
    for q in r["requests"]:
        assert q["usage_from_server"] and q["output_tokens"] == q["max_tokens"] == 6
        assert q["prompt_tokens"] == q["prompt_len"] == 24
    assert r["total_output_tokens"] == 72
    # The server generated exactly what the client counted.
    assert tiny.metric("ember:generation_tokens_total") - gen_before == r["total_output_tokens"]
    assert r["request_goodput"] == pytest.approx(r["request_throughput"])  # generous SLOs: every request is good
    html = out_html.read_text()
    for plot in ("ttft_cdf", "tpot_cdf", "latency_over_time", "throughput_over_time", "concurrency_over_time"):
        assert f'id="{plot}"' in html


def test_bench_chat_poisson_and_range_ratio(tiny, tmp_path):
    out_json = tmp_path / "r.json"
    p = bench("--base-url", tiny.base_url, "--endpoint", "/v1/chat/completions", "--num-prompts", "8",
              "--random-input-len", "20", "--random-output-len", "5", "--random-range-ratio", "0.5",
              "--request-rate", "40", "--burstiness", "0.5", "--seed", "3", "--result-json", str(out_json))
    assert p.returncode == 0, p.stderr + p.stdout
    r = json.loads(out_json.read_text())
    check_result(r, 8)
    assert r["model_id"] == "test-model"  # taken from GET /v1/models
    assert r["request_rate"] == 40 and r["burstiness"] == 0.5 and r["backend"] == "openai-chat"
    scheduled = [q["scheduled_s"] for q in r["requests"]]
    assert scheduled == sorted(scheduled) and scheduled[0] == 0 and scheduled[-1] > 0  # Poisson times, spread out
    for q in r["requests"]:
        assert q["start_s"] >= q["scheduled_s"] - 1e-3  # never sent before its time
    for q in r["requests"]:
        assert 10 <= q["prompt_len"] <= 30 and 2 <= q["max_tokens"] <= 8
        assert q["output_tokens"] == q["max_tokens"]
        assert q["prompt_tokens"] > q["prompt_len"]  # the chat template adds tokens


def test_bench_no_server_fails_every_request_without_hanging(tmp_path):
    out_json = tmp_path / "r.json"
    t0 = time.time()
    p = bench("--base-url", f"http://127.0.0.1:{free_port()}", "--tokenizer", str(MODEL), "--num-prompts", "5",
              "--random-input-len", "8", "--random-output-len", "4", "--timeout", "10", "--result-json", str(out_json))
    assert time.time() - t0 < 30
    assert p.returncode != 0
    r = json.loads(out_json.read_text())
    check_result(r, 5)
    assert r["completed"] == 0 and r["failed"] == 5
    assert all("Connection" in q["error"] for q in r["requests"]), r["errors"]
    assert "Failures:" in p.stdout


@contextlib.contextmanager
def running_mock(*args):
    """The mock SSE server with `args`, until the block ends; yields its base URL once it answers."""
    assert MOCK.exists(), f"{MOCK} is not built"
    port = free_port()
    proc = subprocess.Popen([str(MOCK), "--port", str(port), *args], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def mock():
    with running_mock("--tokens-per-s", "500") as url:
        yield url


def test_bench_reports_each_kind_of_failure(mock, tmp_path):
    prompts = tmp_path / "p.jsonl"
    lines = ["fine prompt one", "HTTP500 x", "MALFORMED x", "TRUNCATE x", "NOUSAGE x", "fine prompt two"]
    prompts.write_text("".join(json.dumps({"prompt": t, "max_tokens": 6}) + "\n" for t in lines))
    out_json = tmp_path / "r.json"
    p = bench("--base-url", mock, "--dataset", "jsonl", "--dataset-path", str(prompts), "--num-prompts", "6",
              "--result-json", str(out_json))
    assert p.returncode == 1, p.stderr + p.stdout
    r = json.loads(out_json.read_text())
    check_result(r, 6)
    q = r["requests"]
    assert q[0]["success"] and q[5]["success"] and q[0]["output_tokens"] == 6 and q[0]["usage_from_server"]
    assert q[1]["error"].startswith("HTTP 500") and q[1]["http_status"] == 500
    assert q[2]["error"].startswith("malformed stream")
    assert q[3]["error"] == "stream ended without data: [DONE]"
    # No usage: counted chunks stand in, and the run says so.
    assert q[4]["success"] and not q[4]["usage_from_server"] and q[4]["output_tokens"] == 6
    assert r["usage_from_server"] is False and "no usage" in p.stdout
    assert r["completed"] == 3 and r["failed"] == 3
    # One token every 2 ms: the client's gaps agree.
    assert r["median_itl_ms"] == pytest.approx(2.0, abs=1.0)


def test_bench_sweep_over_concurrency(mock, tmp_path):
    out_json, out_html = tmp_path / "s.json", tmp_path / "s.html"
    p = subprocess.run([str(EMBER), "bench", "sweep", "--no-progress", "--base-url", mock, "--tokenizer", str(MODEL),
                        "--num-prompts", "8", "--random-input-len", "16", "--random-output-len", "10",
                        "--max-concurrencies", "1,4", "--result-json", str(out_json), "--report-html", str(out_html)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr + p.stdout
    s = json.loads(out_json.read_text())
    assert s["swept"] == "max-concurrency" and [run["max_concurrency"] for run in s["runs"]] == [1, 4]
    for run in s["runs"]:
        check_result(run, 8)
        assert run["completed"] == 8 and run["total_output_tokens"] == 80
    assert s["runs"][0]["max_concurrent_requests"] == 1
    assert s["runs"][1]["output_throughput"] > 2 * s["runs"][0]["output_throughput"]
    html = out_html.read_text()
    assert 'id="sweep_ttft"' in html and 'id="sweep_e2e"' in html


def test_bench_clock_reads_the_servers_ttft(tmp_path):
    # A mock that sends its first token exactly 50 ms after the request arrived: ember bench's TTFT must read 50 ms
    # (loopback costs microseconds). Before TCP_NODELAY on the client it read ~90 ms: httplib wrote the
    # headers and the body in two writes, and the body waited for the server's delayed ACK.
    with running_mock("--tokens-per-s", "1000", "--ttft-ms", "50") as url:
        out_json = tmp_path / "r.json"
        p = bench("--base-url", url, "--tokenizer", str(MODEL), "--num-prompts", "20", "--max-concurrency", "1",
                  "--random-input-len", "64", "--random-output-len", "4", "--result-json", str(out_json))
        assert p.returncode == 0, p.stderr + p.stdout
        r = json.loads(out_json.read_text())
        check_result(r, 20)
        ttfts = sorted(q["ttft_s"] * 1000 for q in r["requests"])
        # Quiet, the median reads 50.3 ms; a delayed ACK would add ~40 ms to every request, a busy core a few ms to
        # some of them.
        assert 50.0 <= r["median_ttft_ms"] < 55.0 and ttfts[0] >= 50.0, ttfts


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("headless Chromium is needed: apt-get install chromium")


def test_html_report_renders_in_headless_chromium(tiny, tmp_path):
    out_html = tmp_path / "report.html"
    p = bench("--base-url", tiny.base_url, "--num-prompts", "6", "--random-input-len", "16", "--random-output-len",
              "4", "--report-html", str(out_html))
    assert p.returncode == 0, p.stderr + p.stdout
    assert out_html.stat().st_size < 300_000
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path}/ud"]
    c = subprocess.run([chromium(), *flags, f"--screenshot={shot}", "--window-size=1280,1600", out_html.as_uri()],
                       capture_output=True, timeout=60)
    assert shot.exists() and shot.stat().st_size > 10_000, c.stderr[-2000:]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", out_html.as_uri()], capture_output=True, text=True,
                         timeout=60).stdout
    # The DOM as Chromium parsed it: every plot is an SVG element with drawn data in it.
    for plot in ("ttft_cdf", "tpot_cdf", "latency_over_time", "throughput_over_time", "concurrency_over_time"):
        start = dom.find(f'id="{plot}"')
        assert start >= 0, plot
        body = dom[start:dom.find("</svg>", start)]
        assert "<polyline" in body or "<circle" in body, plot
    assert dom.count("<svg") == 5
    # A blank page would be one colour: the plots make the screenshot varied.
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_throughput_offline_engine(tmp_path):
    """`ember bench throughput`: the engine without HTTP, on the tiny dummy model."""
    from server_util import TINY_CONFIG
    out_json = tmp_path / "t.json"
    p = subprocess.run([str(EMBER), "bench", "throughput", "--model", str(TINY_CONFIG), "--load-format", "dummy",
                        "--tokenizer", str(MODEL), "--num-prompts", "6", "--random-input-len", "12",
                        "--random-output-len", "5", "--result-json", str(out_json)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out_json.read_text())
    assert r["num_requests"] == 6 and r["total_output_tokens"] == 30  # ignore_eos: 5 each
    assert r["total_prompt_tokens"] == 72  # exact lengths under the model's tokenizer
    assert r["total_num_tokens"] == 102
    assert r["output_tokens_per_second"] == pytest.approx(30 / r["elapsed_time"])
    assert "Throughput:" in p.stdout


def test_bench_throughput_takes_the_engines_number_formats(tmp_path):
    """`ember bench throughput` runs the engine with `ember serve`'s --dtype, --quantization and --kv-cache-dtype
    (scripts/gpu_check.sh compares FP8 weights and caches this way), and refuses what the device cannot run."""
    from server_util import TINY_CONFIG
    base = [str(EMBER), "bench", "throughput", "--model", str(TINY_CONFIG), "--load-format", "dummy",
            "--tokenizer", str(MODEL), "--num-prompts", "3", "--random-input-len", "12", "--random-output-len", "4",
            "--device", "cpu"]
    p = subprocess.run(base + ["--dtype", "float32", "--kv-cache-dtype", "fp8", "--kv-cache-memory-bytes",
                               str(8 << 20), "--result-json", str(tmp_path / "t.json")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "fp8 e4m3" in p.stdout + p.stderr
    assert json.loads((tmp_path / "t.json").read_text())["total_output_tokens"] == 12
    p = subprocess.run(base + ["--quantization", "fp8"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "--quantization fp8 needs an NVIDIA GPU" in p.stdout + p.stderr, p.stderr[-2000:]
