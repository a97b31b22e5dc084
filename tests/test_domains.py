"""Table-driven tests for domain extraction, normalisation and validation, plus confidence."""
from __future__ import annotations

import pytest

from domain_eval.confidence import confidence
from domain_eval.domains import InvalidDomain, extract_domains, is_valid_domain, normalize_domain, split_domain

VALID = [
    ("OrganicCoffee.com", "organiccoffee.com"),
    ("beanhub.io", "beanhub.io"),
    ("brew.co.uk", "brew.co.uk"),
    ("tokyo-sushi.co.jp", "tokyo-sushi.co.jp"),
    ("münchen.de", "xn--mnchen-3ya.de"),
    ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
    ("3.com", "3.com"),
    ("coffee.com.", "coffee.com"),
    ("a" * 63 + ".com", "a" * 63 + ".com"),
]

INVALID = [
    ("-bakery.co", "starts or ends with a hyphen"),
    ("bakery-.co", "starts or ends with a hyphen"),
    ("ab--cd.com", "positions 3-4"),
    ("thelondon's.io", "characters not allowed"),
    ("coffee.notatld", "not a known public suffix"),
    ("co.uk", "only a public suffix"),
    ("shop.coffee.com", "sub-domain"),
    ("a" * 64 + ".com", "max 63"),
    ("coffee", "no top-level domain"),
    ("french\u200b-bistro.co", "invisible"),
    ("coffee shop.com", "whitespace"),
    ("coffee..com", "empty label"),
    ("xn--zz.com", "punycode"),
    ("caf_e.com", "characters not allowed"),
    ("", "empty"),
]


@pytest.mark.parametrize("raw, expected", VALID)
def test_normalize_valid(raw: str, expected: str) -> None:
    assert normalize_domain(raw) == expected
    assert is_valid_domain(raw)


@pytest.mark.parametrize("raw, reason", INVALID)
def test_normalize_invalid_says_why(raw: str, reason: str) -> None:
    with pytest.raises(InvalidDomain, match=reason) as info:
        normalize_domain(raw)
    assert isinstance(info.value, ValueError)
    assert not is_valid_domain(raw)


def test_builtin_idna_2003_codec_would_accept_what_we_reject() -> None:
    # Python's codec is IDNA 2003: it lets these through, which is why we must not use it.
    for bad in ("-bakery", "ab--cd"):
        assert bad.encode("idna")
        assert not is_valid_domain(bad + ".com")


EXTRACT = [
    ("1. **OrganicCoffee.com**\n2. beanhub.io", ["organiccoffee.com", "beanhub.io"]),
    ("- `brew.co`\n* 'roast.net'\n+ \"cup.org\"", ["brew.co", "roast.net", "cup.org"]),
    ("https://www.brewly.com/menu?x=1 and http://roast.io:8080/", ["brewly.com", "roast.io"]),
    ('{"domains": ["a-cafe.com", "b.co.uk"]}', ["a-cafe.com", "b.co.uk"]),
    ('["x.com","x.com","X.COM"]', ["x.com"]),
    ("#lawfirm.io\n #lawyer.co", ["lawfirm.io", "lawyer.co"]),
    ("french\u200b-bistro.co and caf\u00e9\ufeff.fr", ["french-bistro.co", "xn--caf-dma.fr"]),
    ("thelondon's.io, -bakery.co, ab--cd.com, fine.com", ["fine.com"]),
    ("Try coffee.com. Or tea.io!", ["coffee.com", "tea.io"]),
    ("1.bar.org 2)foo.net", ["bar.org", "foo.net"]),
    ("no domains here, just e.g. words", []),
    ("", []),
]


@pytest.mark.parametrize("text, expected", EXTRACT)
def test_extract_domains(text: str, expected: list[str]) -> None:
    assert extract_domains(text) == expected


def test_split_domain_uses_public_suffix_list() -> None:
    assert split_domain("organiccoffee.co.uk") == ("organiccoffee", "co.uk")
    assert split_domain("Sushi.CO.JP") == ("sushi", "co.jp")


@pytest.mark.parametrize(
    "domain, description, low, high",
    [
        ("coffeeshop.com", "coffee shop", 0.99, 1.0),
        ("organiccoffeepdx.com", "organic coffee shop in Portland", 0.7, 1.0),
        ("xkqz.com", "organic coffee shop in Portland", 0.0, 0.55),
        ("thelondon's.io", "a London tea room", 0.0, 0.0),
    ],
)
def test_confidence_spans_the_whole_range(domain: str, description: str, low: float, high: float) -> None:
    assert low <= confidence(domain, description) <= high


def test_confidence_understands_concatenated_labels() -> None:
    desc = "organic coffee shop in downtown Portland"
    assert confidence("organiccoffeepdx.com", desc) > confidence("zumbafit.com", desc)
