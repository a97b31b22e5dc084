"""The default offline judge: learned from blind human-style ratings of real model outputs.

Gradient-boosted regression trees over :mod:`.features` (plus a letter n-gram score,
:class:`CharModel`) predict the raters' ``overall`` and
each of the five criteria on their 1-10 scale. The trees ship as two small files in
``domain_eval/data``: ``judge_model.json`` (header: feature names and version, targets, the
weights' sha256, the corpus it was trained on, its dev scores) and ``judge_model.npz`` (the
trees as flat arrays). ``python -m training.judge_model train`` rebuilds both from
``data/ratings`` deterministically.

``overall`` is predicted directly, not averaged from the criteria: raters give a name with
one fatal flaw (a famous brand, a degenerate repeat) a low overall even when some criteria
are fine, and a mean cannot express that.

The judge is deterministic and batch-invariant: a domain's score depends only on its
description and itself. A changed weight file changes :attr:`LearnedJudge.version`, so
caches and baselines never mix judgements made by different weights; a weight file that
does not match its header, or features of another version, is an error.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain_eval.judges.base import CRITERIA, DomainScore, JudgeError, JudgeResult
from domain_eval.judges.features import ENCODER_NAME, FEATURE_NAMES, FEATURE_VERSION, featurize

__all__ = ["LearnedJudge", "TreeEnsemble", "CharModel", "JudgeModel", "load_model", "shipped_paths", "char_ngrams",
           "label_of", "TARGETS", "STACKED", "TREE_FEATURES"]

log = logging.getLogger(__name__)

#: What the model predicts, in this order.
TARGETS: tuple[str, ...] = ("overall", *CRITERIA)
#: Features a learned model computes on top of :data:`FEATURE_NAMES` (stacked: the trees read them).
STACKED: tuple[str, ...] = ("char_score",)
TREE_FEATURES: tuple[str, ...] = (*FEATURE_NAMES, *STACKED)
_DATA = Path(__file__).resolve().parent.parent / "data"


def shipped_paths() -> tuple[Path, Path]:
    return _DATA / "judge_model.json", _DATA / "judge_model.npz"


@dataclass
class TreeEnsemble:
    """Boosted regression trees as flat arrays: ``init + rate * sum(tree values)``.

    ``feature[t, k] < 0`` marks a leaf; children index into the same tree.
    """

    init: float
    rate: float
    feature: Any  # (trees, nodes) int
    threshold: Any  # (trees, nodes) float
    left: Any
    right: Any
    value: Any

    def predict(self, X: Any) -> Any:
        """All trees walked together, one level per step (a few numpy calls, not one per tree)."""
        import numpy as np

        n_trees = self.feature.shape[0]
        trees = np.arange(n_trees)[None, :]
        rows = np.arange(X.shape[0])[:, None]
        node = np.zeros((X.shape[0], n_trees), dtype=np.int64)
        while True:
            f = self.feature[trees, node]
            inner = f >= 0
            if not inner.any():
                break
            go_left = X[rows, np.where(inner, f, 0)] <= self.threshold[trees, node]
            child = np.where(go_left, self.left[trees, node], self.right[trees, node])
            node = np.where(inner, child, node)
        # Each row sums its own trees, so a row's score does not depend on the batch.
        return self.init + self.rate * np.ascontiguousarray(self.value[trees, node]).sum(axis=1)


def label_of(domain: str) -> str:
    """The part of a domain the character model reads: its first label, lower-cased."""
    return str(domain).lower().split(".", 1)[0]


def char_ngrams(label: str) -> list[str]:
    """The 2- to 4-letter pieces of ``label`` padded with spaces (so starts and ends count).

    Training (``training.judge_model``) vectorises with this same function.
    """
    w = f" {label} "
    return [w[i:i + n] for n in (2, 3, 4) for i in range(len(w) - n + 1)]


@dataclass
class CharModel:
    """Ridge regression of the raters' overall on tf-idf letter n-grams of the label.

    Why: how a name *reads* (``thriftops`` vs ``spritzkuhn``) is what the raters react to first,
    and hand-made features see little of it. Its score is a feature of the trees, not a verdict.
    """

    index: dict[str, int]
    idf: Any  # (n_grams,) float
    coef: Any  # (n_grams,) float
    intercept: float

    def score(self, labels: list[str]) -> Any:
        import numpy as np

        out = np.full(len(labels), self.intercept)
        for r, label in enumerate(labels):
            counts: dict[int, int] = {}
            for g in char_ngrams(label):
                j = self.index.get(g)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if counts:
                cols = np.fromiter(counts, dtype=np.int64)
                tfidf = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * self.idf[cols]
                out[r] += float(tfidf @ self.coef[cols]) / float(np.sqrt(tfidf @ tfidf))
        return out


@dataclass
class JudgeModel:
    header: dict[str, Any]
    ensembles: dict[str, TreeEnsemble]
    char: CharModel

    @property
    def version(self) -> str:
        return f"learned-f{self.header['feature_version']}-w{self.header['sha256'][:12]}"


def load_model(header_path: Path | None = None, weights_path: Path | None = None) -> JudgeModel:
    """Load and verify the judge's weights (:class:`JudgeError` when they cannot be trusted)."""
    import numpy as np

    hp, wp = shipped_paths()
    header_path, weights_path = Path(header_path or hp), Path(weights_path or wp)
    try:
        header = json.loads(header_path.read_text(encoding="utf-8"))
        blob = weights_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise JudgeError(f"learned judge weights unreadable ({header_path.name}, {weights_path.name}): {exc}; "
                         f"rebuild them with: python -m training.judge_model train") from exc
    sha = hashlib.sha256(blob).hexdigest()
    if sha != header.get("sha256"):
        raise JudgeError(f"learned judge weights {weights_path} do not match {header_path.name} "
                         f"(sha256 {sha[:12]} vs {str(header.get('sha256'))[:12]}); rebuild with: python -m training.judge_model train")
    if header.get("feature_version") != FEATURE_VERSION or tuple(header.get("features", ())) != TREE_FEATURES:
        raise JudgeError(f"learned judge weights were trained on features v{header.get('feature_version')}, "
                         f"this code computes v{FEATURE_VERSION}; rebuild with: python -m training.judge_model train")
    import io

    arrays = np.load(io.BytesIO(blob))
    ensembles = {}
    for target in TARGETS:
        ensembles[target] = TreeEnsemble(
            init=float(arrays[f"{target}.init"]), rate=float(arrays[f"{target}.rate"]),
            feature=arrays[f"{target}.feature"], threshold=arrays[f"{target}.threshold"].astype(np.float64),
            left=arrays[f"{target}.left"], right=arrays[f"{target}.right"], value=arrays[f"{target}.value"].astype(np.float64))
    grams = [str(g) for g in arrays["char.ngrams"]]
    char = CharModel(index={g: j for j, g in enumerate(grams)}, idf=arrays["char.idf"].astype(np.float64),
                     coef=arrays["char.coef"].astype(np.float64), intercept=float(arrays["char.intercept"]))
    return JudgeModel(header, ensembles, char)


def _clip10(x: float) -> float:
    return round(min(10.0, max(1.0, float(x))), 2)


class LearnedJudge:
    """Scores domains with the shipped learned model (see the module docstring)."""

    name = "learned"

    def __init__(self, model: JudgeModel | None = None) -> None:
        self._model = model or load_model()
        self._stats: dict[str, Any] = {"requests": 0, "domains": 0, "errors": 0, "total_latency_s": 0.0}

    @property
    def model(self) -> str:
        return ENCODER_NAME

    @property
    def version(self) -> str:
        return self._model.version

    def _identity(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "version": self.version}

    def score(self, description: str, domains: list[str]) -> JudgeResult:
        import numpy as np

        domains = list(domains)
        t0 = time.perf_counter()
        scores: list[DomainScore] = []
        if domains:
            feats = featurize(description, domains)
            X = np.column_stack([np.asarray(feats.rows, dtype=np.float64),
                                 self._model.char.score([label_of(d) for d in domains])])
            preds = {t: self._model.ensembles[t].predict(X) for t in TARGETS}
            for i, d in enumerate(domains):
                if not feats.valid[i]:
                    scores.append(DomainScore.failed(d, "not a valid domain name; the learned judge rates valid names only"))
                    self._stats["errors"] += 1
                    continue
                crit = {c: _clip10(preds[c][i]) for c in CRITERIA}
                scores.append(DomainScore.scored(d, crit, overall=_clip10(preds["overall"][i])))
        self._stats["requests"] += 1
        self._stats["domains"] += len(domains)
        self._stats["total_latency_s"] += time.perf_counter() - t0
        return JudgeResult.build(description, scores, self._identity())

    def stats(self) -> dict[str, Any]:
        s = dict(self._stats)
        s["total_latency_s"] = round(s["total_latency_s"], 6)
        s["mean_latency_s"] = round(s["total_latency_s"] / s["requests"], 6) if s["requests"] else None
        s.update(cache_hits=0, cache_misses=0)
        return s
