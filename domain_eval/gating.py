"""Baseline gating: fail a run only when a score drop is both large and statistically real.

A baseline is a JSON snapshot of per-case judge scores keyed by ``case_id[model]``. A new
run is paired with it case by case, and for every (category, model) group, plus an
``overall`` group per model, the gate computes the mean paired difference
d = mean(current - baseline) with a paired percentile-bootstrap 95% CI
(:func:`domain_eval.stats.paired_bootstrap_diff`). A group *regresses* when

    baseline_mean - current_mean > max_regression   (the drop is large enough to matter)
    and ci_hi < 0                                    (the CI excludes "no drop": not noise)

Both are needed: LLM judges are noisy, so a big but erratic drop on a few cases passes, and
a tiny but consistent drop is below what anyone cares about. Baseline cases whose row is
present in this run but has no score (crashed worker, error, now blocked) are listed as
*lost* and, unless ``fail_on_lost=False``, fail the gate: they must not pass silently.
Baseline cases absent from the run altogether (a ``-k`` subset) are only reported.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from domain_eval.report import OVERALL, _atomic_write_text, _category_sort_key, _model_sort_key
from domain_eval.stats import as_number, paired_bootstrap_diff

__all__ = ["BASELINE_VERSION", "BaselineError", "GateResult", "compare", "format_gate", "load_baseline", "write_baseline"]

BASELINE_VERSION = 1

Row = Mapping[str, Any]


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message starts with the file path."""


@dataclass
class GateResult:
    """Outcome of :func:`compare`. ``lines`` is the human explanation, summary first."""

    failed: bool
    groups: list[dict[str, Any]]
    lines: list[str]
    unpaired: int  # baseline cases without a current score + scored cases not in the baseline
    lost: list[str] = field(default_factory=list)  # baseline keys run now but unscored / missing
    not_run: list[str] = field(default_factory=list)  # baseline keys with no row in this run
    new: list[str] = field(default_factory=list)  # scored now, absent from the baseline


def _duplicates(keys: Sequence[str]) -> list[str]:
    return sorted(k for k, n in Counter(keys).items() if n > 1)


def _scored(rows: Sequence[Row]) -> list[tuple[str, Row, float]]:
    out = []
    for r in rows:
        score = as_number(r.get("judge_mean"))
        if score is not None and r.get("outcome") != "missing":
            out.append((str(r["key"]), r, score))
    return out


def write_baseline(rows: Sequence[Row], path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> Path:
    """Snapshot the scored rows as a baseline file (sorted keys, so diffs stay reviewable).

    Raises ValueError when two scored rows share a key: pairing would be ambiguous.
    """
    scored = _scored(rows)
    dups = _duplicates([k for k, _, _ in scored])
    if dups:
        raise ValueError(f"cannot write baseline: duplicate case keys {', '.join(dups[:5])}")
    cases = {
        k: {"category": r.get("category"), "model": r.get("model"), "score": round(s, 4)} for k, r, s in scored
    }
    doc = {"version": BASELINE_VERSION, "meta": dict(meta or {}), "cases": cases}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out, json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")
    return out


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a baseline file written by :func:`write_baseline`."""
    p = Path(path)

    def bad(problem: str) -> BaselineError:
        return BaselineError(f"{p}: {problem}")

    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad("baseline file not found (write one with 'domain-eval report --write-baseline')") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(f"cannot read baseline ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise bad(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("version") != BASELINE_VERSION:
        raise bad(f"unsupported baseline version {doc.get('version')!r} (expected {BASELINE_VERSION})")
    cases = doc.get("cases")
    if not isinstance(cases, dict):
        raise bad("'cases' must be an object mapping case keys to {category, model, score}")
    if not isinstance(doc.get("meta", {}), dict):
        raise bad("'meta' must be an object")
    for key, entry in cases.items():
        if not isinstance(entry, dict):
            raise bad(f"case {key!r}: expected an object, got {type(entry).__name__}")
        if as_number(entry.get("score")) is None:
            raise bad(f"case {key!r}: 'score' must be a finite number, got {entry.get('score')!r}")
        for name in ("category", "model"):
            if not isinstance(entry.get(name), str):
                raise bad(f"case {key!r}: '{name}' must be a string")
    return doc


def compare(
    rows: Sequence[Row],
    baseline: Mapping[str, Any],
    max_regression: float,
    seed: int = 0,
    *,
    confidence: float = 0.95,
    min_pairs: int = 2,
    fail_on_lost: bool = True,
) -> GateResult:
    """Pair ``rows`` with ``baseline`` (from :func:`load_baseline`) on ``key`` and gate them.

    Groups with fewer than ``min_pairs`` pairs are reported but cannot regress: one case has
    no spread, so its bootstrap CI is a point and any single noisy judgement would fail.
    """
    if not (math.isfinite(max_regression) and max_regression >= 0):
        raise ValueError(f"max_regression must be a finite number >= 0, got {max_regression}")
    base_cases: Mapping[str, Mapping[str, Any]] = baseline.get("cases", {})
    current = _scored(rows)
    dups = _duplicates([k for k, _, _ in current])
    if dups:
        raise ValueError(f"cannot pair with baseline: duplicate case keys in this run {', '.join(dups[:5])}")
    cur_by_key = {k: (r, s) for k, r, s in current}
    present = {str(r.get("key")) for r in rows}

    pairs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for key, (row, score) in cur_by_key.items():
        if key in base_cases:
            b = as_number(base_cases[key].get("score"))
            if b is None:
                continue
            cat, model = str(row.get("category")), str(row.get("model"))
            pairs.setdefault((cat, model), []).append((score, b))
            pairs.setdefault((OVERALL, model), []).append((score, b))
    lost = sorted(k for k in base_cases if k not in cur_by_key and k in present)
    not_run = sorted(k for k in base_cases if k not in present)
    new = sorted(k for k in cur_by_key if k not in base_cases)

    groups: list[dict[str, Any]] = []
    detail: list[str] = []
    order = sorted(pairs, key=lambda g: (g[0] == OVERALL, _category_sort_key(g[0]), _model_sort_key(g[1])))
    for cat, model in order:
        cur = [c for c, _ in pairs[(cat, model)]]
        base = [b for _, b in pairs[(cat, model)]]
        diff, lo, hi = paired_bootstrap_diff(cur, base, confidence=confidence, seed=seed)
        b_mean, c_mean = sum(base) / len(base), sum(cur) / len(cur)
        drop = b_mean - c_mean
        enough = len(cur) >= min_pairs
        regressed = enough and drop > max_regression and hi < 0
        groups.append({
            "category": cat, "model": model, "n_paired": len(cur),
            "baseline_mean": round(b_mean, 3), "current_mean": round(c_mean, 3), "diff": round(diff, 3),
            "ci_lo": round(lo, 3), "ci_hi": round(hi, 3), "regressed": regressed,
        })
        head = f"{cat} [{model}]: {b_mean:.2f} -> {c_mean:.2f} ({diff:+.2f}, {confidence:.0%} CI [{lo:+.2f}, {hi:+.2f}], n={len(cur)})"
        if regressed:
            detail.append(f"REGRESSION {head}: drop {drop:.2f} > max {max_regression:g} allowed")
        elif not enough and drop > max_regression:
            detail.append(f"ok (too few pairs to judge, need {min_pairs}) {head}")
        elif drop > max_regression:
            detail.append(f"ok (noisy) {head}: drop {drop:.2f} > max {max_regression:g} but the CI includes no drop")
        else:
            detail.append(f"ok {head}")

    n_reg = sum(g["regressed"] for g in groups)
    failed = n_reg > 0 or (fail_on_lost and bool(lost))
    n_pairs = sum(g["n_paired"] for g in groups if g["category"] == OVERALL)
    summary = (
        f"baseline gate {'FAILED' if failed else 'passed'}: {n_reg} of {len(groups)} groups regressed "
        f"(max drop {max_regression:g}), {n_pairs} paired cases, {len(lost)} lost, {len(not_run)} not run, {len(new)} new"
    )
    lines = [summary, *detail]
    if not groups:
        lines.append("no case of this run is in the baseline: nothing was compared")
    if lost:
        tag = "LOST" if fail_on_lost else "lost (allowed)"
        lines.append(f"{tag}: {len(lost)} baseline case(s) ran but have no score (missing, error or blocked): "
                     + ", ".join(lost[:20]) + (" ..." if len(lost) > 20 else ""))
    if not_run:
        lines.append(f"not run: {len(not_run)} baseline case(s) were not in this run: "
                     + ", ".join(not_run[:20]) + (" ..." if len(not_run) > 20 else ""))
    return GateResult(failed=failed, groups=groups, lines=lines, unpaired=len(lost) + len(not_run) + len(new),
                      lost=lost, not_run=not_run, new=new)


def format_gate(result: GateResult) -> str:
    """The explanation lines, one per group, summary first."""
    return "\n".join(result.lines)
