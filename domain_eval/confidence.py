"""Confidence heuristic in [0, 1] for a domain suggestion, from relevance, length and complexity.

    confidence = 0.5 * relevance + 0.25 * length_score + 0.25 * simplicity     (valid domains)
    confidence = 0                                                               (invalid domains)

* relevance: share of the label's segmented words that relate to any description
  word (equal stems, or one a prefix of the other with >= 4 letters), blended 50/50 with
  the share of the description's first 3 content words the label covers. Word
  segmentation (wordninja) is what lets ``organiccoffeepdx`` relate to "organic coffee".
  A description word found verbatim inside the label (``qubitlab`` <- "qubit") counts too.
* length_score: 1 for labels of 4-12 characters, falling linearly to 0 at 1 and at 25.
* simplicity: 1, minus 0.25 per hyphen and 0.2 per digit, floored at 0.

Both ends are reachable: ``coffeeshop.com`` for "coffee shop" scores 1.0 and an invalid
name scores 0. The original's formula could never exceed 0.8.
"""
from __future__ import annotations

from domain_eval.domains import InvalidDomain, split_domain
from domain_eval.text import content_words, segment_label, stem, words

RELEVANCE_WEIGHT, LENGTH_WEIGHT, SIMPLICITY_WEIGHT = 0.5, 0.25, 0.25


def _related(a: str, b: str) -> bool:
    if stem(a) == stem(b):
        return True
    short, long_ = sorted((a, b), key=len)
    return len(short) >= 4 and long_.startswith(short)


def relevance(label: str, description: str) -> float:
    desc_words = content_words(description)
    if not desc_words:
        return 0.0
    label_words = [w for w in segment_label(label) if len(w) > 1]
    if not label_words:
        return 0.0
    all_words = words(description)  # generic words ("shop") may appear in a label without penalty
    precision = sum(any(_related(w, d) for d in all_words) for w in label_words) / len(label_words)
    key = list(dict.fromkeys(desc_words))[:3]
    covered = sum(any(_related(k, w) for w in label_words) or (len(k) >= 4 and k in label) for k in key)
    recall = covered / len(key)
    return round(min(1.0, 0.5 * precision + 0.5 * recall), 4)


def length_score(label: str) -> float:
    n = len(label)
    if 4 <= n <= 12:
        return 1.0
    if n < 4:
        return max(0.0, (n - 1) / 3)
    return max(0.0, 1 - (n - 12) / 13)


def simplicity(label: str) -> float:
    return max(0.0, 1 - 0.25 * label.count("-") - 0.2 * sum(c.isdigit() for c in label))


def confidence(domain: str, description: str) -> float:
    """Confidence in [0, 1]; 0 for an invalid domain."""
    try:
        label, _suffix = split_domain(domain)
    except InvalidDomain:
        return 0.0
    score = (
        RELEVANCE_WEIGHT * relevance(label, description)
        + LENGTH_WEIGHT * length_score(label)
        + SIMPLICITY_WEIGHT * simplicity(label)
    )
    return round(min(1.0, max(0.0, score)), 4)
