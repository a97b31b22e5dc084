"""The judge's ratings corpus (``data/ratings``): load, check and report it.

Layout (see ``data/ratings/README.md``):

* ``descriptions.jsonl``: ``{"id", "lang", "description", "split"}``, split in train/dev/test,
  assigned by description before any judge was designed;
* ``pairs.jsonl``: ``{"pair", "id", "domain", "source"}``; ``source`` says where the name came
  from (``v3/greedy``, ``expert``, ``flawed/repetition`` ...). Raters never saw it;
* ``raters/<rater>.csv``: one rater's scores, ``pair`` plus the five criteria and ``overall``;
  every pair is rated by two raters (``rater_a*`` and ``rater_b*`` files);
* ``splits.json``: the frozen test split's sha256 (descriptions and their ratings).

``python -m training.judge_corpus check`` validates everything and prints sizes, the language
mix and the raters' agreement.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain_eval.judges.base import CRITERIA
from domain_eval.judges.agreement import spearman  # the one Spearman (ties averaged; tested against scipy)

__all__ = ["RatedPair", "CorpusError", "load_corpus", "DEFAULT_DIR", "SPLITS", "spearman"]

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "data" / "ratings"
SPLITS = ("train", "dev", "test")
SCORE_FIELDS = (*CRITERIA, "overall")


class CorpusError(ValueError):
    """The corpus is malformed or the frozen test split changed."""


@dataclass
class RatedPair:
    pair: str
    desc_id: str
    lang: str
    description: str
    domain: str
    source: str
    split: str
    ratings: list[dict[str, float]] = field(default_factory=list)  # one per rater

    @property
    def label(self) -> dict[str, float]:
        """The raters' mean for every criterion and overall."""
        return {f: statistics.fmean(r[f] for r in self.ratings) for f in SCORE_FIELDS}


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path.name}:{no}: not JSON ({exc.msg})") from exc
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _test_digest(pairs: list[RatedPair]) -> str:
    blob = json.dumps(sorted([p.pair, p.description, p.domain, [sorted(r.items()) for r in p.ratings]]
                             for p in pairs if p.split == "test"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_corpus(root: Path = DEFAULT_DIR, include_test: bool = False, check_frozen: bool = True) -> list[RatedPair]:
    """Every pair rated by two raters. Test pairs only with ``include_test`` (look once)."""
    root = Path(root)
    descs = {d["id"]: d for d in _read_jsonl(root / "descriptions.jsonl")}
    for d in descs.values():
        if d.get("split") not in SPLITS:
            raise CorpusError(f"descriptions.jsonl: {d.get('id')}: split must be one of {', '.join(SPLITS)}")
    pairs: dict[str, RatedPair] = {}
    for row in _read_jsonl(root / "pairs.jsonl"):
        d = descs.get(row["id"])
        if d is None:
            raise CorpusError(f"pairs.jsonl: pair {row['pair']}: unknown description id {row['id']!r}")
        pairs[row["pair"]] = RatedPair(row["pair"], d["id"], d["lang"], d["description"], row["domain"],
                                       row["source"], d["split"])
    files = sorted((root / "raters").glob("*.csv"))
    if not files:
        raise CorpusError(f"{root / 'raters'}: no rater files")
    for path in files:
        with path.open(encoding="utf-8", newline="") as fh:
            for no, row in enumerate(csv.DictReader(fh), 2):
                p = pairs.get(row.get("pair", ""))
                if p is None:
                    raise CorpusError(f"{path.name}:{no}: unknown pair {row.get('pair')!r}")
                try:
                    scores = {f: float(row[f]) for f in SCORE_FIELDS}
                except (KeyError, TypeError, ValueError) as exc:
                    raise CorpusError(f"{path.name}:{no}: pair {p.pair}: scores {SCORE_FIELDS} must be numbers 1-10") from exc
                if not all(1 <= v <= 10 for v in scores.values()):
                    raise CorpusError(f"{path.name}:{no}: pair {p.pair}: scores must be within 1-10")
                p.ratings.append(scores)
    rated = [p for p in pairs.values() if len(p.ratings) == 2]
    if check_frozen:
        frozen = json.loads((root / "splits.json").read_text(encoding="utf-8")).get("test_sha256")
        digest = _test_digest(rated)
        if frozen != digest:
            raise CorpusError(f"the frozen test split changed (sha256 {digest[:12]}, frozen {str(frozen)[:12]}); "
                              f"test data must not be edited after the judge's design")
    return [p for p in rated if include_test or p.split != "test"]


#: Model outputs are taken round-robin in this order, so every adapter and decoding mode
#: is represented (greedy first: what the evaluation sees).
MODEL_SOURCES = ("v3/greedy", "v2/greedy", "v1/greedy", "v3/sampled", "v2/sampled", "v1/sampled", "base/greedy", "base/sampled")
#: Part 2 (after v4 and distinct-line decoding shipped): what an evaluation meets today comes first.
MODEL_SOURCES_PART2 = ("v4/greedy", "v3/greedy", "v2/greedy", "v1/greedy", "v4/sampled", "v3/sampled")
SAMPLE_SEED = 7


def model_outputs(writer_files: list[Path], out: Path, sources: tuple[str, ...] = MODEL_SOURCES_PART2,
                  progress: Any = print) -> int:
    """Run the shipped adapters on the writers' descriptions and write their names (JSON Lines).

    Greedy rows use the evaluation's default decoding (greedy with distinct lines); sampled rows
    use seed :data:`SAMPLE_SEED`. Returns the number of rows written.
    """
    from domain_eval.generation import DomainNameGenerator, GenerationConfig

    rows = [r for path in writer_files for r in _read_jsonl(path)]
    adapters = sorted({s.split("/")[0] for s in sources} - {"base"})
    gen = DomainNameGenerator(adapter=adapters, config=GenerationConfig(distinct_lines=True), progress=progress)
    written = 0
    with out.open("w", encoding="utf-8") as fh:
        for source in sources:
            adapter, mode = source.split("/")
            gen.use(adapter)
            t0 = time.perf_counter()
            results = gen.generate([r["description"] for r in rows], seed=SAMPLE_SEED if mode == "sampled" else None)
            for r, g in zip(rows, results):
                fh.write(json.dumps({"id": r["id"], "adapter": adapter, "mode": mode, "domains": [d for d, _ in g.domains],
                                     "raw": g.raw}, ensure_ascii=False) + "\n")
                written += 1
            progress(f"{source}: {len(rows)} descriptions in {time.perf_counter() - t0:.0f} s")
    return written


def assemble(writer_files: list[Path], outputs_file: Path, root: Path, sheets_dir: Path, sheets: int = 4, per_description: int = 5,
             seed: int = 12, append: bool = False, fractions: tuple[float, float] = (0.6, 0.2),
             sources: tuple[str, ...] = MODEL_SOURCES) -> dict[str, int]:
    """Build ``descriptions.jsonl``, ``pairs.jsonl`` and blind rating sheets from the writers'
    files (descriptions + deliberate names) and the models' outputs for those descriptions.

    Descriptions that also appear in ``cases/``, the training datasets or (``append``) the
    corpus already are dropped; splits (``fractions`` train/dev, the rest test; 60/20/20 by
    default) are drawn per language from a hash of the description id. With ``append`` the new
    descriptions and pairs are added after the existing ones, and the sheets hold only the new pairs.
    """
    import random

    import yaml

    from domain_eval.domains import normalize_domain
    from training.datasets import find_overlaps

    repo = Path(__file__).resolve().parent.parent
    seen_texts = set()
    for path in (repo / "cases").glob("*.yaml"):
        for case in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("cases", []):
            seen_texts.add(" ".join(str(case.get("description", "")).lower().split()))
    for path in (repo / "data").glob("domain_dataset_v*.jsonl"):
        for row in _read_jsonl(path):
            seen_texts.add(" ".join(row["business_description"].lower().split()))
    counts = {"descriptions": 0, "overlap_dropped": 0, "invalid_dropped": 0, "pairs": 0}
    descs, pairs = [], []
    old_descs = _read_jsonl(root / "descriptions.jsonl") if append else []
    old_pairs = _read_jsonl(root / "pairs.jsonl") if append else []
    seen_texts.update(" ".join(d["description"].lower().split()) for d in old_descs)
    outputs: dict[str, dict[str, list[str]]] = {}
    for row in _read_jsonl(outputs_file):
        outputs.setdefault(row["id"], {})[f"{row['adapter']}/{row['mode']}"] = row["domains"]
    for path in writer_files:
        for row in _read_jsonl(path):
            text = " ".join(row["description"].lower().split())
            # Near-duplicates count too (the leakage rule tests/test_data.py applies): a judge
            # corpus business the models were trained on, or an evaluation case, would leak.
            if text in seen_texts or find_overlaps([text], seen_texts):
                counts["overlap_dropped"] += 1
                continue
            seen_texts.add(text)
            named: list[tuple[str, str]] = [(d, "expert") for d in row.get("expert", [])]
            named += [(d, "keyword") for d in row.get("keyword", [])]
            named += [(f["domain"], f"flawed/{f['kind']}") for f in row.get("flawed", [])]
            chosen: dict[str, str] = {}
            for dom, source in named:
                try:
                    chosen.setdefault(normalize_domain(dom), source)
                except ValueError:
                    counts["invalid_dropped"] += 1
            queues = [list(outputs.get(row["id"], {}).get(src, [])) for src in sources]
            taken = 0
            while taken < per_description and any(queues):
                for src, q in zip(sources, queues):
                    while q and taken < per_description:
                        dom = q.pop(0)
                        if dom not in chosen:
                            chosen[dom] = src
                            taken += 1
                            break
            descs.append({"id": row["id"], "lang": row["lang"], "description": row["description"]})
            pairs.extend({"id": row["id"], "domain": d, "source": s} for d, s in chosen.items())
    by_lang: dict[str, list[dict]] = {}
    for d in descs:
        by_lang.setdefault(d["lang"], []).append(d)
    for group in by_lang.values():
        group.sort(key=lambda d: hashlib.sha256(d["id"].encode()).hexdigest())
        for i, d in enumerate(group):
            frac = i / len(group)
            d["split"] = "train" if frac < fractions[0] else "dev" if frac < sum(fractions) else "test"
    first = 1 + max((int(p["pair"][1:]) for p in old_pairs), default=0)
    for i, p in enumerate(pairs, first):
        p["pair"] = f"p{i:05d}"
    root.mkdir(parents=True, exist_ok=True)
    _write_jsonl(root / "descriptions.jsonl", old_descs + descs)
    _write_jsonl(root / "pairs.jsonl", [{k: p[k] for k in ("pair", "id", "domain", "source")} for p in old_pairs + pairs])
    # Blind sheets: description and domain only, shuffled; descriptions dealt round-robin.
    rng = random.Random(seed)
    order = [d["id"] for d in descs]
    rng.shuffle(order)
    text_of = {d["id"]: d["description"] for d in descs}
    by_id: dict[str, list[dict]] = {}
    for p in pairs:
        by_id.setdefault(p["id"], []).append(p)
    for k in range(sheets):
        sheets_dir.mkdir(parents=True, exist_ok=True)
        with (sheets_dir / f"sheet_{k + 1}.csv").open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["pair", "description", "domain"])
            for desc_id in order[k::sheets]:
                group = list(by_id[desc_id])
                rng.shuffle(group)
                for p in group:
                    w.writerow([p["pair"], text_of[desc_id], p["domain"]])
    counts["descriptions"], counts["pairs"] = len(descs), len(pairs)
    return counts


def retire_test(root: Path, record: dict) -> int:
    """Move a test split that has been read (``record["test_read"]``, from ``splits.json``) into
    train and record it under ``retired_tests``, so that a new test split can be frozen. Returns
    the number of descriptions moved."""
    descs = _read_jsonl(root / "descriptions.jsonl")
    moved = sum(d["split"] == "test" for d in descs)
    for d in descs:
        d["split"] = "train" if d["split"] == "test" else d["split"]
    _write_jsonl(root / "descriptions.jsonl", descs)
    retired = {**record.pop("test_read"), "test_sha256": record.get("test_sha256"),
               "pairs": record.get("pairs", {}).get("test"), "descriptions": moved, "moved_to": "train"}
    record = {**record, "retired_tests": [*record.get("retired_tests", []), retired],
              "test_sha256": _test_digest([]), "pairs": {**record.get("pairs", {}), "test": 0}}
    (root / "splits.json").write_text(json.dumps(record, indent=2) + "\n")
    return moved


def _report(pairs: list[RatedPair]) -> str:
    lines = [f"pairs rated twice: {len(pairs)}; descriptions: {len({p.desc_id for p in pairs})}"]
    for split in SPLITS:
        sp = [p for p in pairs if p.split == split]
        lines.append(f"  {split}: {len(sp)} pairs, {len({p.desc_id for p in sp})} descriptions")
    langs: dict[str, int] = {}
    for p in pairs:
        langs[p.lang] = langs.get(p.lang, 0) + 1
    non_en = sum(v for k, v in langs.items() if k != "en")
    lines.append(f"languages: {', '.join(f'{k} {v}' for k, v in sorted(langs.items(), key=lambda kv: -kv[1]))}"
                 f" (non-English {non_en / max(len(pairs), 1):.0%})")
    a = [p.ratings[0]["overall"] for p in pairs]
    b = [p.ratings[1]["overall"] for p in pairs]
    lines.append(f"inter-rater overall: Spearman {spearman(a, b):.3f}, mean |a-b| {statistics.fmean(abs(x - y) for x, y in zip(a, b)):.2f}")
    for f in CRITERIA:
        lines.append(f"  {f}: Spearman {spearman([p.ratings[0][f] for p in pairs], [p.ratings[1][f] for p in pairs]):.3f}")
    sources: dict[str, list[float]] = {}
    for p in pairs:
        sources.setdefault(p.source.split("/")[0] if not p.source.startswith("flawed") else "flawed", []).append(p.label["overall"])
    lines.append("mean overall by source: " + ", ".join(f"{k} {statistics.fmean(v):.2f} (n={len(v)})" for k, v in sorted(sources.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.judge_corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate the corpus and print sizes and agreement")
    c.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    c.add_argument("--include-test", action="store_true", help="also report the frozen test split")
    a = sub.add_parser("assemble", help="build descriptions, pairs and blind rating sheets (once, before rating)")
    a.add_argument("writers", nargs="+", type=Path, help="the writers' JSON Lines files")
    a.add_argument("--outputs", type=Path, required=True, help="model outputs for those descriptions (JSON Lines)")
    a.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    a.add_argument("--sheets", type=int, default=4)
    a.add_argument("--sheets-dir", type=Path, required=True, help="where the blind sheets go (outside the repo, for the raters)")
    a.add_argument("--part", type=int, choices=(1, 2), default=1,
                   help="2: add to the corpus (40/20/40 train/dev/test, v4 and today's decoding first) instead of writing it anew")
    r = sub.add_parser("retire-test", help="move a test split that has been read into train, so a new one can be frozen")
    r.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    o = sub.add_parser("outputs", help="run the shipped adapters on the writers' descriptions (names for assemble --outputs)")
    o.add_argument("writers", nargs="+", type=Path, help="the writers' JSON Lines files")
    o.add_argument("--out", type=Path, required=True)
    f = sub.add_parser("freeze", help="record the test split's digest in splits.json (once, before the judge's design)")
    f.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args(argv)
    if args.cmd == "outputs":
        print(f"wrote {model_outputs(args.writers, args.out)} rows to {args.out}")
        return 0
    if args.cmd == "assemble":
        part2 = {"append": True, "fractions": (0.4, 0.2), "sources": MODEL_SOURCES_PART2} if args.part == 2 else {}
        print(assemble(args.writers, args.outputs, args.dir, args.sheets_dir, sheets=args.sheets, **part2))
        return 0
    path = args.dir / "splits.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    if args.cmd == "retire-test":
        if not record.get("test_read"):
            print(f"{path}: the test split has not been read (no test_read record); it stays frozen", file=sys.stderr)
            return 2
        moved = retire_test(args.dir, record)
        print(f"moved {moved} read test descriptions into train; freeze a new test split once it is rated")
        return 0
    if args.cmd == "freeze":
        pairs = load_corpus(args.dir, include_test=True, check_frozen=False)
        if record.get("test_sha256") and record.get("pairs", {}).get("test"):
            print(f"{path}: the test split is already frozen", file=sys.stderr)
            return 2
        counts = {s: sum(1 for p in pairs if p.split == s) for s in SPLITS}
        path.write_text(json.dumps({**record, "test_sha256": _test_digest(pairs), "pairs": counts}, indent=2) + "\n")
        print(f"froze the test split ({counts['test']} pairs) in {path}")
        return 0
    try:
        pairs = load_corpus(args.dir, include_test=args.include_test)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_report(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
