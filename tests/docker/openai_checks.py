"""Requests against the ember container, through the official openai client.

Run by tests/docker/test_docker.sh with EMBER_TEST_PORT, EMBER_TEST_KEY and
EMBER_TEST_CONTAINER set. The last check stops the container while a streamed
request is running: a graceful drain lets that request finish in full.
"""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai

PORT = int(os.environ["EMBER_TEST_PORT"])
KEY = os.environ["EMBER_TEST_KEY"]
CONTAINER = os.environ["EMBER_TEST_CONTAINER"]
BASE = f"http://127.0.0.1:{PORT}"


def check(cond, message):
    if not cond:
        sys.exit(f"openai_checks: FAIL: {message}")


def main():
    client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=120)

    models = [m.id for m in client.models.list().data]
    check(len(models) == 1, f"/v1/models lists {models}")
    model = models[0]

    r = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
    text = r.choices[0].text
    check(r.usage.completion_tokens == 8 or r.choices[0].finish_reason == "stop", f"completion usage {r.usage}")
    check(len(text) > 0, "empty completion")
    print(f"  completion: {text!r} ({r.usage.prompt_tokens} prompt, {r.usage.completion_tokens} generated tokens)")

    # Greedy decoding is deterministic: the same request gives the same text.
    again = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
    check(again.choices[0].text == text, f"greedy completion differs: {again.choices[0].text!r} vs {text!r}")

    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0
    )
    check(chat.choices[0].message.role == "assistant", "chat reply is not from the assistant")
    check(len(chat.choices[0].message.content) > 0, "empty chat reply")
    print(f"  chat: {chat.choices[0].message.content!r}")

    try:
        openai.OpenAI(base_url=f"{BASE}/v1", api_key="wrong-key", max_retries=0).models.list()
        check(False, "a wrong API key was accepted")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, f"wrong key: status {e.status_code}")
    with urllib.request.urlopen(f"{BASE}/health", timeout=10) as h:  # /health stays open without a key
        check(h.status == 200, f"/health answered {h.status}")
    print("  API key: 401 with a wrong key, /health open")

    # docker stop while a stream runs: the server stops accepting, finishes the
    # running request (drain), then exits 0.
    want = 128
    stream = client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=want, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    )
    pieces, finish, stopper, usage = [], None, None, None
    for chunk in stream:
        usage = chunk.usage or usage
        if not chunk.choices:
            continue
        pieces.append(chunk.choices[0].text)
        finish = chunk.choices[0].finish_reason or finish
        if stopper is None:
            stopper = subprocess.Popen(["docker", "stop", "-t", "90", CONTAINER], stdout=subprocess.DEVNULL)
            stopped_at = time.monotonic()
    check(stopper is not None, "the stream produced no chunk")
    check(finish == "length", f"the streamed request ended with finish_reason={finish!r} after docker stop")
    check(usage is not None and usage.completion_tokens == want, f"streamed usage {usage}, {want} tokens expected")
    print(f"  docker stop during a stream: the request finished ({usage.completion_tokens} tokens, finish_reason=length)")
    check(stopper.wait(timeout=120) == 0, "docker stop failed")
    print(f"  docker stop returned {time.monotonic() - stopped_at:.1f} s after it was sent")

    try:
        urllib.request.urlopen(f"{BASE}/health", timeout=5)
        check(False, "the server still answers after docker stop")
    except (urllib.error.URLError, ConnectionError):
        pass


if __name__ == "__main__":
    main()
