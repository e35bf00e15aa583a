"""The ember binary's command line: subcommands, flags, --config files, model errors."""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", ROOT / "build"))
EMBER = BUILD / "ember"
MODEL = pathlib.Path(os.environ.get("EMBER_DEFAULT_MODEL",
                                    pathlib.Path.home() / ".cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf"))


def run(*args, env=None):
    assert EMBER.exists(), f"{EMBER} not built"
    return subprocess.run([str(EMBER), *args], capture_output=True, text=True, timeout=120, env=env)


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("ember ")
    r = run("--help")
    assert r.returncode == 0
    for sub in ("serve", "generate", "bench"):
        assert sub in r.stdout
    r = run("serve", "--help")
    for flag in ("--max-num-seqs", "--max-num-batched-tokens", "--gpu-memory-utilization", "--block-size",
                 "--enable-prefix-caching", "--tensor-parallel-size", "--api-key", "--served-model-name"):
        assert flag in r.stdout, flag


def test_subcommand_required_and_bad_values_rejected():
    assert run().returncode != 0
    r = run("serve", "--port", "99999")
    assert r.returncode != 0 and "--port" in r.stderr
    r = run("serve", "--block-size", "7")
    assert r.returncode != 0


def test_default_model_loads_and_generates():
    assert MODEL.exists(), f"default model missing: {MODEL} (run scripts/setup.sh)"
    env = dict(os.environ, EMBER_MODEL=str(MODEL))
    # (--dtype float32: the exact mode, whose greedy text this checks; the fast default may answer otherwise)
    r = run("generate", "--device", "cpu", "--prompt", "The capital of France is", "-n", "8", "--temperature", "0",
            "--dtype", "float32", env=env)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert "30 layers, hidden 576, 9 q heads / 3 kv heads (head_dim 64)" in log
    assert "Paris" in r.stdout, r.stdout
    assert "prompt tokens: 5, generated tokens: 8, time to first token:" in r.stdout, r.stdout
    # Seeded sampling is reproducible; bad sampling values are rejected with the field named.
    a = run("generate", "-p", "Once upon a time", "-n", "6", "--temperature", "1", "--sampling-seed", "7", env=env)
    b = run("generate", "-p", "Once upon a time", "-n", "6", "--temperature", "1", "--sampling-seed", "7", env=env)
    assert a.returncode == 0 and a.stdout.split("\n\n")[0] == b.stdout.split("\n\n")[0]
    r = run("generate", "-p", "hi", "--top-k", "-5", env=env)
    assert r.returncode == 2 and "top_k" in r.stderr + r.stdout


def test_generate_chat_prompts_file_and_stop(tmp_path):
    env = dict(os.environ, EMBER_MODEL=str(MODEL))
    r = run("generate", "--chat", "-p", "What is the capital of France?", "-n", "16", "--temperature", "0",
            "--dtype", "float32", env=env)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout, r.stdout
    # The chat template wrapped the prompt: far more prompt tokens than the question alone.
    assert int(r.stdout.split("prompt tokens: ")[1].split(",")[0]) > 20
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The capital of France is\nOnce upon a time\n\nWater boils at\n")
    r = run("generate", "--prompts-file", str(prompts), "-n", "8", "--temperature", "0", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("=== ") == 3
    assert "requests: 3," in r.stdout and "generated tokens: 24," in r.stdout, r.stdout
    # The batch's decode rates (after every first token; while all three run): measured, so positive.
    for label in ("decode after every first token: ", "steady decode (every request running): "):
        assert float(r.stdout.split(label)[1].split(" tokens/s")[0]) > 0, r.stdout
    # Each batched completion equals the same prompt run alone.
    alone = run("generate", "-p", "Once upon a time", "-n", "8", "--temperature", "0", env=env)
    assert alone.stdout.split("\n\nprompt tokens")[0] in r.stdout
    r = run("generate", "-p", "Count: 1, 2, 3,", "-n", "12", "--temperature", "0", "--stop", " 5", env=env)
    assert r.returncode == 0 and " 4," in r.stdout and " 5" not in r.stdout.split("\n\nprompt tokens")[0], r.stdout


def test_async_scheduling_flags_give_the_same_completions(tmp_path):
    # --async-scheduling (the GPU's default) on the CPU: step N+1 is scheduled before step N is applied, and the
    # completions (seeded sampling, a stop string that ends one of them early) equal synchronous stepping's.
    env = dict(os.environ, EMBER_MODEL=str(MODEL))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The capital of France is\nOnce upon a time\nWater boils at\n")
    out = {}
    for mode in ("--async-scheduling", "--no-async-scheduling"):
        r = run("generate", "--device", "cpu", "--prompts-file", str(prompts), "-n", "12", "--temperature", "0.8",
                "--sampling-seed", "7", "--stop", " the", mode, env=env)
        assert r.returncode == 0, r.stderr
        assert f"async scheduling {'on' if mode == '--async-scheduling' else 'off'}" in r.stdout + r.stderr
        out[mode] = r.stdout.split("requests: ")[0]
        assert out[mode].count("=== ") == 3
    assert out["--async-scheduling"] == out["--no-async-scheduling"]


NGRAM = '{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 2, "prompt_lookup_max": 4}'


def test_speculative_decoding_keeps_greedy_output(tmp_path):
    # The real SmolLM2, greedy, a batch of prompts whose answers repeat their input (where prompt lookup proposes
    # well) and of free text: the completions with n-gram speculation equal those without, token for token, and the
    # run reports what it accepted.
    env = dict(os.environ, EMBER_MODEL=str(MODEL))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "Repeat exactly: red, green, blue, cyan, magenta, yellow, black, white. Repeat: red, green,\n"
        "def add(a, b):\\n    return a + b\\n\\ndef sub(a, b):\\n    return a - b\\n\\ndef mul(a, b):\n"
        "The capital of France is\n"
        "Name: Alice Smith. Age: 34. City: Paris. Extract the fields as JSON: {\"name\": \"\n")
    out = {}
    for mode in ("plain", "ngram"):
        extra = ["--speculative-config", NGRAM] if mode == "ngram" else []
        r = run("generate", "--device", "cpu", "--prompts-file", str(prompts), "-n", "48", "--temperature", "0",
                *extra, env=env)
        assert r.returncode == 0, r.stderr
        out[mode] = r.stdout.split("requests: ")[0]
        assert out[mode].count("=== ") == 4
        if mode == "ngram":
            assert "speculative decoding: ngram, 4 tokens per step" in r.stderr
            accepted = [line for line in r.stderr.splitlines() if "proposed tokens accepted" in line]
            assert accepted, r.stderr[-2000:]
    assert out["ngram"] == out["plain"]


def test_draft_model_keeps_greedy_output_and_checks_the_vocabulary():
    # The model as its own draft: the same greedy text, every proposal accepted; an unrelated model with the same
    # vocabulary (random weights at a tiny shape): the same text, little accepted. A draft with another vocabulary
    # is refused at start, naming the draft.
    env = dict(os.environ, EMBER_MODEL=str(MODEL))
    prompt = "Copy this list: one, two, three, four, five, six. Copy: one,"
    plain = run("generate", "--device", "cpu", "-p", prompt, "-n", "24", "--temperature", "0", "--ignore-eos", env=env)
    draft = run("generate", "--device", "cpu", "-p", prompt, "-n", "24", "--temperature", "0", "--ignore-eos",
                "--speculative-model", str(MODEL), "--num-speculative-tokens", "3", env=env)
    assert plain.returncode == 0 and draft.returncode == 0, draft.stderr[-2000:]
    assert draft.stdout.rsplit("\n\nprompt tokens:", 1)[0] == plain.stdout.rsplit("\n\nprompt tokens:", 1)[0]
    assert "speculative decoding: draft_model, 3 tokens per step" in draft.stderr
    assert "(100.0%)" in draft.stderr, draft.stderr[-2000:]
    unrelated = run("generate", "--device", "cpu", "-p", prompt, "-n", "24", "--temperature", "0", "--ignore-eos",
                    "--speculative-model", str(ROOT / "configs/models/tiny-smollm2-vocab.json"),
                    "--num-speculative-tokens", "3", "--max-model-len", "2048", env=env)
    assert unrelated.returncode == 0, unrelated.stderr[-2000:]
    assert unrelated.stdout.rsplit("\n\nprompt tokens:", 1)[0] == plain.stdout.rsplit("\n\nprompt tokens:", 1)[0]
    rate = re.search(r"proposed tokens accepted \(([0-9.]+)%\)", unrelated.stderr)
    assert rate and float(rate.group(1)) < 50, unrelated.stderr[-2000:]
    other = run("generate", "--device", "cpu", "-p", prompt, "-n", "4",
                "--speculative-config",
                json.dumps({"method": "draft_model", "model": str(ROOT / "configs/models/tiny.json"),
                            "num_speculative_tokens": 2}), env=env)
    assert other.returncode != 0
    # (its config says 512 tokens; with the target's tokenizer of 49152 it is refused before any weight is made)
    assert "draft model" in other.stderr and "512" in other.stderr, other.stderr


def test_tensor_parallel_on_the_cpu_keeps_greedy_output():
    # SmolLM2 (9 heads, 3 KV heads, MLP 1536 in Q4_1 blocks of 32) splits over 3 ranks: the same greedy text as
    # unsplit. 2 ranks do not divide 9 heads: a clear error at start, before the weights load.
    env = dict(os.environ, EMBER_MODEL=str(MODEL))
    prompt = "The three primary colors are"
    texts = []
    for tp in ("1", "3"):
        # (--dtype float32: a split sums the row-parallel layers in another order; on this prompt the 8-bit
        # default meets a near-tie there that the order decides, the exact mode none)
        r = run("generate", "--device", "cpu", "-p", prompt, "-n", "24", "--temperature", "0", "--ignore-eos",
                "-tp", tp, "--dtype", "float32", env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        texts.append(r.stdout.rsplit("\n\nprompt tokens:", 1)[0])
    assert texts[0] == texts[1]
    assert len(texts[0]) > 20
    bad = run("generate", "--device", "cpu", "-p", prompt, "-n", "2", "--tensor-parallel-size", "2", env=env)
    assert bad.returncode != 0
    assert "does not divide the model's 9 attention heads" in bad.stderr, bad.stderr[-2000:]


def mpirun(ranks):
    """Open MPI's launcher for `ranks` processes on this host (root allowed: CI runs as root)."""
    launcher = shutil.which("mpirun")
    assert launcher, "mpirun is missing (scripts/setup.sh installs openmpi-bin)"
    # (shared memory without cross-memory attach: containers often forbid the ptrace it needs)
    return [launcher, "--allow-run-as-root", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none",
            "-np", str(ranks)]


def test_tensor_parallel_across_processes_under_mpirun():
    # The tiny model (4 heads, 2 KV heads) split over 2 and 4 processes (4: its KV heads replicated): the same 64
    # greedy tokens as unsplit. A world size other than --tensor-parallel-size is refused.
    tiny = ["--model", str(ROOT / "configs/models/tiny-smollm2-vocab.json"), "--load-format", "dummy",
            "--tokenizer", str(MODEL), "--device", "cpu", "-p", "Once upon a time", "-n", "64", "--temperature", "0",
            "--ignore-eos"]
    plain = run("generate", *tiny)
    assert plain.returncode == 0, plain.stderr[-2000:]
    want = plain.stdout.rsplit("\n\nprompt tokens:", 1)[0]
    for ranks in (2, 4):
        r = subprocess.run([*mpirun(ranks), str(EMBER), "generate", *tiny, "-tp", str(ranks)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "processes under MPI" in r.stderr, r.stderr[-3000:]
        assert r.stdout.rsplit("\n\nprompt tokens:", 1)[0] == want, (ranks, r.stdout[-500:])
    bad = subprocess.run([*mpirun(2), str(EMBER), "generate", *tiny, "-tp", "4"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0
    assert "must be equal" in bad.stderr, bad.stderr[-3000:]


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine: the ranks would start")
def test_gpu_ranks_under_mpirun_fail_cleanly_without_a_gpu():
    # `ember serve --device cuda` under mpirun (1 process: no group; 2: GPU ranks as processes) on a machine
    # without a GPU: every rank says so and exits 1, and mpirun ends; nothing waits for a peer.
    tiny = ["--model", str(ROOT / "configs/models/tiny-smollm2-vocab.json"), "--load-format", "dummy",
            "--tokenizer", str(MODEL), "--device", "cuda"]
    from server_util import free_port  # (tests/integration is on the path)
    for ranks in (1, 2):
        r = subprocess.run([*mpirun(ranks), str(EMBER), "serve", *tiny, "-tp", str(ranks), "--port", str(free_port())],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0, r.stderr[-3000:]
        out = r.stdout + r.stderr
        assert "no CUDA device is visible" in out or "built without CUDA" in out, out[-3000:]


@pytest.mark.parametrize("flags,message", [
    (["--speculative-config", '{"method": "ngram", "num_speculative_tokens": 99}'], "num_speculative_tokens"),
    (["--speculative-config", '{"method": "ngram", "num_speculative_tokens": 2, "disable_by_batch_size": 1}'],
     "disable_by_batch_size"),
    (["--speculative-config", '{"method": "ngram", "model": "x.gguf", "num_speculative_tokens": 2}'], "no model"),
    (["--speculative-config", "not json"], "JSON object"),
    (["--num-speculative-tokens", "3"], "needs a method"),
])
def test_bad_speculative_configs_are_clear_errors_at_start(flags, message):
    env = dict(os.environ, EMBER_MODEL=str(MODEL))
    r = run("generate", "--device", "cpu", "-p", "hi", "-n", "2", *flags, env=env)
    assert r.returncode != 0
    assert message in r.stderr + r.stdout, r.stderr


def test_bad_model_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 8)
    r = run("serve", "--model", str(bad))
    assert r.returncode == 1
    assert str(bad) in r.stderr + r.stdout
    r = run("serve", "--model", str(tmp_path / "missing.gguf"))
    assert r.returncode == 1 and "no such file" in (r.stderr + r.stdout)


def test_config_file_flags_and_override(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"port": 70000}))
    r = run("serve", "--config", str(cfg))
    assert r.returncode != 0 and "70000" in r.stderr  # the file's flag was parsed
    # A value in the file is used unless the command line gives one (a bad value is an error either way).
    assert MODEL.exists(), f"default model missing: {MODEL}"
    cfg.write_text(json.dumps({"prompt": "Hello", "device": "cpu", "model": str(MODEL), "max-tokens": 1}))
    r = run("generate", "--config", str(cfg))
    assert "prompt tokens: 1, generated tokens: 1," in r.stdout, r.stderr
    r = run("generate", "--config", str(cfg), "--prompt", "Hello Hello")
    assert "prompt tokens: 2, generated tokens: 1," in r.stdout, r.stdout
    for preset in (ROOT / "configs").glob("*.json"):
        r = run("serve", "--config", str(preset), "--model", str(tmp_path / "none.gguf"))
        assert r.returncode == 1, (preset, r.stderr)  # every preset parses
