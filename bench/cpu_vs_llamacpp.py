"""`ember serve` beside llama.cpp's `llama-server` on the CPU: same GGUF, same clients, one run, with ratios.

The peer is built here from source: the llama.cpp that the PyPI sdist of llama-cpp-python vendors (`pip download
--no-deps --no-binary :all:`, no network beyond PyPI), configured with cmake (Release, -DGGML_NATIVE=ON: it is
measured on the machine that builds it) and only its llama-server target built. Sdist, sources and build are
cached in ~/.cache/ember/peers ($EMBER_PEER_CACHE), so a rerun starts measuring at once.

Measured on each server (the same requests to both, both rendering the chat template stored in the GGUF):
- batch-1 decode: a streamed greedy chat completion of --tokens tokens (ignore_eos) through the `openai` client;
  tokens/s from the first content chunk to the last, (completion_tokens - 1) / time; median over repetitions;
- prefill: a --prompt-tokens prompt (chat template included) that no cache holds (a nonce opens every prompt,
  and llama-server gets cache_prompt false), max_tokens 1, not streamed; prompt_tokens / time to the response;
- batched: `ember bench serve` with --concurrency streams (chat endpoint, random prompts, ignore_eos), output
  tokens/s; llama-server gets that many slots (-np) and a context of slots x --slot-context.
The servers share the cores, so only one runs at a time: each round starts one, measures everything, stops it and
does the same with the other, the order alternating between rounds; a ratio is the median of the rounds' own ratios,
so drift hits both sides alike. Other processes matter more than drift on a small machine: each sample waits for the
rest of the machine to be quiet, counts the CPU others took during it, and is taken again when that passes
--quiet-cores; one still disturbed after --retries is marked and left out of medians and ratios.

    .venv/bin/python bench/cpu_vs_llamacpp.py [--rounds 3] [--result-json bench/results/DATE-cpu-vs-llamacpp.json]
"""
import argparse
import ctypes
import hashlib
import itertools
import json
import os
import pathlib
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

import openai

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/integration"))
from server_util import EMBER, MODEL, free_port  # noqa: E402

PEER_CACHE = pathlib.Path(os.environ.get("EMBER_PEER_CACHE", pathlib.Path.home() / ".cache/ember/peers"))
DECODE_PROMPT = "Tell me a long story about a lighthouse keeper and the ships she guided home."
WORDS = ("the river valley morning light carried quiet voices across old stone bridges where merchants traded salt "
         "wool copper and grain while children watched boats drift toward distant harbors under grey northern "
         "clouds").split()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout):
    log("$ " + " ".join(map(str, cmd)))
    try:
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"timed out after {timeout} s: {' '.join(map(str, cmd))}")
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def build_llama_server(version, jobs):
    """llama.cpp as vendored in the llama-cpp-python sdist of `version`: download once, extract vendor/llama.cpp
    once, configure and build the llama-server target (incrementally after an interrupted build); a rerun finds
    the binary and returns at once."""
    name = f"llama_cpp_python-{version}"
    src = PEER_CACHE / name / "vendor/llama.cpp"
    build = PEER_CACHE / f"{name}-build"
    binary = build / "bin/llama-server"
    commit_file = PEER_CACHE / name / "llama.cpp.commit"
    configure = ["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
                 "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                 "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_UI=OFF",
                 "-DLLAMA_USE_PREBUILT_UI=OFF"] + (["-G", "Ninja"] if shutil.which("ninja") else [])
    make = ["cmake", "--build", build, "--target", "llama-server", "-j", str(jobs)]
    download = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                f"llama-cpp-python=={version}", "-d", PEER_CACHE]
    info = {"sdist": f"llama-cpp-python=={version}", "download": " ".join(map(str, download)),
            "configure": " ".join(map(str, configure)), "build": " ".join(map(str, make))}
    if not binary.exists():
        if shutil.which("cmake") is None:
            sys.exit("cmake is needed to build llama-server (apt-get install cmake)")
        PEER_CACHE.mkdir(parents=True, exist_ok=True)
        sdist = PEER_CACHE / f"{name}.tar.gz"
        if not sdist.exists():
            run(download, timeout=900)
            if not sdist.exists():
                sys.exit(f"pip download did not leave {sdist}")
        if not (src / "CMakeLists.txt").exists():
            log(f"extracting {name}/vendor/llama.cpp from {sdist.name}")
            with tarfile.open(sdist) as tar:
                members = [m for m in tar.getmembers() if m.name.startswith(f"{name}/vendor/llama.cpp/")]
                if not members:
                    sys.exit(f"{sdist} holds no vendor/llama.cpp")
                tar.extractall(PEER_CACHE, members=members, filter="data")
                head = f"{name}/.git/modules/vendor/llama.cpp/HEAD"  # the submodule's commit
                try:
                    commit_file.write_text(tar.extractfile(head).read().decode())
                except KeyError:
                    commit_file.write_text("unknown\n")
        run(configure, timeout=900)
        log(f"building llama-server with {jobs} jobs (about 15 minutes on 2 cores)")
        run(make, timeout=7200)
        if not binary.exists():
            sys.exit(f"the build finished without {binary}")
    info["llama_cpp_commit"] = commit_file.read_text().strip() if commit_file.exists() else "unknown"
    info["binary"] = str(binary)
    return binary, info


def busy_ticks():
    """CPU ticks spent busy on the whole machine since boot (all cores)."""
    v = [int(x) for x in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(v[:8]) - v[3] - v[4]  # user..steal, less idle and iowait


def own_ticks(pid):
    """CPU ticks of this script and its waited-for children (ember bench serve) plus those of process `pid`."""
    t = os.times()
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK") + \
        sum(int(x) for x in fields[11:15])


def wait_for_quiet(max_busy, timeout, pid, sample_s=1):
    """Wait until the rest of the machine (all but process `pid`, an idle server, and this script) uses less than
    `max_busy` cores over `sample_s` seconds. Returns the last sample."""
    hz, start = os.sysconf("SC_CLK_TCK"), time.monotonic()
    for i in itertools.count():
        b0, o0 = busy_ticks(), own_ticks(pid)
        time.sleep(sample_s)
        busy = ((busy_ticks() - b0) - (own_ticks(pid) - o0)) / hz / sample_s
        if busy < max_busy or time.monotonic() > start + timeout:
            if busy >= max_busy:
                log(f"the machine is still busy ({busy:.2f} cores) after {timeout} s; measuring anyway")
            return busy
        if i % (30 // sample_s) == 0:
            log(f"waiting for a quiet machine: others use {busy:.2f} cores")


def die_with_parent():
    """In the child before exec: SIGTERM it when this script dies, even by SIGKILL (Linux), so no server outlives
    a killed run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class ServerProcess:
    """One server on 127.0.0.1:port, logging to a file; ready when GET /health answers 200. A context manager that
    always stops it: SIGTERM, then SIGKILL after `stop_timeout` seconds."""

    def __init__(self, name, cmd, port, log_path, ready_timeout=180, stop_timeout=30):
        self.name, self.cmd, self.port, self.log_path = name, [str(c) for c in cmd], port, log_path
        self.ready_timeout, self.stop_timeout = ready_timeout, stop_timeout
        self.proc = None

    def __enter__(self):
        log(f"starting {self.name}: {' '.join(self.cmd)}")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=die_with_parent)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"exited with {self.proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.25)
        self.fail(f"not healthy after {self.ready_timeout} s")

    def __exit__(self, *exc):
        self.stop()

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} ignored SIGTERM for {self.stop_timeout} s; killing it")
            self.proc.kill()
            self.proc.wait()

    def fail(self, why):
        self.stop()
        tail = pathlib.Path(self.log_path).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} {why}; end of {self.log_path}:\n{tail}")


def server_commands(a, llama_server, port):
    threads = str(a.threads)
    return {
        "ember": [EMBER, "serve", "--device", "cpu", "--model", MODEL, "--host", "127.0.0.1", "--port", port,
                  "--num-threads", threads],
        "llama-server": [llama_server, "--model", MODEL, "--host", "127.0.0.1", "--port", port, "--jinja",
                         "--threads", threads, "--threads-batch", threads, "--parallel", a.concurrency,
                         "--ctx-size", a.concurrency * a.slot_context],
    }


def client_for(server, timeout):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="none", timeout=timeout, max_retries=0)
    return client, client.models.list().data[0].id


def no_cache_fields(name):
    """What tells each server not to reuse a cached prefix (the nonce that opens each prompt already defeats it)."""
    return {"cache_prompt": False} if name == "llama-server" else {}


def decode_once(client, model, tokens):
    t0 = time.perf_counter()
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": DECODE_PROMPT}], max_tokens=tokens, temperature=0,
        stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    first = last = usage = None
    chunks = 0
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
            chunks += 1
    n = usage.completion_tokens if usage else chunks
    if n != tokens or first is None or last == first:
        raise RuntimeError(f"decode run gave {n} tokens in {chunks} chunks, asked {tokens} with ignore_eos")
    return {"tok_s": (n - 1) / (last - first), "ttft_s": first - t0, "completion_tokens": n, "chunks": chunks}


def prompt_messages(nonce, words):
    body = " ".join(WORDS[i % len(WORDS)] for i in range(words))
    return [{"role": "system", "content": f"Session {nonce:06d}. You are a careful reader."},
            {"role": "user", "content": f"Summarize this passage in one word: {body}"}]


def prefill_once(client, model, messages, fields):
    t0 = time.perf_counter()
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=1, temperature=0,
                                       extra_body=fields)
    seconds = time.perf_counter() - t0
    details = r.usage.prompt_tokens_details
    return {"tok_s": r.usage.prompt_tokens / seconds, "seconds": seconds, "prompt_tokens": r.usage.prompt_tokens,
            "cached_tokens": details.cached_tokens if details else None}


def calibrate_words(client, model, fields, target, nonces):
    """The passage length (in words) whose prompt is `target` tokens under the server's template and tokenizer
    (the same GGUF for both servers), found from the usage the server reports."""
    words = target // 2
    for _ in range(6):
        n = prefill_once(client, model, prompt_messages(next(nonces), words), fields)["prompt_tokens"]
        if n == target:
            return words
        words += max(1, round((target - n) * 0.8)) if n < target else -max(1, round((n - target) * 0.8))
    for _ in range(40):  # one word at a time to land on the count, or the nearest below it
        n = prefill_once(client, model, prompt_messages(next(nonces), words), fields)["prompt_tokens"]
        if n == target:
            return words
        if n > target:
            words -= 1
        else:
            nxt = prefill_once(client, model, prompt_messages(next(nonces), words + 1), fields)["prompt_tokens"]
            if nxt > target:
                return words
            words += 1
    return words


def batched_once(server, a, workdir, tag, state):
    """One `ember bench serve` run. A retry on the same server draws other prompts (the seed counts the runs this
    server has had): both servers keep prompts they have seen, and a repeat would skip its prefill."""
    server.batched_runs = getattr(server, "batched_runs", 0) + 1
    seed = server.batched_runs - 1
    out = pathlib.Path(workdir) / f"bench-{tag}-{seed}.json"
    cmd = [EMBER, "bench", "serve", "--no-progress", "--base-url", server.base_url,
           "--endpoint", "/v1/chat/completions", "--dataset", "random", "--tokenizer", MODEL,
           "--random-input-len", a.batch_input_len, "--random-output-len", a.batch_output_len,
           "--num-prompts", a.batch_prompts, "--max-concurrency", a.concurrency, "--request-rate", "inf",
           "--seed", seed, "--timeout", a.request_timeout, "--result-json", out]
    run(cmd, timeout=3600)
    r = json.loads(out.read_text())
    if r["completed"] != a.batch_prompts:
        raise RuntimeError(f"ember bench serve completed {r['completed']} of {a.batch_prompts} requests")
    state["bench_command"] = " ".join(map(str, cmd[:-1] + ["RESULT.json"])).replace(server.base_url,
                                                                                      "http://127.0.0.1:PORT")
    return {k: r[k] for k in ("output_throughput", "total_token_throughput", "request_throughput", "duration",
                              "mean_ttft_ms", "median_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "total_input_tokens",
                              "total_output_tokens") if k in r}


def guarded(fn, server, a, what):
    """fn() on a quiet machine: it waits for quiet first, and a sample during which the rest of the machine took more
    than --quiet-cores (other processes than the server, this script and its load tester) is taken again, up to
    --retries times; then the least disturbed one is kept, marked `disturbed`. Each sample keeps `others_cores`,
    that CPU in cores (near 0: clean). Positive-nice processes count too: a build at nice 10 that only fills the
    idle gaps of servers at nice -10 still cut ember's batch-1 decode from 62 to 40 tok/s here."""
    hz, tried, pid = os.sysconf("SC_CLK_TCK"), [], server.proc.pid
    for attempt in range(a.retries + 1):
        wait_for_quiet(a.quiet_cores, a.quiet_timeout, pid)
        t0, busy0, own0 = time.monotonic(), busy_ticks(), own_ticks(pid)
        r = fn()
        others = ((busy_ticks() - busy0) - (own_ticks(pid) - own0)) / hz / (time.monotonic() - t0)
        r["others_cores"] = round(others, 3)
        if others <= a.quiet_cores:
            return r
        tried.append(r)
        log(f"{server.name} {what}: other processes took {others:.2f} cores meanwhile; "
            + ("taking it again" if attempt < a.retries else "keeping the least disturbed try, marked"))
    best = min(tried, key=lambda x: x["others_cores"])
    best["disturbed"] = True
    return best


def measure(name, server, a, state, workdir, rnd):
    """Every figure for one server, each sample guarded against other processes' load."""
    client, model = client_for(server, a.request_timeout)
    fields = no_cache_fields(name)
    decode_once(client, model, 16)  # warm-up: threads, pages, caches
    if state.get("words") is None:
        log(f"calibrating a {a.prompt_tokens}-token prompt on {name}")
        state["words"] = calibrate_words(client, model, fields, a.prompt_tokens, state["nonces"])
    rec = {"round": rnd, "server": name, "model_id": model}
    rec["decode"] = [guarded(lambda: decode_once(client, model, a.tokens), server, a, "decode")
                     for _ in range(a.decode_reps)]
    log(f"{name} decode tok/s: " + ", ".join(f"{d['tok_s']:.1f}" for d in rec["decode"]))
    rec["prefill"] = [guarded(lambda: prefill_once(client, model, prompt_messages(next(state["nonces"]),
                                                                                  state["words"]), fields),
                              server, a, "prefill") for _ in range(a.prefill_reps)]
    log(f"{name} prefill tok/s: " + ", ".join(f"{p['tok_s']:.1f} ({p['prompt_tokens']} tokens)"
                                             for p in rec["prefill"]))
    rec["batched"] = guarded(lambda: batched_once(server, a, workdir, f"{name}-{rnd}", state), server, a, "batched")
    log(f"{name} {a.concurrency} streams: {rec['batched']['output_throughput']:.1f} output tok/s")
    samples = rec["decode"] + rec["prefill"] + [rec["batched"]]
    rec["others_cores_max"] = max(x["others_cores"] for x in samples)
    return rec


def machine():
    model = platform.processor() or "cpu"
    flags = set()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("cpu", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni")
            if f in flags]
    return f"{platform.machine()}, {os.cpu_count()} cores, {model}, {' '.join(simd)}"


FIGURES = {  # key: (samples of a round's record, value of one sample)
    "batch1_decode_tok_s": (lambda r: r["decode"], lambda d: d["tok_s"]),
    "batch1_ttft_ms": (lambda r: r["decode"], lambda d: d["ttft_s"] * 1000),
    "prefill_tok_s": (lambda r: r["prefill"], lambda p: p["tok_s"]),
    "prefill_prompt_tokens": (lambda r: r["prefill"], lambda p: p["prompt_tokens"]),
    "batched_output_tok_s": (lambda r: [r["batched"]], lambda b: b["output_throughput"]),
    "batched_total_tok_s": (lambda r: [r["batched"]], lambda b: b["total_token_throughput"]),
    "batched_median_tpot_ms": (lambda r: [r["batched"]], lambda b: b["median_tpot_ms"]),
}


def clean_median(samples, value):
    """The median over undisturbed samples; over all of them where every one was disturbed; None for none."""
    kept = [x for x in samples if not x.get("disturbed")] or samples
    return statistics.median(value(x) for x in kept) if kept else None


def summarize(rounds):
    """Per server, each figure's median over all rounds' samples; and the ratio ember / llama-server as the median of
    the rounds' own ratios: a round measures both back to back, so a machine that slows down for a while (other
    guests on the host: invisible here) moves both sides of a round's ratio alike."""
    med, ratio = {}, {}
    for name in ("ember", "llama-server"):
        mine = [r for r in rounds if r["server"] == name]
        med[name] = {k: clean_median([x for r in mine for x in samples(r)], value)
                     for k, (samples, value) in FIGURES.items()}
        med[name]["disturbed_samples"] = sum(bool(x.get("disturbed")) for r in mine
                                             for x in r["decode"] + r["prefill"] + [r["batched"]])
    per_round = {}
    for k, (samples, value) in FIGURES.items():
        pairs = []
        for rnd in sorted({r["round"] for r in rounds}):
            e, l = ([r for r in rounds if r["round"] == rnd and r["server"] == name]
                    for name in ("ember", "llama-server"))
            if not e or not l:
                continue
            e_samples, l_samples = samples(e[0]), samples(l[0])
            if all(x.get("disturbed") for x in e_samples) or all(x.get("disturbed") for x in l_samples):
                continue  # a side with no clean sample in this round
            pairs.append(clean_median(e_samples, value) / clean_median(l_samples, value))
        per_round[k] = pairs
        ratio[k] = statistics.median(pairs) if pairs else med["ember"][k] / med["llama-server"][k]
    return med, ratio, per_round


def print_report(med, ratio, rounds, settings, commands):
    s = settings
    rows = [("batch-1 decode, tok/s", "batch1_decode_tok_s"),
            (f"prefill {round(med['ember']['prefill_prompt_tokens'])} tokens, tok/s", "prefill_tok_s"),
            (f"{s['concurrency']} streams, output tok/s", "batched_output_tok_s")]
    print(f"\n{'':30}{'ember':>10}{'llama-server':>14}{'ratio':>8}")
    for label, k in rows:
        print(f"{label:30}{med['ember'][k]:10.1f}{med['llama-server'][k]:14.1f}{ratio[k]:7.2f}x")
    print(f"(medians over {s['rounds']} rounds of {s['decode_reps']} decodes of {s['tokens']} tokens, "
          f"{s['prefill_reps']} prompts and one batched run of {s['batch_prompts']} requests ({s['batch_input_len']} "
          f"in / {s['batch_output_len']} out) per server; ratio: the median of the rounds' own ratios)")
    print("\nper round (medians of its clean samples; *: every sample disturbed by other processes):")
    for r in rounds:
        cells = []
        for label, k in (("decode", "batch1_decode_tok_s"), ("prefill", "prefill_tok_s"),
                         ("batched", "batched_output_tok_s")):
            samples, value = FIGURES[k]
            mark = "*" if all(x.get("disturbed") for x in samples(r)) else " "
            cells.append(f"{label} {clean_median(samples(r), value):7.1f}{mark}")
        print(f"  {r['round']} {r['server']:13} " + "  ".join(cells))
    disturbed = sum(med[name]["disturbed_samples"] for name in med)
    if disturbed:
        print(f"warning: {disturbed} samples stayed disturbed by other processes after the retries; medians and "
              "ratios leave them out where clean ones exist")
    print("\ncommands:")
    for name, cmd in commands.items():
        print(f"  {name}: {cmd}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each measuring both servers (order alternates)")
    ap.add_argument("--tokens", type=int, default=128, help="batch-1 decode: tokens per request")
    ap.add_argument("--decode-reps", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=512, help="prefill: prompt length, template included")
    ap.add_argument("--prefill-reps", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16, help="batched: concurrent streams (llama-server -np)")
    ap.add_argument("--batch-prompts", type=int, default=48)
    ap.add_argument("--batch-input-len", type=int, default=128)
    ap.add_argument("--batch-output-len", type=int, default=128)
    ap.add_argument("--slot-context", type=int, default=1024, help="llama-server context per slot")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="both servers' compute threads")
    ap.add_argument("--request-timeout", type=int, default=600, help="seconds one request may take")
    ap.add_argument("--peer-version", default="0.3.36", help="the llama-cpp-python sdist whose llama.cpp is built")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="build jobs for llama.cpp")
    ap.add_argument("--llama-server", help="use this llama-server binary instead of building one")
    ap.add_argument("--build-only", action="store_true", help="build the peer and stop")
    ap.add_argument("--quiet-cores", type=float, default=0.2,
                    help="before each server's turn, wait until the rest of the machine uses fewer cores than this")
    ap.add_argument("--quiet-timeout", type=int, default=1800, help="seconds to wait for that, then measure anyway")
    ap.add_argument("--retries", type=int, default=5, help="times a sample disturbed by other processes is redone")
    ap.add_argument("--note", default="", help="a line kept in the JSON record")
    ap.add_argument("--result-json")
    ap.add_argument("--show", metavar="JSON", help="print the report of a recorded run and stop")
    a = ap.parse_args()
    if a.show:
        r = json.loads(pathlib.Path(a.show).read_text())
        med, ratio, _ = summarize(r["rounds"])
        print_report(med, ratio, r["rounds"], r["settings"], r["commands"])
        return

    if a.llama_server:
        llama_server, peer = pathlib.Path(a.llama_server), {"binary": a.llama_server}
    else:
        llama_server, peer = build_llama_server(a.peer_version, a.jobs)
    if a.build_only:
        print(llama_server)
        return
    for path, what in ((EMBER, "ember (build it, or set EMBER_BUILD_DIR)"),
                       (MODEL, "the model (scripts/setup.sh fetches it)"), (llama_server, "llama-server")):
        if not pathlib.Path(path).exists():
            sys.exit(f"missing {path}: {what}")
    if a.concurrency * a.slot_context < a.prompt_tokens + a.tokens:
        sys.exit("--slot-context too small")

    for sig in (signal.SIGTERM, signal.SIGHUP):  # unwind, stopping the server that runs
        signal.signal(sig, lambda *_: sys.exit("terminated"))
    workdir = tempfile.mkdtemp(prefix="cpu-vs-llamacpp-")
    log(f"server logs and bench records in {workdir}")
    state = {"words": None, "nonces": iter(random.Random().sample(range(10 ** 6), 10 ** 4))}
    rounds, commands = [], {}
    try:
        for rnd in range(a.rounds):
            for name in (("ember", "llama-server") if rnd % 2 == 0 else ("llama-server", "ember")):
                port = free_port()
                cmd = server_commands(a, llama_server, port)[name]
                commands[name] = " ".join(map(str, cmd)).replace(str(port), "PORT")
                with ServerProcess(name, cmd, port, pathlib.Path(workdir) / f"{name}-{rnd}.log") as server:
                    rounds.append(measure(name, server, a, state, workdir, rnd))
    except (RuntimeError, openai.OpenAIError) as e:
        sys.exit(f"error: {e}\n(server logs in {workdir})")

    med, ratio, per_round = summarize(rounds)
    commands["ember bench serve"] = state["bench_command"]
    for k in ("download", "configure", "build"):
        if k in peer:
            commands[f"llama.cpp {k}"] = peer[k]
    print_report(med, ratio, rounds, vars(a), commands)
    if a.result_json:
        git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        record = {
            "date": time.strftime("%Y-%m-%d"), "note": a.note, "machine": machine(),
            "model": f"{MODEL.name} ({MODEL.stat().st_size} bytes), both servers on the CPU, the GGUF's chat template",
            "ember": {"binary": str(EMBER), "binary_sha256": hashlib.sha256(EMBER.read_bytes()).hexdigest(),
                      "binary_mtime": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(EMBER.stat().st_mtime)),
                      "repo_head_at_run": git.stdout.strip()},
            "llama_server": peer,
            "commands": commands,
            "settings": {k: getattr(a, k) for k in ("rounds", "tokens", "decode_reps", "prompt_tokens", "prefill_reps",
                                                     "concurrency", "batch_prompts", "batch_input_len",
                                                     "batch_output_len", "slot_context", "threads", "quiet_cores",
                                                     "retries")},
            "method": {"batch1_decode_tok_s": "openai client, streamed chat completion, temperature 0, ignore_eos, "
                                              "(completion_tokens - 1) / (last content chunk - first), median",
                       "prefill_tok_s": "openai client, chat completion with max_tokens 1, not streamed, a nonce "
                                        "opening the system message (llama-server also cache_prompt false); "
                                        "prompt_tokens / time to the response, median",
                       "batched_output_tok_s": "ember bench serve output_throughput, median of rounds"},
            "median": med, "ratio_ember_over_llama_server": ratio, "ratio_per_round": per_round,
            "ratio_method": "median of the rounds' ratios (each round measures both servers back to back)",
            "rounds": rounds,
        }
        pathlib.Path(a.result_json).write_text(json.dumps(record, indent=2) + "\n")
        log(f"wrote {a.result_json}")


if __name__ == "__main__":
    main()
