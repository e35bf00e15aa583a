"""ember's safetensors reader against the `safetensors` package, on freshly
generated random files: same tensor names, dtypes, shapes, metadata, and the
float32 decoding of every F32/F16/BF16 element bit for bit (numpy as the
reference); other dtypes must be listed but reported as unsupported.

Drives tests/tools/ember_st_dump (found in EMBER_BUILD_DIR).
"""
import json
import os
import subprocess

import numpy as np
import pytest
from safetensors import safe_open, serialize_file

try:
    from safetensors import TensorSpec
except ImportError:
    TensorSpec = None

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("EMBER_BUILD_DIR", os.path.join(REPO, "build"))
DUMP = os.path.join(BUILD, "ember_st_dump")


def dump(path):
    assert os.path.exists(DUMP), f"{DUMP} not built (set EMBER_BUILD_DIR)"
    out = subprocess.run([DUMP, path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def random_tensors(rng):
    """name -> (dtype name for serialize_file, array, reference float32 or None)."""
    tensors = {}
    for i in range(int(rng.integers(3, 12))):
        shape = tuple(int(d) for d in rng.integers(0, 6, size=int(rng.integers(0, 4))))
        kind = rng.choice(["float32", "float16", "bfloat16", "int64", "int8"])
        x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 6)).astype(np.float32)
        if kind == "float32":
            arr, ref = x, x
        elif kind == "float16":
            arr = x.astype(np.float16)
            ref = arr.astype(np.float32)
        elif kind == "bfloat16":
            arr = (x.view(np.uint32) >> 16).astype(np.uint16)  # truncation: any bit pattern will do
            ref = (arr.astype(np.uint32) << 16).view(np.float32)
        else:
            arr, ref = rng.integers(-100, 100, size=shape).astype(kind), None
        tensors[f"layer.{i}.{kind}"] = (kind, np.ascontiguousarray(arr), ref)
    return tensors


def write(path, tensors, metadata):
    specs = {}
    for name, (kind, arr, _) in tensors.items():
        if TensorSpec is not None:
            specs[name] = TensorSpec(dtype=kind, shape=arr.shape, data_ptr=arr.ctypes.data, data_len=arr.nbytes)
        else:
            specs[name] = {"dtype": kind, "shape": arr.shape, "data": arr.tobytes()}
    serialize_file(specs, path, metadata=metadata)


@pytest.mark.parametrize("seed", range(8))
def test_random_file_matches_safetensors(tmp_path, seed):
    rng = np.random.default_rng(seed)
    tensors = random_tensors(rng)
    path = str(tmp_path / "model.safetensors")
    metadata = {"format": "pt", "seed": str(seed)}
    write(path, tensors, metadata)

    got = dump(path)
    assert got["metadata"] == metadata
    with safe_open(path, "np") as f:  # the package's own view of the file
        assert sorted(got["tensors"]) == sorted(f.keys())
        assert f.metadata() == metadata
    for name, (kind, arr, ref) in tensors.items():
        t = got["tensors"][name]
        assert t["shape"] == list(arr.shape), name
        if ref is None:
            assert t["f32_bits"] is None and "not support" in t["error"], name
            continue
        want = np.ascontiguousarray(ref, dtype=np.float32).view(np.uint32).ravel().tolist()
        assert t["f32_bits"] == want, name


def test_fixture_directories_agree(tmp_path):
    """The single-file and the 2-shard fixture directories hold the same tensors."""
    base = os.path.join(REPO, "tests", "fixtures", "safetensors")
    single = dump(os.path.join(base, "single"))
    sharded = dump(os.path.join(base, "sharded"))
    for t in list(single["tensors"].values()) + list(sharded["tensors"].values()):
        t.pop("error", None)  # names the file, which differs
    assert single["tensors"] == sharded["tensors"]
    assert len(single["tensors"]) == 8


def test_hostile_file_is_an_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    out = subprocess.run([DUMP, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "header length" in out.stderr
