"""Safety filter for business descriptions and generated domain names.

The original filter matched 20 raw substrings case-insensitively, so it blocked
"helping people feel better" (``bet``), Essex, skills and alphabet, and let
"high-stakes wagering", "pyramid marketing" and "nicotine" through. This one:

* keeps its policy in a reviewable data file (``domain_eval/data/safety_policy.yaml``),
  validated against a schema written here; users add terms or allow-contexts with
  their own files (``SafetyFilter(extra_policies=[...])``, ``--safety-policy PATH``);
* matches whole words on *normalised* text (:func:`normalize_text`): zero-width
  characters removed, NFKC + casefold, accents stripped, Cyrillic/Greek look-alikes
  folded to Latin, leetspeak folded in tokens that mix letters with leet symbols,
  and letters split by spaces/dots/hyphens joined;
* ignores a match that lies wholly inside an *allow-context* ("killer whale",
  "drug rehabilitation", "fraud detection"...);
* explains itself: a :class:`SafetyVerdict` names the category, the matched text
  and the policy term (or why nothing was blocked);
* checks generated domains by segmenting each label into words
  (:meth:`SafetyFilter.check_domain`, :meth:`SafetyFilter.filter_domains`).

All terms of all categories are compiled into one trie-shaped regular expression
that locates candidate positions in a single pass; with the normalisation steps
a 100,000-character text takes a few tens of milliseconds. Nothing here imports
torch or transformers.
"""
from __future__ import annotations

import argparse
import bisect
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import re
import sys
import unicodedata
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import yaml

if TYPE_CHECKING:
    from domain_eval.safety_llm import Moderator
    from domain_eval.safety_model import Prediction, SafetyClassifier

__all__ = [
    "DEFAULT_POLICY",
    "PolicyError",
    "SafetyFilter",
    "SafetyVerdict",
    "add_cli",
    "check",
    "check_domain",
    "default_filter",
    "filter_domains",
    "fold_homoglyphs",
    "fold_leetspeak",
    "join_spaced_letters",
    "nfkc_casefold",
    "normalize_text",
    "run_cli",
    "strip_accents",
    "strip_zero_width",
]

EXIT_OK = 0
EXIT_BAD_POLICY = 2
EXIT_BLOCKED = 3  # same value as domain_eval.cli.EXIT_BLOCKED (not imported: cli imports us)

#: Human-readable name of the shipped policy file (resolved with importlib.resources).
DEFAULT_POLICY = "domain_eval/data/safety_policy.yaml"

# --------------------------------------------------------------------------------------
# Normalisation: each step is a small public function, unit tested on its own.
# --------------------------------------------------------------------------------------

_ZERO_WIDTH = dict.fromkeys(
    map(
        ord,
        "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u200b\u200c\u200d\u200e"
        "\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069"
        "\u3164\ufe00\ufe01\ufe02\ufe03\ufe04\ufe05\ufe06\ufe07\ufe08\ufe09\ufe0a\ufe0b\ufe0c\ufe0d"
        "\ufe0e\ufe0f\ufeff\uffa0",
    ),
    None,
)


def strip_zero_width(text: str) -> str:
    """Remove zero-width, bidi-control, variation-selector and soft-hyphen characters,
    which are invisible but split a word for a naive matcher (``gam\\u200bbling``)."""
    return text.translate(_ZERO_WIDTH)


def nfkc_casefold(text: str) -> str:
    """NFKC (full-width, ligatures, mathematical and circled letters to plain ones), then
    casefold (``ß`` -> ``ss``), then NFKC again since casefolding can denormalise."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def strip_accents(text: str) -> str:
    """Drop combining marks: ``cocaína`` -> ``cocaina``, ``Glücksspiel`` -> ``glucksspiel``.
    Terms are stored without accents, so a writer who omits them is still matched."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


# Look-alike letters come from Unicode's confusables table, through the maintained
# ``confusable_homoglyphs`` package: every non-ASCII letter it lists as confusable with a
# single ASCII letter or digit (upper-case entries also give their casefolded form, since
# input is casefolded first). Unicode lists only *visual identity*, so it lacks lower-case
# forms that merely look alike in common fonts ("и" for u, "п" for n, Greek "ν" for v) and
# small capitals; this supplement adds those, and wins where the two disagree.
_HOMOGLYPH_SUPPLEMENT = {
    "ё": "e", "ѐ": "e", "є": "e", "з": "3", "и": "u", "ї": "i", "п": "n", "ў": "y", "ӏ": "l", "ь": "b",
    "в": "b", "к": "k", "м": "m", "н": "h", "т": "t",
    "β": "b", "ε": "e", "ζ": "z", "η": "n", "κ": "k", "μ": "u", "ν": "v", "τ": "t", "χ": "x", "ω": "w",
    "ά": "a", "έ": "e", "ή": "n", "ί": "i", "ό": "o", "ύ": "u", "ώ": "w",
    "ʟ": "l", "ɴ": "n", "ʀ": "r", "ᴀ": "a", "ᴅ": "d", "ᴇ": "e", "ᴋ": "k", "ᴍ": "m", "ᴘ": "p", "ᴛ": "t",
    "ß": "ss",
}
# "з" -> "3" lets the leet step turn it into "e" (it is used for "e"/"3"); harmless elsewhere.


@functools.lru_cache(maxsize=1)
def _homoglyph_table() -> tuple[dict[int, str], frozenset[str], re.Pattern[str]]:
    """(str.translate table, look-alike characters, regex of words containing one)."""
    from confusable_homoglyphs import confusables  # a declared dependency; loaded on first use

    table: dict[str, str] = {}
    for char, glyphs in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii() or not char.isalpha():
            continue
        latin = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalnum()]
        if not latin:
            continue
        for key in (char, char.casefold()):
            if len(key) == 1 and not key.isascii():
                table.setdefault(key, latin[0].lower())
    table.update(_HOMOGLYPH_SUPPLEMENT)
    chars = frozenset(table)
    # A word (maximal run of letters/digits) that contains at least one look-alike; the
    # lookahead only runs at word starts, so this stays linear in the text length.
    word = re.compile(r"(?<![^\W_])(?=[^\W_]*[" + re.escape("".join(sorted(chars))) + r"])[^\W_]+")
    return str.maketrans(table), chars, word


def _is_latin_letter(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def fold_homoglyphs(text: str) -> str:
    """Fold Cyrillic/Greek (and other) look-alikes to Latin (``саsinо`` with Cyrillic
    с/а/о -> ``casino``).

    Only inside a word that already contains a Latin letter, or whose letters are *all*
    look-alikes in a text that is mostly Latin, so genuine Russian or Greek words (even
    "сор" or "рос", made only of look-alikes) stay readable in Russian or Greek text.
    Run after :func:`nfkc_casefold` (upper-case forms are folded there)."""
    if text.isascii():
        return text
    table, chars, word_re = _homoglyph_table()
    latin = sum(_is_latin_letter(ch) for ch in text)
    other = sum(ch.isalpha() and not ch.isascii() and ch not in chars for ch in text)
    mostly_latin = latin > other

    def fold(match: re.Match[str]) -> str:
        word = match.group()
        if any(_is_latin_letter(ch) for ch in word) or (
            mostly_latin and all(ch in chars or not ch.isalpha() for ch in word)
        ):
            return word.translate(table)
        return word

    return word_re.sub(fold, text)


LEET = {"0": "o", "3": "e", "1": "i", "@": "a", "$": "s", "5": "s", "7": "t"}
_LEET_TABLE = str.maketrans(LEET)
# A token (letters, digits, @, $) that contains a leet symbol; linear, as above.
_LEET_TOKEN = re.compile(r"(?<![^\W_@$])(?=(?:[^\W_]|[@$])*[01357@$])(?:[^\W_]|[@$])+")


def fold_leetspeak(text: str) -> str:
    """``p0rn`` -> ``porn``, ``g@mbl1ng`` -> ``gambling``, ``$ex`` -> ``sex``.

    Applied only to tokens that mix letters with leet symbols and whose digits are all
    leet digits (0 3 1 5 7), so "401k", "7 eleven", "24/7" and "$5" are left alone."""

    def fold(match: re.Match[str]) -> str:
        token = match.group()
        if not any(ch in LEET for ch in token):
            return token
        if not any(ch.isalpha() for ch in token):
            return token
        if any(ch.isdigit() and ch not in LEET for ch in token):
            return token
        return token.translate(_LEET_TABLE)

    return _LEET_TOKEN.sub(fold, text)


# Three or more single letters (or leet symbols), each separated by spaces, dots,
# hyphens, underscores or asterisks: "g a m b l i n g", "b-e-t-t-i-n-g", "p.0.r.n".
_SPACED = re.compile(
    r"(?<![\w@$])(?:[^\W_]|[@$])(?:[ \t.\-_*·•]+(?:[^\W_]|[@$])){2,}(?![\w@$])"
)
_SPACED_SEP = re.compile(r"[ \t.\-_*·•]+")


def join_spaced_letters(text: str) -> str:
    """Join runs of at least three single characters split by spaces, dots or hyphens:
    ``g a m b l i n g`` -> ``gambling``. A run needs at least two letters, so "1 2 3"
    and "A-4" are untouched."""

    def join(match: re.Match[str]) -> str:
        run = match.group()
        if sum(ch.isalpha() for ch in run) < 2:
            return run
        return _SPACED_SEP.sub("", run)

    return _SPACED.sub(join, text)


def _normalize(text: str, *, leet: bool) -> str:
    text = fold_homoglyphs(strip_accents(nfkc_casefold(strip_zero_width(text))))
    text = join_spaced_letters(text)
    return fold_leetspeak(text) if leet else text


def normalize_text(text: str) -> str:
    """The full normalisation the filter matches on, in order: zero-width removal, NFKC +
    casefold, accent stripping, homoglyph folding, joining of spaced letters, leetspeak."""
    if not isinstance(text, str):
        raise TypeError(f"normalize_text() expects a str, got {type(text).__name__}")
    return _normalize(text, leet=True)


# --------------------------------------------------------------------------------------
# Policy files: loading, schema validation, term syntax.
# --------------------------------------------------------------------------------------


class PolicyError(ValueError):
    """A policy file is missing, unreadable, not YAML, or does not follow the schema.
    The message names the file and the offending key or field."""

    def __init__(self, path: str | os.PathLike[str], field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        super().__init__(f"invalid safety policy {where}{problem}")


TOP_LEVEL_KEYS = {"version", "description", "suffixes", "allow_contexts", "categories"}
CATEGORY_KEYS = {"description", "terms", "allow_contexts", "tlds"}
SUPPORTED_VERSIONS = {1}
_CATEGORY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LANG_CODE = re.compile(r"^[a-z]{2,3}$|^any$")
_MAX_EXPANSIONS = 2048


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (YAML silently keeps the last one,
    which would quietly drop half of a reviewed category)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


@dataclasses.dataclass(frozen=True)
class _Word:
    text: str
    star: bool  # followed by an optional suffix from the policy's suffix list


_TERM_TOKEN = re.compile(r"(?P<word>[^\W\d_]+)(?P<star>\*?)|(?P<punct>[()|?*])|(?P<sep>[\W_])")


def _parse_term(raw: str, path: str, field: str) -> tuple[tuple[_Word, ...], ...]:
    """Parse one term / allow-context into its expansions (each a tuple of words).

    Syntax (documented in the YAML header): words separated by spaces, hyphens or
    apostrophes; ``word*`` = the word plus an optional suffix from ``suffixes``;
    ``(a|b c|d*)`` = alternatives for one slot (each one or more words);
    ``(...)?`` = an optional slot. Groups do not nest."""
    if not isinstance(raw, str):
        raise PolicyError(path, field, f"expected a string, got {type(raw).__name__} {raw!r}")
    text = fold_homoglyphs(strip_accents(nfkc_casefold(strip_zero_width(raw)))).strip()
    if not text:
        raise PolicyError(path, field, "empty term")
    if any(ch.isdigit() for ch in text):
        raise PolicyError(path, field, f"term {raw!r} contains a digit; terms are letters only")

    def fail(problem: str) -> PolicyError:
        return PolicyError(path, field, f"term {raw!r}: {problem}")

    slots: list[list[tuple[_Word, ...]]] = []
    group: list[list[_Word]] | None = None  # alternatives of the open group
    last_closed = False
    for m in _TERM_TOKEN.finditer(text):
        if m.group("word"):
            word = _Word(m.group("word"), bool(m.group("star")))
            if group is None:
                slots.append([(word,)])
            else:
                group[-1].append(word)
            last_closed = False
            continue
        punct = m.group("punct")
        if punct is None:  # a separator
            last_closed = False
            continue
        if punct == "(":
            if group is not None:
                raise fail("groups '( )' cannot nest")
            group = [[]]
        elif punct == "|":
            if group is None:
                raise fail("'|' outside a group '( | )'")
            group.append([])
        elif punct == ")":
            if group is None:
                raise fail("')' without '('")
            if any(not alt for alt in group):
                raise fail("empty alternative in a group (use '(...)?' for an optional slot)")
            slots.append([tuple(alt) for alt in group])
            group = None
            last_closed = True
            continue
        elif punct == "?":
            if not last_closed:
                raise fail("'?' must directly follow ')'")
            slots[-1].append(())
        elif punct == "*":
            raise fail("'*' must directly follow a word")
        last_closed = False
    if group is not None:
        raise fail("unclosed '('")
    if not any(alt for slot in slots for alt in slot):
        raise PolicyError(path, field, f"term {raw!r} has no letters")
    total = 1
    for slot in slots:
        total *= len(slot)
    if total > _MAX_EXPANSIONS:
        raise fail(f"expands to {total} phrases (max {_MAX_EXPANSIONS})")
    expansions = {tuple(w for alt in combo for w in alt): None for combo in itertools.product(*slots)}
    expansions.pop((), None)
    return tuple(expansions)


@dataclasses.dataclass
class _Category:
    name: str
    description: str
    terms: list[tuple[str, tuple[tuple[_Word, ...], ...]]] = dataclasses.field(default_factory=list)
    tlds: set[str] = dataclasses.field(default_factory=set)
    sources: list[str] = dataclasses.field(default_factory=list)


def _load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(path, "", f"cannot read file ({exc})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(path, where, f"not valid YAML: {problem}") from None


def _string_list(value: Any, path: str, field: str, *, by_language: bool) -> list[tuple[str, str]]:
    """A list of strings, or (when ``by_language``) a mapping language -> list of strings.
    Returns ``(field_of_item, item)`` pairs."""
    out: list[tuple[str, str]] = []
    if isinstance(value, list):
        groups = [(field, value)]
    elif by_language and isinstance(value, dict):
        groups = []
        for lang, items in value.items():
            if not isinstance(lang, str) or not _LANG_CODE.match(lang):
                raise PolicyError(path, f"{field}.{lang}", "language keys must be ISO 639 codes such as en, fr, de (or 'any')")
            if not isinstance(items, list):
                raise PolicyError(path, f"{field}.{lang}", f"expected a list of strings, got {type(items).__name__}")
            groups.append((f"{field}.{lang}", items))
    else:
        expected = "a list of strings or a mapping of language -> list" if by_language else "a list of strings"
        raise PolicyError(path, field, f"expected {expected}, got {type(value).__name__}")
    for group_field, items in groups:
        for index, item in enumerate(items):
            item_field = f"{group_field}[{index}]"
            if not isinstance(item, str) or not item.strip():
                raise PolicyError(path, item_field, f"expected a non-empty string, got {item!r}")
            out.append((item_field, item))
    return out


def _validate(data: Any, path: str, *, base: bool, known_categories: Iterable[str]) -> dict[str, Any]:
    """Check a parsed policy document against the schema; return it unchanged."""
    if data is None:
        raise PolicyError(path, "", "file is empty")
    if not isinstance(data, dict):
        raise PolicyError(path, "", f"top level must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise PolicyError(path, str(key), f"unknown top-level key (allowed: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    version = data.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise PolicyError(path, "version", f"must be one of {sorted(SUPPORTED_VERSIONS)}, got {version!r}")
    if "description" in data and not isinstance(data["description"], str):
        raise PolicyError(path, "description", "must be a string")
    if "suffixes" in data:
        suffixes = data["suffixes"]
        if not isinstance(suffixes, list):
            raise PolicyError(path, "suffixes", f"expected a list of strings, got {type(suffixes).__name__}")
        for index, suffix in enumerate(suffixes):
            if not isinstance(suffix, str) or not re.fullmatch(r"[^\W\d_]+", suffix):
                raise PolicyError(path, f"suffixes[{index}]", f"a suffix is one or more letters, got {suffix!r}")
    elif base:
        raise PolicyError(path, "suffixes", "missing (the base policy must define the suffixes '*' stands for)")
    if "allow_contexts" in data:
        _string_list(data["allow_contexts"], path, "allow_contexts", by_language=True)
    categories = data.get("categories")
    if categories is None:
        if base:
            raise PolicyError(path, "categories", "missing")
        return data
    if not isinstance(categories, dict) or (base and not categories):
        raise PolicyError(path, "categories", "expected a non-empty mapping of category name -> category")
    known = set(known_categories)
    for name, category in categories.items():
        field = f"categories.{name}"
        if not isinstance(name, str) or not _CATEGORY_NAME.match(name):
            raise PolicyError(path, field, "category names are lower-case identifiers such as 'gambling'")
        if not isinstance(category, dict):
            raise PolicyError(path, field, f"expected a mapping with 'terms', got {type(category).__name__}")
        for key in category:
            if key not in CATEGORY_KEYS:
                raise PolicyError(path, f"{field}.{key}", f"unknown key (allowed: {', '.join(sorted(CATEGORY_KEYS))})")
        new = name not in known
        if "description" in category:
            if not isinstance(category["description"], str) or not category["description"].strip():
                raise PolicyError(path, f"{field}.description", "must be a non-empty string")
        elif base:
            raise PolicyError(path, f"{field}.description", "missing")
        if "terms" in category:
            if not _string_list(category["terms"], path, f"{field}.terms", by_language=True):
                raise PolicyError(path, f"{field}.terms", "has no terms")
        elif new:
            raise PolicyError(path, f"{field}.terms", "missing: a new category needs a list of terms")
        if "allow_contexts" in category:
            _string_list(category["allow_contexts"], path, f"{field}.allow_contexts", by_language=True)
        if "tlds" in category:
            for item_field, tld in _string_list(category["tlds"], path, f"{field}.tlds", by_language=False):
                if not re.fullmatch(r"[a-z][a-z0-9-]*", tld):
                    raise PolicyError(path, item_field, f"a TLD is lower-case letters, digits, hyphens, got {tld!r}")
    return data


# --------------------------------------------------------------------------------------
# Compilation: one trie-shaped regex for all terms.
# --------------------------------------------------------------------------------------

# Scripts written without spaces between words (Han, kana, Thai, Lao, Khmer, Myanmar): a
# term there cannot wait for a word boundary, so a match may start or end next to them.
_NO_SPACE = "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
# Not preceded (followed) by a letter; digits and punctuation are boundaries.
_LEFT = rf"(?:(?<![^\W\d_])|(?={_NO_SPACE})|(?<={_NO_SPACE}))"
_RIGHT = rf"(?:(?![^\W\d_])|(?<={_NO_SPACE})|(?={_NO_SPACE}))"
_SEP = r"[\W_]{0,5}"  # between the words of a phrase: spaces, hyphens... or nothing ("killshot")
_STAR, _SEP_ATOM, _END = "\x00*", "\x00 ", "\x00$"


def _atoms(words: tuple[_Word, ...]) -> list[str]:
    atoms: list[str] = []
    for index, word in enumerate(words):
        if index:
            atoms.append(_SEP_ATOM)
        atoms.extend(word.text)
        if word.star:
            atoms.append(_STAR)
    atoms.append(_END)
    return atoms


def _trie_regex(phrases: Iterable[tuple[_Word, ...]], suffix_re: str) -> str:
    trie: dict[str, Any] = {}
    for words in phrases:
        node = trie
        for atom in _atoms(words):
            node = node.setdefault(atom, {})

    def emit(node: dict[str, Any]) -> str:
        alternatives = []
        for atom in sorted(node, key=lambda a: (a == _END, a)):  # END last: prefer longer
            if atom == _END:
                alternatives.append("")  # the word boundary follows once, after the whole trie
                continue
            if atom == _STAR:
                head = f"(?:{suffix_re})?"
            elif atom == _SEP_ATOM:
                head = _SEP
            else:
                head = re.escape(atom)
            alternatives.append(head + emit(node[atom]))
        if len(alternatives) == 1:
            return alternatives[0]
        return "(?:" + "|".join(alternatives) + ")"

    if not trie:
        return r"(?!x)x"
    # One boundary after the trie instead of one per phrase end: the same matches (a failing
    # boundary backtracks into the next alternative), and the pattern compiles in a fraction of
    # the time (the boundary's character classes are large).
    return "(?:" + emit(trie) + ")" + _RIGHT


@functools.lru_cache(maxsize=4096)
def _phrase_regex(expansions: tuple[tuple[_Word, ...], ...], suffix_re: str) -> re.Pattern[str]:
    return re.compile(_trie_regex(expansions, suffix_re))


@dataclasses.dataclass(frozen=True)
class SafetyVerdict:
    """The outcome of a check. ``matched`` is the matched (normalised) text, ``term`` the
    policy term it matched; both are None when nothing was blocked."""

    blocked: bool
    category: str | None
    reason: str
    matched: str | None
    term: str | None = None
    #: Which layer decided a block: "rules", "classifier" or "moderation" (None when allowed).
    layer: str | None = None
    #: The classifier's P(blocked) when it ran (None when the rules decided first).
    p_blocked: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "blocked": bool(self.blocked),
            "category": None if self.category is None else str(self.category),
            "reason": str(self.reason),
            "matched": None if self.matched is None else str(self.matched),
            "term": None if self.term is None else str(self.term),
            "layer": self.layer,
            "p_blocked": None if self.p_blocked is None else round(float(self.p_blocked), 4),
        }


@dataclasses.dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    category: str
    text: str


class SafetyFilter:
    """Word-boundary policy matcher over normalised text.

    ``SafetyFilter()`` loads the shipped policy; ``policy`` replaces it with another
    base file; ``extra_policies`` are merged on top (extra terms, allow-contexts, TLDs,
    suffixes, or whole new categories). Any malformed file raises :class:`PolicyError`.
    """

    def __init__(
        self,
        extra_policies: Sequence[str | os.PathLike[str]] = (),
        *,
        policy: str | os.PathLike[str] | None = None,
        classifier: "SafetyClassifier | None | str" = "shipped",
        moderator: "Moderator | None" = None,
    ) -> None:
        if isinstance(extra_policies, (str, os.PathLike)):
            extra_policies = [extra_policies]
        base_path = Path(policy) if policy is not None else _shipped_policy_path()
        if classifier == "shipped":
            from domain_eval.safety_model import default_classifier

            classifier = default_classifier()
        elif isinstance(classifier, str):
            raise ValueError(f"classifier: expected 'shipped', None or a SafetyClassifier, got {classifier!r}")
        self.classifier = classifier
        self.moderator = moderator
        self.policy_files: list[str] = []
        self._categories: dict[str, _Category] = {}
        self._allow: list[tuple[str, tuple[tuple[_Word, ...], ...]]] = []
        self._suffixes: set[str] = set()
        self._merge(base_path, base=True)
        if policy is None:  # the shipped multilingual lexicon belongs to the shipped policy
            self._merge(_shipped_lexicon_path(), base=False)
        for extra in extra_policies:
            self._merge(Path(extra), base=False)
        self._compile()

    # ---- loading -------------------------------------------------------------------
    def _merge(self, path: Path, *, base: bool) -> None:
        label = str(path)
        data = _validate(_load_yaml(path), label, base=base, known_categories=self._categories)
        self._suffixes.update(s.casefold() for s in data.get("suffixes", []))
        for field, item in _string_list(data.get("allow_contexts", []), label, "allow_contexts", by_language=True):
            self._allow.append((item, _parse_term(item, label, field)))
        for name, spec in (data.get("categories") or {}).items():
            category = self._categories.get(name)
            if category is None:
                category = self._categories[name] = _Category(name, spec.get("description", name).strip())
            elif "description" in spec:
                category.description = spec["description"].strip()
            category.sources.append(label)
            prefix = f"categories.{name}"
            for field, item in _string_list(spec.get("terms", []), label, f"{prefix}.terms", by_language=True):
                category.terms.append((item, _parse_term(item, label, field)))
            for field, item in _string_list(
                spec.get("allow_contexts", []), label, f"{prefix}.allow_contexts", by_language=True
            ):
                self._allow.append((item, _parse_term(item, label, field)))
            category.tlds.update(spec.get("tlds", []))
        self.policy_files.append(label)

    def _compile(self) -> None:
        suffix_re = "|".join(re.escape(s) for s in sorted(self._suffixes, key=lambda s: (-len(s), s)))
        suffix_re = suffix_re or r"(?!x)x"
        self._suffix_re = suffix_re
        all_phrases: list[tuple[_Word, ...]] = []
        self._category_res: dict[str, re.Pattern[str]] = {}
        self._term_res: dict[str, list[tuple[str, tuple[tuple[_Word, ...], ...]]]] = {}
        for name, category in self._categories.items():
            phrases = [p for _, expansions in category.terms for p in expansions]
            all_phrases.extend(phrases)
            self._category_res[name] = re.compile(_LEFT + _trie_regex(phrases, suffix_re))
            self._term_res[name] = category.terms  # compiled on demand, only to explain a hit
        self._locator = re.compile(_LEFT + _trie_regex(all_phrases, suffix_re))
        allow_phrases = [p for _, expansions in self._allow for p in expansions]
        # Lookahead capture: every start position, so overlapping allow-contexts are all found.
        self._allow_re = re.compile(_LEFT + "(?=(" + _trie_regex(allow_phrases, suffix_re) + "))")
        self._allow_terms = self._allow  # compiled on demand, only to explain a suppressed hit
        self._tlds = {tld: name for name, c in self._categories.items() for tld in c.tlds}

    # ---- introspection ---------------------------------------------------------------
    @property
    def version(self) -> str:
        """Identity of every layer: a changed policy, classifier or moderator changes verdicts,
        so it is part of what a baseline's scores depend on."""
        digest = hashlib.sha256()
        for label in self.policy_files:
            digest.update(Path(label).read_bytes())
        parts = [f"policy-{digest.hexdigest()[:12]}"]
        parts.append(self.classifier.version if self.classifier is not None else "no-classifier")
        if self.moderator is not None:
            parts.append(self.moderator.version)
        return "+".join(parts)

    @property
    def categories(self) -> dict[str, str]:
        """Category name -> description, in policy order."""
        return {name: c.description for name, c in self._categories.items()}

    def terms(self, category: str) -> list[str]:
        """The policy terms of ``category`` as written in the policy files."""
        return [raw for raw, _ in self._categories[category].terms]

    @property
    def allow_contexts(self) -> list[str]:
        return [raw for raw, _ in self._allow]

    # ---- matching --------------------------------------------------------------------
    def _first_hit(self, text: str) -> tuple[_Hit | None, tuple[_Hit, str] | None]:
        """(first hit not inside an allow-context, first suppressed hit and its context)."""
        allow_spans: list[tuple[int, int]] | None = None
        starts: list[int] = []
        max_end: list[int] = []
        suppressed: tuple[_Hit, str] | None = None
        pos = 0
        while True:
            located = self._locator.search(text, pos)
            if located is None:
                return None, suppressed
            p = located.start()
            hits = []
            for name, pattern in self._category_res.items():
                m = pattern.match(text, p)
                if m and m.end() > p:
                    hits.append(_Hit(p, m.end(), name, m.group()))
            hits.sort(key=lambda h: h.start - h.end)  # longest first
            if hits and allow_spans is None:
                allow_spans = sorted(
                    (m.start(1), m.end(1)) for m in self._allow_re.finditer(text) if m.end(1) > m.start(1)
                )
                starts = [s for s, _ in allow_spans]
                running = -1
                for _, end in allow_spans:
                    running = max(running, end)
                    max_end.append(running)
            for hit in hits:
                index = bisect.bisect_right(starts, hit.start) - 1
                if index >= 0 and max_end[index] >= hit.end:
                    if suppressed is None:
                        suppressed = (hit, self._allow_context_at(text, hit))
                    continue
                return hit, suppressed
            pos = p + 1

    def _allow_context_at(self, text: str, hit: _Hit) -> str:
        """The allow-context (as written in the policy) that covers ``hit``."""
        for m in self._allow_re.finditer(text, max(0, hit.start - 200)):
            start, end = m.start(1), m.end(1)
            if start > hit.start:
                break
            if end >= hit.end:
                for raw, expansions in self._allow_terms:
                    found = _phrase_regex(expansions, self._suffix_re).match(text, start)
                    if found and found.end() >= hit.end:
                        return raw
        return "?"

    def _term_for(self, hit: _Hit) -> str:
        terms = self._term_res[hit.category]
        for raw, expansions in terms:
            m = _phrase_regex(expansions, self._suffix_re).match(hit.text)
            if m and m.end() == len(hit.text):
                return raw
        for raw, expansions in terms:  # a shorter expansion matched
            if _phrase_regex(expansions, self._suffix_re).match(hit.text):
                return raw
        return hit.text

    def _verdict_for(self, text: str, *, what: str = "text") -> tuple[SafetyVerdict | None, str | None]:
        """(blocked verdict or None, note about a match that an allow-context suppressed).

        Two variants are checked: with and without leetspeak folding, so folding can
        never hide a literal term (``info@casino.example`` would become ``infoacasino``)."""
        variants = [_normalize(text, leet=True)]
        plain = _normalize(text, leet=False)
        if plain != variants[0]:
            variants.append(plain)
        suppressed_note = None
        for variant in variants:
            hit, suppressed = self._first_hit(variant)
            if hit is not None:
                term = self._term_for(hit)
                desc = self._categories[hit.category].description
                return SafetyVerdict(
                    True,
                    hit.category,
                    f"blocked: {hit.category} ({desc}): {what} matched {hit.text!r} (policy term {term!r})",
                    hit.text,
                    term,
                    layer="rules",
                ), None
            if suppressed is not None and suppressed_note is None:
                s_hit, context = suppressed
                suppressed_note = (
                    f"{s_hit.text!r} ({s_hit.category}) occurs only inside the allow-context {context!r}"
                )
        return None, suppressed_note

    def check(self, text: str) -> SafetyVerdict:
        """Check a business description (or any text)."""
        if not isinstance(text, str):
            raise TypeError(f"SafetyFilter.check() expects a str, got {type(text).__name__}")
        if not text.strip() or not strip_zero_width(text).strip():
            return SafetyVerdict(False, None, "allowed: empty text, nothing to check", None)
        verdict, note = self._verdict_for(text)
        prediction = self.classifier.predict(text) if self.classifier is not None else None
        p_blocked = prediction.p_blocked if prediction is not None else None
        if verdict is not None:
            if prediction is None or p_blocked >= self.classifier.veto:
                return dataclasses.replace(verdict, p_blocked=p_blocked)
            # A term in a counter-harm or innocent context ("exit programme for women leaving
            # sex work", "phishing? no, fishing!"): the classifier, trained on such near-misses,
            # overrules the term only when it is confident; the reason keeps both.
            note = (f"policy term {verdict.term!r} matched {verdict.matched!r} ({verdict.category}), but the "
                    f"classifier reads a near-miss: P(blocked) = {p_blocked:.2f} < veto {self.classifier.veto:.2f}")
        reason = f"allowed: {note}" if note else "allowed: no policy term matched"
        if prediction is not None:
            if prediction.blocked:
                return self._classifier_block(
                    prediction, f"the classifier gives P(blocked) = {prediction.p_blocked:.2f} >= "
                    f"{prediction.threshold:.2f} (no policy term matched)")
            reason += f"; classifier P(blocked) = {prediction.p_blocked:.2f} < {prediction.threshold:.2f}"
        if self.moderator is not None:
            moderated = self.moderator.check(text)  # raises ModerationError: never silently allowed
            if moderated.blocked:
                return dataclasses.replace(moderated, p_blocked=p_blocked)
            reason += f"; {moderated.reason.removeprefix('allowed: ')}"
        return SafetyVerdict(False, None, reason, None, p_blocked=p_blocked)

    def _classifier_block(self, prediction: "Prediction", why: str) -> SafetyVerdict:
        category = self._categories.get(prediction.category)
        described = f" ({category.description})" if category else ""
        return SafetyVerdict(True, prediction.category, f"blocked: {prediction.category}{described}: {why}",
                             None, None, layer="classifier", p_blocked=prediction.p_blocked)

    def check_domain(self, domain: str) -> SafetyVerdict:
        """Check a domain name: each label is read as-is (hyphens as spaces, so concatenated
        multi-word terms like ``vapeshop`` match) and segmented into words with
        :func:`domain_eval.text.segment_label` (``xxxcasino`` -> ``xxx casino``); the
        public suffix is checked against the policy's TLD lists (``.casino``, ``.xxx``)."""
        if not isinstance(domain, str):
            raise TypeError(f"SafetyFilter.check_domain() expects a str, got {type(domain).__name__}")
        cleaned = strip_zero_width(domain).strip().casefold().rstrip(".")
        if not cleaned:
            return SafetyVerdict(False, None, "allowed: empty domain, nothing to check", None)
        name_labels, suffix = _split_labels(cleaned)
        if suffix:
            last = suffix.rsplit(".", 1)[-1]
            if last in self._tlds:
                category = self._tlds[last]
                desc = self._categories[category].description
                return SafetyVerdict(
                    True, category, f"blocked: {category} ({desc}): top-level domain '.{last}'", f".{last}", f".{last}",
                    layer="rules",
                )
        from domain_eval.text import segment_label

        note = None
        for label in name_labels:
            readings = [label.replace("-", " ")]
            leet_label = fold_leetspeak(label)
            for candidate in dict.fromkeys((label, leet_label)):
                segmented = " ".join(segment_label(candidate))
                if segmented:
                    readings.append(segmented)
            for reading in dict.fromkeys(readings):
                what = f"domain label {label!r}" + (f" read as {reading!r}" if reading != label else "")
                verdict, suppressed = self._verdict_for(reading, what=what)
                if verdict is not None:
                    return verdict
                note = note or suppressed
        reason = f"allowed: {note}" if note else "allowed: no policy term in the domain's words"
        reading = read_domain(cleaned)
        if self.classifier is not None and reading:
            # A domain is a description too: the same learned layer reads its words, with its
            # own threshold (two or three words carry less evidence than a description).
            prediction = self.classifier.predict(reading)
            if prediction.p_blocked >= self.classifier.domain_threshold:
                return self._classifier_block(
                    prediction, f"domain read as {reading!r}: the classifier gives P(blocked) = "
                    f"{prediction.p_blocked:.3f} >= {self.classifier.domain_threshold:.3f}")
        return SafetyVerdict(False, None, reason, None)

    def filter_domains(self, domains: Iterable[str]) -> tuple[list[str], list[tuple[str, SafetyVerdict]]]:
        """Split ``domains`` into (kept, dropped); each dropped entry carries its verdict."""
        kept: list[str] = []
        dropped: list[tuple[str, SafetyVerdict]] = []
        for domain in domains:
            verdict = self.check_domain(domain)
            if verdict.blocked:
                dropped.append((domain, verdict))
            else:
                kept.append(domain)
        return kept, dropped


def read_domain(domain: str) -> str:
    """A domain's name labels as words (``xxxcasino.com`` -> ``xxx casino``): what the
    classifier reads. Leetspeak is folded first (``c4sino``)."""
    from domain_eval.text import segment_label

    cleaned = strip_zero_width(domain).strip().casefold().rstrip(".")
    labels, _ = _split_labels(cleaned)
    return " ".join(" ".join(segment_label(fold_leetspeak(label))) or label.replace("-", " ") for label in labels)


def _split_labels(domain: str) -> tuple[list[str], str]:
    """(labels before the public suffix, suffix); tolerant of invalid domains."""
    from domain_eval.domains import InvalidDomain, split_domain

    try:
        name, suffix = split_domain(domain)
        return [name], suffix
    except (InvalidDomain, ValueError):
        pass
    labels = [label for label in domain.split(".") if label]
    if len(labels) >= 2:
        return labels[:-1], labels[-1]
    return labels, ""


def _shipped_policy_path() -> Path:
    return Path(str(resources.files("domain_eval").joinpath("data/safety_policy.yaml")))


def _shipped_lexicon_path() -> Path:
    return Path(str(resources.files("domain_eval").joinpath("data/safety_lexicon.yaml")))


@functools.lru_cache(maxsize=16)
def _cached_filter(extra_policies: tuple[str, ...]) -> SafetyFilter:
    return SafetyFilter(extra_policies=list(extra_policies))


def default_filter(extra_policies: Sequence[str | os.PathLike[str]] = ()) -> SafetyFilter:
    """A cached :class:`SafetyFilter` (the YAML is parsed once per set of policy files).
    Edits to a policy file after the first call are not seen by the cached instance."""
    return _cached_filter(tuple(str(p) for p in extra_policies))


def check(text: str) -> SafetyVerdict:
    """``default_filter().check(text)``."""
    return default_filter().check(text)


def check_domain(domain: str) -> SafetyVerdict:
    """``default_filter().check_domain(domain)``."""
    return default_filter().check_domain(domain)


def filter_domains(domains: Iterable[str]) -> tuple[list[str], list[tuple[str, SafetyVerdict]]]:
    """``default_filter().filter_domains(domains)``."""
    return default_filter().filter_domains(domains)


# --------------------------------------------------------------------------------------
# CLI: domain-eval safety "TEXT" [--json] [--domain] [--safety-policy PATH ...]
# --------------------------------------------------------------------------------------


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "safety",
        help="check a text (or a domain) against the safety policy",
        description=(
            "Check TEXT against the safety policy and print the verdict. "
            f"Exit status: {EXIT_OK} allowed, {EXIT_BLOCKED} blocked, {EXIT_BAD_POLICY} bad policy file, classifier files or moderation error."
        ),
    )
    parser.add_argument("text", metavar="TEXT", help="business description (or a domain with --domain)")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.add_argument(
        "--domain", action="store_true", help="treat TEXT as a domain name and segment its labels into words"
    )
    parser.add_argument(
        "--safety-policy",
        dest="safety_policies",
        action="append",
        default=[],
        metavar="PATH",
        help="extra policy YAML merged on top of the shipped one (repeatable)",
    )
    parser.add_argument(
        "--safety", choices=("local", "groq"), default="local",
        help="local: policy rules, then the shipped classifier (default); groq: then an LLM moderation model "
        "(needs GROQ_API_KEY)",
    )
    parser.add_argument("--safety-model", default=None, help="moderation model for --safety groq")
    parser.set_defaults(func=run_cli)
    return parser


def run_cli(args: argparse.Namespace) -> int:
    from domain_eval.config import EvalOptions, make_safety_filter
    from domain_eval.safety_llm import ModerationError
    from domain_eval.safety_model import ClassifierError

    options = EvalOptions(safety_policies=args.safety_policies, safety=args.safety, safety_model=args.safety_model)
    try:
        safety = make_safety_filter(options)
        verdict = safety.check_domain(args.text) if args.domain else safety.check(args.text)
    except (PolicyError, ClassifierError, ModerationError) as exc:
        print(f"domain-eval safety: error: {exc}", file=sys.stderr)
        return EXIT_BAD_POLICY
    if args.json:
        print(json.dumps(verdict.to_dict(), ensure_ascii=False))
    else:
        status = "BLOCKED" if verdict.blocked else "ALLOWED"
        reason = verdict.reason.split(": ", 1)[1] if verdict.reason.startswith(("blocked: ", "allowed: ")) else verdict.reason
        print(f"{status}: {reason}")
    return EXIT_BLOCKED if verdict.blocked else EXIT_OK
