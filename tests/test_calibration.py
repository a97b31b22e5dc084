"""The committed baseline and reference run agree with the shipped judge, thresholds and gate.

These read `results/baseline.json` and `results/reference/` (a real greedy run of base and v1-v4
on every case) and check that what CI gates on still means what the README says:
retraining the judge without regenerating them, or a gate that cannot see a weaker model, fails
here instead of silently in CI.
"""
from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest

from domain_eval.cases import CaseDefaults
from domain_eval.gating import compare, load_baseline
from domain_eval.judges import make_judge
from domain_eval.scoring import DEFAULT_MAX_REGRESSION

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "results" / "baseline.json"
REFERENCE = REPO / "results" / "reference" / "cases.jsonl"


def _gated_model() -> str:
    ini = configparser.ConfigParser()
    ini.read(REPO / "pytest.ini")
    (model,) = ini["pytest"]["domain_eval_gate_models"].split(",")
    return model.strip()


GATED = _gated_model()  # the one model `make eval` gates on (pytest.ini)


@pytest.fixture(scope="module")
def baseline() -> dict:
    return load_baseline(BASELINE)


@pytest.fixture(scope="module")
def reference() -> list[dict]:
    return [json.loads(line) for line in REFERENCE.read_text(encoding="utf-8").splitlines() if line.strip()]


def _as_model(rows: list[dict], source: str, target: str) -> list[dict]:
    """``source``'s rows relabelled as ``target``'s: a weaker model shipped under the gated name."""
    out = []
    for row in rows:
        if row["model"] == source:
            row = dict(row, model=target, key=row["key"].replace(f"[{source}]", f"[{target}]"))
            out.append(row)
    return out


def test_baseline_was_made_by_the_shipped_judge(baseline):
    judge = make_judge()
    assert (baseline["compat"]["judge"], baseline["compat"]["judge_version"]) == (judge.name, judge.version), (
        "results/baseline.json was written with another judge: regenerate it and results/reference (README, Reference results)")


def test_reference_scores_are_the_shipped_judges(reference):
    """Re-judging the reference run's names reproduces its recorded scores."""
    judge = make_judge()
    checked = 0
    for row in [r for r in reference if r["model"] == GATED][:25]:
        for sample in row.get("samples") or []:
            names = [d for d in sample["domains"] if d.get("overall") is not None]
            if names:
                again = judge.score(row["description"], [d["domain"] for d in names]).scores
                assert [s.overall for s in again] == [d["overall"] for d in names], row["case_id"]
                checked += len(names)
    assert checked >= 20


def test_gate_passes_the_shipped_model_against_its_own_baseline(baseline, reference):
    assert not compare([r for r in reference if r["model"] == GATED], baseline, DEFAULT_MAX_REGRESSION).failed


@pytest.mark.parametrize("weaker", ["v2", "v1"])
def test_gate_fails_a_weaker_model_in_the_gated_models_place(baseline, reference, weaker):
    gate = compare(_as_model(reference, weaker, GATED), baseline, DEFAULT_MAX_REGRESSION)
    assert gate.failed
    regressed = [line for line in gate.lines if line.startswith("REGRESSION score")]
    # Every category's mean slot score, not only the overall one, shows the drop.
    assert len(regressed) >= 7, regressed


def test_thresholds_in_the_baseline_are_the_defaults(baseline, reference):
    """A case 'met its thresholds' in the baseline exactly when the reference run says it passed."""
    defaults = CaseDefaults()
    gated = {r["key"]: r for r in reference if r["model"] == GATED}
    assert {r["min_score"] for r in gated.values()} == {defaults.min_score}
    for key, row in gated.items():
        assert baseline["cases"][key]["passed"] == (row["outcome"] == "passed"), key


def test_the_default_adapter_is_the_reference_runs_best_model() -> None:
    """``generate`` and ``DomainNameGenerator()`` default to ``BEST_ADAPTERS``: it must name the model
    with the highest overall slot score in the committed reference run, not an older favourite."""
    import csv

    from domain_eval.models import BEST_ADAPTERS, DEFAULT_BASE

    with (REPO / "results" / "reference" / "comparison.csv").open(encoding="utf-8") as fh:
        overall = {row["model"]: float(row["score"]) for row in csv.DictReader(fh) if row["category"] == "overall"}
    assert BEST_ADAPTERS[DEFAULT_BASE] == max(overall, key=overall.__getitem__), overall


def test_make_eval_gates_on_the_best_model() -> None:
    from domain_eval.models import BEST_ADAPTERS, DEFAULT_BASE

    assert GATED == BEST_ADAPTERS[DEFAULT_BASE]
