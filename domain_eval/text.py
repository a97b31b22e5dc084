"""Small text utilities shared by confidence, judges and safety: word segmentation of
concatenated domain labels, tokenisation and a light stemmer (no NLTK download needed)."""
from __future__ import annotations

import functools
import re
import unicodedata

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

STOPWORDS = frozenset(
    """a an the and or of for in on at to with by from as is are be our your their its this that
    we you they it my me us i into over under about near based small big new local service services
    company business shop store offering offers provide provides providing specialising specializing
    specialized specialised""".split()
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (Unicode letters and digits)."""
    return [w.casefold() for w in _WORD.findall(unicodedata.normalize("NFKC", text))]


def content_words(text: str) -> list[str]:
    """Words minus stop-words and 1-letter tokens, in order."""
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 1]


@functools.lru_cache(maxsize=4096)
def segment_label(label: str) -> tuple[str, ...]:
    """Split a concatenated ASCII label into words: ``organiccoffeepdx`` -> (organic, coffee, pdx).

    Hyphens and digits split first; each alphabetic run is segmented with wordninja's
    English unigram model. Punycode labels are decoded so their words are visible.
    """
    import wordninja

    if label.startswith("xn--"):
        try:
            import idna

            label = idna.decode(label)
        except Exception:
            pass
    out: list[str] = []
    for chunk in re.split(r"[-\d]+", label.casefold()):
        if not chunk:
            continue
        if chunk.isascii():
            out.extend(w for w in wordninja.split(chunk) if w)
        else:
            out.append(chunk)
    return tuple(out)


_SUFFIXES = ("ization", "ational", "fulness", "ousness", "iveness", "ations", "ation", "ings", "ing",
             "ness", "ment", "ers", "ies", "ied", "ed", "er", "es", "ly", "s")


@functools.lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """A deliberately light suffix-stripping stemmer: enough to match bakery/bakeries,
    clean/cleaning/cleaners without a dependency on NLTK data."""
    w = word.casefold()
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)] + ("i" if suffix in ("ies", "ied") else "")
            break
    if w.endswith("y") and len(w) > 3:
        w = w[:-1] + "i"
    return w
