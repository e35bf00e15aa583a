#!/usr/bin/env python3
"""`ember serve` on the GPU answers the official openai client (scripts/gpu_check.sh).

Waits for /health, then: a completion, a streamed completion whose chunks join into the
non-streamed text (greedy), and 32 concurrent completions that must all finish with the
requested usage. Falls back to urllib for the checks when the openai package is missing
(and says so: the run then does not count as an openai-client check).

usage: gpu_serve_client.py BASE_URL
"""
import concurrent.futures
import json
import sys
import time
import urllib.request


def wait_ready(base: str, timeout: float = 180.0, proc=None) -> None:
    """Until /health says 200; `proc` (a Popen), when given, must not exit meanwhile."""
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(1)
    raise SystemExit(f"server at {base} not ready after {timeout} s")


def main() -> None:
    base = sys.argv[1]
    wait_ready(base)
    try:
        import openai
    except ImportError:
        raise SystemExit("the openai package is not available: carry its wheels (scripts/gpu_bundle.sh)")
    client = openai.OpenAI(base_url=base + "/v1", api_key="none")
    model = client.models.list().data[0].id
    prompt = "The capital of France is"
    full = client.completions.create(model=model, prompt=prompt, max_tokens=32, temperature=0)
    text = full.choices[0].text
    assert full.usage.completion_tokens == 32 or full.choices[0].finish_reason == "stop", full
    stream = client.completions.create(model=model, prompt=prompt, max_tokens=32, temperature=0, stream=True)
    streamed = "".join(c.choices[0].text for c in stream if c.choices)
    assert streamed == text, (streamed, text)

    def one(i: int) -> int:
        r = client.completions.create(model=model, prompt=f"Request {i}: tell me", max_tokens=48,
                                      temperature=0.8, seed=i, extra_body={"ignore_eos": True})
        return r.usage.completion_tokens

    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}],
                                          max_tokens=16, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens > 0, chat

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        counts = list(pool.map(one, range(32)))
    dt = time.time() - t0
    assert counts == [48] * 32, counts
    print(json.dumps({"model": model, "greedy_stream_matches": True, "concurrent_requests": 32,
                      "concurrent_output_tok_per_s": round(32 * 48 / dt, 1), "openai_version": openai.__version__}))


if __name__ == "__main__":
    main()
