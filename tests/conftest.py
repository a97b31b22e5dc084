from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: loads the real embedded model (seconds to minutes)")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from domain_eval.testing import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="session")
def tiny_adapters(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from domain_eval.testing import build_tiny_adapter

    root = tmp_path_factory.mktemp("adapters")
    return {name: build_tiny_adapter(tiny_base, root / name, seed=i + 1) for i, name in enumerate(["a1", "a2"])}

@pytest.fixture
def api_key(monkeypatch) -> str:
    """A fresh fake GROQ_API_KEY (and no GROQ_BASE_URL) for tests against the local stub server."""
    key = f"gsk_TEST_{uuid.uuid4().hex}"
    monkeypatch.setenv("GROQ_API_KEY", key)
    monkeypatch.delenv("GROQ_BASE_URL", raising=False)
    return key
