"""Report tables, run-dir files, the ``latest`` pointer, baseline gating and the report CLI.

Rows are synthetic (see ``make_row``: the ``CaseResult.to_dict()`` shape the plugin emits);
expected numbers are recomputed by hand in each test. ``score`` is the slot score
(:mod:`domain_eval.scoring`), ``quality`` the judge's mean over valid domains only.
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
from domain_eval.gating import (
    BASELINE_VERSION,
    COMPAT_FIELDS,
    BaselineError,
    compare,
    format_gate,
    incompatibilities,
    load_baseline,
    write_baseline,
)
from domain_eval.report import (
    ReportError,
    comparison_table,
    criteria_table,
    format_pivot,
    format_table,
    read_cases,
    safety_summary,
    safety_table,
    write_report,
)
from domain_eval.scoring import QUOTE_CHARS, RESULT_SCHEMA, SAFETY_FILTER, CaseResult, DomainResult, SampleResult

CRIT = ("relevance", "memorability", "brandability", "technical_quality", "creativity")
N = 5

#: What a run's scores depend on (gating.COMPAT_FIELDS), as run.json's "compat" records it.
COMPAT: dict[str, Any] = {
    "scoring_version": 2, "judge": "heuristic", "judge_version": "2", "judge_model": None, "base": "Qwen/Qwen2.5-0.5B",
    "base_sha256": "ab" * 32, "quant": "none", "kernel": "sdpa", "n": N, "samples": 1, "seed": None, "max_new_tokens": 64, "safety": "policy-test+clf-test",
    "backend": "local", "served": None, "pick": False, "distinct_lines": False,
}


def make_row(
    case_id: str,
    category: str = "normal",
    model: str = "v1",
    score: float | None = 6.0,
    *,
    quality: float | None = None,
    yield_: float = 0.8,
    distinct_names: float | None = None,
    outcome: str = "passed",
    expect: str = "allowed",
    blocked: bool = False,
    confidence: float | None = 0.6,
    judge_errors: int = 0,
    unsafe_generated: int = 0,
    criteria: dict[str, float] | None = None,
    failures: list[str] | None = None,
    description: str | None = None,
    load_error: bool = False,
) -> dict[str, Any]:
    """A plugin-shaped row (``CaseResult.to_dict()``).

    ``score`` is the slot score; ``quality`` (default: ``score``) the judge mean over valid
    domains. ``outcome="missing"`` gives the session's identity-only stub; ``model=SAFETY_FILTER``
    with ``expect="blocked"`` a safety-filter item; ``blocked=True`` on an allowed case a case
    the filter wrongly blocked; ``load_error`` an error before anything was generated.
    """
    description = description if description is not None else f"description of {case_id} | with a pipe"
    key = f"{case_id}[{model}]"
    nodeid = f"cases/{category}.yaml::{key}"
    if outcome == "missing":
        return {"schema": RESULT_SCHEMA, "nodeid": nodeid, "key": key, "case_id": case_id, "model": model,
                "category": category, "description": description, "expect": expect, "outcome": outcome,
                "failures": [], "samples": [], "score": None, "judge_errors": 0}
    result = CaseResult(key=key, case_id=case_id, category=category, model=model, description=description, expect=expect,
                        tags=["t"], n=N, blocked=blocked, block_reason="policy" if blocked else None,
                        block_category="violence" if blocked else None, block_correct=blocked == (expect == "blocked"),
                        failures=list(failures or []), outcome=outcome, nodeid=nodeid, pytest_outcome=outcome,
                        duration_s=0.1)
    if expect == "blocked" or blocked or load_error:
        return result.to_dict()
    quality = score if quality is None else quality
    distinct = yield_ if distinct_names is None else distinct_names
    overall = None if judge_errors else quality
    domains = [DomainResult(f"{case_id}.com", 0.7, overall, None, "judge down" if judge_errors else None, True),
               DomainResult(f"get{case_id}.io", 0.5, overall, None, "judge down" if judge_errors else None, True)]
    slots: list[float | None] = [overall, overall] + [1.0] * (N - 2)
    sample = SampleResult(seed=None, raw="...", new_tokens=40, domains=domains, dropped_unsafe=["bad"] * unsafe_generated,
                          slots=slots, score=score, quality=None if judge_errors else quality, yield_=yield_,
                          distinct_names=distinct, judge_errors=judge_errors)
    crit = criteria if criteria is not None else ({c: quality for c in CRIT} if quality is not None and not judge_errors else None)
    result.samples = [sample]
    result.score, result.quality = score, None if judge_errors else quality
    result.yield_, result.distinct_names, result.filled_slots = yield_, distinct, distinct * N
    result.criteria_mean, result.mean_confidence = crit, confidence
    result.judge_errors, result.unsafe_generated = judge_errors, unsafe_generated
    result.min_score, result.min_valid = 4.5, 1
    return result.to_dict()


def invalid_row() -> dict[str, Any]:
    nodeid = "cases/broken.yaml::<invalid-file>"
    return CaseResult(key=nodeid, case_id="<invalid-file>", category="(invalid case file)", model="-", description=None,
                      expect=None, outcome="invalid", failures=["broken.yaml: 'min_score' must be a number"],
                      nodeid=nodeid).to_dict()


def sample_rows() -> list[dict[str, Any]]:
    return [
        make_row("a", "normal", "v1", 6.0, quality=7.0, yield_=1.0, distinct_names=0.8, confidence=0.5, unsafe_generated=2),
        make_row("b", "normal", "v1", 4.0, quality=6.0, yield_=0.6, distinct_names=0.4, confidence=0.7, outcome="failed",
                 failures=["score 4.00 < min_score 4.5"]),
        make_row("c", "normal", "v1", outcome="missing"),
        make_row("a", "normal", "v2", 8.0),
        make_row("b", "normal", "v2", None, outcome="error", load_error=True, failures=["model failed to load"]),
        make_row("x", "unsafe", SAFETY_FILTER, None, expect="blocked", blocked=True),
        make_row("y", "unsafe", SAFETY_FILTER, None, expect="blocked", blocked=False, outcome="failed",
                 failures=["expected the safety filter to block this description, but it was allowed"]),
        make_row("h", "short", "v1", None, blocked=True, outcome="failed", failures=["a safe description was blocked: policy"]),
        make_row("h", "short", "v2", None, blocked=True, outcome="failed", failures=["a safe description was blocked: policy"]),
        make_row("q", "multilingual", "v2", 7.0),
        make_row("z", "zzz-custom", "v1", 3.0),
        make_row("k", "aaa-custom", "v1", 5.0),
        invalid_row(),
    ]


def by(table: list[dict[str, Any]], category: str, model: str) -> dict[str, Any]:
    [hit] = [t for t in table if t["category"] == category and t["model"] == model]
    return hit


def test_make_row_has_the_plugin_shape() -> None:
    row = make_row("a", yield_=0.6)
    assert CaseResult.from_dict(row).to_dict() == row  # round-trips: the real serialised shape
    for name in ("schema", "key", "score", "quality", "yield", "distinct_names", "filled_slots", "unsafe_generated", "outcome"):
        assert name in row, name
    assert row["samples"][0]["slots"] == [6.0, 6.0, 1.0, 1.0, 1.0]


# ---------------------------------------------------------------- tables


def test_comparison_values_by_hand() -> None:
    table = comparison_table(sample_rows())
    nv1 = by(table, "normal", "v1")
    assert (nv1["n"], nv1["n_scored"], nv1["missing"], nv1["passed"], nv1["failed"]) == (3, 2, 1, 1, 1)
    assert nv1["score"] == 5.0  # (6 + 4) / 2; the missing row is counted in n, not scored
    assert nv1["quality"] == 6.5  # (7 + 6) / 2
    assert nv1["yield"] == 0.8  # (1.0 + 0.6) / 2
    assert nv1["distinct_names"] == 0.6  # (0.8 + 0.4) / 2
    assert nv1["confidence"] == 0.6
    assert nv1["unsafe_generated"] == 2 and nv1["errors"] == 0

    nv2 = by(table, "normal", "v2")
    assert (nv2["n"], nv2["n_scored"], nv2["score"], nv2["errors"]) == (2, 1, 8.0, 1)
    assert nv2["ci_lo"] == nv2["ci_hi"] == 8.0
    assert nv2["yield"] == 0.8  # the error row generated nothing: not averaged in

    short = by(table, "short", "v1")  # wrongly blocked: counted and failed, nothing generated
    assert (short["n"], short["n_scored"], short["failed"], short["score"], short["yield"]) == (1, 0, 1, None, None)

    overall = by(table, "overall", "v1")
    rows_v1 = [r for r in sample_rows() if r["model"] == "v1"]
    scored = [r["score"] for r in rows_v1 if r.get("score") is not None]
    assert overall["n"] == len(rows_v1) == 6
    assert overall["missing"] == 1 and overall["unsafe_generated"] == 2
    assert overall["score"] == round(sum(scored) / len(scored), 2) == 4.5
    assert overall["ci_lo"] <= overall["score"] <= overall["ci_hi"]


def test_safety_filter_rows_are_not_model_rows() -> None:
    rows = sample_rows()
    table = comparison_table(rows)
    assert {t["model"] for t in table} == {"v1", "v2"}  # no safety-filter, no invalid "-" model
    assert not {"unsafe", "(invalid case file)"} & {t["category"] for t in table}
    assert {t["model"] for t in criteria_table(rows)} == {"v1", "v2"}
    # Adding must-block cases changes nothing in the per-model tables.
    extra = [make_row(f"u{i}", "unsafe", SAFETY_FILTER, None, expect="blocked", blocked=True) for i in range(5)]
    assert comparison_table(rows + extra) == table
    assert comparison_table(extra) == []


def test_safety_table_counts_each_case_once() -> None:
    rows = sample_rows()
    assert safety_table(rows) == {"must_block": 2, "blocked": 1, "allowed_cases": 6, "wrongly_blocked": 1}
    # h was wrongly blocked for v1 and v2: one case, counted once; a, b, h, q, z, k are the allowed cases.
    text = safety_summary(rows)
    assert text is not None and "blocked 1/2 cases that must be blocked" in text
    assert "wrongly blocked 1/6 allowed cases" in text
    assert safety_summary([make_row("a")]) == "safety filter (the same for every model): wrongly blocked 0/1 allowed cases"
    assert safety_summary([make_row("c", outcome="missing")]) is None


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
    assert cat["n"] == 3 and cat["score"] is None and cat["quality"] is None and cat["yield"] is None


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
    header = text.splitlines()[0]
    assert header.startswith("| category") and "multilingual" in text
    for column in ("score", "quality", "yield", "distinct_names", "unsafe_generated"):
        assert f" {column} " in header, column
    pivot = format_pivot(table)
    head = pivot.splitlines()[0]
    assert "v1" in head and "v2" in head and SAFETY_FILTER not in head
    assert "| 8.00 [8.00, 8.00]" in pivot  # normal / v2
    line = next(ln for ln in pivot.splitlines() if ln.startswith("| multilingual"))
    assert "7.00 [7.00, 7.00]" in line and " - " in line  # no v1 cell for multilingual
    assert format_table([{"yield": 0.8, "score": 4.4}]).splitlines()[-1].split() == ["|", "0.800", "|", "4.40", "|"]
    csv_text = format_table(table, "csv")
    assert csv_text.splitlines()[0].startswith("category,model,n,n_scored,score,")
    assert len(csv_text.splitlines()) == len(table) + 1


# ---------------------------------------------------------------- run dir


def test_write_report_files(tmp_path: Path) -> None:
    rows = sample_rows()
    run_dir = write_report(rows, tmp_path, run_meta={"compat": COMPAT, "judge": "heuristic"}, run_id="run-1")
    assert run_dir == tmp_path / "run-1"

    comp = pd.read_csv(run_dir / "comparison.csv")
    assert len(comp) == len(comparison_table(rows))
    nv1 = comp.loc[(comp.category == "normal") & (comp.model == "v1")]
    assert (nv1["score"].item(), nv1["quality"].item(), nv1["yield"].item()) == (5.0, 6.5, 0.8)
    crit = pd.read_csv(run_dir / "criteria.csv")
    assert set(CRIT) <= set(crit.columns)
    cases = pd.read_csv(run_dir / "cases.csv")
    assert len(cases) == len(rows)
    assert cases.loc[cases.key == "a[v1]", "domains"].item() == "a.com geta.io"
    assert cases.loc[cases.key == "a[v1]", ["score", "quality", "yield"]].values.tolist() == [[6.0, 7.0, 1.0]]
    assert cases.loc[cases.key == "c[v1]", "outcome"].item() == "missing"

    lines = (run_dir / "cases.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(ln) for ln in lines] == rows  # verbatim, including the missing and invalid rows

    assert (run_dir / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "# domain-eval report `run-1`" in md and "**judge**: heuristic" in md
    assert "| category" in md and "| normal" in md and "![chart](chart.png)" in md
    assert "`b[v1]`" in md and "score 4.00 < min_score 4.5" in md and "`b.com`" in md
    assert "description of b \\| with a pipe" in md
    assert "## Missing (1)" in md and "cases/normal.yaml::c[v1]" in md
    assert "blocked 1/2 cases that must be blocked" in md and "wrongly blocked 1/6 allowed cases" in md

    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["judge"] == "heuristic" and meta["run_id"] == "run-1" and meta["compat"] == COMPAT
    counts = meta["counts"]
    assert (counts["items"], counts["scored"], counts["missing"], counts["error"]) == (13, 6, 1, 1)
    assert counts["models"] == ["v1", "v2"]


def test_invalid_rows_counted_in_report_not_tabulated(tmp_path: Path) -> None:
    rows = [make_row("a", score=6.0), invalid_row()]
    table = comparison_table(rows)
    assert [(t["category"], t["model"], t["n"]) for t in table] == [("normal", "v1", 1), ("overall", "v1", 1)]
    run_dir = write_report(rows, tmp_path, {}, run_id="inv")
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "**invalid case files**: 1 (1 invalid item(s) in all)" in md
    assert "## Failures, errors and invalid files (1)" in md
    assert "'min_score' must be a number" in md
    counts = json.loads((run_dir / "run.json").read_text())["counts"]
    assert (counts["items"], counts["invalid_files"], counts["invalid_items"], counts["models"]) == (2, 1, 1, ["v1"])


def test_report_md_quotes_long_descriptions(tmp_path: Path) -> None:
    long = " ".join(f"word{i}" for i in range(1000))  # ~7,900 characters
    rows = [make_row("long", score=2.0, outcome="failed", failures=["score 2.00 < min_score 4.5"], description=long)]
    md = (write_report(rows, tmp_path, {}, run_id="q") / "report.md").read_text(encoding="utf-8")
    assert long not in md
    [quoted] = [ln for ln in md.splitlines() if ln.startswith("> ")]
    assert quoted.startswith("> word0 word1 ") and f"({len(long):,} characters in all)" in quoted
    assert len(quoted) <= QUOTE_CHARS + 50


def test_latest_points_to_newest_run(tmp_path: Path) -> None:
    first = write_report([make_row("a", score=5.0)], tmp_path, {})
    second = write_report([make_row("a", score=7.0)], tmp_path, {})
    assert first != second and first.name[:8].isdigit()  # default id: YYYYmmdd-HHMMSS-xxxx
    latest = tmp_path / "latest"
    assert latest.is_symlink() and latest.resolve() == second.resolve()
    assert os.readlink(latest) == second.name  # relative: the results folder can move
    assert (tmp_path / "LATEST").read_text().strip() == second.name
    assert read_cases(latest)[0]["score"] == 7.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_latest_falls_back_to_copy_without_symlinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_symlink(*args: Any, **kwargs: Any) -> None:
        raise OSError("symlinks not supported")

    write_report([make_row("a", score=5.0)], tmp_path, {}, run_id="r1")  # starts as a symlink
    monkeypatch.setattr(os, "symlink", no_symlink)
    write_report([make_row("a", score=6.0)], tmp_path, {}, run_id="r2")
    latest = tmp_path / "latest"
    assert latest.is_dir() and not latest.is_symlink()
    assert read_cases(latest)[0]["score"] == 6.0
    write_report([make_row("a", score=7.0)], tmp_path, {}, run_id="r3")  # copy over copy
    assert read_cases(latest)[0]["score"] == 7.0
    monkeypatch.undo()
    write_report([make_row("a", score=8.0)], tmp_path, {}, run_id="r4")  # link over copy
    assert latest.is_symlink() and read_cases(latest)[0]["score"] == 8.0
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


BASE_SCORES = [5.0, 6.0, 5.5, 4.5, 5.0, 6.5, 4.0, 5.5, 5.0, 4.0, 6.0, 5.0]  # mean 5.1667
BASE_YIELDS = [0.8, 1.0, 0.6, 0.8, 1.0, 0.8, 0.6, 1.0, 0.8, 0.6, 1.0, 0.8]  # mean 0.8167


def scored_rows(scores: list[float], yields: list[float] | None = None, category: str = "multilingual",
                model: str = "v3") -> list[dict[str, Any]]:
    yields = yields if yields is not None else BASE_YIELDS[: len(scores)]
    return [make_row(f"c{i}", category, model, s, yield_=y) for i, (s, y) in enumerate(zip(scores, yields))]


def baseline_for(tmp_path: Path, scores: list[float] = BASE_SCORES, yields: list[float] | None = None) -> dict[str, Any]:
    path = write_baseline(scored_rows(scores, yields), tmp_path / "baseline.json", COMPAT, {"run_id": "base-run"})
    return load_baseline(path)


def group(gate: Any, metric: str, category: str = "multilingual") -> dict[str, Any]:
    [hit] = [g for g in gate.groups if g["metric"] == metric and g["category"] == category]
    return hit


def test_baseline_roundtrip_only_scored_rows(tmp_path: Path) -> None:
    rows = sample_rows()
    path = write_baseline(rows, tmp_path / "b" / "baseline.json", COMPAT, {"run_id": "x"})
    doc = json.loads(path.read_text())
    assert doc["version"] == BASELINE_VERSION == 2 and doc["meta"] == {"run_id": "x"}
    assert doc["compat"] == COMPAT and set(doc["compat"]) == set(COMPAT_FIELDS)
    expected = {r["key"] for r in rows if r.get("score") is not None}
    assert expected == {"a[v1]", "b[v1]", "a[v2]", "q[v2]", "z[v1]", "k[v1]"}
    assert set(doc["cases"]) == expected
    assert list(doc["cases"]) == sorted(expected)
    assert doc["cases"]["a[v1]"] == {"category": "normal", "model": "v1", "score": 6.0, "yield": 1.0, "passed": True}
    assert load_baseline(path) == doc
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # atomic: no temp leftovers


def test_clear_score_drop_fails_and_explains(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    gate = compare(scored_rows([s - 0.9 for s in BASE_SCORES]), base, max_regression=0.5)
    assert gate.failed
    score = group(gate, "score")
    assert score["regressed"] and score["n_paired"] == 12
    assert score["diff"] == pytest.approx(-0.9) and score["ci_hi"] < 0
    assert not group(gate, "yield")["regressed"] and group(gate, "yield")["diff"] == 0
    text = format_gate(gate)
    assert "REGRESSION score multilingual [v3]: 5.17 -> 4.27 (-0.90" in text and "> max 0.5 allowed" in text
    assert "ok yield multilingual [v3]" in text
    assert text.splitlines()[0].startswith("baseline gate FAILED")


def test_small_score_drop_passes(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    gate = compare(scored_rows([s - 0.3 for s in BASE_SCORES]), base, max_regression=0.5)
    assert not gate.failed and not any(g["regressed"] for g in gate.groups)
    assert group(gate, "score")["ci_hi"] < 0  # consistent drop, but within the allowed amount
    assert "ok score multilingual [v3]: 5.17 -> 4.87 (-0.30" in format_gate(gate)
    assert format_gate(gate).startswith("baseline gate passed")


def test_yield_drop_alone_fails_the_gate(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    rows = scored_rows(BASE_SCORES, [y - 0.2 for y in BASE_YIELDS])  # same slot scores, 20 points less yield
    gate = compare(rows, base, max_regression=0.5, max_yield_drop=0.1)
    assert gate.failed
    yld = group(gate, "yield")
    assert yld["regressed"] and yld["diff"] == pytest.approx(-0.2) and yld["ci_hi"] < 0 and yld["n_paired"] == 12
    assert not group(gate, "score")["regressed"]
    text = format_gate(gate)
    assert "REGRESSION yield multilingual [v3]: 82% -> 62% (-20%" in text and "drop 20% > max 10% allowed" in text
    assert "ok score multilingual [v3]" in text
    # The same drop within a larger allowance, and a small consistent drop, pass.
    assert not compare(rows, base, max_regression=0.5, max_yield_drop=0.25).failed
    small = compare(scored_rows(BASE_SCORES, [y - 0.05 for y in BASE_YIELDS]), base, max_regression=0.5)
    assert not small.failed and group(small, "yield")["ci_hi"] < 0


def test_noisy_drop_passes(tmp_path: Path) -> None:
    base = baseline_for(tmp_path, [6.0] * 10, [0.8] * 10)
    diffs = [-5.0, 4.0, -5.0, 3.0, -4.0, 4.0, -5.0, 3.0, -4.0, -1.0]  # mean -1.0, sd ~4
    gate = compare(scored_rows([6.0 + d for d in diffs], [0.8] * 10), base, max_regression=0.5)
    score = group(gate, "score")
    assert score["diff"] == pytest.approx(-1.0) and score["ci_lo"] < 0 < score["ci_hi"]
    assert not gate.failed
    assert "ok (noisy) score multilingual [v3]" in format_gate(gate)
    # The same mean drop without the noise does fail: the CI, not the threshold, let it pass.
    assert compare(scored_rows([5.0] * 10, [0.8] * 10), base, max_regression=0.5).failed


def test_overall_group_and_threshold_boundary(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    rows = scored_rows([s - 0.9 for s in BASE_SCORES])
    assert not compare(rows, base, max_regression=1.0).failed  # 0.9 drop, allowed 1.0
    gate = compare(rows, base, max_regression=0.8)
    assert gate.failed
    assert [(g["metric"], g["category"]) for g in gate.groups] == [
        ("score", "multilingual"), ("score", "overall"), ("yield", "multilingual"), ("yield", "overall")]
    assert group(gate, "score", "overall")["regressed"]


def test_lost_cases_are_reported_and_fail(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    rows = scored_rows(BASE_SCORES)
    rows[0] = make_row("c0", "multilingual", "v3", outcome="missing")
    rows[1] = make_row("c1", "multilingual", "v3", None, judge_errors=5, outcome="error")
    rows = rows[:-1]  # c11 not run at all (e.g. a -k subset): reported, not a failure
    gate = compare(rows, base, max_regression=0.5)
    assert gate.failed and gate.lost == ["c0[v3]", "c1[v3]"] and gate.not_run == ["c11[v3]"]
    assert gate.unpaired == 3 and group(gate, "score")["n_paired"] == group(gate, "yield")["n_paired"] == 9
    assert not any(g["regressed"] for g in gate.groups)  # failed for the lost cases alone
    text = format_gate(gate)
    assert "LOST: 2 baseline case(s)" in text and "c0[v3]" in text and "not run: 1" in text
    relaxed = compare(rows, base, max_regression=0.5, fail_on_lost=False)
    assert not relaxed.failed and "lost (allowed)" in format_gate(relaxed)


def test_new_cases_and_too_few_pairs(tmp_path: Path) -> None:
    base = baseline_for(tmp_path, [6.0], [1.0])
    rows = scored_rows([2.0], [1.0]) + [make_row("fresh", "short", "v3", 7.0)]
    gate = compare(rows, base, max_regression=0.5)
    assert not gate.failed and gate.new == ["fresh[v3]"] and gate.unpaired == 1
    assert "too few pairs" in format_gate(gate)
    assert compare(rows, base, max_regression=0.5, min_pairs=1).failed


def test_gate_is_deterministic_and_validates(tmp_path: Path) -> None:
    base = baseline_for(tmp_path)
    rows = scored_rows([s - 0.6 for s in BASE_SCORES])
    assert compare(rows, base, 0.5, seed=1).groups == compare(rows, base, 0.5, seed=1).groups
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_regression"):
            compare(rows, base, bad)
        with pytest.raises(ValueError, match="max_yield_drop"):
            compare(rows, base, 0.5, max_yield_drop=bad)
    with pytest.raises(ValueError, match="duplicate"):
        compare(rows + rows[:1], base, 0.5)


def test_incompatibilities_name_every_differing_field() -> None:
    assert incompatibilities(COMPAT, dict(COMPAT)) == []
    current = {**COMPAT, "judge": "groq", "judge_model": "llama-3.1-8b", "n": 3, "quant": "4bit"}
    problems = incompatibilities(COMPAT, current)
    assert len(problems) == 4
    assert [p.split(":")[0] for p in problems] == ["judge", "judge_model", "quant", "n"]  # COMPAT_FIELDS order
    assert "judge: baseline 'heuristic', this run 'groq'" in problems
    assert "n: baseline 5, this run 3" in problems
    # A field the baseline never recorded differs from any value this run states.
    assert incompatibilities({k: v for k, v in COMPAT.items() if k != "kernel"}, COMPAT) == [
        "kernel: baseline None, this run 'sdpa'"]
    # Except the fields added later: a baseline without them was generated locally, with raw decoding.
    older = {k: v for k, v in COMPAT.items() if k not in ("backend", "served", "pick", "distinct_lines")}
    assert incompatibilities(older, COMPAT) == []
    served = {**COMPAT, "backend": "openai", "served": {"version": "0.9.1", "models": {"v1": "v1"}}}
    assert [p.split(":")[0] for p in incompatibilities(older, served)] == ["backend", "served"]
    assert incompatibilities(older, {**COMPAT, "pick": True}) == ["pick: baseline False, this run True"]
    assert incompatibilities(older, {**COMPAT, "distinct_lines": True}) == ["distinct_lines: baseline False, this run True"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "invalid JSON at line 1"),
        ("[1, 2]", "expected a JSON object"),
        ('{"version": 1, "cases": {}}', "baseline version 1 is not 2"),
        ('{"version": 2, "compat": {}, "cases": []}', "'cases' must be an object"),
        ('{"version": 2, "cases": {}}', "'compat' must be an object"),
        ('{"version": 2, "compat": {}, "cases": {"a[v1]": {"category": "normal", "model": "v1", "score": "high"}}}',
         "'score' must be a finite number"),
        ('{"version": 2, "compat": {}, "cases": {"a[v1]": {"category": "normal", "model": "v1", "score": 5, "yield": "lots"}}}',
         "'yield' must be a finite number"),
        ('{"version": 2, "compat": {}, "cases": {"a[v1]": {"category": "normal", "score": 5}}}', "'model' must be a string"),
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


def run_dir_for(tmp_path: Path, rows: list[dict[str, Any]], run_id: str, compat: dict[str, Any] | None = None) -> Path:
    return write_report(rows, tmp_path / "results", {"compat": COMPAT if compat is None else compat}, run_id=run_id)


def test_cli_prints_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = run_dir_for(tmp_path, sample_rows(), "r")
    assert cli_main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| category") and "| multilingual" in out and SAFETY_FILTER not in out.split("\n\n")[0]
    assert "safety filter (the same for every model): blocked 1/2" in out
    assert cli_main(["report", str(tmp_path / "results" / "latest"), "--pivot", "--format", "simple"]) == 0
    assert "8.00 [8.00, 8.00]" in capsys.readouterr().out
    assert cli_main(["report", str(run_dir / "cases.jsonl"), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("category,model,n,") and "safety filter" not in captured.out
    assert "safety filter" in captured.err  # stdout stays machine-readable


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


def test_cli_refuses_rows_of_another_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = {k: v for k, v in make_row("a").items() if k != "schema"}  # a row written before slot scores
    (tmp_path / "cases.jsonl").write_text(json.dumps(old) + "\n")
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "result schema None, not 2" in capsys.readouterr().err


def test_cli_gate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base_dir = run_dir_for(tmp_path, scored_rows(BASE_SCORES), "base")
    baseline = tmp_path / "baseline.json"
    assert cli_main(["report", str(base_dir), "--write-baseline", str(baseline)]) == 0
    doc = load_baseline(baseline)
    assert doc["meta"]["run_id"] == "base" and doc["compat"] == COMPAT

    same = run_dir_for(tmp_path, scored_rows([s - 0.2 for s in BASE_SCORES]), "same")
    assert cli_main(["report", str(same), "--baseline", str(baseline)]) == 0
    assert "baseline gate passed" in capsys.readouterr().out

    worse = run_dir_for(tmp_path, scored_rows([s - 1.5 for s in BASE_SCORES]), "worse")
    assert cli_main(["report", str(worse), "--baseline", str(baseline)]) == 1
    assert "REGRESSION score multilingual [v3]" in capsys.readouterr().out
    assert cli_main(["report", str(worse), "--baseline", str(baseline), "--max-regression", "2"]) == 0

    fewer = run_dir_for(tmp_path, scored_rows(BASE_SCORES, [y - 0.3 for y in BASE_YIELDS]), "fewer")
    assert cli_main(["report", str(fewer), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION yield multilingual [v3]" in out and "REGRESSION score" not in out
    assert cli_main(["report", str(fewer), "--baseline", str(baseline), "--max-yield-drop", "0.5"]) == 0

    # A failed gate still writes the new scores (to another path), after the gate's verdict.
    before = baseline.read_text()
    candidate = tmp_path / "candidate.json"
    assert cli_main(["report", str(worse), "--baseline", str(baseline), "--write-baseline", str(candidate)]) == 1
    captured = capsys.readouterr()
    assert "REGRESSION score" in captured.out and f"wrote baseline {candidate}" in captured.err
    assert load_baseline(candidate)["meta"]["run_id"] == "worse" and baseline.read_text() == before

    baseline.write_text("{broken")
    assert cli_main(["report", str(worse), "--baseline", str(baseline)]) == 2
    assert f"{baseline}: invalid JSON" in capsys.readouterr().err


def test_cli_refuses_to_overwrite_the_baseline_it_gates_against(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    base_dir = run_dir_for(tmp_path, scored_rows(BASE_SCORES), "base")
    baseline = tmp_path / "baseline.json"
    assert cli_main(["report", str(base_dir), "--write-baseline", str(baseline)]) == 0
    before, mtime = baseline.read_bytes(), baseline.stat().st_mtime_ns
    better = run_dir_for(tmp_path, scored_rows([s + 1.0 for s in BASE_SCORES]), "better")  # would pass the gate
    monkeypatch.chdir(tmp_path)
    for spelling in (str(baseline), "baseline.json", "./sub/../baseline.json"):
        capsys.readouterr()
        assert cli_main(["report", str(better), "--baseline", str(baseline), "--write-baseline", spelling]) == 2
        captured = capsys.readouterr()
        assert "is the --baseline being gated against" in captured.err and "baseline gate" not in captured.out
    assert baseline.read_bytes() == before and baseline.stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_refuses_an_incompatible_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base_dir = run_dir_for(tmp_path, scored_rows(BASE_SCORES), "base")
    baseline = tmp_path / "baseline.json"
    assert cli_main(["report", str(base_dir), "--write-baseline", str(baseline)]) == 0
    other = {**COMPAT, "judge": "groq", "n": 3}
    worse = run_dir_for(tmp_path, scored_rows([s - 1.5 for s in BASE_SCORES]), "other-judge", compat=other)
    capsys.readouterr()
    assert cli_main(["report", str(worse), "--baseline", str(baseline)]) == 2  # not 1: nothing was compared
    captured = capsys.readouterr()
    assert "cannot be compared" in captured.err and str(worse / "run.json") in captured.err
    assert "judge: baseline 'heuristic', this run 'groq'" in captured.err and "n: baseline 5, this run 3" in captured.err
    assert "REGRESSION" not in captured.out and "baseline gate" not in captured.out
    # The same scores under the baseline's compat are a regression report (exit 1), so 2 came from compat.
    same_compat = run_dir_for(tmp_path, scored_rows([s - 1.5 for s in BASE_SCORES]), "same-judge")
    assert cli_main(["report", str(same_compat), "--baseline", str(baseline)]) == 1


def test_cli_needs_run_json_compat_to_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = write_report(scored_rows(BASE_SCORES), tmp_path / "results", {}, run_id="no-compat")
    target = tmp_path / "b.json"
    assert cli_main(["report", str(run_dir)]) == 0  # tables need no compat
    capsys.readouterr()
    assert cli_main(["report", str(run_dir), "--write-baseline", str(target)]) == 2
    assert f"{run_dir / 'run.json'}: no 'compat' object" in capsys.readouterr().err and not target.exists()
    (run_dir / "run.json").unlink()
    assert cli_main(["report", str(run_dir / "cases.jsonl"), "--write-baseline", str(target)]) == 2
    assert f"{run_dir / 'run.json'}: not found" in capsys.readouterr().err and not target.exists()
    partial = {k: v for k, v in COMPAT.items() if k not in ("judge", "seed")}
    (run_dir / "run.json").write_text(json.dumps({"compat": partial}))
    assert cli_main(["report", str(run_dir), "--write-baseline", str(target)]) == 2
    assert "'compat' lacks judge, seed" in capsys.readouterr().err and not target.exists()


@pytest.mark.parametrize("option", ["--max-regression", "--max-yield-drop"])
@pytest.mark.parametrize("value", ["nan", "inf", "-0.1"])
def test_cli_rejects_bad_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    run_dir = run_dir_for(tmp_path, scored_rows(BASE_SCORES), "r")
    baseline = write_baseline(scored_rows(BASE_SCORES), tmp_path / "baseline.json", COMPAT)
    assert cli_main(["report", str(run_dir), "--baseline", str(baseline), f"{option}={value}"]) == 2
    captured = capsys.readouterr()
    assert f"{option} must be a finite number >= 0" in captured.err and captured.out == ""
    assert cli_main(["report", str(run_dir), "--baseline", str(baseline), f"{option}=0"]) == 0  # the option itself works


def test_report_module_imports_no_torch() -> None:
    # This code runs in the pytest controller: torch must stay out of it.
    import subprocess
    import sys

    code = "import sys, domain_eval.report, domain_eval.gating, domain_eval.report_cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert "matplotlib" not in report.__dict__  # imported lazily, inside write_chart
