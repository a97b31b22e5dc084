"""validate_adapter: a broken adapter folder fails fast with a message naming the bad file."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from domain_eval.models import ModelLoadError, validate_adapter

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "v3"


@pytest.fixture
def adapter(tmp_path: Path) -> Path:
    out = tmp_path / "v3"
    shutil.copytree(SHIPPED, out)
    return out


def _raises_naming(adapter: Path, file: str, match: str = "") -> str:
    with pytest.raises(ModelLoadError) as info:
        validate_adapter(adapter)
    message = str(info.value)
    assert str(adapter / file) in message
    assert match in message
    return message


def test_shipped_adapter_validates(adapter: Path) -> None:
    validate_adapter(adapter)


def test_a_bin_adapter_without_safetensors_validates(adapter: Path) -> None:
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    validate_adapter(adapter)


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.01, 4 / 3_702_168])
def test_truncated_safetensors(adapter: Path, keep: float) -> None:
    weights = adapter / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    _raises_naming(adapter, "adapter_model.safetensors", "truncated or corrupt")


def test_trailing_bytes_in_safetensors(adapter: Path) -> None:
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0" * 16)
    _raises_naming(adapter, "adapter_model.safetensors", "expected")


def test_corrupt_safetensors_header(adapter: Path) -> None:
    weights = adapter / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:12] = b"\xff\xfe{["  # the JSON header now starts with garbage
    weights.write_bytes(bytes(data))
    _raises_naming(adapter, "adapter_model.safetensors", "not valid JSON")


def test_tensor_offsets_beyond_the_file(adapter: Path) -> None:
    weights = adapter / "adapter_model.safetensors"
    data = weights.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    name = next(k for k in header if k != "__metadata__")
    begin, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [begin, end + 10_000_000]
    new = json.dumps(header).encode()
    weights.write_bytes(struct.pack("<Q", len(new)) + new + data[8 + length :])
    message = _raises_naming(adapter, "adapter_model.safetensors", name)
    assert "spans bytes" in message


def test_missing_config(adapter: Path) -> None:
    (adapter / "adapter_config.json").unlink()
    _raises_naming(adapter, "adapter_config.json", "missing")


@pytest.mark.parametrize("text", ['{"r": 16,', "", "[1, 2]", "\udcff"])
def test_invalid_config(adapter: Path, text: str) -> None:
    (adapter / "adapter_config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    _raises_naming(adapter, "adapter_config.json")


def test_missing_weights(adapter: Path) -> None:
    (adapter / "adapter_model.safetensors").unlink()
    _raises_naming(adapter, "adapter_model.safetensors", "missing")


def test_validation_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from domain_eval.models import validate_adapter\n"
        f"validate_adapter(Path({str(SHIPPED)!r}))\n"
        "print('torch' in sys.modules, 'safetensors' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]
