"""Baseline gating: fail a run only when a drop is both large and statistically real, and only
against a baseline whose scores mean the same thing.

A baseline is a JSON snapshot of per-case slot scores and yields keyed by ``case_id[model]``,
plus ``compat``: everything a score depends on (scoring version, judge name/version/model, base
model, quantisation and kernel as loaded, n, samples, seed, max_new_tokens). A run whose
``compat`` differs is not compared at all: :func:`incompatibilities` names every field that
differs and the plugin stops with a usage error, since a "regression" between two judges is
not a finding about the model.

A compatible run is paired with the baseline case by case, and for every (category, model)
group, plus an ``overall`` group per model, the gate computes the mean paired difference
d = mean(current - baseline) with a paired percentile-bootstrap 95% CI
(:func:`domain_eval.stats.paired_bootstrap_diff`), for the slot ``score`` and for ``yield``.
A group *regresses* when, for either metric,

    baseline_mean - current_mean > allowed drop   (max_regression for score, max_yield_drop for yield)
    and ci_hi < 0                                  (the CI excludes "no drop": not noise)

Both are needed: judges are noisy, so a big but erratic drop on a few cases passes, and a tiny
but consistent drop is below what anyone cares about. Baseline cases whose row is present in
this run but has no score (error, now blocked) are listed as *lost* and fail the gate. Baseline
cases absent from the run altogether (a ``-k`` subset) are only reported.
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

__all__ = ["BASELINE_VERSION", "COMPAT_FIELDS", "BaselineError", "GateResult", "compare", "format_gate",
           "incompatibilities", "load_baseline", "write_baseline"]

BASELINE_VERSION = 2
#: What a score depends on. A baseline and a run that differ in any of these are not compared.
COMPAT_FIELDS = ("scoring_version", "judge", "judge_version", "judge_model", "base", "base_sha256", "quant",
                 "kernel", "n", "samples", "seed", "max_new_tokens", "safety", "backend", "served", "pick",
                 "distinct_lines")
#: Values of fields added after baselines were first written: every earlier baseline ran locally.
_ASSUMED_BEFORE = {"backend": "local", "served": None, "pick": False, "distinct_lines": False}
METRICS = ("score", "yield")

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
        score = as_number(r.get("score"))
        if score is not None and r.get("outcome") not in ("missing", "error"):
            out.append((str(r["key"]), r, score))
    return out


def failed_in_baseline(baseline: Mapping[str, Any] | None, key: str) -> bool:
    """The case missed its thresholds in the baseline too: a known failure, not a regression."""
    entry = (baseline or {}).get("cases", {}).get(key)
    return isinstance(entry, Mapping) and entry.get("passed") is False


def incompatibilities(baseline_compat: Mapping[str, Any], current: Mapping[str, Any], *, partial: bool = False) -> list[str]:
    """One line per field that differs. ``partial``: before the run, when what only loading
    reveals (kernel, base hash) is still None, skip those fields instead of comparing them."""
    out = []
    for name in COMPAT_FIELDS:
        if partial and current.get(name) is None:
            continue
        theirs = baseline_compat.get(name, _ASSUMED_BEFORE.get(name))
        if theirs != current[name]:
            out.append(f"{name}: baseline {theirs!r}, this run {current[name]!r}")
    return out


def write_baseline(rows: Sequence[Row], path: str | os.PathLike[str], compat: Mapping[str, Any],
                   meta: Mapping[str, Any] | None = None) -> Path:
    """Snapshot the scored rows as a baseline file, atomically (sorted keys: diffs stay reviewable).

    Raises ValueError when two scored rows share a key: pairing would be ambiguous.
    """
    scored = _scored(rows)
    dups = _duplicates([k for k, _, _ in scored])
    if dups:
        raise ValueError(f"cannot write baseline: duplicate case keys {', '.join(dups[:5])}")
    cases = {
        k: {"category": r.get("category"), "model": r.get("model"), "score": round(s, 4), "yield": as_number(r.get("yield")),
            "passed": r.get("outcome") == "passed"}
        for k, r, s in scored
    }
    doc = {"version": BASELINE_VERSION, "compat": {k: compat.get(k) for k in COMPAT_FIELDS}, "meta": dict(meta or {}),
           "cases": cases}
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
        raise bad("baseline file not found (write one with --write-baseline PATH)") from None
    except IsADirectoryError:
        raise bad("is a directory, not a baseline file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(f"cannot read baseline ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise bad(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("version") != BASELINE_VERSION:
        raise bad(f"baseline version {doc.get('version')!r} is not {BASELINE_VERSION}: it was written under other "
                  "scoring rules and cannot be compared; write a new one with --write-baseline")
    cases = doc.get("cases")
    if not isinstance(cases, dict):
        raise bad("'cases' must be an object mapping case keys to {category, model, score, yield}")
    if not isinstance(doc.get("compat"), dict):
        raise bad("'compat' must be an object saying what the scores depend on")
    if not isinstance(doc.get("meta", {}), dict):
        raise bad("'meta' must be an object")
    for key, entry in cases.items():
        if not isinstance(entry, dict):
            raise bad(f"case {key!r}: expected an object, got {type(entry).__name__}")
        if as_number(entry.get("score")) is None:
            raise bad(f"case {key!r}: 'score' must be a finite number, got {entry.get('score')!r}")
        if entry.get("yield") is not None and as_number(entry.get("yield")) is None:
            raise bad(f"case {key!r}: 'yield' must be a finite number, got {entry.get('yield')!r}")
        for name in ("category", "model"):
            if not isinstance(entry.get(name), str):
                raise bad(f"case {key!r}: '{name}' must be a string")
    return doc


def _group_line(metric: str, cat: str, model: str, b_mean: float, c_mean: float, diff: float, lo: float, hi: float,
                n: int, confidence: float) -> str:
    fmt = ".0%" if metric == "yield" else ".2f"
    sfmt = "+.0%" if metric == "yield" else "+.2f"
    return (f"{metric} {cat} [{model}]: {b_mean:{fmt}} -> {c_mean:{fmt}} ({diff:{sfmt}}, {confidence:.0%} CI "
            f"[{lo:{sfmt}}, {hi:{sfmt}}], n={n})")


def _amount(metric: str, value: float, spec: str = ".2f") -> str:
    return f"{value:.0%}" if metric == "yield" else format(value, spec)


def compare(
    rows: Sequence[Row],
    baseline: Mapping[str, Any],
    max_regression: float,
    seed: int = 0,
    *,
    max_yield_drop: float = 0.1,
    confidence: float = 0.95,
    min_pairs: int = 2,
    fail_on_lost: bool = True,
) -> GateResult:
    """Pair ``rows`` with ``baseline`` (from :func:`load_baseline`) on ``key`` and gate them.

    Groups with fewer than ``min_pairs`` pairs are reported but cannot regress: one case has
    no spread, so its bootstrap CI is a point and any single noisy judgement would fail.
    """
    for name, value in (("max_regression", max_regression), ("max_yield_drop", max_yield_drop)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    allowed = {"score": max_regression, "yield": max_yield_drop}
    base_cases: Mapping[str, Mapping[str, Any]] = baseline.get("cases", {})
    current = _scored(rows)
    dups = _duplicates([k for k, _, _ in current])
    if dups:
        raise ValueError(f"cannot pair with baseline: duplicate case keys in this run {', '.join(dups[:5])}")
    cur_by_key = {k: r for k, r, _ in current}
    present = {str(r.get("key")) for r in rows}

    pairs: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for key, row in cur_by_key.items():
        if key not in base_cases:
            continue
        cat, model = str(row.get("category")), str(row.get("model"))
        for metric in METRICS:
            c, b = as_number(row.get(metric)), as_number(base_cases[key].get(metric))
            if c is None or b is None:
                continue
            for group in ((metric, cat, model), (metric, OVERALL, model)):
                pairs.setdefault(group, []).append((c, b))
    lost = sorted(k for k in base_cases if k not in cur_by_key and k in present)
    not_run = sorted(k for k in base_cases if k not in present)
    new = sorted(k for k in cur_by_key if k not in base_cases)

    groups: list[dict[str, Any]] = []
    detail: list[str] = []
    order = sorted(pairs, key=lambda g: (METRICS.index(g[0]), g[1] == OVERALL, _category_sort_key(g[1]), _model_sort_key(g[2])))
    for metric, cat, model in order:
        cur = [c for c, _ in pairs[(metric, cat, model)]]
        base = [b for _, b in pairs[(metric, cat, model)]]
        diff, lo, hi = paired_bootstrap_diff(cur, base, confidence=confidence, seed=seed)
        b_mean, c_mean = sum(base) / len(base), sum(cur) / len(cur)
        drop = b_mean - c_mean
        enough = len(cur) >= min_pairs
        limit = allowed[metric]
        regressed = enough and drop > limit and hi < 0
        groups.append({
            "metric": metric, "category": cat, "model": model, "n_paired": len(cur),
            "baseline_mean": round(b_mean, 3), "current_mean": round(c_mean, 3), "diff": round(diff, 3),
            "ci_lo": round(lo, 3), "ci_hi": round(hi, 3), "regressed": regressed,
        })
        head = _group_line(metric, cat, model, b_mean, c_mean, diff, lo, hi, len(cur), confidence)
        if regressed:
            detail.append(f"REGRESSION {head}: drop {_amount(metric, drop)} > max {_amount(metric, limit, 'g')} allowed")
        elif not enough and drop > limit:
            detail.append(f"ok (too few pairs to judge, need {min_pairs}) {head}")
        elif drop > limit:
            detail.append(f"ok (noisy) {head}: drop {_amount(metric, drop)} > max {_amount(metric, limit, 'g')} but the CI includes no drop")
        else:
            detail.append(f"ok {head}")

    n_reg = sum(g["regressed"] for g in groups)
    failed = n_reg > 0 or (fail_on_lost and bool(lost))
    n_pairs = sum(g["n_paired"] for g in groups if g["category"] == OVERALL and g["metric"] == "score")
    summary = (
        f"baseline gate {'FAILED' if failed else 'passed'}: {n_reg} of {len(groups)} groups regressed "
        f"(max score drop {max_regression:g}, max yield drop {max_yield_drop:g}), {n_pairs} paired cases, "
        f"{len(lost)} lost, {len(not_run)} not run, {len(new)} new"
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
