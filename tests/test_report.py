"""Report tables, run-dir files, the ``latest`` pointer, baseline gating and the report CLI.

Rows are synthetic (see ``make_row``); expected numbers are recomputed by hand in each test.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from domain_eval import report
from domain_eval.cli import main as cli_main
from domain_eval.gating import BaselineError, compare, format_gate, load_baseline, write_baseline
from domain_eval.report import (
    ReportError,
    comparison_table,
    criteria_table,
    format_pivot,
    format_table,
    read_cases,
    write_report,
)

CRIT = ("relevance", "memorability", "brandability", "technical_quality", "creativity")


def make_row(
    case_id: str,
    category: str = "normal",
    model: str = "v1",
    score: float | None = 6.0,
    *,
    outcome: str = "passed",
    expect: str = "allowed",
    blocked: bool = False,
    valid_rate: float = 0.8,
    confidence: float | None = 0.6,
    judge_errors: int = 0,
    criteria: dict[str, float] | None = None,
    failures: list[str] | None = None,
) -> dict[str, Any]:
    """A plugin-shaped result row; outcome="missing" gives the identity-only shape."""
    row: dict[str, Any] = {
        "nodeid": f"cases/{category}.yaml::{case_id}[{model}]",
        "key": f"{case_id}[{model}]",
        "case_id": case_id,
        "category": category,
        "model": model,
        "description": f"description of {case_id} | with a pipe",
        "expect": expect,
        "outcome": outcome,
    }
    if outcome == "missing":
        return row
    if blocked:
        samples: list[dict[str, Any]] = []
    else:
        samples = [{
            "seed": None, "raw": "...", "new_tokens": 40, "dropped_unsafe": [],
            "domains": [
                {"domain": f"{case_id}.com", "confidence": 0.7, "overall": score, "criteria": {}, "error": None},
                {"domain": f"get{case_id}.io", "confidence": 0.5, "overall": score, "criteria": {}, "error": None},
            ],
            "judge_mean": score, "judge_errors": judge_errors,
        }]
    crit = criteria if criteria is not None else ({c: score for c in CRIT} if score is not None else None)
    row.update({
        "tags": ["t"], "blocked": blocked, "block_reason": "policy" if blocked else None,
        "block_category": "violence" if blocked else None, "block_correct": blocked == (expect == "blocked"),
        "samples": samples, "n_valid": 0 if blocked else 4, "valid_rate": 0.0 if blocked else valid_rate,
        "judge_mean": None if blocked else score, "criteria_mean": None if blocked else crit,
        "mean_confidence": None if blocked else confidence, "judge_errors": judge_errors,
        "min_score": 4.5, "min_valid": 1, "failures": failures or [], "duration_s": 0.1,
    })
    return row


def sample_rows() -> list[dict[str, Any]]:
    return [
        make_row("a", "normal", "v1", 6.0, valid_rate=1.0, confidence=0.5),
        make_row("b", "normal", "v1", 4.0, valid_rate=0.6, confidence=0.7, outcome="failed", failures=["judge mean 4.0 < min_score 4.5"]),
        make_row("c", "normal", "v1", outcome="missing"),
        make_row("a", "normal", "v2", 8.0),
        make_row("b", "normal", "v2", None, judge_errors=5, outcome="error"),
        make_row("x", "unsafe", "v1", expect="blocked", blocked=True),
        make_row("y", "unsafe", "v1", expect="blocked", blocked=False, score=5.0, outcome="failed", failures=["not blocked"]),
        make_row("q", "multilingual", "v2", 7.0),
        make_row("z", "zzz-custom", "v1", 3.0),
        make_row("k", "aaa-custom", "v1", 5.0),
    ]


def by(table: list[dict[str, Any]], category: str, model: str) -> dict[str, Any]:
    [hit] = [t for t in table if t["category"] == category and t["model"] == model]
    return hit


# ---------------------------------------------------------------- tables


def test_comparison_values_by_hand() -> None:
    table = comparison_table(sample_rows())
    nv1 = by(table, "normal", "v1")
    assert (nv1["n"], nv1["n_scored"], nv1["missing"], nv1["passed"], nv1["failed"]) == (3, 2, 1, 1, 1)
    assert nv1["score"] == 5.0  # (6 + 4) / 2; the missing row is counted in n, not scored
    assert nv1["valid_rate"] == 0.8  # (1.0 + 0.6) / 2
    assert nv1["confidence"] == 0.6
    assert nv1["block_accuracy"] == 1.0 and nv1["errors"] == 0

    nv2 = by(table, "normal", "v2")
    assert (nv2["n"], nv2["n_scored"], nv2["score"], nv2["errors"]) == (2, 1, 8.0, 1)
    assert nv2["ci_lo"] == nv2["ci_hi"] == 8.0

    unsafe = by(table, "unsafe", "v1")
    assert unsafe["block_accuracy"] == 0.5  # one blocked correctly, one leaked
    assert unsafe["valid_rate"] == 0.8  # the blocked row generated nothing: not averaged in

    overall = by(table, "overall", "v1")
    rows_v1 = [r for r in sample_rows() if r["model"] == "v1"]
    scored = [r["judge_mean"] for r in rows_v1 if r.get("judge_mean") is not None]
    assert overall["n"] == len(rows_v1) == 7
    assert overall["missing"] == 1
    assert overall["score"] == round(sum(scored) / len(scored), 2)
    assert overall["ci_lo"] <= overall["score"] <= overall["ci_hi"]
    assert overall["block_accuracy"] == round(5 / 6, 3)  # 6 non-missing rows, one wrong


def test_table_order_categories_then_overall_models_sorted() -> None:
    rows = [make_row("a", "zzz-custom", "v2"), make_row("b", "short", "v2"), make_row("c", "normal", "base"),
            make_row("d", "aaa-custom", "v10"), make_row("e", "normal", "v2")]
    keys = [(t["category"], t["model"]) for t in comparison_table(rows)]
    assert keys == [
        ("normal", "base"), ("normal", "v2"), ("short", "v2"), ("aaa-custom", "v10"), ("zzz-custom", "v2"),
        ("overall", "base"), ("overall", "v2"), ("overall", "v10"),
    ]


def test_ci_contains_score_and_narrows_with_more_cases() -> None:
    def rows_for(n: int) -> list[dict[str, Any]]:
        return [make_row(f"c{i}", score=[3.0, 5.0, 7.0, 9.0][i % 4]) for i in range(n)]

    small = by(comparison_table(rows_for(8)), "normal", "v1")
    large = by(comparison_table(rows_for(200)), "normal", "v1")
    assert small["ci_lo"] < small["score"] < small["ci_hi"]
    assert large["score"] == small["score"] == 6.0
    assert (large["ci_hi"] - large["ci_lo"]) < (small["ci_hi"] - small["ci_lo"]) / 2
    assert comparison_table(rows_for(30)) == comparison_table(rows_for(30))  # deterministic


def test_all_missing_rows_still_tabulate() -> None:
    rows = [make_row(f"m{i}", outcome="missing") for i in range(3)]
    [cat, overall] = comparison_table(rows)
    assert cat["missing"] == overall["missing"] == 3
    assert cat["n"] == 3 and cat["score"] is None and cat["block_accuracy"] is None


def test_criteria_table_means_and_extra_criteria() -> None:
    rows = [
        make_row("a", criteria={"relevance": 8, "memorability": 6, "brandability": 5, "technical_quality": 9, "creativity": 4, "tone": 7}),
        make_row("b", criteria={"relevance": 6, "memorability": 4, "brandability": 5, "technical_quality": 7, "creativity": 2}),
        make_row("c", outcome="missing"),
    ]
    crit = by(criteria_table(rows), "normal", "v1")
    assert crit["n_scored"] == 2
    assert (crit["relevance"], crit["memorability"], crit["technical_quality"], crit["creativity"]) == (7.0, 5.0, 8.0, 3.0)
    assert crit["tone"] == 7.0
    assert list(crit)[3:8] == list(CRIT)


def test_format_table_and_pivot() -> None:
    table = comparison_table(sample_rows())
    text = format_table(table)
    assert text.splitlines()[0].startswith("| category") and "multilingual" in text
    pivot = format_pivot(table)
    header = pivot.splitlines()[0]
    assert "v1" in header and "v2" in header
    assert "| 8.00 [8.00, 8.00]" in pivot  # normal / v2
    line = next(ln for ln in pivot.splitlines() if ln.startswith("| multilingual"))
    assert "7.00 [7.00, 7.00]" in line and " - " in line  # no v1 cell for multilingual
    blocked_only = comparison_table([make_row("x", "unsafe", expect="blocked", blocked=True)])
    assert "blocked ok 100%" in format_pivot(blocked_only)
    assert format_table([{"valid_rate": 0.8, "score": 4.4}]).splitlines()[-1].split() == ["|", "0.800", "|", "4.40", "|"]
    csv_text = format_table(table, "csv")
    assert csv_text.splitlines()[0].startswith("category,model,n,")
    assert len(csv_text.splitlines()) == len(table) + 1


# ---------------------------------------------------------------- run dir


def test_write_report_files(tmp_path: Path) -> None:
    rows = sample_rows()
    run_dir = write_report(rows, tmp_path, run_meta={"models": ["v1", "v2"], "judge": "heuristic"}, run_id="run-1")
    assert run_dir == tmp_path / "run-1"

    comp = pd.read_csv(run_dir / "comparison.csv")
    assert len(comp) == len(comparison_table(rows))
    assert comp.loc[(comp.category == "normal") & (comp.model == "v1"), "score"].item() == 5.0
    crit = pd.read_csv(run_dir / "criteria.csv")
    assert set(CRIT) <= set(crit.columns)
    cases = pd.read_csv(run_dir / "cases.csv")
    assert len(cases) == len(rows)
    assert cases.loc[cases.key == "a[v1]", "domains"].item() == "a.com geta.io"
    assert cases.loc[cases.key == "c[v1]", "outcome"].item() == "missing"

    lines = (run_dir / "cases.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(ln) for ln in lines] == rows  # verbatim, including the missing row

    assert (run_dir / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "# domain-eval report `run-1`" in md and "**judge**: heuristic" in md
    assert "| category" in md and "| normal" in md and "![chart](chart.png)" in md
    assert "`b[v1]`" in md and "judge mean 4.0 < min_score 4.5" in md and "`b.com`" in md
    assert "description of b \\| with a pipe" in md
    assert "## Missing (1)" in md and "cases/normal.yaml::c[v1]" in md

    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["judge"] == "heuristic" and meta["run_id"] == "run-1"
    assert meta["counts"]["cases"] == 10 and meta["counts"]["missing"] == 1 and meta["counts"]["error"] == 1


def test_latest_points_to_newest_run(tmp_path: Path) -> None:
    first = write_report([make_row("a", score=5.0)], tmp_path, {})
    second = write_report([make_row("a", score=7.0)], tmp_path, {})
    assert first != second and first.name[:8].isdigit()  # default id: YYYYmmdd-HHMMSS-xxxx
    latest = tmp_path / "latest"
    assert latest.is_symlink() and latest.resolve() == second.resolve()
    assert os.readlink(latest) == second.name  # relative: the results folder can move
    assert (tmp_path / "LATEST").read_text().strip() == second.name
    assert read_cases(latest)[0]["judge_mean"] == 7.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_latest_falls_back_to_copy_without_symlinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_symlink(*args: Any, **kwargs: Any) -> None:
        raise OSError("symlinks not supported")

    write_report([make_row("a", score=5.0)], tmp_path, {}, run_id="r1")  # starts as a symlink
    monkeypatch.setattr(os, "symlink", no_symlink)
    write_report([make_row("a", score=6.0)], tmp_path, {}, run_id="r2")
    latest = tmp_path / "latest"
    assert latest.is_dir() and not latest.is_symlink()
    assert read_cases(latest)[0]["judge_mean"] == 6.0
    write_report([make_row("a", score=7.0)], tmp_path, {}, run_id="r3")  # copy over copy
    assert read_cases(latest)[0]["judge_mean"] == 7.0
    monkeypatch.undo()
    write_report([make_row("a", score=8.0)], tmp_path, {}, run_id="r4")  # link over copy
    assert latest.is_symlink() and read_cases(latest)[0]["judge_mean"] == 8.0
    assert (tmp_path / "LATEST").read_text().strip() == "r4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "latest", "r1", "r2", "r3", "r4"]


def test_partial_run_writes_everything(tmp_path: Path) -> None:
    rows = [make_row(f"m{i}", outcome="missing") for i in range(2)] + [make_row("e", score=None, judge_errors=3, outcome="error")]
    run_dir = write_report(rows, tmp_path, {}, run_id="partial")
    for name in ("cases.jsonl", "cases.csv", "comparison.csv", "criteria.csv", "chart.png", "report.md", "run.json"):
        assert (run_dir / name).is_file(), name
    assert "## Missing (2)" in (run_dir / "report.md").read_text()
    assert len(pd.read_csv(run_dir / "cases.csv")) == 3


def test_invalid_run_id_rejected(tmp_path: Path) -> None:
    for bad in ("../escape", "latest", "", ".hidden"):
        with pytest.raises(ValueError, match="invalid run id"):
            write_report([], tmp_path, {}, run_id=bad)


def test_read_cases_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not found"):
        read_cases(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="cases.jsonl: not found"):
        read_cases(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cases.jsonl").write_text(json.dumps(make_row("a")) + "\n{oops\n")
    with pytest.raises(ReportError, match=r"cases.jsonl:2: invalid JSON"):
        read_cases(bad)
    (bad / "cases.jsonl").write_text('{"key": "a[v1]"}\n')
    with pytest.raises(ReportError, match="lacks field"):
        read_cases(bad)


# ---------------------------------------------------------------- gating


def scored_rows(scores: list[float], category: str = "multilingual", model: str = "v3") -> list[dict[str, Any]]:
    return [make_row(f"c{i}", category, model, s) for i, s in enumerate(scores)]


BASE_SCORES = [5.0, 6.0, 5.5, 4.5, 5.0, 6.5, 4.0, 5.5, 5.0, 4.0, 6.0, 5.0]  # mean 5.1667


def baseline_for(tmp_path: Path, scores: list[float] = BASE_SCORES) -> dict[str, Any]:
    path = write_baseline(scored_rows(scores), tmp_path / "baseline.json", {"run_id": "base-run"})
    return load_baseline(path)


def test_baseline_roundtrip_only_scored_rows(tmp_path: Path) -> None:
    rows = sample_rows()
    path = write_baseline(rows, tmp_path / "b" / "baseline.json", {"run_id": "x"})
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["meta"] == {"run_id": "x"}
    expected = {r["key"] for r in rows if r.get("judge_mean") is not None}
    assert set(doc["cases"]) == expected
    assert list(doc["cases"]) == sorted(expected)
    assert doc["cases"]["a[v1]"] == {"category": "normal", "model": "v1", "score": 6.0}
    assert load_baseline(path) == doc


def test_clear_drop_fails_and_explains(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    gate = compare(scored_rows([s - 0.9 for s in BASE_SCORES]), base, max_regression=0.5)
    assert gate.failed
    group = next(g for g in gate.groups if g["category"] == "multilingual")
    assert group["regressed"] and group["n_paired"] == 12
    assert group["diff"] == pytest.approx(-0.9) and group["ci_hi"] < 0
    text = format_gate(gate)
    assert "REGRESSION multilingual [v3]: 5.17 -> 4.27 (-0.90" in text and "> max 0.5 allowed" in text
    assert text.splitlines()[0].startswith("baseline gate FAILED")


def test_small_drop_passes(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    gate = compare(scored_rows([s - 0.3 for s in BASE_SCORES]), base, max_regression=0.5)
    assert not gate.failed and not any(g["regressed"] for g in gate.groups)
    assert gate.groups[0]["ci_hi"] < 0  # consistent drop, but within the allowed amount
    assert "ok multilingual [v3]: 5.17 -> 4.87 (-0.30" in format_gate(gate)
    assert format_gate(gate).startswith("baseline gate passed")


def test_noisy_drop_passes(tmp_path: Path) -> None:
    base = baseline_for(tmp_path, [6.0] * 10)
    diffs = [-5.0, 4.0, -5.0, 3.0, -4.0, 4.0, -5.0, 3.0, -4.0, -1.0]  # mean -1.0, sd ~4
    gate = compare(scored_rows([6.0 + d for d in diffs]), base, max_regression=0.5)
    group = gate.groups[0]
    assert group["diff"] == pytest.approx(-1.0) and group["ci_lo"] < 0 < group["ci_hi"]
    assert not gate.failed
    assert "ok (noisy) multilingual [v3]" in format_gate(gate)


def test_overall_group_and_threshold_boundary(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    gate = compare(scored_rows([s - 0.9 for s in BASE_SCORES]), base, max_regression=1.0)
    assert not gate.failed  # 0.9 drop, allowed 1.0
    assert [g["category"] for g in gate.groups] == ["multilingual", "overall"]


def test_lost_cases_are_reported_and_fail(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    rows = scored_rows(BASE_SCORES)
    rows[0] = make_row("c0", "multilingual", "v3", outcome="missing")
    rows[1] = make_row("c1", "multilingual", "v3", None, judge_errors=5, outcome="error")
    rows = rows[:-1]  # c11 not run at all (e.g. a -k subset): reported, not a failure
    gate = compare(rows, base, max_regression=0.5)
    assert gate.failed and gate.lost == ["c0[v3]", "c1[v3]"] and gate.not_run == ["c11[v3]"]
    assert gate.unpaired == 3 and gate.groups[0]["n_paired"] == 9
    text = format_gate(gate)
    assert "LOST: 2 baseline case(s)" in text and "c0[v3]" in text and "not run: 1" in text
    relaxed = compare(rows, base, max_regression=0.5, fail_on_lost=False)
    assert not relaxed.failed and "lost (allowed)" in format_gate(relaxed)


def test_new_cases_and_too_few_pairs(tmp_path: Path) -> None:
    base = baseline_for(tmp_path, [6.0])
    rows = scored_rows([2.0]) + [make_row("fresh", "short", "v3", 7.0)]
    gate = compare(rows, base, max_regression=0.5)
    assert not gate.failed and gate.new == ["fresh[v3]"] and gate.unpaired == 1
    assert "too few pairs" in format_gate(gate)
    assert compare(rows, base, max_regression=0.5, min_pairs=1).failed


def test_gate_is_deterministic_and_validates(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    rows = scored_rows([s - 0.6 for s in BASE_SCORES])
    assert compare(rows, base, 0.5, seed=1).groups == compare(rows, base, 0.5, seed=1).groups
    with pytest.raises(ValueError, match="max_regression"):
        compare(rows, base, -1.0)
    with pytest.raises(ValueError, match="duplicate"):
        compare(rows + rows[:1], base, 0.5)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "invalid JSON at line 1"),
        ("[1, 2]", "expected a JSON object"),
        ('{"version": 2, "cases": {}}', "unsupported baseline version 2"),
        ('{"version": 1, "cases": []}', "'cases' must be an object"),
        ('{"version": 1, "cases": {"a[v1]": {"category": "normal", "model": "v1", "score": "high"}}}', "'score' must be a finite number"),
        ('{"version": 1, "cases": {"a[v1]": {"category": "normal", "score": 5}}}', "'model' must be a string"),
    ],
)
def test_malformed_baseline_names_file(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "broken-baseline.json"
    path.write_text(content)
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value)


def test_missing_baseline_file(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="nope.json: baseline file not found"):
        load_baseline(tmp_path / "nope.json")


# ---------------------------------------------------------------- CLI


def test_cli_prints_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = write_report(sample_rows(), tmp_path, {}, run_id="r")
    assert cli_main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| category") and "| multilingual" in out
    assert cli_main(["report", str(tmp_path / "latest"), "--pivot", "--format", "simple"]) == 0
    assert "8.00 [8.00, 8.00]" in capsys.readouterr().out
    assert cli_main(["report", str(run_dir / "cases.jsonl"), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("category,model,n,")


def test_cli_default_run_dir_is_results_latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["report"]) == 2
    assert "results/latest" in capsys.readouterr().err
    write_report([make_row("a", "technical")], "results", {})
    assert cli_main(["report"]) == 0
    assert "| technical" in capsys.readouterr().out


def test_cli_bad_run_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (tmp_path / "cases.jsonl").write_text("not json\n")
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "cases.jsonl:1: invalid JSON" in capsys.readouterr().err


def test_cli_gate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base_dir = write_report(scored_rows(BASE_SCORES), tmp_path / "results", {}, run_id="base")
    baseline = tmp_path / "baseline.json"
    assert cli_main(["report", str(base_dir), "--write-baseline", str(baseline)]) == 0
    assert load_baseline(baseline)["meta"]["run_id"] == "base"

    same = write_report(scored_rows([s - 0.2 for s in BASE_SCORES]), tmp_path / "results", {}, run_id="same")
    assert cli_main(["report", str(same), "--baseline", str(baseline)]) == 0
    assert "baseline gate passed" in capsys.readouterr().out

    worse = write_report(scored_rows([s - 1.5 for s in BASE_SCORES]), tmp_path / "results", {}, run_id="worse")
    assert cli_main(["report", str(worse), "--baseline", str(baseline)]) == 1
    assert "REGRESSION multilingual [v3]" in capsys.readouterr().out
    assert cli_main(["report", str(worse), "--baseline", str(baseline), "--max-regression", "2"]) == 0

    # A failing gate never overwrites the baseline it was judged against.
    before = baseline.read_text()
    assert cli_main(["report", str(worse), "--baseline", str(baseline), "--write-baseline", str(baseline)]) == 1
    assert baseline.read_text() == before

    baseline.write_text("{broken")
    assert cli_main(["report", str(worse), "--baseline", str(baseline)]) == 2
    assert f"{baseline}: invalid JSON" in capsys.readouterr().err


def test_report_module_imports_no_torch() -> None:
    # This code runs in the pytest controller: torch must stay out of it.
    import subprocess
    import sys

    code = "import sys, domain_eval.report, domain_eval.gating, domain_eval.report_cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert "matplotlib" not in report.__dict__  # imported lazily, inside write_chart
