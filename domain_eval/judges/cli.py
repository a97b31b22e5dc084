"""``domain-eval judge "DESCRIPTION" DOMAIN [DOMAIN ...]``: score domains with a judge.

Exit codes: 0 all domains judged; 1 some domains could not be judged (their errors are
shown); 2 configuration error (missing API key, decommissioned model, bad option).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from domain_eval.judges.base import CRITERIA, DEFAULT_JUDGE, JUDGE_NAMES, Judge, JudgeError, JudgeResult, check_judge_config, make_judge

__all__ = ["add_cli", "add_judge_options", "judge_from_args", "format_result", "run"]

EXIT_OK, EXIT_PARTIAL, EXIT_CONFIG = 0, 1, 2

_SHORT = {"relevance": "relev", "memorability": "memor", "brandability": "brand",
          "technical_quality": "tech", "creativity": "creat"}


def add_judge_options(parser: argparse.ArgumentParser) -> None:
    """``--judge``, ``--judge-model``, ``--judge-cache``: reusable by other commands."""
    from domain_eval.judges.groq import DEFAULT_MODEL, LEGACY_MODEL

    group = parser.add_argument_group("judge")
    group.add_argument("--judge", choices=JUDGE_NAMES, default=DEFAULT_JUDGE,
                       help="which judge scores the domains (default: learned, offline, trained on blind ratings "
                            "of real model outputs; heuristic: the earlier hand-set formula, needs pip install "
                            "'domain-eval[semantic]'; heuristic-lexical: that formula without embeddings; "
                            "groq: needs GROQ_API_KEY)")
    group.add_argument("--judge-model", metavar="M", default=None,
                       help=f"model for the groq judge (default: {DEFAULT_MODEL}; e.g. {LEGACY_MODEL})")
    group.add_argument("--judge-cache", metavar="PATH", default=None,
                       help="SQLite judgement cache; a fully cached Groq run replays without network or API key")


def judge_from_args(args: argparse.Namespace) -> Judge:
    name = getattr(args, "judge", DEFAULT_JUDGE) or DEFAULT_JUDGE
    cache_path = getattr(args, "judge_cache", None)
    check_judge_config(name, cache_path)  # cheap: fails before anything heavy loads
    return make_judge(name, model=getattr(args, "judge_model", None), cache_path=cache_path)


def format_result(result: JudgeResult) -> str:
    """A plain-text table of per-domain criteria and overall, then the mean."""
    from tabulate import tabulate

    rows = []
    for s in result.scores:
        if s.error is None and s.criteria is not None:
            rows.append([s.domain, *(s.criteria[c] for c in CRITERIA), s.overall, ""])
        else:
            rows.append([s.domain, *([None] * len(CRITERIA)), None, f"error: {s.error}"])
    headers = ["domain", *(_SHORT[c] for c in CRITERIA), "overall", "note"]
    if not any(r[-1] for r in rows):
        rows = [r[:-1] for r in rows]
        headers = headers[:-1]
    table = tabulate(rows, headers=headers, floatfmt=".2f", missingval="-")
    j = result.judge
    judge = f"{j.get('name')}" + (f" ({j.get('model')})" if j.get("model") else "") + f" v{j.get('version')}"
    mean = "-" if result.mean is None else f"{result.mean:.2f}"
    best = "-" if result.best is None else f"{result.best:.2f}"
    return (f"{table}\n\nmean overall: {mean}   best: {best}   errors: {result.errors}   judge: {judge}")


def run(args: argparse.Namespace) -> int:
    try:
        judge = judge_from_args(args)
        result = judge.score(args.description, list(args.domains))
    except JudgeError as exc:
        print(f"domain-eval judge: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_result(result))
    return EXIT_PARTIAL if result.errors else EXIT_OK


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "judge",
        help="score domain names for a business description",
        description="Score candidate domain names for a business on relevance, memorability, brandability, "
                    "technical quality and creativity (1-10 each) and overall (1-10: the learned judge predicts raters' "
                    "holistic score; the heuristic and groq judges average the five).",
    )
    parser.add_argument("description", help="the business description")
    parser.add_argument("domains", nargs="+", metavar="DOMAIN", help="domain names to judge")
    add_judge_options(parser)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=run)
    return parser
