"""How well a judge agrees with human ratings: ``domain-eval judge-agreement``.

A ratings file is a CSV (or JSON Lines) with columns ``description``, ``domain``, ``rating``
(1-10, e.g. the mean of your raters) and optionally ``lang``. Every judge, including an LLM
judge with a key, can then be checked against *your* raters on *your* outputs:

    domain-eval judge-agreement my_ratings.csv                  # the default (learned) judge
    domain-eval judge-agreement my_ratings.csv --judge groq --judge-cache groq.sqlite
    domain-eval judge-agreement my_ratings.csv --min-rho 0.8    # exit 1 below the bar

Reported: Spearman rho and mean absolute error of the judge's ``overall`` against ``rating``,
overall and per language. Pairs the judge could not score are counted as errors and left out
of the statistics, never given a score.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from domain_eval.judges.base import Judge, JudgeError

__all__ = ["RatedDomain", "Agreement", "read_ratings", "agreement", "spearman", "add_cli"]

EXIT_OK, EXIT_BELOW, EXIT_CONFIG = 0, 1, 2


class RatingsError(ValueError):
    """A ratings file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class RatedDomain:
    description: str
    domain: str
    rating: float
    lang: str | None = None


@dataclass
class LanguageAgreement:
    lang: str
    n: int
    rho: float | None
    mae: float


@dataclass
class Agreement:
    judge: dict[str, Any]
    n: int
    errors: int
    rho: float | None
    mae: float | None
    judge_mean: float | None
    rating_mean: float | None
    by_language: list[LanguageAgreement] = field(default_factory=list)

    def format(self) -> str:
        j = self.judge
        lines = [f"judge {j.get('name')} v{j.get('version')}: {self.n} pairs scored, {self.errors} judge errors (left out)"]
        if self.rho is None:
            lines.append("too few scored pairs for a correlation")
            return "\n".join(lines)
        lines.append(f"Spearman rho {self.rho:.3f}   MAE {self.mae:.2f}   mean judge {self.judge_mean:.2f} vs raters {self.rating_mean:.2f}")
        if self.by_language:
            lines.append(f"{'lang':<6}{'n':>6}{'rho':>8}{'MAE':>7}")
            for la in self.by_language:
                rho = "-" if la.rho is None else f"{la.rho:.3f}"
                lines.append(f"{la.lang:<6}{la.n:>6}{rho:>8}{la.mae:>7.2f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"judge": self.judge, "n": self.n, "errors": self.errors, "rho": self.rho, "mae": self.mae,
                "judge_mean": self.judge_mean, "rating_mean": self.rating_mean,
                "by_language": [vars(la) for la in self.by_language]}


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):  # ties share their mean rank
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho with average ranks for ties; None when undefined (n < 3 or a constant side)."""
    if len(a) != len(b) or len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    if va == 0 or vb == 0:
        return None
    return cov / (va * vb) ** 0.5


def read_ratings(path: str | Path) -> list[RatedDomain]:
    """Read a CSV or JSON Lines ratings file (columns above)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RatingsError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if path.suffix in (".jsonl", ".json"):
        raw = []
        for no, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    raw.append((no, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise RatingsError(f"{path}:{no}: not JSON ({exc.msg})") from exc
    else:
        raw = list(enumerate(csv.DictReader(text.splitlines()), 2))
    rows = []
    for no, r in raw:
        missing = [k for k in ("description", "domain", "rating") if not str(r.get(k) or "").strip()]
        if missing:
            raise RatingsError(f"{path}:{no}: missing {', '.join(missing)} (columns: description, domain, rating[, lang])")
        try:
            rating = float(r["rating"])
        except (TypeError, ValueError):
            raise RatingsError(f"{path}:{no}: rating {r['rating']!r} is not a number") from None
        if not 1 <= rating <= 10:
            raise RatingsError(f"{path}:{no}: rating {rating} is outside 1-10")
        rows.append(RatedDomain(str(r["description"]), str(r["domain"]).strip(), rating, (r.get("lang") or None)))
    if not rows:
        raise RatingsError(f"{path}: no rated pairs")
    return rows


def agreement(judge: Judge, rows: Sequence[RatedDomain], progress: Any = None) -> Agreement:
    """Score every pair (one judge call per description) and compare with the ratings."""
    from domain_eval.judges.features import detect_language

    by_desc: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_desc.setdefault(r.description, []).append(i)
    scores: list[float | None] = [None] * len(rows)
    for done, (desc, idx) in enumerate(by_desc.items(), 1):
        result = judge.score(desc, [rows[i].domain for i in idx])
        for i, s in zip(idx, result.scores):
            scores[i] = s.overall if s.ok else None
        if progress:
            progress(done, len(by_desc))
    ok = [i for i, s in enumerate(scores) if s is not None]
    pred = [float(scores[i]) for i in ok]  # type: ignore[arg-type]
    gold = [rows[i].rating for i in ok]
    langs: dict[str, list[int]] = {}
    lang_of: dict[str, str] = {}
    for k, i in enumerate(ok):
        desc = rows[i].description
        lang = rows[i].lang or lang_of.setdefault(desc, detect_language(desc))
        langs.setdefault(lang, []).append(k)
    by_lang = [LanguageAgreement(lg, len(ks), spearman([pred[k] for k in ks], [gold[k] for k in ks]),
                                 statistics.fmean(abs(pred[k] - gold[k]) for k in ks)) for lg, ks in sorted(langs.items())]
    identity = {"name": getattr(judge, "name", "?"), "model": getattr(judge, "model", None), "version": getattr(judge, "version", "?")}
    return Agreement(identity, len(ok), len(rows) - len(ok), spearman(pred, gold),
                     statistics.fmean(abs(a - b) for a, b in zip(pred, gold)) if ok else None,
                     statistics.fmean(pred) if ok else None, statistics.fmean(gold) if ok else None,
                     by_lang if len(by_lang) > 1 else [])


def run(args: argparse.Namespace) -> int:
    from domain_eval.judges.cli import judge_from_args

    try:
        rows = read_ratings(args.ratings)
        judge = judge_from_args(args)
    except (RatingsError, JudgeError) as exc:
        print(f"domain-eval judge-agreement: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total:
            print(f"\rjudged {done}/{total} descriptions", end="\n" if done == total else "", file=sys.stderr, flush=True)

    try:
        result = agreement(judge, rows, progress)
    except JudgeError as exc:
        print(f"domain-eval judge-agreement: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) if args.json else result.format())
    if args.min_rho is not None and (result.rho is None or result.rho < args.min_rho):
        print(f"domain-eval judge-agreement: rho {result.rho} is below --min-rho {args.min_rho}", file=sys.stderr)
        return EXIT_BELOW
    return EXIT_OK


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    from domain_eval.judges.cli import add_judge_options

    parser = subparsers.add_parser(
        "judge-agreement", help="measure a judge against human ratings (Spearman rho, MAE, per language)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ratings", help="CSV or JSON Lines with description, domain, rating (1-10) and optional lang")
    add_judge_options(parser)
    parser.add_argument("--min-rho", type=float, default=None, metavar="R", help="exit 1 when Spearman rho is below R")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)
    return parser
