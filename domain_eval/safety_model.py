"""The learned layer of the safety filter: a linear classifier over hashed text features.

Why this shape: rules catch the phrasings a policy writer thought of; paraphrase, slang and
languages the policy does not list need something that generalises from examples. Character
n-grams of the *normalised* text (homoglyphs folded, zero-width characters removed, leetspeak
and spaced letters joined: :func:`domain_eval.safety.normalize_text`) plus words, word pairs
and emoji names are script-agnostic and robust to spelling games, and a linear model over
them is fast (well under a millisecond per description), deterministic and small.

Features are hashed (CRC-32, stable across processes and platforms) into ``2**bits``
buckets, so the shipped model is one weight matrix (float16) plus a JSON header, and
inference needs only numpy. Row 0 is a blocked-vs-allowed logistic regression (P(blocked));
the other rows score the policy categories one-vs-rest, to name the category of a block.
``python -m training.safety_classifier train`` rebuilds the files from
``data/safety_corpus`` reproducibly.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import unicodedata
import zlib
from importlib import resources
from pathlib import Path
from typing import Iterable

__all__ = ["FEATURE_VERSION", "ClassifierError", "SafetyClassifier", "Prediction", "features", "hashed",
           "default_classifier", "shipped_paths"]

#: Bump when :func:`features` changes: a model trained on other features is refused.
FEATURE_VERSION = 1
_WORD = re.compile(r"[^\W_]+")
_CHAR_NGRAMS = (2, 3, 4, 5)


class ClassifierError(ValueError):
    """A model file that cannot be used; the message names the file."""


def _emoji_names(text: str) -> list[str]:
    # Emoji code ("❄️ and 💊 delivered") carries the meaning; unicodedata names need no package.
    return ["e:" + unicodedata.name(ch, "?").lower() for ch in text if unicodedata.category(ch) == "So"]


def features(text: str) -> list[str]:
    """The feature strings of ``text`` (with repeats; hashing and weighting come later)."""
    from domain_eval.safety import normalize_text

    norm = normalize_text(text)
    words = _WORD.findall(norm)
    out = ["w:" + w for w in words]
    out += ["b:" + a + " " + b for a, b in zip(words, words[1:])]
    for word in words:
        padded = f" {word} "
        for n in _CHAR_NGRAMS:
            out += ["c:" + padded[i:i + n] for i in range(len(padded) - n + 1)]
    out += _emoji_names(text)
    return out


def hashed(text: str, bits: int) -> tuple[list[int], float]:
    """(distinct bucket indices, the value each gets): binary presence, L2-normalised."""
    mask = (1 << bits) - 1
    buckets = sorted({zlib.crc32(f.encode("utf-8")) & mask for f in features(text)})
    return buckets, (1.0 / len(buckets) ** 0.5) if buckets else 0.0


#: Texts of at most this many words are judged against the domain threshold: like a domain's
#: two or three words, they carry too little evidence for the description threshold
#: ("skills", "fresh ideas, delivered" read as harmful at that threshold).
SHORT_WORDS = 3
SHORT_CHARS = 24  # and characters, so an unspaced Chinese or Thai sentence is not "short"


@dataclasses.dataclass(frozen=True)
class Prediction:
    p_blocked: float
    category: str  # the likeliest blocked category (even when the text is allowed)
    threshold: float

    @property
    def blocked(self) -> bool:
        return self.p_blocked >= self.threshold


class SafetyClassifier:
    """A trained model: ``weights`` ((1 + categories) x 2**bits) and ``bias``.

    ``threshold``: P(blocked) at or above which a text is blocked. ``veto``: a policy-term
    match is overruled when P(blocked) is below it (0 disables the veto); see
    :meth:`domain_eval.safety.SafetyFilter.check`. ``domain_threshold``: the same for a domain
    read as words (:func:`domain_eval.safety.read_domain`), chosen so that almost no ordinary
    domain is blocked.
    """

    def __init__(self, weights, bias, *, categories: list[str], bits: int, threshold: float,
                 veto: float = 0.0, domain_threshold: float = 1.0, version: str,
                 meta: dict | None = None) -> None:
        import numpy as np

        rows = 1 + len(categories)
        if weights.shape != (rows, 1 << bits) or bias.shape != (rows,):
            raise ClassifierError(f"weights {weights.shape} / bias {bias.shape} do not fit "
                                  f"1 + {len(categories)} rows x 2**{bits} buckets")
        self._w = np.ascontiguousarray(weights.T, dtype=np.float32)  # buckets x rows: row gathers
        self._b = bias.astype(np.float32)
        self.categories = list(categories)
        self.bits = bits
        self.threshold = threshold
        self.veto = veto
        self.domain_threshold = domain_threshold
        self.version = version
        self.meta = meta or {}

    @classmethod
    def load(cls, header_path: Path, weights_path: Path) -> "SafetyClassifier":
        import numpy as np

        try:
            header = json.loads(header_path.read_text())
        except (OSError, ValueError) as exc:
            raise ClassifierError(f"{header_path}: cannot read the classifier header ({exc})") from None
        if header.get("feature_version") != FEATURE_VERSION:
            raise ClassifierError(f"{header_path}: trained on feature_version {header.get('feature_version')!r}, "
                                  f"this code computes {FEATURE_VERSION}; retrain with "
                                  "`python -m training.safety_classifier train`")
        raw = weights_path.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if header.get("weights_sha256") != digest:
            raise ClassifierError(f"{weights_path}: sha256 {digest[:12]} does not match the header's "
                                  f"{str(header.get('weights_sha256'))[:12]}; the two files belong together")
        with np.load(weights_path) as data:
            weights, bias = data["weights"], data["bias"]
        return cls(weights, bias, categories=header["categories"], bits=header["bits"],
                   threshold=header["threshold"], veto=header["veto"], domain_threshold=header["domain_threshold"],
                   version=f"clf-{digest[:12]}",
                   meta=header)

    def logits(self, text: str):
        import numpy as np

        buckets, value = hashed(text, self.bits)
        if not buckets:
            return self._b.copy()
        return self._w[np.asarray(buckets)].sum(axis=0) * value + self._b

    def predict(self, text: str) -> Prediction:
        import math

        z = self.logits(text)
        p_blocked = 1.0 / (1.0 + math.exp(-float(z[0])))
        best = max(range(len(self.categories)), key=lambda i: z[1 + i])
        short = len(_WORD.findall(text)) <= SHORT_WORDS and len(text.strip()) <= SHORT_CHARS
        return Prediction(p_blocked, self.categories[best], self.domain_threshold if short else self.threshold)

    def predict_many(self, texts: Iterable[str]) -> list[Prediction]:
        return [self.predict(t) for t in texts]


def shipped_paths() -> tuple[Path, Path]:
    root = Path(str(resources.files("domain_eval").joinpath("data")))
    return root / "safety_classifier.json", root / "safety_classifier.npz"


@functools.lru_cache(maxsize=1)
def default_classifier() -> SafetyClassifier:
    """The shipped model. Missing or mismatched files are an error, never a silent rules-only filter."""
    header, weights = shipped_paths()
    if not header.exists() or not weights.exists():
        raise ClassifierError(f"{header.parent}: the shipped safety classifier is missing "
                              f"({header.name}, {weights.name}); rebuild it with "
                              "`python -m training.safety_classifier train`")
    return SafetyClassifier.load(header, weights)
