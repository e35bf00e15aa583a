"""ember's GGUF loader against gguf-py (the reference reader from llama.cpp) on the real SmolLM2 file.

tests/tools/ember_gguf_dump prints what ember parsed as JSON and writes dequantized
tensors as raw float32; every metadata key/value, every tensor info and the values of
several Q8_0 / Q4_1 / F32 tensors must match gguf-py exactly (bit for bit).
"""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest
import gguf  # part of the project venv: its absence is a setup error, not a skip
from gguf import GGUFValueType, quants

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD_DIR = pathlib.Path(os.environ.get("EMBER_BUILD_DIR", REPO / "build"))
MODEL = pathlib.Path(
    os.environ.get("EMBER_DEFAULT_MODEL", pathlib.Path.home() / ".cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf")
)
DUMP = BUILD_DIR / "ember_gguf_dump"

# Q8_0 (the only one is token_embd), Q4_1 from first/middle/last layers, F32 norms.
DEQUANT_TENSORS = [
    "token_embd.weight",
    "blk.0.attn_q.weight",
    "blk.0.attn_k.weight",
    "blk.14.ffn_down.weight",
    "blk.29.ffn_gate.weight",
    "blk.0.attn_norm.weight",
    "blk.29.ffn_norm.weight",
    "output_norm.weight",
]


def require_inputs():
    if not DUMP.is_file():
        pytest.fail(f"{DUMP} not found: build the ember_gguf_dump target or set EMBER_BUILD_DIR")
    if not MODEL.is_file():
        pytest.fail(f"{MODEL} not found: set EMBER_DEFAULT_MODEL to the SmolLM2 Q4_1 GGUF")


@pytest.fixture(scope="module")
def reader():
    require_inputs()
    return gguf.GGUFReader(str(MODEL))


@pytest.fixture(scope="module")
def dumped():
    require_inputs()
    out = subprocess.run([str(DUMP), str(MODEL)], check=True, capture_output=True)
    return json.loads(out.stdout)


def reference_value(field):
    """A field's value as JSON would carry it (gguf-py returns numpy scalars / lists)."""
    value = field.contents()
    if isinstance(value, list):
        return [v.item() if hasattr(v, "item") else v for v in value]
    return value.item() if hasattr(value, "item") else value


def test_header(reader, dumped):
    assert dumped["version"] == reader.fields["GGUF.version"].contents() == 3
    assert len(dumped["tensors"]) == reader.fields["GGUF.tensor_count"].contents() == 272
    assert len(dumped["metadata"]) == reader.fields["GGUF.kv_count"].contents()
    assert dumped["alignment"] == reader.alignment
    assert dumped["data_offset"] == reader.data_offset


def test_every_metadata_key_and_value(reader, dumped):
    ref_keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    assert sorted(ref_keys) == sorted(dumped["metadata"])
    for key in ref_keys:
        field = reader.fields[key]
        mine = dumped["metadata"][key]
        assert mine["type"] == field.types[0].name, key
        if field.types[0] == GGUFValueType.ARRAY:
            assert mine["array_type"] == field.types[1].name, key
        expected = reference_value(field)
        assert mine["value"] == expected, key  # floats: float32 widened to double on both sides, so exact


def test_every_tensor_info(reader, dumped):
    assert len(reader.tensors) == len(dumped["tensors"])
    for ref, mine in zip(reader.tensors, dumped["tensors"]):
        assert mine["name"] == ref.name
        assert mine["shape"] == [int(d) for d in ref.shape], ref.name
        assert mine["type"] == ref.tensor_type.name, ref.name
        assert mine["type_id"] == int(ref.tensor_type), ref.name
        assert mine["offset"] == ref.data_offset, ref.name
        assert mine["nbytes"] == ref.n_bytes, ref.name


def test_known_smollm2_shape(dumped):
    md = dumped["metadata"]
    assert md["general.architecture"]["value"] == "llama"
    assert md["llama.embedding_length"]["value"] == 576
    assert md["llama.block_count"]["value"] == 30
    assert len(md["tokenizer.ggml.tokens"]["value"]) == 49152


@pytest.mark.parametrize("name", DEQUANT_TENSORS)
def test_dequantized_values_exact(reader, name, tmp_path):
    ref_tensor = next(t for t in reader.tensors if t.name == name)
    expected = quants.dequantize(ref_tensor.data, ref_tensor.tensor_type).astype(np.float32).reshape(-1)
    out = tmp_path / "t.f32"
    subprocess.run([str(DUMP), str(MODEL), "--dequantize", name, str(out)], check=True, capture_output=True)
    mine = np.fromfile(out, dtype=np.float32)
    assert mine.size == expected.size == int(np.prod(ref_tensor.shape))
    # Bit-exact: compare the raw bits, so -0.0 vs 0.0 or a last-ulp difference fails too.
    mismatched = np.flatnonzero(mine.view(np.uint32) != expected.view(np.uint32))
    assert mismatched.size == 0, f"{name}: {mismatched.size} values differ, first at {mismatched[:5]}"


def test_rejects_truncated_copy(tmp_path):
    require_inputs()
    cut = tmp_path / "cut.gguf"
    with open(MODEL, "rb") as f:
        cut.write_bytes(f.read(1_000_000))  # inside the metadata (the token list)
    proc = subprocess.run([str(DUMP), str(cut)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{cut}: offset " in proc.stderr
