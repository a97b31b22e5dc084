"""What makes a set of suggested names degenerate, shared by decoding and the data checks.

Raters score degenerate names 1-3 (the judge issue's measurements): a doubled label
(``mathmath``), a word joined to itself (``paintandpaint``, ``pulse-pulse``), and one name
offered under several TLDs (``pumpandamp.com/.co/.io``). These checks are string rules, so
they stay cheap, deterministic and free of heavy imports.
"""
from __future__ import annotations

import re

from .domains import split_domain

# A piece of 3+ letters joined to itself by a connector: paintandpaint, chicken-n-chicken,
# pulse-pulse, and 4+ letters with no connector (yogayogastudio). Connectors seen in model
# outputs and in 5 languages. Three letters with no connector would hit mississippi.
_SELF_JOIN = re.compile(r"([a-z]{3,})(?:and|n|y|et|und|e|en|-n-|-and-|-)\1|([a-z]{4,})\2")


def name_key(domain: str) -> str:
    """The name a TLD variant shares: ``pump-amp.co.uk`` -> ``pumpamp``."""
    label, _suffix = split_domain(domain)
    return label.replace("-", "")


def degenerate_reason(domain: str) -> str | None:
    """Why ``domain`` is a degenerate name, or None. ``domain`` must already be valid."""
    label, _suffix = split_domain(domain)
    letters = label.replace("-", "")
    half = len(letters) // 2
    if len(letters) >= 4 and len(letters) % 2 == 0 and letters[:half] == letters[half:]:
        return f"doubled label {label!r}"
    match = _SELF_JOIN.search(label)
    if match:
        return f"{match.group(1) or match.group(2)!r} joined to itself in {label!r}"
    parts = [p for p in label.split("-") if p]
    if len(parts) != len(set(parts)):
        return f"repeated hyphen part in {label!r}"
    return None


def tld_variant_excess(domains: list[str], limit: int = 1) -> list[str]:
    """Names beyond ``limit`` that repeat an earlier name under another TLD, in order."""
    seen: dict[str, int] = {}
    excess: list[str] = []
    for d in domains:
        key = name_key(d)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > limit:
            excess.append(d)
    return excess
