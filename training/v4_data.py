"""The v4 dataset: batch files written by hand (``data/v4/batches/*.jsonl``) -> one checked dataset.

``check`` is what each writer runs on a batch before handing it in; ``build`` merges the
batches into ``data/domain_dataset_v4.jsonl`` and its tag file. Both apply the same rules
(``row_problems``), and the data tests re-apply them to the built file.

    python -m training.v4_data check data/v4/batches/b1.jsonl
    python -m training.v4_data build
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from domain_eval.domains import InvalidDomain, normalize_domain, split_domain
from domain_eval.naming import degenerate_reason, tld_variant_excess

from .datasets import Row, description_tokens, find_overlaps, is_near_duplicate, load_eval_descriptions, write_dataset, write_meta

BATCH_FIELDS = ("business_description", "domain_suggestions", "lang", "industry", "kind")
KINDS = ("short", "medium", "long", "vague", "technical")
LANGS = ("en", "de", "fr", "es", "it", "pt", "nl", "ja", "zh", "sv", "pl", "tr")
NAMES_PER_ROW = 5
MAX_LABEL = 18  # longer labels are the "too_long" failure kind raters punish
BATCHES = Path("data/v4/batches")
OUT = Path("data/domain_dataset_v4.jsonl")
# Descriptions the model must never train on: every evaluation case, the held-out list and the
# judge's corpus.
RATINGS_DESCRIPTIONS = Path("data/ratings/descriptions.jsonl")
HELDOUT = Path("tests/data/heldout_descriptions.txt")


@dataclass(frozen=True)
class BatchRow:
    description: str
    domains: tuple[str, ...]
    lang: str
    industry: str
    kind: str
    where: str = ""  # "file:line", for messages


def held_out_descriptions() -> list[str]:
    out = load_eval_descriptions("cases", [HELDOUT] if HELDOUT.exists() else [])
    if RATINGS_DESCRIPTIONS.exists():
        for line in RATINGS_DESCRIPTIONS.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line)["description"])
    return out


def domain_problems(domains: Sequence[object]) -> list[str]:
    problems: list[str] = []
    if len(domains) != NAMES_PER_ROW:
        problems.append(f"{len(domains)} names, expected {NAMES_PER_ROW}")
    valid: list[str] = []
    for d in domains:
        if not isinstance(d, str):
            problems.append(f"{d!r} is not a string")
            continue
        try:
            canonical = normalize_domain(d)
        except InvalidDomain as exc:
            problems.append(f"{d!r} is invalid: {exc.reason}")
            continue
        if canonical != d:
            problems.append(f"{d!r} is not canonical (expected {canonical!r})")
            continue
        label, _ = split_domain(d)
        if not label.isascii() or any(c.isdigit() for c in label) or label.count("-") > 1:
            problems.append(f"{d!r}: labels are ASCII letters with at most one hyphen, no digits")
        if len(label) > MAX_LABEL:
            problems.append(f"{d!r}: label longer than {MAX_LABEL} characters")
        reason = degenerate_reason(d)
        if reason:
            problems.append(f"{d!r} is degenerate: {reason}")
        valid.append(d)
    if len(set(valid)) != len(valid):
        problems.append("a name appears twice")
    for extra in tld_variant_excess(valid):
        problems.append(f"{extra!r} repeats an earlier name under another TLD")
    return problems


def parse_batch(path: Path) -> tuple[list[BatchRow], list[str]]:
    """Rows that pass every rule, and one problem line (``file:line: ...``) per failing row."""
    rows: list[BatchRow] = []
    problems: list[str] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: bad JSON: {exc.msg}")
            continue
        if not isinstance(obj, dict) or set(obj) != set(BATCH_FIELDS):
            problems.append(f"{where}: fields must be exactly {', '.join(BATCH_FIELDS)}")
            continue
        row_problems = domain_problems(obj["domain_suggestions"] if isinstance(obj["domain_suggestions"], list) else [])
        if obj["lang"] not in LANGS:
            row_problems.append(f"lang {obj['lang']!r} not one of {', '.join(LANGS)}")
        if obj["kind"] not in KINDS:
            row_problems.append(f"kind {obj['kind']!r} not one of {', '.join(KINDS)}")
        if not isinstance(obj["business_description"], str) or not obj["business_description"].strip():
            row_problems.append("empty description")
        if not isinstance(obj["industry"], str) or not obj["industry"].strip():
            row_problems.append("empty industry")
        if row_problems:
            problems.append(f"{where}: " + "; ".join(row_problems))
            continue
        rows.append(BatchRow(obj["business_description"].strip(), tuple(obj["domain_suggestions"]),
                             obj["lang"], obj["industry"].strip().lower(), obj["kind"], where))
    return rows, problems


def overlap_problems(rows: Sequence[BatchRow]) -> tuple[list[BatchRow], list[str]]:
    """Drop rows that near-duplicate a held-out description or an earlier row."""
    leaked = {text for text, _held, _score in find_overlaps([r.description for r in rows], held_out_descriptions())}
    kept: list[BatchRow] = []
    kept_tokens: list[tuple[str, frozenset[str]]] = []
    problems: list[str] = []
    for row in rows:
        tokens = description_tokens(row.description)
        if row.description in leaked:
            # The held-out text is not printed: writers stay blind to the evaluation data.
            problems.append(f"{row.where}: too close to an evaluation description; write another business")
            continue
        if any((tokens & t) and is_near_duplicate(row.description, k) for k, t in kept_tokens):
            problems.append(f"{row.where}: near-duplicate of an earlier row: {row.description!r}")
            continue
        kept.append(row)
        kept_tokens.append((row.description, tokens))
    return kept, problems


def safety_problems(rows: Sequence[BatchRow]) -> tuple[list[BatchRow], list[str]]:
    """Drop rows whose description or a name the policy rules block: a model must not learn to
    suggest what the filter then refuses. (The rules' false positives land here too: 'ransomware'
    in an incident-response firm, 'kill' in a plant shop; they are listed, not hidden.)"""
    from domain_eval.safety import SafetyFilter

    rules = SafetyFilter(classifier=None)
    kept: list[BatchRow] = []
    problems: list[str] = []
    for row in rows:
        verdicts = [rules.check(row.description)] + [rules.check_domain(d) for d in row.domains]
        blocked = [v.reason for v in verdicts if v.blocked]
        if blocked:
            problems.append(f"{row.where}: blocked by the safety rules ({blocked[0]}): {row.description!r}")
        else:
            kept.append(row)
    return kept, problems


def summary(rows: Sequence[BatchRow]) -> str:
    langs = Counter(r.lang for r in rows)
    kinds = Counter(r.kind for r in rows)
    non_en = sum(n for lang, n in langs.items() if lang != "en")
    tlds = Counter(split_domain(d)[1] for r in rows for d in r.domains)
    return (f"{len(rows)} rows, {len({r.industry for r in rows})} industries, "
            f"{non_en / max(1, len(rows)):.0%} non-English\n"
            f"  languages: {dict(langs.most_common())}\n  kinds: {dict(kinds.most_common())}\n"
            f"  top TLDs: {dict(tlds.most_common(12))}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.v4_data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check one batch file; prints every failing row")
    check.add_argument("batch", type=Path)
    build = sub.add_parser("build", help="merge every batch into the v4 dataset (failing rows are dropped and listed)")
    build.add_argument("--batches", type=Path, default=BATCHES)
    build.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    if args.command == "check":
        rows, problems = parse_batch(args.batch)
        rows, more = overlap_problems(rows)
        rows, unsafe = safety_problems(rows)
        more += unsafe
        for p in problems + more:
            print(p)
        print(summary(rows))
        print("OK" if not problems + more else f"{len(problems + more)} rows to fix")
        return 0 if not problems + more else 1

    files = sorted(args.batches.glob("*.jsonl"))
    if not files:
        parser.error(f"no batch files in {args.batches}")
    rows = []
    problems = []
    for f in files:
        r, p = parse_batch(f)
        rows += r
        problems += p
    rows, more = overlap_problems(rows)
    rows, unsafe = safety_problems(rows)
    more += unsafe
    for p in problems + more:
        print("dropped:", p, file=sys.stderr)
    write_dataset([Row(r.description, r.domains) for r in rows], args.out)
    write_meta([{"description": r.description, "lang": r.lang, "category": r.kind, "industry": r.industry} for r in rows],
               args.out.with_name(args.out.stem + ".meta.json"),
               source="hand-written for domain-eval by helpers following data/v4/STYLE.md; merged by training.v4_data build")
    print(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
