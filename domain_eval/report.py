"""Aggregate per-case result rows into tables, files and a chart under ``results/<run-id>/``.

Input rows are the plain dicts the pytest plugin emits, one per (case, model) item. Rows
whose xdist worker crashed have ``outcome == "missing"`` and carry identity fields only;
every aggregate here tolerates absent or None fields, and such rows are *counted*
(``missing``), never dropped, so a partial run still yields an honest report.

Only the standard library, numpy (via :mod:`domain_eval.stats`) and tabulate are imported at
module level; matplotlib is imported inside :func:`write_chart` so that loading the plugin
in the pytest controller stays cheap.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import shutil
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tabulate import tabulate

from domain_eval.cases import CATEGORIES
from domain_eval.judges.base import CRITERIA
from domain_eval.scoring import DEFAULT_MAX_REGRESSION, SAFETY_FILTER, quote
from domain_eval.stats import as_number, bootstrap_ci, mean_or_none

__all__ = [
    "CATEGORY_ORDER",
    "CRITERIA",
    "ReportError",
    "comparison_table",
    "criteria_table",
    "format_pivot",
    "format_table",
    "new_run_id",
    "read_cases",
    "update_latest",
    "write_chart",
    "write_report",
]

CATEGORY_ORDER = CATEGORIES
OVERALL = "overall"
# Fields every row has, even a "missing" one; read_cases rejects files without them.
REQUIRED_FIELDS = ("key", "category", "model", "outcome")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# report.md lists at most this many failures in full; cases.csv always has every row.
_MAX_LISTED_FAILURES = 200
_RATE_COLUMNS = frozenset({"yield", "distinct_names", "block_accuracy", "confidence"})

Row = Mapping[str, Any]


class ReportError(ValueError):
    """A run directory or cases.jsonl that cannot be read; the message names the path."""


# ---------------------------------------------------------------- grouping


def _category_sort_key(category: str) -> tuple[int, str]:
    # Known categories in suite order; unknown ones after them, alphabetically.
    try:
        return (CATEGORY_ORDER.index(category), "")
    except ValueError:
        return (len(CATEGORY_ORDER), category)


def _model_sort_key(model: str) -> tuple[int, list[Any]]:
    # Sorted, not first-seen: xdist finishes items in arbitrary order, and the tables must not
    # reshuffle between identical runs. "base" first, then natural order (v2 < v10).
    parts = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", model)]
    return (0 if model == "base" else 1, parts)


def _ordered_models(rows: Iterable[Row]) -> list[str]:
    return sorted({str(r.get("model")) for r in rows}, key=_model_sort_key)


def _model_rows(rows: Iterable[Row]) -> list[Row]:
    """Rows that say something about a model: not the safety filter's own cases, not invalid files."""
    return [r for r in rows if r.get("model") != SAFETY_FILTER and r.get("outcome") != "invalid"]


def _groups(rows: Sequence[Row]) -> "OrderedDict[tuple[str, str], list[Row]]":
    """(category, model) -> rows, in table order, followed by one (overall, model) per model."""
    rows = _model_rows(rows)
    buckets: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        buckets.setdefault((str(r.get("category")), str(r.get("model"))), []).append(r)
    out: OrderedDict[tuple[str, str], list[Row]] = OrderedDict()
    for cat, model in sorted(buckets, key=lambda k: (_category_sort_key(k[0]), _model_sort_key(k[1]))):
        out[(cat, model)] = buckets[(cat, model)]
    for model in _ordered_models(rows):
        out[(OVERALL, model)] = [r for r in rows if str(r.get("model")) == model]
    return out


def _round(value: float | None, ndigits: int) -> float | None:
    return None if value is None else round(value, ndigits)


def _is_missing(row: Row) -> bool:
    return row.get("outcome") == "missing"


def _generated(row: Row) -> bool:
    # Rows that went through generation: blocked rows (correctly or not) produced nothing, so
    # their valid rate / confidence would only measure the safety filter, not the model.
    return not _is_missing(row) and not row.get("blocked")


# ---------------------------------------------------------------- tables


def comparison_table(rows: Sequence[Row], seed: int = 0) -> list[dict[str, Any]]:
    """One dict per (category, model), then an ``overall`` dict per model.

    score: mean slot score (:mod:`domain_eval.scoring`) over the cases that have one, with a
    95% bootstrap CI (``ci_lo``/``ci_hi``); ``n_scored`` says how many cases that is (errors
    and missing cases have none, and are counted in ``errors``/``missing``). quality: mean
    judge score over valid domains only. yield, distinct_names, confidence: means over the
    generated cases. unsafe_generated: names the model wrote that the output filter removed.
    The safety filter's own cases (expected to be blocked) are not here: see
    :func:`safety_table`. Scores are rounded to 2 decimals, rates to 3.
    """
    table: list[dict[str, Any]] = []
    for (cat, model), group in _groups(rows).items():
        scores = [s for s in (as_number(r.get("score")) for r in group) if s is not None]
        ci = bootstrap_ci(scores, seed=seed)
        outcomes = [r.get("outcome") for r in group]
        generated = [r for r in group if _generated(r) and r.get("samples") and r.get("outcome") != "error"]
        table.append(
            {
                "category": cat,
                "model": model,
                "n": len(group),
                "n_scored": len(scores),
                "score": _round(ci[0], 2) if ci else None,
                "ci_lo": _round(ci[1], 2) if ci else None,
                "ci_hi": _round(ci[2], 2) if ci else None,
                "quality": _round(mean_or_none(r.get("quality") for r in generated), 2),
                "yield": _round(mean_or_none(r.get("yield") for r in generated), 3),
                "distinct_names": _round(mean_or_none(r.get("distinct_names") for r in generated), 3),
                "confidence": _round(mean_or_none(r.get("mean_confidence") for r in generated), 3),
                "unsafe_generated": sum(int(as_number(r.get("unsafe_generated")) or 0) for r in generated),
                "errors": outcomes.count("error"),
                "missing": outcomes.count("missing"),
                "passed": outcomes.count("passed"),
                "failed": outcomes.count("failed"),
            }
        )
    return table


def summary_table(table: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The columns worth a glance in a terminal."""
    keep = ("category", "model", "n", "score", "ci_lo", "ci_hi", "quality", "yield", "distinct_names", "errors", "missing")
    return [{k: t.get(k) for k in keep} for t in table]


def safety_table(rows: Sequence[Row]) -> dict[str, Any]:
    """The safety filter's accuracy on the cases, once (it is the same for every model).

    blocked: cases that must be blocked, and how many were. allowed: distinct allowed cases,
    and how many the filter wrongly blocked (each counted once, whatever the number of models).
    """
    must_block = [r for r in rows if r.get("model") == SAFETY_FILTER and isinstance(r.get("block_correct"), bool)]
    allowed: dict[str, bool] = {}
    for r in rows:
        if r.get("expect") == "allowed" and isinstance(r.get("blocked"), bool):
            allowed[str(r.get("case_id"))] = bool(r["blocked"])
    return {
        "must_block": len(must_block), "blocked": sum(1 for r in must_block if r["block_correct"]),
        "allowed_cases": len(allowed), "wrongly_blocked": sum(allowed.values()),
    }


def safety_summary(rows: Sequence[Row]) -> str | None:
    t = safety_table(rows)
    if not t["must_block"] and not t["allowed_cases"]:
        return None
    parts = []
    if t["must_block"]:
        parts.append(f"blocked {t['blocked']}/{t['must_block']} cases that must be blocked")
    if t["allowed_cases"]:
        parts.append(f"wrongly blocked {t['wrongly_blocked']}/{t['allowed_cases']} allowed cases")
    return "safety filter (the same for every model): " + ", ".join(parts)


def criteria_table(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per (category, model) mean of each judge criterion (plus ``overall`` per model).

    The five standard criteria come first; any extra criterion a judge reports is appended
    (sorted) instead of being silently dropped.
    """
    extra = sorted(
        {c for r in rows if isinstance(r.get("criteria_mean"), Mapping) for c in r["criteria_mean"]} - set(CRITERIA)
    )
    names = list(CRITERIA) + extra
    table: list[dict[str, Any]] = []
    for (cat, model), group in _groups(rows).items():
        crits = [r["criteria_mean"] for r in group if isinstance(r.get("criteria_mean"), Mapping)]
        entry: dict[str, Any] = {"category": cat, "model": model, "n_scored": len(crits)}
        for name in names:
            entry[name] = _round(mean_or_none(c.get(name) for c in crits), 2)
        table.append(entry)
    return table


def _csv_text(table: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    if table:
        writer = csv.DictWriter(buf, fieldnames=list(table[0].keys()), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    return buf.getvalue()


def format_table(table: Sequence[Mapping[str, Any]], fmt: str = "github") -> str:
    """Render a list of dicts with tabulate (any tablefmt), or as CSV text for ``fmt="csv"``."""
    if fmt == "csv":
        return _csv_text(table)
    if not table:
        return "(no rows)"
    # Fixed decimals per column (tabulate would print 4.4 next to 4.41): rates 3, scores 2.
    floatfmt = [".3f" if k in _RATE_COLUMNS else ".2f" for k in table[0]]
    return tabulate([dict(t) for t in table], headers="keys", tablefmt=fmt, missingval="-", floatfmt=floatfmt)


def format_pivot(table: Sequence[Mapping[str, Any]], fmt: str = "github") -> str:
    """Wide view of a :func:`comparison_table`: rows = category, columns = model.

    Cells read ``6.21 [5.90, 6.50]`` (slot score and 95% CI), ``-`` where nothing was scored.
    """
    models = sorted({str(t["model"]) for t in table}, key=_model_sort_key)
    cells: dict[str, dict[str, str]] = {}
    for t in table:
        if t.get("score") is not None:
            cell = f"{t['score']:.2f} [{t['ci_lo']:.2f}, {t['ci_hi']:.2f}]"
        else:
            cell = "-"
        cells.setdefault(str(t["category"]), {})[str(t["model"])] = cell
    out = [{"category": cat, **{m: by_model.get(m, "-") for m in models}} for cat, by_model in cells.items()]
    return format_table(out, fmt)


# ---------------------------------------------------------------- reading


def read_cases(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows from a run directory's ``cases.jsonl`` (or that file itself), validated.

    Raises :class:`ReportError` naming the path (and line) for a missing directory, a
    missing file, bad JSON or a row without the identity fields.
    """
    p = Path(path)
    file = p / "cases.jsonl" if p.is_dir() else p
    if not p.exists():
        raise ReportError(f"{p}: run directory not found (run the eval first, or pass results/<run-id>)")
    if not file.is_file():
        raise ReportError(f"{file}: not found; {p} does not look like a run directory")
    rows: list[dict[str, Any]] = []
    with file.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReportError(f"{file}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ReportError(f"{file}:{lineno}: expected a JSON object, got {type(row).__name__}")
            absent = [f for f in REQUIRED_FIELDS if f not in row]
            if absent:
                raise ReportError(f"{file}:{lineno}: row lacks field(s) {', '.join(absent)}")
            rows.append(row)
    return rows


# ---------------------------------------------------------------- writing helpers


def _atomic_write_text(path: Path, text: str) -> None:
    # Readers (CI, a `report` command on results/latest) must never see a half-written file.
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    # Rows are meant to be plain JSON; numpy scalars or Paths slipping in must not lose a run.
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_json_default, **kw)


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxx`` (UTC, random hex suffix): sorts by time, unique across workers."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def _domains(row: Row, limit: int | None = 10) -> list[dict[str, Any]]:
    """Unique generated domains of a row across samples, first occurrence kept, in order."""
    seen: dict[str, dict[str, Any]] = {}
    for sample in row.get("samples") or []:
        for d in (sample or {}).get("domains") or []:
            name = d.get("domain") if isinstance(d, Mapping) else None
            if name and name not in seen:
                seen[name] = dict(d)
    return list(seen.values())[:limit]


def _flat_case(row: Row) -> dict[str, Any]:
    crit = row.get("criteria_mean") if isinstance(row.get("criteria_mean"), Mapping) else {}
    flat: dict[str, Any] = {
        k: row.get(k)
        for k in (
            "key", "case_id", "category", "model", "expect", "outcome", "pytest_outcome", "blocked", "block_correct",
            "block_category", "score", "quality", "yield", "distinct_names", "filled_slots", "mean_confidence",
            "judge_errors", "unsafe_generated", "min_score", "min_valid", "duration_s",
        )
    }
    for name in CRITERIA:
        flat[f"crit_{name}"] = crit.get(name)
    flat["domains"] = " ".join(d["domain"] for d in _domains(row))
    flat["failures"] = "; ".join(str(f) for f in row.get("failures") or [])
    flat["tags"] = " ".join(str(t) for t in row.get("tags") or [])
    flat["description"] = row.get("description")
    flat["nodeid"] = row.get("nodeid")
    return flat


def _counts(rows: Sequence[Row]) -> dict[str, Any]:
    outcomes = [str(r.get("outcome")) for r in rows]
    pytest_outcomes = [r.get("pytest_outcome") for r in rows if r.get("pytest_outcome")]
    return {
        "items": len(rows),
        "scored": sum(1 for r in rows if as_number(r.get("score")) is not None),
        **{o: outcomes.count(o) for o in ("passed", "failed", "error", "missing")},
        "invalid_files": sum(1 for r in rows if r.get("outcome") == "invalid" and r.get("case_id") == "<invalid-file>"),
        "invalid_items": outcomes.count("invalid"),
        "pytest": {o: pytest_outcomes.count(o) for o in sorted(set(pytest_outcomes))},
        "models": _ordered_models(_model_rows(rows)),
        "categories": sorted({str(r.get("category")) for r in _model_rows(rows)}, key=_category_sort_key),
    }


# ---------------------------------------------------------------- chart


def write_chart(table: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Grouped bars (x = category, one bar per model) of mean slot score with CI whiskers.

    The safety filter's own cases are not in ``table`` (nothing is generated for them). Uses the Agg canvas on a
    bare ``Figure`` rather than pyplot: no global backend switch, no display needed, and
    nothing leaks between calls in a long-lived pytest process.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    entries = list(table)
    cats = list(OrderedDict.fromkeys(str(t["category"]) for t in entries))
    models = sorted({str(t["model"]) for t in entries}, key=_model_sort_key)
    lookup = {(str(t["category"]), str(t["model"])): t for t in entries}

    fig = Figure(figsize=(max(6.0, 1.3 * len(cats) + 2.0), 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(models))
    x = np.arange(len(cats))
    any_bar = False
    for i, model in enumerate(models):
        heights, err_lo, err_hi = [], [], []
        for cat in cats:
            t = lookup.get((cat, model), {})
            s = t.get("score")
            heights.append(np.nan if s is None else s)
            err_lo.append(0.0 if s is None else max(0.0, s - t["ci_lo"]))
            err_hi.append(0.0 if s is None else max(0.0, t["ci_hi"] - s))
            any_bar = any_bar or s is not None
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, yerr=[err_lo, err_hi], capsize=3, label=model)
    if not any_bar:
        ax.text(0.5, 0.5, "no scored cases in this run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(x)
    ax.set_xticklabels(cats, rotation=20, ha="right")
    ax.set_ylim(0, 10)
    ax.set_ylabel("mean slot score (1-10; empty slot = 1)")
    ax.set_title("Slot score by category and model (95% bootstrap CI)")
    ax.grid(axis="y", alpha=0.3)
    if models:
        # Outside the axes: bars reach 10, a legend inside would hide some of them.
        ax.legend(title="model", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.tight_layout()
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------- report.md


def _md_escape(text: Any) -> str:
    # One line, no markdown table breakers: descriptions are free text in any script.
    return " ".join(str(text).split()).replace("|", "\\|")


def _domain_md(d: Mapping[str, Any]) -> str:
    score = as_number(d.get("overall"))
    note = "-" if score is None else f"{score:.1f}"
    if d.get("error"):
        note += f", {_md_escape(d['error'])}"
    return f"`{d['domain']}` ({note})"


def _fmt(value: Any, spec: str = ".2f") -> str:
    number = as_number(value)
    return "-" if number is None else format(number, spec)


def _failure_block(row: Row) -> list[str]:
    shown = row.get("pytest_outcome") or row.get("outcome")
    head = f"### `{row.get('key')}` ({row.get('category')}, {shown})"
    lines = [head, "", f"> {_md_escape(quote(row.get('description') or ''))}", ""]
    if row.get("samples"):
        lines.append(f"- score: {_fmt(row.get('score'))} (min {_fmt(row.get('min_score'), 'g')}), quality {_fmt(row.get('quality'))}, "
                     f"yield {_fmt(row.get('yield'), '.0%')}, distinct names {_fmt(row.get('distinct_names'), '.0%')}")
    if row.get("expect") == "blocked" or row.get("blocked"):
        lines.append(f"- blocked: {row.get('blocked')} (expect {row.get('expect')})")
    doms = _domains(row)
    if doms:
        lines.append("- domains: " + ", ".join(_domain_md(d) for d in doms))
    for reason in row.get("failures") or []:
        lines.append(f"- reason: {_md_escape(reason)}")
    return lines + [""]


def _meta_lines(run_meta: Mapping[str, Any]) -> list[str]:
    lines = []
    for k, v in run_meta.items():
        text = v if isinstance(v, str) else _dumps(v)
        text = _md_escape(text)
        lines.append(f"- **{_md_escape(k)}**: {text if len(text) <= 200 else text[:197] + '...'}")
    return lines


def _model_overview(comp: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    keep = ("model", "n", "score", "ci_lo", "ci_hi", "quality", "yield", "distinct_names", "confidence", "unsafe_generated",
            "errors", "missing")
    return [{k: t.get(k) for k in keep} for t in comp if t.get("category") == OVERALL]


def decoding_summary(compat: Mapping[str, Any]) -> str:
    """How the answers were decoded, in words: what a reader needs to judge the scores."""
    greedy = ("greedy with distinct lines (--distinct-lines on: a line may not go on as an earlier one)"
              if compat.get("distinct_lines") else "plain greedy (--distinct-lines off)")
    if compat.get("pick"):
        return (f"picked (--pick on): {greedy}; names of 4 seeded samples pooled when an answer was still short; "
                "degenerate names and extra TLD variants dropped; no judge took part")
    return f"{greedy}, each model's first answer scored as it is (--pick off)"


def _report_md(rows: Sequence[Row], run_id: str, run_meta: Mapping[str, Any], comp: list[dict[str, Any]],
               crit: list[dict[str, Any]], chart_note: str | None) -> str:
    c = _counts(rows)
    pytest_counts = ", ".join(f"{o} {n}" for o, n in c["pytest"].items()) or "-"
    safety = safety_summary(rows)
    out = [f"# domain-eval report `{run_id}`", ""]
    out += [
        f"- **items**: {c['items']} ({c['scored']} scored); pytest: {pytest_counts}; missing {c['missing']}",
        f"- **invalid case files**: {c['invalid_files']} ({c['invalid_items']} invalid item(s) in all)",
        f"- **models in results**: {', '.join(c['models']) or '-'}",
        "- **decoding**: " + decoding_summary(run_meta.get("compat") or {}),
        "",
        "**score** is the mean over the n requested slots: the judge's score for each distinct valid name, "
        "1 for each slot left empty (missing, invalid, repeated, unsafe or a TLD variant). **quality** is the judge's "
        "mean over valid domains only; **yield** is valid distinct domains / n; **distinct_names** is distinct names / n.",
        "",
        "## Models",
        "",
        format_table(_model_overview(comp)),
        "",
        "## Slot score by category (95% bootstrap CI)",
        "",
        format_pivot(comp),
        "",
        "![chart](chart.png)" if chart_note is None else f"_chart unavailable: {_md_escape(chart_note)}_",
        "",
        "## Safety filter",
        "",
        (safety or "no case tested the safety filter") + ". Unsafe names each model wrote (removed by the output "
        "filter, each an empty slot) are in the `unsafe_generated` column.",
        "",
        "## Comparison",
        "",
        format_table(comp),
        "",
        "## Judge criteria (means over valid domains)",
        "",
        format_table(crit),
        "",
    ]
    failures = [r for r in rows if r.get("outcome") in ("failed", "error", "invalid")]
    out += [f"## Failures, errors and invalid files ({len(failures)})", ""]
    for r in failures[:_MAX_LISTED_FAILURES]:
        out += _failure_block(r)
    if len(failures) > _MAX_LISTED_FAILURES:
        out += [f"... {len(failures) - _MAX_LISTED_FAILURES} more: see cases.csv", ""]
    if not failures:
        out += ["none", ""]
    missing = [r for r in rows if _is_missing(r)]
    out += [f"## Missing ({len(missing)})", ""]
    out += [f"- `{r.get('nodeid') or r.get('key')}` ({'; '.join(r.get('failures') or []) or 'worker crashed; no result'})"
            for r in missing] or ["none"]
    out += ["", "## Run", ""] + _meta_lines(run_meta)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- run dir + latest


def update_latest(results_root: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> Path:
    """Point ``<root>/latest`` at ``run_dir`` and write its id to ``<root>/LATEST``.

    A relative symlink (so the results folder can be moved or archived) is built under a
    temp name and swapped in with ``os.replace``, which is atomic. Where symlinks are
    unavailable (Windows without privilege, some mounts) ``latest`` becomes a copy of the run
    dir instead. ``LATEST`` (plain text) is the portable pointer for tools that do not follow
    links.
    """
    root, run = Path(results_root), Path(run_dir)
    latest = root / "latest"
    tmp = root / f".latest.tmp-{secrets.token_hex(4)}"
    try:
        os.symlink(run.name, tmp, target_is_directory=True)
    except OSError:
        shutil.copytree(run, tmp)
    _replace_path(tmp, latest)
    _atomic_write_text(root / "LATEST", run.name + "\n")
    return latest


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _replace_path(new: Path, target: Path) -> None:
    # os.replace is atomic link-over-link, but POSIX rename cannot put a directory over a
    # link or anything over a directory: then move the old one aside first (brief window in
    # which `latest` is absent, never one in which it is half-written).
    if not (_is_real_dir(new) or _is_real_dir(target)) or not (target.exists() or target.is_symlink()):
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
    os.replace(target, old)
    os.replace(new, target)
    if _is_real_dir(old):
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def write_report(
    rows: Sequence[Row],
    results_root: str | os.PathLike[str] = "results",
    run_meta: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    seed: int = 0,
    baseline_cases: Mapping[str, Mapping[str, Any]] | None = None,
    max_drop: float = DEFAULT_MAX_REGRESSION,
) -> Path:
    """Write ``<results_root>/<run_id>/`` and repoint ``latest``; return the run dir.

    Files: cases.jsonl (rows verbatim), cases.csv (flattened), comparison.csv, criteria.csv,
    chart.png, report.md, report.html (self-contained: every model's names side by side, with
    filters; regressions against ``baseline_cases`` when given), run.json (``run_meta`` plus
    ``run_id`` and ``counts``). Partial
    rows (missing / error) are written like any other; a chart failure is noted in report.md
    and run.json rather than losing the rest of the report.
    """
    run_meta = dict(run_meta or {})
    if run_id is None:
        run_id = new_run_id()
    if not _RUN_ID_RE.match(run_id) or run_id.lower() == "latest":
        raise ValueError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' or '-', not 'latest'")
    root = Path(results_root)
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    comp = comparison_table(rows, seed=seed)
    crit = criteria_table(rows)
    _atomic_write_text(run_dir / "cases.jsonl", "".join(_dumps(dict(r)) + "\n" for r in rows))
    _atomic_write_text(run_dir / "cases.csv", _csv_text([_flat_case(r) for r in rows]))
    _atomic_write_text(run_dir / "comparison.csv", _csv_text(comp))
    _atomic_write_text(run_dir / "criteria.csv", _csv_text(crit))

    chart_note: str | None = None
    try:
        write_chart(comp, run_dir / "chart.png")
    except Exception as exc:  # noqa: BLE001 - the tables matter more than the picture
        chart_note = f"{type(exc).__name__}: {exc}"

    _atomic_write_text(run_dir / "report.md", _report_md(rows, run_id, run_meta, comp, crit, chart_note))
    from domain_eval.report_html import render_html

    chart = None if chart_note else run_dir / "chart.png"
    _atomic_write_text(run_dir / "report.html", render_html(rows, run_id, run_meta, comp, chart, baseline_cases, max_drop))
    run_json = {**run_meta, "run_id": run_id, "counts": _counts(rows)}
    if chart_note:
        run_json["chart_error"] = chart_note
    _atomic_write_text(run_dir / "run.json", _dumps(run_json, indent=2) + "\n")
    update_latest(root, run_dir)
    return run_dir
