"""``domain-eval report``: re-print a run's comparison table and gate it against a baseline.

Works from a run directory (``cases.jsonl``, plus ``run.json`` for gating), so any saved run (or
a copied ``results/latest``) can be re-tabulated and re-gated without re-running models.

The score in the tables is the *slot score* (:mod:`domain_eval.scoring`): the mean over the n
requested names of the judge's 1-10 score for each distinct valid name, 1 for each slot left
empty. A baseline is only compared with a run whose ``compat`` (scoring version, judge, base
model, quantisation, n, samples, seed, ...; see :data:`domain_eval.gating.COMPAT_FIELDS`) is
the same: a "regression" between two judges says nothing about the model.

Exit codes: 0 ok, 1 regression, 2 unusable input (missing run dir or run.json, malformed
cases.jsonl or baseline, an incompatible baseline, a bad option value).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from domain_eval.scoring import DEFAULT_MAX_REGRESSION

__all__ = ["EXIT_OK", "EXIT_REGRESSION", "EXIT_USAGE", "add_cli", "run", "run_compat"]

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2
# run.json entries copied into a baseline's meta (as the pytest plugin does), when present.
_META_KEYS = ("models", "loaded", "judge", "args")


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="print a run's comparison table; gate it against a baseline",
        description="Print the per-category/model comparison table of an eval run (from its cases.jsonl). "
        "score is the slot score: the mean over the n requested names of the judge's 1-10 score for each "
        "distinct valid name, 1 for each slot left empty (missing, invalid, repeated, unsafe or a TLD variant); "
        "quality is the judge's mean over valid domains only; yield is valid distinct domains / n. "
        "With --baseline, exit 1 when a group's mean slot score dropped by more than --max-regression, or its "
        "mean yield by more than --max-yield-drop, and the paired bootstrap 95% CI of the change lies below zero. "
        "A baseline written under a different scoring version, judge, base model, quantisation, n, samples, seed "
        "or max_new_tokens (the run's run.json 'compat') is refused (exit 2), not compared.",
    )
    p.add_argument("run_dir", nargs="?", default="results/latest", help="run directory or its cases.jsonl (default: results/latest)")
    p.add_argument("--format", choices=("github", "simple", "csv"), default="github", help="table format (default: github)")
    p.add_argument("--pivot", action="store_true", help="wide view: category x model cells 'slot score [ci_lo, ci_hi]'")
    p.add_argument("--baseline", metavar="PATH", help="baseline JSON to gate against (exit 1 on regression, 2 if incompatible)")
    p.add_argument("--max-regression", type=float, default=DEFAULT_MAX_REGRESSION, metavar="POINTS",
                   help="largest allowed drop of a group's mean slot score, in points of the 1-10 scale (default: %(default)s)")
    p.add_argument("--max-yield-drop", type=float, default=0.1, metavar="FRACTION",
                   help="largest allowed drop of a group's mean yield (valid distinct domains / n), as a fraction: "
                   "0.1 = 10 percentage points (default: 0.1)")
    p.add_argument("--allow-lost", action="store_true", help="do not fail when baseline cases ran but have no score (crash, error)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--write-baseline", metavar="PATH",
                   help="write this run's slot scores and yields as a baseline (after gating, if any; "
                   "never the file given to --baseline)")
    p.set_defaults(func=run)


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _run_json_path(run_dir: str | Path) -> Path:
    p = Path(run_dir)
    return (p if p.is_dir() else p.parent) / "run.json"


def run_compat(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(compat, run.json)`` of a run directory (or of the directory of its cases.jsonl).

    Raises ValueError naming run.json when it is absent, unreadable or has no complete ``compat``.
    """
    from domain_eval.gating import COMPAT_FIELDS

    path = _run_json_path(run_dir)
    why = "it says what the run's scores depend on ('compat'), which gating needs"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: not found; {why}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    compat = doc.get("compat") if isinstance(doc, dict) else None
    if not isinstance(compat, dict):
        raise ValueError(f"{path}: no 'compat' object; {why} (a run written before scoring version 2 "
                         "cannot be gated or used as a baseline: re-run the evaluation)")
    absent = [f for f in COMPAT_FIELDS if f not in compat]
    if absent:
        # A field this run does not state would silently match any baseline.
        raise ValueError(f"{path}: 'compat' lacks {', '.join(absent)}; {why}")
    return compat, doc


def _check_limit(option: str, value: float) -> str | None:
    if not (math.isfinite(value) and value >= 0):
        return f"{option} must be a finite number >= 0, got {value}"
    return None


def run(args: argparse.Namespace) -> int:
    from domain_eval.gating import compare, format_gate, incompatibilities, load_baseline, write_baseline
    from domain_eval.report import ReportError, comparison_table, format_pivot, format_table, read_cases, safety_summary
    from domain_eval.scoring import RESULT_SCHEMA

    for option, value in (("--max-regression", args.max_regression), ("--max-yield-drop", args.max_yield_drop)):
        problem = _check_limit(option, value)
        if problem:
            return _error(problem)
    if args.baseline and args.write_baseline and Path(args.baseline).resolve() == Path(args.write_baseline).resolve():
        # Gating against a file while replacing it would ratchet the bar to this run's scores.
        return _error(f"--write-baseline {args.write_baseline} is the --baseline being gated against; "
                      "write the new baseline to another path and review it before replacing the old one")
    try:
        rows = read_cases(args.run_dir)
    except ReportError as exc:
        return _error(str(exc))
    stale = sorted({repr(r.get("schema")) for r in rows if r.get("schema") != RESULT_SCHEMA})
    if stale:
        return _error(f"{args.run_dir}: rows of result schema {', '.join(stale)}, not {RESULT_SCHEMA}: the run was written "
                      "under other scoring rules and its scores cannot be re-tabulated; re-run the evaluation")

    compat: dict[str, Any] = {}
    run_meta: dict[str, Any] = {}
    baseline = None
    if args.baseline or args.write_baseline:
        try:
            compat, run_meta = run_compat(args.run_dir)
        except ValueError as exc:
            return _error(str(exc))
    if args.baseline:
        try:
            baseline = load_baseline(args.baseline)
        except ValueError as exc:  # BaselineError
            return _error(str(exc))
        differ = incompatibilities(baseline["compat"], compat)
        if differ:
            return _error(f"{args.baseline} cannot be compared with {_run_json_path(args.run_dir)}; what the scores "
                          "depend on differs:\n  " + "\n  ".join(differ))

    # With --format csv, everything but the table goes to stderr so stdout stays machine-readable.
    notes = sys.stderr if args.format == "csv" else sys.stdout
    table = comparison_table(rows, seed=args.seed)
    print(format_pivot(table, args.format) if args.pivot else format_table(table, args.format))
    safety = safety_summary(rows)
    if safety:
        print(safety, file=notes)

    status = EXIT_OK
    if baseline is not None:
        try:
            gate = compare(rows, baseline, args.max_regression, seed=args.seed, max_yield_drop=args.max_yield_drop,
                           fail_on_lost=not args.allow_lost)
        except ValueError as exc:  # duplicate keys in the run
            return _error(str(exc))
        print(format_gate(gate), file=notes)
        status = EXIT_REGRESSION if gate.failed else EXIT_OK
    if args.write_baseline:
        # After gating: a failed gate still leaves this run's scores for review, at a path of their own.
        run_path = Path(args.run_dir)
        run_id = run_meta.get("run_id") or (run_path.resolve() if run_path.is_dir() else run_path.resolve().parent).name
        meta = {"run_id": run_id, "source": str(args.run_dir), **{k: run_meta[k] for k in _META_KEYS if k in run_meta}}
        try:
            out = write_baseline(rows, args.write_baseline, compat, meta)
        except (OSError, ValueError) as exc:
            return _error(f"cannot write baseline {args.write_baseline}: {exc}")
        print(f"wrote baseline {out}", file=sys.stderr)
    return status
