"""Data hygiene for data/domain_dataset_v{1,2,3,4}.jsonl and the tools that make and read them."""
from __future__ import annotations

import collections
import json
import random
import re
from pathlib import Path

import pytest

from domain_eval.domains import normalize_domain
from training import datasets
from training.datasets import (
    VERSIONS,
    DatasetError,
    Row,
    dataset_sha256,
    description_tokens,
    find_overlaps,
    generate_rows,
    is_near_duplicate,
    jaccard,
    load_dataset,
    load_eval_descriptions,
    load_meta,
    meta_path_for,
    write_dataset,
)

ROOT = Path(__file__).resolve().parents[1]
V4_ROWS = 2042  # `python -m training.v4_data build`: 2,080 written, 33 near-duplicates and 5 blocked rows dropped
DATA = ROOT / "data"
FILES = {"v1": DATA / "domain_dataset_v1.jsonl", "v2": DATA / "domain_dataset_v2.jsonl",
         "v3": DATA / "domain_dataset_v3.jsonl", "v4": DATA / "domain_dataset_v4.jsonl"}
COUNTS = {"v1": 100, "v2": 500, "v3": 290, "v4": V4_ROWS}
HELDOUT = ROOT / "tests" / "data" / "heldout_descriptions.txt"


@pytest.fixture(scope="module")
def data() -> dict[str, list[Row]]:
    return {name: load_dataset(path) for name, path in FILES.items()}


# --------------------------------------------------------------------------- committed files
@pytest.mark.parametrize("name", sorted(FILES))
def test_row_counts(data, name):
    assert len(data[name]) == COUNTS[name]


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_domain_is_valid_and_canonical(data, name):
    bad = [(r.description, d) for r in data[name] for d in r.domains if normalize_domain(d) != d]
    assert not bad


@pytest.mark.parametrize("name", sorted(FILES))
def test_three_to_five_distinct_suggestions(data, name):
    for row in data[name]:
        assert 3 <= len(row.domains) <= 5, row
        assert len(set(row.domains)) == len(row.domains), row


@pytest.mark.parametrize("name", sorted(FILES))
def test_no_duplicate_rows_or_descriptions(data, name):
    keys = [" ".join(r.description.casefold().split()) for r in data[name]]
    dupes = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert not dupes
    lines = FILES[name].read_text(encoding="utf-8").splitlines()
    assert len(set(lines)) == len(lines)


@pytest.mark.parametrize("name", sorted(FILES))
def test_files_are_plain_utf8_jsonl_with_two_fields(name):
    raw = FILES[name].read_bytes()
    assert raw.endswith(b"\n") and b"\r" not in raw
    for line in raw.decode("utf-8").splitlines():
        obj = json.loads(line)
        assert list(obj) == ["business_description", "domain_suggestions"]
        assert line == json.dumps(obj, ensure_ascii=False)  # the writer's exact form


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_template_files_regenerate_byte_identical(version, tmp_path):
    out = tmp_path / f"{version}.jsonl"
    datasets.generate_dataset(version, out)
    assert out.read_bytes() == FILES[version].read_bytes(), (
        f"data/domain_dataset_{version}.jsonl is not what `python -m training.datasets --version {version}` "
        f"produces with seed {VERSIONS[version]['seed']}"
    )
    assert dataset_sha256(out) == dataset_sha256(FILES[version])


# --------------------------------------------------------------------------- evaluation overlap
def _overlap_message(pairs) -> str:
    return "training descriptions that (nearly) duplicate evaluation ones:\n" + "\n".join(
        f"  train {t!r}\n   eval {e!r}  (jaccard {j})" for t, e, j in pairs)


def test_heldout_list_is_seeded():
    lines = load_eval_descriptions(ROOT / "no-such-dir", [HELDOUT])
    assert len(lines) >= 20
    assert "quantum computing research laboratory" in lines
    assert "organic coffee shop in downtown Portland" in lines


@pytest.mark.parametrize("name", sorted(FILES))
def test_no_overlap_with_evaluation_cases(data, name):
    evaluation = load_eval_descriptions(ROOT / "cases", [HELDOUT])
    pairs = find_overlaps([r.description for r in data[name]], evaluation)
    if pairs:
        print(_overlap_message(pairs))
    assert not pairs, _overlap_message(pairs)


def test_overlap_catches_the_original_leak():
    train, test = "quantum computing research", "quantum computing research laboratory"
    assert jaccard(description_tokens(train), description_tokens(test)) == 0.75  # below 0.8 on its own
    assert is_near_duplicate(train, test) and is_near_duplicate(test, train)
    pairs = find_overlaps(["bakery in Leeds", train], [test, "pizza"])
    assert [(t, e) for t, e, _ in pairs] == [(train, test)]


@pytest.mark.parametrize("a, b", [
    ("organic coffee shop in downtown Portland", "Organic coffee shop in downtown Portland"),  # exact (case)
    ("organic coffee shop in downtown Portland", "organic coffee shops in Portland downtown!"),  # tokens
    ("Organic coffee shop in Portland", "organic coffee shop in downtown Portland"),  # jaccard 0.8
    ("京都の老舗和菓子店", "京都の老舗和菓子店。季節の生菓子と抹茶を提供しています。"),  # CJK bigrams, contained
])
def test_near_duplicates(a, b):
    assert is_near_duplicate(a, b)


@pytest.mark.parametrize("a, b", [
    ("coffee shop", "organic coffee shop in downtown Portland"),  # 2 tokens: too short to call a leak
    ("bakery in Leeds", "bakery in Bristol"),
    ("quantum computing research", "A 60-person quantum computing research group that also runs a café, "
     "a bakery, a bookshop, a cinema, a gym, a florist and a bicycle repair workshop for the whole campus"),
    ("Kubernetes cost optimisation platform", "Container security scanning for Kubernetes clusters"),
])
def test_not_near_duplicates(a, b):
    assert not is_near_duplicate(a, b)


def test_eval_descriptions_from_yaml_and_missing_dirs(tmp_path):
    assert load_eval_descriptions(tmp_path / "missing") == []
    (tmp_path / "empty").mkdir()
    assert load_eval_descriptions(tmp_path / "empty") == []
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "a.yaml").write_text("category: normal\ncases:\n  - id: x\n    description: \"bakery in Leeds\"\n"
                                  "  - id: y\n    description: >-\n      long one\n      folded\n", encoding="utf-8")
    (cases / "empty.yaml").write_text("", encoding="utf-8")
    (cases / "other.yaml").write_text("cases: []\n", encoding="utf-8")
    extra = tmp_path / "extra.txt"
    extra.write_text("# comment\n\nsushi bar\n", encoding="utf-8")
    assert load_eval_descriptions(cases, [extra]) == ["bakery in Leeds", "long one folded", "sushi bar"]


def test_overlap_check_fails_loudly_on_a_leak():
    evaluation = load_eval_descriptions(ROOT / "cases", [HELDOUT])
    leaky = ["quantum computing research", "Neighbourhood bakery in Bristol"]
    pairs = find_overlaps(leaky, evaluation)
    assert ("quantum computing research", "quantum computing research laboratory") in [(t, e) for t, e, _ in pairs]
    assert "quantum computing research laboratory" in _overlap_message(pairs)


# --------------------------------------------------------------------------- v3 coverage
@pytest.fixture(scope="module")
def v3_meta(data):
    return load_meta(meta_path_for(FILES["v3"]), data["v3"])


ENGLISH_ONLY = {"the", "and", "with", "of", "that", "our", "we", "your"}
MARKERS = {
    "fr": set("le la les des du de d l à au aux pour avec et en dans une un sur qui".split()),
    "de": set("der die das den dem und für mit im in von zu zum zur an auf ein eine".split()),
    "es": set("el la los las de del para con en y por una un".split()),
    "it": set("il lo la gli le di d del della degli per con e a in tra sul una un".split()),
}
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def test_v3_language_coverage(data, v3_meta):
    langs = collections.Counter(m["lang"] for m in v3_meta)
    for lang in ("fr", "de", "es", "it", "ja"):
        assert langs[lang] >= 8, langs
    for row, meta in zip(data["v3"], v3_meta):
        words = set(re.findall(r"[^\W\d_]+", row.description.casefold()))
        if meta["lang"] == "ja":
            assert JAPANESE.search(row.description), row.description
        else:
            assert not JAPANESE.search(row.description), row.description
        if meta["lang"] in MARKERS:
            assert words & MARKERS[meta["lang"]], row.description
            assert not words & ENGLISH_ONLY, row.description


def test_v3_categories_and_industries(data, v3_meta):
    cats = collections.Counter(m["category"] for m in v3_meta)
    assert set(cats) == {"normal", "short", "long", "technical", "unusual", "ambiguous", "multilingual"}
    assert len({m["industry"] for m in v3_meta}) >= 40
    for row, meta in zip(data["v3"], v3_meta):
        n = len(row.description.split())
        if meta["category"] == "short":
            assert 2 <= n <= 4, row.description
        if meta["category"] == "long":
            assert n >= 40, row.description
    assert cats["short"] >= 20 and cats["long"] >= 20


def test_v3_domains_look_right(data):
    domains = [d for r in data["v3"] for d in r.domains]
    assert len(set(domains)) == len(domains)  # no name reused across businesses
    suffixes = collections.Counter(d.split(".", 1)[1] for d in domains)
    assert suffixes["com"] / len(domains) > 0.5
    for tld in ("io", "ai", "dev", "de", "fr", "it", "es", "jp", "co.uk"):
        assert suffixes[tld] > 0, tld
    assert sum(d.isascii() and not d.startswith("xn--") for d in domains) / len(domains) > 0.95


@pytest.mark.parametrize("name", sorted(FILES))
def test_no_unsafe_rows(data, name):
    from domain_eval import safety

    # The policy rules must pass every row. The learned layer is bounded, not zero: it was
    # tuned to block at most 1% of these ordinary descriptions (training/safety_classifier.py).
    rules = safety.SafetyFilter(classifier=None)
    blocked = [r.description for r in data[name] if rules.check(r.description).blocked]
    blocked += [d for r in data[name] for d in r.domains if rules.check_domain(d).blocked]
    assert not blocked
    layered = safety.default_filter()
    learned = [r.description for r in data[name] if layered.check(r.description).blocked]
    assert len(learned) <= 0.01 * len(data[name]) + 1, learned


# --------------------------------------------------------------------------- generator
def test_generator_is_seeded_and_uses_no_global_state(tmp_path):
    state = random.getstate()
    a = generate_rows(50, seed=7)
    assert random.getstate() == state
    random.seed(12345)
    assert generate_rows(50, seed=7) == a
    assert generate_rows(50, seed=8) != a
    write_dataset(a, tmp_path / "a.jsonl")
    write_dataset(generate_rows(50, seed=7), tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_generator_vocabulary_sizes():
    assert len(datasets.BUSINESS_TYPES) == 20
    assert len(datasets.ADJECTIVES) == 21
    assert len(datasets.CITIES) == 22
    assert len(datasets.TEMPLATES) >= 4


def test_generator_uses_every_naming_strategy(data):
    labels = [d.split(".", 1)[0] for r in data["v2"] for d in r.domains]
    assert any("-" in label for label in labels)  # hyphenation
    assert any(label.startswith(p) for label in labels for p in datasets.PREFIXES)  # affixes
    assert any(label.endswith(s) for label in labels for s in datasets.SUFFIXES)
    # acronyms and keyword combinations, from one description's candidates
    assert datasets._acronym("family-owned", "coffee shop") == "focs"
    adj, biz, city = datasets.ADJECTIVES[4], datasets.BUSINESS_TYPES[5], datasets.CITIES[0]
    cands = [c.split(".", 1)[0] for c in datasets._candidates(random.Random(0), adj, biz, city)]
    assert any(c.startswith("focs") for c in cands), cands
    assert any(c.startswith("focsl") for c in cands), cands
    assert any(c.startswith("family") and c[len("family"):] in biz[1] for c in cands), cands


def test_datasets_cli(tmp_path, capsys):
    out = tmp_path / "v1.jsonl"
    assert datasets.main(["--version", "v1", "--out", str(out), "--rows", "7", "--seed", "3"]) == 0
    assert "wrote 7 rows" in capsys.readouterr().out
    assert load_dataset(out) == generate_rows(7, seed=3)
    with pytest.raises(SystemExit) as exc:
        datasets.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--version", "--out", "--seed", "--rows", "v1", "v2"):
        assert opt in text
    with pytest.raises(SystemExit):
        datasets.main(["--version", "v9", "--out", str(out)])


# --------------------------------------------------------------------------- loading errors
GOOD = '{"business_description": "Bakery in Leeds", "domain_suggestions": ["leedsloaf.co.uk", "crumb.com", "bake.io"]}'


@pytest.mark.parametrize("line, problem", [
    ('{"business_description": "x", "domain_suggestions": ["a.com"', "bad JSON"),
    ('["a.com"]', "expected a JSON object"),
    ('{"domain_suggestions": ["a.com", "b.com", "c.com"]}', "missing field 'business_description'"),
    ('{"business_description": "x"}', "missing field 'domain_suggestions'"),
    ('{"business_description": 3, "domain_suggestions": ["a.com"]}', "'business_description' must be a string"),
    ('{"business_description": "x", "domain_suggestions": "a.com"}', "'domain_suggestions' must be a list"),
    ('{"business_description": "x", "domain_suggestions": ["a.com", 7]}', "domain_suggestions[1] must be a string"),
    ('{"business_description": "x", "domain_suggestions": ["a.com", "thelondon\'s.io"]}',
     "domain_suggestions[1] \"thelondon's.io\" is invalid: label \"thelondon's\" contains characters"),
    ('{"business_description": "x", "domain_suggestions": ["-bakery.co"]}', "starts or ends with a hyphen"),
    ('{"business_description": "x", "domain_suggestions": ["Bakery.com"]}', "not in canonical form (expected 'bakery.com')"),
    ('{"business_description": "x", "domain_suggestions": ["a.com", "a.com"]}', "duplicate domain(s) in one row: a.com"),
    ('{"business_description": "  ", "domain_suggestions": ["a.com"]}', "'business_description' is empty"),
    ('{"business_description": "x", "domain_suggestions": []}', "'domain_suggestions' is empty"),
    ('{"business_description": "x", "domain_suggestions": ["a.com"], "lang": "en"}', "unexpected field(s) 'lang'"),
    ('', "empty line"),
    ('{"business_description": "bakery in  LEEDS", "domain_suggestions": ["a.com"]}', "duplicate description (first on line 1)"),
])
def test_malformed_row_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "broken.jsonl"
    path.write_text(GOOD + "\n" + line + "\n" + GOOD.replace("Leeds", "York") + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as exc:
        load_dataset(path)
    assert isinstance(exc.value, ValueError)
    assert exc.value.line == 2 and exc.value.path == str(path)
    message = str(exc.value)
    assert message.startswith(f"{path}:2: ")
    assert problem in message, message


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(DatasetError, match="file not found"):
        load_dataset(tmp_path / "nope.jsonl")
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"business_description": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match="not valid UTF-8"):
        load_dataset(bad)


def test_write_load_roundtrip_keeps_unicode(tmp_path):
    rows = [Row("横浜の英会話スクール", ["hamaenglish.jp", "yokohamatalk.com", "portenglish.jp"]),
            Row("Crèche à Lyon", ("creche.fr", "xn--crche-5ra.fr", "petits.fr"))]
    path = write_dataset(rows, tmp_path / "sub" / "rows.jsonl")
    assert "横浜" in path.read_text(encoding="utf-8")  # ensure_ascii=False
    assert load_dataset(path) == rows
    assert isinstance(load_dataset(path)[0].domains, tuple)
    assert len(dataset_sha256(path)) == 64
    write_dataset([{"business_description": r.description, "domain_suggestions": list(r.domains)} for r in rows],
                  tmp_path / "dicts.jsonl")
    assert (tmp_path / "dicts.jsonl").read_bytes() == path.read_bytes()


def test_meta_must_align_with_rows(tmp_path):
    rows = [Row("a b c", ("a.com", "b.com", "c.com"))]
    path = datasets.write_meta([{"description": "other", "lang": "en", "category": "short", "industry": "x"}],
                               tmp_path / "m.meta.json")
    with pytest.raises(DatasetError, match="describes 'other'"):
        load_meta(path, rows)
    with pytest.raises(DatasetError, match="1 meta entries for 2 dataset rows"):
        load_meta(path, rows * 2)


# --------------------------------------------------------------------------- v4: the hand-written set
@pytest.fixture(scope="module")
def v4_meta(data):
    return load_meta(meta_path_for(FILES["v4"]), data["v4"])


def test_v4_is_disjoint_from_the_judge_corpus(data):
    """v4 must not teach the model the businesses the judge was fitted and measured on."""
    corpus = [json.loads(line)["description"] for line in
              (DATA / "ratings" / "descriptions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = find_overlaps([r.description for r in data["v4"]], corpus)
    assert not pairs, _overlap_message(pairs)


def test_v4_rows_pass_the_writers_rules(data):
    """Five names per row, none degenerate (paintandpaint), no name under two TLDs, short ASCII labels."""
    from training.v4_data import domain_problems

    problems = {r.description: p for r in data["v4"] if (p := domain_problems(list(r.domains)))}
    assert not problems, list(problems.items())[:5]


def test_v4_rules_reject_the_shipped_models_failure_kinds():
    from training.v4_data import domain_problems

    assert domain_problems(["paintandpaint.com", "mathmath.dev", "pumpandamp.com", "pumpandamp.co", "x.com"]) == [
        "'paintandpaint.com' is degenerate: 'paint' joined to itself in 'paintandpaint'",
        "'mathmath.dev' is degenerate: doubled label 'mathmath'",
        "'pumpandamp.co' repeats an earlier name under another TLD"]
    assert domain_problems(["a.com"]) == ["1 names, expected 5"]


def test_v4_language_industry_and_kind_coverage(data, v4_meta):
    assert len(data["v4"]) >= 2000
    langs = collections.Counter(m["lang"] for m in v4_meta)
    non_english = {lang: n for lang, n in langs.items() if lang != "en"}
    assert sum(non_english.values()) / len(v4_meta) >= 0.30, langs
    assert sum(n >= 30 for n in non_english.values()) >= 8, langs
    assert len({m["industry"] for m in v4_meta}) >= 40
    kinds = collections.Counter(m["category"] for m in v4_meta)
    assert set(kinds) == {"short", "medium", "long", "vague", "technical"}
    assert min(kinds.values()) >= 0.05 * len(v4_meta), kinds
    for row, meta in zip(data["v4"], v4_meta):
        if meta["lang"] in ("ja", "zh"):
            assert JAPANESE.search(row.description), row.description
        elif meta["lang"] != "en":
            assert not JAPANESE.search(row.description), row.description
        if meta["lang"] in MARKERS and meta["category"] in ("medium", "long"):
            words = set(re.findall(r"[^\W\d_]+", row.description.casefold()))
            assert words & MARKERS[meta["lang"]], row.description


def test_v4_non_english_rows_use_their_markets_tlds(data, v4_meta):
    """Most non-English rows offer at least one ccTLD of a country where that language is spoken."""
    cc = {"de": {"de", "at", "ch"}, "fr": {"fr", "be", "ch", "ca"}, "es": {"es", "mx", "ar", "co", "cl", "pe", "uy"},
          "it": {"it", "ch"}, "pt": {"br", "pt"}, "nl": {"nl", "be"}, "ja": {"jp"}, "zh": {"cn"},
          "sv": {"se"}, "pl": {"pl"}, "tr": {"tr"}}
    for lang, tlds in cc.items():
        rows = [r for r, m in zip(data["v4"], v4_meta) if m["lang"] == lang]
        local = [r for r in rows if any(d.rsplit(".", 1)[-1] in tlds for d in r.domains)]
        assert rows and len(local) / len(rows) >= 0.8, (lang, len(local), len(rows))


def test_v4_checker_names_each_bad_row_and_never_shows_evaluation_text(tmp_path, capsys, monkeypatch):
    from training import v4_data

    monkeypatch.chdir(ROOT)  # the held-out descriptions are read relative to the repository
    good = {"business_description": "Reparatur von Lastenrädern in Leipzig", "lang": "de", "industry": "cycling",
            "kind": "short", "domain_suggestions": ["lastenheld.de", "kurbelkurier.de", "tragkraft.de", "radwerk.de", "cargofix.com"]}
    evaluation = load_eval_descriptions(ROOT / "cases")[0]
    rows = [good, {**good, "business_description": "x", "lang": "xx"},
            {**good, "business_description": "paint shop", "domain_suggestions": ["paintandpaint.com", *good["domain_suggestions"][1:]]},
            {**good, "business_description": evaluation}]
    batch = tmp_path / "b9.jsonl"
    batch.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "{oops\n", encoding="utf-8")
    assert v4_data.main(["check", str(batch)]) == 1
    out = capsys.readouterr().out
    assert f"{batch}:2: lang 'xx' not one of" in out
    assert f"{batch}:3: 'paintandpaint.com' is degenerate" in out
    assert f"{batch}:5: bad JSON" in out
    assert f"{batch}:4: too close to an evaluation description" in out and evaluation not in out
    assert "4 rows to fix" in out
