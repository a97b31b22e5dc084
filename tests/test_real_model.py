"""End to end on the real embedded SmolLM2-135M with a shipped adapter (tens of seconds)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from domain_eval.cases import CaseDefaults
from domain_eval.domains import normalize_domain

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "domain_eval.cli"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=900)


def test_blank_description_exits_2_without_loading_a_model() -> None:
    out = _run("generate", "   ")
    assert out.returncode == 2
    assert "description is empty" in out.stderr
    assert "loading" not in out.stderr


def test_blocked_description_exits_3_with_reason_before_loading() -> None:
    out = _run("generate", "online casino with high-stakes wagering")
    assert out.returncode == 3
    assert "gambling" in out.stderr
    assert "loading" not in out.stderr


@pytest.mark.slow
def test_generate_with_no_options_prints_five_names_from_the_best_adapter() -> None:
    """The README's first command, typed as it is: the best shipped adapter, with picking."""
    out = _run("generate", "organic coffee shop in downtown Portland")
    assert out.returncode == 0, out.stderr
    from domain_eval.models import BEST_ADAPTERS, DEFAULT_BASE

    assert f"using adapter '{BEST_ADAPTERS[DEFAULT_BASE]}', the best shipped one" in out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[2:] if line.strip()]
    domains = [row[1] for row in rows]
    assert len(domains) == 5 and len(set(domains)) == 5, out.stdout
    assert all(normalize_domain(d) == d for d in domains)


@pytest.mark.slow
def test_generate_cli_on_embedded_model_with_v3() -> None:
    out = _run("generate", "organic coffee shop in downtown Portland", "--model", "v3", "--no-pick", "--json")
    assert out.returncode == 0, out.stderr
    suggestions = json.loads(out.stdout)
    domains = [s["domain"] for s in suggestions]
    assert len(domains) >= 3, out.stdout
    assert len(set(domains)) == len(domains)
    assert all(normalize_domain(d) == d for d in domains)
    assert all(0.0 <= s["confidence"] <= 1.0 for s in suggestions)
    assert "loaded in" in out.stderr  # progress was shown while loading


@pytest.mark.slow
def test_plugin_on_embedded_model_with_shipped_adapter(pytester: pytest.Pytester) -> None:
    shutil.copytree(ROOT / "models" / "v3", pytester.path / "models" / "v3")
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "normal.yaml").write_text(
        "cases:\n"
        "  - {id: e2e-bakery, description: family bakery famous for sourdough and cinnamon rolls}\n"
        "  - {id: e2e-bike, description: mobile bicycle repair service that comes to your office}\n"
    )
    (pytester.path / "cases" / "unsafe.yaml").write_text(
        "defaults: {expect: blocked}\ncases:\n  - {id: e2e-casino, description: unlicensed online casino}\n"
    )
    pytester.makeini("[pytest]\ntestpaths = cases\n")
    result = pytester.runpytest_subprocess("--model", "v3", "-p", "no:randomly")
    rows = {r["key"]: r for r in (json.loads(line) for line in (pytester.path / "results" / "latest" / "cases.jsonl").read_text().splitlines())}
    assert rows["e2e-casino[safety-filter]"]["outcome"] == "passed"
    scored = [r for r in rows.values() if r["model"] == "v3"]
    assert len(scored) == 2 and all(r["yield"] > 0 and 1.0 < r["score"] <= r["quality"] for r in scored)
    # The default thresholds decide, and pytest reports exactly what the rows say.
    for r in scored:
        assert (r["outcome"] == "passed") == (r["score"] >= CaseDefaults.min_score and r["filled_slots"] >= CaseDefaults.min_valid)
    passed = sum(r["outcome"] == "passed" for r in rows.values())
    result.assert_outcomes(passed=passed, failed=len(rows) - passed)


@pytest.mark.slow
def test_batched_generation_equals_model_generate_one_at_a_time_on_the_real_model() -> None:
    """The claim the evaluation's speed rests on, on the real 4-bit base + v3 (dequantised kernel)."""
    import torch

    from domain_eval.generation import DomainNameGenerator, rank_domains
    from domain_eval.prompts import build_prompt

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    descriptions = [
        "sushi",
        "organic coffee shop in downtown Portland",
        "Clínica veterinaria especializada en animales exóticos como reptiles, loros y hurones",
        "We build FPGA-accelerated market data feeds for trading firms, with sub-microsecond latency and "
        "kernel-bypass networking, plus 24/7 support from engineers in London and Singapore.",
        "goat yoga on a farm",
    ]
    gen = DomainNameGenerator(adapter="v3", models_dir=ROOT / "models", safety=None)
    assert gen.loaded.kernel == "nf4-dequantized-fp32"
    batched = gen.generate(descriptions)
    tok = gen.tokenizer
    for description, ours in zip(descriptions, batched):
        enc = tok(build_prompt(tok, description), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = gen.model.generate(**enc, max_new_tokens=gen.config.max_new_tokens, do_sample=False, temperature=None,
                                     top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
        raw = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        assert raw.startswith(ours.raw), (description, raw, ours.raw)
        assert [d for d, _ in ours.domains] == [d for d, _ in rank_domains(raw, description, gen.config.n)[0]]
