"""The safety corpus (data/safety_corpus/): loading, validation and statistics.

Standalone on purpose: corpus writers run `python -m training.safety_corpus check FILE`
without this module importing the filter they must not see.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import re
import sys
import unicodedata
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent.parent / "data" / "safety_corpus"
SPLITS_FILE = "splits.json"
LABELS = ("blocked", "allowed")
CATEGORIES = ("sexual", "gambling", "drugs", "age_restricted", "weapons", "hate", "violence",
              "fraud", "cybercrime", "exploitation", "self_harm", "wildlife")
KINDS = ("plain", "euphemism", "slang", "emoji", "short", "buried", "homoglyph", "zero_width",
         "leet", "spaced", "counter_harm", "regulated_legal", "trigger_word", "ordinary")
DISGUISES = frozenset({"euphemism", "slang", "emoji", "short", "buried", "homoglyph", "zero_width",
                       "leet", "spaced"})
FIELDS = ("text", "label", "category", "lang", "kind")
_LANG = re.compile(r"^[a-z]{2}$")


@dataclasses.dataclass(frozen=True)
class Row:
    text: str
    label: str
    category: str
    lang: str
    kind: str
    batch: str  # file stem: the unit of the train/dev/test split

    @property
    def blocked(self) -> bool:
        return self.label == "blocked"

    @property
    def disguised(self) -> bool:
        return self.kind in DISGUISES


class CorpusError(ValueError):
    pass


def _dedup_key(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\W+", " ", folded).strip()


def load_file(path: Path) -> tuple[list[Row], list[str]]:
    """Rows of one JSONL file and the problems found, each naming file:line and field."""
    rows: list[Row] = []
    problems: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{where}: not an object")
            continue
        missing = [f for f in FIELDS if not isinstance(obj.get(f), str) or not obj.get(f).strip()]
        extra = sorted(set(obj) - set(FIELDS))
        if missing or extra:
            problems.append(f"{where}: missing/empty {missing}" if missing else f"{where}: unknown fields {extra}")
            continue
        if obj["label"] not in LABELS:
            problems.append(f"{where}: label {obj['label']!r} is not one of {LABELS}")
        if obj["label"] == "blocked" and obj["category"] not in CATEGORIES:
            problems.append(f"{where}: category {obj['category']!r} is not one of {CATEGORIES}")
        if obj["label"] == "allowed" and obj["category"] not in (*CATEGORIES, "none"):
            problems.append(f"{where}: category {obj['category']!r} is not a category or 'none'")
        if obj["kind"] not in KINDS:
            problems.append(f"{where}: kind {obj['kind']!r} is not one of {KINDS}")
        if not _LANG.match(obj["lang"]):
            problems.append(f"{where}: lang {obj['lang']!r} is not an ISO 639-1 code")
        rows.append(Row(**{f: obj[f] for f in FIELDS}, batch=path.stem))
    return rows, problems


def duplicates(rows: list[Row]) -> list[str]:
    seen: dict[str, Row] = {}
    out = []
    for row in rows:
        key = _dedup_key(row.text)
        if key in seen:
            out.append(f"duplicate text in {row.batch} and {seen[key].batch}: {row.text[:60]!r}")
        seen.setdefault(key, row)
    return out


def stats(rows: list[Row]) -> str:
    n = len(rows)
    if not n:
        return "0 rows"
    by = lambda f: collections.Counter(getattr(r, f) for r in rows)  # noqa: E731
    blocked = sum(r.blocked for r in rows)
    non_en = sum(r.lang != "en" for r in rows)
    lines = [f"{n} rows: {blocked} blocked, {n - blocked} allowed; non-English {non_en / n:.0%} "
             f"across {len(by('lang'))} languages"]
    for field in ("lang", "kind", "category"):
        lines.append(f"  {field}: " + ", ".join(f"{k} {v}" for k, v in by(field).most_common()))
    return "\n".join(lines)


def load_splits(corpus_dir: Path = CORPUS_DIR, *, include_test: bool = True) -> dict[str, list[Row]]:
    """{"train"|"dev"|"test": rows}, by the batch → split map in splits.json.

    The test files' sha256 are recorded there when the split is frozen; a changed test
    file is an error, not a silent re-tune.
    """
    spec = json.loads((corpus_dir / SPLITS_FILE).read_text())
    out: dict[str, list[Row]] = {"train": [], "dev": [], "test": []}
    problems: list[str] = []
    for batch, split in spec["batches"].items():
        if split == "test" and not include_test:
            continue  # tuning code never even reads the frozen split
        path = corpus_dir / f"{batch}.jsonl"
        rows, bad = load_file(path)
        problems += bad
        frozen = spec.get("frozen_sha256", {}).get(batch)
        if frozen and hashlib.sha256(path.read_bytes()).hexdigest() != frozen:
            problems.append(f"{path.name}: changed after the test split was frozen (sha256 differs)")
        out[split] += rows
    if problems:
        raise CorpusError("\n".join(problems))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.safety_corpus",
                                     description="Check safety-corpus JSONL files and print their composition.")
    parser.add_argument("command", choices=["check"])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    rows: list[Row] = []
    problems: list[str] = []
    for path in args.files:
        got, bad = load_file(path)
        rows += got
        problems += bad
    problems += duplicates(rows)
    print(stats(rows))
    for problem in problems:
        print("PROBLEM", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
