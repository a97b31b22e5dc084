"""Train and measure the safety filter's learned layer (``domain_eval/safety_model.py``).

    python -m training.safety_classifier train              # rebuild the shipped files
    python -m training.safety_classifier evaluate --split dev  # per-layer / language / kind
    python -m training.safety_classifier evaluate --split test # the frozen split: report once

Training uses the corpus's train split only; the feature-hash size, regularisation and
decision threshold are chosen on dev; the test split is never read by ``train``. The run is
deterministic (fixed solver, no shuffling), so the same corpus gives the same bytes.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from training.safety_corpus import CATEGORIES, CORPUS_DIR, Row, load_splits

GRID_BITS = (16, 17)
GRID_C = (3.0, 10.0, 30.0, 100.0)


# ------------------------------------------------------------------------------ metrics
@dataclasses.dataclass(frozen=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def add(self, truth: bool, predicted: bool) -> "Counts":
        return Counts(self.tp + (truth and predicted), self.fp + (not truth and predicted),
                      self.fn + (truth and not predicted), self.tn + (not truth and not predicted))


def _fmt(value: float | None) -> str:
    return "  –  " if value is None else f"{value:.3f}"


@dataclasses.dataclass
class Evaluation:
    name: str
    overall: Counts
    by_group: dict[str, dict[str, Counts]]  # group name -> value -> counts
    errors: list[tuple[Row, bool, str]]  # (row, predicted blocked, reason)

    def table(self) -> str:
        o = self.overall
        lines = [f"{self.name}: precision {_fmt(o.precision)}  recall {_fmt(o.recall)}  (n={o.n}, "
                 f"tp {o.tp}, fp {o.fp}, fn {o.fn}, tn {o.tn})"]
        for group, values in self.by_group.items():
            lines.append(f"  by {group}:")
            for value, c in sorted(values.items(), key=lambda kv: -kv[1].n):
                lines.append(f"    {value:<16} n={c.n:<4} precision {_fmt(c.precision)}  recall {_fmt(c.recall)}")
        return "\n".join(lines)


def evaluate(name: str, rows: Sequence[Row], decide: Callable[[str], tuple[bool, str]]) -> Evaluation:
    overall = Counts()
    groups: dict[str, dict[str, Counts]] = {"language": collections.defaultdict(Counts),
                                            "english": collections.defaultdict(Counts),
                                            "disguised": collections.defaultdict(Counts),
                                            "kind": collections.defaultdict(Counts),
                                            "category": collections.defaultdict(Counts)}
    errors = []
    for row in rows:
        predicted, reason = decide(row.text)
        overall = overall.add(row.blocked, predicted)
        keys = {"language": row.lang, "english": "en" if row.lang == "en" else "non-en",
                "disguised": "disguised" if row.disguised else "plain-ish", "kind": row.kind,
                "category": row.category}
        for group, key in keys.items():
            groups[group][key] = groups[group][key].add(row.blocked, predicted)
        if predicted != row.blocked:
            errors.append((row, predicted, reason))
    return Evaluation(name, overall, {k: dict(v) for k, v in groups.items()}, errors)


# ------------------------------------------------------------------------------ training
#: Ordinary business descriptions the filter must let through: the domain datasets' own
#: descriptions (the bulk of real input). v1/v2 train, v3 is the ordinary dev set that
#: bounds the false-block rate when the threshold is chosen.
ORDINARY_TRAIN = ("data/domain_dataset_v1.jsonl", "data/domain_dataset_v2.jsonl")
ORDINARY_DEV = ("data/domain_dataset_v3.jsonl",)
MAX_ORDINARY_FALSE_BLOCKS = 0.01
#: Generated names: the domains of the training datasets are the ordinary ones.
MAX_ORDINARY_DOMAIN_BLOCKS = 0.001
VETOES = (0.0, 0.02, 0.05, 0.1, 0.15)
REPO = Path(__file__).resolve().parent.parent


def ordinary_rows(paths: Sequence[str]) -> list[Row]:
    rows = []
    for path in paths:
        for line in (REPO / path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                text = json.loads(line)["business_description"]
                rows.append(Row(text, "allowed", "none", "en", "ordinary", Path(path).stem))
    return rows


def ordinary_domains() -> list[str]:
    out: set[str] = set()
    for path in (*ORDINARY_TRAIN, *ORDINARY_DEV):
        for line in (REPO / path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.update(json.loads(line)["domain_suggestions"])
    return sorted(out)


def choose_domain_threshold(clf, threshold: float) -> tuple[float, float]:
    """(domain threshold, share of ordinary domains it blocks): the lowest threshold, not
    below the description threshold, that blocks at most MAX_ORDINARY_DOMAIN_BLOCKS of them."""
    from domain_eval.safety import read_domain

    p = sorted((clf.predict(read_domain(d)).p_blocked for d in ordinary_domains()), reverse=True)
    allowed_blocks = int(MAX_ORDINARY_DOMAIN_BLOCKS * len(p))
    t = max(threshold, round(p[allowed_blocks] + 0.0005, 3))  # just above the first one we must let through
    return min(t, 1.0), sum(x >= t for x in p) / len(p)


def _matrix(texts: Sequence[str], bits: int):
    import numpy as np
    from scipy.sparse import csr_matrix

    from domain_eval.safety_model import hashed

    indptr, indices, values = [0], [], []
    for text in texts:
        buckets, value = hashed(text, bits)
        indices += buckets
        values += [value] * len(buckets)
        indptr.append(len(indices))
    return csr_matrix((np.asarray(values, dtype=np.float64), np.asarray(indices, dtype=np.int64),
                       np.asarray(indptr, dtype=np.int64)), shape=(len(texts), 1 << bits))


def fit(rows: Sequence[Row], bits: int, c: float, matrix=None):
    """(weights (1 + categories) x buckets, bias): row 0 blocked-vs-allowed, then one-vs-rest
    category scorers fitted on the blocked rows. liblinear: deterministic, about a second."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = matrix if matrix is not None else _matrix([r.text for r in rows], bits)
    weights = np.zeros((1 + len(CATEGORIES), 1 << bits), dtype=np.float32)
    bias = np.zeros(1 + len(CATEGORIES), dtype=np.float32)
    blocked = np.asarray([r.blocked for r in rows])
    decision = LogisticRegression(C=c, solver="liblinear", max_iter=1000).fit(x, blocked)
    weights[0], bias[0] = decision.coef_[0], decision.intercept_[0]
    xb = x[blocked]
    categories = np.asarray([r.category for r in rows])[blocked]
    for i, name in enumerate(CATEGORIES, 1):
        y = categories == name
        if y.any() and not y.all():
            model = LogisticRegression(C=c, solver="liblinear", max_iter=1000).fit(xb, y)
            weights[i], bias[i] = model.coef_[0], model.intercept_[0]
        else:  # a category without training rows is never named
            bias[i] = -30.0
    return weights, bias


def _classifier(weights, bias, bits: int, threshold: float, veto: float = 0.0):
    from domain_eval.safety_model import SafetyClassifier

    return SafetyClassifier(weights, bias, categories=list(CATEGORIES), bits=bits, threshold=threshold, veto=veto,
                            domain_threshold=1.0, version="candidate")


def _rules_filter():
    from domain_eval.safety import SafetyFilter

    return SafetyFilter(classifier=None)


@dataclasses.dataclass(frozen=True)
class Choice:
    threshold: float
    veto: float
    dev: Counts
    ordinary_false_blocks: float

    @property
    def score(self) -> float:
        return min(self.dev.precision or 0.0, self.dev.recall or 0.0)


def choose(p_dev: Sequence[float], rule_hits: Sequence[bool], truth: Sequence[bool],
           p_ordinary: Sequence[float], rule_ordinary: Sequence[bool]) -> Choice:
    """Threshold and veto maximising min(precision, recall) of the layered decision on dev,
    among those that block at most 1% of the ordinary dev descriptions."""
    best: Choice | None = None
    for veto in VETOES:
        for t in [i / 100 for i in range(5, 100)]:
            if veto >= t:
                continue
            decide = lambda p, rule: p >= t or (rule and p >= veto)  # noqa: E731
            fb = sum(decide(p, r) for p, r in zip(p_ordinary, rule_ordinary)) / max(len(p_ordinary), 1)
            if fb > MAX_ORDINARY_FALSE_BLOCKS:
                continue
            c = Counts()
            for p, rule, y in zip(p_dev, rule_hits, truth):
                c = c.add(y, decide(p, rule))
            choice = Choice(t, veto, c, fb)
            if best is None or choice.score > best.score + 1e-9:
                best = choice
    if best is None:
        raise RuntimeError("no threshold keeps ordinary false blocks under "
                           f"{MAX_ORDINARY_FALSE_BLOCKS:.0%}; the classifier is unusable")
    return best


def train(corpus_dir: Path, out_dir: Path, *, grid_bits: Sequence[int] = GRID_BITS,
          grid_c: Sequence[float] = GRID_C) -> dict:
    """Fit on train, choose hash size, C, threshold and veto on dev, write the shipped files.
    Dev stays held out (the tests guard it); the test split is not read."""
    import numpy as np

    splits = load_splits(corpus_dir, include_test=False)
    train_rows = splits["train"] + ordinary_rows(ORDINARY_TRAIN)
    dev_rows, ordinary_dev = splits["dev"], ordinary_rows(ORDINARY_DEV)
    rules = _rules_filter()
    rule_dev = [rules.check(r.text).blocked for r in dev_rows]
    rule_ordinary = [rules.check(r.text).blocked for r in ordinary_dev]
    truth = [r.blocked for r in dev_rows]
    trials = []
    for bits in grid_bits:
        x_train = _matrix([r.text for r in train_rows], bits)
        for c in grid_c:
            t0 = time.perf_counter()
            weights, bias = fit(train_rows, bits, c, x_train)
            clf = _classifier(weights, bias, bits, 0.5)
            p_dev = [clf.predict(r.text).p_blocked for r in dev_rows]
            p_ord = [clf.predict(r.text).p_blocked for r in ordinary_dev]
            choice = choose(p_dev, rule_dev, truth, p_ord, rule_ordinary)
            trials.append({"bits": bits, "C": c, "threshold": choice.threshold, "veto": choice.veto,
                           "dev_precision": round(choice.dev.precision or 0, 4),
                           "dev_recall": round(choice.dev.recall or 0, 4),
                           "ordinary_false_blocks": round(choice.ordinary_false_blocks, 4),
                           "seconds": round(time.perf_counter() - t0, 1)})
            print(f"bits {bits} C {c}: threshold {choice.threshold:.2f} veto {choice.veto:.2f}: dev P "
                  f"{_fmt(choice.dev.precision)} R {_fmt(choice.dev.recall)}, ordinary false blocks "
                  f"{choice.ordinary_false_blocks:.1%}", file=sys.stderr)
    best = max(trials, key=lambda t: (min(t["dev_precision"], t["dev_recall"]), -t["bits"], -t["C"]))
    weights, bias = fit(train_rows, best["bits"], best["C"])
    domain_threshold, domain_blocks = choose_domain_threshold(
        _classifier(weights, bias, best["bits"], best["threshold"]), best["threshold"])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, weights=weights.astype(np.float16), bias=bias.astype(np.float32))
    raw = buffer.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "safety_classifier.npz").write_bytes(raw)
    from domain_eval.safety_model import FEATURE_VERSION

    header = {"feature_version": FEATURE_VERSION, "categories": list(CATEGORIES), "bits": best["bits"],
              "C": best["C"], "threshold": best["threshold"], "veto": best["veto"],
              "domain_threshold": domain_threshold, "ordinary_domains_blocked": round(domain_blocks, 4),
              "weights_sha256": hashlib.sha256(raw).hexdigest(),
              "rows": {"corpus_train": len(splits["train"]), "corpus_dev": len(dev_rows),
                            "ordinary_train": len(train_rows) - len(splits["train"]),
                            "ordinary_dev": len(ordinary_dev)},
              "selection": trials, "rebuild": "python -m training.safety_classifier train"}
    (out_dir / "safety_classifier.json").write_text(json.dumps(header, indent=1) + "\n")
    return header


# ------------------------------------------------------------------------------ reports
def layer_report(rows: Sequence[Row], *, show_errors: int = 0, ordinary: Sequence[Row] = ()) -> str:
    from domain_eval.safety import SafetyFilter
    from domain_eval.safety_model import default_classifier

    rules = SafetyFilter(classifier=None)
    clf = default_classifier()
    both = SafetyFilter()
    layers = [
        ("rules", lambda t: _verdict(rules.check(t))),
        ("classifier", lambda t: (clf.predict(t).blocked, f"p={clf.predict(t).p_blocked:.2f}")),
        ("rules+classifier (shipped filter)", lambda t: _verdict(both.check(t))),
    ]
    out = []
    for name, decide in layers:
        ev = evaluate(name, rows, decide)
        out.append(ev.table())
        if ordinary:
            false_blocks = sum(decide(r.text)[0] for r in ordinary)
            out.append(f"  ordinary descriptions blocked: {false_blocks}/{len(ordinary)}")
        if show_errors and name.startswith("rules+"):
            out.append(f"  {min(show_errors, len(ev.errors))} of {len(ev.errors)} errors:")
            for row, predicted, reason in ev.errors[:show_errors]:
                what = "false block" if predicted else "missed"
                out.append(f"    [{what}] ({row.lang}, {row.kind}, {row.category}) {row.text[:110]!r} -- {reason[:90]}")
    return "\n\n".join(out)


def _verdict(v) -> tuple[bool, str]:
    return v.blocked, v.reason


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.safety_classifier", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fit on train, choose hash size / C / threshold on dev, write the model files")
    t.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    t.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "domain_eval" / "data")
    e = sub.add_parser("evaluate", help="precision/recall per layer, language, disguise, kind and category")
    e.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    e.add_argument("--split", choices=["train", "dev", "test"], required=True)
    e.add_argument("--errors", type=int, default=0, help="list up to N errors of the shipped filter")
    args = parser.parse_args(argv)
    if args.command == "train":
        header = train(args.corpus, args.out)
        print(f"wrote {args.out}/safety_classifier.npz: bits {header['bits']}, C {header['C']}, "
              f"threshold {header['threshold']}, veto {header['veto']}, rows {header['rows']}")
        return 0
    rows = load_splits(args.corpus)[args.split]
    print(f"{args.split}: {len(rows)} rows")
    ordinary = ordinary_rows(ORDINARY_DEV) if args.split == "dev" else ()
    print(layer_report(rows, show_errors=args.errors, ordinary=ordinary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
