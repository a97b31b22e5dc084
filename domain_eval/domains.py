"""Extract, normalise and validate domain names from noisy model output.

Validation is IDNA 2008 (the ``idna`` package), never Python's built-in ``idna``
codec, which is IDNA 2003 and accepts ``-bakery.co``, ``ab--cd.com`` and
``thelondon's.io``. Suffixes are checked against tldextract's bundled public
suffix snapshot, so no network is touched.
"""
from __future__ import annotations

import functools
import re
import unicodedata

import idna

__all__ = [
    "InvalidDomain",
    "normalize_domain",
    "extract_domains",
    "is_valid_domain",
    "split_domain",
    "strip_invisible",
]

# Zero-width and other invisible format characters that models (and copy/paste) leak.
_INVISIBLE = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e"), None
)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
# Separators between candidates: whitespace, list/markdown/JSON punctuation. The apostrophe is
# deliberately *not* a separator: splitting ``thelondon's.io`` would yield the valid but wrong ``s.io``.
_SEPARATORS = re.compile(r"[\s,;|<>()\[\]{}\"“”«»`*]+")
_EDGE_PUNCT = "'‘’.:!?#•·…"
_LDH = re.compile(r"^[a-z0-9-]+$")


class InvalidDomain(ValueError):
    """A candidate that is not a valid, registrable domain name; the message says why."""

    def __init__(self, candidate: str, reason: str) -> None:
        super().__init__(f"invalid domain {candidate!r}: {reason}")
        self.candidate = candidate
        self.reason = reason


@functools.lru_cache(maxsize=1)
def _extractor():
    import tldextract

    # suffix_list_urls=() => bundled snapshot only, never the network; cache_dir=None => no disk writes.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def strip_invisible(text: str) -> str:
    """Remove zero-width and soft-hyphen characters."""
    return text.translate(_INVISIBLE)


def _encode_label(label: str, candidate: str) -> str:
    if not label:
        raise InvalidDomain(candidate, "empty label (two dots in a row, or a leading dot)")
    if label.isascii():
        if not _LDH.match(label):
            bad = sorted({c for c in label if not re.match(r"[a-z0-9-]", c)})
            raise InvalidDomain(candidate, f"label {label!r} contains characters not allowed in a domain: {''.join(bad)!r}")
        if label.startswith("-") or label.endswith("-"):
            raise InvalidDomain(candidate, f"label {label!r} starts or ends with a hyphen")
        if label[2:4] == "--":
            if not label.startswith("xn--"):
                raise InvalidDomain(candidate, f"label {label!r} has '--' in positions 3-4 (reserved for xn--)")
            try:  # an A-label must decode to a valid U-label
                idna.decode(label)
            except idna.IDNAError as exc:
                raise InvalidDomain(candidate, f"label {label!r} is not a valid punycode label ({exc})") from None
        ascii_label = label
    else:
        try:
            ascii_label = idna.encode(label, uts46=False).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidDomain(candidate, f"label {label!r} is not valid IDNA 2008 ({exc})") from None
    if len(ascii_label) > 63:
        raise InvalidDomain(candidate, f"label {label!r} is {len(ascii_label)} characters long (max 63)")
    return ascii_label


def normalize_domain(candidate: str) -> str:
    """Return the canonical ASCII (punycode) form of ``candidate`` or raise :class:`InvalidDomain`.

    Rules: lowercase; labels of 1-63 letters/digits/hyphens (IDNA 2008 for non-ASCII);
    no leading/trailing hyphen; no ``--`` in positions 3-4 except ``xn--``; total length
    at most 253; the suffix is a real public suffix; exactly one label before it (a
    registrable name, not a sub-domain).
    """
    if not isinstance(candidate, str):
        raise TypeError(f"domain must be a str, got {type(candidate).__name__}")
    raw = candidate
    text = unicodedata.normalize("NFC", candidate.strip()).lower().rstrip(".")
    if not text:
        raise InvalidDomain(raw, "empty")
    if strip_invisible(text) != text:
        raise InvalidDomain(raw, "contains invisible (zero-width) characters")
    if any(c.isspace() for c in text):
        raise InvalidDomain(raw, "contains whitespace")
    labels = text.split(".")
    if len(labels) < 2:
        raise InvalidDomain(raw, "no top-level domain (expected name.tld)")
    ascii_labels = [_encode_label(label, raw) for label in labels]
    ascii_domain = ".".join(ascii_labels)
    if len(ascii_domain) > 253:
        raise InvalidDomain(raw, f"{len(ascii_domain)} characters long (max 253)")
    parts = _extractor()(ascii_domain)
    if not parts.suffix:
        raise InvalidDomain(raw, f"'.{labels[-1]}' is not a known public suffix")
    if not parts.domain:
        raise InvalidDomain(raw, f"'{ascii_domain}' is only a public suffix, with no name before it")
    if parts.subdomain:
        raise InvalidDomain(raw, f"has a sub-domain '{parts.subdomain}'; expected a registrable name.tld")
    return ascii_domain


def is_valid_domain(candidate: str) -> bool:
    try:
        normalize_domain(candidate)
    except (InvalidDomain, TypeError):
        return False
    return True


def split_domain(domain: str) -> tuple[str, str]:
    """``("organiccoffee", "co.uk")`` for ``organiccoffee.co.uk`` (after normalisation)."""
    ascii_domain = normalize_domain(domain)
    parts = _extractor()(ascii_domain)
    return parts.domain, parts.suffix


def _clean_token(token: str) -> str:
    token = _SCHEME.sub("", token.strip(_EDGE_PUNCT))
    token = re.split(r"[/?#]", token, maxsplit=1)[0]  # path, query, fragment
    token = re.sub(r":\d+$", "", token)  # port
    token = token.strip(_EDGE_PUNCT)
    if token.lower().startswith("www."):
        token = token[4:]
    return token


_LIST_MARKER = re.compile(r"^\d+[.)]")


def _strip_list_marker(token: str) -> str:
    """``1.bar.org`` -> ``bar.org``, ``2)foo.com`` -> ``foo.com``; ``3.com`` is left alone."""
    match = _LIST_MARKER.match(token)
    if match and (token.endswith(")") or "." in token[match.end():] or token[match.end() - 1] == ")"):
        return token[match.end():]
    return token


def extract_domains(text: str) -> list[str]:
    """Valid, normalised, de-duplicated domains found in ``text``, in order of appearance.

    Handles markdown bullets/bold, numbered lists, quotes, backticks, JSON arrays,
    URLs with scheme/www/path, stray ``#`` and zero-width characters. Invalid
    candidates are dropped (use :func:`normalize_domain` to learn why).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = strip_invisible(unicodedata.normalize("NFC", text))
    seen: dict[str, None] = {}
    for token in _SEPARATORS.split(text):
        token = _clean_token(_strip_list_marker(token))
        if "." not in token:
            continue
        try:
            seen.setdefault(normalize_domain(token), None)
        except InvalidDomain:
            continue
    return list(seen)
