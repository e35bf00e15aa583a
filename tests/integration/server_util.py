"""Starting and talking to a real `ember serve` for the integration tests."""
import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", ROOT / "build"))
EMBER = BUILD / "ember"
MODEL = pathlib.Path(os.environ.get("EMBER_DEFAULT_MODEL",
                                    pathlib.Path.home() / ".cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
TINY_CONFIG = ROOT / "configs/models/tiny-smollm2-vocab.json"
SMOLLM2_TEMPLATE = ROOT / "tests/fixtures/chat_templates/smollm2-135m-instruct.jinja"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_workers(nnodes, master_port, *args, tiny=False):
    """Ranks 1..nnodes-1 of a tensor-parallel group meeting over TCP (`ember serve --nnodes`), each logging to
    build/rank-<port>-<r>.log; rank 0 is a Server(..., "--nnodes", N, "--node-rank", "0", "--master-port", P)."""
    procs = []
    for r in range(1, nnodes):
        cmd = [str(EMBER), "serve", "--nnodes", str(nnodes), "--node-rank", str(r), "--master-port", str(master_port),
               *args]
        if tiny:
            cmd += ["--model", str(TINY_CONFIG), "--load-format", "dummy", "--tokenizer", str(MODEL)]
        else:
            cmd += ["--model", str(MODEL)]
            if "--dtype" not in args:  # as Server's rank 0: every rank in the exact mode
                cmd += ["--dtype", "float32"]
        log = open(BUILD / f"rank-{master_port}-{r}.log", "w")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    return procs


class Server:
    """An `ember serve` process on a free port; stop() sends SIGTERM and returns the exit code."""

    def __init__(self, *args, model=None, tiny=False, timeout=120, launcher=(), served_name="test-model"):
        """`launcher`: a command the server runs under (e.g. mpirun and its flags); `served_name` None: the
        server's default model name."""
        assert EMBER.exists(), f"{EMBER} is not built"
        assert MODEL.exists(), f"default model {MODEL} is missing (run scripts/setup.sh)"
        self.port = free_port()
        self.launched = bool(launcher)
        cmd = [*launcher, str(EMBER), "serve", "--port", str(self.port)]
        if served_name:
            cmd += ["--served-model-name", served_name]
        if tiny:
            cmd += ["--model", str(TINY_CONFIG), "--load-format", "dummy", "--tokenizer", str(MODEL),
                    "--chat-template", str(SMOLLM2_TEMPLATE)]
        else:
            cmd += ["--model", str(model or MODEL)]
            if "--dtype" not in args:  # the real model's greedy texts are checked against the exact mode's
                cmd += ["--dtype", "float32"]
        cmd += list(args)
        self.log = open(BUILD / f"serve-{self.port}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"ember serve exited early: {self.read_log()}"
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"ember serve not healthy after {timeout} s: {self.read_log()}")

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def read_log(self):
        return (BUILD / f"serve-{self.port}.log").read_text()[-4000:]

    def request(self, method, path, body=None, headers=None, timeout=60):
        """Raw HTTP: returns (status, headers dict, body bytes). `body` may be bytes, str or a JSON value."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def post(self, path, body, **kw):
        status, _, data = self.request("POST", path, body, **kw)
        return status, json.loads(data) if data else None

    def metrics(self):
        status, _, data = self.request("GET", "/metrics")
        assert status == 200
        out = {}
        for line in data.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
        return out

    def metric(self, name, labels=""):
        m = self.metrics()
        key = name + '{model_name="test-model"' + ("," + labels if labels else "") + "}"
        return m[key]

    def wait_metric(self, name, value, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.metric(name) == value:
                return True
            time.sleep(0.1)
        return self.metric(name) == value

    def rank0_pid(self):
        """Under an MPI launcher: the pid of rank 0's ember (the one serving this port)."""
        for pid in os.listdir("/proc"):
            try:
                cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                env = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if str(self.port).encode() in cmdline and b"OMPI_COMM_WORLD_RANK=0" in env and \
                    cmdline[0].endswith(b"ember"):
                return int(pid)
        return None

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            # Under a launcher, rank 0 gets the signal: it drains and stops the other ranks, and the launcher exits
            # with their status (Open MPI's mpirun reports 1 when it is signalled itself).
            rank0 = self.rank0_pid() if self.launched else None
            if rank0 is not None:
                os.kill(rank0, signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode
