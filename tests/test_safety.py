"""Tests for domain_eval.safety: normalisation steps, policy schema, matching, domains, CLI."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from domain_eval import safety
from domain_eval.safety import (
    PolicyError,
    SafetyFilter,
    SafetyVerdict,
    default_filter,
    fold_homoglyphs,
    fold_leetspeak,
    join_spaced_letters,
    nfkc_casefold,
    normalize_text,
    strip_accents,
    strip_zero_width,
)

DATA = Path(__file__).parent / "data"
LABELLED = DATA / "safety_labelled.yaml"
REQUIRED_CATEGORIES = {
    "sexual",
    "gambling",
    "drugs",
    "weapons",
    "hate",
    "violence",
    "fraud",
    "cybercrime",
    "exploitation",
    "self_harm",
}
LANGUAGES = {"en", "fr", "de", "es", "it"}


@pytest.fixture(scope="module")
def sf() -> SafetyFilter:
    return default_filter()


def _load_cases() -> list[dict]:
    return yaml.safe_load(LABELLED.read_text(encoding="utf-8"))["cases"]


# --------------------------------------------------------------------------- labelled set


def test_labelled_set_is_large_and_varied():
    cases = _load_cases()
    kinds = Counter(c["kind"].split("-")[0] for c in cases)
    labels = Counter(c["label"] for c in cases)
    assert len(cases) >= 80
    assert labels["blocked"] >= 40 and labels["allowed"] >= 40, labels
    for kind in ("plain", "obfuscated", "multilingual", "near", "legit", "ordinary", "non"):
        assert kinds[kind] >= 5, f"too few {kind!r} cases: {kinds}"
    langs = {c["kind"].rsplit("-", 1)[1] for c in cases if c["kind"].startswith(("multilingual-", "non-english-"))}
    assert LANGUAGES - {"en"} <= langs, langs
    for case in cases:
        assert case["label"] in {"blocked", "allowed"}, case
        if case["label"] == "blocked":
            assert case["category"] in REQUIRED_CATEGORIES | {"age_restricted"}, case


def test_labelled_set_precision_and_recall(sf):
    cases = _load_cases()
    tp = fp = tn = fn = 0
    wrong = []
    for case in cases:
        verdict = sf.check(case["text"])
        expected = case["label"] == "blocked"
        if expected and verdict.blocked:
            tp += 1
        elif expected:
            fn += 1
            wrong.append(f"  FN  {case['text']!r} (expected {case['category']}): {verdict.reason}")
        elif verdict.blocked:
            fp += 1
            wrong.append(f"  FP  {case['text']!r}: {verdict.reason}")
        else:
            tn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    matrix = (
        "confusion matrix (rows: label, columns: verdict)\n"
        f"                 blocked  allowed\n"
        f"  label blocked  {tp:7d}  {fn:7d}\n"
        f"  label allowed  {fp:7d}  {tn:7d}\n"
    )
    report = f"{len(cases)} cases: precision={precision:.3f} recall={recall:.3f}\n{matrix}" + "\n".join(wrong)
    print(report)
    assert precision >= 0.95 and recall >= 0.95, report


def test_labelled_set_categories(sf):
    hits = wrong = 0
    mismatches = []
    for case in _load_cases():
        if case["label"] != "blocked":
            continue
        verdict = sf.check(case["text"])
        if not verdict.blocked:
            continue
        hits += 1
        if verdict.category != case["category"]:
            wrong += 1
            mismatches.append(f"  {case['text']!r}: expected {case['category']}, got {verdict.category}")
    accuracy = 1 - wrong / hits
    print(f"category accuracy on {hits} true positives: {accuracy:.3f}")
    assert accuracy >= 0.95, "\n".join(mismatches)


# --------------------------------------------------------------------------- the named cases


@pytest.mark.parametrize(
    "text",
    [
        "helping people feel better",
        "Essex",
        "skills",
        "alphabet",
        "therapist",
        "Scunthorpe",
        "cocktail bar",
        "shooting star photography",
        "pharmacy",
        "drugstore",
        "gun-metal grey paint",
        "wine bar",
        "craft brewery",
        "martial arts school",
        "hunting lodge",
        "401k retirement",
        "7 eleven",
        "open 24/7",
        "adult education",
        "adult day care",
        "escort vehicle",
        "drug rehabilitation",
        "fraud detection",
        "violence prevention",
        "killer whale",
        "pest control that kills termites",
        "Killeen Texas plumbing",  # kill + "een": not an allowed suffix
    ],
)
def test_must_not_block(sf, text):
    verdict = sf.check(text)
    assert not verdict.blocked, verdict.reason


@pytest.mark.parametrize(
    "text, category",
    [
        ("high-stakes wagering", "gambling"),
        ("pyramid marketing", "fraud"),
        ("pyramid scheme", "fraud"),
        ("pyramid-scheme", "fraud"),
        ("pyramidscheme", "fraud"),
        ("pyramid   scheme", "fraud"),
        ("ponzi", "fraud"),
        ("nicotine", "age_restricted"),
        ("cannabis", "drugs"),
        ("gamble", "gambling"),
        ("gambling", "gambling"),
        ("gambler", "gambling"),
        ("gamblers", "gambling"),
        ("info@casino.example", "gambling"),  # leet folding must not hide a literal term
    ],
)
def test_must_block(sf, text, category):
    verdict = sf.check(text)
    assert verdict.blocked, verdict.reason
    assert verdict.category == category


def test_reason_names_category_and_term(sf):
    verdict = sf.check("The best online casino in town")
    assert verdict.blocked
    assert verdict.category == "gambling"
    assert verdict.matched == "casino"
    assert verdict.term == "casino*"
    assert "gambling" in verdict.reason and "'casino'" in verdict.reason


def test_allowed_reason_explains_allow_context(sf):
    verdict = sf.check("Killer whale watching tours")
    assert not verdict.blocked
    assert "killer whale" in verdict.reason and "violence" in verdict.reason
    plain = sf.check("Organic coffee")
    assert plain.reason.startswith("allowed: no policy term matched; classifier P(blocked) = ")


def test_longest_match_wins_across_categories(sf):
    assert sf.check("sex trafficking ring").category == "exploitation"
    assert sf.check("just kill yourself").category == "self_harm"
    assert sf.check("kill the witnesses").category == "violence"


# --------------------------------------------------------------------------- normalisation steps


def test_strip_zero_width():
    assert strip_zero_width("gam\u200bbl\u200ci\u200dng\ufeff\u2060") == "gambling"
    assert strip_zero_width("soft\u00adhyphen") == "softhyphen"
    assert strip_zero_width("plain text") == "plain text"


def test_nfkc_casefold():
    assert nfkc_casefold("ＣＡＳＩＮＯ") == "casino"
    assert nfkc_casefold("\U0001d429\U0001d428\U0001d42b\U0001d427") == "porn"  # mathematical bold
    assert nfkc_casefold("Straße") == "strasse"
    assert nfkc_casefold("ﬁne") == "fine"


def test_strip_accents():
    assert strip_accents("cocaína glücksspiel hameçonnage") == "cocaina glucksspiel hameconnage"
    assert strip_accents("plain") == "plain"


def test_fold_homoglyphs():
    # Cyrillic с, а, о mixed into a Latin word
    assert fold_homoglyphs("\u0441\u0430sin\u043e") == "casino"
    # Greek rho/omicron with Latin letters
    assert fold_homoglyphs("\u03c1\u03bfrn") == "porn"
    # genuine Cyrillic / Greek words with letters that have no look-alike stay readable
    assert fold_homoglyphs("жук") == "жук"
    assert fold_homoglyphs("λόγος") == "λόγος"
    assert fold_homoglyphs("plain latin") == "plain latin"


def test_fold_leetspeak():
    assert fold_leetspeak("p0rn") == "porn"
    assert fold_leetspeak("g@mbl1ng") == "gambling"
    assert fold_leetspeak("$ex 5ex") == "sex sex"
    assert fold_leetspeak("7error1s7") == "terrorist"
    # tokens without letters, or with non-leet digits, are left alone
    for text in ("401k retirement", "7 eleven", "24/7", "$5 lunch", "b2b", "1 2 3"):
        assert fold_leetspeak(text) == text


def test_join_spaced_letters():
    assert join_spaced_letters("g a m b l i n g den") == "gambling den"
    assert join_spaced_letters("b-e-t-t-i-n-g") == "betting"
    assert join_spaced_letters("try p.0.r.n now") == "try p0rn now"
    for text in ("a b", "1 2 3", "A-4 paper", "e-commerce", "U S"):
        assert join_spaced_letters(text) == text


def test_normalize_text_pipeline():
    assert normalize_text("G A\u200b M B L 1 N G") == "gambling"
    assert normalize_text("Ｃ\u0430\u0455ino") == "casino"
    assert normalize_text("Glücksspiel") == "glucksspiel"
    assert normalize_text("401k retirement") == "401k retirement"
    with pytest.raises(TypeError):
        normalize_text(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- policy file & schema


def test_shipped_policy_validates_and_is_complete(sf):
    assert sf.policy_files and sf.policy_files[0].endswith("safety_policy.yaml")
    assert REQUIRED_CATEGORIES <= set(sf.categories)
    raw = yaml.safe_load(safety._shipped_policy_path().read_text(encoding="utf-8"))
    for name in REQUIRED_CATEGORIES | {"age_restricted"}:
        terms = raw["categories"][name]["terms"]
        assert LANGUAGES <= set(terms), f"{name} lacks languages {LANGUAGES - set(terms)}"
        assert all(terms[lang] for lang in LANGUAGES), name
    for context in ("adult education", "adult day care", "escort vehicle", "drug rehabilitation",
                    "fraud detection", "violence prevention", "killer whale"):
        # each issue-named allow-context is covered by the shipped allow regex
        assert sf._allow_re.search(normalize_text(context)), context


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "content, field",
    [
        ("version: 1\nbogus: 3\n", "bogus"),
        ("version: 2\n", "version"),
        ("version: 1\ncategories:\n  gambling:\n    terms: casino\n", "categories.gambling.terms"),
        ("version: 1\ncategories:\n  gambling:\n    terms: [casino, 42]\n", "categories.gambling.terms[1]"),
        ("version: 1\ncategories:\n  gambling:\n    terms: [casino]\n    colour: red\n", "categories.gambling.colour"),
        ("version: 1\ncategories:\n  brand_new:\n    allow_contexts: [x]\n", "categories.brand_new.terms"),
        ("version: 1\ncategories:\n  Bad-Name:\n    terms: [x]\n", "categories.Bad-Name"),
        ("version: 1\ncategories:\n  gambling:\n    terms: {en: ['(casino|poker']}\n", "categories.gambling.terms.en[0]"),
        ("version: 1\ncategories:\n  gambling:\n    terms: [casino24]\n", "categories.gambling.terms[0]"),
        ("version: 1\nallow_contexts: [ok, '']\n", "allow_contexts[1]"),
        ("version: 1\ncategories:\n  gambling:\n    terms: [a]\n  gambling:\n    terms: [b]\n", "line 5"),
        ("version: 1\ncategories: [oops\n", "line"),
        ("- just\n- a list\n", ""),
    ],
)
def test_malformed_policy_names_file_and_field(tmp_path, content, field):
    path = _write(tmp_path, "bad_policy.yaml", content)
    with pytest.raises(PolicyError) as info:
        SafetyFilter(extra_policies=[path])
    err = info.value
    assert isinstance(err, ValueError)
    assert str(path) in str(err)
    assert err.path == str(path)
    assert field in err.field
    print(err)


def test_missing_policy_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError, match="file not found") as info:
        SafetyFilter(extra_policies=[missing])
    assert str(missing) in str(info.value)


def test_base_policy_requires_categories(tmp_path):
    path = _write(tmp_path, "base.yaml", "version: 1\nsuffixes: [s]\n")
    with pytest.raises(PolicyError) as info:
        SafetyFilter(policy=path)
    assert info.value.field == "categories"


def test_extra_policy_merges_terms_categories_and_allow_contexts(tmp_path, sf):
    extra = _write(
        tmp_path,
        "extra.yaml",
        "version: 1\n"
        "allow_contexts: [cannabis]\n"
        "categories:\n"
        "  gambling:\n"
        "    terms: [tombola*]\n"
        "  counterfeit_goods:\n"
        "    description: Counterfeit luxury goods\n"
        "    terms: {en: [replica (rolex|watches)]}\n"
        "    tlds: [replica]\n",
    )
    custom = SafetyFilter(extra_policies=[extra])
    assert custom.check("weekly tombolas").category == "gambling"
    assert custom.check("replica rolex shop").category == "counterfeit_goods"
    assert not custom.check("cannabis dispensary").blocked
    assert custom.check_domain("cheap.replica").category == "counterfeit_goods"
    assert custom.policy_files[-1] == str(extra)
    # the shipped filter is unchanged
    assert not sf.check("weekly tombolas").blocked
    assert sf.check("cannabis dispensary").blocked


def test_default_filter_is_cached():
    assert default_filter() is default_filter()
    assert safety.check("online casino").blocked


# --------------------------------------------------------------------------- domains


@pytest.mark.parametrize(
    "domain",
    ["xxxcasino.com", "killshot.io", "p0rnhub.com", "lucky.casino", "vapeshop.com", "sportsbetting.net",
     "pyramidscheme.biz", "cocaine-delivery.com", "hitmanforhire.org", "саsino.com"],
)
def test_check_domain_blocks(sf, domain):
    verdict = sf.check_domain(domain)
    assert verdict.blocked, verdict.reason


@pytest.mark.parametrize(
    "domain",
    ["betterbrew.com", "skillshare.io", "essexbakery.co.uk", "therapistfinder.com", "analytics.io",
     "expertsexchange.com", "killerwhaletours.com", "frauddetection.ai", "drugrehabcenter.org",
     "escortvehicle.com", "scunthorpe.com", "cocktailbar.london", "organiccoffeepdx.com"],
)
def test_check_domain_allows(sf, domain):
    verdict = sf.check_domain(domain)
    assert not verdict.blocked, verdict.reason


def test_check_domain_reason_shows_segmentation(sf):
    verdict = sf.check_domain("xxxcasino.com")
    assert verdict.category in {"sexual", "gambling"}
    assert "xxx casino" in verdict.reason


def test_filter_domains(sf):
    kept, dropped = sf.filter_domains(["betterbrew.com", "xxxcasino.com", "essexbakery.co.uk", "killshot.io"])
    assert kept == ["betterbrew.com", "essexbakery.co.uk"]
    assert [d for d, _ in dropped] == ["xxxcasino.com", "killshot.io"]
    assert all(isinstance(v, SafetyVerdict) and v.blocked for _, v in dropped)
    assert safety.filter_domains([]) == ([], [])


# --------------------------------------------------------------------------- bad input, verdicts, speed


@pytest.mark.parametrize("bad", [None, 42, b"casino", ["casino"]])
def test_non_string_raises_type_error(sf, bad):
    with pytest.raises(TypeError, match="expects a str"):
        sf.check(bad)
    with pytest.raises(TypeError, match="expects a str"):
        sf.check_domain(bad)


@pytest.mark.parametrize("text", ["", "   ", "\u200b\u200b"])
def test_empty_text_is_allowed(sf, text):
    verdict = sf.check(text)
    assert verdict.blocked is False
    assert "empty" in verdict.reason


def test_verdict_is_frozen_and_serialisable(sf):
    verdict = sf.check("online casino")
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.blocked = False  # type: ignore[misc]
    data = verdict.to_dict()
    assert data == {
        "blocked": True,
        "category": "gambling",
        "reason": verdict.reason,
        "matched": "casino",
        "term": "casino*",
        "layer": "rules",
        "p_blocked": data["p_blocked"],
    }
    assert 0 <= data["p_blocked"] <= 1
    assert all(type(v) in (bool, str, float, type(None)) for v in data.values())
    assert json.loads(json.dumps(data)) == data


def test_100k_characters_is_fast(sf):
    filler = "Our family bakery in Essex offers skills workshops and the alphabet of bread. "
    text = (filler * (100_000 // len(filler) + 1))[:100_000]
    sf.check("warm up")
    start = time.perf_counter()
    verdict = sf.check(text)
    clean = time.perf_counter() - start
    dirty_text = text[:-20] + " online casino here."
    start = time.perf_counter()
    dirty = sf.check(dirty_text)
    hit = time.perf_counter() - start
    adversarial = ("killer whale tours " * 6000)[:100_000]
    start = time.perf_counter()
    allowed = sf.check(adversarial)
    many = time.perf_counter() - start
    print(f"100k chars: clean {clean * 1000:.1f} ms, hit at end {hit * 1000:.1f} ms, "
          f"5000 allow-context hits {many * 1000:.1f} ms")
    assert len(text) == 100_000
    # Timings are printed, not asserted (a noisy machine); benchmarks/safety_speed.py measures.
    assert not verdict.blocked and dirty.blocked and not allowed.blocked


# --------------------------------------------------------------------------- CLI


def _cli(argv):
    from domain_eval.cli import main

    return main(argv)


def test_cli_exit_codes(capsys):
    assert _cli(["safety", "Online casino with poker"]) == 3
    out = capsys.readouterr().out
    assert out.startswith("BLOCKED") and "gambling" in out
    assert _cli(["safety", "Organic coffee shop"]) == 0
    assert capsys.readouterr().out.startswith("ALLOWED")


def test_cli_json_and_domain(capsys):
    assert _cli(["safety", "--json", "high-stakes wagering"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["blocked"] is True and data["category"] == "gambling" and data["matched"] == "wagering"
    assert _cli(["safety", "--domain", "--json", "xxxcasino.com"]) == 3
    assert json.loads(capsys.readouterr().out)["blocked"] is True
    assert _cli(["safety", "--domain", "betterbrew.com"]) == 0


def test_cli_safety_policy(tmp_path, capsys):
    good = _write(tmp_path, "good.yaml", "version: 1\ncategories:\n  gambling:\n    terms: [tombola*]\n")
    assert _cli(["safety", "weekly tombola", "--safety-policy", str(good)]) == 3
    capsys.readouterr()
    bad = _write(tmp_path, "bad.yaml", "version: 1\ncategories:\n  gambling:\n    terms: nope\n")
    assert _cli(["safety", "weekly tombola", "--safety-policy", str(good), "--safety-policy", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "categories.gambling.terms" in err


def test_console_script_subprocess(tmp_path):
    script = Path(sys.executable).with_name("domain-eval")
    if not script.exists():
        pytest.skip("console script not installed (pip install -e . --no-deps)")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    blocked = subprocess.run(
        [str(script), "safety", "--json", "p0rn site"], capture_output=True, text=True, env=env, timeout=120
    )
    assert blocked.returncode == 3, blocked.stderr
    assert json.loads(blocked.stdout)["category"] == "sexual"
    allowed = subprocess.run(
        [str(script), "safety", "helping people feel better"], capture_output=True, text=True, env=env, timeout=120
    )
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("ALLOWED")
