"""``domain-eval report``: re-print a run's comparison table and gate it against a baseline.

Works from ``cases.jsonl`` alone, so any saved run (or a copied ``results/latest``) can be
re-tabulated and re-gated without re-running models. Exit codes: 0 ok, 1 regression, 2
unusable input (missing run dir, malformed cases.jsonl or baseline).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["EXIT_OK", "EXIT_REGRESSION", "EXIT_USAGE", "add_cli", "run"]

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="print a run's comparison table; gate it against a baseline",
        description="Print the per-category/model comparison table of an eval run (from its cases.jsonl). "
        "With --baseline, exit 1 when a group's mean judge score dropped by more than --max-regression "
        "and the paired bootstrap 95% CI of the change lies below zero.",
    )
    p.add_argument("run_dir", nargs="?", default="results/latest", help="run directory or its cases.jsonl (default: results/latest)")
    p.add_argument("--format", choices=("github", "simple", "csv"), default="github", help="table format (default: github)")
    p.add_argument("--pivot", action="store_true", help="wide view: category x model cells 'score [ci_lo, ci_hi]'")
    p.add_argument("--baseline", metavar="PATH", help="baseline JSON to gate against (exit 1 on regression)")
    p.add_argument("--max-regression", type=float, default=0.5, help="largest allowed drop of a group's mean score (default: 0.5)")
    p.add_argument("--allow-lost", action="store_true", help="do not fail when baseline cases ran but have no score (crash, error)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--write-baseline", metavar="PATH", help="write this run's scores as a baseline (after gating, if any)")
    p.set_defaults(func=run)


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    from domain_eval.gating import compare, format_gate, load_baseline, write_baseline
    from domain_eval.report import ReportError, comparison_table, format_pivot, format_table, read_cases

    if args.max_regression < 0:
        return _error(f"--max-regression must be >= 0, got {args.max_regression}")
    try:
        rows = read_cases(args.run_dir)
    except ReportError as exc:
        return _error(str(exc))
    table = comparison_table(rows, seed=args.seed)
    print(format_pivot(table, args.format) if args.pivot else format_table(table, args.format))

    status = EXIT_OK
    if args.baseline:
        try:
            baseline = load_baseline(args.baseline)
            gate = compare(rows, baseline, args.max_regression, seed=args.seed, fail_on_lost=not args.allow_lost)
        except ValueError as exc:  # BaselineError, or duplicate keys in the run
            return _error(str(exc))
        # Gate text goes to stderr with --format csv so stdout stays machine-readable.
        print(format_gate(gate), file=sys.stderr if args.format == "csv" else sys.stdout)
        status = EXIT_REGRESSION if gate.failed else EXIT_OK
    if args.write_baseline:
        if status == EXIT_REGRESSION and args.baseline and Path(args.write_baseline).resolve() == Path(args.baseline).resolve():
            # Overwriting the baseline that just failed would ratchet the bar down silently.
            print(f"not overwriting baseline {args.write_baseline}: the gate failed", file=sys.stderr)
            return status
        run_path = Path(args.run_dir)
        run_id = (run_path.resolve() if run_path.is_dir() else run_path.resolve().parent).name
        try:
            out = write_baseline(rows, args.write_baseline, meta={"run_id": run_id, "source": str(args.run_dir)})
        except (OSError, ValueError) as exc:
            return _error(f"cannot write baseline {args.write_baseline}: {exc}")
        print(f"wrote baseline {out}", file=sys.stderr)
    return status

